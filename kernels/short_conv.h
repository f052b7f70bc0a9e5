// Causal depthwise short convolution (fla ShortConvolution, spec §2.1) with a
// cache that carries the last inputs across calls, so a sequence fed in
// pieces of any size gives the same outputs as one call.
//
// Per channel c: y_t[c] = act( sum_{j<width} w[c, j] * x_{t-width+1+j}[c] ),
// so w[c, width-1] multiplies the current input; inputs before the session
// start are 0 (a zeroed cache). Layouts (fp32):
//   x, y    [tokens, channels], row stride `x_stride` / channels
//   weight  [channels, width] (checkpoint layout [C, 1, W] without the 1)
//   cache   [width, channels], time-major, oldest first: row width-1 holds
//           the newest input. (fla keeps [C, W]; time-major lets a decode
//           step read contiguous channel vectors.)
// AVX-512 and portable bodies as in elementwise.h. y must not alias x.
#ifndef LINSERVE_KERNELS_SHORT_CONV_H_
#define LINSERVE_KERNELS_SHORT_CONV_H_

#include <cstdint>

namespace linserve::kernels {

enum class ConvActivation { kNone, kSilu };

// Convolves `tokens` consecutive inputs of one sequence and updates `cache`
// to hold the last `width` inputs (older slots shift in from the previous
// cache when tokens < width).
void CausalShortConv(const float* x, int64_t x_stride, int64_t tokens,
                     int channels, const float* weight, int width,
                     ConvActivation activation, float* cache, float* y);

// One decode step for `batch` independent sessions: row b of x ([batch,
// channels], row stride x_stride) is the next input of the session whose
// cache is caches[b]. y is [batch, channels].
void CausalShortConvStep(const float* x, int64_t x_stride, int batch,
                         int channels, const float* weight, int width,
                         ConvActivation activation, float* const* caches,
                         float* y);

}  // namespace linserve::kernels

#endif  // LINSERVE_KERNELS_SHORT_CONV_H_
