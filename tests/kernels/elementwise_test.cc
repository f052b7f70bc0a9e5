// The kernels of kernels/elementwise.h against the double-precision scalar
// reference, for every kernel body, on awkward sizes and extreme inputs.
#include "kernels/elementwise.h"

#include <catch2/catch.hpp>

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

// One float ulp relative to the value (2^-23).
constexpr float kUlp = 1.1920929e-7f;

// Values where exp, log1p and the softplus threshold change behaviour:
// e^x overflows above 88.72, is subnormal below -87.34 and 0 below -103.97.
std::vector<float> EdgeInputs() {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> v = {
      0.0f,    -0.0f,   1e-30f,   -1e-30f, 1e-8f,    -1e-8f, 0.5f,    -0.5f,
      19.999f, 20.0f,   20.001f,  -20.0f,  -20.001f, 87.3f,  -87.3f,  87.4f,
      -87.4f,  88.7f,   -88.7f,   88.73f,  -88.73f,  89.0f,  -89.0f,  100.0f,
      -100.0f, 103.9f,  -103.9f,  104.0f,  -104.0f,  150.0f, -150.0f, 1e10f,
      -1e10f,  FLT_MAX, -FLT_MAX, inf,     -inf};
  std::vector<float> random = RandomVector(300, 11, -100.0f, 100.0f);
  v.insert(v.end(), random.begin(), random.end());
  return v;
}

// Inputs of awkward lengths: uniform over [-100, 100] (every exp regime).
std::vector<std::vector<float>> WideRangeInputs() {
  std::vector<std::vector<float>> inputs = {EdgeInputs()};
  for (int64_t n : {1, 7, 16, 33, 1000}) {
    inputs.push_back(RandomVector(n, 100 + n, -100.0f, 100.0f));
  }
  inputs.push_back(RandomNormal(257, 5, 3.0f));
  return inputs;
}

using UnaryKernel = void (*)(const float*, int64_t, float*);

// Checks `kernel` against `reference` on every input set, out of place and in
// place, for every kernel body.
void CheckUnary(UnaryKernel kernel, UnaryKernel reference,
                const std::vector<std::vector<float>>& inputs, float rtol,
                float atol) {
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    INFO("kernel body " << KernelIsaName(isa));
    for (const std::vector<float>& x : inputs) {
      const int64_t n = static_cast<int64_t>(x.size());
      INFO("n = " << n);
      std::vector<float> want(n);
      reference(x.data(), n, want.data());
      std::vector<float> got(n);
      kernel(x.data(), n, got.data());
      CHECK(FirstMismatch(got, want, rtol, atol) == "");
      std::vector<float> in_place = x;
      kernel(in_place.data(), n, in_place.data());
      CHECK(FirstMismatch(in_place, got, 0.0f, 0.0f) == "");
    }
  }
}

// Results below FLT_MIN carry no relative accuracy: 1 / (1 + e^-x) is 0 once
// e^-x overflows (x < -88.72), where the true value is below 3e-39.
constexpr float kBelowNormal = FLT_MIN;

TEST_CASE("Sigmoid matches the reference over [-100, 100] and the exp edges",
          "[elementwise]") {
  std::vector<std::vector<float>> inputs = WideRangeInputs();
  inputs[0].push_back(NAN);
  // A few ulp: the vector exp is ~1 ulp, plus the add and the division.
  CheckUnary(Sigmoid, reference::Sigmoid, inputs, 4 * kUlp, kBelowNormal);
}

TEST_CASE("Silu matches the reference over [-100, 100] and the exp edges",
          "[elementwise]") {
  std::vector<std::vector<float>> inputs = WideRangeInputs();
  // silu(-inf) is -inf / inf = NaN in torch as well; keep to finite inputs.
  std::vector<float>& edges = inputs[0];
  std::erase_if(edges, [](float v) { return std::isinf(v); });
  edges.push_back(NAN);
  // x / (1 + e^-x) is -0 once e^-x overflows (x < -88.72), as in torch,
  // where the true x e^x is at most 104 * 2.9e-39 in magnitude.
  CheckUnary(Silu, reference::Silu, inputs, 4 * kUlp, 4e-37f);
}

TEST_CASE("Softplus matches the reference, with x returned above 20",
          "[elementwise]") {
  std::vector<std::vector<float>> inputs = WideRangeInputs();
  inputs[0].push_back(NAN);
  // exp ~1 ulp and log1p ~2 ulp, then one add.
  CheckUnary(Softplus, reference::Softplus, inputs, 6 * kUlp, kBelowNormal);

  // The threshold is exact: above 20 the input comes back unchanged, and just
  // below it ln(1 + e^x) differs from x by about 2e-9 (less than an ulp).
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    const std::vector<float> x = {20.5f, 1e30f, std::nextafter(20.0f, 30.0f)};
    std::vector<float> y(x.size());
    Softplus(x.data(), 3, y.data());
    CHECK(FirstMismatch(y, x, 0.0f, 0.0f) == "");
  }
}

