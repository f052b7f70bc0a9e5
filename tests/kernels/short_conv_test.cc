// CausalShortConv / CausalShortConvStep against the scalar reference, and the
// cache contract: a sequence fed whole, in pieces or token by token gives
// the same outputs and the same cache.
#include "kernels/short_conv.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/reference/elementwise_reference.h"
#include "tests/kernels/elementwise_test_util.h"
#include "tests/test_util.h"

namespace linserve::kernels {
namespace {

using ::linserve::testing::FirstMismatch;
using ::linserve::testing::KernelIsasToTest;
using ::linserve::testing::RandomVector;

// A conv problem: x rows padded to x_stride, a non-zero starting cache (a
// session already under way), weights in [-1, 1).
struct ConvCase {
  int64_t tokens;
  int channels;
  int width;
  int64_t x_stride;
  std::vector<float> x;
  std::vector<float> weight;
  std::vector<float> cache;
};

ConvCase MakeCase(int64_t tokens, int channels, int width, uint64_t seed) {
  ConvCase c;
  c.tokens = tokens;
  c.channels = channels;
  c.width = width;
  c.x_stride = channels + 3;
  c.x = RandomVector(tokens * c.x_stride, seed);
  c.weight = RandomVector(int64_t{channels} * width, seed + 1);
  c.cache = RandomVector(int64_t{width} * channels, seed + 2);
  return c;
}

// Inputs and weights in [-1, 1): an fp32 sum of `width` products is off by
// about width ulp of sum |w x| <= width; silu adds a few ulp of the result.
float ConvTolerance(int width) {
  return 2e-7f * static_cast<float>(width * width) + 1e-6f;
}

TEST_CASE("CausalShortConv matches the reference for any width and length",
          "[short_conv]") {
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    INFO("kernel body " << KernelIsaName(isa));
    // Width 4 is the hot case; 17 is past the AVX-512 body's register limit.
    for (int width : {1, 2, 3, 4, 5, 7, 17}) {
      // 300 spans two channel tiles of the optimised bodies, with a tail.
      for (int channels : {1, 7, 16, 33, 100, 300}) {
        for (int64_t tokens : {1, 2, 3, 4, 5, 17}) {
          for (ConvActivation act :
               {ConvActivation::kNone, ConvActivation::kSilu}) {
            INFO("width " << width << " channels " << channels << " tokens "
                          << tokens << " silu "
                          << (act == ConvActivation::kSilu));
            ConvCase c =
                MakeCase(tokens, channels, width, width * 1000 + tokens);
            std::vector<float> want_y(tokens * channels);
            std::vector<float> want_cache = c.cache;
            reference::CausalShortConv(c.x.data(), c.x_stride, tokens, channels,
                                       c.weight.data(), width, act,
                                       want_cache.data(), want_y.data());
            std::vector<float> y(tokens * channels);
            std::vector<float> cache = c.cache;
            CausalShortConv(c.x.data(), c.x_stride, tokens, channels,
                            c.weight.data(), width, act, cache.data(),
                            y.data());
            CHECK(FirstMismatch(y, want_y, 0.0f, ConvTolerance(width)) == "");
            // The cache holds copies of inputs: exact.
            CHECK(FirstMismatch(cache, want_cache, 0.0f, 0.0f) == "");
          }
        }
      }
    }
  }
}

TEST_CASE("A fresh zero cache means the inputs before the session are zero",
          "[short_conv]") {
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    INFO("kernel body " << KernelIsaName(isa));
    for (int width : {2, 4, 6}) {
      const int channels = 19;
      ConvCase c = MakeCase(1, channels, width, 5);
      std::vector<float> cache(int64_t{width} * channels, 0.0f);
      std::vector<float> y(channels);
      CausalShortConv(c.x.data(), c.x_stride, 1, channels, c.weight.data(),
                      width, ConvActivation::kNone, cache.data(), y.data());
      // Only w[c, width - 1] meets a non-zero input: one exact product.
      for (int ch = 0; ch < channels; ++ch) {
        CHECK(y[ch] == c.weight[ch * width + width - 1] * c.x[ch]);
        CHECK(cache[(width - 1) * channels + ch] == c.x[ch]);
        for (int k = 0; k + 1 < width; ++k) {
          CHECK(cache[k * channels + ch] == 0.0f);
        }
      }
    }
  }
}

