// AVX-512 bodies of the recurrent linear-attention forms (RecurrentStep,
// RecurrentForward); see linear_attention.cc for the dispatch and the
// portable bodies, which do the same arithmetic with plain loops.
//
// A decode step is memory-bound: per session and head it must read and write
// the K x V fp32 state once. Each head's state is swept in column blocks of up
// to 8 vectors (128 floats) whose accumulators live in registers:
//   decay rules:  row i: S[i,:] = a_i S[i,:] + k_i v;  o += q_i S[i,:]
//   delta rules:  first S^T k over the block, then u = beta (v - a S^T k)
//                 and the same sweep with u in place of v.
// The delta rules' second sweep reads the head's state from L2 (64 KiB for
// K = V = 128; narrower column blocks would not stay in L1 either, since a
// block of a row-major matrix with 512-byte rows maps onto a fraction of the
// L1 sets), so the state still streams from memory once. While a thread
// sweeps one head it prefetches the next head of its own range into L2.
// Only raw pointers, intrinsics and this file's own functions run under the
// AVX-512 target, so no AVX-512 copy of a shared inline function can leak
// into portable code.
#include <immintrin.h>
#include <math.h>
#include <omp.h>

#include <cstdint>

#include "kernels/internal/linear_attention_bodies.h"
#include "kernels/internal/omp_team.h"
#include "kernels/linear_attention.h"

#if defined(__x86_64__)
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma")