TEST_CASE("LogSigmoid matches the reference without overflow for any x",
          "[elementwise]") {
  std::vector<std::vector<float>> inputs = WideRangeInputs();
  inputs[0].push_back(NAN);
  CheckUnary(LogSigmoid, reference::LogSigmoid, inputs, 6 * kUlp, kBelowNormal);
  // Far out, logsigmoid(x) is x (x << 0) and -e^-x (x >> 0), never -inf.
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    const std::vector<float> x = {-1e4f, -FLT_MAX, 1e4f};
    std::vector<float> y(3);
    LogSigmoid(x.data(), 3, y.data());
    CHECK(y[0] == -1e4f);
    CHECK(y[1] == -FLT_MAX);
    CHECK(y[2] == 0.0f);
  }
}

TEST_CASE("SwiGlu matches the reference and may write over gate or up",
          "[elementwise]") {
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    INFO("kernel body " << KernelIsaName(isa));
    for (int64_t n : {1, 7, 16, 33, 48, 1000}) {
      INFO("n = " << n);
      const std::vector<float> gate = RandomVector(n, 1 + n, -30.0f, 30.0f);
      const std::vector<float> up = RandomNormal(n, 2 + n);
      std::vector<float> want(n);
      reference::SwiGlu(gate.data(), up.data(), n, want.data());
      std::vector<float> got(n);
      SwiGlu(gate.data(), up.data(), n, got.data());
      // silu to a few ulp, one more rounding for the product.
      CHECK(FirstMismatch(got, want, 5 * kUlp, 4e-37f) == "");
      std::vector<float> over_gate = gate;
      SwiGlu(over_gate.data(), up.data(), n, over_gate.data());
      CHECK(FirstMismatch(over_gate, got, 0.0f, 0.0f) == "");
      std::vector<float> over_up = up;
      SwiGlu(gate.data(), over_up.data(), n, over_up.data());
      CHECK(FirstMismatch(over_up, got, 0.0f, 0.0f) == "");
    }
  }
}

// fp32 sums of `dim` squares, in a few partial sums: a relative error of
// about sqrt(dim) ulp (random rounding); allow ~8x that, plus a few ulp for
// the square root, the reciprocal and the products.
float NormTolerance(int dim) {
  return 8 * kUlp * std::sqrt(static_cast<float>(dim)) + 6 * kUlp;
}

TEST_CASE("RmsNorm matches the reference for every kernel body",
          "[elementwise]") {
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    INFO("kernel body " << KernelIsaName(isa));
    for (int dim : AwkwardDims()) {
      for (int64_t rows : AwkwardRows()) {
        // eps = 0.5 makes a misplaced eps visible; 1e-6 is the usual value.
        for (float eps : {1e-6f, 0.5f}) {
          for (bool with_weight : {true, false}) {
            INFO("dim " << dim << " rows " << rows << " eps " << eps
                        << " weight " << with_weight);
            const std::vector<float> x = RandomNormal(rows * dim, dim + rows);
            const std::vector<float> w = RandomVector(dim, 3, 0.5f, 1.5f);
            const float* weight = with_weight ? w.data() : nullptr;
            std::vector<float> want(x.size());
            reference::RmsNorm(x.data(), weight, rows, dim, eps, want.data());
            std::vector<float> got(x.size());
            RmsNorm(x.data(), weight, rows, dim, eps, got.data());
            CHECK(FirstMismatch(got, want, NormTolerance(dim), 0.0f) == "");
            std::vector<float> in_place = x;
            RmsNorm(in_place.data(), weight, rows, dim, eps, in_place.data());
            CHECK(FirstMismatch(in_place, got, 0.0f, 0.0f) == "");
          }
        }
      }
    }
  }
}

TEST_CASE("GatedRmsNorm matches the reference with a swish gate",
          "[elementwise]") {
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    INFO("kernel body " << KernelIsaName(isa));
    for (int dim : AwkwardDims()) {
      for (int64_t rows : AwkwardRows()) {
        for (bool with_weight : {true, false}) {
          INFO("dim " << dim << " rows " << rows << " weight " << with_weight);
          const std::vector<float> x = RandomNormal(rows * dim, dim + rows);
          const std::vector<float> gate =
              RandomNormal(rows * dim, 7 * dim + rows, 4.0f);
          const std::vector<float> w = RandomVector(dim, 3, 0.5f, 1.5f);
          const float* weight = with_weight ? w.data() : nullptr;
          std::vector<float> want(x.size());
          reference::GatedRmsNorm(x.data(), gate.data(), weight, rows, dim,
                                  1e-5f, want.data());
          std::vector<float> got(x.size());
          GatedRmsNorm(x.data(), gate.data(), weight, rows, dim, 1e-5f,
                       got.data());
          // The norm's error plus silu's few ulp.
          CHECK(FirstMismatch(got, want, NormTolerance(dim) + 4 * kUlp,
                              kBelowNormal) == "");
          std::vector<float> in_place = x;
          GatedRmsNorm(in_place.data(), gate.data(), weight, rows, dim, 1e-5f,
                       in_place.data());
          CHECK(FirstMismatch(in_place, got, 0.0f, 0.0f) == "");
        }
      }
    }
  }
}

