// Opt-in accounting of where a forward pass spends its wall-clock time, by
// kind of kernel: the GEMMs (DenseLayer::Forward, its input conversion
// included), the linear-attention core (chunkwise and recurrent), the short
// convolutions. Whatever a pass spends outside them (norms, activations,
// copies, the sampler) is its total minus these. Benchmarks switch it on
// (`engine_bench --profile`) to see which part of a prefill or decode step
// to work on; off, a timed kernel pays one relaxed atomic load.
//
// Kernels are timed from the thread that calls them (the engine thread),
// around their parallel regions, so the times add up to wall-clock time.
//
//   kernels::SetKernelTimingEnabled(true);
//   kernels::ResetKernelTimes();
//   model.Prefill(state, tokens);
//   const kernels::KernelTimes t = kernels::KernelTimesSoFar();
//   t.seconds[static_cast<int>(kernels::KernelKind::kGemm)] ...
#ifndef LINSERVE_KERNELS_KERNEL_TIMING_H_
#define LINSERVE_KERNELS_KERNEL_TIMING_H_

#include <array>
#include <cstdint>
#include <string_view>

namespace linserve::kernels {

enum class KernelKind { kGemm, kAttentionCore, kShortConv };
inline constexpr int kNumKernelKinds = 3;

std::string_view KernelKindName(KernelKind kind);

struct KernelTimes {
  std::array<double, kNumKernelKinds> seconds{};
  std::array<int64_t, kNumKernelKinds> calls{};
};

void SetKernelTimingEnabled(bool enabled);
bool KernelTimingEnabled();
void ResetKernelTimes();
KernelTimes KernelTimesSoFar();

// Adds the time from its construction to its destruction to `kind`, when
// timing is on. A timer inside another one's scope (a kernel calling a
// kernel) does not count: only the outermost timer of a thread adds.
class ScopedKernelTimer {
 public:
  explicit ScopedKernelTimer(KernelKind kind);
  ~ScopedKernelTimer();
  ScopedKernelTimer(const ScopedKernelTimer&) = delete;
  ScopedKernelTimer& operator=(const ScopedKernelTimer&) = delete;

 private:
  KernelKind kind_;
  bool in_depth_ = false;  // Timing was on: this timer counts in the depth.
  int64_t start_ns_ = -1;  // -1: not the outermost timer, or timing off.
};

}  // namespace linserve::kernels

#endif  // LINSERVE_KERNELS_KERNEL_TIMING_H_
