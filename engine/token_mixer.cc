// The family dispatch of CreateTokenMixer and the helpers the five mixers
// share (convs, rotary and core for both batch shapes; head repeats; output
// norms).
#include "engine/token_mixer.h"

#include <algorithm>
#include <cstring>

#include "kernels/elementwise.h"
#include "kernels/parallel_for.h"
#include "kernels/rotary.h"

namespace linserve::engine {

absl::StatusOr<std::unique_ptr<TokenMixer>> CreateTokenMixer(
    const ModelConfig& config, int layer, const WeightLoader& weights) {
  switch (config.family) {
    case ModelFamily::kLinearAttn:
      return CreateLinearAttnMixer(config, layer, weights);
    case ModelFamily::kRetNet:
      return CreateRetNetMixer(config, layer, weights);
    case ModelFamily::kGla:
      return CreateGlaMixer(config, layer, weights);
    case ModelFamily::kDeltaNet:
      return CreateDeltaNetMixer(config, layer, weights);
    case ModelFamily::kGatedDeltaNet:
      return CreateGatedDeltaNetMixer(config, layer, weights);
  }
  return absl::InternalError("unknown model family");
}

namespace mixer {

void ShortConv(const MixerBatch& batch, int which, const float* x,
               int64_t x_stride, int channels, const float* weight, int width,
               kernels::ConvActivation activation, float* y) {
  if (batch.one_session) {
    kernels::CausalShortConv(
        x, x_stride, batch.rows, channels, weight, width, activation,
        batch.sessions[0]->conv_cache(batch.layer, which), y);
    return;
  }
  std::vector<float*> caches(batch.rows);
  for (int64_t b = 0; b < batch.rows; ++b) {
    caches[b] = batch.sessions[b]->conv_cache(batch.layer, which);
  }
  kernels::CausalShortConvStep(x, x_stride, static_cast<int>(batch.rows),
                               channels, weight, width, activation,
                               caches.data(), y);
}

void Rotary(const MixerBatch& batch, float* x, int64_t row_stride, int heads,
            int head_dim) {
  constexpr float kBase = 10000.0f;
  if (batch.one_session) {
    kernels::ApplyRotary(x, row_stride, batch.rows, heads, head_dim,
                         batch.positions[0], kBase);
  } else {
    kernels::ApplyRotaryAtPositions(x, row_stride, static_cast<int>(batch.rows),
                                    heads, head_dim, batch.positions, kBase);
  }
}

void Core(const MixerBatch& batch, const kernels::AttentionSpec& spec,
          const kernels::AttentionInputs& in, float* out) {
  // fla runs its token-by-token kernels for calls of <= 64 tokens (§1.5).
  constexpr int64_t kMaxRecurrentTokens = 64;
  if (batch.one_session) {
    const kernels::AttentionState state =
        batch.sessions[0]->attention(batch.layer);
    if (batch.rows > kMaxRecurrentTokens) {
      kernels::ChunkwiseForward(spec, batch.rows, in, state, out);
    } else {
      kernels::RecurrentForward(spec, batch.rows, in, state, out);
    }
    return;
  }
  std::vector<kernels::AttentionState> states(batch.rows);
  for (int64_t b = 0; b < batch.rows; ++b) {
    states[b] = batch.sessions[b]->attention(batch.layer);
  }
  kernels::RecurrentStep(spec, static_cast<int>(batch.rows), in, states.data(),
                         out);
}

void CopyColumns(const float* src, int64_t src_stride, int64_t col,
                 int64_t rows, int64_t cols, float* dst) {
  kernels::ParallelForRows(
      rows, cols, kernels::kElementwiseGrain, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          std::memcpy(dst + r * cols, src + r * src_stride + col,
                      cols * sizeof(float));
        }
      });
}

void RepeatHeads(const float* src, int64_t rows, int heads, int dim, int groups,
                 float* dst) {
  kernels::ParallelForRows(
      rows, int64_t{heads} * groups * dim, kernels::kElementwiseGrain,
      [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          for (int h = 0; h < heads; ++h) {
            const float* s = src + (r * heads + h) * dim;
            for (int g = 0; g < groups; ++g) {
              std::memcpy(dst + ((r * heads + h) * groups + g) * dim, s,
                          dim * sizeof(float));
            }
          }
        }
      });
}

void QkFeatureActivate(QkFeatureActivation act, float* x, int64_t n) {
  switch (act) {
    case QkFeatureActivation::kNone:
    case QkFeatureActivation::kIdentity:
      return;
    case QkFeatureActivation::kRelu:
      for (int64_t i = 0; i < n; ++i) x[i] = std::max(x[i], 0.0f);
      return;
    case QkFeatureActivation::kSilu:
      kernels::Silu(x, n, x);
      return;
    case QkFeatureActivation::kSigmoid:
      kernels::Sigmoid(x, n, x);
      return;
  }
}

void OutputNorm(const float* o, const float* gate, const float* weight,
                int64_t rows_heads, int dv, float eps, float* y) {
  if (gate != nullptr) {
    kernels::GatedRmsNorm(o, gate, weight, rows_heads, dv, eps, y);
  } else {
    kernels::RmsNorm(o, weight, rows_heads, dv, eps, y);
  }
}

}  // namespace mixer
}  // namespace linserve::engine
