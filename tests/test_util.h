// Helpers shared by the tests: seeded random tensors and error measures.
//
//   std::vector<float> x = RandomVector(n, /*seed=*/7);
//   CHECK(MaxAbsDiff(got, want) <= 1e-5f);
//   for (KernelIsa isa : KernelIsasToTest()) { ScopedKernelIsa scope(isa); ...}
#ifndef LINSERVE_TESTS_TEST_UTIL_H_
#define LINSERVE_TESTS_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cpu_features.h"

namespace linserve::testing {

// Uniform values in [lo, hi), reproducible from the seed.
inline std::vector<float> RandomVector(int64_t n, uint64_t seed,
                                       float lo = -1.0f, float hi = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Normal values with the given standard deviation.
inline std::vector<float> RandomNormal(int64_t n, uint64_t seed,
                                       float stddev = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

inline float MaxAbsDiff(const std::vector<float>& a,
                        const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  float m = 0.0f;
  for (size_t i = 0; i < a.size(); ++i) {
    const float d = std::fabs(a[i] - b[i]);
    if (!(d <= m)) m = d;  // NaN propagates as a failure.
  }
  return m;
}

inline float MaxAbs(const std::vector<float>& a) {
  float m = 0.0f;
  for (float x : a) m = std::max(m, std::fabs(x));
  return m;
}

// max |a - b| / max(1, max |b|): an error relative to the data's scale.
inline float MaxScaledDiff(const std::vector<float>& a,
                           const std::vector<float>& b) {
  return MaxAbsDiff(a, b) / std::max(1.0f, MaxAbs(b));
}

inline bool AllFinite(const std::vector<float>& a) {
  return std::all_of(a.begin(), a.end(),
                     [](float x) { return std::isfinite(x); });
}

// Every kernel body this CPU and the environment allow, portable first.
// Honours LINSERVE_KERNEL_ISA=portable (then only the portable body).
inline std::vector<kernels::KernelIsa> KernelIsasToTest() {
  std::vector<kernels::KernelIsa> isas = {kernels::KernelIsa::kPortable};
  if (kernels::ActiveKernelIsa() == kernels::KernelIsa::kAvx512) {
    isas.push_back(kernels::KernelIsa::kAvx512);
  }
  return isas;
}

}  // namespace linserve::testing

#endif  // LINSERVE_TESTS_TEST_UTIL_H_
