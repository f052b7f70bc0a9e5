// Specification of engine/model_config.h against
// ../shared/spec/model-families.md: fla's defaults per family, derived sizes,
// refusals that name the field, and the expected tensor list.
#include "engine/model_config.h"

#include <map>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "absl/status/status.h"
#include "engine/safetensors.h"
#include "tests/engine/safetensors_writer.h"

namespace linserve::engine {
namespace {

using Catch::Matchers::Contains;
using Shape = std::vector<int64_t>;

ModelConfig Parse(const std::string& text) {
  absl::StatusOr<ModelConfig> config = ParseModelConfig(text);
  INFO(config.status().ToString());
  REQUIRE(config.ok());
  return *config;
}

absl::Status ParseError(const std::string& text) {
  return ParseModelConfig(text).status();
}

std::string Message(const absl::Status& s) { return std::string(s.message()); }

std::map<std::string, ExpectedTensor> ByName(const ModelConfig& config) {
  std::map<std::string, ExpectedTensor> out;
  for (const ExpectedTensor& t : ExpectedTensors(config)) {
    REQUIRE(out.count(t.name) == 0);  // names are unique
    out[t.name] = t;
  }
  return out;
}

// --- defaults per family
// ------------------------------------------------------

TEST_CASE(
    "linear_attn defaults follow fla: 24 layers, 4 heads, "
    "elementwise_product, MLP width 5632 for D=2048 ratio 4") {
  const ModelConfig c = Parse(R"({"model_type": "linear_attn"})");
  CHECK(c.family == ModelFamily::kLinearAttn);
  CHECK(ModelFamilyName(c.family) == "linear_attn");
  CHECK(c.vocab_size == 32000);
  CHECK(c.hidden_size == 2048);
  CHECK(c.num_hidden_layers == 24);
  CHECK(c.hidden_ratio == 4);
  CHECK(c.intermediate_size == 5632);
  CHECK(c.hidden_act == "swish");
  CHECK(c.norm_eps == 1e-6);
  CHECK(c.fuse_norm);
  CHECK_FALSE(c.tie_word_embeddings);
  CHECK(c.bos_token_id == 1);
  CHECK(c.eos_token_ids == std::vector<int64_t>{2});
  CHECK_FALSE(c.pad_token_id.has_value());
  CHECK(c.attn_mode == "fused_chunk");
  CHECK(c.num_heads == 4);
  CHECK(c.num_kv_heads == 4);
  CHECK(c.key_dim == 2048);
  CHECK(c.value_dim == 2048);
  CHECK(c.head_k_dim == 512);
  CHECK(c.head_v_dim == 512);
  CHECK(c.feature_map == LinearFeatureMap::kElementwiseProduct);
  CHECK(c.feature_dim == 512);
  CHECK_FALSE(c.tie_feature_map_qk);
  CHECK_FALSE(c.norm_q);
  CHECK_FALSE(c.norm_k);
  CHECK_FALSE(c.norm_feature_map);
  CHECK(c.elementwise_affine);
  CHECK_FALSE(c.use_short_conv);
  CHECK(RecurrentStateBytesPerLayer(c) == 4 * 4 * 512 * 512);
  CHECK(ConvStateBytesPerLayer(c) == 0);
}

TEST_CASE(
    "retnet defaults follow fla: hidden_ratio 2 gives MLP width 2816, "
    "8 heads, expand_v 2, fused gated output norm, never convs") {
  const ModelConfig c = Parse(
      R"({"model_type": "retnet", "use_short_conv": true, "conv_size": 4})");
  CHECK(c.family == ModelFamily::kRetNet);
  CHECK(c.num_hidden_layers == 24);
  CHECK(c.intermediate_size == 2816);
  CHECK(c.num_heads == 8);
  CHECK(c.key_dim == 2048);
  CHECK(c.value_dim == 4096);
  CHECK(c.head_k_dim == 256);
  CHECK(c.head_v_dim == 512);
  CHECK(c.attn_mode == "chunk");
  CHECK(c.use_output_gate);
  CHECK(c.fused_norm_gate);
  CHECK(c.qk_feature_activation == QkFeatureActivation::kNone);
  CHECK_FALSE(c.use_short_conv);  // ignored by retnet (§4.1)
  CHECK(ConvStateBytesPerLayer(c) == 0);
  CHECK(RecurrentStateBytesPerLayer(c) == 4 * 8 * 256 * 512);
}

TEST_CASE(
    "gla defaults follow fla: expand_k 0.5, 4 heads, no convs, no "
    "clamp") {
  const ModelConfig c = Parse(R"({"model_type": "gla"})");
  CHECK(c.family == ModelFamily::kGla);
  CHECK(c.intermediate_size == 5632);
  CHECK(c.num_heads == 4);
  CHECK(c.key_dim == 1024);
  CHECK(c.value_dim == 2048);
  CHECK(c.head_k_dim == 256);
  CHECK(c.head_v_dim == 512);
  CHECK_FALSE(c.use_short_conv);
  CHECK(c.conv_size == 4);
  CHECK(c.use_output_gate);
  CHECK_FALSE(c.clamp_min.has_value());
  CHECK(c.fused_norm_gate);
  CHECK(c.attn_mode == "chunk");
}

TEST_CASE(
    "delta_net defaults follow fla: 16 heads, beta, convs, silu + l2, "
    "no gate") {
  const ModelConfig c = Parse(R"({"model_type": "delta_net"})");
  CHECK(c.family == ModelFamily::kDeltaNet);
  CHECK(c.num_heads == 16);
  CHECK(c.num_kv_heads == 16);
  CHECK(c.head_k_dim == 128);
  CHECK(c.head_v_dim == 128);
  CHECK(c.use_beta);
  CHECK_FALSE(c.use_gate);
  CHECK(c.use_short_conv);
  CHECK(c.conv_size == 4);
  CHECK_FALSE(c.allow_neg_eigval);
  CHECK(c.qk_activation == QkActivation::kSilu);
  CHECK(c.qk_norm == QkNorm::kL2);
  CHECK(c.elementwise_affine);
  CHECK(RecurrentStateBytesPerLayer(c) == 4 * 16 * 128 * 128);
  CHECK(ConvStateBytesPerLayer(c) == 4 * 4 * (2 * 2048 + 2048));
}

TEST_CASE(
    "gated_deltanet defaults follow fla: 21 layers, key_dim 1536, d_v "
    "512, value_dim 3072, state 3,145,728 + 98,304 bytes per layer") {
  const ModelConfig c = Parse(R"({"model_type": "gated_deltanet"})");
  CHECK(c.family == ModelFamily::kGatedDeltaNet);
  CHECK(c.num_hidden_layers == 21);
  CHECK(c.intermediate_size == 5632);
  CHECK(c.num_heads == 6);
  CHECK(c.num_v_heads == 6);
  CHECK(c.head_k_dim == 256);
  CHECK(c.key_dim == 1536);
  CHECK(c.head_v_dim == 512);
  CHECK(c.value_dim == 3072);
  CHECK(c.use_gate);
  CHECK(c.use_short_conv);
  CHECK_FALSE(c.allow_neg_eigval);
  CHECK(RecurrentStateBytesPerLayer(c) == 3'145'728);
  CHECK(ConvStateBytesPerLayer(c) == 98'304);
}

TEST_CASE(
    "gated_deltanet with GVA: num_v_heads multiplies the value side "
    "only") {
  const ModelConfig c = Parse(R"({"model_type": "gated_deltanet",
      "hidden_size": 512, "num_heads": 2, "num_v_heads": 4, "head_dim": 64,
      "expand_v": 1.5})");
  CHECK(c.key_dim == 128);
  CHECK(c.head_v_dim == 96);
  CHECK(c.value_dim == 384);
  CHECK(RecurrentStateBytesPerLayer(c) == 4 * 4 * 64 * 96);
}

TEST_CASE(
    "the MLP width rule truncates D*ratio*2/3 and rounds up to 256, a "
    "null ratio counts as 4, an explicit intermediate_size wins") {
  CHECK(Parse(R"({"model_type": "retnet", "hidden_ratio": null})")
            .intermediate_size == 5632);
  CHECK(Parse(R"({"model_type": "gla", "hidden_size": 1024})")
            .intermediate_size == 2816);
  CHECK(
      Parse(R"({"model_type": "gla", "hidden_size": 768})").intermediate_size ==
      2048);  // exactly 2048: no rounding up
  CHECK(Parse(R"({"model_type": "gla", "hidden_size": 1024,
                  "hidden_ratio": 2.5})")
            .intermediate_size == 1792);  // int(1706.67) = 1706 -> 1792
  CHECK(Parse(R"({"model_type": "gla", "intermediate_size": 1000})")
            .intermediate_size == 1000);
  CHECK(Parse(R"({"model_type": "gla", "intermediate_size": null})")
            .intermediate_size == 5632);
}

TEST_CASE("token ids: eos may be a list, pad and bos may be null") {
  const ModelConfig c = Parse(R"({"model_type": "gla", "bos_token_id": null,
      "eos_token_id": [2, 7], "pad_token_id": 0})");
  CHECK_FALSE(c.bos_token_id.has_value());
  CHECK(c.eos_token_ids == std::vector<int64_t>{2, 7});
  CHECK(c.pad_token_id == 0);
  CHECK(Parse(R"({"model_type": "gla", "eos_token_id": null})")
            .eos_token_ids.empty());
}

