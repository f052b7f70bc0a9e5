// Dispatch and portable body of kernels/short_conv.h.
#include "kernels/short_conv.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/internal/elementwise_bodies.h"
#include "kernels/kernel_timing.h"
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

void CausalShortConv(const float* x, int64_t x_stride, int64_t token_begin,
                     int64_t token_end, int channels, const float* weight,
                     int width, ConvActivation activation, const float* cache,
                     float* y) {
  TransposedWeights scratch(width);
  float* wt = scratch.data();
  float acc[kTile];
  for (int c0 = 0; c0 < channels; c0 += kTile) {
    const int nc = std::min(kTile, channels - c0);
    TransposeTile(weight, width, c0, nc, wt);
    // Input at time s (relative to this call): x row s, or cache slot
    // width + s for s < 0.
    for (int64_t t = token_begin; t < token_end; ++t) {
      for (int j = 0; j < width; ++j) {
        const int64_t s = t - width + 1 + j;
        const float* src = s >= 0 ? x + s * x_stride + c0
                                  : cache + (width + s) * channels + c0;
        AccumulateTap(j, wt + j * kTile, src, nc, acc);
      }
      StoreActivated(acc, nc, activation, y + t * channels + c0);
    }
  }
}

void CausalShortConvStep(const float* x, int64_t x_stride, int session_begin,
                         int session_end, int channels, const float* weight,
                         int width, ConvActivation activation,
                         float* const* caches, float* y) {
  TransposedWeights scratch(width);
  float* wt = scratch.data();
  float acc[kTile];
  for (int c0 = 0; c0 < channels; c0 += kTile) {
    const int nc = std::min(kTile, channels - c0);
    TransposeTile(weight, width, c0, nc, wt);
    for (int b = session_begin; b < session_end; ++b) {
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

bool UseAvx512Body(int width) {
#if LINSERVE_HAVE_AVX512_BODIES
  return ActiveKernelIsa() == KernelIsa::kAvx512 &&
         width <= avx512::kMaxConvWidth;
#else
  (void)width;
  return false;
#endif
}

// After a call of `tokens` inputs: slot i takes time tokens - width + i, an
// input of this call or an older slot; in increasing i, an old slot is read
// (i + tokens > i) before it is overwritten.
void ShiftCache(const float* x, int64_t x_stride, int64_t tokens, int channels,
                int width, float* cache) {
  for (int i = 0; i < width; ++i) {
    const int64_t s = tokens - width + i;
    const float* src =
        s >= 0 ? x + s * x_stride : cache + (i + tokens) * channels;
    std::copy(src, src + channels, cache + static_cast<int64_t>(i) * channels);
  }
}

}  // namespace

// Both split rows (tokens, or sessions) over threads, not channels: a thread
// then reads whole stretches of its own rows, where a split by channels had
// every thread stride through all rows, a few cache lines a page (on 16
// cores that made the prefill conv 20x slower than its arithmetic).
void CausalShortConv(const float* x, int64_t x_stride, int64_t tokens,
                     int channels, const float* weight, int width,
                     ConvActivation activation, float* cache, float* y) {
  if (tokens <= 0) return;
  const ScopedKernelTimer timer(KernelKind::kShortConv);
  const bool use_avx512 = UseAvx512Body(width);
  (void)use_avx512;  // Unused in builds without AVX-512 bodies.
  ParallelForRows(
      tokens, int64_t{channels} * width, kElementwiseGrain,
      [&](int64_t begin, int64_t end) {
#if LINSERVE_HAVE_AVX512_BODIES
        if (use_avx512) {
          return avx512::CausalShortConv(x, x_stride, begin, end, channels,
                                         weight, width, activation, cache, y);
        }
#endif
        portable::CausalShortConv(x, x_stride, begin, end, channels, weight,
                                  width, activation, cache, y);
      });
  ShiftCache(x, x_stride, tokens, channels, width, cache);
}

void CausalShortConvStep(const float* x, int64_t x_stride, int batch,
                         int channels, const float* weight, int width,
                         ConvActivation activation, float* const* caches,
                         float* y) {
  if (batch <= 0) return;
  const ScopedKernelTimer timer(KernelKind::kShortConv);
  const bool use_avx512 = UseAvx512Body(width);
  (void)use_avx512;  // Unused in builds without AVX-512 bodies.
  ParallelForRows(batch, int64_t{channels} * width, kElementwiseGrain,
                  [&](int64_t begin, int64_t end) {
                    const int b = static_cast<int>(begin);
                    const int e = static_cast<int>(end);
#if LINSERVE_HAVE_AVX512_BODIES
                    if (use_avx512) {
                      return avx512::CausalShortConvStep(
                          x, x_stride, b, e, channels, weight, width,
                          activation, caches, y);
                    }
#endif
                    portable::CausalShortConvStep(x, x_stride, b, e, channels,
                                                  weight, width, activation,
                                                  caches, y);
                  });
}

}  // namespace linserve::kernels
