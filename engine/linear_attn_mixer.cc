// linear_attn token mixer (spec §3, and the Performer map of §10): fused
// q/k/v projection, the feature map phi per head (learned maps and
// Performer's Omega as DenseLayers over rows = tokens * heads, weights shared
// by the heads), optional sum-normalisation, scale K_f^-1/2, GQA repeat,
// the additive rule with the optional normaliser z, per-head RMSNorm, o_proj.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/token_mixer.h"
#include "kernels/elementwise.h"
#include "kernels/feature_maps.h"

namespace linserve::engine {
namespace {

// One feature map phi (q's or k's): [rows, d_k] -> [rows, K_f].
class FeatureMap {
 public:
  static absl::StatusOr<FeatureMap> Create(const ModelConfig& c,
                                           const std::string& prefix,
                                           bool is_query,
                                           const WeightLoader& w) {
    FeatureMap f;
    f.kind_ = c.feature_map;
    f.dk_ = static_cast<int>(c.head_k_dim);
    f.kf_ = static_cast<int>(c.feature_dim);
    // The maps feed exp/softmax, so their small GEMMs stay fp32.
    const kernels::DType f32 = kernels::DType::kFloat32;
    switch (c.feature_map) {
      case LinearFeatureMap::kElementwiseProduct: {
        ASSIGN_OR_RETURN(
            f.layer_,
            w.Dense({prefix + "layer1.weight", prefix + "layer2.weight"},
                    {prefix + "layer1.bias", prefix + "layer2.bias"}, f32));
        break;
      }
      case LinearFeatureMap::kHedgehog: {
        ASSIGN_OR_RETURN(f.layer_, w.Dense({prefix + "layer.weight"},
                                           {prefix + "layer.bias"}, f32));
        break;
      }
      case LinearFeatureMap::kT2r: {
        ASSIGN_OR_RETURN(f.layer_, w.Dense({prefix + "layer.weight"}, {}, f32));
        break;
      }
      case LinearFeatureMap::kPerformer: {
        // One Omega shared by q and k unless an untied k copy exists.
        const std::string own = prefix + "projection";
        const std::string name =
            w.Has(own) ? own
                       : prefix.substr(0, prefix.size() - 2) + "q.projection";
        ASSIGN_OR_RETURN(f.layer_, w.Dense({name}, {}, f32));
        const PerformerOptions& p = c.performer;
        f.eps_ = static_cast<float>(p.eps);
        if (is_query) {
          f.stabilizer_ =
              p.query_stabilizer == PerformerQueryStabilizer::kRowMax
                  ? kernels::PerformerStabilizer::kRowMax
                  : kernels::PerformerStabilizer::kConstant;
        } else if (p.key_stabilizer == PerformerKeyStabilizer::kOmegaBound) {
          ASSIGN_OR_RETURN(std::vector<float> omega, w.Floats(name));
          double bound = 0.0;
          for (int64_t i = 0; i < p.num_features; ++i) {
            double norm2 = 0.0;
            for (int j = 0; j < f.dk_; ++j) {
              const double x = omega[i * f.dk_ + j];
              norm2 += x * x;
            }
            bound = std::max(bound, norm2 / 2.0);
          }
          f.constant_ = static_cast<float>(bound);
        } else {
          f.constant_ = static_cast<float>(p.key_stabilizer_constant);
        }
        break;
      }
      default:
        break;
    }
    return f;
  }

  // x [rows, d_k] -> phi [rows, K_f]; `tmp` holds rows * max(2 d_k, K_f).
  void Apply(const float* x, int64_t rows, float* tmp, float* phi) const {
    const int64_t n = rows * dk_;
    switch (kind_) {
      case LinearFeatureMap::kElementwiseProduct:
        layer_->Forward(x, rows, tmp);  // [rows, 2 d_k]: layer1 | layer2
        for (int64_t r = 0; r < rows; ++r) {
          kernels::Multiply(tmp + r * 2 * dk_, tmp + r * 2 * dk_ + dk_, dk_,
                            phi + r * dk_);
        }
        return;
      case LinearFeatureMap::kHedgehog:
        layer_->Forward(x, rows, tmp);
        kernels::HedgehogFeatures(tmp, rows, dk_, phi);
        return;
      case LinearFeatureMap::kT2r:
        layer_->Forward(x, rows, tmp);
        kernels::Relu(tmp, n, phi);
        return;
      case LinearFeatureMap::kDpfp:
        kernels::DpfpFeatures(x, rows, dk_, phi);
        return;
      case LinearFeatureMap::kElu:
        kernels::EluPlusOne(x, n, phi);
        return;
      case LinearFeatureMap::kRelu:
        kernels::Relu(x, n, phi);
        return;
      case LinearFeatureMap::kIdentity:
        std::memcpy(phi, x, n * sizeof(float));
        return;
      case LinearFeatureMap::kPerformer: {
        // projected = Omega (d^-1/4 x); phi holds the scaled rows meanwhile.
        kernels::Scale(x, n, std::pow(static_cast<float>(dk_), -0.25f), phi);
        layer_->Forward(phi, rows, tmp);
        kernels::PerformerFeatures(x, tmp, rows, dk_, kf_, stabilizer_,
                                   constant_, eps_, phi);
        return;
      }
    }
  }