TEST_CASE("unknown extra keys are accepted (fla stores stale fields)") {
  const ModelConfig c = Parse(R"({"model_type": "gla", "use_gk": true,
      "use_gv": false, "torch_dtype": "bfloat16", "architectures":
      ["GLAForCausalLM"], "transformers_version": "4.45.0",
      "fuse_cross_entropy": true, "initializer_range": 0.02})");
  CHECK(c.family == ModelFamily::kGla);
}

TEST_CASE(
    "gla and delta_net accept attn_mode fused_chunk, an unknown "
    "attn_mode is an error naming the field") {
  CHECK(
      Parse(R"({"model_type": "gla", "attn_mode": "fused_chunk"})").attn_mode ==
      "fused_chunk");
  CHECK(Parse(R"({"model_type": "delta_net", "attn_mode": "fused_chunk"})")
            .attn_mode == "fused_chunk");
  CHECK(
      Parse(R"({"model_type": "retnet", "attn_mode": "parallel"})").attn_mode ==
      "parallel");
  const absl::Status s =
      ParseError(R"({"model_type": "gated_deltanet", "attn_mode": "x"})");
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(Message(s), Contains("field \"attn_mode\"") &&
                             Contains("unknown value \"x\""));
}

// --- refusals -------------------------------------------------------------

