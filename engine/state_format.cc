// Session state export/import in the versioned binary format of
// docs/state-format.md (see state_format.h): header writing and reading,
// validation in an order that makes each error name its real cause.
#include "engine/state_format.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace linserve::engine {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the state format is little-endian; so is every host we run on");

// Header field offsets (version 1).
constexpr int kOffMagic = 0;
constexpr int kOffVersion = 8;
constexpr int kOffHeaderBytes = 12;
constexpr int kOffTotalBytes = 16;
constexpr int kOffConfigHash = 24;
constexpr int kOffWeightsHash = 32;
constexpr int kOffFamily = 40;
constexpr int kOffDType = 44;
constexpr int kOffNumLayers = 48;
constexpr int kOffHiddenSize = 56;
constexpr int kOffVocabSize = 64;
constexpr int kOffNumTokens = 72;
constexpr int kOffRecurrentBytes = 80;
constexpr int kOffExtrasBytes = 88;
constexpr int kOffLayoutHash = 96;
constexpr int kOffReserved = 104;  // 24 zero bytes up to kStateHeaderBytes

// Family codes of the format: fixed, whatever the enum's order.
constexpr struct {
  ModelFamily family;
  uint32_t code;
} kFamilyCodes[] = {
    {ModelFamily::kLinearAttn, 0},    {ModelFamily::kRetNet, 1},
    {ModelFamily::kGla, 2},           {ModelFamily::kDeltaNet, 3},
    {ModelFamily::kGatedDeltaNet, 4},
};

uint32_t FamilyCode(ModelFamily f) {
  for (const auto& e : kFamilyCodes) {
    if (e.family == f) return e.code;
  }
  return ~0u;
}

void Put32(char* base, int offset, uint32_t v) {
  std::memcpy(base + offset, &v, 4);
}
void Put64(char* base, int offset, uint64_t v) {
  std::memcpy(base + offset, &v, 8);
}
uint32_t Get32(const char* base, int64_t offset) {
  uint32_t v;
  std::memcpy(&v, base + offset, 4);
  return v;
}
uint64_t Get64(const char* base, int64_t offset) {
  uint64_t v;
  std::memcpy(&v, base + offset, 8);
  return v;
}

std::string Hex(uint64_t v) {
  return absl::StrCat("0x", absl::Hex(v, absl::kZeroPad16));
}

// "3f1c...-77b0... (gla, 2 layers, hidden 64, vocab 256)"
std::string DescribeModel(const ModelFingerprint& fp, ModelFamily family,
                          int64_t layers, int64_t hidden, int64_t vocab) {
  return absl::StrCat(fp.ToString(), " (", std::string(ModelFamilyName(family)),
                      ", ", layers, " layers, hidden ", hidden, ", vocab ",
                      vocab, ")");
}

}  // namespace

uint64_t StateLayoutHash(const StateLayout& layout) {
  std::vector<int64_t> words;
  words.reserve(layout.layers.size() * 10 + 1);
  words.push_back(layout.total_floats);
  for (const LayerStateLayout& l : layout.layers) {
    words.insert(words.end(),
                 {l.s_offset, l.s_floats, l.z_offset, l.z_floats,
                  l.conv_offset[0], l.conv_offset[1], l.conv_offset[2],
                  l.conv_floats[0], l.conv_floats[1], l.conv_floats[2]});
  }
  return Xxh64(words.data(), words.size() * sizeof(int64_t));
}

int64_t SerializedStateBytes(const Model& model, int64_t extras_bytes) {
  return kStateHeaderBytes +
         model.state_layout().total_floats *
             static_cast<int64_t>(sizeof(float)) +
         extras_bytes + kStateChecksumBytes;
}

