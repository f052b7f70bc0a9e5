// bf16 and IEEE half conversions (kernels/bf16.h) against reference decoders
// that work from the definitions, and the embedding gather
// (kernels/embedding.h) for fp32 and bf16 tables.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/bf16.h"
#include "kernels/cpu_features.h"
#include "kernels/embedding.h"
#include "kernels/reference/elementwise_reference.h"
#include "tests/kernels/elementwise_test_util.h"
#include "tests/test_util.h"

namespace linserve::kernels {
namespace {

using ::linserve::testing::FirstMismatch;
using ::linserve::testing::KernelIsasToTest;
using ::linserve::testing::RandomVector;

float FromBits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

uint32_t ToBits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}

// Floats that probe rounding: every exponent (subnormals, the largest finite
// values, inf, NaN with and without payload), each with low halves at and
// around the tie 0x8000, plus random bit patterns.
std::vector<float> RoundingProbes() {
  std::vector<float> v;
  std::mt19937 rng(7);
  for (uint32_t sign : {0u, 0x80000000u}) {
    for (uint32_t exponent = 0; exponent <= 255; ++exponent) {
      for (uint32_t high_mantissa : {0u, 1u, 2u, 0x3fu, 0x40u, 0x7eu, 0x7fu}) {
        for (uint32_t low : {0x0000u, 0x0001u, 0x7fffu, 0x8000u, 0x8001u,
                             0xffffu, static_cast<uint32_t>(rng() & 0xffffu)}) {
          v.push_back(
              FromBits(sign | (exponent << 23) | (high_mantissa << 16) | low));
        }
      }
    }
  }
  for (int i = 0; i < 20000; ++i)
    v.push_back(FromBits(static_cast<uint32_t>(rng())));
  return v;
}

TEST_CASE("FloatToBf16 rounds to nearest even, overflowing to inf, NaN quiet",
          "[bf16]") {
  int mismatches = 0;
  for (float f : RoundingProbes()) {
    const bf16_t got = FloatToBf16(f);
    const bf16_t want = reference::FloatToBf16(f);
    if (got != want) {
      if (++mismatches <= 5) {
        FAIL_CHECK("float bits " << std::hex << ToBits(f) << ": got " << got
                                 << ", want " << want);
      }
    }
  }
  CHECK(mismatches == 0);
  // Hand-picked: ties go to the even neighbour, FLT_MAX rounds up to inf.
  CHECK(FloatToBf16(FromBits(0x3f808000u)) == 0x3f80);  // tie, even below
  CHECK(FloatToBf16(FromBits(0x3f818000u)) == 0x3f82);  // tie, even above
  CHECK(FloatToBf16(FromBits(0x7f7fffffu)) == 0x7f80);
  CHECK(FloatToBf16(FromBits(0x00008001u)) == 0x0001);  // subnormal rounds up
  CHECK(FloatToBf16(FromBits(0xff800001u)) == 0xffc0);  // -sNaN -> -qNaN
}

TEST_CASE("ConvertFloatToBf16 equals FloatToBf16 bit for bit for every body",
          "[bf16]") {
  const std::vector<float> probes = RoundingProbes();
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    INFO("kernel body " << KernelIsaName(isa));
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{16}, int64_t{33},
                      static_cast<int64_t>(probes.size())}) {
      INFO("n = " << n);
      // One extra slot that must stay untouched.
      std::vector<bf16_t> got(n + 1, 0xabcd);
      ConvertFloatToBf16(probes.data(), n, got.data());
      int64_t first_bad = -1;
      for (int64_t i = 0; i < n && first_bad < 0; ++i) {
        if (got[i] != FloatToBf16(probes[i])) first_bad = i;
      }
      CHECK(first_bad == -1);
      CHECK(got[n] == 0xabcd);
    }
  }
}

TEST_CASE("ConvertBf16ToFloat is exact for all 65536 bf16 values", "[bf16]") {
  std::vector<bf16_t> all(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<bf16_t>(i);
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    INFO("kernel body " << KernelIsaName(isa));
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{33}, int64_t{65536}}) {
      std::vector<float> got(n + 1, 5.0f);
      ConvertBf16ToFloat(all.data(), n, got.data());
      int64_t first_bad = -1;
      for (int64_t i = 0; i < n && first_bad < 0; ++i) {
        if (ToBits(got[i]) != (static_cast<uint32_t>(all[i]) << 16)) {
          first_bad = i;
        }
      }
      CHECK(first_bad == -1);
      CHECK(got[n] == 5.0f);
    }
  }
}

TEST_CASE("HalfToFloat decodes all 65536 halves: subnormals, inf and NaN",
          "[bf16]") {
  int mismatches = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const float got = HalfToFloat(static_cast<uint16_t>(h));
    const float want = reference::HalfToFloat(static_cast<uint16_t>(h));
    const bool same = std::isnan(want)
                          ? std::isnan(got) && std::signbit(got) ==
                                                   static_cast<bool>(h & 0x8000)
                          : ToBits(got) == ToBits(want);
    if (!same && ++mismatches <= 5) {
      FAIL_CHECK("half " << std::hex << h << ": got " << got << ", want "
                         << want);
    }
  }
  CHECK(mismatches == 0);
  CHECK(HalfToFloat(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(HalfToFloat(0x7bff) == 65504.0f);               // largest finite
  CHECK(HalfToFloat(0xfc00) == -INFINITY);
  CHECK(std::isnan(HalfToFloat(0x7c01)));
}

TEST_CASE("ConvertHalfToFloat equals HalfToFloat for all 65536 halves",
          "[bf16]") {
  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    INFO("kernel body " << KernelIsaName(isa));
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{33}, int64_t{65536}}) {
      std::vector<float> got(n + 1, 5.0f);
      ConvertHalfToFloat(all.data(), n, got.data());
      int64_t first_bad = -1;
      for (int64_t i = 0; i < n && first_bad < 0; ++i) {
        // Bit for bit, NaN payloads included.
        if (ToBits(got[i]) != ToBits(HalfToFloat(all[i]))) first_bad = i;
      }
      INFO("first mismatching half " << first_bad);
      CHECK(first_bad == -1);
      CHECK(got[n] == 5.0f);
    }
  }
}

TEST_CASE("GatherRows copies the rows of fp32 and bf16 tables",
          "[bf16][embedding]") {
  const int vocab = 50;
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    INFO("kernel body " << KernelIsaName(isa));
    for (int dim : {1, 7, 16, 64, 100}) {
      const std::vector<float> table = RandomVector(int64_t{vocab} * dim, dim);
      std::vector<bf16_t> table_bf16(table.size());
      for (size_t i = 0; i < table.size(); ++i) {
        table_bf16[i] = FloatToBf16(table[i]);
      }
      // Repeated ids, first and last rows.
      const std::vector<int32_t> ids = {3, 0, 49, 3, 17};
      for (int64_t n : {0, 1, 5}) {
        INFO("dim " << dim << " n " << n);
        std::vector<float> want(n * dim);
        std::vector<float> got(n * dim, -7.0f);
        reference::GatherRows(table.data(), dim, ids.data(), n, want.data());
        GatherRows(table.data(), dim, ids.data(), n, got.data());
        CHECK(FirstMismatch(got, want, 0.0f, 0.0f) == "");
        reference::GatherRows(table_bf16.data(), dim, ids.data(), n,
                              want.data());
        GatherRows(table_bf16.data(), dim, ids.data(), n, got.data());
        CHECK(FirstMismatch(got, want, 0.0f, 0.0f) == "");
      }
    }
  }
}

}  // namespace
}  // namespace linserve::kernels