TEST_CASE(
    "Feeding a sequence in pieces gives the same outputs and cache as "
    "one call",
    "[short_conv]") {
  const std::vector<std::vector<int64_t>> splits = {
      {23}, {1, 22}, {2, 1, 20}, {3, 3, 3, 14}, {5, 18}, {10, 1, 1, 1, 10}};
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    INFO("kernel body " << KernelIsaName(isa));
    for (int width : {2, 3, 4, 5}) {
      for (int channels : {7, 33, 64, 300}) {
        ConvCase c = MakeCase(23, channels, width, channels + width);
        std::vector<float> whole_y(23 * channels);
        std::vector<float> whole_cache = c.cache;
        CausalShortConv(c.x.data(), c.x_stride, 23, channels, c.weight.data(),
                        width, ConvActivation::kSilu, whole_cache.data(),
                        whole_y.data());
        for (const std::vector<int64_t>& pieces : splits) {
          INFO("width " << width << " channels " << channels << " pieces "
                        << pieces.size() << " first " << pieces[0]);
          std::vector<float> y(23 * channels);
          std::vector<float> cache = c.cache;
          int64_t start = 0;
          for (int64_t len : pieces) {
            CausalShortConv(c.x.data() + start * c.x_stride, c.x_stride, len,
                            channels, c.weight.data(), width,
                            ConvActivation::kSilu, cache.data(),
                            y.data() + start * channels);
            start += len;
          }
          // Every output is the same arithmetic on the same inputs.
          CHECK(FirstMismatch(y, whole_y, 0.0f, 0.0f) == "");
          CHECK(FirstMismatch(cache, whole_cache, 0.0f, 0.0f) == "");
        }
      }
    }
  }
}

TEST_CASE("Token-by-token steps of B sessions equal one call per session",
          "[short_conv]") {
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    INFO("kernel body " << KernelIsaName(isa));
    for (int width : {1, 3, 4, 6, 17}) {
      for (int channels : {5, 16, 40, 300}) {
        INFO("width " << width << " channels " << channels);
        const int batch = 3;
        const int64_t tokens = 9;
        // Session b's sequence is x_b; each has its own cache.
        std::vector<ConvCase> sessions;
        for (int b = 0; b < batch; ++b) {
          sessions.push_back(
              MakeCase(tokens, channels, width, 50 * b + width + channels));
          sessions[b].weight = sessions[0].weight;
        }
        const std::vector<float>& weight = sessions[0].weight;
        const int64_t x_stride = sessions[0].x_stride;

        std::vector<std::vector<float>> whole_y(batch);
        std::vector<std::vector<float>> whole_cache(batch);
        for (int b = 0; b < batch; ++b) {
          whole_y[b].resize(tokens * channels);
          whole_cache[b] = sessions[b].cache;
          CausalShortConv(sessions[b].x.data(), x_stride, tokens, channels,
                          weight.data(), width, ConvActivation::kSilu,
                          whole_cache[b].data(), whole_y[b].data());
        }

        // Caches given in reverse order: caches[b] belongs to row b only.
        std::vector<std::vector<float>> step_cache(batch);
        std::vector<float*> cache_ptrs(batch);
        for (int b = 0; b < batch; ++b) {
          step_cache[b] = sessions[batch - 1 - b].cache;
          cache_ptrs[b] = step_cache[b].data();
        }
        std::vector<std::vector<float>> step_y(
            batch, std::vector<float>(tokens * channels));
        std::vector<float> x_rows(batch * x_stride);
        std::vector<float> y_rows(batch * channels);
        for (int64_t t = 0; t < tokens; ++t) {
          for (int b = 0; b < batch; ++b) {
            const std::vector<float>& xs = sessions[batch - 1 - b].x;
            std::copy(xs.begin() + t * x_stride,
                      xs.begin() + t * x_stride + channels,
                      x_rows.begin() + b * x_stride);
          }
          CausalShortConvStep(x_rows.data(), x_stride, batch, channels,
                              weight.data(), width, ConvActivation::kSilu,
                              cache_ptrs.data(), y_rows.data());
          for (int b = 0; b < batch; ++b) {
            std::copy(y_rows.begin() + b * channels,
                      y_rows.begin() + (b + 1) * channels,
                      step_y[batch - 1 - b].begin() + t * channels);
          }
        }
        for (int b = 0; b < batch; ++b) {
          CHECK(FirstMismatch(step_y[b], whole_y[b], 0.0f, 0.0f) == "");
          CHECK(FirstMismatch(step_cache[batch - 1 - b], whole_cache[b], 0.0f,
                              0.0f) == "");
        }

        // And the step against the reference step.
        std::vector<std::vector<float>> ref_cache(batch);
        std::vector<float*> ref_ptrs(batch);
        for (int b = 0; b < batch; ++b) {
          ref_cache[b] = sessions[b].cache;
          ref_ptrs[b] = ref_cache[b].data();
        }
        std::vector<std::vector<float>> got_cache = ref_cache;
        std::vector<float*> got_ptrs(batch);
        for (int b = 0; b < batch; ++b) got_ptrs[b] = got_cache[b].data();
        std::vector<float> ref_y(batch * channels);
        std::vector<float> got_y(batch * channels);
        reference::CausalShortConvStep(
            sessions[0].x.data(), x_stride, batch, channels, weight.data(),
            width, ConvActivation::kNone, ref_ptrs.data(), ref_y.data());
        CausalShortConvStep(sessions[0].x.data(), x_stride, batch, channels,
                            weight.data(), width, ConvActivation::kNone,
                            got_ptrs.data(), got_y.data());
        CHECK(FirstMismatch(got_y, ref_y, 0.0f, ConvTolerance(width)) == "");
        for (int b = 0; b < batch; ++b) {
          CHECK(FirstMismatch(got_cache[b], ref_cache[b], 0.0f, 0.0f) == "");
        }
      }
    }
  }
}

}  // namespace
}  // namespace linserve::kernels
