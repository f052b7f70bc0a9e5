#include "engine/model_config.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace linserve::engine {
namespace {

using json = nlohmann::json;

// Bounds that keep every product of two sizes far inside int64.
constexpr int64_t kMaxDim = int64_t{1} << 24;
constexpr int64_t kMaxCount = 4096;  // layers, heads, conv taps

// "string \"8\"", "float 2.5", "null": the found side of an error.
std::string Describe(const json& v) {
  std::string text = v.dump();
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  if (v.is_null()) return "null";
  if (v.is_boolean()) return absl::StrCat("boolean ", text);
  if (v.is_number_integer()) return absl::StrCat("integer ", text);
  if (v.is_number_float()) return absl::StrCat("float ", text);
  if (v.is_string()) return absl::StrCat("string ", text);
  return absl::StrCat(v.type_name(), " ", text);
}

// Typed access to config.json's fields with fla's defaults. An absent field
// takes the default; null is accepted only where fla's default is None.
class Fields {
 public:
  Fields(const json& root, const std::string& source)
      : root_(root), source_(source) {}

  absl::Status Error(const std::string& field, const std::string& what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ": field \"", field, "\": ", what));
  }
  absl::Status Unsupported(const std::string& field,
                           const std::string& what) const {
    return absl::UnimplementedError(
        absl::StrCat(source_, ": field \"", field, "\": ", what));
  }

  // The value, or nullptr when absent or null.
  const json* Get(const std::string& name) const {
    const auto it = root_.find(name);
    return it == root_.end() || it->is_null() ? nullptr : &*it;
  }
  bool PresentAndNull(const std::string& name) const {
    const auto it = root_.find(name);
    return it != root_.end() && it->is_null();
  }

  absl::StatusOr<std::optional<int64_t>> OptionalInt(
      const std::string& name, std::optional<int64_t> def) const {
    if (PresentAndNull(name)) return std::nullopt;
    const json* v = Get(name);
    if (v == nullptr) return def;
    if (v->is_number_unsigned() &&
        v->get<uint64_t>() >
            static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Error(name, absl::StrCat("integer ", v->dump(), " is too large"));
    }
    if (!v->is_number_integer()) {
      return Error(name,
                   absl::StrCat("expected an integer, found ", Describe(*v)));
    }
    return v->get<int64_t>();
  }

  absl::StatusOr<int64_t> Int(const std::string& name, int64_t def) const {
    if (PresentAndNull(name)) {
      return Error(name, "expected an integer, found null");
    }
    ASSIGN_OR_RETURN(std::optional<int64_t> v, OptionalInt(name, def));
    return *v;
  }

  // An integer in [1, max].
  absl::StatusOr<int64_t> Positive(const std::string& name, int64_t def,
                                   int64_t max) const {
    ASSIGN_OR_RETURN(int64_t v, Int(name, def));
    RETURN_IF_ERROR(CheckPositive(name, v, max));
    return v;
  }
  absl::StatusOr<std::optional<int64_t>> OptionalPositive(
      const std::string& name, std::optional<int64_t> def, int64_t max) const {
    ASSIGN_OR_RETURN(std::optional<int64_t> v, OptionalInt(name, def));
    if (v) RETURN_IF_ERROR(CheckPositive(name, *v, max));
    return v;
  }
  absl::Status CheckPositive(const std::string& name, int64_t v,
                             int64_t max) const {
    if (v < 1 || v > max) {
      return Error(name, absl::StrCat("must be in [1, ", max, "], found ", v));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::optional<double>> OptionalNumber(
      const std::string& name, std::optional<double> def) const {
    if (PresentAndNull(name)) return std::nullopt;
    const json* v = Get(name);
    if (v == nullptr) return def;
    if (!v->is_number()) {
      return Error(name,
                   absl::StrCat("expected a number, found ", Describe(*v)));
    }
    return v->get<double>();
  }

  absl::StatusOr<double> Number(const std::string& name, double def) const {
    if (PresentAndNull(name)) {
      return Error(name, "expected a number, found null");
    }
    ASSIGN_OR_RETURN(std::optional<double> v, OptionalNumber(name, def));
    return *v;
  }

  absl::StatusOr<bool> Bool(const std::string& name, bool def) const {
    const json* v = Get(name);
    if (v == nullptr && !PresentAndNull(name)) return def;
    if (v == nullptr || !v->is_boolean()) {
      return Error(name, absl::StrCat("expected a boolean, found ",
                                      v ? Describe(*v) : "null"));
    }
    return v->get<bool>();
  }

  absl::StatusOr<std::optional<std::string>> OptionalString(
      const std::string& name, std::optional<std::string> def) const {
    if (PresentAndNull(name)) return std::nullopt;
    const json* v = Get(name);
    if (v == nullptr) return def;
    if (!v->is_string()) {
      return Error(name,
                   absl::StrCat("expected a string, found ", Describe(*v)));
    }
    return v->get<std::string>();
  }

  absl::StatusOr<std::string> String(const std::string& name,
                                     const std::string& def) const {
    if (PresentAndNull(name)) {
      return Error(name, "expected a string, found null");
    }
    ASSIGN_OR_RETURN(std::optional<std::string> v, OptionalString(name, def));
    return *v;
  }

  // A string that must be one of `allowed`.
  absl::StatusOr<std::string> Choice(
      const std::string& name, const std::string& def,
      const std::vector<std::string>& allowed) const {
    ASSIGN_OR_RETURN(std::string v, String(name, def));
    for (const std::string& a : allowed) {
      if (v == a) return v;
    }
    return Error(name,
                 absl::StrCat("unknown value \"", v, "\" (expected one of ",
                              absl::StrJoin(allowed, ", "), ")"));
  }

 private:
  const json& root_;
  const std::string& source_;
};

struct FamilyDefaults {
  ModelFamily family;
  const char* name;
  int64_t num_hidden_layers;
  double hidden_ratio;
  double expand_k, expand_v;
  int64_t num_heads;
  const char* attn_mode;
  std::vector<std::string> attn_modes;
};

const std::vector<FamilyDefaults>& AllFamilies() {
  static const auto* families = new std::vector<FamilyDefaults>{
      {ModelFamily::kLinearAttn,
       "linear_attn",
       24,
       4,
       1.0,
       1.0,
       4,
       "fused_chunk",
       {"chunk", "fused_chunk", "fused_recurrent"}},
      {ModelFamily::kRetNet,
       "retnet",
       24,
       2,
       1.0,
       2.0,
       8,
       "chunk",
       {"chunk", "fused_chunk", "parallel", "fused_recurrent"}},
      {ModelFamily::kGla,
       "gla",
       24,
       4,
       0.5,
       1.0,
       4,
       "chunk",
       {"chunk", "fused_recurrent", "fused_chunk"}},
      {ModelFamily::kDeltaNet,
       "delta_net",
       24,
       4,
       1.0,
       1.0,
       16,
       "chunk",
       {"chunk", "fused_recurrent", "fused_chunk"}},
      {ModelFamily::kGatedDeltaNet,
       "gated_deltanet",
       21,
       4,
       0.0,
       2.0,
       6,
       "chunk",
       {"chunk", "fused_recurrent"}},
  };
  return *families;
}

// §1.4: int(D * ratio * 2 / 3) in double math, rounded up to 256.
int64_t MlpWidth(int64_t hidden_size, double hidden_ratio) {
  const auto width = static_cast<int64_t>(static_cast<double>(hidden_size) *
                                          hidden_ratio * 2 / 3);
  return 256 * ((width + 255) / 256);
}

// int(D * expand) as fla computes it, which must come out in [1, kMaxDim].
absl::StatusOr<int64_t> ExpandedDim(const Fields& f, const std::string& field,
                                    int64_t hidden_size, double expand) {
  const double width = static_cast<double>(hidden_size) * expand;
  if (!(width >= 1 && width <= static_cast<double>(kMaxDim))) {
    return f.Error(field, absl::StrCat("int(hidden_size * ", field, ") = int(",
                                       hidden_size, " * ", expand,
                                       ") must be in [1, ", kMaxDim, "]"));
  }
  return static_cast<int64_t>(width);
}

absl::Status ParseLinearAttn(const Fields& f, ModelConfig& c) {
  ASSIGN_OR_RETURN(std::string map,
                   f.Choice("feature_map", "elementwise_product",
                            {"elementwise_product", "hedgehog", "t2r", "dpfp",
                             "elu", "relu", "identity", "performer"}));
  static const std::vector<std::pair<std::string, LinearFeatureMap>> kMaps = {
      {"elementwise_product", LinearFeatureMap::kElementwiseProduct},
      {"hedgehog", LinearFeatureMap::kHedgehog},
      {"t2r", LinearFeatureMap::kT2r},
      {"dpfp", LinearFeatureMap::kDpfp},
      {"elu", LinearFeatureMap::kElu},
      {"relu", LinearFeatureMap::kRelu},
      {"identity", LinearFeatureMap::kIdentity},
      {"performer", LinearFeatureMap::kPerformer}};
  for (const auto& [name, value] : kMaps) {
    if (map == name) c.feature_map = value;
  }
  ASSIGN_OR_RETURN(c.tie_feature_map_qk, f.Bool("tie_feature_map_qk", false));
  ASSIGN_OR_RETURN(c.norm_q, f.Bool("norm_q", false));
  ASSIGN_OR_RETURN(c.norm_k, f.Bool("norm_k", false));
  ASSIGN_OR_RETURN(c.norm_feature_map, f.Bool("norm_feature_map", false));

  switch (c.feature_map) {
    case LinearFeatureMap::kHedgehog:
      c.feature_dim = 2 * c.head_k_dim;
      break;
    case LinearFeatureMap::kDpfp:
      c.feature_dim = 8 * c.head_k_dim;
      break;
    default:
      c.feature_dim = c.head_k_dim;
  }
  if (c.feature_map != LinearFeatureMap::kPerformer) return absl::OkStatus();

  // Performer (§10): positive features need the normaliser.
  if (!c.norm_feature_map) {
    return f.Error("norm_feature_map",
                   "feature_map \"performer\" requires norm_feature_map: true "
                   "(the FAVOR+ estimate is normalised, spec §10.2)");
  }
  PerformerOptions& p = c.performer;
  const auto d = static_cast<double>(c.head_k_dim);
  const auto default_m = static_cast<int64_t>(d * std::log(d));
  ASSIGN_OR_RETURN(std::optional<int64_t> m,
                   f.OptionalInt("performer_nb_features", std::nullopt));
  if (!m) {
    if (default_m < 1) {
      return f.Error(
          "performer_nb_features",
          absl::StrCat("the default int(d_k * ln d_k) is ", default_m,
                       " for d_k = ", c.head_k_dim, "; set it explicitly"));
    }
    m = default_m;
  }
  RETURN_IF_ERROR(f.CheckPositive("performer_nb_features", *m, kMaxDim));
  p.num_features = *m;
  c.feature_dim = p.num_features;

  ASSIGN_OR_RETURN(p.eps, f.Number("performer_eps", 1e-4));
  if (!(p.eps >= 0 && std::isfinite(p.eps))) {
    return f.Error("performer_eps",
                   absl::StrCat("must be >= 0, found ", p.eps));
  }
  if (const json* v = f.Get("performer_key_stabilizer")) {
    if (v->is_number() && std::isfinite(v->get<double>())) {
      p.key_stabilizer = PerformerKeyStabilizer::kConstant;
      p.key_stabilizer_constant = v->get<double>();
    } else if (v->is_string() && v->get<std::string>() == "omega_bound") {
      p.key_stabilizer = PerformerKeyStabilizer::kOmegaBound;
    } else {
      return f.Error(
          "performer_key_stabilizer",
          absl::StrCat("expected a number or \"omega_bound\", found ",
                       Describe(*v)));
    }
  } else if (f.PresentAndNull("performer_key_stabilizer")) {
    return f.Error("performer_key_stabilizer",
                   "expected a number or \"omega_bound\", found null");
  }
  ASSIGN_OR_RETURN(std::string query, f.Choice("performer_query_stabilizer",
                                               "rowmax", {"rowmax", "none"}));
  p.query_stabilizer = query == "rowmax" ? PerformerQueryStabilizer::kRowMax
                                         : PerformerQueryStabilizer::kNone;
  return absl::OkStatus();
}

// retnet/gla `feature_map`: an ACT2FN name or null.
absl::Status ParseQkFeatureActivation(const Fields& f, ModelConfig& c) {
  ASSIGN_OR_RETURN(std::optional<std::string> name,
                   f.OptionalString("feature_map", std::nullopt));
  if (!name) return absl::OkStatus();
  static const std::vector<std::pair<std::string, QkFeatureActivation>> kActs =
      {{"relu", QkFeatureActivation::kRelu},
       {"silu", QkFeatureActivation::kSilu},
       {"swish", QkFeatureActivation::kSilu},
       {"sigmoid", QkFeatureActivation::kSigmoid},
       {"linear", QkFeatureActivation::kIdentity}};
  for (const auto& [act, value] : kActs) {
    if (*name == act) {
      c.qk_feature_activation = value;
      return absl::OkStatus();
    }
  }
  return f.Error("feature_map",
                 absl::StrCat("activation \"", *name,
                              "\" is not supported (expected null, relu, silu, "
                              "swish, sigmoid or linear)"));
}

absl::Status ParseMixer(const Fields& f, const FamilyDefaults& fam,
                        ModelConfig& c) {
  const ModelFamily family = c.family;
  const int64_t D = c.hidden_size;
  ASSIGN_OR_RETURN(c.num_heads,
                   f.Positive("num_heads", fam.num_heads, kMaxCount));
  const int64_t H = c.num_heads;

  // Short convs exist only in gla, delta_net and gated_deltanet.
  const bool has_convs = family == ModelFamily::kGla ||
                         family == ModelFamily::kDeltaNet ||
                         family == ModelFamily::kGatedDeltaNet;
  if (has_convs) {
    ASSIGN_OR_RETURN(c.use_short_conv,
                     f.Bool("use_short_conv", family != ModelFamily::kGla));
    ASSIGN_OR_RETURN(c.conv_size, f.Positive("conv_size", 4, kMaxCount));
    ASSIGN_OR_RETURN(bool share, f.Bool("share_conv_kernel", false));
    if (share && c.use_short_conv) {
      return f.Unsupported(
          "share_conv_kernel",
          "share_conv_kernel: true with use_short_conv: true (pre-2024-07 "
          "checkpoints with one attn.h_conv1d) is not supported (spec §9.6)");
    }
  } else {
    c.use_short_conv = false;
  }

  if (family == ModelFamily::kGatedDeltaNet) {
    ASSIGN_OR_RETURN(int64_t head_dim, f.Positive("head_dim", 256, kMaxDim));
    ASSIGN_OR_RETURN(
        std::optional<int64_t> hv,
        f.OptionalPositive("num_v_heads", std::nullopt, kMaxCount));
    c.num_v_heads = hv.value_or(H);
    if (c.num_v_heads % H != 0) {
      return f.Error("num_v_heads",
                     absl::StrCat("num_v_heads = ", c.num_v_heads,
                                  " must be a multiple of num_heads = ", H));
    }
    ASSIGN_OR_RETURN(c.expand_v, f.Number("expand_v", fam.expand_v));
    const double dv = static_cast<double>(head_dim) * c.expand_v;
    if (!(dv >= 1 && dv <= kMaxDim) || dv != std::floor(dv)) {
      return f.Error(
          "expand_v",
          absl::StrCat("head_dim * expand_v = ", head_dim, " * ", c.expand_v,
                       " must be a whole number in [1, ", kMaxDim, "]"));
    }
    c.expand_k = 0;  // GDN sizes q/k by head_dim
    c.num_kv_heads = H;
    c.head_k_dim = head_dim;
    c.head_v_dim = static_cast<int64_t>(dv);
    c.key_dim = H * c.head_k_dim;
    c.value_dim = c.num_v_heads * c.head_v_dim;
    c.feature_dim = c.head_k_dim;
    ASSIGN_OR_RETURN(c.use_gate, f.Bool("use_gate", true));
    ASSIGN_OR_RETURN(c.allow_neg_eigval, f.Bool("allow_neg_eigval", false));
    c.use_beta = true;
    c.elementwise_affine = true;
    return absl::OkStatus();
  }

  ASSIGN_OR_RETURN(c.expand_k, f.Number("expand_k", fam.expand_k));
  ASSIGN_OR_RETURN(c.expand_v, f.Number("expand_v", fam.expand_v));
  ASSIGN_OR_RETURN(c.key_dim, ExpandedDim(f, "expand_k", D, c.expand_k));
  ASSIGN_OR_RETURN(c.value_dim, ExpandedDim(f, "expand_v", D, c.expand_v));
  if (c.key_dim % H != 0 || c.value_dim % H != 0) {
    return f.Error(
        "num_heads",
        absl::StrCat(
            "key_dim = int(hidden_size * expand_k) = ", c.key_dim,
            " and value_dim = int(hidden_size * expand_v) = ", c.value_dim,
            " must both be divisible by num_heads = ", H));
  }
  c.head_k_dim = c.key_dim / H;
  c.head_v_dim = c.value_dim / H;
  c.feature_dim = c.head_k_dim;
  c.num_v_heads = H;

  if (family == ModelFamily::kDeltaNet) {
    c.num_kv_heads = H;  // DeltaNet has no kv grouping
    ASSIGN_OR_RETURN(c.use_beta, f.Bool("use_beta", true));
    ASSIGN_OR_RETURN(c.use_gate, f.Bool("use_gate", false));
    ASSIGN_OR_RETURN(c.allow_neg_eigval, f.Bool("allow_neg_eigval", false));
    ASSIGN_OR_RETURN(
        std::string act,
        f.Choice("qk_activation", "silu", {"silu", "relu", "elu", "identity"}));
    c.qk_activation = act == "silu"   ? QkActivation::kSilu
                      : act == "relu" ? QkActivation::kRelu
                      : act == "elu"  ? QkActivation::kElu
                                      : QkActivation::kIdentity;
    ASSIGN_OR_RETURN(std::string norm,
                     f.Choice("qk_norm", "l2", {"l2", "sum"}));
    c.qk_norm = norm == "l2" ? QkNorm::kL2 : QkNorm::kSum;
    c.elementwise_affine = true;
    return absl::OkStatus();
  }

  // linear_attn, retnet, gla: GQA and an affine-optional output norm.
  ASSIGN_OR_RETURN(std::optional<int64_t> kv,
                   f.OptionalPositive("num_kv_heads", std::nullopt, kMaxCount));
  c.num_kv_heads = kv.value_or(H);
  if (H % c.num_kv_heads != 0) {
    return f.Error(
        "num_kv_heads",
        absl::StrCat("num_heads = ", H,
                     " must be divisible by num_kv_heads = ", c.num_kv_heads));
  }
  // fla's `elementwise_affine: bool | None`; None disables the weight.
  if (f.PresentAndNull("elementwise_affine")) {
    c.elementwise_affine = false;
  } else {
    ASSIGN_OR_RETURN(c.elementwise_affine, f.Bool("elementwise_affine", true));
  }

  if (family == ModelFamily::kLinearAttn) return ParseLinearAttn(f, c);

  RETURN_IF_ERROR(ParseQkFeatureActivation(f, c));
  ASSIGN_OR_RETURN(c.use_output_gate, f.Bool("use_output_gate", true));
  c.fused_norm_gate =
      c.hidden_act == "swish" && c.fuse_norm && c.use_output_gate;
  if (family == ModelFamily::kRetNet) {
    if (c.head_k_dim % 2 != 0 || c.head_k_dim > 256) {
      return f.Error(
          "num_heads",
          absl::StrCat("retnet needs head_k_dim = key_dim / "
                       "num_heads = ",
                       c.head_k_dim, " even and <= 256 (rotary embedding)"));
    }
    return absl::OkStatus();
  }
  // gla
  ASSIGN_OR_RETURN(c.clamp_min, f.OptionalNumber("clamp_min", std::nullopt));
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ParseRoot(const json& root,
                                      const std::string& source) {
  if (!root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": expected a JSON object, found ", Describe(root)));
  }
  const Fields f(root, source);
  ModelConfig c;

  if (f.Get("model_type") == nullptr) {
    return f.Error("model_type",
                   "missing (expected one of linear_attn, "
                   "retnet, gla, delta_net, gated_deltanet)");
  }
  ASSIGN_OR_RETURN(std::string model_type, f.String("model_type", ""));
  const FamilyDefaults* fam = nullptr;
  for (const FamilyDefaults& d : AllFamilies()) {
    if (model_type == d.name) fam = &d;
  }
  if (fam == nullptr) {
    return f.Error("model_type",
                   absl::StrCat("unknown model type \"", model_type,
                                "\" (expected one of linear_attn, retnet, "
                                "gla, delta_net, gated_deltanet)"));
  }
  c.family = fam->family;

  // Features of fla that linserve refuses for now (spec preamble).
  if (f.Get("attn") != nullptr) {
    return f.Unsupported("attn",
                         "hybrid softmax-attention layers are not supported "
                         "yet (spec §1.6); expected null");
  }
  if (f.Get("attnres_block_size") != nullptr) {
    return f.Unsupported("attnres_block_size",
                         "attention residuals are not supported yet (spec "
                         "§1.7); expected null");
  }
  ASSIGN_OR_RETURN(c.hidden_act, f.String("hidden_act", "swish"));
  if (c.hidden_act == "powlu") {
    return f.Unsupported("hidden_act",
                         "\"powlu\" is not supported yet; expected \"swish\" "
                         "or \"silu\"");
  }
  if (c.hidden_act != "swish" && c.hidden_act != "silu") {
    return f.Error("hidden_act",
                   absl::StrCat("unknown activation \"", c.hidden_act,
                                "\" (expected \"swish\" or \"silu\")"));
  }

  // Shared skeleton (§1.1).
  ASSIGN_OR_RETURN(c.vocab_size, f.Positive("vocab_size", 32000, kMaxDim));
  ASSIGN_OR_RETURN(c.hidden_size, f.Positive("hidden_size", 2048, kMaxDim));
  ASSIGN_OR_RETURN(
      c.num_hidden_layers,
      f.Positive("num_hidden_layers", fam->num_hidden_layers, kMaxCount));
  ASSIGN_OR_RETURN(std::optional<double> ratio,
                   f.OptionalNumber("hidden_ratio", fam->hidden_ratio));
  c.hidden_ratio = ratio.value_or(4.0);
  if (!(c.hidden_ratio > 0 && c.hidden_ratio <= 1024)) {
    return f.Error("hidden_ratio", absl::StrCat("must be in (0, 1024], found ",
                                                c.hidden_ratio));
  }
  ASSIGN_OR_RETURN(
      std::optional<int64_t> intermediate,
      f.OptionalPositive("intermediate_size", std::nullopt, kMaxDim));
  c.intermediate_size =
      intermediate.value_or(MlpWidth(c.hidden_size, c.hidden_ratio));
  if (c.intermediate_size > kMaxDim) {
    return f.Error("hidden_ratio",
                   absl::StrCat("MLP width ", c.intermediate_size,
                                " from hidden_ratio exceeds ", kMaxDim));
  }
  ASSIGN_OR_RETURN(c.norm_eps, f.Number("norm_eps", 1e-6));
  if (!(c.norm_eps >= 0)) {
    return f.Error("norm_eps",
                   absl::StrCat("must be >= 0, found ", c.norm_eps));
  }
  ASSIGN_OR_RETURN(c.fuse_norm, f.Bool("fuse_norm", true));
  ASSIGN_OR_RETURN(c.tie_word_embeddings, f.Bool("tie_word_embeddings", false));
  ASSIGN_OR_RETURN(c.bos_token_id, f.OptionalInt("bos_token_id", 1));
  ASSIGN_OR_RETURN(c.pad_token_id, f.OptionalInt("pad_token_id", std::nullopt));
  if (const json* eos = f.Get("eos_token_id"); eos && eos->is_array()) {
    c.eos_token_ids.clear();
    for (const json& id : *eos) {
      if (!id.is_number_integer()) {
        return f.Error("eos_token_id",
                       absl::StrCat("expected an integer or a list of "
                                    "integers, found a list holding ",
                                    Describe(id)));
      }
      c.eos_token_ids.push_back(id.get<int64_t>());
    }
  } else {
    ASSIGN_OR_RETURN(std::optional<int64_t> id,
                     f.OptionalInt("eos_token_id", 2));
    c.eos_token_ids.clear();
    if (id) c.eos_token_ids.push_back(*id);
  }
  ASSIGN_OR_RETURN(c.attn_mode,
                   f.Choice("attn_mode", fam->attn_mode, fam->attn_modes));
  ASSIGN_OR_RETURN(c.max_position_embeddings,
                   f.Int("max_position_embeddings", 2048));

  RETURN_IF_ERROR(ParseMixer(f, *fam, c));
  return c;
}

}  // namespace

