// Model loading and the forward pass of the shared skeleton (spec §1.3):
// embeddings, blocks, final norm and lm_head, for prefill pieces and batched
// decode steps (see model.h).
#include "engine/model.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/safetensors.h"
#include "engine/weight_loader.h"
#include "kernels/cpu_features.h"
#include "kernels/dense_layer.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"

namespace linserve::engine {

Model::~Model() = default;

int64_t DefaultPrefillPieceTokens() {
  return std::clamp<int64_t>(64 * int64_t{kernels::KernelThreads()}, 256, 1024);
}

absl::StatusOr<std::unique_ptr<Model>> Model::Load(
    const std::string& model_dir, const ModelOptions& options) {
  if (options.weight_type != kernels::DType::kFloat32 &&
      options.weight_type != kernels::DType::kBfloat16) {
    return absl::InvalidArgumentError(
        "ModelOptions.weight_type must be f32 or bf16");
  }
  if (options.prefill_piece_tokens < 0) {
    return absl::InvalidArgumentError(
        "ModelOptions.prefill_piece_tokens must be >= 1, or 0 for the default");
  }
  auto model = std::unique_ptr<Model>(new Model());
  model->options_ = options;
  if (model->options_.prefill_piece_tokens == 0) {
    model->options_.prefill_piece_tokens = DefaultPrefillPieceTokens();
  }
  ASSIGN_OR_RETURN(model->config_, LoadModelConfig(model_dir + "/config.json"));
  const ModelConfig& c = model->config_;
  ASSIGN_OR_RETURN(std::unique_ptr<CheckpointReader> checkpoint,
                   CheckpointReader::Open(model_dir));
  const std::vector<ExpectedTensor> expected = ExpectedTensors(c);
  RETURN_IF_ERROR(ValidateCheckpoint(expected, *checkpoint));
  model->fingerprint_ = {ConfigHash(c), WeightsHash(*checkpoint)};
  const WeightLoader w(*checkpoint, expected, options.weight_type);

  ASSIGN_OR_RETURN(model->embeddings_, w.Floats("model.embeddings.weight"));
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string layer = absl::StrCat("model.layers.", i, ".");
    Block block;
    ASSIGN_OR_RETURN(block.attn_norm, w.Floats(layer + "attn_norm.weight"));
    ASSIGN_OR_RETURN(block.mlp_norm, w.Floats(layer + "mlp_norm.weight"));
    ASSIGN_OR_RETURN(block.mixer, CreateTokenMixer(c, static_cast<int>(i), w));
    ASSIGN_OR_RETURN(block.mlp, Mlp::Create(layer + "mlp.", w));
    model->blocks_.push_back(std::move(block));
  }
  ASSIGN_OR_RETURN(model->final_norm_, w.Floats("model.norm.weight"));
  ASSIGN_OR_RETURN(model->lm_head_,
                   w.Dense({c.tie_word_embeddings ? "model.embeddings.weight"
                                                  : "lm_head.weight"}));
  model->layout_ =
      std::make_shared<const StateLayout>(StateLayout::ForConfig(c));
  return model;
}

std::unique_ptr<SessionState> Model::NewSession() const {
  return std::make_unique<SessionState>(layout_);
}

int64_t Model::StateBytes() const { return layout_->bytes(); }

