// The GEMM of a few rows (a decode step: one row per session) against bf16
// weights that oneDNN has already packed, y = x W^T (+ bias).
//
// Why: at M = 1..64, oneDNN 2.6's matmul is far from the machine's limits on
// many cores (at M = 1 on 16 AMX cores it streams the weights at a sixth of
// the read bandwidth), and a decode step is nothing but such GEMMs. This
// kernel reads the weights once per call, in the order they lie in memory,
// split over threads by groups of 16 output columns; each row is a chain of
// AVX512-BF16 dot products (or their exact emulation), so the step runs at
// the memory bandwidth for small M and near the dot-product peak for M = 64.
//
// It reads oneDNN's own packing ("BA16a<NB>b2a": for each block of NB output
// columns, the k pairs in order, each pair as NB x 2 bf16), so the layer
// keeps one copy of its weights. DenseLayer parses oneDNN's memory
// descriptor into a PackedBf16Weights and uses this kernel only when the
// layout is that one.
//
// Exactness: a row's result depends on that row and the weights only, never
// on M or on how rows and columns are split over threads: every output is
// acc = 0; for each k pair in order: acc += w[odd] x[odd]; acc += w[even]
// x[even] (products of bf16 values are exact in fp32, so this is what
// VDPBF16PS does), then + bias. So a session's logits are bitwise the same
// whether it is decoded alone or among others. The bodies (portable, AVX-512
// with and without AVX512-BF16) agree bitwise except on subnormal values
// (VDPBF16PS flushes them).
#ifndef LINSERVE_KERNELS_INTERNAL_PACKED_BF16_GEMM_H_
#define LINSERVE_KERNELS_INTERNAL_PACKED_BF16_GEMM_H_

#include <cstdint>

#include "kernels/bf16.h"

namespace linserve::kernels::internal {

// W [n, k] in oneDNN's "BA16a<NB>b2a" packing of the matmul weights [k, n]:
// element (k, n) lies at
//   (n / NB) * n_block_stride + (k / 2) * 2 NB + (n % NB) * 2 + k % 2.
// k_padded (a multiple of 32) and the columns up to a multiple of NB are
// zero padding.
struct PackedBf16Weights {
  const bf16_t* data = nullptr;
  int n = 0;
  int k_padded = 0;
  int n_block = 0;  // NB: 16, 32, 48 or 64.
  int64_t n_block_stride = 0;
};

// Output columns handled together by one thread: one 64-byte line of a k
// pair (16 columns x 2 bf16).
inline constexpr int kPackedColumnGroup = 16;

// The largest M this kernel is meant for (DenseLayer's decode path).
inline constexpr int kPackedBf16GemmMaxRows = 64;

// y [m, w.n] (row stride ldy) = x [m, w.k_padded] (bf16, row stride ldx,
// zero in the padding) times W^T, + bias [w.n] if not null. Splits the
// column groups over OpenMP threads when the weights are large enough to
// pay for it. Dispatches on ActiveKernelIsa() and AVX512-BF16.
void PackedBf16Gemm(const bf16_t* x, int64_t ldx, int m,
                    const PackedBf16Weights& w, const float* bias, float* y,
                    int64_t ldy);

// The body PackedBf16Gemm runs now: "avx512bf16", "avx512" or "portable".
const char* PackedBf16GemmBodyName();

// The bodies, on column groups [group_begin, group_end) of 16 columns, on
// the calling thread. For tests and for PackedBf16Gemm.
void PackedBf16GemmPortable(const bf16_t* x, int64_t ldx, int m,
                            const PackedBf16Weights& w, const float* bias,
                            float* y, int64_t ldy, int group_begin,
                            int group_end);

}  // namespace linserve::kernels::internal

namespace linserve::kernels::avx512::internal {

// kNativeBf16: VDPBF16PS (AVX512-BF16); otherwise the same arithmetic with
// two FMAs per pair (AVX512F), for AVX-512 CPUs without it.
void PackedBf16Gemm(const bf16_t* x, int64_t ldx, int m,
                    const ::linserve::kernels::internal::PackedBf16Weights& w,
                    const float* bias, float* y, int64_t ldy, int group_begin,
                    int group_end, bool native_bf16);

}  // namespace linserve::kernels::avx512::internal

#endif  // LINSERVE_KERNELS_INTERNAL_PACKED_BF16_GEMM_H_
