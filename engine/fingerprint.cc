// Model fingerprints: XXH64, the canonical config text and the checkpoint
// manifest hash (see fingerprint.h and docs/state-format.md).
#include "engine/fingerprint.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "kernels/dtype.h"

namespace linserve::engine {
namespace {

constexpr uint64_t kP1 = 0x9E3779B185EBCA87ULL;
constexpr uint64_t kP2 = 0xC2B2AE3D27D4EB4FULL;
constexpr uint64_t kP3 = 0x165667B19E3779F9ULL;
constexpr uint64_t kP4 = 0x85EBCA77C2B2AE63ULL;
constexpr uint64_t kP5 = 0x27D4EB2F165667C5ULL;

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "XXH64 here reads words in host order: little-endian only");

inline uint64_t Rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

inline uint64_t Read64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

inline uint32_t Read32(const unsigned char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

inline uint64_t Round(uint64_t acc, uint64_t input) {
  acc += input * kP2;
  acc = Rotl(acc, 31);
  return acc * kP1;
}

inline uint64_t MergeRound(uint64_t acc, uint64_t val) {
  acc ^= Round(0, val);
  return acc * kP1 + kP4;
}

std::string Hex16(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64, v);
  return buf;
}

std::string Double(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

std::string_view Bool(bool b) { return b ? "true" : "false"; }

std::string_view FeatureMapName(LinearFeatureMap m) {
  switch (m) {
    case LinearFeatureMap::kElementwiseProduct:
      return "elementwise_product";
    case LinearFeatureMap::kHedgehog:
      return "hedgehog";
    case LinearFeatureMap::kT2r:
      return "t2r";
    case LinearFeatureMap::kDpfp:
      return "dpfp";
    case LinearFeatureMap::kElu:
      return "elu";
    case LinearFeatureMap::kRelu:
      return "relu";
    case LinearFeatureMap::kIdentity:
      return "identity";
    case LinearFeatureMap::kPerformer:
      return "performer";
  }
  return "?";
}

std::string_view QkFeatureActivationName(QkFeatureActivation a) {
  switch (a) {
    case QkFeatureActivation::kNone:
      return "none";
    case QkFeatureActivation::kRelu:
      return "relu";
    case QkFeatureActivation::kSilu:
      return "silu";
    case QkFeatureActivation::kSigmoid:
      return "sigmoid";
    case QkFeatureActivation::kIdentity:
      return "identity";
  }
  return "?";
}

std::string_view QkActivationName(QkActivation a) {
  switch (a) {
    case QkActivation::kSilu:
      return "silu";
    case QkActivation::kRelu:
      return "relu";
    case QkActivation::kElu:
      return "elu";
    case QkActivation::kIdentity:
      return "identity";
  }
  return "?";
}

}  // namespace

uint64_t Xxh64(const void* data, size_t size, uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  const unsigned char* const end = p + size;
  uint64_t h;
  if (size >= 32) {
    uint64_t v1 = seed + kP1 + kP2;
    uint64_t v2 = seed + kP2;
    uint64_t v3 = seed;
    uint64_t v4 = seed - kP1;
    const unsigned char* const limit = end - 32;
    do {
      v1 = Round(v1, Read64(p));
      v2 = Round(v2, Read64(p + 8));
      v3 = Round(v3, Read64(p + 16));
      v4 = Round(v4, Read64(p + 24));
      p += 32;
    } while (p <= limit);
    h = Rotl(v1, 1) + Rotl(v2, 7) + Rotl(v3, 12) + Rotl(v4, 18);
    h = MergeRound(h, v1);
    h = MergeRound(h, v2);
    h = MergeRound(h, v3);
    h = MergeRound(h, v4);
  } else {
    h = seed + kP5;
  }
  h += static_cast<uint64_t>(size);
  for (; p + 8 <= end; p += 8) {
    h ^= Round(0, Read64(p));
    h = Rotl(h, 27) * kP1 + kP4;
  }
  if (p + 4 <= end) {
    h ^= static_cast<uint64_t>(Read32(p)) * kP1;
    h = Rotl(h, 23) * kP2 + kP3;
    p += 4;
  }
  for (; p < end; ++p) {
    h ^= static_cast<uint64_t>(*p) * kP5;
    h = Rotl(h, 11) * kP1;
  }
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  h *= kP3;
  h ^= h >> 32;
  return h;
}

std::string ModelFingerprint::ToString() const {
  return absl::StrCat(Hex16(config_hash), "-", Hex16(weights_hash));
}

std::string CanonicalConfigText(const ModelConfig& c) {
  std::string out;
  const auto line = [&out](std::string_view name, std::string_view value) {
    out.append(name).append("=").append(value).append("\n");
  };
  const auto integer = [&line](std::string_view name, int64_t v) {
    line(name, absl::StrCat(v));
  };
  line("family", ModelFamilyName(c.family));
  integer("vocab_size", c.vocab_size);
  integer("hidden_size", c.hidden_size);
  integer("num_hidden_layers", c.num_hidden_layers);
  integer("intermediate_size", c.intermediate_size);
  line("hidden_act", c.hidden_act);
  line("norm_eps", Double(c.norm_eps));
  line("fuse_norm", Bool(c.fuse_norm));
  line("tie_word_embeddings", Bool(c.tie_word_embeddings));
  integer("num_heads", c.num_heads);
  integer("num_kv_heads", c.num_kv_heads);
  integer("num_v_heads", c.num_v_heads);
  line("expand_k", Double(c.expand_k));
  line("expand_v", Double(c.expand_v));
  line("elementwise_affine", Bool(c.elementwise_affine));
  line("use_output_gate", Bool(c.use_output_gate));
  line("use_short_conv", Bool(c.use_short_conv));
  integer("conv_size", c.conv_size);
  line("use_gate", Bool(c.use_gate));
  line("use_beta", Bool(c.use_beta));
  line("allow_neg_eigval", Bool(c.allow_neg_eigval));
  line("qk_activation", QkActivationName(c.qk_activation));
  line("qk_norm", c.qk_norm == QkNorm::kL2 ? "l2" : "sum");
  line("clamp_min", c.clamp_min ? Double(*c.clamp_min) : "none");
  line("qk_feature_activation",
       QkFeatureActivationName(c.qk_feature_activation));
  line("feature_map", FeatureMapName(c.feature_map));
  line("tie_feature_map_qk", Bool(c.tie_feature_map_qk));
  line("norm_q", Bool(c.norm_q));
  line("norm_k", Bool(c.norm_k));
  line("norm_feature_map", Bool(c.norm_feature_map));
  integer("performer.num_features", c.performer.num_features);
  line("performer.eps", Double(c.performer.eps));
  line("performer.key_stabilizer",
       c.performer.key_stabilizer == PerformerKeyStabilizer::kConstant
           ? "constant"
           : "omega_bound");
  line("performer.key_stabilizer_constant",
       Double(c.performer.key_stabilizer_constant));
  line("performer.query_stabilizer",
       c.performer.query_stabilizer == PerformerQueryStabilizer::kRowMax
           ? "row_max"
           : "none");
  integer("key_dim", c.key_dim);
  integer("value_dim", c.value_dim);
  integer("head_k_dim", c.head_k_dim);
  integer("head_v_dim", c.head_v_dim);
  integer("feature_dim", c.feature_dim);
  line("fused_norm_gate", Bool(c.fused_norm_gate));
  return out;
}

uint64_t ConfigHash(const ModelConfig& config) {
  const std::string text = CanonicalConfigText(config);
  return Xxh64(text.data(), text.size());
}

uint64_t WeightsHash(const CheckpointReader& checkpoint) {
  std::string manifest;
  for (const std::string& name : checkpoint.names()) {
    const std::optional<TensorView> t = checkpoint.Find(name);
    if (!t) continue;  // names() lists only present tensors
    absl::StrAppend(&manifest, name, "\t",
                    std::string(kernels::DTypeName(t->dtype)), "\t",
                    ShapeString(t->shape), "\t", t->bytes, "\t",
                    Hex16(Xxh64(t->data, static_cast<size_t>(t->bytes))), "\n");
  }
  return Xxh64(manifest.data(), manifest.size());
}

}  // namespace linserve::engine
