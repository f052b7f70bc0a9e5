// retnet token mixer (spec §4): fused q/k/v/g projection, optional HF
// feature activation on q and k, rotary at the session's absolute positions,
// GQA repeat, retention with the fixed per-head decay gamma_h = 1 - 2^(-5-h),
// per-head RMSNorm (times silu(g) with the output gate), o_proj.
#include <cmath>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/token_mixer.h"
#include "kernels/elementwise.h"

namespace linserve::engine {
namespace {

class RetNetMixer : public TokenMixer {
 public:
  static absl::StatusOr<std::unique_ptr<TokenMixer>> Create(
      const ModelConfig& c, int layer, const WeightLoader& w) {
    auto m = std::unique_ptr<RetNetMixer>(new RetNetMixer(c));
    const std::string a = absl::StrCat("model.layers.", layer, ".attn.");
    std::vector<std::string> names = {a + "q_proj.weight", a + "k_proj.weight",
                                      a + "v_proj.weight"};
    if (c.use_output_gate) names.push_back(a + "g_proj.weight");
    ASSIGN_OR_RETURN(m->in_proj_, w.Dense(names));
    ASSIGN_OR_RETURN(m->o_proj_, w.Dense({a + "o_proj.weight"}));
    if (c.elementwise_affine) {
      ASSIGN_OR_RETURN(
          m->norm_, w.Floats(a + (c.fused_norm_gate ? "g_norm_swish_gate.weight"
                                                    : "g_norm.weight")));
    }
    // fla hands the kernel ln(gamma_h) in fp32; computed in double and
    // rounded once, independent of the fp32 libm.
    for (int64_t h = 0; h < c.num_heads; ++h) {
      m->log_decay_.push_back(static_cast<float>(
          std::log(1.0 - std::pow(2.0, -5.0 - static_cast<double>(h)))));
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

    float* p = ws.Get(0, R * total);
    in_proj_->Forward(x, R, p);
    float* q = ws.Get(1, R * key_dim);
    float* k = ws.Get(2, R * kv_k);
    float* v = ws.Get(3, R * kv_v);
    mixer::CopyColumns(p, total, 0, R, key_dim, q);
    mixer::CopyColumns(p, total, key_dim, R, kv_k, k);
    mixer::CopyColumns(p, total, key_dim + kv_k, R, kv_v, v);
    mixer::QkFeatureActivate(c_.qk_feature_activation, q, R * key_dim);
    mixer::QkFeatureActivate(c_.qk_feature_activation, k, R * kv_k);
    mixer::Rotary(batch, q, key_dim, H, dk);
    mixer::Rotary(batch, k, kv_k, Hkv, dk);
    kernels::Scale(q, R * key_dim, 1.0f / std::sqrt(static_cast<float>(dk)), q);
    if (groups > 1) {
      float* k2 = ws.Get(4, R * key_dim);
      float* v2 = ws.Get(5, R * value_dim);
      mixer::RepeatHeads(k, R, Hkv, dk, groups, k2);
      mixer::RepeatHeads(v, R, Hkv, dv, groups, v2);
      k = k2;
      v = v2;
    }

    kernels::AttentionSpec spec;
    spec.rule = kernels::UpdateRule::kFixedDecay;
    spec.num_heads = H;
    spec.key_dim = dk;
    spec.value_dim = dv;
    spec.head_log_decay = log_decay_.data();
    kernels::AttentionInputs in;
    in.q = q;
    in.k = k;
    in.v = v;
    float* o = ws.Get(6, R * value_dim);
    mixer::Core(batch, spec, in, o);

    // hidden_act is swish/silu (model_config refuses others), so the gate
    // activation is silu: RMSNorm(o) * silu(g), fused or not.
    float* gate = nullptr;
    if (c_.use_output_gate) {
      gate = ws.Get(7, R * value_dim);
      mixer::CopyColumns(p, total, key_dim + kv_k + kv_v, R, value_dim, gate);
    }
    mixer::OutputNorm(o, gate, norm_.empty() ? nullptr : norm_.data(), R * H,
                      dv, static_cast<float>(c_.norm_eps), o);
    o_proj_->Forward(o, R, out);
  }

 private:
  explicit RetNetMixer(const ModelConfig& c) : c_(c) {}

  ModelConfig c_;
  std::unique_ptr<kernels::DenseLayer> in_proj_;  // q|k|v|g
  std::unique_ptr<kernels::DenseLayer> o_proj_;
  std::vector<float> norm_;  // empty without elementwise_affine
  std::vector<float> log_decay_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<TokenMixer>> CreateRetNetMixer(
    const ModelConfig& config, int layer, const WeightLoader& weights) {
  return RetNetMixer::Create(config, layer, weights);
}

}  // namespace linserve::engine
