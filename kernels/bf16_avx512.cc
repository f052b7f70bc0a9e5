// AVX-512 bodies of the bulk conversions in kernels/bf16.h. Float -> bf16 is
// done with integer ops rather than AVX512-BF16's vcvtneps2bf16, which
// flushes subnormals: the result must equal FloatToBf16 bit for bit.
#include <immintrin.h>

#include <cstdint>

#include "kernels/internal/elementwise_bodies.h"

#if defined(__x86_64__)
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma,f16c")

#include "kernels/internal/avx512_math.h"

namespace linserve::kernels::avx512 {
namespace {

using avx512_math::TailMask;

// Round to nearest even on the raw bits; NaN keeps its sign, gets the quiet
// bit. Returns 16 results in the low halves of the 32-bit lanes.
__m512i FloatBitsToBf16(__m512 v) {
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i lsb =
      _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  const __m512i bias = _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff));
  const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(bits, bias), 16);
  const __m512i quiet_nan =
      _mm512_or_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(0x40));
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  return _mm512_mask_mov_epi32(rounded, nan, quiet_nan);
}

}  // namespace

void ConvertFloatToBf16(const float* x, int64_t n, bf16_t* y) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i r = FloatBitsToBf16(_mm512_loadu_ps(x + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i),
                        _mm512_cvtepi32_epi16(r));
  }
  if (i < n) {
    const __mmask16 k = TailMask(n - i);
    const __m512i r = FloatBitsToBf16(_mm512_maskz_loadu_ps(k, x + i));
    _mm256_mask_storeu_epi16(y + i, k, _mm512_cvtepi32_epi16(r));
  }
}

void ConvertBf16ToFloat(const bf16_t* x, int64_t n, float* y) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    _mm512_storeu_si512(y + i, _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  if (i < n) {
    const __mmask16 k = TailMask(n - i);
    const __m256i h = _mm256_maskz_loadu_epi16(k, x + i);
    _mm512_mask_storeu_ps(
        y + i, k,
        _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
  }
}

void ConvertHalfToFloat(const uint16_t* x, int64_t n, float* y) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    _mm512_storeu_ps(y + i, _mm512_cvtph_ps(h));
  }
  if (i < n) {
    const __mmask16 k = TailMask(n - i);
    _mm512_mask_storeu_ps(y + i, k,
                          _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, x + i)));
  }
}

}  // namespace linserve::kernels::avx512

#endif  // defined(__x86_64__)