TEST_CASE(
    "hybrid attention layers (non-null attn) are refused naming "
    "\"attn\"") {
  const absl::Status s = ParseError(R"({"model_type": "gla",
      "attn": {"layers": [1], "num_heads": 4}})");
  CHECK(s.code() == absl::StatusCode::kUnimplemented);
  CHECK_THAT(Message(s),
             Contains("config.json: field \"attn\"") && Contains("hybrid"));
  CHECK(Parse(R"({"model_type": "gla", "attn": null})").family ==
        ModelFamily::kGla);
}

TEST_CASE("attnres_block_size is refused naming the field") {
  const absl::Status s =
      ParseError(R"({"model_type": "retnet", "attnres_block_size": 2})");
  CHECK(s.code() == absl::StatusCode::kUnimplemented);
  CHECK_THAT(Message(s), Contains("field \"attnres_block_size\""));
}

TEST_CASE(
    "hidden_act powlu is refused as not yet supported, anything but "
    "swish or silu is invalid") {
  absl::Status s =
      ParseError(R"({"model_type": "delta_net", "hidden_act": "powlu"})");
  CHECK(s.code() == absl::StatusCode::kUnimplemented);
  CHECK_THAT(Message(s), Contains("field \"hidden_act\"") && Contains("powlu"));
  s = ParseError(R"({"model_type": "delta_net", "hidden_act": "gelu"})");
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(Message(s), Contains("field \"hidden_act\"") && Contains("gelu"));
  CHECK(Parse(R"({"model_type": "gla", "hidden_act": "silu"})").hidden_act ==
        "silu");
}

TEST_CASE(
    "share_conv_kernel with use_short_conv is refused for every "
    "family with convs, without convs it is harmless") {
  for (const std::string family : {"gla", "delta_net", "gated_deltanet"}) {
    INFO(family);
    const absl::Status s =
        ParseError(R"({"model_type": ")" + family +
                   R"(", "use_short_conv": true, "share_conv_kernel": true})");
    CHECK(s.code() == absl::StatusCode::kUnimplemented);
    CHECK_THAT(Message(s), Contains("field \"share_conv_kernel\""));
    CHECK(Parse(R"({"model_type": ")" + family +
                R"(", "use_short_conv": false, "share_conv_kernel": true})")
              .use_short_conv == false);
  }
}

TEST_CASE("an unknown or missing model_type is an error naming the field") {
  absl::Status s = ParseError(R"({"model_type": "mamba2"})");
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(Message(s), Contains("field \"model_type\"") &&
                             Contains("\"mamba2\"") &&
                             Contains("gated_deltanet"));
  s = ParseError(R"({"hidden_size": 64})");
  CHECK_THAT(Message(s),
             Contains("field \"model_type\"") && Contains("missing"));
  s = ParseError(R"({"model_type": 3})");
  CHECK_THAT(Message(s), Contains("field \"model_type\": expected a string, "
                                  "found integer 3"));
}

