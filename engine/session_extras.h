// What a server-kept sequence needs beside the recurrent state
// (engine/session_state.h) to continue exactly: the last token, held unfed,
// and the sampler's state that outlives one request — the random stream and
// the set of tokens in the context (the repetition penalty's "prompt").
// Serialized into the "extras" section of the state format
// (engine/state_format.h, docs/state-format.md), so an exported session
// continues on another replica exactly as it would have here.
//
// Size: fixed per model (the seen-token set is a bitmap of the vocabulary),
// like the recurrent state.
//
//   SessionExtras extras = NewSessionExtras(model->vocab_size());
//   extras.MarkSeen(tokens);
//   std::string bytes = SerializeSessionExtras(extras);
//   ASSIGN_OR_RETURN(SessionExtras back, ParseSessionExtras(bytes, vocab));
#ifndef LINSERVE_ENGINE_SESSION_EXTRAS_H_
#define LINSERVE_ENGINE_SESSION_EXTRAS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/sampler.h"

namespace linserve::engine {

struct SessionExtras {
  // The session's last token, not yet run through the model (the next call
  // feeds it first). Unset for an empty session.
  std::optional<int32_t> pending_token;
  // The random stream a request without a seed continues; unseeded until
  // the first such request draws a random seed.
  bool rng_seeded = false;
  uint64_t seed = 0;  // the seed the stream started from
  Xoshiro256 rng;
  // Bit t of the vocabulary-sized bitmap: token t is in the context.
  std::vector<uint64_t> seen;

  // Starts the random stream from `seed` (sessions the server keeps are
  // seeded when created, so an exported session continues identically on
  // any replica).
  void SeedStream(uint64_t new_seed) {
    seed = new_seed;
    rng = Xoshiro256::FromSeed(new_seed);
    rng_seeded = true;
  }
  // Marks every token as in the context (ids must be in [0, vocab)).
  void MarkSeen(absl::Span<const int32_t> tokens);
  bool Seen(int32_t token) const {
    return (seen[static_cast<size_t>(token) / 64] >> (token % 64)) & 1u;
  }
  // The tokens in the context, ascending (for NewSamplerState).
  std::vector<int32_t> SeenTokens() const;
  bool operator==(const SessionExtras& other) const;
};

// The extras of an empty session of a model with `vocab_size` tokens.
SessionExtras NewSessionExtras(int64_t vocab_size);

// Bytes of SerializeSessionExtras for this vocabulary size (constant).
int64_t SessionExtrasBytes(int64_t vocab_size);

// Little-endian: "LSVX", version (u32), flags (u32: bit 0 pending token,
// bit 1 rng seeded), pending token (i32), vocab size (i64), seed (u64),
// rng state (4 x u64), then the bitmap (ceil(vocab / 64) x u64).
std::string SerializeSessionExtras(const SessionExtras& extras);

// InvalidArgument (naming what is wrong) for bytes that are not extras of a
// model with this vocabulary size, or that hold an id outside it.
absl::StatusOr<SessionExtras> ParseSessionExtras(std::string_view bytes,
                                                 int64_t vocab_size);

}  // namespace linserve::engine

#endif  // LINSERVE_ENGINE_SESSION_EXTRAS_H_
