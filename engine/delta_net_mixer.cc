// delta_net token mixer (spec §6): fused q/k/v/b/g projection, short convs
// (q/k activation silu iff qk_activation is silu, v always silu), the
// qk_activation and qk_norm options, beta (sigmoid, 1 without use_beta, x2
// with allow_neg_eigval), the delta rule, gated or plain per-head RMSNorm,
// o_proj.
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/token_mixer.h"
#include "kernels/elementwise.h"
#include "kernels/feature_maps.h"

namespace linserve::engine {
namespace {

using kernels::ConvActivation;

class DeltaNetMixer : public TokenMixer {
 public:
  static absl::StatusOr<std::unique_ptr<TokenMixer>> Create(
      const ModelConfig& c, int layer, const WeightLoader& w) {
    auto m = std::unique_ptr<DeltaNetMixer>(new DeltaNetMixer(c));
    const std::string a = absl::StrCat("model.layers.", layer, ".attn.");
    std::vector<std::string> names = {a + "q_proj.weight", a + "k_proj.weight",
                                      a + "v_proj.weight"};
    if (c.use_beta) names.push_back(a + "b_proj.weight");
    if (c.use_gate) names.push_back(a + "g_proj.weight");
    ASSIGN_OR_RETURN(m->in_proj_, w.Dense(names));
    ASSIGN_OR_RETURN(m->o_proj_, w.Dense({a + "o_proj.weight"}));
    ASSIGN_OR_RETURN(m->o_norm_, w.Floats(a + "o_norm.weight"));
    if (c.use_short_conv) {
      for (int j = 0; j < 3; ++j) {
        ASSIGN_OR_RETURN(m->conv_[j], w.Floats(a + "qkv"[j] +
                                               std::string("_conv1d.weight")));
      }
    }
    return std::unique_ptr<TokenMixer>(std::move(m));
  }

  void Forward(const float* x, const MixerBatch& batch, Workspace& ws,
               float* out) override {
    const int64_t R = batch.rows;
    const int H = c_.num_heads;
    const int dk = c_.head_k_dim, dv = c_.head_v_dim;
    const int64_t key_dim = c_.key_dim, value_dim = c_.value_dim;
    const int64_t total = in_proj_->out_features();
    const int64_t col_b = 2 * key_dim + value_dim;
    const int64_t col_g = col_b + (c_.use_beta ? H : 0);
    const bool silu_qk = c_.qk_activation == QkActivation::kSilu;

    float* p = ws.Get(0, R * total);
    in_proj_->Forward(x, R, p);

    float* q = ws.Get(1, R * key_dim);
    float* k = ws.Get(2, R * key_dim);
    float* v = ws.Get(3, R * value_dim);
    float* qkv[3] = {q, k, v};
    const int64_t widths[3] = {key_dim, key_dim, value_dim};
    int64_t col = 0;
    for (int j = 0; j < 3; ++j) {
      const bool silu = j == 2 || silu_qk;
      if (c_.use_short_conv) {
        mixer::ShortConv(batch, j, p + col, total, static_cast<int>(widths[j]),
                         conv_[j].data(), static_cast<int>(c_.conv_size),
                         silu ? ConvActivation::kSilu : ConvActivation::kNone,
                         qkv[j]);
      } else {
        mixer::CopyColumns(p, total, col, R, widths[j], qkv[j]);
        if (silu) kernels::Silu(qkv[j], R * widths[j], qkv[j]);
      }
      col += widths[j];
    }
    // feature_maps.h outputs never alias their inputs.
    float* tmp = ws.Get(4, R * key_dim);
    for (float* t : {q, k}) {
      if (c_.qk_activation == QkActivation::kRelu) {
        kernels::Relu(t, R * key_dim, tmp);
        std::copy(tmp, tmp + R * key_dim, t);
      } else if (c_.qk_activation == QkActivation::kElu) {
        kernels::EluPlusOne(t, R * key_dim, tmp);
        std::copy(tmp, tmp + R * key_dim, t);
      }
      if (c_.qk_norm == QkNorm::kSum) {
        kernels::SumNormalize(t, R * H, dk, 0.0f, t);
      } else {
        kernels::L2Normalize(t, R * H, dk, 1e-6f, t);
      }
    }
    kernels::Scale(q, R * key_dim, 1.0f / std::sqrt(static_cast<float>(dk)), q);

    float* beta = ws.Get(5, R * H);
    if (c_.use_beta) {
      mixer::CopyColumns(p, total, col_b, R, H, beta);
      kernels::Sigmoid(beta, R * H, beta);
    } else {
      std::fill(beta, beta + R * H, 1.0f);
    }
    if (c_.allow_neg_eigval) kernels::Scale(beta, R * H, 2.0f, beta);

    kernels::AttentionSpec spec;
    spec.rule = kernels::UpdateRule::kDelta;
    spec.num_heads = H;
    spec.key_dim = dk;
    spec.value_dim = dv;
    kernels::AttentionInputs in;
    in.q = q;
    in.k = k;
    in.v = v;
    in.beta = beta;
    float* o = ws.Get(6, R * value_dim);
    mixer::Core(batch, spec, in, o);

    float* gate = nullptr;
    if (c_.use_gate) {
      gate = ws.Get(7, R * value_dim);
      mixer::CopyColumns(p, total, col_g, R, value_dim, gate);
    }
    mixer::OutputNorm(o, gate, o_norm_.data(), R * H, dv,
                      static_cast<float>(c_.norm_eps), o);
    o_proj_->Forward(o, R, out);
  }

 private:
  explicit DeltaNetMixer(const ModelConfig& c) : c_(c) {}

  ModelConfig c_;
  std::unique_ptr<kernels::DenseLayer> in_proj_;  // q|k|v|b|g
  std::unique_ptr<kernels::DenseLayer> o_proj_;
  std::vector<float> o_norm_;
  std::vector<float> conv_[3];  // [channels, W] each
};

}  // namespace

absl::StatusOr<std::unique_ptr<TokenMixer>> CreateDeltaNetMixer(
    const ModelConfig& config, int layer, const WeightLoader& weights) {
  return DeltaNetMixer::Create(config, layer, weights);
}

}  // namespace linserve::engine
