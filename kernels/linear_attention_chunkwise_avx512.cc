// AVX-512 body of ChunkwiseForward: the shared chunk algorithm
// (internal/linear_attention_chunkwise_body.inc) compiled for AVX-512, on top
// of the AVX-512 small GEMM and this file's vector primitives: exp from
// avx512_math.h (libm's scalar expf would dominate GLA's chunk), a transpose
// and a triangular inverse that keeps its row in registers.
#include <immintrin.h>
#include <omp.h>

#include <cstdint>

#include "kernels/internal/linear_attention_chunkwise.h"
#include "kernels/internal/small_gemm.h"
#include "kernels/linear_attention.h"

#if defined(__x86_64__)
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma")

#include "kernels/internal/avx512_math.h"

namespace linserve::kernels::avx512::internal {
namespace chunkwise_body {
namespace {

using ::linserve::kernels::internal::kSmallGemmAccumulate;
using ::linserve::kernels::internal::kSmallGemmLowerA;
using ::linserve::kernels::internal::kSmallGemmLowerC;
using ::linserve::kernels::internal::kSmallGemmOverwrite;

static void Gemm(int m, int n, int k, const float* a, int64_t a_row_stride,
                 int64_t a_col_stride, const float* b, int64_t ldb, float* c,
                 int64_t ldc, int flags) {
  ::linserve::kernels::avx512::internal::SmallGemm(
      m, n, k, a, a_row_stride, a_col_stride, b, ldb, c, ldc, flags);
}

// Lanes [0, count) set, for any count (>= 16: all).
static __mmask16 TailMask(int count) {
  return count >= 16 ? static_cast<__mmask16>(0xFFFF)
                     : static_cast<__mmask16>((1u << count) - 1u);
}

static void ExpInPlace(float* x, int n) {
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(x + i, avx512_math::Exp(_mm512_loadu_ps(x + i)));
  }
  if (i < n) {
    const __mmask16 m = TailMask(n - i);
    _mm512_mask_storeu_ps(x + i, m,
                          avx512_math::Exp(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

static void Transpose(const float* src, int rows, int cols, int64_t lds,
                      float* dst, int64_t ldd) {
  for (int i = 0; i < rows; ++i) {
    for (int j = 0; j < cols; ++j) dst[j * ldd + i] = src[i * lds + j];
  }
}

// a = (I + strict_lower(l))^-1 by forward substitution, a_i = e_i -
// sum_{j<i} l_ij a_j, with 64 columns of row i (4 zmm) held in registers
// while the earlier rows stream by; row j is zero beyond column j, so it
// only touches the columns [t0, j].
static void InvertUnitLower(const float* l, int64_t ldl, int n, float* a,
                            int64_t lda) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int i = 0; i < n; ++i) {
    float* ai = a + i * lda;
    const float* li = l + i * ldl;
    for (int t0 = 0; t0 < n; t0 += 64) {
      // The unit diagonal, if it falls in these columns.
      const int d = i - t0;
      __m512 acc0 = _mm512_maskz_mov_ps(
          d >= 0 && d < 16 ? static_cast<__mmask16>(1u << d) : 0, one);
      __m512 acc1 = _mm512_maskz_mov_ps(
          d >= 16 && d < 32 ? static_cast<__mmask16>(1u << (d - 16)) : 0, one);
      __m512 acc2 = _mm512_maskz_mov_ps(
          d >= 32 && d < 48 ? static_cast<__mmask16>(1u << (d - 32)) : 0, one);
      __m512 acc3 = _mm512_maskz_mov_ps(
          d >= 48 && d < 64 ? static_cast<__mmask16>(1u << (d - 48)) : 0, one);
      for (int j = t0; j < i; ++j) {
        const __m512 lij = _mm512_set1_ps(-li[j]);
        const float* aj = a + j * lda + t0;
        const int live = j - t0 + 1;
        acc0 = _mm512_fmadd_ps(lij, _mm512_maskz_loadu_ps(TailMask(live), aj),
                               acc0);
        if (live > 16) {
          acc1 = _mm512_fmadd_ps(
              lij, _mm512_maskz_loadu_ps(TailMask(live - 16), aj + 16), acc1);
        }
        if (live > 32) {
          acc2 = _mm512_fmadd_ps(
              lij, _mm512_maskz_loadu_ps(TailMask(live - 32), aj + 32), acc2);
        }
        if (live > 48) {
          acc3 = _mm512_fmadd_ps(
              lij, _mm512_maskz_loadu_ps(TailMask(live - 48), aj + 48), acc3);
        }
      }
      const int cols = n - t0;
      _mm512_mask_storeu_ps(ai + t0, TailMask(cols), acc0);
      if (cols > 16)
        _mm512_mask_storeu_ps(ai + t0 + 16, TailMask(cols - 16), acc1);
      if (cols > 32)
        _mm512_mask_storeu_ps(ai + t0 + 32, TailMask(cols - 32), acc2);
      if (cols > 48)
        _mm512_mask_storeu_ps(ai + t0 + 48, TailMask(cols - 48), acc3);
    }
  }
}

#include "kernels/internal/linear_attention_chunkwise_body.inc"

}  // namespace
}  // namespace chunkwise_body

void ChunkwiseForward(
    const ::linserve::kernels::internal::ChunkwiseProblem& problem) {
  chunkwise_body::ChunkwiseAllHeads(problem);
}

}  // namespace linserve::kernels::avx512::internal

#endif  // defined(__x86_64__)
