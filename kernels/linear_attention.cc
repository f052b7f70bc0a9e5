// The recurrent forms of the linear-attention core (RecurrentStep,
// RecurrentForward): the ISA dispatch and the portable bodies, plus the small
// helpers of linear_attention.h. ChunkwiseForward lives in
// linear_attention_chunkwise.cc.
//
// Every rule updates S one head at a time in a single sweep over its rows,
// reading and writing each row once and accumulating the read-out S^T q on the
// fly, so a decode step costs one pass over the state (it is memory-bound).
// The delta rules need S^T k before the update: a first sweep computes it per
// column block, and the update sweep finds the head's state still in cache.
#include "kernels/linear_attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cpu_features.h"
#include "kernels/internal/linear_attention_bodies.h"
#include "kernels/kernel_timing.h"

namespace linserve::kernels {

const char* UpdateRuleName(UpdateRule rule) {
  switch (rule) {
    case UpdateRule::kAdditive:
      return "additive";
    case UpdateRule::kFixedDecay:
      return "fixed_decay";
    case UpdateRule::kVectorDecay:
      return "vector_decay";
    case UpdateRule::kDelta:
      return "delta";
    case UpdateRule::kGatedDelta:
      return "gated_delta";
  }
  return "unknown";
}

int64_t AttentionStateBytes(const AttentionSpec& spec) {
  const int64_t h = spec.num_heads;
  int64_t floats = h * spec.key_dim * spec.value_dim;
  if (spec.rule == UpdateRule::kAdditive && spec.normalize) {
    floats += h * spec.key_dim;
  }
  return floats * static_cast<int64_t>(sizeof(float));
}

void RecurrentStep(const AttentionSpec& spec, int batch,
                   const AttentionInputs& in, const AttentionState* states,
                   float* out) {
  const ScopedKernelTimer timer(KernelKind::kAttentionCore);
#if LINSERVE_HAVE_AVX512_BODIES
  if (ActiveKernelIsa() == KernelIsa::kAvx512) {
    return avx512::RecurrentStep(spec, batch, in, states, out);
  }
#endif
  portable::RecurrentStep(spec, batch, in, states, out);
}

void RecurrentForward(const AttentionSpec& spec, int64_t num_tokens,
                      const AttentionInputs& in, AttentionState state,
                      float* out) {
  const ScopedKernelTimer timer(KernelKind::kAttentionCore);
#if LINSERVE_HAVE_AVX512_BODIES
  if (ActiveKernelIsa() == KernelIsa::kAvx512) {
    return avx512::RecurrentForward(spec, num_tokens, in, state, out);
  }
#endif
  portable::RecurrentForward(spec, num_tokens, in, state, out);
}

namespace portable {
namespace {

// Below this many state floats touched per call, OpenMP's fork/join costs
// more than the sweep itself.
constexpr int64_t kMinParallelFloats = int64_t{1} << 15;
// Decay factors of up to this many rows are computed once per head and token.
constexpr int kMaxStackRows = 1024;
// Width (floats) of the column blocks of the delta rules.
constexpr int kDeltaBlockWidth = 128;

struct Strides {
  int64_t q, k, v;
};

Strides RowStrides(const AttentionSpec& spec, const AttentionInputs& in) {
  const int64_t hk = int64_t{spec.num_heads} * spec.key_dim;
  const int64_t hv = int64_t{spec.num_heads} * spec.value_dim;
  return {in.q_stride != 0 ? in.q_stride : hk,
          in.k_stride != 0 ? in.k_stride : hk,
          in.v_stride != 0 ? in.v_stride : hv};
}

// One token of one head: updates s [K, V] (and z [K] when normalising) and
// writes o [V]. `row_log_decay` is the per-row log decay [K] (kVectorDecay)
// or null; `decay` the scalar factor of the other rules (1 when none).
void StepHead(UpdateRule rule, int K, int V, const float* __restrict q,
              const float* __restrict k, const float* __restrict v,
              const float* __restrict row_log_decay, float decay, float beta,
              float* __restrict s, float* __restrict z, float* __restrict o) {
  if (rule == UpdateRule::kDelta || rule == UpdateRule::kGatedDelta) {
    const int width = kDeltaBlockWidth;
    float kv[kDeltaBlockWidth];
    float u[kDeltaBlockWidth];
    for (int j0 = 0; j0 < V; j0 += width) {
      const int w = std::min(width, V - j0);
      float* __restrict sb = s + j0;
      // kv = S_{t-1}^T k over this column block.
      for (int j = 0; j < w; ++j) kv[j] = 0.0f;
      for (int i = 0; i < K; ++i) {
        const float ki = k[i];
        const float* __restrict row = sb + int64_t{i} * V;
        for (int j = 0; j < w; ++j) kv[j] += row[j] * ki;
      }
      // u = beta (v - decay S^T k); S = decay S + k u^T; o = S^T q.
      for (int j = 0; j < w; ++j) {
        u[j] = beta * (v[j0 + j] - decay * kv[j]);
        kv[j] = 0.0f;
      }
      for (int i = 0; i < K; ++i) {
        const float ki = k[i];
        const float qi = q[i];
        float* __restrict row = sb + int64_t{i} * V;
        for (int j = 0; j < w; ++j) {
          const float x = decay * row[j] + ki * u[j];
          row[j] = x;
          kv[j] += qi * x;
        }
      }
      for (int j = 0; j < w; ++j) o[j0 + j] = kv[j];
    }
  } else {
    float row_decay[kMaxStackRows];
    const bool per_row = row_log_decay != nullptr;
    const bool cached = per_row && K <= kMaxStackRows;
    if (cached) {
      for (int i = 0; i < K; ++i) row_decay[i] = std::exp(row_log_decay[i]);
    }
    // S = diag(a) S + k v^T and o = S^T q in one sweep over the rows.
    for (int j = 0; j < V; ++j) o[j] = 0.0f;
    for (int i = 0; i < K; ++i) {
      const float a = cached    ? row_decay[i]
                      : per_row ? std::exp(row_log_decay[i])
                                : decay;
      const float ki = k[i];
      const float qi = q[i];
      float* __restrict row = s + int64_t{i} * V;
      if (rule == UpdateRule::kAdditive) {
        for (int j = 0; j < V; ++j) {
          const float x = row[j] + ki * v[j];
          row[j] = x;
          o[j] += qi * x;
        }
      } else {
        for (int j = 0; j < V; ++j) {
          const float x = a * row[j] + ki * v[j];
          row[j] = x;
          o[j] += qi * x;
        }
      }
    }
  }
  if (z != nullptr) {
    // z_t = z_{t-1} + k; o /= (q . z_t + 1e-10).
    float qz = 0.0f;
    for (int i = 0; i < K; ++i) {
      z[i] += k[i];
      qz += q[i] * z[i];
    }
    const float inv = 1.0f / (qz + 1e-10f);
    for (int j = 0; j < V; ++j) o[j] *= inv;
  }
}

// Row r (a session or a token), head h: the arguments of StepHead.
void StepRow(const AttentionSpec& spec, const AttentionInputs& in,
             const Strides& st, int64_t r, int h, AttentionState state,
             float* out_row) {
  const int H = spec.num_heads;
  const int K = spec.key_dim;
  const int V = spec.value_dim;
  const int64_t rh = r * H + h;
  const float* row_log_decay = nullptr;
  float decay = 1.0f;
  float beta = 0.0f;
  switch (spec.rule) {
    case UpdateRule::kAdditive:
    case UpdateRule::kDelta:
      break;
    case UpdateRule::kFixedDecay:
      decay = std::exp(spec.head_log_decay[h]);
      break;
    case UpdateRule::kVectorDecay:
      row_log_decay = in.log_decay + rh * K;
      break;
    case UpdateRule::kGatedDelta:
      decay = std::exp(in.log_decay[rh]);
      break;
  }
  if (spec.rule == UpdateRule::kDelta || spec.rule == UpdateRule::kGatedDelta) {
    beta = in.beta[rh];
  }
  float* z = spec.rule == UpdateRule::kAdditive && spec.normalize
                 ? state.z + int64_t{h} * K
                 : nullptr;
  StepHead(spec.rule, K, V, in.q + r * st.q + int64_t{h} * K,
           in.k + r * st.k + int64_t{h} * K, in.v + r * st.v + int64_t{h} * V,
           row_log_decay, decay, beta, state.s + int64_t{h} * K * V, z,
           out_row + int64_t{h} * V);
}

}  // namespace

void RecurrentStep(const AttentionSpec& spec, int batch,
                   const AttentionInputs& in, const AttentionState* states,
                   float* out) {
  if (batch <= 0 || spec.num_heads <= 0) return;
  const Strides st = RowStrides(spec, in);
  const int H = spec.num_heads;
  const int64_t pairs = int64_t{batch} * H;
  const int64_t out_stride = int64_t{H} * spec.value_dim;
  const bool parallel =
      pairs > 1 && pairs * spec.key_dim * spec.value_dim >= kMinParallelFloats;
  // The whole team (kernels/internal/omp_team.h); static scheduling leaves
  // the threads past `pairs` without work.
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t p = 0; p < pairs; ++p) {
    const int64_t b = p / H;
    StepRow(spec, in, st, b, static_cast<int>(p % H), states[b],
            out + b * out_stride);
  }
}

void RecurrentForward(const AttentionSpec& spec, int64_t num_tokens,
                      const AttentionInputs& in, AttentionState state,
                      float* out) {
  if (num_tokens <= 0 || spec.num_heads <= 0) return;
  const Strides st = RowStrides(spec, in);
  const int H = spec.num_heads;
  const int64_t out_stride = int64_t{H} * spec.value_dim;
  const bool parallel =
      H > 1 && int64_t{H} * spec.key_dim * spec.value_dim * num_tokens >=
                   kMinParallelFloats;
#pragma omp parallel for schedule(static) if (parallel)
  for (int h = 0; h < H; ++h) {
    for (int64_t t = 0; t < num_tokens; ++t) {
      StepRow(spec, in, st, t, h, state, out + t * out_stride);
    }
  }
}

}  // namespace portable
}  // namespace linserve::kernels
