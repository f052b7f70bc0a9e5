// The linear-attention core: the recurrent state update and read-out of every
// update rule of ../shared/spec/model-families.md, in the two forms a server
// needs, with one contract.
//
//   RecurrentStep     one token for each of B independent sessions (a batched
//                     decode step), each session with its own state.
//   ChunkwiseForward  T tokens of one session (prefill of a prompt or a
//                     document piece), chunk by chunk with matrix products.
//
// Both take the state in, leave the final state in the same buffer, and write
// one output row per input row. Splitting T tokens into any sequence of calls
// (of either form) gives the same outputs and final state as one call, up to
// float rounding. The state is fp32, per head a [K, V] matrix S (rows = key
// features), row-major, heads contiguous: S is [H, K, V].
//
// Inputs are per state head: for grouped heads (GQA / GVA) the caller repeats
// the shared q/k (or k/v) heads. Queries arrive already feature-mapped,
// normalised and scaled (q_hat in the spec); keys arrive normalised (l2 for the
// delta rules). The kernels hold no state between calls and are thread-safe;
// each call parallelises over heads (and sessions) with OpenMP.
#ifndef LINSERVE_KERNELS_LINEAR_ATTENTION_H_
#define LINSERVE_KERNELS_LINEAR_ATTENTION_H_

#include <cstdint>

namespace linserve::kernels {

enum class UpdateRule {
  // S_t = S_{t-1} + k_t v_t^T; o_t = S_t^T q_t.  (linear_attn, Performer.)
  // With `normalize`: z_t = z_{t-1} + k_t and o_t /= (q_t . z_t + 1e-10).
  kAdditive,
  // S_t = gamma_h S_{t-1} + k_t v_t^T, gamma_h = exp(head_log_decay[h]).
  // (retnet.)
  kFixedDecay,
  // S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T, g_t in R^K per head, g <= 0:
  // the decay scales the rows (key features) of S. (gla.)
  kVectorDecay,
  // u_t = beta_t (v_t - S_{t-1}^T k_t); S_t = S_{t-1} + k_t u_t^T. (delta_net.)
  kDelta,
  // S~ = exp(g_t) S_{t-1} with scalar g_t <= 0 per head;
  // u_t = beta_t (v_t - S~^T k_t); S_t = S~ + k_t u_t^T. (gated_deltanet.)
  kGatedDelta,
};

const char* UpdateRuleName(UpdateRule rule);

// The shape and constants of one layer's attention core.
struct AttentionSpec {
  UpdateRule rule = UpdateRule::kAdditive;
  int num_heads = 0;  // H, heads of the state (value heads under GVA).
  int key_dim = 0;    // K per head (the feature dim K_f for linear_attn).
  int value_dim = 0;  // V per head.
  // kAdditive only: keep the normaliser z [H, K] and divide by q . z + 1e-10.
  bool normalize = false;
  // kFixedDecay only: ln(gamma_h) for each head, [H]. Not owned.
  const float* head_log_decay = nullptr;
};

// Per-row inputs. A row is one token (ChunkwiseForward) or one session
// (RecurrentStep); each row holds H heads contiguously. Row strides are in
// floats; 0 means dense (H*K for q and k, H*V for v).
struct AttentionInputs {
  const float* q = nullptr;  // [rows, H, K]
  const float* k = nullptr;  // [rows, H, K]
  const float* v = nullptr;  // [rows, H, V]
  // kVectorDecay: log decay per key feature, [rows, H, K] (dense).
  // kGatedDelta: log decay per head, [rows, H] (dense). Otherwise null.
  const float* log_decay = nullptr;
  // kDelta, kGatedDelta: beta per head, [rows, H] (dense). Otherwise null.
  const float* beta = nullptr;
  int64_t q_stride = 0;
  int64_t k_stride = 0;
  int64_t v_stride = 0;
};

// One session's state: s [H, K, V]; z [H, K] when spec.normalize, else null.
struct AttentionState {
  float* s = nullptr;
  float* z = nullptr;
};

// One token for each of `batch` sessions: row b of `in` belongs to the session
// whose state is states[b]. out is [batch, H, V] (dense).
void RecurrentStep(const AttentionSpec& spec, int batch,
                   const AttentionInputs& in, const AttentionState* states,
                   float* out);

// `num_tokens` consecutive tokens of one session, token by token (the exact
// order of operations of fla's fused_recurrent kernels). out is [T, H, V].
void RecurrentForward(const AttentionSpec& spec, int64_t num_tokens,
                      const AttentionInputs& in, AttentionState state,
                      float* out);

// `num_tokens` consecutive tokens of one session in chunks of `chunk_size`
// (any T; the last chunk may be short), built on matrix products. The delta
// rules use the WY/UT representation with a triangular solve per chunk.
// out is [T, H, V].
inline constexpr int kDefaultChunkSize = 64;
void ChunkwiseForward(const AttentionSpec& spec, int64_t num_tokens,
                      const AttentionInputs& in, AttentionState state,
                      float* out, int chunk_size = kDefaultChunkSize);

// Bytes of one session's state for this spec (S, plus z when normalising).
int64_t AttentionStateBytes(const AttentionSpec& spec);

}  // namespace linserve::kernels

#endif  // LINSERVE_KERNELS_LINEAR_ATTENTION_H_