TEST_CASE(
    "wrong JSON types are errors naming the field, the expected type "
    "and what was found") {
  struct Case {
    std::string fields;
    std::string message;
  };
  const std::vector<Case> cases = {
      {R"("num_heads": "8")",
       "field \"num_heads\": expected an integer, found string \"8\""},
      {R"("hidden_size": 2048.0)",
       "field \"hidden_size\": expected an integer, found float"},
      {R"("num_hidden_layers": null)",
       "field \"num_hidden_layers\": expected an integer, found null"},
      {R"("norm_eps": "1e-6")",
       "field \"norm_eps\": expected a number, found string"},
      {R"("expand_v": null)", "field \"expand_v\": expected a number"},
      {R"("fuse_norm": 1)",
       "field \"fuse_norm\": expected a boolean, found integer 1"},
      {R"("tie_word_embeddings": "false")",
       "field \"tie_word_embeddings\": expected a boolean"},
      {R"("hidden_ratio": "4")", "field \"hidden_ratio\": expected a number"},
      {R"("attn_mode": 1)", "field \"attn_mode\": expected a string"},
      {R"("use_short_conv": null)",
       "field \"use_short_conv\": expected a "
       "boolean, found null"},
      {R"("eos_token_id": [2, "x"])", "field \"eos_token_id\""},
      {R"("clamp_min": "low")", "field \"clamp_min\": expected a number"},
      {R"("feature_map": 3)", "field \"feature_map\": expected a string"},
      {R"("vocab_size": 0)", "field \"vocab_size\": must be in [1, "},
      {R"("num_heads": -2)", "field \"num_heads\": must be in [1, "},
  };
  for (const Case& c : cases) {
    INFO(c.fields);
    const absl::Status s =
        ParseError(R"({"model_type": "gla", )" + c.fields + "}");
    CHECK(s.code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(Message(s), Contains(c.message));
  }
}

TEST_CASE(
    "config text that is not a JSON object is an error, a missing "
    "file is NotFound") {
  absl::Status s = ParseError("{\"model_type\": ");
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(Message(s), Contains("config.json: not valid JSON"));
  s = ParseError("[]");
  CHECK_THAT(Message(s), Contains("expected a JSON object"));
  s = LoadModelConfig("/nonexistent/config.json").status();
  CHECK(s.code() == absl::StatusCode::kNotFound);
  CHECK_THAT(Message(s), Contains("/nonexistent/config.json"));
}

TEST_CASE("LoadModelConfig reads a file and names it in errors") {
  linserve::testing::TempDir dir;
  const std::string path = dir.file("config.json");
  linserve::testing::WriteBytes(path, R"({"model_type": "retnet"})");
  auto config = LoadModelConfig(path);
  REQUIRE(config.ok());
  CHECK(config->family == ModelFamily::kRetNet);
  linserve::testing::WriteBytes(
      path, R"({"model_type": "retnet", "num_heads": "x"})");
  config = LoadModelConfig(path);
  CHECK_THAT(Message(config.status()),
             Contains(path + ": field \"num_heads\""));
}

// --- derived sizes
// ------------------------------------------------------------

TEST_CASE("key and value dims must divide by num_heads") {
  const absl::Status s = ParseError(
      R"({"model_type": "linear_attn", "hidden_size": 100, "num_heads": 3})");
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(Message(s), Contains("field \"num_heads\"") &&
                             Contains("key_dim = int(hidden_size * expand_k) "
                                      "= 100") &&
                             Contains("num_heads = 3"));
}

TEST_CASE("num_kv_heads must divide num_heads, GQA shrinks k and v") {
  absl::Status s =
      ParseError(R"({"model_type": "gla", "num_heads": 4, "num_kv_heads": 3})");
  CHECK_THAT(Message(s), Contains("field \"num_kv_heads\""));
  const ModelConfig c = Parse(R"({"model_type": "gla", "hidden_size": 256,
      "num_heads": 4, "num_kv_heads": 2})");
  CHECK(c.num_kv_heads == 2);
  CHECK(c.kv_key_dim() == 64);     // 2 * (128 / 4)
  CHECK(c.kv_value_dim() == 128);  // 2 * (256 / 4)
}

TEST_CASE("retnet needs an even head_k_dim of at most 256") {
  absl::Status s = ParseError(
      R"({"model_type": "retnet", "hidden_size": 1024, "num_heads": 2})");
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(Message(s),
             Contains("head_k_dim") && Contains("512") && Contains("<= 256"));
  s = ParseError(
      R"({"model_type": "retnet", "hidden_size": 30, "num_heads": 2})");
  CHECK_THAT(Message(s), Contains("head_k_dim") && Contains("15"));
}

TEST_CASE(
    "gated_deltanet: num_v_heads must be a multiple of num_heads and "
    "head_dim * expand_v whole") {
  absl::Status s = ParseError(
      R"({"model_type": "gated_deltanet", "num_heads": 4, "num_v_heads": 6})");
  CHECK_THAT(Message(s), Contains("field \"num_v_heads\"") &&
                             Contains("multiple of num_heads = 4"));
  s = ParseError(
      R"({"model_type": "gated_deltanet", "head_dim": 3, "expand_v": 0.5})");
  CHECK_THAT(Message(s),
             Contains("field \"expand_v\"") && Contains("whole number"));
}

TEST_CASE("delta_net qk_activation and qk_norm take only fla's values") {
  const ModelConfig c = Parse(R"({"model_type": "delta_net",
      "qk_activation": "elu", "qk_norm": "sum", "use_gate": true,
      "use_beta": false, "allow_neg_eigval": true})");
  CHECK(c.qk_activation == QkActivation::kElu);
  CHECK(c.qk_norm == QkNorm::kSum);
  CHECK(c.use_gate);
  CHECK_FALSE(c.use_beta);
  CHECK(c.allow_neg_eigval);
  CHECK_THAT(
      Message(ParseError(R"({"model_type": "delta_net", "qk_norm": "l1"})")),
      Contains("field \"qk_norm\": unknown value \"l1\""));
  CHECK_THAT(Message(ParseError(
                 R"({"model_type": "delta_net", "qk_activation": "tanh"})")),
             Contains("field \"qk_activation\""));
}

