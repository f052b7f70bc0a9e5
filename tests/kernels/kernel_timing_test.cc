// Kernel timing (kernels/kernel_timing.h): off, nothing is counted; on, each
// timed kernel call adds its time to its kind once, nested timers included.
#include "kernels/kernel_timing.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "kernels/dense_layer.h"
#include "kernels/short_conv.h"
#include "tests/test_util.h"

namespace linserve::kernels {
namespace {

using ::linserve::testing::RandomVector;

constexpr int kGemm = static_cast<int>(KernelKind::kGemm);
constexpr int kCore = static_cast<int>(KernelKind::kAttentionCore);
constexpr int kConv = static_cast<int>(KernelKind::kShortConv);

// Switches timing on for a test, and off again.
class ScopedTiming {
 public:
  ScopedTiming() {
    ResetKernelTimes();
    SetKernelTimingEnabled(true);
  }
  ~ScopedTiming() { SetKernelTimingEnabled(false); }
};

TEST_CASE("kernel timing counts each timed call under its kind only when on",
          "[kernel_timing]") {
  const std::vector<float> w = RandomVector(64 * 32, 1);
  auto layer = DenseLayer::Create(
      {.weights = w.data(), .out_features = 64, .in_features = 32});
  REQUIRE(layer.ok());
  const std::vector<float> x = RandomVector(4 * 32, 2);
  std::vector<float> y(4 * 64);

  ResetKernelTimes();
  (*layer)->Forward(x.data(), 4, y.data());
  CHECK(KernelTimesSoFar().calls[kGemm] == 0);

  {
    const ScopedTiming timing;
    (*layer)->Forward(x.data(), 4, y.data());
    (*layer)->Forward(x.data(), 4, y.data());
    const std::vector<float> conv_w = RandomVector(32 * 4, 3);
    std::vector<float> cache(32 * 4, 0.0f), out(4 * 32);
    CausalShortConv(x.data(), 32, 4, 32, conv_w.data(), 4,
                    ConvActivation::kSilu, cache.data(), out.data());
    const KernelTimes t = KernelTimesSoFar();
    CHECK(t.calls[kGemm] == 2);
    CHECK(t.seconds[kGemm] > 0);
    CHECK(t.calls[kConv] == 1);
    CHECK(t.calls[kCore] == 0);
    CHECK(t.seconds[kCore] == 0);
  }
  (*layer)->Forward(x.data(), 4, y.data());
  CHECK(KernelTimesSoFar().calls[kGemm] == 2);
}

TEST_CASE("a timer nested in another counts once, under the outer kind",
          "[kernel_timing]") {
  const ScopedTiming timing;
  {
    const ScopedKernelTimer outer(KernelKind::kAttentionCore);
    {
      const ScopedKernelTimer inner(KernelKind::kGemm);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  const KernelTimes t = KernelTimesSoFar();
  CHECK(t.calls[kCore] == 1);
  CHECK(t.seconds[kCore] >= 0.002);
  CHECK(t.calls[kGemm] == 0);
  // And the depth is back to zero: the next timer counts again.
  { const ScopedKernelTimer again(KernelKind::kGemm); }
  CHECK(KernelTimesSoFar().calls[kGemm] == 1);
}

}  // namespace
}  // namespace linserve::kernels
