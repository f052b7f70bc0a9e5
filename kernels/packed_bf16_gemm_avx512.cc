// AVX-512 body of the packed bf16 GEMM of kernels/internal/packed_bf16_gemm.h.
// A register tile of up to 4 rows x 64 columns (16 zmm accumulators, kept in
// registers by unrolling the row and column loops fully): per k
// pair, up to four 64-byte lines of weights are loaded once and feed every
// row of the tile, each row's pair of x values broadcast to all lanes. With
// AVX512-BF16 a tile step is one VDPBF16PS per accumulator; without it, the
// same arithmetic in two FMAs (odd element first), so both agree bitwise.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/internal/packed_bf16_gemm.h"

#if defined(__x86_64__)
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,fma")

namespace linserve::kernels::avx512::internal {
namespace {

using ::linserve::kernels::internal::kPackedColumnGroup;
using ::linserve::kernels::internal::PackedBf16Weights;

constexpr int kTileRows = 4;

inline int32_t LoadPair(const bf16_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// y[R rows, NQ groups of 16 columns starting at w_base's column] over every
// k pair. `cols` is the number of valid columns (masks the last group).
template <int R, int NQ, bool kNative>
void Tile(const bf16_t* x, int64_t ldx, int pairs, const bf16_t* w_base,
          int64_t pair_stride, const float* bias, float* y, int64_t ldy,
          int cols) {
  __m512 acc[R][NQ];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int q = 0; q < NQ; ++q) acc[r][q] = _mm512_setzero_ps();
  }
  const __m512i high_half = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  for (int p = 0; p < pairs; ++p) {
    const bf16_t* wp = w_base + p * pair_stride;
    __m512i wv[NQ];
#pragma GCC unroll 4
    for (int q = 0; q < NQ; ++q) {
      wv[q] = _mm512_loadu_si512(wp + q * 2 * kPackedColumnGroup);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512i xv = _mm512_set1_epi32(LoadPair(x + r * ldx + 2 * p));
      if constexpr (kNative) {
#pragma GCC unroll 4
        for (int q = 0; q < NQ; ++q) {
          acc[r][q] =
              _mm512_dpbf16_ps(acc[r][q], (__m512bh)wv[q], (__m512bh)xv);
        }
      } else {
        const __m512 x_odd =
            _mm512_castsi512_ps(_mm512_and_si512(xv, high_half));
        const __m512 x_even = _mm512_castsi512_ps(_mm512_slli_epi32(xv, 16));
#pragma GCC unroll 4
        for (int q = 0; q < NQ; ++q) {
          const __m512 w_odd =
              _mm512_castsi512_ps(_mm512_and_si512(wv[q], high_half));
          const __m512 w_even =
              _mm512_castsi512_ps(_mm512_slli_epi32(wv[q], 16));
          acc[r][q] = _mm512_fmadd_ps(w_odd, x_odd, acc[r][q]);
          acc[r][q] = _mm512_fmadd_ps(w_even, x_even, acc[r][q]);
        }
      }
    }
  }
#pragma GCC unroll 4
  for (int q = 0; q < NQ; ++q) {
    const int valid =
        std::clamp(cols - q * kPackedColumnGroup, 0, kPackedColumnGroup);
    if (valid == 0) break;
    const __mmask16 mask = static_cast<__mmask16>((1u << valid) - 1u);
    const __m512 b = bias != nullptr
                         ? _mm512_maskz_loadu_ps(mask, bias + q * 16)
                         : _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512 out =
          bias != nullptr ? _mm512_add_ps(acc[r][q], b) : acc[r][q];
      _mm512_mask_storeu_ps(y + r * ldy + q * 16, mask, out);
    }
  }
}

using TileFn = void (*)(const bf16_t*, int64_t, int, const bf16_t*, int64_t,
                        const float*, float*, int64_t, int);

template <bool kNative>
TileFn PickTile(int rows, int groups) {
  static constexpr TileFn kTiles[kTileRows][4] = {
      {Tile<1, 1, kNative>, Tile<1, 2, kNative>, Tile<1, 3, kNative>,
       Tile<1, 4, kNative>},
      {Tile<2, 1, kNative>, Tile<2, 2, kNative>, Tile<2, 3, kNative>,
       Tile<2, 4, kNative>},
      {Tile<3, 1, kNative>, Tile<3, 2, kNative>, Tile<3, 3, kNative>,
       Tile<3, 4, kNative>},
      {Tile<4, 1, kNative>, Tile<4, 2, kNative>, Tile<4, 3, kNative>,
       Tile<4, 4, kNative>},
  };
  return kTiles[rows - 1][groups - 1];
}

}  // namespace

void PackedBf16Gemm(const bf16_t* x, int64_t ldx, int m,
                    const PackedBf16Weights& w, const float* bias, float* y,
                    int64_t ldy, int group_begin, int group_end,
                    bool native_bf16) {
  constexpr int G = kPackedColumnGroup;
  const int pairs = w.k_padded / 2;
  const int64_t pair_stride = int64_t{2} * w.n_block;
  const int groups_per_block = w.n_block / G;
  int g = group_begin;
  while (g < group_end) {
    // A run of groups inside one block of NB columns.
    const int block = g / groups_per_block;
    const int first = g % groups_per_block;
    const int run = std::min({groups_per_block - first, group_end - g, 4});
    const int col0 = g * G;
    const bf16_t* base = w.data + block * w.n_block_stride + first * 2 * G;
    const int cols = std::min(run * G, w.n - col0);
    for (int r0 = 0; r0 < m; r0 += kTileRows) {
      const int rows = std::min(kTileRows, m - r0);
      const TileFn tile =
          native_bf16 ? PickTile<true>(rows, run) : PickTile<false>(rows, run);
      tile(x + r0 * ldx, ldx, pairs, base, pair_stride,
           bias != nullptr ? bias + col0 : nullptr, y + r0 * ldy + col0, ldy,
           cols);
    }
    g += run;
  }
}

}  // namespace linserve::kernels::avx512::internal

#endif  // defined(__x86_64__)
