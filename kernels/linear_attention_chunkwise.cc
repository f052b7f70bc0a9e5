// ChunkwiseForward (kernels/linear_attention.h): the public entry, which
// resolves strides, sizes the per-thread scratch and dispatches on the ISA,
// and the portable body. The algorithm itself is shared with the AVX-512 body
// through internal/linear_attention_chunkwise_body.inc; this file supplies
// its portable primitives (loops the compiler vectorises, libm's exp).
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/internal/linear_attention_chunkwise.h"
#include "kernels/internal/omp_team.h"
#include "kernels/internal/small_gemm.h"
#include "kernels/kernel_timing.h"
#include "kernels/linear_attention.h"

namespace linserve::kernels {
namespace internal {
namespace portable_chunkwise {
namespace {

void Gemm(int m, int n, int k, const float* a, int64_t a_row_stride,
          int64_t a_col_stride, const float* b, int64_t ldb, float* c,
          int64_t ldc, int flags) {
  SmallGemmPortable(m, n, k, a, a_row_stride, a_col_stride, b, ldb, c, ldc,
                    flags);
}

void ExpInPlace(float* x, int n) {
  for (int i = 0; i < n; ++i) x[i] = std::exp(x[i]);
}

void ExpDiffMul(const float* x, const float* y, const float* m, int n,
                float* out) {
  for (int i = 0; i < n; ++i) {
    out[i] = m[i] * std::exp(y != nullptr ? x[i] - y[i] : x[i]);
  }
}

void ScalarExpDiffMul(float x0, const float* y, const float* m, int n,
                      float* out) {
  for (int i = 0; i < n; ++i) out[i] = m[i] * std::exp(x0 - y[i]);
}

void Transpose(const float* src, int rows, int cols, int64_t lds, float* dst,
               int64_t ldd) {
  for (int i = 0; i < rows; ++i) {
    for (int j = 0; j < cols; ++j) dst[j * ldd + i] = src[i * lds + j];
  }
}

void StoreRows(const float* x, int64_t ldx, const float* factor, int rows,
               int width, float* out, int64_t ldo, bool /*stream*/) {
  for (int i = 0; i < rows; ++i) {
    const float* __restrict s = x + i * ldx;
    float* __restrict d = out + i * ldo;
    const float f = factor != nullptr ? factor[i] : 1.0f;
#pragma omp simd
    for (int j = 0; j < width; ++j) d[j] = f * s[j];
  }
}

void ZeroAboveDiagonal(float* p, int64_t ldp, int rows, int n) {
  for (int i = 0; i < rows; ++i) {
    float* row = p + i * ldp;
    for (int j = i + 1; j < n; ++j) row[j] = 0.0f;
  }
}

// a = (I + strict_lower(l))^-1 by forward substitution, row by row:
// a_i = e_i - sum_{j<i} l_ij a_j (row j of a is zero beyond column j).
void InvertUnitLower(const float* l, int64_t ldl, int n, float* a,
                     int64_t lda) {
  for (int i = 0; i < n; ++i) {
    float* __restrict ai = a + i * lda;
    std::fill(ai, ai + n, 0.0f);
    ai[i] = 1.0f;
    const float* li = l + i * ldl;
    for (int j = 0; j < i; ++j) {
      const float lij = li[j];
      const float* __restrict aj = a + j * lda;
#pragma omp simd
      for (int t = 0; t <= j; ++t) ai[t] -= lij * aj[t];
    }
  }
}

#include "kernels/internal/linear_attention_chunkwise_body.inc"

}  // namespace
}  // namespace portable_chunkwise

int64_t ChunkwiseProductFloats(UpdateRule rule, int key_dim, int chunk_size) {
  return portable_chunkwise::ChunkProductFloats(rule, key_dim, chunk_size);
}

int64_t ChunkwiseScratchFloats(int key_dim, int value_dim, int chunk_size) {
  return portable_chunkwise::ChunkScratchLayout(key_dim, value_dim, chunk_size)
      .total;
}

void ChunkwiseForwardPortable(const ChunkwiseProblem& problem) {
  portable_chunkwise::ChunkwiseAllHeads(problem);
}

}  // namespace internal

namespace {

// Below this many multiply-adds per call, OpenMP's fork/join costs more than
// splitting the heads saves.
constexpr int64_t kMinParallelWork = int64_t{1} << 18;
// Outputs from this size on leave the cache before their reader comes, so
// they are written past it (streaming stores); smaller ones stay cached.
constexpr int64_t kStreamOutBytes = int64_t{1} << 20;
// Scratch buffers start on a cache line (64 bytes).
constexpr int64_t kAlignFloats = 16;
// The narrowest slice of a head's value columns a thread gets when there are
// fewer heads than threads: narrower, the per-slice recomputation of Q K^T
// (and the delta rules' (I + L)^-1) outweighs the columns' work.
constexpr int kMinValueSlice = 64;

// The first pass's products (P and A per head and chunk, shared by the
// head's value slices) take at most this many floats; longer calls go in
// windows of chunks.
constexpr int64_t kMaxChunkProductFloats = int64_t{1} << 21;
std::atomic<int64_t> max_chunk_product_floats_for_testing{0};

// Whether the rule's split heads share their chunks' state-free products
// from a first pass (ChunkwiseAllHeads) instead of recomputing them per
// slice: the delta rules (K K^T, the triangular solve) and GLA (its decayed
// Q~ and K~ with their exponentials), where that part is largest.
bool SharesChunkProducts(UpdateRule rule) {
  return rule == UpdateRule::kDelta || rule == UpdateRule::kGatedDelta ||
         rule == UpdateRule::kVectorDecay;
}

// Multiply-adds of one chunk of one work item: `fixed` is what does not
// depend on the value columns (Q K^T; the delta rules' K K^T and (I + L)^-1;
// GLA's decayed Q~ and K~, whose exponentials count about ten multiply-adds
// each), repeated by every slice of a head unless the rule shares it;
// `per_column` what grows with the slice's width (Q S, P V, the state update;
// the delta rules' K S and A R); `gather` the copies of the chunk's Q and K
// rows every item makes.
struct ChunkCost {
  double fixed;
  double per_column;
  double gather;
};

ChunkCost CostOfChunk(UpdateRule rule, int key_dim, int chunk) {
  const double c = chunk, k = key_dim;
  switch (rule) {
    case UpdateRule::kAdditive:
    case UpdateRule::kFixedDecay:
      return {c * c * k / 2, 2 * c * k + c * c / 2, 2 * c * k};
    case UpdateRule::kVectorDecay:
      return {c * c * k / 2 + 10 * k * c * c / 32, 2 * c * k + c * c / 2,
              2 * c * k};
    case UpdateRule::kDelta:
    case UpdateRule::kGatedDelta:
      return {c * c * k + c * c * c / 6, 3 * c * k + c * c, 2 * c * k};
  }
  return {0, 1, 0};
}

}  // namespace

namespace internal {

void SetMaxChunkProductFloatsForTesting(int64_t floats) {
  max_chunk_product_floats_for_testing.store(floats);
}

ValueSplit ChooseValueSplit(UpdateRule rule, int num_heads, int key_dim,
                            int value_dim, int chunk, int threads) {
  ValueSplit best{1, value_dim};
  if (threads <= 1 || num_heads <= 0 || value_dim <= 0) return best;
  const ChunkCost cost = CostOfChunk(rule, key_dim, chunk);
  double best_time = -1;
  const int max_slices = std::max(1, value_dim / kMinValueSlice);
  for (int wanted = 1; wanted <= max_slices; ++wanted) {
    // Widths stay multiples of 16 (whole vectors); the last slice takes the
    // rest.
    const int width =
        std::min(value_dim, ((value_dim + wanted - 1) / wanted + 15) / 16 * 16);
    const int slices = (value_dim + width - 1) / width;
    const int64_t items = int64_t{num_heads} * slices;
    const int64_t rounds = (items + threads - 1) / threads;
    // Shared products: computed once per head and chunk in a first pass
    // spread over all threads, and only gathered by the slices.
    const bool shared = SharesChunkProducts(rule) && slices > 1;
    const double per_item = shared ? cost.gather : cost.fixed;
    const double first_pass = shared ? cost.fixed * num_heads / threads : 0;
    const double time =
        static_cast<double>(rounds) * (per_item + cost.per_column * width) +
        first_pass;
    if (best_time < 0 || time < best_time) {
      best_time = time;
      best = {slices, width};
    }
  }
  return best;
}

}  // namespace internal

void ChunkwiseForward(const AttentionSpec& spec, int64_t num_tokens,
                      const AttentionInputs& in, AttentionState state,
                      float* out, int chunk_size) {
  if (num_tokens <= 0 || spec.num_heads <= 0) return;
  const ScopedKernelTimer timer(KernelKind::kAttentionCore);
  const int H = spec.num_heads;
  const int K = spec.key_dim;
  const int V = spec.value_dim;
  const int64_t hk = int64_t{H} * K;
  const int64_t hv = int64_t{H} * V;

  internal::ChunkwiseProblem p{};
  p.rule = spec.rule;
  p.normalize = spec.rule == UpdateRule::kAdditive && spec.normalize;
  p.num_heads = H;
  p.key_dim = K;
  p.value_dim = V;
  // A chunk longer than the call only wastes scratch.
  p.chunk_size =
      static_cast<int>(std::min<int64_t>(std::max(chunk_size, 1), num_tokens));
  p.num_tokens = num_tokens;
  p.q = in.q;
  p.k = in.k;
  p.v = in.v;
  p.log_decay = in.log_decay;
  p.beta = in.beta;
  p.head_log_decay = spec.head_log_decay;
  p.q_stride = in.q_stride != 0 ? in.q_stride : hk;
  p.k_stride = in.k_stride != 0 ? in.k_stride : hk;
  p.v_stride = in.v_stride != 0 ? in.v_stride : hv;
  p.s = state.s;
  p.z = p.normalize ? state.z : nullptr;
  p.out = out;
  p.stream_out = num_tokens * hv * int64_t{sizeof(float)} >= kStreamOutBytes;

  const int64_t work = num_tokens * H * K * V;
  const bool parallel = work >= kMinParallelWork;
  const int threads = omp_get_max_threads();
  // Heads that do not share out evenly over the threads (fewer heads than
  // threads, or 6 heads on 16): split each head's value columns into slices
  // where that shortens the slowest thread's work (internal::
  // ChooseValueSplit). Never with the normaliser (z is one per head).
  internal::ValueSplit split{1, V};
  if (parallel && !p.normalize) {
    split =
        internal::ChooseValueSplit(spec.rule, H, K, V, p.chunk_size, threads);
  }
  p.value_slices = split.slices;
  p.value_slice_width = split.width;
  p.num_threads =
      parallel ? std::max(1, std::min(threads, H * p.value_slices)) : 1;
  p.scratch_floats_per_thread =
      internal::ChunkwiseScratchFloats(K, p.value_slice_width, p.chunk_size);
  std::vector<float> scratch(p.num_threads * p.scratch_floats_per_thread +
                             kAlignFloats);
  const uintptr_t base = reinterpret_cast<uintptr_t>(scratch.data());
  const uintptr_t aligned = (base + 63) & ~uintptr_t{63};
  p.scratch = scratch.data() + (aligned - base) / sizeof(float);
  std::vector<float> products;
  if (SharesChunkProducts(spec.rule) && p.value_slices > 1) {
    const int64_t block =
        internal::ChunkwiseProductFloats(spec.rule, K, p.chunk_size);
    const int64_t chunks = (num_tokens + p.chunk_size - 1) / p.chunk_size;
    const int64_t testing_cap = max_chunk_product_floats_for_testing.load();
    const int64_t cap = testing_cap > 0 ? testing_cap : kMaxChunkProductFloats;
    p.window_chunks =
        static_cast<int>(std::clamp<int64_t>(cap / (block * H), 1, chunks));
    products.resize(block * H * p.window_chunks);
    p.chunk_products = products.data();
  }

#if LINSERVE_HAVE_AVX512_BODIES
  if (ActiveKernelIsa() == KernelIsa::kAvx512) {
    return avx512::internal::ChunkwiseForward(p);
  }
#endif
  internal::ChunkwiseForwardPortable(p);
}

}  // namespace linserve::kernels
