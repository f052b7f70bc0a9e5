// Dispatch and portable bodies of the bulk conversions in kernels/bf16.h, and
// the scalar IEEE half decoder.
#include "kernels/bf16.h"

#include <cstdint>
#include <cstring>

#include "kernels/cpu_features.h"
#include "kernels/internal/elementwise_bodies.h"
#include "kernels/parallel_for.h"

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

namespace {

// Block boundaries of a parallel split: a multiple of the vector width.
constexpr int64_t kAlign = 64;

bool UseAvx512() {
#if LINSERVE_HAVE_AVX512_BODIES
  return ActiveKernelIsa() == KernelIsa::kAvx512;
#else
  return false;
#endif
}

// Runs the ISA's body of a conversion on blocks of [0, n) over the team.
template <typename From, typename To>
void Convert(void (*portable_body)(const From*, int64_t, To*),
             void (*avx512_body)(const From*, int64_t, To*), const From* x,
             int64_t n, To* y) {
  auto* body =
      avx512_body != nullptr && UseAvx512() ? avx512_body : portable_body;
  ParallelFor(n, kElementwiseGrain, kAlign, [&](int64_t begin, int64_t end) {
    body(x + begin, end - begin, y + begin);
  });
}

#if LINSERVE_HAVE_AVX512_BODIES
#define LINSERVE_AVX512_BODY(name) avx512::name
#else
#define LINSERVE_AVX512_BODY(name) nullptr
#endif

}  // namespace

void ConvertFloatToBf16(const float* x, int64_t n, bf16_t* y) {
  Convert<float, bf16_t>(portable::ConvertFloatToBf16,
                         LINSERVE_AVX512_BODY(ConvertFloatToBf16), x, n, y);
}

void ConvertBf16ToFloat(const bf16_t* x, int64_t n, float* y) {
  Convert<bf16_t, float>(portable::ConvertBf16ToFloat,
                         LINSERVE_AVX512_BODY(ConvertBf16ToFloat), x, n, y);
}

void ConvertHalfToFloat(const uint16_t* x, int64_t n, float* y) {
  Convert<uint16_t, float>(portable::ConvertHalfToFloat,
                           LINSERVE_AVX512_BODY(ConvertHalfToFloat), x, n, y);
}

#undef LINSERVE_AVX512_BODY

}  // namespace linserve::kernels
