// Register-blocked fp32 GEMM for the small, cache-resident products inside a
// chunk of the chunkwise linear attention (64x128 by 128x128 and the like).
// oneDNN's per-call overhead dwarfs products this small, so the chunk loop
// calls these microkernels directly.
//
//   C[m, n] = (accumulate ? C[m, n] : 0) + sum_p A(m, p) * B[p, n]
//   A(m, p) = a[m * a_row_stride + p * a_col_stride], B and C row-major.
// One of A's strides must be 1: column stride 1 for a row-major A, row stride
// 1 for an operand read transposed.
//
// Flags skip work that a triangular operand makes useless:
//   kSmallGemmLowerA  A is lower triangular: A(m, p) = 0 for p > m, and
//                     those zeros are in memory (a tile of rows stops its p
//                     loop at its last row, not at each row).
//   kSmallGemmLowerC  only C[m, n] with n <= m is wanted; entries above the
//                     diagonal may be computed or left as they were.
// Thread-safe, allocates nothing; operands must not alias C.
#ifndef LINSERVE_KERNELS_INTERNAL_SMALL_GEMM_H_
#define LINSERVE_KERNELS_INTERNAL_SMALL_GEMM_H_

#include <cstdint>

namespace linserve::kernels::internal {

enum SmallGemmFlags : int {
  kSmallGemmOverwrite = 0,
  kSmallGemmAccumulate = 1,
  kSmallGemmLowerA = 2,
  kSmallGemmLowerC = 4,
};

// Dispatches on ActiveKernelIsa() (for tests and one-off callers; the chunk
// bodies call their ISA's version directly).
void SmallGemm(int m, int n, int k, const float* a, int64_t a_row_stride,
               int64_t a_col_stride, const float* b, int64_t ldb, float* c,
               int64_t ldc, int flags);

// Plain loops the compiler vectorises for the baseline ISA.
void SmallGemmPortable(int m, int n, int k, const float* a,
                       int64_t a_row_stride, int64_t a_col_stride,
                       const float* b, int64_t ldb, float* c, int64_t ldc,
                       int flags);

}  // namespace linserve::kernels::internal

namespace linserve::kernels::avx512::internal {

// AVX-512F + FMA microkernels (8x32 register tiles); defined only when
// LINSERVE_HAVE_AVX512_BODIES, called only when the CPU has AVX-512.
void SmallGemm(int m, int n, int k, const float* a, int64_t a_row_stride,
               int64_t a_col_stride, const float* b, int64_t ldb, float* c,
               int64_t ldc, int flags);

}  // namespace linserve::kernels::avx512::internal

#endif  // LINSERVE_KERNELS_INTERNAL_SMALL_GEMM_H_
