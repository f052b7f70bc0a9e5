// bfloat16 storage type and conversions. Weights may be kept in bf16 (half
// the memory traffic, AMX / AVX512-BF16 GEMM); activations and recurrent state
// are fp32. Rounding float -> bf16 is round-to-nearest-even, NaN stays NaN.
#ifndef LINSERVE_KERNELS_BF16_H_
#define LINSERVE_KERNELS_BF16_H_

#include <cstdint>
#include <cstring>

namespace linserve::kernels {

// The raw 16 bits of a bfloat16 value (the top half of an IEEE float).
using bf16_t = uint16_t;

inline float Bf16ToFloat(bf16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline bf16_t FloatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep it quiet, keep sign.
    return static_cast<bf16_t>((bits >> 16) | 0x40u);
  }
  const uint32_t rounding_bias = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<bf16_t>((bits + rounding_bias) >> 16);
}

// Bulk conversions (AVX-512 bodies where available; large ones run on the
// OpenMP team, kernels/parallel_for.h).
void ConvertFloatToBf16(const float* x, int64_t n, bf16_t* y);
void ConvertBf16ToFloat(const bf16_t* x, int64_t n, float* y);

// IEEE half precision (checkpoints may store f16 tensors).
float HalfToFloat(uint16_t h);
void ConvertHalfToFloat(const uint16_t* x, int64_t n, float* y);

}  // namespace linserve::kernels

#endif  // LINSERVE_KERNELS_BF16_H_
