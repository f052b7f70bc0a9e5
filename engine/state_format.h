// Export and import of one session's state: a versioned, little-endian
// binary format (docs/state-format.md gives every field and offset) that a
// replica can hand to another running the same model. A 128-byte header
// (magic "LSVSTATE", format version, sizes, the model's fingerprint and a
// human-readable summary of the model), the fp32 state buffer, an opaque
// "extras" section (reserved for the sampler's state), and an XXH64 checksum
// of everything before it.
//
// Import validates everything before it touches the target session, so a
// failed import leaves it exactly as it was. Errors: DataLoss for damaged or
// truncated bytes (checksum, sizes), InvalidArgument for bytes that are not a
// linserve state or a malformed header, FailedPrecondition for an intact
// state this server cannot take (another model, another format version).
// Stateless functions; the caller serialises access to the session.
//
//   ASSIGN_OR_RETURN(std::string bytes, SerializeSessionState(*model, *s));
//   // ... stream `bytes` in chunks of any size, reassemble elsewhere ...
//   auto imported = model->NewSession();
//   RETURN_IF_ERROR(DeserializeSessionState(*model, bytes, imported.get()));
#ifndef LINSERVE_ENGINE_STATE_FORMAT_H_
#define LINSERVE_ENGINE_STATE_FORMAT_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/fingerprint.h"
#include "engine/model.h"
#include "engine/model_config.h"
#include "engine/session_state.h"

namespace linserve::engine {

inline constexpr char kStateMagic[8] = {'L', 'S', 'V', 'S', 'T', 'A', 'T', 'E'};
inline constexpr uint32_t kStateFormatVersion = 1;
// Frozen in every version: magic, version, header size, total size.
inline constexpr int64_t kStatePreludeBytes = 24;
inline constexpr int64_t kStateHeaderBytes = 128;  // version 1
inline constexpr int64_t kStateChecksumBytes = 8;  // the trailer
inline constexpr uint32_t kStateDTypeFloat32 = 1;

// The header of a serialized state, checked: magic, sizes, checksum,
// version and field values are valid (not yet: that it fits a model).
struct StateHeader {
  uint32_t format_version = 0;
  int64_t total_bytes = 0;
  ModelFingerprint fingerprint;
  ModelFamily family = ModelFamily::kLinearAttn;
  int64_t num_layers = 0;
  int64_t hidden_size = 0;
  int64_t vocab_size = 0;
  int64_t num_tokens = 0;  // tokens seen: the next token's position
  int64_t recurrent_bytes = 0;
  int64_t extras_bytes = 0;
  uint64_t layout_hash = 0;
};

// Bytes of `model`'s serialized state with `extras_bytes` of extras
// (constant in the context length).
int64_t SerializedStateBytes(const Model& model, int64_t extras_bytes = 0);

// Writes the state into `out`, which must be exactly SerializedStateBytes
// long (InvalidArgument otherwise, or for a session of another model).
// `extras` is carried opaquely (the sampler's state, later).
absl::Status SerializeSessionStateTo(const Model& model,
                                     const SessionState& state,
                                     std::string_view extras,
                                     absl::Span<char> out);

// The same into a new string.
absl::StatusOr<std::string> SerializeSessionState(const Model& model,
                                                  const SessionState& state,
                                                  std::string_view extras = {});

// Checks `bytes` without a model: a server holding several models can read
// the fingerprint to pick one. Errors as described in the banner.
absl::StatusOr<StateHeader> ParseStateHeader(std::string_view bytes);

// Replaces *out (a session of `model`) with the serialized state, and
// *extras (if non-null) with its extras. On any error neither is touched.
// FailedPrecondition if the state belongs to another model: "state belongs
// to model <fp> (gla, 2 layers, hidden 64, vocab 256), this server runs
// model <fp> (...)".
absl::Status DeserializeSessionState(const Model& model, std::string_view bytes,
                                     SessionState* out,
                                     std::string* extras = nullptr);

// XXH64 of the layout's per-layer offsets and sizes (header field).
uint64_t StateLayoutHash(const StateLayout& layout);

}  // namespace linserve::engine

#endif  // LINSERVE_ENGINE_STATE_FORMAT_H_
