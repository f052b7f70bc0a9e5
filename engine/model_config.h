// config.json of the five fla families (linear_attn, retnet, gla, delta_net,
// gated_deltanet, plus linserve's Performer feature map), parsed into one
// validated ModelConfig with fla's per-family defaults, derived sizes, and
// the list of tensors the checkpoint must hold (spec:
// ../shared/spec/model-families.md §1-§7, §10). Plain values, no ownership.
//
//   ASSIGN_OR_RETURN(ModelConfig config,
//                    LoadModelConfig(dir + "/config.json"));
//   for (const ExpectedTensor& t : ExpectedTensors(config)) { ... }
#ifndef LINSERVE_ENGINE_MODEL_CONFIG_H_
#define LINSERVE_ENGINE_MODEL_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace linserve::engine {

enum class ModelFamily {
  kLinearAttn,
  kRetNet,
  kGla,
  kDeltaNet,
  kGatedDeltaNet
};

// The config.json model_type: "linear_attn", "retnet", "gla", ...
std::string_view ModelFamilyName(ModelFamily family);

// linear_attn feature_map (§3.3) and linserve's "performer" (§10).
enum class LinearFeatureMap {
  kElementwiseProduct,
  kHedgehog,
  kT2r,
  kDpfp,
  kElu,
  kRelu,
  kIdentity,
  kPerformer,
};

// retnet / gla `feature_map`: an HF ACT2FN name applied to q and k, or none.
// linserve supports this subset ("swish" is kSilu, "linear" is kIdentity).
enum class QkFeatureActivation { kNone, kRelu, kSilu, kSigmoid, kIdentity };

// delta_net qk_activation and qk_norm (§6.1).
enum class QkActivation { kSilu, kRelu, kElu, kIdentity };
enum class QkNorm { kL2, kSum };

// Performer FAVOR+ options (spec §10.3), used when feature_map is kPerformer.
enum class PerformerKeyStabilizer {
  kConstant,    // subtract key_stabilizer_constant (default 0)
  kOmegaBound,  // subtract max_i |omega_i|^2 / 2: key features stay <= 1+eps
};
enum class PerformerQueryStabilizer { kRowMax, kNone };

struct PerformerOptions {
  int64_t num_features = 0;  // m; default int(d_k * ln d_k)
  double eps = 1e-4;
  // Default: the constant 0. "omega_bound" guarantees no overflow but scales
  // typical key features far below eps for large |omega|, so the estimate
  // degrades; 0 keeps eps negligible for the usual d_k <= 128.
  PerformerKeyStabilizer key_stabilizer = PerformerKeyStabilizer::kConstant;
  double key_stabilizer_constant = 0.0;
  PerformerQueryStabilizer query_stabilizer = PerformerQueryStabilizer::kRowMax;
};

// Every field holds the value the family's layers actually use: a field the
// family does not read holds a neutral value, whatever config.json says
// (e.g. use_short_conv is false for retnet and linear_attn, elementwise_affine
// is true for delta_net and gated_deltanet, whose o_norm always has a weight).
struct ModelConfig {
  ModelFamily family = ModelFamily::kLinearAttn;

  // --- Shared skeleton (§1.1).
  int64_t vocab_size = 32000;
  int64_t hidden_size = 2048;  // D
  int64_t num_hidden_layers = 24;
  double hidden_ratio = 4;           // a null hidden_ratio counts as 4 (§1.4)
  int64_t intermediate_size = 0;     // I: config value, or the §1.4 rule
  std::string hidden_act = "swish";  // "swish" or "silu" (both SiLU)
  double norm_eps = 1e-6;
  bool fuse_norm = true;
  bool tie_word_embeddings = false;
  std::optional<int64_t> bos_token_id = 1;
  std::vector<int64_t> eos_token_ids = {2};  // HF allows a list
  std::optional<int64_t> pad_token_id;
  std::string attn_mode;  // kernel choice in fla; no math effect here
  int64_t max_position_embeddings = 2048;

