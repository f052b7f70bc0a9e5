// Rotary position embedding, rotate-half (GPT-NeoX) style, as fla's RetNet
// and hybrid attention use it (spec §4.3).
//
// For head vector x of even length d at absolute position p and
// theta_i = base^(-2i/d), i < d/2:
//   x'[i]       = x[i] cos(p theta_i) - x[i + d/2] sin(p theta_i)
//   x'[i + d/2] = x[i + d/2] cos(p theta_i) + x[i] sin(p theta_i)
// Angles are computed in fp32 as fla does (inv_freq in fp32, p * inv_freq).
#ifndef LINSERVE_KERNELS_ROTARY_H_
#define LINSERVE_KERNELS_ROTARY_H_

#include <cstdint>

namespace linserve::kernels {

// Rotates, in place, x [tokens, heads, head_dim] (row stride `row_stride`
// elements between tokens; heads contiguous within a row). Token t is at
// position positions_offset + t.
void ApplyRotary(float* x, int64_t row_stride, int64_t tokens, int heads,
                 int head_dim, int64_t position_offset, float base);

// Same for a batch of single tokens at different positions: row b is at
// positions[b] (one decode step of b sessions).
void ApplyRotaryAtPositions(float* x, int64_t row_stride, int batch, int heads,
                            int head_dim, const int64_t* positions, float base);

}  // namespace linserve::kernels

#endif  // LINSERVE_KERNELS_ROTARY_H_
