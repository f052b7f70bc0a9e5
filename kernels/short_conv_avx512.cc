// AVX-512 bodies of kernels/short_conv.h. Channels are processed in tiles of
// kTileChannels with the weights transposed to [width, tile] on the stack, so
// that every load is a contiguous 16-channel vector: tokens (or sessions) run
// inside a tile, each touching one short contiguous stretch of every row.
// (Looping 16-channel blocks outside and tokens or sessions inside strides
// through rows a power of two apart and thrashes the caches: 10x slower.)
#include <immintrin.h>

#include <cstdint>

#include "kernels/internal/elementwise_bodies.h"

#if defined(__x86_64__)
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma,f16c")

#include "kernels/internal/avx512_math.h"

namespace linserve::kernels::avx512 {
namespace {

using avx512_math::TailMask;

constexpr int kTileChannels = 256;

// wt[j * kTileChannels + c] = weight[c0 + c, j] for c < nc (zero past nc).
void TransposeWeights(const float* weight, int width, int c0, int nc,
                      float* wt) {
  const __m512i lane =
      _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  const __m512i index = _mm512_mullo_epi32(lane, _mm512_set1_epi32(width));
  for (int c = 0; c < nc; c += 16) {
    const __mmask16 k = TailMask(nc - c < 16 ? nc - c : 16);
    const float* base = weight + static_cast<int64_t>(c0 + c) * width;
    for (int j = 0; j < width; ++j) {
      _mm512_storeu_ps(
          wt + j * kTileChannels + c,
          _mm512_mask_i32gather_ps(_mm512_setzero_ps(), k, index, base + j, 4));
    }
  }
}

__m512 Activate(__m512 v, ConvActivation activation) {
  return activation == ConvActivation::kSilu ? avx512_math::Silu(v) : v;
}

// sum_j wt[j] * src[j] for the 16 channels at offset c, taps in the order
// j = 0 .. width-1 (the same in the whole-sequence and the step body, so the
// two agree bit for bit). Width 4, the hot case, is unrolled.
__m512 Taps(const float* wt, const float* const* src, int width, int c,
            __mmask16 k) {
  if (width == 4) {
    __m512 acc = _mm512_mul_ps(_mm512_loadu_ps(wt + c),
                               _mm512_maskz_loadu_ps(k, src[0] + c));
    acc = _mm512_fmadd_ps(_mm512_loadu_ps(wt + kTileChannels + c),
                          _mm512_maskz_loadu_ps(k, src[1] + c), acc);
    acc = _mm512_fmadd_ps(_mm512_loadu_ps(wt + 2 * kTileChannels + c),
                          _mm512_maskz_loadu_ps(k, src[2] + c), acc);
    return _mm512_fmadd_ps(_mm512_loadu_ps(wt + 3 * kTileChannels + c),
                           _mm512_maskz_loadu_ps(k, src[3] + c), acc);
  }
  __m512 acc = _mm512_mul_ps(_mm512_loadu_ps(wt + c),
                             _mm512_maskz_loadu_ps(k, src[0] + c));
  for (int j = 1; j < width; ++j) {
    acc = _mm512_fmadd_ps(_mm512_loadu_ps(wt + j * kTileChannels + c),
                          _mm512_maskz_loadu_ps(k, src[j] + c), acc);
  }
  return acc;
}

}  // namespace

void CausalShortConv(const float* x, int64_t x_stride, int64_t token_begin,
                     int64_t token_end, int channels, const float* weight,
                     int width, ConvActivation activation, const float* cache,
                     float* y) {
  float wt[kMaxConvWidth * kTileChannels];
  const float* src[kMaxConvWidth];
  for (int c0 = 0; c0 < channels; c0 += kTileChannels) {
    const int nc =
        channels - c0 < kTileChannels ? channels - c0 : kTileChannels;
    TransposeWeights(weight, width, c0, nc, wt);
    for (int64_t t = token_begin; t < token_end; ++t) {
      // Input at time s (relative to this call): x row s, or cache slot
      // width + s for s < 0.
      for (int j = 0; j < width; ++j) {
        const int64_t s = t - width + 1 + j;
        src[j] = s >= 0 ? x + s * x_stride + c0
                        : cache + (width + s) * channels + c0;
      }
      float* yt = y + t * channels + c0;
      for (int c = 0; c < nc; c += 16) {
        const __mmask16 k = TailMask(nc - c < 16 ? nc - c : 16);
        _mm512_mask_storeu_ps(yt + c, k,
                              Activate(Taps(wt, src, width, c, k), activation));
      }
    }
  }
}

void CausalShortConvStep(const float* x, int64_t x_stride, int session_begin,
                         int session_end, int channels, const float* weight,
                         int width, ConvActivation activation,
                         float* const* caches, float* y) {
  float wt[kMaxConvWidth * kTileChannels];
  const float* src[kMaxConvWidth];
  for (int c0 = 0; c0 < channels; c0 += kTileChannels) {
    const int nc =
        channels - c0 < kTileChannels ? channels - c0 : kTileChannels;
    TransposeWeights(weight, width, c0, nc, wt);
    for (int b = session_begin; b < session_end; ++b) {
      float* cache_b = caches[b] + c0;
      // The taps read old slots 1 .. width-1 and the new input.
      for (int j = 0; j + 1 < width; ++j) {
        src[j] = cache_b + static_cast<int64_t>(j + 1) * channels;
      }
      src[width - 1] = x + b * x_stride + c0;
      float* yb = y + static_cast<int64_t>(b) * channels + c0;
      for (int c = 0; c < nc; c += 16) {
        const __mmask16 k = TailMask(nc - c < 16 ? nc - c : 16);
        __m512 acc;
        if (width == 4) {
          // Taps() unrolled with the loaded slots kept for the shift.
          const __m512 v0 = _mm512_maskz_loadu_ps(k, src[0] + c);
          const __m512 v1 = _mm512_maskz_loadu_ps(k, src[1] + c);
          const __m512 v2 = _mm512_maskz_loadu_ps(k, src[2] + c);
          const __m512 v3 = _mm512_maskz_loadu_ps(k, src[3] + c);
          acc = _mm512_mul_ps(_mm512_loadu_ps(wt + c), v0);
          acc =
              _mm512_fmadd_ps(_mm512_loadu_ps(wt + kTileChannels + c), v1, acc);
          acc = _mm512_fmadd_ps(_mm512_loadu_ps(wt + 2 * kTileChannels + c), v2,
                                acc);
          acc = _mm512_fmadd_ps(_mm512_loadu_ps(wt + 3 * kTileChannels + c), v3,
                                acc);
          _mm512_mask_storeu_ps(cache_b + c, k, v0);
          _mm512_mask_storeu_ps(cache_b + channels + c, k, v1);
          _mm512_mask_storeu_ps(cache_b + 2 * channels + c, k, v2);
          _mm512_mask_storeu_ps(cache_b + 3 * channels + c, k, v3);
        } else {
          acc = Taps(wt, src, width, c, k);
          // Shift: slot j takes what the taps read as src[j]; in increasing
          // j, slot j + 1 is read before it is overwritten.
          for (int j = 0; j < width; ++j) {
            _mm512_mask_storeu_ps(
                cache_b + static_cast<int64_t>(j) * channels + c, k,
                _mm512_maskz_loadu_ps(k, src[j] + c));
          }
        }
        _mm512_mask_storeu_ps(yb + c, k, Activate(acc, activation));
      }
    }
  }
}

}  // namespace linserve::kernels::avx512

#endif  // defined(__x86_64__)
