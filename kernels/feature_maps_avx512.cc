// AVX-512 bodies of kernels/feature_maps.h.
#include <immintrin.h>

#include <cstdint>

#include "kernels/internal/elementwise_bodies.h"

#if defined(__x86_64__)
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma,f16c")

#include "kernels/internal/avx512_math.h"

namespace linserve::kernels::avx512 {
namespace {

using avx512_math::TailMask;

// DPFP rows up to this head dim build u on the stack; wider rows (none in
// practice) take a scalar loop.
constexpr int kMaxDpfpStackDim = 1024;

// Lanes of the chunk starting at i of a length-n row.
__mmask16 ChunkMask(int64_t i, int64_t n) {
  return TailMask(n - i < 16 ? n - i : 16);
}

void DpfpRowScalar(const float* x, int dim, float* phi) {
  const int n2 = 2 * dim;
  for (int j = 1; j <= 4; ++j) {
    float* block = phi + (j - 1) * n2;
    for (int i = 0; i < n2; ++i) {
      const int k = ((i - j) % n2 + n2) % n2;
      const float ri = x[i % dim] > 0.0f ? x[i % dim] : 0.0f;
      const float rk = x[k % dim] > 0.0f ? x[k % dim] : 0.0f;
      const float ui = i < dim ? ri : -ri;
      const float uk = k < dim ? rk : -rk;
      block[i] = ui * uk;
    }
  }
}

}  // namespace

void EluPlusOne(const float* x, int64_t n, float* phi) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = ChunkMask(i, n);
    const __m512 v = _mm512_maskz_loadu_ps(k, x + i);
    const __mmask16 positive =
        _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ);
    const __m512 y = _mm512_mask_add_ps(avx512_math::Exp(v), positive, v, one);
    _mm512_mask_storeu_ps(phi + i, k, y);
  }
}

void Relu(const float* x, int64_t n, float* phi) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(
        phi + i, _mm512_max_ps(_mm512_setzero_ps(), _mm512_loadu_ps(x + i)));
  }
  if (i < n) {
    const __mmask16 k = TailMask(n - i);
    _mm512_mask_storeu_ps(
        phi + i, k,
        _mm512_max_ps(_mm512_setzero_ps(), _mm512_maskz_loadu_ps(k, x + i)));
  }
}

void HedgehogFeatures(const float* a, int64_t rows, int dim, float* phi) {
  const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  const __m512 two = _mm512_set1_ps(2.0f);
  for (int64_t r = 0; r < rows; ++r) {
    const float* ar = a + r * dim;
    float* pos = phi + r * 2 * dim;
    float* neg = pos + dim;
    // The softmax max over [2a, -2a] is 2 max|a|.
    __m512 max_abs = _mm512_setzero_ps();
    for (int i = 0; i < dim; i += 16) {
      const __m512 v = _mm512_maskz_loadu_ps(ChunkMask(i, dim), ar + i);
      max_abs = _mm512_max_ps(max_abs, _mm512_and_ps(v, abs_mask));
    }
    const __m512 shift = _mm512_set1_ps(2.0f * avx512_math::ReduceMax(max_abs));
    __m512 sum = _mm512_setzero_ps();
    for (int i = 0; i < dim; i += 16) {
      const __mmask16 k = ChunkMask(i, dim);
      const __m512 y = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, ar + i), two);
      const __m512 ep =
          _mm512_maskz_mov_ps(k, avx512_math::Exp(_mm512_sub_ps(y, shift)));
      const __m512 en = _mm512_maskz_mov_ps(
          k, avx512_math::Exp(
                 _mm512_sub_ps(_mm512_sub_ps(_mm512_setzero_ps(), y), shift)));
      _mm512_mask_storeu_ps(pos + i, k, ep);
      _mm512_mask_storeu_ps(neg + i, k, en);
      sum = _mm512_add_ps(sum, _mm512_add_ps(ep, en));
    }
    const __m512 inv = _mm512_set1_ps(1.0f / avx512_math::ReduceAdd(sum));
    for (int i = 0; i < 2 * dim; i += 16) {
      const __mmask16 k = ChunkMask(i, 2 * dim);
      _mm512_mask_storeu_ps(
          pos + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, pos + i), inv));
    }
  }
}

void DpfpFeatures(const float* x, int64_t rows, int dim, float* phi) {
  const int n2 = 2 * dim;
  // ext[k] = u[(k - 4) mod 2d]: the four wrapped entries first, so block j
  // reads u[(i - j) mod 2d] as the plain slice ext[4 + i - j].
  float ext[2 * kMaxDpfpStackDim + 4];
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* pr = phi + r * 8 * dim;
    if (dim > kMaxDpfpStackDim) {
      DpfpRowScalar(xr, dim, pr);
      continue;
    }
    float* u = ext + 4;
    for (int i = 0; i < dim; i += 16) {
      const __mmask16 k = ChunkMask(i, dim);
      const __m512 relu =
          _mm512_max_ps(_mm512_setzero_ps(), _mm512_maskz_loadu_ps(k, xr + i));
      _mm512_mask_storeu_ps(u + i, k, relu);
      _mm512_mask_storeu_ps(u + dim + i, k,
                            _mm512_sub_ps(_mm512_setzero_ps(), relu));
    }
    for (int k = 0; k < 4; ++k) ext[k] = u[((k - 4) % n2 + n2) % n2];
    for (int j = 1; j <= 4; ++j) {
      float* block = pr + (j - 1) * n2;
      const float* rolled = u - j;
      for (int i = 0; i < n2; i += 16) {
        const __mmask16 k = ChunkMask(i, n2);
        _mm512_mask_storeu_ps(
            block + i, k,
            _mm512_mul_ps(_mm512_maskz_loadu_ps(k, u + i),
                          _mm512_maskz_loadu_ps(k, rolled + i)));
      }
    }
  }
}

void PerformerFeatures(const float* x, const float* projected, int64_t rows,
                       int dim, int num_features,
                       PerformerStabilizer stabilizer, float constant,
                       float eps, float* phi) {
  const float inv_sqrt_dim = avx512_math::InverseSqrt(static_cast<float>(dim));
  const __m512 scale = _mm512_set1_ps(
      avx512_math::InverseSqrt(static_cast<float>(num_features)));
  const __m512 eps_v = _mm512_set1_ps(eps);
  const int m = num_features;
  for (int64_t r = 0; r < rows; ++r) {
    const float* pr = projected + r * m;
    float* out = phi + r * m;
    // |dim^-1/4 x|^2 / 2 = sum(x^2) / 2 * dim^-1/2 (performer-pytorch's order).
    const __m512 h = _mm512_set1_ps(
        avx512_math::SumOfSquares(x + r * dim, dim) * 0.5f * inv_sqrt_dim);
    const __m512 stab = _mm512_set1_ps(
        stabilizer == PerformerStabilizer::kRowMax ? avx512_math::Max(pr, m)
                                                   : constant);
    for (int i = 0; i < m; i += 16) {
      const __mmask16 k = ChunkMask(i, m);
      const __m512 arg = _mm512_sub_ps(
          _mm512_sub_ps(_mm512_maskz_loadu_ps(k, pr + i), h), stab);
      const __m512 y =
          _mm512_mul_ps(scale, _mm512_add_ps(avx512_math::Exp(arg), eps_v));
      _mm512_mask_storeu_ps(out + i, k, y);
    }
  }
}

}  // namespace linserve::kernels::avx512

#endif  // defined(__x86_64__)
