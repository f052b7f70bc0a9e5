// Serialization of SessionExtras (engine/session_extras.h).
#include "engine/session_extras.h"

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace linserve::engine {
namespace {

constexpr char kMagic[4] = {'L', 'S', 'V', 'X'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kFlagPending = 1u << 0;
constexpr uint32_t kFlagRngSeeded = 1u << 1;
// magic, version, flags, pending, vocab, seed, rng[4]
constexpr int64_t kFixedBytes = 4 + 4 + 4 + 4 + 8 + 8 + 32;

int64_t BitmapWords(int64_t vocab_size) { return (vocab_size + 63) / 64; }

template <typename T>
void Put(std::string& out, T value) {
  // The build targets little-endian machines only (x86-64, aarch64).
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}

template <typename T>
T Get(std::string_view bytes, size_t& offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  offset += sizeof(T);
  return value;
}

}  // namespace

void SessionExtras::MarkSeen(absl::Span<const int32_t> tokens) {
  for (int32_t t : tokens) {
    seen[static_cast<size_t>(t) / 64] |= uint64_t{1} << (t % 64);
  }
}

std::vector<int32_t> SessionExtras::SeenTokens() const {
  std::vector<int32_t> tokens;
  for (size_t w = 0; w < seen.size(); ++w) {
    for (uint64_t bits = seen[w]; bits != 0; bits &= bits - 1) {
      tokens.push_back(static_cast<int32_t>(w * 64) + __builtin_ctzll(bits));
    }
  }
  return tokens;
}

bool SessionExtras::operator==(const SessionExtras& other) const {
  return pending_token == other.pending_token &&
         rng_seeded == other.rng_seeded && seed == other.seed &&
         std::memcmp(rng.s, other.rng.s, sizeof(rng.s)) == 0 &&
         seen == other.seen;
}

SessionExtras NewSessionExtras(int64_t vocab_size) {
  SessionExtras extras;
  extras.seen.assign(static_cast<size_t>(BitmapWords(vocab_size)), 0);
  return extras;
}

int64_t SessionExtrasBytes(int64_t vocab_size) {
  return kFixedBytes + 8 * BitmapWords(vocab_size);
}

std::string SerializeSessionExtras(const SessionExtras& extras) {
  const int64_t vocab = static_cast<int64_t>(extras.seen.size()) * 64;
  std::string out;
  out.reserve(static_cast<size_t>(kFixedBytes + 8 * extras.seen.size()));
  out.append(kMagic, sizeof(kMagic));
  Put<uint32_t>(out, kVersion);
  uint32_t flags = 0;
  if (extras.pending_token.has_value()) flags |= kFlagPending;
  if (extras.rng_seeded) flags |= kFlagRngSeeded;
  Put<uint32_t>(out, flags);
  Put<int32_t>(out, extras.pending_token.value_or(0));
  // The bitmap's word count is what is checked on parse; the vocabulary is
  // recorded rounded up to whole words.
  Put<int64_t>(out, vocab);
  Put<uint64_t>(out, extras.seed);
  for (uint64_t word : extras.rng.s) Put<uint64_t>(out, word);
  for (uint64_t word : extras.seen) Put<uint64_t>(out, word);
  return out;
}

absl::StatusOr<SessionExtras> ParseSessionExtras(std::string_view bytes,
                                                 int64_t vocab_size) {
  const int64_t want = SessionExtrasBytes(vocab_size);
  if (static_cast<int64_t>(bytes.size()) != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        "session extras are ", bytes.size(), " bytes; a model with ",
        vocab_size, " tokens needs ", want));
  }
  if (std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return absl::InvalidArgumentError(
        "session extras do not start with \"LSVX\"");
  }
  size_t offset = sizeof(kMagic);
  const uint32_t version = Get<uint32_t>(bytes, offset);
  if (version != kVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        "session extras version ", version, "; this server reads ", kVersion));
  }
  const uint32_t flags = Get<uint32_t>(bytes, offset);
  if ((flags & ~(kFlagPending | kFlagRngSeeded)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("session extras have unknown flags ", flags));
  }
  const int32_t pending = Get<int32_t>(bytes, offset);
  const int64_t recorded_vocab = Get<int64_t>(bytes, offset);
  if (recorded_vocab != BitmapWords(vocab_size) * 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("session extras are for a vocabulary of ", recorded_vocab,
                     " (rounded to 64), this model has ", vocab_size));
  }
  SessionExtras extras = NewSessionExtras(vocab_size);
  if (flags & kFlagPending) {
    if (pending < 0 || pending >= vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("session extras hold token ", pending,
                       ", outside the vocabulary [0, ", vocab_size, ")"));
    }
    extras.pending_token = pending;
  }
  extras.rng_seeded = (flags & kFlagRngSeeded) != 0;
  extras.seed = Get<uint64_t>(bytes, offset);
  for (uint64_t& word : extras.rng.s) word = Get<uint64_t>(bytes, offset);
  for (uint64_t& word : extras.seen) word = Get<uint64_t>(bytes, offset);
  // Bits past the vocabulary must be clear.
  if (vocab_size % 64 != 0 && (extras.seen.back() >> (vocab_size % 64)) != 0) {
    return absl::InvalidArgumentError(
        "session extras mark tokens outside the vocabulary");
  }
  return extras;
}

}  // namespace linserve::engine