absl::Status Model::ValidateTokens(absl::Span<const int32_t> tokens) const {
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= config_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token id ", tokens[i], " (at index ", i,
          ") is outside the vocabulary [0, ", config_.vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status Model::CheckSession(const SessionState& state) const {
  if (&state.layout() != layout_.get() && !(state.layout() == *layout_)) {
    return absl::InvalidArgumentError(
        "session state does not belong to this model (different layout)");
  }
  return absl::OkStatus();
}

absl::Status Model::Prefill(SessionState& state,
                            absl::Span<const int32_t> tokens, LogitsMode mode,
                            float* logits) {
  RETURN_IF_ERROR(CheckSession(state));
  RETURN_IF_ERROR(ValidateTokens(tokens));
  if (mode != LogitsMode::kNone && logits == nullptr) {
    return absl::InvalidArgumentError("Prefill: logits is null");
  }
  if (mode == LogitsMode::kLast && tokens.empty()) {
    return absl::InvalidArgumentError(
        "Prefill: no tokens, so no last-token logits");
  }
  SessionState* session = &state;
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t V = config_.vocab_size;
  for (int64_t begin = 0; begin < n;) {
    const int64_t rows = std::min(options_.prefill_piece_tokens, n - begin);
    const int64_t position = state.num_tokens();
    MixerBatch batch;
    batch.rows = rows;
    batch.one_session = true;
    batch.sessions = &session;
    batch.positions = &position;
    const bool last_piece = begin + rows == n;
    if (mode == LogitsMode::kAll) {
      ForwardRows(tokens.data() + begin, batch, 0, logits + begin * V);
    } else if (mode == LogitsMode::kLast && last_piece) {
      ForwardRows(tokens.data() + begin, batch, rows - 1, logits);
    } else {
      ForwardRows(tokens.data() + begin, batch, rows, nullptr);
    }
    state.AdvanceTokens(rows);
    begin += rows;
  }
  return absl::OkStatus();
}

absl::StatusOr<ScoreResult> Model::Score(SessionState& state,
                                         absl::Span<const int32_t> tokens,
                                         bool feed_last_token) {
  RETURN_IF_ERROR(CheckSession(state));
  RETURN_IF_ERROR(ValidateTokens(tokens));
  const int64_t n = static_cast<int64_t>(tokens.size());
  // Tokens run through the layers; row j of their logits predicts
  // tokens[j + 1].
  const int64_t fed = (feed_last_token || n == 0) ? n : n - 1;
  const int64_t V = config_.vocab_size;
  ScoreResult result;
  result.logprobs.reserve(n > 0 ? n - 1 : 0);
  std::vector<float> logits(
      static_cast<size_t>(std::min(options_.prefill_piece_tokens, fed) * V));
  for (int64_t begin = 0; begin < fed;) {
    const int64_t rows = std::min(options_.prefill_piece_tokens, fed - begin);
    RETURN_IF_ERROR(Prefill(state, tokens.subspan(begin, rows),
                            LogitsMode::kAll, logits.data()));
    // Row j predicts tokens[begin + j + 1], which may open the next piece.
    for (int64_t j = 0; j < rows && begin + j + 1 < n; ++j) {
      const float* row = logits.data() + j * V;
      const float max = *std::max_element(row, row + V);
      double sum = 0.0;
      for (int64_t v = 0; v < V; ++v) {
        sum += std::exp(static_cast<double>(row[v]) - max);
      }
      const double lp =
          static_cast<double>(row[tokens[begin + j + 1]]) - max - std::log(sum);
      result.logprobs.push_back(static_cast<float>(lp));
      result.total_logprob += lp;
    }
    begin += rows;
  }
  result.count = static_cast<int64_t>(result.logprobs.size());
  result.perplexity =
      result.count > 0
          ? std::exp(-result.total_logprob / static_cast<double>(result.count))
          : std::nan("");
  return result;
}

absl::Status Model::DecodeStep(absl::Span<SessionState* const> states,
                               absl::Span<const int32_t> tokens,
                               float* logits) {
  if (states.size() != tokens.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("DecodeStep: ", states.size(), " sessions but ",
                     tokens.size(), " tokens"));
  }
  if (states.empty()) return absl::OkStatus();
  if (logits == nullptr) {
    return absl::InvalidArgumentError("DecodeStep: logits is null");
  }
  RETURN_IF_ERROR(ValidateTokens(tokens));
  std::vector<SessionState*> sorted(states.begin(), states.end());
  std::sort(sorted.begin(), sorted.end());
  for (size_t b = 0; b < sorted.size(); ++b) {
    if (sorted[b] == nullptr) {
      return absl::InvalidArgumentError("DecodeStep: null session");
    }
    if (b > 0 && sorted[b] == sorted[b - 1]) {
      return absl::InvalidArgumentError(
          "DecodeStep: a session appears twice in one step");
    }
    RETURN_IF_ERROR(CheckSession(*sorted[b]));
  }
  const int64_t B = static_cast<int64_t>(states.size());
  std::vector<int64_t> positions(B);
  for (int64_t b = 0; b < B; ++b) positions[b] = states[b]->num_tokens();
  // Groups of at most kRowInvariantRows sessions: within that many rows the
  // dense layers compute each row on its own, so a session's logits are
  // bitwise the same whatever the batch (and the groups read the weights
  // once per 64 sessions, which costs nothing at that size).
  const int64_t group = kernels::DenseLayer::kRowInvariantRows;
  for (int64_t b0 = 0; b0 < B; b0 += group) {
    MixerBatch batch;
    batch.rows = std::min(group, B - b0);
    batch.one_session = false;
    batch.sessions = states.data() + b0;
    batch.positions = positions.data() + b0;
    ForwardRows(tokens.data() + b0, batch, 0, logits + b0 * config_.vocab_size);
  }
  for (SessionState* s : states) s->AdvanceTokens(1);
  return absl::OkStatus();
}

void Model::ForwardRows(const int32_t* tokens, MixerBatch batch,
                        int64_t first_logit_row, float* logits) {
  const int64_t R = batch.rows;
  const int D = static_cast<int>(config_.hidden_size);
  const float eps = static_cast<float>(config_.norm_eps);
  hidden_.resize(std::max<size_t>(hidden_.size(), R * D));
  normed_.resize(std::max<size_t>(normed_.size(), R * D));
  branch_.resize(std::max<size_t>(branch_.size(), R * D));
  float* h = hidden_.data();
  float* x = normed_.data();
  float* y = branch_.data();

  kernels::GatherRows(embeddings_.data(), D, tokens, R, h);
  for (size_t i = 0; i < blocks_.size(); ++i) {
    Block& block = blocks_[i];
    batch.layer = static_cast<int>(i);
    kernels::RmsNorm(h, block.attn_norm.data(), R, D, eps, x);
    block.mixer->Forward(x, batch, ws_, y);
    kernels::Add(h, y, R * D, h);
    kernels::RmsNorm(h, block.mlp_norm.data(), R, D, eps, x);
    block.mlp->Forward(x, R, ws_, y);
    kernels::Add(h, y, R * D, h);
  }
  if (logits == nullptr || first_logit_row >= R) return;
  const int64_t rows = R - first_logit_row;
  kernels::RmsNorm(h + first_logit_row * D, final_norm_.data(), rows, D, eps,
                   x);
  lm_head_->Forward(x, rows, logits);
}

}  // namespace linserve::engine
