// The token mixer: the one family-specific part of a block (spec §3-§7),
// behind the one virtual interface of the engine. Everything else in a block
// (norms, residuals, SwiGLU MLP) is shared and lives in model.cc.
//
// A mixer runs on a MixerBatch of `rows` token rows, in one of two shapes:
//   * one session, rows = consecutive tokens (prefill of a piece): the convs
//     run CausalShortConv, the core ChunkwiseForward (> 64 tokens) or
//     RecurrentForward (<= 64, fla's path choice);
//   * `rows` sessions, one token each (a batched decode step): the convs run
//     CausalShortConvStep, the core RecurrentStep, rotary at each session's
//     position.
// Projections and elementwise work are the same in both. The mixer updates
// the sessions' layer state in place. Scratch memory comes from a Workspace
// shared by all layers; a mixer is not thread-safe (one caller at a time).
#ifndef LINSERVE_ENGINE_TOKEN_MIXER_H_
#define LINSERVE_ENGINE_TOKEN_MIXER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_config.h"
#include "engine/session_state.h"
#include "engine/weight_loader.h"
#include "kernels/linear_attention.h"
#include "kernels/short_conv.h"

namespace linserve::engine {

// Scratch buffers, reused across layers and calls; grown on demand.
class Workspace {
 public:
  static constexpr int kNumSlots = 16;
  // Slot `slot` with room for at least n floats (contents unspecified).
  float* Get(int slot, int64_t n) {
    std::vector<float>& b = buffers_[slot];
    if (static_cast<int64_t>(b.size()) < n) b.resize(n);
    return b.data();
  }

 private:
  std::vector<float> buffers_[kNumSlots];
};

struct MixerBatch {
  int64_t rows = 0;
  // True: one session, rows are its consecutive tokens from position
  // positions[0]. False: rows sessions, row b at position positions[b].
  bool one_session = true;
  SessionState* const* sessions = nullptr;  // 1 or rows
  const int64_t* positions = nullptr;       // 1 or rows
  int layer = 0;
};

class TokenMixer {
 public:
  virtual ~TokenMixer() = default;
  // x: [rows, D] (the attn-normed block input); out: [rows, D].
  virtual void Forward(const float* x, const MixerBatch& batch, Workspace& ws,
                       float* out) = 0;
};

// The mixer of layer `layer` for `config`, weights from `weights`.
absl::StatusOr<std::unique_ptr<TokenMixer>> CreateTokenMixer(
    const ModelConfig& config, int layer, const WeightLoader& weights);

// --- Helpers shared by the family mixers (token_mixer.cc).
namespace mixer {

// Runs the causal short conv `which` (0 q, 1 k, 2 v) of the batch's layer:
// x [rows, channels] with row stride x_stride -> y [rows, channels] dense.
void ShortConv(const MixerBatch& batch, int which, const float* x,
               int64_t x_stride, int channels, const float* weight, int width,
               kernels::ConvActivation activation, float* y);

// Rotary (base 10000) in place on x [rows, heads, head_dim] (row stride).
void Rotary(const MixerBatch& batch, float* x, int64_t row_stride, int heads,
            int head_dim);

// The linear-attention core of the batch's layer on dense inputs.
void Core(const MixerBatch& batch, const kernels::AttentionSpec& spec,
          const kernels::AttentionInputs& in, float* out);

// dst [rows, cols] dense = the column block [col, col + cols) of src.
void CopyColumns(const float* src, int64_t src_stride, int64_t col,
                 int64_t rows, int64_t cols, float* dst);

// dst [rows, heads*groups, dim] = src [rows, heads, dim] with each head
// repeated `groups` times consecutively (spec §0 GQA).
void RepeatHeads(const float* src, int64_t rows, int heads, int dim, int groups,
                 float* dst);

// retnet/gla `feature_map` (an HF activation) in place on n values.
void QkFeatureActivate(QkFeatureActivation act, float* x, int64_t n);

// Per-head output norm of retnet/gla/delta_net/gdn: RMSNorm over d_v, then
// times silu(gate) when gate is non-null. o, gate: [rows*heads, dv].
void OutputNorm(const float* o, const float* gate, const float* weight,
                int64_t rows_heads, int dv, float eps, float* y);

}  // namespace mixer

// Family factories (one .cc each).
absl::StatusOr<std::unique_ptr<TokenMixer>> CreateLinearAttnMixer(
    const ModelConfig& config, int layer, const WeightLoader& weights);
absl::StatusOr<std::unique_ptr<TokenMixer>> CreateRetNetMixer(
    const ModelConfig& config, int layer, const WeightLoader& weights);
absl::StatusOr<std::unique_ptr<TokenMixer>> CreateGlaMixer(
    const ModelConfig& config, int layer, const WeightLoader& weights);
absl::StatusOr<std::unique_ptr<TokenMixer>> CreateDeltaNetMixer(
    const ModelConfig& config, int layer, const WeightLoader& weights);
absl::StatusOr<std::unique_ptr<TokenMixer>> CreateGatedDeltaNetMixer(
    const ModelConfig& config, int layer, const WeightLoader& weights);

}  // namespace linserve::engine

#endif  // LINSERVE_ENGINE_TOKEN_MIXER_H_