absl::Status SerializeSessionStateTo(const Model& model,
                                     const SessionState& state,
                                     std::string_view extras,
                                     absl::Span<char> out) {
  const StateLayout& layout = model.state_layout();
  if (&state.layout() != &layout && !(state.layout() == layout)) {
    return absl::InvalidArgumentError(
        "SerializeSessionState: the session belongs to another model "
        "(different state layout)");
  }
  const int64_t extras_bytes = static_cast<int64_t>(extras.size());
  const int64_t total = SerializedStateBytes(model, extras_bytes);
  if (static_cast<int64_t>(out.size()) != total) {
    return absl::InvalidArgumentError(
        absl::StrCat("SerializeSessionState: the buffer has ", out.size(),
                     " bytes, the state needs ", total));
  }
  const ModelConfig& c = model.config();
  const int64_t recurrent_bytes =
      layout.total_floats * static_cast<int64_t>(sizeof(float));
  char* p = out.data();
  std::memset(p, 0, kStateHeaderBytes);
  std::memcpy(p + kOffMagic, kStateMagic, sizeof(kStateMagic));
  Put32(p, kOffVersion, kStateFormatVersion);
  Put32(p, kOffHeaderBytes, kStateHeaderBytes);
  Put64(p, kOffTotalBytes, total);
  Put64(p, kOffConfigHash, model.fingerprint().config_hash);
  Put64(p, kOffWeightsHash, model.fingerprint().weights_hash);
  Put32(p, kOffFamily, FamilyCode(c.family));
  Put32(p, kOffDType, kStateDTypeFloat32);
  Put64(p, kOffNumLayers, c.num_hidden_layers);
  Put64(p, kOffHiddenSize, c.hidden_size);
  Put64(p, kOffVocabSize, c.vocab_size);
  Put64(p, kOffNumTokens, state.num_tokens());
  Put64(p, kOffRecurrentBytes, recurrent_bytes);
  Put64(p, kOffExtrasBytes, extras_bytes);
  Put64(p, kOffLayoutHash, StateLayoutHash(layout));
  if (recurrent_bytes > 0) {
    std::memcpy(p + kStateHeaderBytes, state.data().data(), recurrent_bytes);
  }
  if (extras_bytes > 0) {
    std::memcpy(p + kStateHeaderBytes + recurrent_bytes, extras.data(),
                extras_bytes);
  }
  const int64_t covered = total - kStateChecksumBytes;
  const uint64_t checksum = Xxh64(p, static_cast<size_t>(covered));
  std::memcpy(p + covered, &checksum, sizeof(checksum));
  return absl::OkStatus();
}

absl::StatusOr<std::string> SerializeSessionState(const Model& model,
                                                  const SessionState& state,
                                                  std::string_view extras) {
  std::string out(static_cast<size_t>(SerializedStateBytes(
                      model, static_cast<int64_t>(extras.size()))),
                  '\0');
  RETURN_IF_ERROR(
      SerializeSessionStateTo(model, state, extras, absl::MakeSpan(out)));
  return out;
}

absl::StatusOr<StateHeader> ParseStateHeader(std::string_view bytes) {
  const int64_t size = static_cast<int64_t>(bytes.size());
  const char* p = bytes.data();
  // 1. What it is: the magic (as much of it as there is).
  const size_t magic_seen = std::min(bytes.size(), sizeof(kStateMagic));
  if (magic_seen > 0 && std::memcmp(p, kStateMagic, magic_seen) != 0) {
    return absl::InvalidArgumentError(
        "not a linserve session state: it does not start with \"LSVSTATE\"");
  }
  // 2. Whether it is whole: the frozen prelude's total size.
  if (size < kStatePreludeBytes + kStateChecksumBytes) {
    return absl::DataLossError(
        absl::StrCat("state is truncated: ", size, " bytes, less than the ",
                     kStatePreludeBytes + kStateChecksumBytes,
                     " that even an empty state needs"));
  }
  const uint64_t declared = Get64(p, kOffTotalBytes);
  if (declared != static_cast<uint64_t>(size)) {
    return absl::DataLossError(absl::StrCat(
        declared > static_cast<uint64_t>(size) ? "state is truncated"
                                               : "state has trailing bytes",
        ": its header says ", declared, " bytes, found ", size));
  }
  // 3. Whether it is intact: the trailer covers every byte before it.
  const int64_t covered = size - kStateChecksumBytes;
  const uint64_t stored = Get64(p, covered);
  const uint64_t computed = Xxh64(p, static_cast<size_t>(covered));
  if (stored != computed) {
    return absl::DataLossError(absl::StrCat(
        "state is damaged: checksum mismatch (stored ", Hex(stored),
        ", computed ", Hex(computed), " over ", covered, " bytes)"));
  }
  // 4. Whether this build reads it. An intact state of another version is
  // not damage: FailedPrecondition, as for another model's state.
  StateHeader h;
  h.format_version = Get32(p, kOffVersion);
  if (h.format_version != kStateFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "state format version ", h.format_version,
        " is not supported: this server reads version ", kStateFormatVersion,
        h.format_version > kStateFormatVersion
            ? " (the state comes from a newer linserve)"
            : ""));
  }
  const uint32_t header_bytes = Get32(p, kOffHeaderBytes);
  if (header_bytes != kStateHeaderBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed state header: header size ", header_bytes,
                     ", version 1 has ", kStateHeaderBytes));
  }
  for (int64_t i = kOffReserved; i < kStateHeaderBytes; ++i) {
    if (p[i] != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "malformed state header: reserved byte ", i, " is not zero"));
    }
  }
  const uint32_t family_code = Get32(p, kOffFamily);
  bool family_known = false;
  for (const auto& e : kFamilyCodes) {
    if (e.code == family_code) {
      h.family = e.family;
      family_known = true;
    }
  }
  if (!family_known) {
    return absl::InvalidArgumentError(absl::StrCat(
        "malformed state header: unknown model family code ", family_code));
  }
  const uint32_t dtype = Get32(p, kOffDType);
  if (dtype != kStateDTypeFloat32) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed state header: state dtype code ", dtype,
                     ", only 1 (fp32) exists"));
  }
  h.total_bytes = size;
  h.fingerprint.config_hash = Get64(p, kOffConfigHash);
  h.fingerprint.weights_hash = Get64(p, kOffWeightsHash);
  h.num_layers = static_cast<int64_t>(Get64(p, kOffNumLayers));
  h.hidden_size = static_cast<int64_t>(Get64(p, kOffHiddenSize));
  h.vocab_size = static_cast<int64_t>(Get64(p, kOffVocabSize));
  h.num_tokens = static_cast<int64_t>(Get64(p, kOffNumTokens));
  h.layout_hash = Get64(p, kOffLayoutHash);
  const uint64_t recurrent = Get64(p, kOffRecurrentBytes);
  const uint64_t extras = Get64(p, kOffExtrasBytes);
  const uint64_t room =
      static_cast<uint64_t>(size) - kStateHeaderBytes - kStateChecksumBytes;
  if (size < kStateHeaderBytes + kStateChecksumBytes || recurrent > room ||
      extras > room || recurrent + extras != room || recurrent % 4 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed state header: sections of ", recurrent, " + ",
                     extras, " bytes do not fill the ", size, "-byte state"));
  }
  if (h.num_tokens < 0 || h.num_layers < 0 || h.hidden_size < 0 ||
      h.vocab_size < 0) {
    return absl::InvalidArgumentError(
        "malformed state header: a size or token count is negative");
  }
  h.recurrent_bytes = static_cast<int64_t>(recurrent);
  h.extras_bytes = static_cast<int64_t>(extras);
  return h;
}