  // --- Token mixer options (§3.1, §4.1, §5.1, §6.1, §7.1).
  int64_t num_heads = 0;     // H (q/k heads)
  int64_t num_kv_heads = 0;  // H_kv: linear_attn/retnet/gla GQA; else H
  int64_t num_v_heads = 0;   // HV: gated_deltanet value heads; else H
  double expand_k = 1.0;     // not used by gated_deltanet (head_dim instead)
  double expand_v = 1.0;
  bool elementwise_affine = true;  // output norm has a weight
  bool use_output_gate = false;    // retnet, gla
  bool use_short_conv = false;     // gla, delta_net, gated_deltanet
  int64_t conv_size = 4;           // W
  bool use_gate = false;           // delta_net, gated_deltanet
  bool use_beta = true;            // delta_net (gated_deltanet always)
  bool allow_neg_eigval = false;   // delta_net, gated_deltanet
  QkActivation qk_activation = QkActivation::kSilu;  // delta_net
  QkNorm qk_norm = QkNorm::kL2;                      // delta_net
  std::optional<double> clamp_min;                   // gla
  QkFeatureActivation qk_feature_activation =        // retnet, gla
      QkFeatureActivation::kNone;
  LinearFeatureMap feature_map =  // linear_attn
      LinearFeatureMap::kElementwiseProduct;
  bool tie_feature_map_qk = false;  // linear_attn (learned maps only)
  bool norm_q = false;              // linear_attn
  bool norm_k = false;              // linear_attn
  bool norm_feature_map = false;    // linear_attn: normaliser z
  PerformerOptions performer;       // linear_attn with kPerformer

  // --- Derived sizes, validated to divide exactly.
  int64_t key_dim = 0;      // q width: H * d_k
  int64_t value_dim = 0;    // output width: H * d_v (GDN: HV * d_v)
  int64_t head_k_dim = 0;   // d_k
  int64_t head_v_dim = 0;   // d_v
  int64_t feature_dim = 0;  // K_f: rows of the state per head (§3.3)
  // retnet/gla: the output norm is FusedRMSNormGated, named
  // g_norm_swish_gate (hidden_act "swish" && fuse_norm && use_output_gate).
  bool fused_norm_gate = false;

  // H_kv * d_k and H_kv * d_v: widths of k and v before GQA repetition
  // (linear_attn, retnet, gla; delta_net has H_kv = H). Not for
  // gated_deltanet, whose v is HV * d_v = value_dim.
  int64_t kv_key_dim() const { return num_kv_heads * head_k_dim; }
  int64_t kv_value_dim() const { return num_kv_heads * head_v_dim; }
};

// Parses config.json text. `source` names the file in error messages.
// Errors name the field: InvalidArgument for a wrong type or value (e.g.
// "config.json: field \"num_heads\": expected an integer, found string"),
// Unimplemented for a valid fla feature linserve does not support yet
// (`attn` hybrid layers, `attnres_block_size`, hidden_act "powlu",
// share_conv_kernel with use_short_conv). Unknown keys are ignored (§1.1).
// gla/delta_net attn_mode "fused_chunk" is accepted: it is a kernel choice in
// fla (one that fla rejects for long prompts), not a different model.
absl::StatusOr<ModelConfig> ParseModelConfig(
    std::string_view json_text, const std::string& source = "config.json");

// Reads and parses the file at `path`.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path);

// fp32 bytes of one sequence's state in one layer (§11): the recurrent state
// (with the normaliser z for linear_attn with norm_feature_map), and the
// short-conv caches (W slots each; 0 without convs).
int64_t RecurrentStateBytesPerLayer(const ModelConfig& config);
int64_t ConvStateBytesPerLayer(const ModelConfig& config);

enum class TensorPresence {
  kRequired,  // must be present (or its `alternative`, see below)
  kOptional,  // used if present (performer feature_map_k.projection)
  kIgnored,   // may be present, never used (GDN legacy attn.D; lm_head when
              // tie_word_embeddings)
};

// One tensor the checkpoint may hold, with its exact shape.
struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
  TensorPresence presence = TensorPresence::kRequired;
  // Non-empty for tied linear_attn feature maps: HF may have saved only one
  // of the two copies, so a required tensor is satisfied by this name too.
  std::string alternative;
};

// Every tensor of the model (§1.2 and the family's table): the embeddings,
// then layer by layer in model order, then model.norm and lm_head.
std::vector<ExpectedTensor> ExpectedTensors(const ModelConfig& config);

}  // namespace linserve::engine

#endif  // LINSERVE_ENGINE_MODEL_CONFIG_H_
