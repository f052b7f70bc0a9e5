// The dispatching, threading and portable body of the packed bf16 GEMM of
// kernels/internal/packed_bf16_gemm.h. The portable body is the arithmetic
// of the header written out: one fp32 chain per output, k pairs in order,
// odd element first.
#include "kernels/internal/packed_bf16_gemm.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cpu_features.h"
#include "kernels/internal/omp_team.h"

namespace linserve::kernels::internal {
namespace {

// Weight bytes (times rows) below which one more thread costs more than it
// saves: the OpenMP fork and join take a few microseconds.
constexpr int64_t kWorkPerThread = int64_t{64} << 10;

void RunBody(const bf16_t* x, int64_t ldx, int m, const PackedBf16Weights& w,
             const float* bias, float* y, int64_t ldy, int group_begin,
             int group_end) {
#if LINSERVE_HAVE_AVX512_BODIES
  if (ActiveKernelIsa() == KernelIsa::kAvx512) {
    return avx512::internal::PackedBf16Gemm(x, ldx, m, w, bias, y, ldy,
                                            group_begin, group_end,
                                            DetectedCpuFeatures().avx512_bf16);
  }
#endif
  PackedBf16GemmPortable(x, ldx, m, w, bias, y, ldy, group_begin, group_end);
}

}  // namespace

const char* PackedBf16GemmBodyName() {
#if LINSERVE_HAVE_AVX512_BODIES
  if (ActiveKernelIsa() == KernelIsa::kAvx512) {
    return DetectedCpuFeatures().avx512_bf16 ? "avx512bf16" : "avx512";
  }
#endif
  return "portable";
}

void PackedBf16Gemm(const bf16_t* x, int64_t ldx, int m,
                    const PackedBf16Weights& w, const float* bias, float* y,
                    int64_t ldy) {
  if (m <= 0 || w.n <= 0) return;
  const int groups = (w.n + kPackedColumnGroup - 1) / kPackedColumnGroup;
  const int64_t work = int64_t{m} * groups * kPackedColumnGroup * w.k_padded *
                       static_cast<int64_t>(sizeof(bf16_t));
  const int workers = static_cast<int>(
      std::min<int64_t>({omp_get_max_threads(), groups,
                         std::max<int64_t>(1, work / kWorkPerThread)}));
  if (workers <= 1) {
    RunBody(x, ldx, m, w, bias, y, ldy, 0, groups);
    return;
  }
  // The whole team, even where fewer threads work (see FullTeamRange in
  // kernels/internal/omp_team.h): a smaller team would make libgomp end
  // threads that the next full-size region must create again.
#pragma omp parallel
  {
    const internal::ThreadRange r = internal::FullTeamRange(groups, workers);
    if (r.begin < r.end) {
      RunBody(x, ldx, m, w, bias, y, ldy, static_cast<int>(r.begin),
              static_cast<int>(r.end));
    }
  }
}

void PackedBf16GemmPortable(const bf16_t* x, int64_t ldx, int m,
                            const PackedBf16Weights& w, const float* bias,
                            float* y, int64_t ldy, int group_begin,
                            int group_end) {
  constexpr int G = kPackedColumnGroup;
  const int pairs = w.k_padded / 2;
  const int64_t pair_stride = int64_t{2} * w.n_block;
  for (int g = group_begin; g < group_end; ++g) {
    const int col0 = g * G;
    const bf16_t* base =
        w.data + (col0 / w.n_block) * w.n_block_stride + (col0 % w.n_block) * 2;
    const int cols = std::min(G, w.n - col0);
    for (int r = 0; r < m; ++r) {
      const bf16_t* xr = x + r * ldx;
      float acc[G] = {};
      for (int p = 0; p < pairs; ++p) {
        const bf16_t* wp = base + p * pair_stride;
        const float x_even = Bf16ToFloat(xr[2 * p]);
        const float x_odd = Bf16ToFloat(xr[2 * p + 1]);
        for (int c = 0; c < G; ++c) {
          acc[c] += Bf16ToFloat(wp[2 * c + 1]) * x_odd;
          acc[c] += Bf16ToFloat(wp[2 * c]) * x_even;
        }
      }
      float* yr = y + r * ldy + col0;
      for (int c = 0; c < cols; ++c) {
        yr[c] = bias != nullptr ? acc[c] + bias[col0 + c] : acc[c];
      }
    }
  }
}

}  // namespace linserve::kernels::internal
