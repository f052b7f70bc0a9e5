// The per-ISA bodies behind kernels/linear_attention.h. The public functions
// dispatch on ActiveKernelIsa() to one of these; tests reach them only through
// the public functions (with ScopedKernelIsa). Each body has the public
// function's contract. Shared by linear_attention.cc (recurrent forms) and
// linear_attention_chunkwise.cc (chunkwise form): add declarations, keep the
// signatures equal to the public ones.
#ifndef LINSERVE_KERNELS_INTERNAL_LINEAR_ATTENTION_BODIES_H_
#define LINSERVE_KERNELS_INTERNAL_LINEAR_ATTENTION_BODIES_H_

#include <cstdint>

#include "kernels/linear_attention.h"

namespace linserve::kernels {

// Plain C++ that the compiler vectorises for the baseline ISA.
namespace portable {

void RecurrentStep(const AttentionSpec& spec, int batch,
                   const AttentionInputs& in, const AttentionState* states,
                   float* out);
void RecurrentForward(const AttentionSpec& spec, int64_t num_tokens,
                      const AttentionInputs& in, AttentionState state,
                      float* out);

}  // namespace portable

// AVX-512 (F, BW, DQ, VL) + FMA intrinsics; defined only when
// LINSERVE_HAVE_AVX512_BODIES, called only when the CPU has them.
namespace avx512 {

void RecurrentStep(const AttentionSpec& spec, int batch,
                   const AttentionInputs& in, const AttentionState* states,
                   float* out);
void RecurrentForward(const AttentionSpec& spec, int64_t num_tokens,
                      const AttentionInputs& in, AttentionState state,
                      float* out);

}  // namespace avx512
}  // namespace linserve::kernels

#endif  // LINSERVE_KERNELS_INTERNAL_LINEAR_ATTENTION_BODIES_H_