TEST_CASE("retnet and gla feature_map is an activation name or null") {
  CHECK(Parse(R"({"model_type": "gla", "feature_map": "relu"})")
            .qk_feature_activation == QkFeatureActivation::kRelu);
  CHECK(Parse(R"({"model_type": "retnet", "feature_map": "swish"})")
            .qk_feature_activation == QkFeatureActivation::kSilu);
  CHECK_THAT(
      Message(ParseError(R"({"model_type": "gla", "feature_map": "gelu"})")),
      Contains("field \"feature_map\"") && Contains("\"gelu\""));
}

TEST_CASE(
    "linear_attn feature dims: hedgehog doubles d_k, dpfp multiplies "
    "it by 8, the normaliser adds 4*H*K_f state bytes") {
  const std::string base =
      R"({"model_type": "linear_attn", "hidden_size": 256, "num_heads": 4, )";
  ModelConfig c = Parse(base + R"("feature_map": "hedgehog"})");
  CHECK(c.feature_dim == 128);
  c = Parse(base + R"("feature_map": "dpfp", "norm_feature_map": true})");
  CHECK(c.feature_dim == 512);
  CHECK(RecurrentStateBytesPerLayer(c) == 4 * 4 * 512 * 64 + 4 * 4 * 512);
  CHECK_THAT(Message(ParseError(base + R"("feature_map": "cosformer"})")),
             Contains("field \"feature_map\": unknown value \"cosformer\""));
}

TEST_CASE("elementwise_affine null means no output-norm weight") {
  CHECK_FALSE(Parse(R"({"model_type": "retnet", "elementwise_affine": null})")
                  .elementwise_affine);
  // delta_net/gated_deltanet have no such field: o_norm always has a weight.
  CHECK(Parse(R"({"model_type": "delta_net", "elementwise_affine": false})")
            .elementwise_affine);
}

// --- Performer (§10.3)
// ----------------------------------------------------------

TEST_CASE(
    "performer requires norm_feature_map and defaults to int(d_k ln "
    "d_k) features, eps 1e-4, key constant 0, query rowmax") {
  const std::string base =
      R"({"model_type": "linear_attn", "hidden_size": 256, "num_heads": 4,
          "feature_map": "performer")";
  const absl::Status s = ParseError(base + "}");
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(Message(s),
             Contains("field \"norm_feature_map\"") && Contains("performer"));

  const ModelConfig c = Parse(base + R"(, "norm_feature_map": true})");
  CHECK(c.feature_map == LinearFeatureMap::kPerformer);
  CHECK(c.head_k_dim == 64);
  CHECK(c.performer.num_features == 266);  // int(64 * ln 64) = int(266.17)
  CHECK(c.feature_dim == 266);
  CHECK(c.performer.eps == 1e-4);
  CHECK(c.performer.key_stabilizer == PerformerKeyStabilizer::kConstant);
  CHECK(c.performer.key_stabilizer_constant == 0.0);
  CHECK(c.performer.query_stabilizer == PerformerQueryStabilizer::kRowMax);
  // §10.3: 4 * H * m * (d_v + 1).
  CHECK(RecurrentStateBytesPerLayer(c) == 4 * 4 * 266 * (64 + 1));
}

TEST_CASE("performer options parse and are validated by name") {
  const std::string base =
      R"({"model_type": "linear_attn", "hidden_size": 256, "num_heads": 4,
          "feature_map": "performer", "norm_feature_map": true, )";
  ModelConfig c = Parse(base + R"("performer_nb_features": 128,
      "performer_eps": 0, "performer_key_stabilizer": "omega_bound",
      "performer_query_stabilizer": "none"})");
  CHECK(c.performer.num_features == 128);
  CHECK(c.feature_dim == 128);
  CHECK(c.performer.eps == 0);
  CHECK(c.performer.key_stabilizer == PerformerKeyStabilizer::kOmegaBound);
  CHECK(c.performer.query_stabilizer == PerformerQueryStabilizer::kNone);
  c = Parse(base + R"("performer_key_stabilizer": 2.5})");
  CHECK(c.performer.key_stabilizer == PerformerKeyStabilizer::kConstant);
  CHECK(c.performer.key_stabilizer_constant == 2.5);

  CHECK_THAT(
      Message(ParseError(base + R"("performer_key_stabilizer": "max"})")),
      Contains("field \"performer_key_stabilizer\": expected a number "
               "or \"omega_bound\""));
  CHECK_THAT(
      Message(ParseError(base + R"("performer_query_stabilizer": "max"})")),
      Contains("field \"performer_query_stabilizer\""));
  CHECK_THAT(Message(ParseError(base + R"("performer_nb_features": 0})")),
             Contains("field \"performer_nb_features\""));
  CHECK_THAT(Message(ParseError(base + R"("performer_eps": -1})")),
             Contains("field \"performer_eps\""));
  // d_k = 1: int(1 * ln 1) = 0 features, so m must be given.
  CHECK_THAT(Message(ParseError(
                 R"({"model_type": "linear_attn", "hidden_size": 4,
                     "num_heads": 4, "feature_map": "performer",
                     "norm_feature_map": true})")),
             Contains("field \"performer_nb_features\"") &&
                 Contains("set it explicitly"));
}

