// Dispatch and portable body of kernels/short_conv.h.
#include "kernels/short_conv.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/internal/elementwise_bodies.h"
#include "kernels/parallel_for.h"

namespace linserve::kernels {

namespace portable {
namespace {

// Channels are processed in tiles with the weights transposed to [width,
// tile], so every inner loop is a contiguous, vectorisable channel loop.
// Tokens (or sessions) run inside a tile: a wide tile keeps the passes over
// rows that lie a power of two apart few.
constexpr int kTile = 256;
constexpr int kMaxStackWidth = 16;

// Transposed weights of one tile: wt[j * kTile + c] = weight[c0 + c, j].
void TransposeTile(const float* weight, int width, int c0, int nc, float* wt) {
  for (int j = 0; j < width; ++j) {
    for (int c = 0; c < nc; ++c) {
      wt[j * kTile + c] = weight[static_cast<int64_t>(c0 + c) * width + j];
    }
  }
}

// acc = w * v for tap 0, acc += w * v after: the same expression in the
// whole-sequence and the step body, so both round identically.
void AccumulateTap(int j, const float* w, const float* v, int nc, float* acc) {
  if (j == 0) {
    for (int c = 0; c < nc; ++c) acc[c] = w[c] * v[c];
  } else {
    for (int c = 0; c < nc; ++c) acc[c] += w[c] * v[c];
  }
}

void StoreActivated(const float* acc, int nc, ConvActivation activation,
                    float* y) {
  if (activation == ConvActivation::kSilu) {
    for (int c = 0; c < nc; ++c) y[c] = acc[c] / (1.0f + std::exp(-acc[c]));
  } else {
    std::copy(acc, acc + nc, y);
  }
}

// Scratch for the transposed weights: on the stack for the usual widths.
class TransposedWeights {
 public:
  explicit TransposedWeights(int width) {
    if (width > kMaxStackWidth)
      heap_.resize(static_cast<size_t>(width) * kTile);
  }
  float* data() { return heap_.empty() ? stack_ : heap_.data(); }

 private:
  float stack_[kMaxStackWidth * kTile];
  std::vector<float> heap_;
};

}  // namespace

void CausalShortConv(const float* x, int64_t x_stride, int64_t tokens,
                     int channels, int channel_begin, int channel_end,
                     const float* weight, int width, ConvActivation activation,
                     float* cache, float* y) {
  if (tokens <= 0) return;
  TransposedWeights scratch(width);
  float* wt = scratch.data();
  float acc[kTile];
  for (int c0 = channel_begin; c0 < channel_end; c0 += kTile) {
    const int nc = std::min(kTile, channel_end - c0);
    TransposeTile(weight, width, c0, nc, wt);
    // Input at time s (relative to this call): x row s, or cache slot
    // width + s for s < 0.
    for (int64_t t = 0; t < tokens; ++t) {
      for (int j = 0; j < width; ++j) {
        const int64_t s = t - width + 1 + j;
        const float* src = s >= 0 ? x + s * x_stride + c0
                                  : cache + (width + s) * channels + c0;
        AccumulateTap(j, wt + j * kTile, src, nc, acc);
      }
      StoreActivated(acc, nc, activation, y + t * channels + c0);
    }
    // Slot i takes time tokens - width + i; in increasing i, an old slot is
    // read (i + tokens > i) before it is overwritten.
    for (int i = 0; i < width; ++i) {
      const int64_t s = tokens - width + i;
      const float* src =
          s >= 0 ? x + s * x_stride + c0 : cache + (i + tokens) * channels + c0;
      std::copy(src, src + nc, cache + static_cast<int64_t>(i) * channels + c0);
    }
  }
}

void CausalShortConvStep(const float* x, int64_t x_stride, int batch,
                         int channels, int channel_begin, int channel_end,
                         const float* weight, int width,
                         ConvActivation activation, float* const* caches,
                         float* y) {
  TransposedWeights scratch(width);
  float* wt = scratch.data();
  float acc[kTile];
  for (int c0 = channel_begin; c0 < channel_end; c0 += kTile) {
    const int nc = std::min(kTile, channel_end - c0);
    TransposeTile(weight, width, c0, nc, wt);
    for (int b = 0; b < batch; ++b) {
      float* cache_c = caches[b] + c0;
      const float* xb = x + b * x_stride + c0;
      // Slot j takes old slot j + 1 (the newest slot takes x) while summing.
      for (int j = 0; j < width; ++j) {
        float* slot = cache_c + static_cast<int64_t>(j) * channels;
        const float* v = j + 1 < width ? slot + channels : xb;
        AccumulateTap(j, wt + j * kTile, v, nc, acc);
        std::copy(v, v + nc, slot);
      }
      StoreActivated(acc, nc, activation,
                     y + static_cast<int64_t>(b) * channels + c0);
    }
  }
}

}  // namespace portable

namespace {

// Channel blocks of a parallel split start on a multiple of one AVX-512
// vector; each channel's sum is the same whatever block it falls in.
constexpr int64_t kChannelAlign = 16;

bool UseAvx512Body(int width) {
#if LINSERVE_HAVE_AVX512_BODIES
  return ActiveKernelIsa() == KernelIsa::kAvx512 &&
         width <= avx512::kMaxConvWidth;
#else
  (void)width;
  return false;
#endif
}

}  // namespace

void CausalShortConv(const float* x, int64_t x_stride, int64_t tokens,
                     int channels, const float* weight, int width,
                     ConvActivation activation, float* cache, float* y) {
  if (tokens <= 0) return;
  const bool use_avx512 = UseAvx512Body(width);
  (void)use_avx512;  // Unused in builds without AVX-512 bodies.
  // Channels are independent (each has its own cache column): split them.
  ParallelFor(channels, std::max<int64_t>(1, kElementwiseGrain / tokens),
              kChannelAlign, [&](int64_t begin, int64_t end) {
                const int b = static_cast<int>(begin);
                const int e = static_cast<int>(end);
#if LINSERVE_HAVE_AVX512_BODIES
                if (use_avx512) {
                  return avx512::CausalShortConv(x, x_stride, tokens, channels,
                                                 b, e, weight, width,
                                                 activation, cache, y);
                }
#endif
                portable::CausalShortConv(x, x_stride, tokens, channels, b, e,
                                          weight, width, activation, cache, y);
              });
}

void CausalShortConvStep(const float* x, int64_t x_stride, int batch,
                         int channels, const float* weight, int width,
                         ConvActivation activation, float* const* caches,
                         float* y) {
  if (batch <= 0) return;
  const bool use_avx512 = UseAvx512Body(width);
  (void)use_avx512;  // Unused in builds without AVX-512 bodies.
  ParallelFor(channels, std::max<int64_t>(1, kElementwiseGrain / batch),
              kChannelAlign, [&](int64_t begin, int64_t end) {
                const int b = static_cast<int>(begin);
                const int e = static_cast<int>(end);
#if LINSERVE_HAVE_AVX512_BODIES
                if (use_avx512) {
                  return avx512::CausalShortConvStep(
                      x, x_stride, batch, channels, b, e, weight, width,
                      activation, caches, y);
                }
#endif
                portable::CausalShortConvStep(x, x_stride, batch, channels, b,
                                              e, weight, width, activation,
                                              caches, y);
              });
}

}  // namespace linserve::kernels
