// The feature maps of kernels/feature_maps.h (elu+1, relu, hedgehog, DPFP,
// Performer) against the double-precision scalar reference, for every kernel
// body, on awkward sizes.
#include "kernels/feature_maps.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/reference/elementwise_reference.h"
#include "tests/kernels/elementwise_test_util.h"
#include "tests/test_util.h"

namespace linserve::kernels {
namespace {

using ::linserve::testing::AwkwardDims;
using ::linserve::testing::AwkwardRows;
using ::linserve::testing::FirstMismatch;
using ::linserve::testing::KernelIsasToTest;
using ::linserve::testing::RandomNormal;
using ::linserve::testing::RandomVector;

constexpr float kUlp = 1.1920929e-7f;
// The smallest subnormal float.
constexpr float kSubnormalUlp = 1.4012985e-45f;

TEST_CASE("EluPlusOne matches the reference, subnormal exp results included",
          "[feature_maps]") {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> edges = {
      0.0f,     -0.0f,  1e-30f,  -1e-30f, -1e-8f,  -20.0f,  -87.3f,  -87.4f,
      -90.0f,   -95.5f, -100.0f, -103.0f, -103.9f, -104.0f, -150.0f, -1e10f,
      -FLT_MAX, 100.0f, FLT_MAX, inf,     -inf,    NAN};
  const std::vector<float> random = RandomVector(500, 3, -110.0f, 100.0f);
  edges.insert(edges.end(), random.begin(), random.end());
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    INFO("kernel body " << KernelIsaName(isa));
    for (int64_t n : std::vector<int64_t>{1, 7, 16, 33,
                                          static_cast<int64_t>(edges.size())}) {
      INFO("n = " << n);
      const std::vector<float> x(edges.begin(), edges.begin() + n);
      std::vector<float> want(n);
      reference::EluPlusOne(x.data(), n, want.data());
      std::vector<float> got(n);
      EluPlusOne(x.data(), n, got.data());
      // exp to ~2 ulp; in the subnormal range (x < -87.3) a correctly
      // scaled result is within one subnormal step.
      CHECK(FirstMismatch(got, want, 2 * kUlp, kSubnormalUlp) == "");
    }
  }
}

TEST_CASE("Relu is max(x, 0) exactly", "[feature_maps]") {
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    INFO("kernel body " << KernelIsaName(isa));
    for (int64_t n : {1, 7, 16, 33, 100}) {
      const std::vector<float> x = RandomNormal(n, n);
      std::vector<float> want(n);
      reference::Relu(x.data(), n, want.data());
      std::vector<float> got(n);
      Relu(x.data(), n, got.data());
      CHECK(FirstMismatch(got, want, 0.0f, 0.0f) == "");
    }
  }
}

TEST_CASE("HedgehogFeatures is one softmax over [2a, -2a] per row",
          "[feature_maps]") {
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    INFO("kernel body " << KernelIsaName(isa));
    for (int dim : AwkwardDims()) {
      for (int64_t rows : AwkwardRows()) {
        for (float stddev : {1.0f, 10.0f}) {
          INFO("dim " << dim << " rows " << rows << " stddev " << stddev);
          const std::vector<float> a =
              RandomNormal(rows * dim, dim * 13 + rows, stddev);
          std::vector<float> want(rows * 2 * dim);
          reference::HedgehogFeatures(a.data(), rows, dim, want.data());
          std::vector<float> got(rows * 2 * dim, -1.0f);
          HedgehogFeatures(a.data(), rows, dim, got.data());
          // The exponent 2a - 2max|a| is rounded in fp32 (an absolute error
          // of an ulp of |arg| <= 4 max|a|, which exp turns into a relative
          // one), exp ~2 ulp, and a sum of 2*dim positive terms (~sqrt(2d)
          // ulp); allow about 4x each. Results below FLT_MIN are absolute.
          const float max_arg = 4.0f * testing::MaxAbs(a);
          const float rtol =
              4 * kUlp * max_arg + 8 * kUlp +
              8 * kUlp * std::sqrt(2.0f * static_cast<float>(dim));
          CHECK(FirstMismatch(got, want, rtol, FLT_MIN) == "");
          double worst_sum_error = 0.0;
          for (int64_t r = 0; r < rows; ++r) {
            double sum = 0.0;
            for (int i = 0; i < 2 * dim; ++i) sum += got[r * 2 * dim + i];
            worst_sum_error = std::max(worst_sum_error, std::fabs(sum - 1.0));
          }
          CHECK(worst_sum_error < 1e-5);
        }
      }
    }
  }
}

