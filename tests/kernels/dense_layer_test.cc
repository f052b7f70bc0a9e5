// DenseLayer (oneDNN matmul with prepacked weights) against a double-precision
// reference, for f32 and bf16 compute, every M bucket shape and awkward sizes.
#include "kernels/dense_layer.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#include "kernels/bf16.h"
#include "kernels/cpu_features.h"
#include "tests/test_util.h"

namespace linserve::kernels {
namespace {

using ::linserve::testing::MaxAbsDiff;
using ::linserve::testing::RandomVector;

std::vector<float> RoundedToBf16(const std::vector<float>& x) {
  std::vector<float> r(x.size());
  for (size_t i = 0; i < x.size(); ++i) r[i] = Bf16ToFloat(FloatToBf16(x[i]));
  return r;
}

// y = x W^T + b with double accumulation.
std::vector<float> ReferenceDense(const std::vector<float>& x,
                                  const std::vector<float>& w,
                                  const std::vector<float>* bias, int64_t m,
                                  int out, int in) {
  std::vector<float> y(m * out);
  for (int64_t r = 0; r < m; ++r) {
    for (int o = 0; o < out; ++o) {
      double acc = bias ? (*bias)[o] : 0.0;
      for (int i = 0; i < in; ++i) {
        acc += static_cast<double>(x[r * in + i]) * w[int64_t{o} * in + i];
      }
      y[r * out + o] = static_cast<float>(acc);
    }
  }
  return y;
}

// Inputs in [-1, 1): |y| <= in. fp32 accumulation of `in` products carries a
// relative error of about in * 2^-24 in the worst case; allow 4x that of the
// output scale sqrt(in) (random signs), plus a floor.
float Tolerance(int in) { return 4.0f * in * 6e-8f * std::sqrt(in) + 1e-6f; }

struct Shape {
  int out;
  int in;
};

TEST_CASE("DenseLayer matches the reference in f32 and bf16 for every M bucket",
          "[dense]") {
  const Shape shapes[] = {{48, 16}, {256, 128}, {1000, 300}};
  const int64_t ms[] = {1, 3, 16, 17, 64, 100, 512, 513, 1100};
  for (const Shape& s : shapes) {
    for (DType compute : {DType::kFloat32, DType::kBfloat16}) {
      for (bool with_bias : {false, true}) {
        const auto w = RandomVector(int64_t{s.out} * s.in, 11 + s.in);
        const auto bias = RandomVector(s.out, 5);
        auto layer =
            DenseLayer::Create({.weights = w.data(),
                                .weight_type = DType::kFloat32,
                                .out_features = s.out,
                                .in_features = s.in,
                                .bias = with_bias ? bias.data() : nullptr,
                                .compute_type = compute});
        REQUIRE(layer.ok());
        const bool bf16 = (*layer)->compute_type() == DType::kBfloat16;
        // bf16 rounds x and W once; the reference applies the same rounding
        // so that only the fp32 accumulation error remains.
        const auto w_ref = bf16 ? RoundedToBf16(w) : w;
        for (int64_t m : ms) {
          const auto x = RandomVector(m * s.in, 100 + m);
          std::vector<float> y(m * s.out, NAN);
          (*layer)->Forward(x.data(), m, y.data());
          const auto x_ref = bf16 ? RoundedToBf16(x) : x;
          const auto want = ReferenceDense(
              x_ref, w_ref, with_bias ? &bias : nullptr, m, s.out, s.in);
          INFO("out=" << s.out << " in=" << s.in << " m=" << m
                      << " compute=" << DTypeName((*layer)->compute_type())
                      << " bias=" << with_bias
                      << " kernel=" << (*layer)->KernelName(m));
          CHECK(MaxAbsDiff(y, want) <= Tolerance(s.in));
        }
      }
    }
  }
}

TEST_CASE("DenseLayer loads bf16 and f16 checkpoint weights exactly",
          "[dense]") {
  const int out = 40, in = 24;
  // Values exactly representable in both bf16 and f16 (multiples of 1/8 in
  // [-4, 4)), so every source type describes the same matrix.
  std::vector<float> w(out * in);
  for (int i = 0; i < out * in; ++i) w[i] = ((i * 37) % 64 - 32) / 8.0f;
  std::vector<bf16_t> w_bf16(w.size());
  std::vector<uint16_t> w_f16(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    w_bf16[i] = FloatToBf16(w[i]);
    // f16 bits built by hand: sign, exponent bias 15, 10-bit mantissa.
    const float a = std::fabs(w[i]);
    uint16_t bits = 0;
    if (a != 0.0f) {
      int e;
      const float mant = std::frexp(a, &e);  // a = mant * 2^e, mant in [.5,1)
      bits = static_cast<uint16_t>(((e - 1 + 15) << 10) |
                                   static_cast<int>((mant * 2 - 1) * 1024));
    }
    w_f16[i] = bits | (w[i] < 0 ? 0x8000 : 0);
    REQUIRE(HalfToFloat(w_f16[i]) == w[i]);
  }
  const auto x = RandomVector(7 * in, 3);
  const auto want = ReferenceDense(x, w, nullptr, 7, out, in);
  struct Source {
    const void* data;
    DType type;
  };
  for (Source src : {Source{w.data(), DType::kFloat32},
                     Source{w_bf16.data(), DType::kBfloat16},
                     Source{w_f16.data(), DType::kFloat16}}) {
    auto layer = DenseLayer::Create({.weights = src.data,
                                     .weight_type = src.type,
                                     .out_features = out,
                                     .in_features = in,
                                     .compute_type = DType::kFloat32});
    REQUIRE(layer.ok());
    std::vector<float> y(7 * out);
    (*layer)->Forward(x.data(), 7, y.data());
    INFO("source " << DTypeName(src.type));
    CHECK(MaxAbsDiff(y, want) <= Tolerance(in));
  }
}

TEST_CASE("DenseLayer rejects empty shapes with a clear error", "[dense]") {
  const float w = 1.0f;
  auto layer =
      DenseLayer::Create({.weights = &w, .out_features = 0, .in_features = 1});
  REQUIRE_FALSE(layer.ok());
  CHECK(layer.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(layer.status().message()),
             Catch::Contains("positive sizes"));
}

TEST_CASE("DenseLayer serialises concurrent callers without mixing results",
          "[dense]") {
  const int out = 96, in = 64;
  const auto w = RandomVector(out * in, 9);
  auto layer = DenseLayer::Create({.weights = w.data(),
                                   .out_features = out,
                                   .in_features = in,
                                   .compute_type = DType::kFloat32});
  REQUIRE(layer.ok());
  DenseLayer* dense = layer->get();
  constexpr int kThreads = 4;
  std::vector<float> errors(kThreads, 0.0f);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const int64_t m = 1 + 7 * t;  // Different buckets share scratch.
      const auto x = RandomVector(m * in, 50 + t);
      const auto want = ReferenceDense(x, w, nullptr, m, out, in);
      std::vector<float> y(m * out);
      for (int iter = 0; iter < 50; ++iter) {
        dense->Forward(x.data(), m, y.data());
        errors[t] = std::max(errors[t], MaxAbsDiff(y, want));
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) CHECK(errors[t] <= Tolerance(in));
}

TEST_CASE(
    "in bf16, up to kRowInvariantRows rows each row of y is bitwise "
    "independent of M, on linserve's packed kernel and on oneDNN's matmul, "
    "and the two agree within rounding",
    "[dense]") {
  using SmallMKernel = DenseLayerOptions::SmallMKernel;
  const int out = 333, in = 1000;
  const auto w = RandomVector(int64_t{out} * in, 21);
  const auto bias = RandomVector(out, 22);
  constexpr int64_t kRows = DenseLayer::kRowInvariantRows;
  const auto x = RandomVector(kRows * in, 23);
  std::vector<std::vector<float>> results;
  for (SmallMKernel use :
       {SmallMKernel::kAlways, SmallMKernel::kNever, SmallMKernel::kAuto}) {
    auto layer = DenseLayer::Create({.weights = w.data(),
                                     .weight_type = DType::kFloat32,
                                     .out_features = out,
                                     .in_features = in,
                                     .bias = bias.data(),
                                     .compute_type = DType::kBfloat16,
                                     .small_m_kernel = use});
    REQUIRE(layer.ok());
    if ((*layer)->compute_type() != DType::kBfloat16) {
      SUCCEED("no bf16 GEMM on this CPU: nothing to compare");
      return;
    }
    if (use == SmallMKernel::kAlways) {
      // oneDNN packs bf16 weights for AVX512-BF16 and AMX in the layout the
      // kernel reads; a new oneDNN that changed it would show up here.
      CHECK((*layer)->uses_small_m_kernel());
    }
    if (use == SmallMKernel::kNever)
      CHECK_FALSE((*layer)->uses_small_m_kernel());
    if (use == SmallMKernel::kAuto) {
      CHECK((*layer)->uses_small_m_kernel() == !DetectedCpuFeatures().amx_bf16);
    }
    std::vector<float> all(kRows * out);
    (*layer)->Forward(x.data(), kRows, all.data());
    INFO("kernel " << (*layer)->KernelName(1));
    for (int64_t m : {int64_t{1}, int64_t{2}, int64_t{7}, int64_t{33}}) {
      std::vector<float> y(m * out);
      (*layer)->Forward(x.data(), m, y.data());
      INFO("m=" << m);
      CHECK(std::memcmp(y.data(), all.data(), sizeof(float) * m * out) == 0);
    }
    results.push_back(all);
  }
  CHECK(MaxAbsDiff(results[0], results[1]) <= Tolerance(in));
}

TEST_CASE("DenseLayer buckets keep M exact up to 16 and round up to 16 after",
          "[dense]") {
  CHECK(DenseLayer::BucketRows(1) == 1);
  CHECK(DenseLayer::BucketRows(16) == 16);
  CHECK(DenseLayer::BucketRows(17) == 32);
  CHECK(DenseLayer::BucketRows(512) == 512);
}

}  // namespace
}  // namespace linserve::kernels