std::string_view ModelFamilyName(ModelFamily family) {
  for (const FamilyDefaults& d : AllFamilies()) {
    if (d.family == family) return d.name;
  }
  return "unknown";
}

absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text,
                                             const std::string& source) {
  try {
    json root;
    try {
      root = json::parse(json_text.begin(), json_text.end());
    } catch (const json::parse_error& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": not valid JSON: ", e.what()));
    }
    return ParseRoot(root, source);
  } catch (const json::exception& e) {
    // The typed accessors check before they convert; a guard, not a path.
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": malformed config: ", e.what()));
  }
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot open ", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  return ParseModelConfig(text.str(), path);
}

int64_t RecurrentStateBytesPerLayer(const ModelConfig& c) {
  const int64_t heads =
      c.family == ModelFamily::kGatedDeltaNet ? c.num_v_heads : c.num_heads;
  int64_t bytes = 4 * heads * c.feature_dim * c.head_v_dim;
  if (c.family == ModelFamily::kLinearAttn && c.norm_feature_map) {
    bytes += 4 * c.num_heads * c.feature_dim;  // z
  }
  return bytes;
}

int64_t ConvStateBytesPerLayer(const ModelConfig& c) {
  if (!c.use_short_conv) return 0;
  if (c.family == ModelFamily::kGla) {
    return 4 * c.conv_size * (c.key_dim + c.kv_key_dim() + c.kv_value_dim());
  }
  return 4 * c.conv_size * (2 * c.key_dim + c.value_dim);
}

