// gated_deltanet token mixer (spec §7): fused q/k/v/a/b/g projection, silu
// short convs, l2-normalised q and k (GVA repeat to the value heads), the
// gated delta rule with gdec = -exp(A_log) * softplus(a + dt_bias), gated or
// plain per-head RMSNorm, o_proj.
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

class GatedDeltaNetMixer : public TokenMixer {
 public:
  static absl::StatusOr<std::unique_ptr<TokenMixer>> Create(
      const ModelConfig& c, int layer, const WeightLoader& w) {
    auto m = std::unique_ptr<GatedDeltaNetMixer>(new GatedDeltaNetMixer(c));
    const std::string a = absl::StrCat("model.layers.", layer, ".attn.");
    std::vector<std::string> names = {a + "q_proj.weight", a + "k_proj.weight",
                                      a + "v_proj.weight", a + "a_proj.weight",
                                      a + "b_proj.weight"};
    if (c.use_gate) names.push_back(a + "g_proj.weight");
    ASSIGN_OR_RETURN(m->in_proj_, w.Dense(names));
    ASSIGN_OR_RETURN(m->o_proj_, w.Dense({a + "o_proj.weight"}));
    ASSIGN_OR_RETURN(m->o_norm_, w.Floats(a + "o_norm.weight"));
    ASSIGN_OR_RETURN(std::vector<float> a_log, w.Floats(a + "A_log"));
    ASSIGN_OR_RETURN(m->dt_bias_, w.Floats(a + "dt_bias"));
    m->neg_exp_a_.resize(a_log.size());
    for (size_t j = 0; j < a_log.size(); ++j) {
      m->neg_exp_a_[j] = -std::exp(a_log[j]);
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
    const int H = c_.num_heads, HV = c_.num_v_heads;
    const int dk = c_.head_k_dim, dv = c_.head_v_dim;
    const int64_t key_dim = c_.key_dim, value_dim = c_.value_dim;
    const int64_t total = in_proj_->out_features();
    const int64_t col_a = 2 * key_dim + value_dim, col_b = col_a + HV,
                  col_g = col_b + HV;

    float* p = ws.Get(0, R * total);
    in_proj_->Forward(x, R, p);

    float* q = ws.Get(1, R * key_dim);
    float* k = ws.Get(2, R * key_dim);
    float* v = ws.Get(3, R * value_dim);
    float* qkv[3] = {q, k, v};
    const int64_t widths[3] = {key_dim, key_dim, value_dim};
    int64_t col = 0;
    for (int j = 0; j < 3; ++j) {
      if (c_.use_short_conv) {
        mixer::ShortConv(batch, j, p + col, total, static_cast<int>(widths[j]),
                         conv_[j].data(), static_cast<int>(c_.conv_size),
                         ConvActivation::kSilu, qkv[j]);
      } else {
        mixer::CopyColumns(p, total, col, R, widths[j], qkv[j]);
        kernels::Silu(qkv[j], R * widths[j], qkv[j]);
      }
      col += widths[j];
    }
    kernels::L2Normalize(q, R * H, dk, 1e-6f, q);
    kernels::Scale(q, R * key_dim, 1.0f / std::sqrt(static_cast<float>(dk)), q);
    kernels::L2Normalize(k, R * H, dk, 1e-6f, k);
    if (HV != H) {
      float* q2 = ws.Get(4, R * HV * dk);
      float* k2 = ws.Get(5, R * HV * dk);
      mixer::RepeatHeads(q, R, H, dk, HV / H, q2);
      mixer::RepeatHeads(k, R, H, dk, HV / H, k2);
      q = q2;
      k = k2;
    }

    float* beta = ws.Get(6, R * HV);
    float* gdec = ws.Get(7, R * HV);
    mixer::CopyColumns(p, total, col_b, R, HV, beta);
    kernels::Sigmoid(beta, R * HV, beta);
    if (c_.allow_neg_eigval) kernels::Scale(beta, R * HV, 2.0f, beta);
    // g = -exp(A_log) * softplus(a + dt_bias), HV values per row: too few
    // to be worth more than one thread.
    for (int64_t r = 0; r < R; ++r) {
      for (int j = 0; j < HV; ++j) {
        gdec[r * HV + j] = p[r * total + col_a + j] + dt_bias_[j];
      }
    }
    kernels::Softplus(gdec, R * HV, gdec);
    for (int64_t r = 0; r < R; ++r) {
      for (int j = 0; j < HV; ++j) gdec[r * HV + j] *= neg_exp_a_[j];
    }

    kernels::AttentionSpec spec;
    spec.rule = kernels::UpdateRule::kGatedDelta;
    spec.num_heads = HV;
    spec.key_dim = dk;
    spec.value_dim = dv;
    kernels::AttentionInputs in;
    in.q = q;
    in.k = k;
    in.v = v;
    in.log_decay = gdec;
    in.beta = beta;
    float* o = ws.Get(8, R * value_dim);
    mixer::Core(batch, spec, in, o);

    float* gate = nullptr;
    if (c_.use_gate) {
      gate = ws.Get(9, R * value_dim);
      mixer::CopyColumns(p, total, col_g, R, value_dim, gate);
    }
    mixer::OutputNorm(o, gate, o_norm_.data(), R * HV, dv,
                      static_cast<float>(c_.norm_eps), o);
    o_proj_->Forward(o, R, out);
  }

 private:
  explicit GatedDeltaNetMixer(const ModelConfig& c) : c_(c) {}

  ModelConfig c_;
  std::unique_ptr<kernels::DenseLayer> in_proj_;  // q|k|v|a|b|g
  std::unique_ptr<kernels::DenseLayer> o_proj_;
  std::vector<float> o_norm_, neg_exp_a_, dt_bias_;
  std::vector<float> conv_[3];  // [channels, W] each
};

}  // namespace

absl::StatusOr<std::unique_ptr<TokenMixer>> CreateGatedDeltaNetMixer(
    const ModelConfig& config, int layer, const WeightLoader& weights) {
  return GatedDeltaNetMixer::Create(config, layer, weights);
}

}  // namespace linserve::engine
