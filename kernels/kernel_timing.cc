// Kernel timing (kernels/kernel_timing.h): process-wide relaxed atomic
// counters, and a per-thread depth so that nested timers count once.
#include "kernels/kernel_timing.h"

#include <atomic>
#include <chrono>

namespace linserve::kernels {
namespace {

std::atomic<bool> enabled{false};
std::array<std::atomic<int64_t>, kNumKernelKinds> nanoseconds{};
std::array<std::atomic<int64_t>, kNumKernelKinds> calls{};
thread_local int depth = 0;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string_view KernelKindName(KernelKind kind) {
  switch (kind) {
    case KernelKind::kGemm:
      return "GEMM";
    case KernelKind::kAttentionCore:
      return "attention core";
    case KernelKind::kShortConv:
      return "short conv";
  }
  return "?";
}

void SetKernelTimingEnabled(bool on) {
  enabled.store(on, std::memory_order_relaxed);
}

bool KernelTimingEnabled() { return enabled.load(std::memory_order_relaxed); }

void ResetKernelTimes() {
  for (int i = 0; i < kNumKernelKinds; ++i) {
    nanoseconds[i].store(0, std::memory_order_relaxed);
    calls[i].store(0, std::memory_order_relaxed);
  }
}

KernelTimes KernelTimesSoFar() {
  KernelTimes t;
  for (int i = 0; i < kNumKernelKinds; ++i) {
    t.seconds[i] = nanoseconds[i].load(std::memory_order_relaxed) * 1e-9;
    t.calls[i] = calls[i].load(std::memory_order_relaxed);
  }
  return t;
}

ScopedKernelTimer::ScopedKernelTimer(KernelKind kind) : kind_(kind) {
  if (!enabled.load(std::memory_order_relaxed)) return;
  in_depth_ = true;
  if (depth++ == 0) start_ns_ = NowNs();
}

ScopedKernelTimer::~ScopedKernelTimer() {
  if (!in_depth_) return;
  --depth;
  if (start_ns_ < 0) return;  // Nested in a timer that counts.
  const int i = static_cast<int>(kind_);
  nanoseconds[i].fetch_add(NowNs() - start_ns_, std::memory_order_relaxed);
  calls[i].fetch_add(1, std::memory_order_relaxed);
}

}  // namespace linserve::kernels
