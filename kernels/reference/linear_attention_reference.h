// Scalar reference for the linear-attention core (kernels/linear_attention.h):
// plain per-token loops that mirror the update rules of
// ../shared/spec/model-families.md (§3.4, §4.4, §5.3, §6.3, §7.3) line by
// line, for tests and benchmarks to check the optimised kernels against.
//
// Each token's update and read-out are computed in double from the fp32 state;
// the state is rounded back to fp32 after every token, so a sequence may be
// split into any number of calls (same contract as the optimised kernels).
// Slow by design; not for serving.
#ifndef LINSERVE_KERNELS_REFERENCE_LINEAR_ATTENTION_REFERENCE_H_
#define LINSERVE_KERNELS_REFERENCE_LINEAR_ATTENTION_REFERENCE_H_

#include <cstdint>

#include "kernels/linear_attention.h"

namespace linserve::kernels::reference {

// `num_tokens` consecutive tokens of one session; same arguments, layouts and
// strides as RecurrentForward / ChunkwiseForward. out is [T, H, V].
void ReferenceLinearAttention(const AttentionSpec& spec, int64_t num_tokens,
                              const AttentionInputs& in, AttentionState state,
                              float* out);

// One token for each of `batch` sessions; same contract as RecurrentStep.
void ReferenceRecurrentStep(const AttentionSpec& spec, int batch,
                            const AttentionInputs& in,
                            const AttentionState* states, float* out);

}  // namespace linserve::kernels::reference

#endif  // LINSERVE_KERNELS_REFERENCE_LINEAR_ATTENTION_REFERENCE_H_