// --- expected tensors
// -----------------------------------------------------------

TEST_CASE(
    "every family expects the shared skeleton: embeddings, per-layer "
    "norms and MLP, final norm, lm_head") {
  for (const std::string family :
       {"linear_attn", "retnet", "gla", "delta_net", "gated_deltanet"}) {
    INFO(family);
    const ModelConfig c = Parse(R"({"model_type": ")" + family + R"(",
        "hidden_size": 256, "num_hidden_layers": 2, "vocab_size": 1000,
        "num_heads": 4, "head_dim": 64})");
    const auto t = ByName(c);
    CHECK(t.at("model.embeddings.weight").shape == Shape{1000, 256});
    CHECK(t.at("model.norm.weight").shape == Shape{256});
    CHECK(t.at("lm_head.weight").shape == Shape{1000, 256});
    CHECK(t.at("lm_head.weight").presence == TensorPresence::kRequired);
    const int64_t I = c.intermediate_size;
    for (int layer = 0; layer < 2; ++layer) {
      const std::string p = "model.layers." + std::to_string(layer) + ".";
      CHECK(t.at(p + "attn_norm.weight").shape == Shape{256});
      CHECK(t.at(p + "mlp_norm.weight").shape == Shape{256});
      CHECK(t.at(p + "mlp.gate_proj.weight").shape == Shape{I, 256});
      CHECK(t.at(p + "mlp.up_proj.weight").shape == Shape{I, 256});
      CHECK(t.at(p + "mlp.down_proj.weight").shape == Shape{256, I});
      CHECK(t.at(p + "attn.o_proj.weight").shape == Shape{256, c.value_dim});
    }
    CHECK(t.count("model.layers.2.attn_norm.weight") == 0);
    CHECK(ExpectedTensors(c).front().name == "model.embeddings.weight");
  }
}

TEST_CASE("tie_word_embeddings makes lm_head.weight ignored, not required") {
  const ModelConfig c = Parse(
      R"({"model_type": "gla", "tie_word_embeddings": true,
          "num_hidden_layers": 1})");
  CHECK(ByName(c).at("lm_head.weight").presence == TensorPresence::kIgnored);
}

TEST_CASE(
    "linear_attn tensors (§3.2): GQA projections, elementwise_product "
    "maps for q and k, output norm") {
  const ModelConfig c = Parse(R"({"model_type": "linear_attn",
      "hidden_size": 256, "num_heads": 4, "num_kv_heads": 2,
      "expand_v": 2.0, "num_hidden_layers": 1})");
  const auto t = ByName(c);
  const std::string a = "model.layers.0.attn.";
  CHECK(t.at(a + "q_proj.weight").shape == Shape{256, 256});
  CHECK(t.at(a + "k_proj.weight").shape == Shape{128, 256});
  CHECK(t.at(a + "v_proj.weight").shape == Shape{256, 256});
  CHECK(t.at(a + "norm.weight").shape == Shape{128});
  CHECK(t.at(a + "o_proj.weight").shape == Shape{256, 512});
  for (const std::string qk : {"q", "k"}) {
    const std::string m = a + "feature_map_" + qk + ".";
    CHECK(t.at(m + "layer1.weight").shape == Shape{64, 64});
    CHECK(t.at(m + "layer1.bias").shape == Shape{64});
    CHECK(t.at(m + "layer2.weight").shape == Shape{64, 64});
    CHECK(t.at(m + "layer2.bias").shape == Shape{64});
    CHECK(t.at(m + "layer1.weight").alternative.empty());
  }
}

TEST_CASE(
    "linear_attn with tied feature maps accepts either copy: each "
    "q tensor names its k twin as the alternative") {
  const ModelConfig c = Parse(R"({"model_type": "linear_attn",
      "hidden_size": 256, "num_heads": 4, "feature_map": "hedgehog",
      "tie_feature_map_qk": true, "num_hidden_layers": 1,
      "elementwise_affine": false})");
  const auto t = ByName(c);
  const std::string a = "model.layers.0.attn.";
  CHECK(t.at(a + "feature_map_q.layer.weight").shape == Shape{64, 64});
  CHECK(t.at(a + "feature_map_q.layer.bias").shape == Shape{64});
  CHECK(t.at(a + "feature_map_q.layer.weight").alternative ==
        a + "feature_map_k.layer.weight");
  CHECK(t.at(a + "feature_map_k.layer.bias").alternative ==
        a + "feature_map_q.layer.bias");
  CHECK(t.count(a + "norm.weight") == 0);
}

