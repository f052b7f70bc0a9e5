#include "kernels/cpu_features.h"

#include <omp.h>

#include <atomic>
#include <cstdlib>
#include <string>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace linserve::kernels {
namespace {

#if defined(__x86_64__)
unsigned long long ReadXcr0() {
  unsigned int eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}
#endif

CpuFeatures Detect() {
  CpuFeatures f;
#if defined(__x86_64__)
  unsigned int eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool osxsave = (ecx >> 27) & 1;
  f.fma = (ecx >> 12) & 1;
  if (!osxsave) return f;
  const unsigned long long xcr0 = ReadXcr0();
  const bool os_avx = (xcr0 & 0x6) == 0x6;          // XMM and YMM state.
  const bool os_avx512 = (xcr0 & 0xe6) == 0xe6;     // + opmask, ZMM.
  const bool os_amx = (xcr0 & 0x60000) == 0x60000;  // XTILECFG, XTILEDATA.
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) {
    f.avx2 = os_avx && ((ebx >> 5) & 1);
    f.avx512f = os_avx512 && ((ebx >> 16) & 1);
    f.avx512dq = os_avx512 && ((ebx >> 17) & 1);
    f.avx512bw = os_avx512 && ((ebx >> 30) & 1);
    f.avx512vl = os_avx512 && ((ebx >> 31) & 1);
    f.amx_bf16 = os_amx && ((edx >> 22) & 1);
  }
  if (__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) {
    f.avx512_bf16 = os_avx512 && ((eax >> 5) & 1);
  }
  f.fma = f.fma && os_avx;
#endif
  return f;
}

KernelIsa DetectMaxIsa() {
#if defined(LINSERVE_HAVE_AVX512_BODIES)
  const CpuFeatures& f = DetectedCpuFeatures();
  if (f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl && f.fma) {
    return KernelIsa::kAvx512;
  }
#endif
  return KernelIsa::kPortable;
}

KernelIsa CapFromEnvironment(KernelIsa max) {
  const char* env = std::getenv("LINSERVE_KERNEL_ISA");
  if (env == nullptr) return max;
  const std::string value(env);
  if (value == "portable") return KernelIsa::kPortable;
  return max;  // "avx512" or anything else: no cap beyond what the CPU has.
}

std::atomic<KernelIsa>& ActiveIsaSlot() {
  static std::atomic<KernelIsa> slot{CapFromEnvironment(DetectMaxIsa())};
  return slot;
}

}  // namespace

const CpuFeatures& DetectedCpuFeatures() {
  static const CpuFeatures features = Detect();
  return features;
}

std::string_view KernelIsaName(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::kPortable:
      return "portable";
    case KernelIsa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

KernelIsa ActiveKernelIsa() {
  return ActiveIsaSlot().load(std::memory_order_relaxed);
}

KernelIsa MaxSupportedKernelIsa() {
  static const KernelIsa max = DetectMaxIsa();
  return max;
}

ScopedKernelIsa::ScopedKernelIsa(KernelIsa isa) : previous_(ActiveKernelIsa()) {
  const KernelIsa capped =
      static_cast<int>(isa) < static_cast<int>(MaxSupportedKernelIsa())
          ? isa
          : MaxSupportedKernelIsa();
  ActiveIsaSlot().store(capped, std::memory_order_relaxed);
}

ScopedKernelIsa::~ScopedKernelIsa() {
  ActiveIsaSlot().store(previous_, std::memory_order_relaxed);
}

int KernelThreads() { return omp_get_max_threads(); }

}  // namespace linserve::kernels
