// Embedding lookup: copies rows of a [vocab, dim] table (fp32 or bf16) into
// fp32 activations. Token ids must be in [0, vocab); the engine validates
// them before calling (the kernel does not check).
#ifndef LINSERVE_KERNELS_EMBEDDING_H_
#define LINSERVE_KERNELS_EMBEDDING_H_

#include <cstdint>

#include "kernels/bf16.h"

namespace linserve::kernels {

// out[i] = table[ids[i]], out is [n, dim].
void GatherRows(const float* table, int dim, const int32_t* ids, int64_t n,
                float* out);
void GatherRows(const bf16_t* table, int dim, const int32_t* ids, int64_t n,
                float* out);

}  // namespace linserve::kernels

#endif  // LINSERVE_KERNELS_EMBEDDING_H_
