// The dispatching and portable small GEMM of small_gemm.h. The portable body
// updates rows of C with AXPYs over contiguous rows of B (the loop the
// compiler vectorises), a few rows of C at a time so each B row loaded feeds
// several of them.
#include "kernels/internal/small_gemm.h"

#include <algorithm>
#include <cstdint>

#include "kernels/cpu_features.h"

namespace linserve::kernels::internal {
namespace {

// Rows of C updated together: each B row is loaded once for all of them.
constexpr int kRowBlock = 4;

}  // namespace

void SmallGemm(int m, int n, int k, const float* a, int64_t a_row_stride,
               int64_t a_col_stride, const float* b, int64_t ldb, float* c,
               int64_t ldc, int flags) {
#if LINSERVE_HAVE_AVX512_BODIES
  if (ActiveKernelIsa() == KernelIsa::kAvx512) {
    return avx512::internal::SmallGemm(m, n, k, a, a_row_stride, a_col_stride,
                                       b, ldb, c, ldc, flags);
  }
#endif
  SmallGemmPortable(m, n, k, a, a_row_stride, a_col_stride, b, ldb, c, ldc,
                    flags);
}

void SmallGemmPortable(int m, int n, int k, const float* a,
                       int64_t a_row_stride, int64_t a_col_stride,
                       const float* b, int64_t ldb, float* c, int64_t ldc,
                       int flags) {
  const bool accumulate = (flags & kSmallGemmAccumulate) != 0;
  const bool lower_a = (flags & kSmallGemmLowerA) != 0;
  const bool lower_c = (flags & kSmallGemmLowerC) != 0;
  for (int i0 = 0; i0 < m; i0 += kRowBlock) {
    const int rows = std::min(kRowBlock, m - i0);
    const int last = i0 + rows - 1;  // Largest row index of the block.
    const int k_end = lower_a ? std::min(k, last + 1) : k;
    const int n_end = lower_c ? std::min(n, last + 1) : n;
    float* __restrict c_rows[kRowBlock];
    const float* a_rows[kRowBlock];
    for (int r = 0; r < kRowBlock; ++r) {
      // Rows past the end alias the last real row; their A is read as 0.
      const int i = std::min(i0 + r, m - 1);
      c_rows[r] = c + int64_t{i} * ldc;
      a_rows[r] = a + int64_t{i} * a_row_stride;
    }
    for (int r = 0; r < rows; ++r) {
      if (!accumulate) std::fill(c_rows[r], c_rows[r] + n_end, 0.0f);
    }
    for (int p = 0; p < k_end; ++p) {
      const float* __restrict b_row = b + int64_t{p} * ldb;
      float ap[kRowBlock];
      for (int r = 0; r < kRowBlock; ++r) {
        ap[r] = r < rows ? a_rows[r][int64_t{p} * a_col_stride] : 0.0f;
      }
      if (rows == kRowBlock) {
        float* __restrict c0 = c_rows[0];
        float* __restrict c1 = c_rows[1];
        float* __restrict c2 = c_rows[2];
        float* __restrict c3 = c_rows[3];
#pragma omp simd
        for (int j = 0; j < n_end; ++j) {
          const float bj = b_row[j];
          c0[j] += ap[0] * bj;
          c1[j] += ap[1] * bj;
          c2[j] += ap[2] * bj;
          c3[j] += ap[3] * bj;
        }
      } else {
        for (int r = 0; r < rows; ++r) {
          float* __restrict cr = c_rows[r];
          const float ar = ap[r];
#pragma omp simd
          for (int j = 0; j < n_end; ++j) cr[j] += ar * b_row[j];
        }
      }
    }
  }
}

}  // namespace linserve::kernels::internal
