// Dispatch and portable bodies of the bulk conversions in kernels/bf16.h, and
// the scalar IEEE half decoder.
#include "kernels/bf16.h"

#include <cstdint>
#include <cstring>

#include "kernels/cpu_features.h"
#include "kernels/internal/elementwise_bodies.h"

namespace linserve::kernels {

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1fu) {
    // Inf, or NaN with its payload kept and the quiet bit set (as F16C does).
    bits = sign | 0x7f800000u | (mantissa << 13) | (mantissa ? 0x400000u : 0u);
  } else if (exponent != 0) {
    bits = sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {
    // Subnormal half (mantissa * 2^-24): normal as a float.
    uint32_t float_exponent = 127 - 14;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --float_exponent;
    }
    bits = sign | (float_exponent << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

namespace portable {

void ConvertFloatToBf16(const float* x, int64_t n, bf16_t* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = FloatToBf16(x[i]);
}

void ConvertBf16ToFloat(const bf16_t* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = Bf16ToFloat(x[i]);
}

void ConvertHalfToFloat(const uint16_t* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = HalfToFloat(x[i]);
}

}  // namespace portable

void ConvertFloatToBf16(const float* x, int64_t n, bf16_t* y) {
#if LINSERVE_HAVE_AVX512_BODIES
  if (ActiveKernelIsa() == KernelIsa::kAvx512) {
    return avx512::ConvertFloatToBf16(x, n, y);
  }
#endif
  return portable::ConvertFloatToBf16(x, n, y);
}

void ConvertBf16ToFloat(const bf16_t* x, int64_t n, float* y) {
#if LINSERVE_HAVE_AVX512_BODIES
  if (ActiveKernelIsa() == KernelIsa::kAvx512) {
    return avx512::ConvertBf16ToFloat(x, n, y);
  }
#endif
  return portable::ConvertBf16ToFloat(x, n, y);
}

void ConvertHalfToFloat(const uint16_t* x, int64_t n, float* y) {
#if LINSERVE_HAVE_AVX512_BODIES
  if (ActiveKernelIsa() == KernelIsa::kAvx512) {
    return avx512::ConvertHalfToFloat(x, n, y);
  }
#endif
  return portable::ConvertHalfToFloat(x, n, y);
}

}  // namespace linserve::kernels