TEST_CASE("L2Normalize matches the reference with eps inside the square root",
          "[elementwise]") {
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    INFO("kernel body " << KernelIsaName(isa));
    for (int dim : AwkwardDims()) {
      for (int64_t rows : AwkwardRows()) {
        // eps = 1 tells sqrt(s + eps) from sqrt(s) + eps.
        for (float eps : {1e-6f, 1.0f}) {
          INFO("dim " << dim << " rows " << rows << " eps " << eps);
          const std::vector<float> x = RandomNormal(rows * dim, dim * 3 + rows);
          std::vector<float> want(x.size());
          reference::L2Normalize(x.data(), rows, dim, eps, want.data());
          std::vector<float> got(x.size());
          L2Normalize(x.data(), rows, dim, eps, got.data());
          CHECK(FirstMismatch(got, want, NormTolerance(dim), 0.0f) == "");
          std::vector<float> in_place = x;
          L2Normalize(in_place.data(), rows, dim, eps, in_place.data());
          CHECK(FirstMismatch(in_place, got, 0.0f, 0.0f) == "");
        }
      }
    }
  }
}

TEST_CASE("SumNormalize matches the reference for positive features",
          "[elementwise]") {
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    INFO("kernel body " << KernelIsaName(isa));
    for (int dim : AwkwardDims()) {
      for (int64_t rows : AwkwardRows()) {
        for (float eps : {0.0f, 1e-4f, 0.5f}) {
          INFO("dim " << dim << " rows " << rows << " eps " << eps);
          // Positive, as after elu+1 or relu: the sum is well conditioned.
          const std::vector<float> x =
              RandomVector(rows * dim, dim * 5 + rows, 0.0f, 2.0f);
          std::vector<float> want(x.size());
          reference::SumNormalize(x.data(), rows, dim, eps, want.data());
          std::vector<float> got(x.size());
          SumNormalize(x.data(), rows, dim, eps, got.data());
          // A sum of positive terms: ~sqrt(dim) ulp, then one division.
          CHECK(FirstMismatch(got, want, NormTolerance(dim), 0.0f) == "");
          std::vector<float> in_place = x;
          SumNormalize(in_place.data(), rows, dim, eps, in_place.data());
          CHECK(FirstMismatch(in_place, got, 0.0f, 0.0f) == "");
        }
      }
    }
  }
}

TEST_CASE("Scale, Multiply and Add are correctly rounded, in place too",
          "[elementwise]") {
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    INFO("kernel body " << KernelIsaName(isa));
    for (int64_t n : {1, 7, 16, 33, 48, 1000}) {
      INFO("n = " << n);
      const std::vector<float> a = RandomNormal(n, n);
      const std::vector<float> b = RandomNormal(n, n + 1);
      // One fp32 operation each: the double reference rounded once is the
      // correctly rounded result, so the kernels must match it exactly.
      std::vector<float> want(n);
      std::vector<float> got(n);
      reference::Scale(a.data(), n, 0.37f, want.data());
      Scale(a.data(), n, 0.37f, got.data());
      CHECK(FirstMismatch(got, want, 0.0f, 0.0f) == "");
      reference::Multiply(a.data(), b.data(), n, want.data());
      Multiply(a.data(), b.data(), n, got.data());
      CHECK(FirstMismatch(got, want, 0.0f, 0.0f) == "");
      reference::Add(a.data(), b.data(), n, want.data());
      Add(a.data(), b.data(), n, got.data());
      CHECK(FirstMismatch(got, want, 0.0f, 0.0f) == "");

      std::vector<float> in_place = a;
      Add(in_place.data(), b.data(), n, in_place.data());
      CHECK(FirstMismatch(in_place, want, 0.0f, 0.0f) == "");
      in_place = b;
      Multiply(a.data(), in_place.data(), n, in_place.data());
      reference::Multiply(a.data(), b.data(), n, want.data());
      CHECK(FirstMismatch(in_place, want, 0.0f, 0.0f) == "");
      in_place = a;
      Scale(in_place.data(), n, -3.0f, in_place.data());
      reference::Scale(a.data(), n, -3.0f, want.data());
      CHECK(FirstMismatch(in_place, want, 0.0f, 0.0f) == "");
    }
  }
}

TEST_CASE("Elementwise kernels leave the elements past n untouched",
          "[elementwise]") {
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    INFO("kernel body " << KernelIsaName(isa));
    for (int64_t n : {0, 1, 7, 17, 33}) {
      const std::vector<float> x = RandomNormal(n + 16, 9);
      std::vector<float> y(n + 16, 42.0f);
      Silu(x.data(), n, y.data());
      Softplus(x.data(), n, y.data());
      RmsNorm(x.data(), nullptr, 1, static_cast<int>(n), 1e-6f, y.data());
      for (int64_t i = n; i < n + 16; ++i) CHECK(y[i] == 42.0f);
    }
  }
}

}  // namespace
}  // namespace linserve::kernels
