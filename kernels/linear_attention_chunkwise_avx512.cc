// AVX-512 body of ChunkwiseForward: the shared chunk algorithm
// (internal/linear_attention_chunkwise_body.inc) compiled for AVX-512, on top
// of the AVX-512 small GEMM and this file's vector primitives: exp from
// avx512_math.h (libm's scalar expf would dominate GLA's chunk) fused with
// the multiplies around it, a 16 x 16 register transpose and a triangular
// inverse that keeps its row in registers.
#include <immintrin.h>
#include <omp.h>

#include <cstdint>

#include "kernels/internal/linear_attention_chunkwise.h"
#include "kernels/internal/omp_team.h"
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

// out[i] = m[i] * e^{x[i] - y[i]} (y null: 0): one pass where a separate
// exp and multiply would stream the buffer twice.
static void ExpDiffMul(const float* x, const float* y, const float* m, int n,
                       float* out) {
  for (int i = 0; i < n; i += 16) {
    const __mmask16 k = TailMask(n - i);
    __m512 e = _mm512_maskz_loadu_ps(k, x + i);
    if (y != nullptr) e = _mm512_sub_ps(e, _mm512_maskz_loadu_ps(k, y + i));
    _mm512_mask_storeu_ps(
        out + i, k,
        _mm512_mul_ps(_mm512_maskz_loadu_ps(k, m + i), avx512_math::Exp(e)));
  }
}

// out[i] = m[i] * e^{x0 - y[i]}.
static void ScalarExpDiffMul(float x0, const float* y, const float* m, int n,
                             float* out) {
  const __m512 vx = _mm512_set1_ps(x0);
  for (int i = 0; i < n; i += 16) {
    const __mmask16 k = TailMask(n - i);
    const __m512 e = _mm512_sub_ps(vx, _mm512_maskz_loadu_ps(k, y + i));
    _mm512_mask_storeu_ps(
        out + i, k,
        _mm512_mul_ps(_mm512_maskz_loadu_ps(k, m + i), avx512_math::Exp(e)));
  }
}

// In-register transpose of 16 rows of 16 floats: r[c] becomes column c.
static void Transpose16x16(__m512* r) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  // u[4g + e] holds, in 128-bit lane L, column 4L + e of rows 4g..4g+3.
  __m512 u[16];
  for (int g = 0; g < 16; g += 4) {
    const __m512d a = _mm512_castps_pd(t[g]);
    const __m512d b = _mm512_castps_pd(t[g + 1]);
    const __m512d c = _mm512_castps_pd(t[g + 2]);
    const __m512d d = _mm512_castps_pd(t[g + 3]);
    u[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    u[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    u[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    u[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  // Column 4L + e gathers lane L of u[e], u[4 + e], u[8 + e], u[12 + e].
  for (int e = 0; e < 4; ++e) {
    const __m512 v0 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0x88);
    const __m512 v1 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0xDD);
    const __m512 w0 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0x88);
    const __m512 w1 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0xDD);
    r[e] = _mm512_shuffle_f32x4(v0, w0, 0x88);
    r[4 + e] = _mm512_shuffle_f32x4(v1, w1, 0x88);
    r[8 + e] = _mm512_shuffle_f32x4(v0, w0, 0xDD);
    r[12 + e] = _mm512_shuffle_f32x4(v1, w1, 0xDD);
  }
}

// 16 x 16 tiles through registers (edge tiles masked): a scalar transpose
// writes every float to a different cache line of dst.
static void Transpose(const float* src, int rows, int cols, int64_t lds,
                      float* dst, int64_t ldd) {
  for (int i0 = 0; i0 < rows; i0 += 16) {
    const int tile_rows = rows - i0 < 16 ? rows - i0 : 16;
    const __mmask16 row_mask = TailMask(tile_rows);
    for (int j0 = 0; j0 < cols; j0 += 16) {
      const int tile_cols = cols - j0 < 16 ? cols - j0 : 16;
      const __mmask16 col_mask = TailMask(tile_cols);
      __m512 r[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) {
        r[i] = i < tile_rows
                   ? _mm512_maskz_loadu_ps(col_mask, src + (i0 + i) * lds + j0)
                   : _mm512_setzero_ps();
      }
      Transpose16x16(r);
#pragma GCC unroll 16
      for (int j = 0; j < 16; ++j) {
        if (j < tile_cols) {
          _mm512_mask_storeu_ps(dst + (j0 + j) * ldd + i0, row_mask, r[j]);
        }
      }
    }
  }
}