 private:
  LinearFeatureMap kind_ = LinearFeatureMap::kIdentity;
  int dk_ = 0, kf_ = 0;
  std::shared_ptr<kernels::DenseLayer> layer_;
  kernels::PerformerStabilizer stabilizer_ =
      kernels::PerformerStabilizer::kConstant;
  float constant_ = 0.0f;
  float eps_ = 0.0f;
};

class LinearAttnMixer : public TokenMixer {
 public:
  static absl::StatusOr<std::unique_ptr<TokenMixer>> Create(
      const ModelConfig& c, int layer, const WeightLoader& w) {
    auto m = std::unique_ptr<LinearAttnMixer>(new LinearAttnMixer(c));
    const std::string a = absl::StrCat("model.layers.", layer, ".attn.");
    ASSIGN_OR_RETURN(m->in_proj_,
                     w.Dense({a + "q_proj.weight", a + "k_proj.weight",
                              a + "v_proj.weight"}));
    ASSIGN_OR_RETURN(m->o_proj_, w.Dense({a + "o_proj.weight"}));
    if (c.elementwise_affine) {
      ASSIGN_OR_RETURN(m->norm_, w.Floats(a + "norm.weight"));
    }
    ASSIGN_OR_RETURN(m->phi_q_,
                     FeatureMap::Create(c, a + "feature_map_q.", true, w));
    ASSIGN_OR_RETURN(m->phi_k_,
                     FeatureMap::Create(c, a + "feature_map_k.", false, w));
    return std::unique_ptr<TokenMixer>(std::move(m));
  }

  void Forward(const float* x, const MixerBatch& batch, Workspace& ws,
               float* out) override {
    const int64_t R = batch.rows;
    const int H = c_.num_heads, Hkv = c_.num_kv_heads, groups = H / Hkv;
    const int dk = c_.head_k_dim, dv = c_.head_v_dim, kf = c_.feature_dim;
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

    float* tmp = ws.Get(4, R * H * std::max(2 * dk, kf));
    float* phi_q = ws.Get(5, R * H * kf);
    float* phi_k = ws.Get(6, R * Hkv * kf);
    phi_q_.Apply(q, R * H, tmp, phi_q);
    phi_k_.Apply(k, R * Hkv, tmp, phi_k);
    if (c_.norm_q) kernels::SumNormalize(phi_q, R * H, kf, 1e-4f, phi_q);
    if (c_.norm_k) kernels::SumNormalize(phi_k, R * Hkv, kf, 1e-4f, phi_k);
    // The scale uses the feature dim K_f, not d_k.
    kernels::Scale(phi_q, R * H * kf, 1.0f / std::sqrt(static_cast<float>(kf)),
                   phi_q);
    if (groups > 1) {
      float* k2 = ws.Get(7, R * H * kf);
      float* v2 = ws.Get(8, R * value_dim);
      mixer::RepeatHeads(phi_k, R, Hkv, kf, groups, k2);
      mixer::RepeatHeads(v, R, Hkv, dv, groups, v2);
      phi_k = k2;
      v = v2;
    }

    kernels::AttentionSpec spec;
    spec.rule = kernels::UpdateRule::kAdditive;
    spec.num_heads = H;
    spec.key_dim = kf;
    spec.value_dim = dv;
    spec.normalize = c_.norm_feature_map;
    kernels::AttentionInputs in;
    in.q = phi_q;
    in.k = phi_k;
    in.v = v;
    float* o = ws.Get(9, R * value_dim);
    mixer::Core(batch, spec, in, o);
    kernels::RmsNorm(o, norm_.empty() ? nullptr : norm_.data(), R * H, dv,
                     static_cast<float>(c_.norm_eps), o);
    o_proj_->Forward(o, R, out);
  }

 private:
  explicit LinearAttnMixer(const ModelConfig& c) : c_(c) {}

  ModelConfig c_;
  std::unique_ptr<kernels::DenseLayer> in_proj_;  // q|k|v
  std::unique_ptr<kernels::DenseLayer> o_proj_;
  std::vector<float> norm_;  // empty without elementwise_affine
  FeatureMap phi_q_, phi_k_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<TokenMixer>> CreateLinearAttnMixer(
    const ModelConfig& config, int layer, const WeightLoader& weights) {
  return LinearAttnMixer::Create(config, layer, weights);
}

}  // namespace linserve::engine
