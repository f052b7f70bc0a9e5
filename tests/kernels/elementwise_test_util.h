// Helpers for the elementwise kernel-family tests: an element-by-element
// closeness check that names the first offending element, and the awkward
// sizes every kernel is tried on.
//
//   CHECK(FirstMismatch(got, want, /*rtol=*/1e-6f, /*atol=*/0.0f) == "");
#ifndef LINSERVE_TESTS_KERNELS_ELEMENTWISE_TEST_UTIL_H_
#define LINSERVE_TESTS_KERNELS_ELEMENTWISE_TEST_UTIL_H_

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

namespace linserve::testing {

// Row lengths: SIMD-width multiples, and odd ones that leave masked tails.
inline const std::vector<int>& AwkwardDims() {
  static const std::vector<int> dims = {1, 7, 16, 33, 48, 64, 128, 256};
  return dims;
}

inline const std::vector<int64_t>& AwkwardRows() {
  static const std::vector<int64_t> rows = {1, 3, 64};
  return rows;
}

// "" when |got[i] - want[i]| <= atol + rtol * |want[i]| for every i (NaN
// must meet NaN, infinities must match exactly); otherwise a description of
// the first element that fails. rtol = atol = 0 asks for equal values.
inline std::string FirstMismatch(const std::vector<float>& got,
                                 const std::vector<float>& want, float rtol,
                                 float atol) {
  if (got.size() != want.size()) {
    return "sizes differ: " + std::to_string(got.size()) + " vs " +
           std::to_string(want.size());
  }
  for (size_t i = 0; i < got.size(); ++i) {
    const float g = got[i];
    const float w = want[i];
    bool ok;
    if (std::isnan(w) || std::isnan(g)) {
      ok = std::isnan(w) && std::isnan(g);
    } else if (std::isinf(w) || std::isinf(g)) {
      ok = g == w;
    } else {
      const double diff = std::fabs(static_cast<double>(g) - w);
      ok = diff <= atol + static_cast<double>(rtol) * std::fabs(w);
    }
    if (!ok) {
      std::ostringstream out;
      out.precision(9);
      out << "element " << i << ": got " << g << ", want " << w
          << " (|diff| = " << std::fabs(static_cast<double>(g) - w)
          << ", allowed " << atol + static_cast<double>(rtol) * std::fabs(w)
          << ")";
      return out.str();
    }
  }
  return "";
}

}  // namespace linserve::testing

#endif  // LINSERVE_TESTS_KERNELS_ELEMENTWISE_TEST_UTIL_H_