std::vector<ExpectedTensor> ExpectedTensors(const ModelConfig& c) {
  std::vector<ExpectedTensor> out;
  const int64_t D = c.hidden_size;
  const auto add = [&](std::string name, std::vector<int64_t> shape,
                       TensorPresence presence = TensorPresence::kRequired,
                       std::string alternative = "") {
    out.push_back(
        {std::move(name), std::move(shape), presence, std::move(alternative)});
  };

  add("model.embeddings.weight", {c.vocab_size, D});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string layer = absl::StrCat("model.layers.", i, ".");
    const std::string attn = layer + "attn.";
    add(layer + "attn_norm.weight", {D});

    const auto convs = [&](int64_t q, int64_t k, int64_t v) {
      if (!c.use_short_conv) return;
      add(attn + "q_conv1d.weight", {q, 1, c.conv_size});
      add(attn + "k_conv1d.weight", {k, 1, c.conv_size});
      add(attn + "v_conv1d.weight", {v, 1, c.conv_size});
    };
    // retnet/gla output norm: name by the fused-gate rule, weight if affine.
    const auto gated_output_norm = [&] {
      if (!c.elementwise_affine) return;
      add(attn + (c.fused_norm_gate ? "g_norm_swish_gate.weight"
                                    : "g_norm.weight"),
          {c.head_v_dim});
    };

    switch (c.family) {
      case ModelFamily::kLinearAttn: {
        add(attn + "q_proj.weight", {c.key_dim, D});
        add(attn + "k_proj.weight", {c.kv_key_dim(), D});
        add(attn + "v_proj.weight", {c.kv_value_dim(), D});
        const int64_t dk = c.head_k_dim;
        std::vector<std::pair<std::string, std::vector<int64_t>>> params;
        switch (c.feature_map) {
          case LinearFeatureMap::kElementwiseProduct:
            params = {{"layer1.weight", {dk, dk}},
                      {"layer1.bias", {dk}},
                      {"layer2.weight", {dk, dk}},
                      {"layer2.bias", {dk}}};
            break;
          case LinearFeatureMap::kHedgehog:
            params = {{"layer.weight", {dk, dk}}, {"layer.bias", {dk}}};
            break;
          case LinearFeatureMap::kT2r:
            params = {{"layer.weight", {dk, dk}}};
            break;
          default:
            break;
        }
        const bool tied = c.tie_feature_map_qk;
        for (const std::string qk : {"q", "k"}) {
          const std::string other = qk == "q" ? "k" : "q";
          for (const auto& [param, shape] : params) {
            add(attn + "feature_map_" + qk + "." + param, shape,
                TensorPresence::kRequired,
                tied ? attn + "feature_map_" + other + "." + param : "");
          }
        }
        if (c.feature_map == LinearFeatureMap::kPerformer) {
          // One Omega shared by q and k; an untied k copy is optional.
          const std::vector<int64_t> omega = {c.performer.num_features, dk};
          add(attn + "feature_map_q.projection", omega);
          add(attn + "feature_map_k.projection", omega,
              TensorPresence::kOptional);
        }
        if (c.elementwise_affine) add(attn + "norm.weight", {c.head_v_dim});
        add(attn + "o_proj.weight", {D, c.value_dim});
        break;
      }
      case ModelFamily::kRetNet:
        add(attn + "q_proj.weight", {c.key_dim, D});
        add(attn + "k_proj.weight", {c.kv_key_dim(), D});
        add(attn + "v_proj.weight", {c.kv_value_dim(), D});
        if (c.use_output_gate) add(attn + "g_proj.weight", {c.value_dim, D});
        gated_output_norm();
        add(attn + "o_proj.weight", {D, c.value_dim});
        break;
      case ModelFamily::kGla:
        add(attn + "q_proj.weight", {c.key_dim, D});
        add(attn + "k_proj.weight", {c.kv_key_dim(), D});
        add(attn + "v_proj.weight", {c.kv_value_dim(), D});
        if (c.use_output_gate) add(attn + "g_proj.weight", {c.value_dim, D});
        add(attn + "gk_proj.0.weight", {16, D});
        add(attn + "gk_proj.1.weight", {c.kv_key_dim(), 16});
        add(attn + "gk_proj.1.bias", {c.kv_key_dim()});
        convs(c.key_dim, c.kv_key_dim(), c.kv_value_dim());
        gated_output_norm();
        add(attn + "o_proj.weight", {D, c.value_dim});
        break;
      case ModelFamily::kDeltaNet:
        add(attn + "q_proj.weight", {c.key_dim, D});
        add(attn + "k_proj.weight", {c.key_dim, D});
        add(attn + "v_proj.weight", {c.value_dim, D});
        if (c.use_beta) add(attn + "b_proj.weight", {c.num_heads, D});
        convs(c.key_dim, c.key_dim, c.value_dim);
        if (c.use_gate) add(attn + "g_proj.weight", {c.value_dim, D});
        add(attn + "o_norm.weight", {c.head_v_dim});
        add(attn + "o_proj.weight", {D, c.value_dim});
        break;
      case ModelFamily::kGatedDeltaNet:
        add(attn + "q_proj.weight", {c.key_dim, D});
        add(attn + "k_proj.weight", {c.key_dim, D});
        add(attn + "v_proj.weight", {c.value_dim, D});
        add(attn + "a_proj.weight", {c.num_v_heads, D});
        add(attn + "b_proj.weight", {c.num_v_heads, D});
        add(attn + "A_log", {c.num_v_heads});
        add(attn + "dt_bias", {c.num_v_heads});
        convs(c.key_dim, c.key_dim, c.value_dim);
        if (c.use_gate) add(attn + "g_proj.weight", {c.value_dim, D});
        add(attn + "o_norm.weight", {c.head_v_dim});
        add(attn + "o_proj.weight", {D, c.value_dim});
        // Legacy (<= 2025-03), never used (§9.6).
        add(attn + "D", {c.num_heads}, TensorPresence::kIgnored);
        break;
    }

    add(layer + "mlp_norm.weight", {D});
    add(layer + "mlp.gate_proj.weight", {c.intermediate_size, D});
    add(layer + "mlp.up_proj.weight", {c.intermediate_size, D});
    add(layer + "mlp.down_proj.weight", {D, c.intermediate_size});
  }
  add("model.norm.weight", {D});
  add("lm_head.weight", {c.vocab_size, D},
      c.tie_word_embeddings ? TensorPresence::kIgnored
                            : TensorPresence::kRequired);
  return out;
}

}  // namespace linserve::engine
