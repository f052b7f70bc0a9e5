// ApplyRotary / ApplyRotaryAtPositions against the scalar reference (fp32
// angles, as fla), and the properties a cached decode relies on: position
// offsets compose, rows rotate independently, norms are kept.
#include "kernels/rotary.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/reference/elementwise_reference.h"
#include "tests/kernels/elementwise_test_util.h"
#include "tests/test_util.h"

namespace linserve::kernels {
namespace {

using ::linserve::testing::FirstMismatch;
using ::linserve::testing::RandomVector;

constexpr float kBase = 10000.0f;

// Inputs in [-1, 1): both sides use the same fp32 angle, so what differs is
// cosf/sinf (< 1 ulp) against double cos/sin, and two fp32 products and a
// sum: a few ulp of values up to ~1.4.
constexpr float kRotaryTolerance = 1e-6f;

TEST_CASE("ApplyRotary matches the reference at offsets 0, 1, 1000, 100000",
          "[rotary]") {
  for (int head_dim : {2, 8, 64, 128, 256, 640}) {
    for (int heads : {1, 3}) {
      for (int64_t tokens : {1, 5}) {
        for (int64_t offset : {0, 1, 1000, 100000}) {
          INFO("head_dim " << head_dim << " heads " << heads << " tokens "
                           << tokens << " offset " << offset);
          // Padding after the heads must stay as it is.
          const int64_t stride = int64_t{heads} * head_dim + 5;
          const std::vector<float> x =
              RandomVector(tokens * stride, head_dim + heads + offset);
          std::vector<float> want = x;
          reference::ApplyRotary(want.data(), stride, tokens, heads, head_dim,
                                 offset, kBase);
          std::vector<float> got = x;
          ApplyRotary(got.data(), stride, tokens, heads, head_dim, offset,
                      kBase);
          CHECK(FirstMismatch(got, want, 0.0f, kRotaryTolerance) == "");
          for (int64_t t = 0; t < tokens; ++t) {
            for (int64_t i = int64_t{heads} * head_dim; i < stride; ++i) {
              CHECK(got[t * stride + i] == x[t * stride + i]);
            }
          }
        }
      }
    }
  }
}

TEST_CASE("Rotary at position 0 is the identity", "[rotary]") {
  const std::vector<float> x = RandomVector(2 * 64, 1);
  std::vector<float> got = x;
  ApplyRotary(got.data(), 64, 1, 2, 32, 0, kBase);
  // cos 0 = 1 and sin 0 = 0 exactly: x * 1 - y * 0 = x.
  CHECK(FirstMismatch(std::vector<float>(got.begin(), got.begin() + 64),
                      std::vector<float>(x.begin(), x.begin() + 64), 0.0f,
                      0.0f) == "");
}

TEST_CASE("Rotating T tokens at offset p equals calls at p and p + T1",
          "[rotary]") {
  const int heads = 2;
  const int head_dim = 64;
  const int64_t stride = heads * head_dim;
  const int64_t tokens = 11;
  for (int64_t offset : {0, 7, 100000}) {
    for (int64_t first : {1, 4, 10}) {
      INFO("offset " << offset << " first piece " << first);
      const std::vector<float> x = RandomVector(tokens * stride, offset + 1);
      std::vector<float> whole = x;
      ApplyRotary(whole.data(), stride, tokens, heads, head_dim, offset, kBase);
      std::vector<float> split = x;
      ApplyRotary(split.data(), stride, first, heads, head_dim, offset, kBase);
      ApplyRotary(split.data() + first * stride, stride, tokens - first, heads,
                  head_dim, offset + first, kBase);
      CHECK(FirstMismatch(split, whole, 0.0f, 0.0f) == "");
    }
  }
}

TEST_CASE("ApplyRotaryAtPositions rotates each row at its own position",
          "[rotary]") {
  const int heads = 3;
  const int head_dim = 32;
  const int64_t stride = heads * head_dim + 2;
  const std::vector<int64_t> positions = {5, 0, 100000, 17};
  const int batch = static_cast<int>(positions.size());
  const std::vector<float> x = RandomVector(batch * stride, 3);
  std::vector<float> got = x;
  ApplyRotaryAtPositions(got.data(), stride, batch, heads, head_dim,
                         positions.data(), kBase);
  for (int b = 0; b < batch; ++b) {
    std::vector<float> want(x.begin() + b * stride,
                            x.begin() + (b + 1) * stride);
    ApplyRotary(want.data(), stride, 1, heads, head_dim, positions[b], kBase);
    CHECK(FirstMismatch(std::vector<float>(got.begin() + b * stride,
                                           got.begin() + (b + 1) * stride),
                        want, 0.0f, 0.0f) == "");
  }
}

TEST_CASE("Rotary keeps the norm of every rotated pair", "[rotary]") {
  const int head_dim = 128;
  const int half = head_dim / 2;
  for (int64_t offset : {0, 1, 1000, 100000}) {
    const std::vector<float> x = RandomVector(4 * head_dim, offset + 9);
    std::vector<float> got = x;
    ApplyRotary(got.data(), head_dim, 4, 1, head_dim, offset, kBase);
    double worst = 0.0;
    for (int t = 0; t < 4; ++t) {
      for (int i = 0; i < half; ++i) {
        const float* a = &x[t * head_dim];
        const float* b = &got[t * head_dim];
        const double before = std::hypot(a[i], a[i + half]);
        const double after = std::hypot(b[i], b[i + half]);
        worst = std::max(worst, std::fabs(after - before));
      }
    }
    // A rotation by fp32 cos/sin (c^2 + s^2 = 1 to an ulp) and fp32 products.
    CHECK(worst < 1e-6);
  }
}

}  // namespace
}  // namespace linserve::kernels