TEST_CASE("DpfpFeatures multiplies u = [relu(x), -relu(x)] by its rolls 1..4",
          "[feature_maps]") {
  std::vector<int> dims = AwkwardDims();
  dims.push_back(2);  // 2d = 4: the roll by 4 wraps onto u itself.
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    INFO("kernel body " << KernelIsaName(isa));
    for (int dim : dims) {
      for (int64_t rows : AwkwardRows()) {
        INFO("dim " << dim << " rows " << rows);
        const std::vector<float> x = RandomNormal(rows * dim, dim * 17 + rows);
        std::vector<float> want(rows * 8 * dim);
        reference::DpfpFeatures(x.data(), rows, dim, want.data());
        std::vector<float> got(rows * 8 * dim, -1.0f);
        DpfpFeatures(x.data(), rows, dim, got.data());
        // Each feature is one fp32 product of two inputs: exact.
        CHECK(FirstMismatch(got, want, 0.0f, 0.0f) == "");
      }
    }
  }
  // A hand-worked row, d = 2: x = [3, -1], u = [3, 0, -3, 0], and
  // roll(u, j) = [0, 3, 0, -3], [-3, 0, 3, 0], [0, -3, 0, 3], u.
  const std::vector<float> x = {3.0f, -1.0f};
  const std::vector<float> want = {0, 0, 0, 0, -9, 0, -9, 0,
                                   0, 0, 0, 0, 9,  0, 9,  0};
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    std::vector<float> got(16);
    DpfpFeatures(x.data(), 1, 2, got.data());
    CHECK(FirstMismatch(got, want, 0.0f, 0.0f) == "");
  }
}

// projected = Omega (dim^-1/4 x) with Gaussian Omega [m, dim], in double.
std::vector<float> Project(const std::vector<float>& omega,
                           const std::vector<float>& x, int64_t rows, int dim,
                           int m) {
  const double normalizer = std::pow(static_cast<double>(dim), -0.25);
  std::vector<float> p(rows * m);
  for (int64_t r = 0; r < rows; ++r) {
    for (int i = 0; i < m; ++i) {
      double acc = 0.0;
      for (int j = 0; j < dim; ++j) {
        acc += static_cast<double>(omega[i * dim + j]) * x[r * dim + j];
      }
      p[r * m + i] = static_cast<float>(acc * normalizer);
    }
  }
  return p;
}

TEST_CASE("PerformerFeatures matches the reference with both stabilizers",
          "[feature_maps]") {
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    INFO("kernel body " << KernelIsaName(isa));
    for (int dim : {7, 16, 64, 128}) {
      for (int m : {1, 7, 16, 33, 64, 266}) {
        for (int64_t rows : AwkwardRows()) {
          const std::vector<float> x = RandomNormal(rows * dim, dim + m + rows);
          const std::vector<float> omega = RandomNormal(m * dim, m * 7 + dim);
          const std::vector<float> projected = Project(omega, x, rows, dim, m);
          // The omega bound max_i |w_i|^2 / 2 of spec §10.2.
          float bound = 0.0f;
          for (int i = 0; i < m; ++i) {
            float sq = 0.0f;
            for (int j = 0; j < dim; ++j)
              sq += omega[i * dim + j] * omega[i * dim + j];
            bound = std::max(bound, sq / 2);
          }
          for (PerformerStabilizer stabilizer :
               {PerformerStabilizer::kRowMax, PerformerStabilizer::kConstant}) {
            INFO("dim " << dim << " m " << m << " rows " << rows << " row max "
                        << (stabilizer == PerformerStabilizer::kRowMax));
            std::vector<float> want(rows * m);
            reference::PerformerFeatures(x.data(), projected.data(), rows, dim,
                                         m, stabilizer, bound, 1e-4f,
                                         want.data());
            std::vector<float> got(rows * m, -1.0f);
            PerformerFeatures(x.data(), projected.data(), rows, dim, m,
                              stabilizer, bound, 1e-4f, got.data());
            // The exponent p - h - stab is formed in fp32 from terms up to A
            // in magnitude (a few ulp of A absolute, which exp makes
            // relative), h carries the ~sqrt(dim) ulp of its sum of squares,
            // and exp ~2 ulp.
            float a = bound;
            for (float v : projected) a = std::max(a, std::fabs(v));
            const float sqrt_dim = std::sqrt(static_cast<float>(dim));
            const float h_max =
                testing::MaxAbs(x) * testing::MaxAbs(x) * sqrt_dim / 2;
            const float rtol = 3 * kUlp * (2 * a + h_max) +
                               8 * kUlp * sqrt_dim * h_max + 8 * kUlp;
            CHECK(FirstMismatch(got, want, rtol, 0.0f) == "");
            CHECK(*std::min_element(got.begin(), got.end()) > 0.0f);
          }
        }
      }
    }
  }
}

TEST_CASE("Performer query features peak at m^-1/2 (1 + eps) with row max",
          "[feature_maps]") {
  // With x = 0 (h = 0) the largest projected entry gives exp(0) = 1.
  const int dim = 4;
  const int m = 9;
  const std::vector<float> x(dim, 0.0f);
  std::vector<float> projected = RandomNormal(m, 1);
  projected[5] = 10.0f;
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    std::vector<float> phi(m);
    PerformerFeatures(x.data(), projected.data(), 1, dim, m,
                      PerformerStabilizer::kRowMax, 0.0f, 1e-4f, phi.data());
    CHECK(phi[5] == Approx((1.0 + 1e-4) / 3.0).epsilon(1e-6));
    for (int i = 0; i < m; ++i) CHECK(phi[i] <= phi[5]);
  }
}

}  // namespace
}  // namespace linserve::kernels
