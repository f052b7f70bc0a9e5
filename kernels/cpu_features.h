// Which instruction sets the kernels may use, decided once at run time.
//
// Every hand-written kernel has a portable body (plain C++, compiled for the
// baseline ISA) and, on x86-64, an AVX-512 body. ActiveKernelIsa() picks the
// best body this CPU supports, capped by the environment variable
// LINSERVE_KERNEL_ISA=portable|avx512 so that the fallback can be forced and
// tested on any machine (pair it with ONEDNN_MAX_CPU_ISA=AVX2 to also cap
// oneDNN). Tests switch bodies with ScopedKernelIsa.
//
//   if (ActiveKernelIsa() == KernelIsa::kAvx512) { ...avx512 body... }
#ifndef LINSERVE_KERNELS_CPU_FEATURES_H_
#define LINSERVE_KERNELS_CPU_FEATURES_H_

#include <string_view>

namespace linserve::kernels {

// What the CPU offers (cpuid, and the OS saving the AVX-512 / AMX state).
struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512dq = false;
  bool avx512vl = false;
  bool avx512_bf16 = false;
  bool amx_bf16 = false;  // AMX tiles with bf16 (oneDNN uses them for GEMM).
};

// Detected once; thread-safe.
const CpuFeatures& DetectedCpuFeatures();

// Kernel bodies, in increasing order of capability.
enum class KernelIsa { kPortable = 0, kAvx512 = 1 };

std::string_view KernelIsaName(KernelIsa isa);

// The best body supported by the CPU and the build, capped by
// LINSERVE_KERNEL_ISA and by any ScopedKernelIsa in effect. Cheap (one
// relaxed atomic load); call it per kernel invocation.
KernelIsa ActiveKernelIsa();

// The best body the CPU and build support, ignoring caps: tests loop over
// every ISA up to this one.
KernelIsa MaxSupportedKernelIsa();

// The threads the kernels' parallel regions run on (OpenMP's team size:
// OMP_NUM_THREADS, else the cores).
int KernelThreads();

// For tests and benchmarks: caps the active ISA while in scope. Not for
// concurrent use with running kernels on other threads.
class ScopedKernelIsa {
 public:
  explicit ScopedKernelIsa(KernelIsa isa);
  ~ScopedKernelIsa();
  ScopedKernelIsa(const ScopedKernelIsa&) = delete;
  ScopedKernelIsa& operator=(const ScopedKernelIsa&) = delete;

 private:
  KernelIsa previous_;
};

}  // namespace linserve::kernels

#endif  // LINSERVE_KERNELS_CPU_FEATURES_H_