TEST_CASE(
    "linear_attn t2r has a weight without bias, dpfp, elu, relu and "
    "identity have no feature-map tensors") {
  const std::string base = R"({"model_type": "linear_attn",
      "hidden_size": 256, "num_heads": 4, "num_hidden_layers": 1, )";
  auto t = ByName(Parse(base + R"("feature_map": "t2r"})"));
  CHECK(t.count("model.layers.0.attn.feature_map_q.layer.weight") == 1);
  CHECK(t.count("model.layers.0.attn.feature_map_q.layer.bias") == 0);
  for (const std::string map : {"dpfp", "elu", "relu", "identity"}) {
    INFO(map);
    t = ByName(Parse(base + R"("feature_map": ")" + map + R"("})"));
    for (const auto& [name, tensor] : t) {
      CHECK(name.find("feature_map") == std::string::npos);
    }
  }
}

TEST_CASE(
    "performer expects one [m, d_k] projection for q, and an optional "
    "untied one for k") {
  const ModelConfig c = Parse(R"({"model_type": "linear_attn",
      "hidden_size": 256, "num_heads": 4, "num_hidden_layers": 1,
      "feature_map": "performer", "norm_feature_map": true,
      "performer_nb_features": 100})");
  const auto t = ByName(c);
  const std::string a = "model.layers.0.attn.";
  CHECK(t.at(a + "feature_map_q.projection").shape == Shape{100, 64});
  CHECK(t.at(a + "feature_map_q.projection").presence ==
        TensorPresence::kRequired);
  CHECK(t.at(a + "feature_map_k.projection").presence ==
        TensorPresence::kOptional);
}

TEST_CASE(
    "retnet tensors (§4.2): g_proj and g_norm_swish_gate by default, "
    "g_norm when the gate is not fused") {
  const std::string base = R"({"model_type": "retnet", "hidden_size": 256,
      "num_heads": 4, "num_kv_heads": 2, "num_hidden_layers": 1)";
  const std::string a = "model.layers.0.attn.";
  auto t = ByName(Parse(base + "}"));
  CHECK(t.at(a + "q_proj.weight").shape == Shape{256, 256});
  CHECK(t.at(a + "k_proj.weight").shape == Shape{128, 256});
  CHECK(t.at(a + "v_proj.weight").shape == Shape{256, 256});
  CHECK(t.at(a + "g_proj.weight").shape == Shape{512, 256});
  CHECK(t.at(a + "g_norm_swish_gate.weight").shape == Shape{128});
  CHECK(t.count(a + "g_norm.weight") == 0);
  CHECK(t.at(a + "o_proj.weight").shape == Shape{256, 512});
  CHECK(t.count(a + "q_conv1d.weight") == 0);

  for (const std::string change :
       {R"(, "fuse_norm": false)", R"(, "hidden_act": "silu")",
        R"(, "use_output_gate": false)"}) {
    INFO(change);
    t = ByName(Parse(base + change + "}"));
    CHECK(t.count(a + "g_norm_swish_gate.weight") == 0);
    CHECK(t.at(a + "g_norm.weight").shape == Shape{128});
  }
  t = ByName(Parse(base + R"(, "use_output_gate": false})"));
  CHECK(t.count(a + "g_proj.weight") == 0);
  t = ByName(Parse(base + R"(, "elementwise_affine": false})"));
  CHECK(t.count(a + "g_norm_swish_gate.weight") == 0);
  CHECK(t.count(a + "g_norm.weight") == 0);
}

TEST_CASE("gla tensors (§5.2): low-rank gate with bias, GQA-sized convs") {
  const ModelConfig c = Parse(R"({"model_type": "gla", "hidden_size": 256,
      "num_heads": 4, "num_kv_heads": 2, "use_short_conv": true,
      "conv_size": 3, "num_hidden_layers": 1, "fuse_norm": false})");
  const auto t = ByName(c);
  const std::string a = "model.layers.0.attn.";
  CHECK(t.at(a + "q_proj.weight").shape == Shape{128, 256});
  CHECK(t.at(a + "k_proj.weight").shape == Shape{64, 256});
  CHECK(t.at(a + "v_proj.weight").shape == Shape{128, 256});
  CHECK(t.at(a + "g_proj.weight").shape == Shape{256, 256});
  CHECK(t.at(a + "gk_proj.0.weight").shape == Shape{16, 256});
  CHECK(t.at(a + "gk_proj.1.weight").shape == Shape{64, 16});
  CHECK(t.at(a + "gk_proj.1.bias").shape == Shape{64});
  CHECK(t.at(a + "q_conv1d.weight").shape == Shape{128, 1, 3});
  CHECK(t.at(a + "k_conv1d.weight").shape == Shape{64, 1, 3});
  CHECK(t.at(a + "v_conv1d.weight").shape == Shape{128, 1, 3});
  CHECK(t.at(a + "g_norm.weight").shape == Shape{64});
  CHECK(ConvStateBytesPerLayer(c) == 4 * 3 * (128 + 64 + 128));
  CHECK(RecurrentStateBytesPerLayer(c) == 4 * 4 * 32 * 64);
}

