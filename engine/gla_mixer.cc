// gla token mixer (spec §5): fused q/k/v/g/gk_proj.0 projection, the
// low-rank gate gk = logsigmoid(gk_proj.1(.) + b) / 16 (optionally clamped
// from below) from the block input, silu short convs on q/k/v, optional HF
// feature activation on q and k, GQA repeat of k/gk/v, the vector-decay
// recurrence, per-head RMSNorm (times silu(g) with the output gate), o_proj.
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/token_mixer.h"
#include "kernels/elementwise.h"

namespace linserve::engine {
namespace {

using kernels::ConvActivation;

// fla's fixed layer constants (not in the config).
constexpr int kGateLowRankDim = 16;
constexpr float kGateLogitNormalizer = 16.0f;

class GlaMixer : public TokenMixer {
 public:
  static absl::StatusOr<std::unique_ptr<TokenMixer>> Create(
      const ModelConfig& c, int layer, const WeightLoader& w) {
    auto m = std::unique_ptr<GlaMixer>(new GlaMixer(c));
    const std::string a = absl::StrCat("model.layers.", layer, ".attn.");
    std::vector<std::string> names = {a + "q_proj.weight", a + "k_proj.weight",
                                      a + "v_proj.weight"};
    if (c.use_output_gate) names.push_back(a + "g_proj.weight");
    names.push_back(a + "gk_proj.0.weight");
    ASSIGN_OR_RETURN(m->in_proj_, w.Dense(names));
    ASSIGN_OR_RETURN(m->gk_proj1_,
                     w.Dense({a + "gk_proj.1.weight"}, {a + "gk_proj.1.bias"}));
    ASSIGN_OR_RETURN(m->o_proj_, w.Dense({a + "o_proj.weight"}));
    if (c.elementwise_affine) {
      ASSIGN_OR_RETURN(
          m->norm_, w.Floats(a + (c.fused_norm_gate ? "g_norm_swish_gate.weight"
                                                    : "g_norm.weight")));
    }
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
    const int H = c_.num_heads, Hkv = c_.num_kv_heads, groups = H / Hkv;
    const int dk = c_.head_k_dim, dv = c_.head_v_dim;
    const int64_t key_dim = c_.key_dim, value_dim = c_.value_dim;
    const int64_t kv_k = c_.kv_key_dim(), kv_v = c_.kv_value_dim();
    const int64_t total = in_proj_->out_features();
    const int64_t col_g = key_dim + kv_k + kv_v;
    const int64_t col_gk = col_g + (c_.use_output_gate ? value_dim : 0);

    float* p = ws.Get(0, R * total);
    in_proj_->Forward(x, R, p);

    // The gate comes from the block input, not from the conv outputs.
    float* low = ws.Get(1, R * kGateLowRankDim);
    float* gk = ws.Get(2, R * kv_k);
    mixer::CopyColumns(p, total, col_gk, R, kGateLowRankDim, low);
    gk_proj1_->Forward(low, R, gk);
    kernels::LogSigmoid(gk, R * kv_k, gk);
    kernels::Scale(gk, R * kv_k, 1.0f / kGateLogitNormalizer, gk);
    if (c_.clamp_min.has_value()) {
      const float lo = static_cast<float>(*c_.clamp_min);
      for (int64_t i = 0; i < R * kv_k; ++i) gk[i] = std::max(gk[i], lo);
    }

    float* q = ws.Get(3, R * key_dim);
    float* k = ws.Get(4, R * kv_k);
    float* v = ws.Get(5, R * kv_v);
    float* qkv[3] = {q, k, v};
    const int64_t widths[3] = {key_dim, kv_k, kv_v};
    int64_t col = 0;
    for (int j = 0; j < 3; ++j) {
      if (c_.use_short_conv) {
        mixer::ShortConv(batch, j, p + col, total, static_cast<int>(widths[j]),
                         conv_[j].data(), static_cast<int>(c_.conv_size),
                         ConvActivation::kSilu, qkv[j]);
      } else {
        mixer::CopyColumns(p, total, col, R, widths[j], qkv[j]);
      }
      col += widths[j];
    }
    mixer::QkFeatureActivate(c_.qk_feature_activation, q, R * key_dim);
    mixer::QkFeatureActivate(c_.qk_feature_activation, k, R * kv_k);
    kernels::Scale(q, R * key_dim, 1.0f / std::sqrt(static_cast<float>(dk)), q);
    if (groups > 1) {
      float* k2 = ws.Get(6, R * key_dim);
      float* gk2 = ws.Get(7, R * key_dim);
      float* v2 = ws.Get(8, R * value_dim);
      mixer::RepeatHeads(k, R, Hkv, dk, groups, k2);
      mixer::RepeatHeads(gk, R, Hkv, dk, groups, gk2);
      mixer::RepeatHeads(v, R, Hkv, dv, groups, v2);
      k = k2;
      gk = gk2;
      v = v2;
    }

    kernels::AttentionSpec spec;
    spec.rule = kernels::UpdateRule::kVectorDecay;
    spec.num_heads = H;
    spec.key_dim = dk;
    spec.value_dim = dv;
    kernels::AttentionInputs in;
    in.q = q;
    in.k = k;
    in.v = v;
    in.log_decay = gk;
    float* o = ws.Get(9, R * value_dim);
    mixer::Core(batch, spec, in, o);

    float* gate = nullptr;
    if (c_.use_output_gate) {
      gate = ws.Get(10, R * value_dim);
      mixer::CopyColumns(p, total, col_g, R, value_dim, gate);
    }
    mixer::OutputNorm(o, gate, norm_.empty() ? nullptr : norm_.data(), R * H,
                      dv, static_cast<float>(c_.norm_eps), o);
    o_proj_->Forward(o, R, out);
  }

 private:
  explicit GlaMixer(const ModelConfig& c) : c_(c) {}

  ModelConfig c_;
  std::unique_ptr<kernels::DenseLayer> in_proj_;  // q|k|v|g|gk_proj.0
  std::unique_ptr<kernels::DenseLayer> gk_proj1_;
  std::unique_ptr<kernels::DenseLayer> o_proj_;
  std::vector<float> norm_;  // empty without elementwise_affine
  std::vector<float> conv_[3];
};

}  // namespace

absl::StatusOr<std::unique_ptr<TokenMixer>> CreateGlaMixer(
    const ModelConfig& config, int layer, const WeightLoader& weights) {
  return GlaMixer::Create(config, layer, weights);
}

}  // namespace linserve::engine
