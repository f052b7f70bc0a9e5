// Tests of the small GEMM behind the chunkwise linear attention
// (kernels/internal/small_gemm.h) against a double-precision triple loop, for
// every kernel body: all register-tile remainders (rows 1..8, columns below,
// at and past 16 and 32), row-major and transposed A, overwrite and
// accumulate, and the triangular flags.
//
// Tolerance: fp32 sums of at most 100 products of values in [-1, 1] differ
// from the double result by at most ~k * 2^-24 * sum |a b| ~ 6e-6 in the
// worst case; 2e-5 absolute leaves margin and still catches any wrong or
// missing term (>= ~1e-2 for these inputs).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/internal/small_gemm.h"
#include "tests/test_util.h"

namespace linserve::kernels {
namespace {

using ::linserve::kernels::internal::kSmallGemmAccumulate;
using ::linserve::kernels::internal::kSmallGemmLowerA;
using ::linserve::kernels::internal::kSmallGemmLowerC;
using ::linserve::kernels::internal::SmallGemm;
using ::linserve::testing::KernelIsasToTest;
using ::linserve::testing::RandomVector;

TEST_CASE("SmallGemm equals a double-precision triple loop for every shape",
          "[linear_attention][chunkwise][small_gemm]") {
  uint64_t seed = 1;
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    for (int m : {1, 3, 8, 9, 17, 64}) {
      for (int n : {1, 15, 16, 17, 32, 33, 48, 100}) {
        for (int k : {1, 7, 64, 100}) {
          for (bool transposed : {false, true}) {
            for (int flags = 0; flags < 8; ++flags) {
              const bool accumulate = (flags & kSmallGemmAccumulate) != 0;
              const bool lower_a = (flags & kSmallGemmLowerA) != 0;
              const bool lower_c = (flags & kSmallGemmLowerC) != 0;
              // Padded leading dimensions catch stride mix-ups.
              const int64_t lda = (transposed ? m : k) + 3;
              const int64_t ldb = n + 5;
              const int64_t ldc = n + 2;
              std::vector<float> a =
                  RandomVector((transposed ? k : m) * lda, ++seed);
              const std::vector<float> b = RandomVector(k * ldb, ++seed);
              std::vector<float> c = RandomVector(m * ldc, ++seed);
              auto at = [&](int i, int p) -> float& {
                return transposed ? a[p * lda + i] : a[i * lda + p];
              };
              if (lower_a) {
                for (int i = 0; i < m; ++i) {
                  for (int p = i + 1; p < k; ++p) at(i, p) = 0.0f;
                }
              }
              std::vector<double> want(m * ldc);
              for (int i = 0; i < m; ++i) {
                for (int j = 0; j < n; ++j) {
                  double acc = accumulate ? c[i * ldc + j] : 0.0;
                  for (int p = 0; p < k; ++p) {
                    acc += double{at(i, p)} * b[p * ldb + j];
                  }
                  want[i * ldc + j] = acc;
                }
              }
              const std::vector<float> before = c;
              SmallGemm(m, n, k, a.data(), transposed ? 1 : lda,
                        transposed ? lda : 1, b.data(), ldb, c.data(), ldc,
                        flags);
              INFO("isa=" << KernelIsaName(isa) << " m=" << m << " n=" << n
                          << " k=" << k << " transposed=" << transposed
                          << " flags=" << flags);
              double err = 0.0;
              bool padding_kept = true;
              for (int i = 0; i < m; ++i) {
                for (int j = 0; j < ldc; ++j) {
                  const float got = c[i * ldc + j];
                  if (j >= n) {
                    // Columns past n belong to someone else.
                    padding_kept &= got == before[i * ldc + j];
                  } else if (!lower_c || j <= i) {
                    const double d = std::fabs(got - want[i * ldc + j]);
                    err = std::isnan(d) ? INFINITY : std::max(err, d);
                  }
                }
              }
              CHECK(err <= 2e-5);
              CHECK(padding_kept);
            }
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace linserve::kernels