// The output rows are written once per call and read by the next layer, not
// by this chunk: when `stream` (a large output), non-temporal stores skip
// reading each line before writing it (half of the output's memory traffic,
// and the stall on it). They can only write whole 64-byte lines, so a row's
// partial first and last lines (shared with the neighbouring heads' rows when
// out is not 64-byte aligned) take ordinary stores.
static void StoreRows(const float* x, int64_t ldx, const float* factor,
                      int rows, int width, float* out, int64_t ldo,
                      bool stream) {
  if (!stream) {
    for (int i = 0; i < rows; ++i) {
      const __m512 f = _mm512_set1_ps(factor != nullptr ? factor[i] : 1.0f);
      for (int j = 0; j < width; j += 16) {
        const __mmask16 m = TailMask(width - j);
        _mm512_mask_storeu_ps(
            out + i * ldo + j, m,
            _mm512_mul_ps(f, _mm512_maskz_loadu_ps(m, x + i * ldx + j)));
      }
    }
    return;
  }
  for (int i = 0; i < rows; ++i) {
    const float* src = x + i * ldx;
    float* dst = out + i * ldo;
    const __m512 f = _mm512_set1_ps(factor != nullptr ? factor[i] : 1.0f);
    // Floats before dst's first line boundary.
    int j = static_cast<int>(
        ((64 - (reinterpret_cast<uintptr_t>(dst) & 63)) & 63) / 4);
    if (j > width) j = width;
    if (j > 0) {
      const __mmask16 m = TailMask(j);
      _mm512_mask_storeu_ps(dst, m,
                            _mm512_mul_ps(f, _mm512_maskz_loadu_ps(m, src)));
    }
    for (; j + 16 <= width; j += 16) {
      _mm512_stream_ps(dst + j, _mm512_mul_ps(f, _mm512_loadu_ps(src + j)));
    }
    if (j < width) {
      const __mmask16 m = TailMask(width - j);
      _mm512_mask_storeu_ps(
          dst + j, m, _mm512_mul_ps(f, _mm512_maskz_loadu_ps(m, src + j)));
    }
  }
  // Streaming stores are weakly ordered: make them visible before the
  // caller's threads join.
  _mm_sfence();
}

// Masked vector stores: row i's zeros start at an arbitrary column.
static void ZeroAboveDiagonal(float* p, int64_t ldp, int rows, int n) {
  const __m512 zero = _mm512_setzero_ps();
  for (int i = 0; i < rows; ++i) {
    float* row = p + i * ldp;
    for (int j = i + 1; j < n; j += 16) {
      _mm512_mask_storeu_ps(row + j, TailMask(n - j), zero);
    }
  }
}

// acc += lij * a_j over the `live` leading columns of a_j (at most 64).
static inline __attribute__((always_inline)) void AddScaledRow(
    float lij, const float* aj, int live, __m512& acc0, __m512& acc1,
    __m512& acc2, __m512& acc3) {
  const __m512 f = _mm512_set1_ps(lij);
  acc0 = _mm512_fmadd_ps(f, _mm512_maskz_loadu_ps(TailMask(live), aj), acc0);
  if (live > 16) {
    acc1 = _mm512_fmadd_ps(
        f, _mm512_maskz_loadu_ps(TailMask(live - 16), aj + 16), acc1);
  }
  if (live > 32) {
    acc2 = _mm512_fmadd_ps(
        f, _mm512_maskz_loadu_ps(TailMask(live - 32), aj + 32), acc2);
  }
  if (live > 48) {
    acc3 = _mm512_fmadd_ps(
        f, _mm512_maskz_loadu_ps(TailMask(live - 48), aj + 48), acc3);
  }
}

// a = (I + strict_lower(l))^-1 by forward substitution, a_i = e_i -
// sum_{j<i} l_ij a_j, with 64 columns of row i (4 zmm) held in registers
// while the earlier rows stream by; row j is zero beyond column j, so it
// only touches the columns [t0, j]. The sum is latency-bound (each FMA waits
// for the previous one on the same register), so even and odd j accumulate
// in separate registers: twice the independent chains.
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
      __m512 odd0 = _mm512_setzero_ps();
      __m512 odd1 = _mm512_setzero_ps();
      __m512 odd2 = _mm512_setzero_ps();
      __m512 odd3 = _mm512_setzero_ps();
      int j = t0;
      for (; j + 1 < i; j += 2) {
        AddScaledRow(-li[j], a + j * lda + t0, j - t0 + 1, acc0, acc1, acc2,
                     acc3);
        AddScaledRow(-li[j + 1], a + (j + 1) * lda + t0, j - t0 + 2, odd0, odd1,
                     odd2, odd3);
      }
      if (j < i) {
        AddScaledRow(-li[j], a + j * lda + t0, j - t0 + 1, acc0, acc1, acc2,
                     acc3);
      }
      acc0 = _mm512_add_ps(acc0, odd0);
      acc1 = _mm512_add_ps(acc1, odd1);
      acc2 = _mm512_add_ps(acc2, odd2);
      acc3 = _mm512_add_ps(acc3, odd3);
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
