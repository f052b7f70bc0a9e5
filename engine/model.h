// A loaded model of one of the five fla families (spec §1-§7): embeddings,
// blocks (RMSNorm, token mixer, RMSNorm, SwiGLU MLP, residuals), final norm
// and lm_head, with every projection a prepacked kernels::DenseLayer. The
// checkpoint mapping is released after Load: the model holds the only copy
// of the weights (tied embeddings: the fp32 table plus the packed lm_head).
//
// Prefill runs any number of tokens of one session in pieces of at most
// `prefill_piece_tokens` (memory independent of the prompt length);
// DecodeStep runs one token for each of B sessions as one batched pass
// (M = B GEMMs, RecurrentStep), equal to running each session alone.
// Logits are fp32, [vocab] per row.
//
// Thread safety: a Model holds scratch buffers, so one caller at a time per
// Model (the engine thread); different Models run concurrently. Sessions
// are plain data owned by the caller.
//
//   ASSIGN_OR_RETURN(auto model, Model::Load("/models/gdn", {}));
//   auto session = model->NewSession();
//   std::vector<float> logits(model->vocab_size());
//   RETURN_IF_ERROR(model->Prefill(*session, prompt, LogitsMode::kLast,
//                                  logits.data()));
#ifndef LINSERVE_ENGINE_MODEL_H_
#define LINSERVE_ENGINE_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/fingerprint.h"
#include "engine/mlp.h"
#include "engine/model_config.h"
#include "engine/session_state.h"
#include "engine/token_mixer.h"
#include "kernels/dense_layer.h"
#include "kernels/dtype.h"

namespace linserve::engine {

struct ModelOptions {
  // The dtype the projections' GEMMs run in: kFloat32 (exact fp32 math) or
  // kBfloat16 (bf16 weights, activations rounded to bf16 on entry, fp32
  // accumulation). Norms, convs, gates, states and the small feature-map
  // layers of linear_attn stay fp32.
  kernels::DType weight_type = kernels::DType::kFloat32;
  // The most tokens of one session a Prefill runs through the layers at once
  // (the GEMMs' M). 0: DefaultPrefillPieceTokens() for this machine.
  int64_t prefill_piece_tokens = 0;
};

// 64 tokens per kernel thread, within [256, 1024]: enough rows for every
// core's share of a GEMM to feed AMX (on 16 cores 1024-token pieces
// prefilled 35% faster than 256), while the scratch of one piece stays a few
// MiB. 256 on 2-4 cores, where larger pieces gained nothing.
int64_t DefaultPrefillPieceTokens();

// What Prefill writes to `logits`.
enum class LogitsMode {
  kNone,  // nothing (logits may be null)
  kLast,  // the last token's logits, [vocab]
  kAll,   // every token's logits, [tokens, vocab] (scoring)
};

// What Score returns: the log-probabilities (natural log, log-softmax of the
// raw logits computed in double) of tokens[1..n-1], each given the session's
// prior context and the tokens before it. tokens[0] only conditions: a
// session does not keep the logits of its last token, so nothing predicts it.
struct ScoreResult {
  std::vector<float> logprobs;  // [n - 1]; logprobs[i] is of tokens[i + 1]
  double total_logprob = 0.0;   // sum of logprobs, accumulated in double
  int64_t count = 0;            // logprobs.size()
  // exp(-total_logprob / count); NaN when count is 0 (fewer than 2 tokens).
  double perplexity = 0.0;
};

class Model {
 public:
  // Reads model_dir/config.json and the safetensors checkpoint. Errors name
  // the config field, or the tensors that are missing (with their expected
  // shapes), misshapen or unexpected.
  static absl::StatusOr<std::unique_ptr<Model>> Load(
      const std::string& model_dir, const ModelOptions& options = {});

  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return config_; }
  const ModelOptions& options() const { return options_; }
  int64_t vocab_size() const { return config_.vocab_size; }
  // Hashes of the canonical config and of the checkpoint's tensors, taken at
  // Load (engine/fingerprint.h); exported states carry it.
  const ModelFingerprint& fingerprint() const { return fingerprint_; }
  // The layout of this model's session states.
  const StateLayout& state_layout() const { return *layout_; }

  // A fresh, empty session of this model.
  std::unique_ptr<SessionState> NewSession() const;
  // Bytes of one session's state (constant in the context length).
  int64_t StateBytes() const;

  // Feeds `tokens` to the session (continuing it). InvalidArgument for an
  // id outside [0, vocab) (the session is then unchanged), for kLast with no
  // tokens, or for a session of another model's layout.
  absl::Status Prefill(SessionState& state, absl::Span<const int32_t> tokens,
                       LogitsMode mode, float* logits);

  // Feeds `tokens` to the session like Prefill and scores them (ScoreResult:
  // tokens[0] conditions only, so scoring a text in two calls on one session
  // equals one call except that the second call's first token has no
  // logprob). Memory is one prefill piece of logits, [piece, vocab], whatever
  // the length. Validation as Prefill, all ids checked before any piece runs
  // (on error the session is unchanged).
  //
  // With feed_last_token false, tokens[n-1] is scored but not fed: the
  // session then holds tokens[0..n-2] (a server keeps a session's last
  // token unfed, so that its next call can score or sample from it).
  absl::StatusOr<ScoreResult> Score(SessionState& state,
                                    absl::Span<const int32_t> tokens,
                                    bool feed_last_token = true);

  // One token per session: tokens[b] continues states[b] (distinct
  // sessions). logits is [B, vocab]. Validation as Prefill; on error no
  // session changes.
  absl::Status DecodeStep(absl::Span<SessionState* const> states,
                          absl::Span<const int32_t> tokens, float* logits);

 private:
  struct Block {
    std::vector<float> attn_norm, mlp_norm;
    std::unique_ptr<TokenMixer> mixer;
    std::unique_ptr<Mlp> mlp;
  };

  Model() = default;
  absl::Status ValidateTokens(absl::Span<const int32_t> tokens) const;
  absl::Status CheckSession(const SessionState& state) const;
  // Runs batch.rows rows through the model; writes the logits of rows
  // [first_logit_row, rows) to `logits` when it is non-null.
  void ForwardRows(const int32_t* tokens, MixerBatch batch,
                   int64_t first_logit_row, float* logits);

  ModelConfig config_;
  ModelOptions options_;
  ModelFingerprint fingerprint_;
  std::shared_ptr<const StateLayout> layout_;
  std::vector<float> embeddings_;  // [vocab, D] fp32
  std::vector<Block> blocks_;
  std::vector<float> final_norm_;
  std::unique_ptr<kernels::DenseLayer> lm_head_;
  Workspace ws_;
  std::vector<float> hidden_, normed_, branch_;  // [rows, D] each
};

}  // namespace linserve::engine

#endif  // LINSERVE_ENGINE_MODEL_H_