TEST_CASE("delta_net tensors (§6.2): beta, convs, optional gate, o_norm") {
  const std::string base = R"({"model_type": "delta_net", "hidden_size": 256,
      "num_heads": 4, "expand_v": 2.0, "num_hidden_layers": 1)";
  const std::string a = "model.layers.0.attn.";
  auto t = ByName(Parse(base + "}"));
  CHECK(t.at(a + "q_proj.weight").shape == Shape{256, 256});
  CHECK(t.at(a + "k_proj.weight").shape == Shape{256, 256});
  CHECK(t.at(a + "v_proj.weight").shape == Shape{512, 256});
  CHECK(t.at(a + "b_proj.weight").shape == Shape{4, 256});
  CHECK(t.at(a + "q_conv1d.weight").shape == Shape{256, 1, 4});
  CHECK(t.at(a + "v_conv1d.weight").shape == Shape{512, 1, 4});
  CHECK(t.at(a + "o_norm.weight").shape == Shape{128});
  CHECK(t.count(a + "g_proj.weight") == 0);
  t = ByName(Parse(
      base +
      R"(, "use_gate": true, "use_beta": false, "use_short_conv": false})"));
  CHECK(t.at(a + "g_proj.weight").shape == Shape{512, 256});
  CHECK(t.count(a + "b_proj.weight") == 0);
  CHECK(t.count(a + "q_conv1d.weight") == 0);
}

TEST_CASE(
    "gated_deltanet tensors (§7.2): per-value-head decay parameters, "
    "legacy D ignored") {
  const ModelConfig c = Parse(R"({"model_type": "gated_deltanet",
      "hidden_size": 256, "num_heads": 2, "num_v_heads": 4, "head_dim": 64,
      "num_hidden_layers": 1})");
  const auto t = ByName(c);
  const std::string a = "model.layers.0.attn.";
  CHECK(t.at(a + "q_proj.weight").shape == Shape{128, 256});
  CHECK(t.at(a + "k_proj.weight").shape == Shape{128, 256});
  CHECK(t.at(a + "v_proj.weight").shape == Shape{512, 256});
  CHECK(t.at(a + "a_proj.weight").shape == Shape{4, 256});
  CHECK(t.at(a + "b_proj.weight").shape == Shape{4, 256});
  CHECK(t.at(a + "A_log").shape == Shape{4});
  CHECK(t.at(a + "dt_bias").shape == Shape{4});
  CHECK(t.at(a + "q_conv1d.weight").shape == Shape{128, 1, 4});
  CHECK(t.at(a + "v_conv1d.weight").shape == Shape{512, 1, 4});
  CHECK(t.at(a + "g_proj.weight").shape == Shape{512, 256});
  CHECK(t.at(a + "o_norm.weight").shape == Shape{128});
  CHECK(t.at(a + "o_proj.weight").shape == Shape{256, 512});
  CHECK(t.at(a + "D").presence == TensorPresence::kIgnored);
  CHECK(t.at(a + "D").shape == Shape{2});
}

TEST_CASE(
    "a checkpoint written from ExpectedTensors satisfies them through "
    "CheckpointReader with no tensor left unused") {
  const ModelConfig c = Parse(R"({"model_type": "gated_deltanet",
      "hidden_size": 64, "num_heads": 2, "head_dim": 16, "vocab_size": 50,
      "num_hidden_layers": 2})");
  std::vector<linserve::testing::TestTensor> tensors;
  for (const ExpectedTensor& t : ExpectedTensors(c)) {
    tensors.push_back(linserve::testing::ZerosF32(t.name, t.shape));
  }
  linserve::testing::TempDir dir;
  linserve::testing::WriteSafetensors(dir.file("model.safetensors"), tensors);
  auto reader = CheckpointReader::Open(dir.path());
  REQUIRE(reader.ok());
  for (const ExpectedTensor& t : ExpectedTensors(c)) {
    if (t.presence == TensorPresence::kIgnored) {
      CHECK((*reader)->MarkUsed(t.name));
      continue;
    }
    auto view = (*reader)->Require(t.name, t.shape);
    CHECK(view.ok());
  }
  CHECK((*reader)->UnusedNames().empty());
}

}  // namespace
}  // namespace linserve::engine
