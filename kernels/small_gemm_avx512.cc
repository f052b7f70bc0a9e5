// AVX-512 body of the small GEMM of kernels/internal/small_gemm.h: a register
// tile of up to 8 rows x 32 columns of C (16 zmm accumulators, enough
// independent FMA chains to cover the FMA latency on two pipes), fed by two
// row loads of B and one broadcast of A per row and step of p. The operands
// of a chunk live in L1/L2, so nothing is packed: B panels of 32 columns stay
// in L1 while the tiles of rows sweep them. Column remainders use masks.
#include <immintrin.h>

#include <cstdint>

#include "kernels/internal/small_gemm.h"

#if defined(__x86_64__)
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma")

namespace linserve::kernels::avx512::internal {
namespace {

using ::linserve::kernels::internal::kSmallGemmAccumulate;
using ::linserve::kernels::internal::kSmallGemmLowerA;
using ::linserve::kernels::internal::kSmallGemmLowerC;

constexpr int kTileRows = 8;
constexpr int kTileCols = 32;

// C tile [MR x (16 * NV)] (+)= A rows x B panel over p in [0, k). A is either
// row-major (A(r, p) = a[r * lda + p]) or transposed (A(r, p) = a[p * lda +
// r]). m0/m1 mask the columns of the two 16-float halves.
template <int MR, int NV, bool kTransposedA>
static void Tile(int k, const float* a, int64_t lda, const float* b,
                 int64_t ldb, float* c, int64_t ldc, __mmask16 m0, __mmask16 m1,
                 bool accumulate) {
  // Every loop over r and v is unrolled: only then does GCC (-O2) keep acc in
  // registers; otherwise it lives on the stack at a third of the speed.
  __m512 acc[MR][NV];
  if (accumulate) {
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      acc[r][0] = _mm512_maskz_loadu_ps(m0, c + r * ldc);
      if (NV == 2) acc[r][NV - 1] = _mm512_maskz_loadu_ps(m1, c + r * ldc + 16);
    }
  } else {
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
    }
  }
  if (kTransposedA) {
    for (int p = 0; p < k; ++p) {
      const __m512 b0 = _mm512_maskz_loadu_ps(m0, b);
      const __m512 b1 =
          NV == 2 ? _mm512_maskz_loadu_ps(m1, b + 16) : _mm512_setzero_ps();
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        const __m512 ar = _mm512_set1_ps(a[r]);
        acc[r][0] = _mm512_fmadd_ps(ar, b0, acc[r][0]);
        if (NV == 2) acc[r][NV - 1] = _mm512_fmadd_ps(ar, b1, acc[r][NV - 1]);
      }
      a += lda;
      b += ldb;
    }
  } else {
    const float* rows[MR];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) rows[r] = a + r * lda;
    for (int p = 0; p < k; ++p) {
      const __m512 b0 = _mm512_maskz_loadu_ps(m0, b);
      const __m512 b1 =
          NV == 2 ? _mm512_maskz_loadu_ps(m1, b + 16) : _mm512_setzero_ps();
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        const __m512 ar = _mm512_set1_ps(rows[r][p]);
        acc[r][0] = _mm512_fmadd_ps(ar, b0, acc[r][0]);
        if (NV == 2) acc[r][NV - 1] = _mm512_fmadd_ps(ar, b1, acc[r][NV - 1]);
      }
      b += ldb;
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    _mm512_mask_storeu_ps(c + r * ldc, m0, acc[r][0]);
    if (NV == 2) _mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc[r][NV - 1]);
  }
}

using TileFn = void (*)(int, const float*, int64_t, const float*, int64_t,
                        float*, int64_t, __mmask16, __mmask16, bool);

template <int MR>
static TileFn PickTile(int nv, bool transposed_a) {
  if (transposed_a) {
    return nv == 2 ? &Tile<MR, 2, true> : &Tile<MR, 1, true>;
  }
  return nv == 2 ? &Tile<MR, 2, false> : &Tile<MR, 1, false>;
}

static TileFn TileFor(int rows, int nv, bool transposed_a) {
  switch (rows) {
    case 1:
      return PickTile<1>(nv, transposed_a);
    case 2:
      return PickTile<2>(nv, transposed_a);
    case 3:
      return PickTile<3>(nv, transposed_a);
    case 4:
      return PickTile<4>(nv, transposed_a);
    case 5:
      return PickTile<5>(nv, transposed_a);
    case 6:
      return PickTile<6>(nv, transposed_a);
    case 7:
      return PickTile<7>(nv, transposed_a);
    default:
      return PickTile<8>(nv, transposed_a);
  }
}

static __mmask16 MaskOf(int count) {
  if (count >= 16) return 0xFFFF;
  if (count <= 0) return 0;
  return static_cast<__mmask16>((1u << count) - 1u);
}

static int MinInt(int x, int y) { return x < y ? x : y; }

}  // namespace

void SmallGemm(int m, int n, int k, const float* a, int64_t a_row_stride,
               int64_t a_col_stride, const float* b, int64_t ldb, float* c,
               int64_t ldc, int flags) {
  const bool accumulate = (flags & kSmallGemmAccumulate) != 0;
  const bool lower_a = (flags & kSmallGemmLowerA) != 0;
  const bool lower_c = (flags & kSmallGemmLowerC) != 0;
  // Unit column stride: row-major A. Otherwise A is read transposed, and its
  // row stride must be 1 (that is how the chunk bodies call it).
  const bool transposed_a = a_col_stride != 1;
  const int64_t lda = transposed_a ? a_col_stride : a_row_stride;
  for (int j0 = 0; j0 < n; j0 += kTileCols) {
    for (int i0 = 0; i0 < m; i0 += kTileRows) {
      const int rows = MinInt(kTileRows, m - i0);
      const int last = i0 + rows - 1;
      const int n_end = lower_c ? MinInt(n, last + 1) : n;
      if (j0 >= n_end) continue;
      const int cols = MinInt(kTileCols, n_end - j0);
      const int k_end = lower_a ? MinInt(k, last + 1) : k;
      const float* a_tile =
          transposed_a ? a + i0 : a + static_cast<int64_t>(i0) * lda;
      float* c_tile = c + static_cast<int64_t>(i0) * ldc + j0;
      if (k_end <= 0) {
        // An empty sum: C = 0 (or unchanged when accumulating).
        if (!accumulate) {
          for (int r = 0; r < rows; ++r) {
            for (int j = 0; j < cols; ++j) c_tile[r * ldc + j] = 0.0f;
          }
        }
        continue;
      }
      TileFn tile = TileFor(rows, cols > 16 ? 2 : 1, transposed_a);
      tile(k_end, a_tile, lda, b + j0, ldb, c_tile, ldc, MaskOf(cols),
           MaskOf(cols - 16), accumulate);
    }
  }
}

}  // namespace linserve::kernels::avx512::internal

#endif  // defined(__x86_64__)