namespace linserve::kernels::avx512 {
namespace {

// Below this many state floats touched per call, OpenMP's fork/join costs
// more than the sweep itself.
constexpr int64_t kMinParallelFloats = int64_t{1} << 15;
// Decay factors of up to this many rows are computed once per head and token.
constexpr int kMaxStackRows = 1024;
// Vectors per column block: 8 read-out accumulators + 8 inputs in registers.
constexpr int kBlockVectors = 8;

// Decay sweep over rows 0..K-1 of a column block of NV vectors at s (row
// stride V): row i becomes a_i * row + k_i * w (a_i = 1 when `unit_decay`,
// else row_decay[i] if given, else exp(row_log_decay[i]) if given, else
// `decay`), and o_block = sum_i q_i * row_i. The last vector is masked by
// `tail`.
template <int NV>
void SweepBlock(int K, int64_t V, const float* q, const float* k,
                const float* w, bool unit_decay, const float* row_decay,
                const float* row_log_decay, float decay, float* s, float* o,
                __mmask16 tail, const float* next_s) {
  __m512 wv[NV];
  __m512 acc[NV];
#pragma GCC unroll 8
  for (int c = 0; c < NV; ++c) {
    wv[c] = c == NV - 1 ? _mm512_maskz_loadu_ps(tail, w + 16 * c)
                        : _mm512_loadu_ps(w + 16 * c);
    acc[c] = _mm512_setzero_ps();
  }
  for (int i = 0; i < K; ++i) {
    float* row = s + i * V;
    const __m512 ki = _mm512_set1_ps(k[i]);
    const __m512 qi = _mm512_set1_ps(q[i]);
    if (next_s != nullptr) {
#pragma GCC unroll 8
      for (int c = 0; c < NV; ++c) {
        _mm_prefetch(reinterpret_cast<const char*>(next_s + i * V + 16 * c),
                     _MM_HINT_T1);
      }
    }
    if (unit_decay) {
#pragma GCC unroll 8
      for (int c = 0; c < NV; ++c) {
        const __m512 x = c == NV - 1 ? _mm512_maskz_loadu_ps(tail, row + 16 * c)
                                     : _mm512_loadu_ps(row + 16 * c);
        const __m512 y = _mm512_fmadd_ps(ki, wv[c], x);
        if (c == NV - 1) {
          _mm512_mask_storeu_ps(row + 16 * c, tail, y);
        } else {
          _mm512_storeu_ps(row + 16 * c, y);
        }
        acc[c] = _mm512_fmadd_ps(qi, y, acc[c]);
      }
    } else {
      const float a = row_decay != nullptr       ? row_decay[i]
                      : row_log_decay != nullptr ? expf(row_log_decay[i])
                                                 : decay;
      const __m512 ai = _mm512_set1_ps(a);
#pragma GCC unroll 8
      for (int c = 0; c < NV; ++c) {
        const __m512 x = c == NV - 1 ? _mm512_maskz_loadu_ps(tail, row + 16 * c)
                                     : _mm512_loadu_ps(row + 16 * c);
        const __m512 y = _mm512_fmadd_ps(ai, x, _mm512_mul_ps(ki, wv[c]));
        if (c == NV - 1) {
          _mm512_mask_storeu_ps(row + 16 * c, tail, y);
        } else {
          _mm512_storeu_ps(row + 16 * c, y);
        }
        acc[c] = _mm512_fmadd_ps(qi, y, acc[c]);
      }
    }
  }
#pragma GCC unroll 8
  for (int c = 0; c < NV; ++c) {
    if (c == NV - 1) {
      _mm512_mask_storeu_ps(o + 16 * c, tail, acc[c]);
    } else {
      _mm512_storeu_ps(o + 16 * c, acc[c]);
    }
  }
}

// Delta rules on a column block of NV vectors: kv = S^T k, then
// u = beta (v - decay kv) (into u), then the decay sweep with u.
template <int NV>
void DeltaBlock(int K, int64_t V, const float* q, const float* k,
                const float* v, float decay, float beta, float* s, float* o,
                float* u, __mmask16 tail, const float* next_s) {
  // Two rows at a time into two sets of accumulators: twice the independent
  // FMA chains for narrow blocks.
  __m512 acc0[NV];
  __m512 acc1[NV];
#pragma GCC unroll 8
  for (int c = 0; c < NV; ++c) {
    acc0[c] = _mm512_setzero_ps();
    acc1[c] = _mm512_setzero_ps();
  }
  int i = 0;
  for (; i + 1 < K; i += 2) {
    const float* r0 = s + i * V;
    const float* r1 = r0 + V;
    const __m512 k0 = _mm512_set1_ps(k[i]);
    const __m512 k1 = _mm512_set1_ps(k[i + 1]);
#pragma GCC unroll 8
    for (int c = 0; c < NV; ++c) {
      const __m512 x0 = c == NV - 1 ? _mm512_maskz_loadu_ps(tail, r0 + 16 * c)
                                    : _mm512_loadu_ps(r0 + 16 * c);
      const __m512 x1 = c == NV - 1 ? _mm512_maskz_loadu_ps(tail, r1 + 16 * c)
                                    : _mm512_loadu_ps(r1 + 16 * c);
      acc0[c] = _mm512_fmadd_ps(k0, x0, acc0[c]);
      acc1[c] = _mm512_fmadd_ps(k1, x1, acc1[c]);
    }
  }
  if (i < K) {
    const float* r0 = s + i * V;
    const __m512 k0 = _mm512_set1_ps(k[i]);
#pragma GCC unroll 8
    for (int c = 0; c < NV; ++c) {
      const __m512 x0 = c == NV - 1 ? _mm512_maskz_loadu_ps(tail, r0 + 16 * c)
                                    : _mm512_loadu_ps(r0 + 16 * c);
      acc0[c] = _mm512_fmadd_ps(k0, x0, acc0[c]);
    }
  }
  const __m512 bv = _mm512_set1_ps(beta);
  const __m512 bd = _mm512_set1_ps(beta * decay);
#pragma GCC unroll 8
  for (int c = 0; c < NV; ++c) {
    const __m512 kv = _mm512_add_ps(acc0[c], acc1[c]);
    const __m512 vc = c == NV - 1 ? _mm512_maskz_loadu_ps(tail, v + 16 * c)
                                  : _mm512_loadu_ps(v + 16 * c);
    // beta * (v - decay * kv).
    _mm512_storeu_ps(u + 16 * c,
                     _mm512_fnmadd_ps(bd, kv, _mm512_mul_ps(bv, vc)));
  }
  SweepBlock<NV>(K, V, q, k, u, decay == 1.0f, nullptr, nullptr, decay, s, o,
                 tail, next_s);
}

void SweepColumns(int vectors, int K, int64_t V, const float* q, const float* k,
                  const float* w, bool unit_decay, const float* row_decay,
                  const float* row_log_decay, float decay, float* s, float* o,
                  __mmask16 tail, const float* next_s) {
  switch (vectors) {
    case 1:
      return SweepBlock<1>(K, V, q, k, w, unit_decay, row_decay, row_log_decay,
                           decay, s, o, tail, next_s);
    case 2:
      return SweepBlock<2>(K, V, q, k, w, unit_decay, row_decay, row_log_decay,
                           decay, s, o, tail, next_s);
    case 3:
      return SweepBlock<3>(K, V, q, k, w, unit_decay, row_decay, row_log_decay,
                           decay, s, o, tail, next_s);
    case 4:
      return SweepBlock<4>(K, V, q, k, w, unit_decay, row_decay, row_log_decay,
                           decay, s, o, tail, next_s);
    case 5:
      return SweepBlock<5>(K, V, q, k, w, unit_decay, row_decay, row_log_decay,
                           decay, s, o, tail, next_s);
    case 6:
      return SweepBlock<6>(K, V, q, k, w, unit_decay, row_decay, row_log_decay,
                           decay, s, o, tail, next_s);
    case 7:
      return SweepBlock<7>(K, V, q, k, w, unit_decay, row_decay, row_log_decay,
                           decay, s, o, tail, next_s);
    default:
      return SweepBlock<8>(K, V, q, k, w, unit_decay, row_decay, row_log_decay,
                           decay, s, o, tail, next_s);
  }
}

void DeltaColumns(int vectors, int K, int64_t V, const float* q, const float* k,
                  const float* v, float decay, float beta, float* s, float* o,
                  float* u, __mmask16 tail, const float* next_s) {
  switch (vectors) {
    case 1:
      return DeltaBlock<1>(K, V, q, k, v, decay, beta, s, o, u, tail, next_s);
    case 2:
      return DeltaBlock<2>(K, V, q, k, v, decay, beta, s, o, u, tail, next_s);
    case 3:
      return DeltaBlock<3>(K, V, q, k, v, decay, beta, s, o, u, tail, next_s);
    case 4:
      return DeltaBlock<4>(K, V, q, k, v, decay, beta, s, o, u, tail, next_s);
    case 5:
      return DeltaBlock<5>(K, V, q, k, v, decay, beta, s, o, u, tail, next_s);
    case 6:
      return DeltaBlock<6>(K, V, q, k, v, decay, beta, s, o, u, tail, next_s);
    case 7:
      return DeltaBlock<7>(K, V, q, k, v, decay, beta, s, o, u, tail, next_s);
    default:
      return DeltaBlock<8>(K, V, q, k, v, decay, beta, s, o, u, tail, next_s);
  }
}

// One token of one head; same contract as the portable StepHead. next_s: the
// state the caller sweeps next (prefetched into L2 meanwhile), or null.
void StepHead(UpdateRule rule, int K, int V, const float* q, const float* k,
              const float* v, const float* row_log_decay, float decay,
              float beta, float* s, float* z, float* o, const float* next_s) {
  const int total_vectors = (V + 15) / 16;
  const __mmask16 tail_mask =
      V % 16 == 0 ? static_cast<__mmask16>(0xFFFF)
                  : static_cast<__mmask16>((1u << (V % 16)) - 1u);
  const bool delta =
      rule == UpdateRule::kDelta || rule == UpdateRule::kGatedDelta;
  alignas(64) float u[16 * kBlockVectors];
  alignas(64) float row_decay[kMaxStackRows];
  const float* factors = nullptr;
  if (row_log_decay != nullptr && K <= kMaxStackRows) {
    for (int i = 0; i < K; ++i) row_decay[i] = expf(row_log_decay[i]);
    factors = row_decay;
    row_log_decay = nullptr;
  }
  const bool unit = rule == UpdateRule::kAdditive;
  for (int c0 = 0; c0 < total_vectors; c0 += kBlockVectors) {
    const int n =
        total_vectors - c0 < kBlockVectors ? total_vectors - c0 : kBlockVectors;
    const __mmask16 tail =
        c0 + n == total_vectors ? tail_mask : static_cast<__mmask16>(0xFFFF);
    const float* next = next_s != nullptr ? next_s + 16 * c0 : nullptr;
    if (delta) {
      DeltaColumns(n, K, V, q, k, v + 16 * c0, decay, beta, s + 16 * c0,
                   o + 16 * c0, u, tail, next);
    } else {
      SweepColumns(n, K, V, q, k, v + 16 * c0, unit, factors, row_log_decay,
                   decay, s + 16 * c0, o + 16 * c0, tail, next);
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

// Row r (a session or a token), head h.
void StepRow(const AttentionSpec& spec, const AttentionInputs& in,
             const Strides& st, int64_t r, int h, AttentionState state,
             float* out_row, const float* next_s) {
  const int H = spec.num_heads;
  const int K = spec.key_dim;
  const int V = spec.value_dim;
  const int64_t rh = r * H + h;
  const float* row_log_decay = nullptr;
  float decay = 1.0f;
  float beta = 0.0f;
  switch (spec.rule) {
    case UpdateRule::kAdditive:
      break;
    case UpdateRule::kFixedDecay:
      decay = expf(spec.head_log_decay[h]);
      break;
    case UpdateRule::kVectorDecay:
      row_log_decay = in.log_decay + rh * K;
      break;
    case UpdateRule::kDelta:
      beta = in.beta[rh];
      break;
    case UpdateRule::kGatedDelta:
      decay = expf(in.log_decay[rh]);
      beta = in.beta[rh];
      break;
  }
  float* z = spec.rule == UpdateRule::kAdditive && spec.normalize
                 ? state.z + int64_t{h} * K
                 : nullptr;
  StepHead(spec.rule, K, V, in.q + r * st.q + int64_t{h} * K,
           in.k + r * st.k + int64_t{h} * K, in.v + r * st.v + int64_t{h} * V,
           row_log_decay, decay, beta, state.s + int64_t{h} * K * V, z,
           out_row + int64_t{h} * V, next_s);
}

// Pairs [begin, end) of RecurrentStep (session p / H, head p % H), whole
// heads, prefetching each next state of the range while sweeping the
// current one.
void StepPairs(const AttentionSpec& spec, const AttentionInputs& in,
               const AttentionState* states, float* out, int64_t begin,
               int64_t end) {
  const Strides st = RowStrides(spec, in);
  const int H = spec.num_heads;
  const int64_t out_stride = int64_t{H} * spec.value_dim;
  const int64_t head_floats = int64_t{spec.key_dim} * spec.value_dim;
  for (int64_t p = begin; p < end; ++p) {
    const int64_t next = p + 1;
    const float* next_s =
        next < end ? states[next / H].s + (next % H) * head_floats : nullptr;
    const int64_t b = p / H;
    StepRow(spec, in, st, b, static_cast<int>(p % H), states[b],
            out + b * out_stride, next_s);
  }
}

}  // namespace

void RecurrentStep(const AttentionSpec& spec, int batch,
                   const AttentionInputs& in, const AttentionState* states,
                   float* out) {
  if (batch <= 0 || spec.num_heads <= 0) return;
  const int64_t pairs = int64_t{batch} * spec.num_heads;
  const bool parallel =
      pairs > 1 && pairs * spec.key_dim * spec.value_dim >= kMinParallelFloats;
  if (!parallel) return StepPairs(spec, in, states, out, 0, pairs);
    // Contiguous ranges of whole pairs per thread, so that each thread
    // prefetches only the states it will sweep itself; at most one thread per
    // pair, the rest of the (whole) team idle (kernels/internal/omp_team.h).
    // Splitting a head's columns among threads (each thread a part of every
    // row) measured 2-4x slower: the cores' prefetchers keep pulling each
    // other's lines.
#pragma omp parallel
  {
    const ::linserve::kernels::internal::ThreadRange r =
        ::linserve::kernels::internal::FullTeamRange(pairs, pairs);
    if (r.begin < r.end) StepPairs(spec, in, states, out, r.begin, r.end);
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
  // Each head runs all its tokens on one thread, its state resident in that
  // core's cache; the whole team (kernels/internal/omp_team.h).
#pragma omp parallel for schedule(static) if (parallel)
  for (int h = 0; h < H; ++h) {
    for (int64_t t = 0; t < num_tokens; ++t) {
      StepRow(spec, in, st, t, h, state, out + t * out_stride, nullptr);
    }
  }
}

}  // namespace linserve::kernels::avx512

#endif  // defined(__x86_64__)