absl::Status DeserializeSessionState(const Model& model, std::string_view bytes,
                                     SessionState* out, std::string* extras) {
  if (out == nullptr) {
    return absl::InvalidArgumentError("DeserializeSessionState: out is null");
  }
  const StateLayout& layout = model.state_layout();
  if (&out->layout() != &layout && !(out->layout() == layout)) {
    return absl::InvalidArgumentError(
        "DeserializeSessionState: the target session belongs to another "
        "model (different state layout)");
  }
  ASSIGN_OR_RETURN(const StateHeader h, ParseStateHeader(bytes));
  const ModelConfig& c = model.config();
  if (h.fingerprint != model.fingerprint()) {
    const char* why =
        h.fingerprint.config_hash == model.fingerprint().config_hash
            ? "same config, different weights"
            : "different config";
    return absl::FailedPreconditionError(absl::StrCat(
        "state belongs to model ",
        DescribeModel(h.fingerprint, h.family, h.num_layers, h.hidden_size,
                      h.vocab_size),
        ", this server runs model ",
        DescribeModel(model.fingerprint(), c.family, c.num_hidden_layers,
                      c.hidden_size, c.vocab_size),
        " (", why, ")"));
  }
  const int64_t recurrent_bytes =
      layout.total_floats * static_cast<int64_t>(sizeof(float));
  const uint64_t layout_hash = StateLayoutHash(layout);
  if (h.recurrent_bytes != recurrent_bytes || h.layout_hash != layout_hash) {
    return absl::FailedPreconditionError(absl::StrCat(
        "state layout differs from this server's for the same model (",
        h.recurrent_bytes, " bytes, layout hash ", Hex(h.layout_hash), " vs ",
        recurrent_bytes, " bytes, ", Hex(layout_hash),
        "): the state was written by an incompatible linserve build"));
  }
  // Everything is checked. The extras go first: their allocation is the
  // only step that can still fail (throw), and the session is untouched then.
  const char* payload = bytes.data() + kStateHeaderBytes;
  if (extras != nullptr) {
    extras->assign(payload + recurrent_bytes,
                   static_cast<size_t>(h.extras_bytes));
  }
  if (recurrent_bytes > 0) {
    std::memcpy(out->data().data(), payload, recurrent_bytes);
  }
  out->set_num_tokens(h.num_tokens);
  return absl::OkStatus();
}

}  // namespace linserve::engine
