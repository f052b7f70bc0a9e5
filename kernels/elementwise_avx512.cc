// AVX-512 bodies of kernels/elementwise.h: 16 lanes per instruction, masked
// loads and stores for the tail, exp/log1p from internal/avx512_math.h.
#include <immintrin.h>

#include <cstdint>

#include "kernels/internal/elementwise_bodies.h"

#if defined(__x86_64__)
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma,f16c")

#include "kernels/internal/avx512_math.h"

namespace linserve::kernels::avx512 {
namespace {

using avx512_math::InverseSqrt;
using avx512_math::SumOfSquares;
using avx512_math::TailMask;

// y = x * scale (* weight if non-null), one row.
void ScaleRow(const float* x, const float* weight, int dim, float scale,
              float* y) {
  const __m512 s = _mm512_set1_ps(scale);
  int i = 0;
  for (; i + 16 <= dim; i += 16) {
    __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + i), s);
    if (weight != nullptr) v = _mm512_mul_ps(v, _mm512_loadu_ps(weight + i));
    _mm512_storeu_ps(y + i, v);
  }
  if (i < dim) {
    const __mmask16 k = TailMask(dim - i);
    __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), s);
    if (weight != nullptr) {
      v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(k, weight + i));
    }
    _mm512_mask_storeu_ps(y + i, k, v);
  }
}

}  // namespace

void RmsNorm(const float* x, const float* weight, int64_t rows, int dim,
             float eps, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    const float mean = SumOfSquares(xr, dim) / static_cast<float>(dim);
    ScaleRow(xr, weight, dim, InverseSqrt(mean + eps), y + r * dim);
  }
}

void GatedRmsNorm(const float* x, const float* gate, const float* weight,
                  int64_t rows, int dim, float eps, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    const float* gr = gate + r * dim;
    float* yr = y + r * dim;
    const float mean = SumOfSquares(xr, dim) / static_cast<float>(dim);
    const __m512 rstd = _mm512_set1_ps(InverseSqrt(mean + eps));
    for (int i = 0; i < dim; i += 16) {
      const __mmask16 k = TailMask(dim - i < 16 ? dim - i : 16);
      __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, xr + i), rstd);
      if (weight != nullptr) {
        v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(k, weight + i));
      }
      const __m512 g = _mm512_maskz_loadu_ps(k, gr + i);
      _mm512_mask_storeu_ps(yr + i, k, _mm512_mul_ps(v, avx512_math::Silu(g)));
    }
  }
}

void Silu(const float* x, int64_t n, float* y) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(y + i, avx512_math::Silu(_mm512_loadu_ps(x + i)));
  }
  if (i < n) {
    const __mmask16 k = TailMask(n - i);
    _mm512_mask_storeu_ps(y + i, k,
                          avx512_math::Silu(_mm512_maskz_loadu_ps(k, x + i)));
  }
}

void SwiGlu(const float* gate, const float* up, int64_t n, float* y) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 g = avx512_math::Silu(_mm512_loadu_ps(gate + i));
    _mm512_storeu_ps(y + i, _mm512_mul_ps(g, _mm512_loadu_ps(up + i)));
  }
  if (i < n) {
    const __mmask16 k = TailMask(n - i);
    const __m512 g = avx512_math::Silu(_mm512_maskz_loadu_ps(k, gate + i));
    _mm512_mask_storeu_ps(y + i, k,
                          _mm512_mul_ps(g, _mm512_maskz_loadu_ps(k, up + i)));
  }
}

void Sigmoid(const float* x, int64_t n, float* y) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(y + i, avx512_math::Sigmoid(_mm512_loadu_ps(x + i)));
  }
  if (i < n) {
    const __mmask16 k = TailMask(n - i);
    _mm512_mask_storeu_ps(
        y + i, k, avx512_math::Sigmoid(_mm512_maskz_loadu_ps(k, x + i)));
  }
}

namespace {

// max(x, 0) + ln(1 + e^-|x|), and x itself above the threshold 20.
__m512 SoftplusVector(__m512 x) {
  const __m512 y = _mm512_add_ps(_mm512_max_ps(x, _mm512_setzero_ps()),
                                 avx512_math::Log1pExpNegAbs(x));
  const __mmask16 above =
      _mm512_cmp_ps_mask(x, _mm512_set1_ps(20.0f), _CMP_GT_OQ);
  return _mm512_mask_mov_ps(y, above, x);
}

// min(x, 0) - ln(1 + e^-|x|).
__m512 LogSigmoidVector(__m512 x) {
  return _mm512_sub_ps(_mm512_min_ps(x, _mm512_setzero_ps()),
                       avx512_math::Log1pExpNegAbs(x));
}

}  // namespace

void Softplus(const float* x, int64_t n, float* y) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(y + i, SoftplusVector(_mm512_loadu_ps(x + i)));
  }
  if (i < n) {
    const __mmask16 k = TailMask(n - i);
    _mm512_mask_storeu_ps(y + i, k,
                          SoftplusVector(_mm512_maskz_loadu_ps(k, x + i)));
  }
}

void LogSigmoid(const float* x, int64_t n, float* y) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(y + i, LogSigmoidVector(_mm512_loadu_ps(x + i)));
  }
  if (i < n) {
    const __mmask16 k = TailMask(n - i);
    _mm512_mask_storeu_ps(y + i, k,
                          LogSigmoidVector(_mm512_maskz_loadu_ps(k, x + i)));
  }
}

void L2Normalize(const float* x, int64_t rows, int dim, float eps, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    ScaleRow(xr, nullptr, dim, InverseSqrt(SumOfSquares(xr, dim) + eps),
             y + r * dim);
  }
}

void SumNormalize(const float* x, int64_t rows, int dim, float eps, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    // Divide rather than multiply by the reciprocal, as fla does.
    const __m512 denom = _mm512_set1_ps(avx512_math::Sum(xr, dim) + eps);
    for (int i = 0; i < dim; i += 16) {
      const __mmask16 k = TailMask(dim - i < 16 ? dim - i : 16);
      _mm512_mask_storeu_ps(
          yr + i, k, _mm512_div_ps(_mm512_maskz_loadu_ps(k, xr + i), denom));
    }
  }
}

void Scale(const float* x, int64_t n, float scale, float* y) {
  const __m512 s = _mm512_set1_ps(scale);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), s));
  }
  if (i < n) {
    const __mmask16 k = TailMask(n - i);
    _mm512_mask_storeu_ps(y + i, k,
                          _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), s));
  }
}

void Multiply(const float* a, const float* b, int64_t n, float* y) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(
        y + i, _mm512_mul_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)));
  }
  if (i < n) {
    const __mmask16 k = TailMask(n - i);
    _mm512_mask_storeu_ps(y + i, k,
                          _mm512_mul_ps(_mm512_maskz_loadu_ps(k, a + i),
                                        _mm512_maskz_loadu_ps(k, b + i)));
  }
}

void Add(const float* a, const float* b, int64_t n, float* y) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(
        y + i, _mm512_add_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)));
  }
  if (i < n) {
    const __mmask16 k = TailMask(n - i);
    _mm512_mask_storeu_ps(y + i, k,
                          _mm512_add_ps(_mm512_maskz_loadu_ps(k, a + i),
                                        _mm512_maskz_loadu_ps(k, b + i)));
  }
}

}  // namespace linserve::kernels::avx512

#endif  // defined(__x86_64__)
