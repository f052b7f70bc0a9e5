// Specification of engine/session_extras.h: extras survive serialization
// bit for bit, their size depends on the vocabulary only, the seen-token set
// holds what was marked, and every malformed input is refused with
// InvalidArgument.
#include "engine/session_extras.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace linserve::engine {
namespace {

// A vocabulary that is not a multiple of 64, so the bitmap has spare bits.
constexpr int64_t kVocab = 100;

SessionExtras Busy(int64_t vocab) {
  SessionExtras e = NewSessionExtras(vocab);
  e.pending_token = static_cast<int32_t>(vocab - 1);
  e.rng_seeded = true;
  e.seed = 0x0123456789abcdefULL;
  e.rng = Xoshiro256::FromSeed(e.seed);
  e.rng.Next();
  for (int32_t t : {0, 5, 63, 64, static_cast<int32_t>(vocab - 1)}) {
    if (t < vocab) e.MarkSeen({t});
  }
  return e;
}

absl::StatusCode ParseCode(const std::string& bytes, int64_t vocab = kVocab) {
  return ParseSessionExtras(bytes, vocab).status().code();
}

// Overwrites bytes at `offset` with the raw bytes of `value`.
template <typename T>
std::string With(std::string bytes, size_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof(T));
  return bytes;
}

// Field offsets of the documented layout: magic 0, version 4, flags 8,
// pending 12, vocab 16, seed 24, rng 32, bitmap 64.
constexpr size_t kOffVersion = 4, kOffFlags = 8, kOffPending = 12,
                 kOffVocab = 16, kOffBitmap = 64;

TEST_CASE(
    "session extras round-trip bit for bit, empty or full, for vocabularies "
    "on and off a multiple of 64",
    "[engine][session_extras]") {
  for (int64_t vocab : {int64_t{1}, int64_t{64}, kVocab, int64_t{32000}}) {
    INFO("vocab " << vocab);
    for (const SessionExtras& e : {NewSessionExtras(vocab), Busy(vocab)}) {
      const std::string bytes = SerializeSessionExtras(e);
      absl::StatusOr<SessionExtras> back = ParseSessionExtras(bytes, vocab);
      INFO(back.status().ToString());
      REQUIRE(back.ok());
      CHECK(*back == e);
      CHECK(back->pending_token == e.pending_token);
      CHECK(SerializeSessionExtras(*back) == bytes);
      // The stream continues where it was.
      CHECK(SessionExtras(*back).rng.Next() == SessionExtras(e).rng.Next());
    }
  }
  const SessionExtras empty = NewSessionExtras(kVocab);
  CHECK(!empty.pending_token.has_value());
  CHECK(!empty.rng_seeded);
  CHECK(empty.SeenTokens().empty());
  CHECK(!(Busy(kVocab) == empty));
}

TEST_CASE("serialized extras are SessionExtrasBytes long whatever they hold",
          "[engine][session_extras]") {
  for (int64_t vocab : {int64_t{1}, int64_t{63}, int64_t{64}, int64_t{65},
                        kVocab, int64_t{50257}}) {
    INFO("vocab " << vocab);
    const int64_t want = 64 + 8 * ((vocab + 63) / 64);
    CHECK(SessionExtrasBytes(vocab) == want);
    CHECK(static_cast<int64_t>(
              SerializeSessionExtras(NewSessionExtras(vocab)).size()) == want);
    CHECK(static_cast<int64_t>(SerializeSessionExtras(Busy(vocab)).size()) ==
          want);
  }
}

TEST_CASE("the seen-token set holds exactly the marked tokens, ascending",
          "[engine][session_extras]") {
  SessionExtras e = NewSessionExtras(kVocab);
  e.MarkSeen({99, 3, 64, 3, 0, 63});
  CHECK(e.SeenTokens() == std::vector<int32_t>{0, 3, 63, 64, 99});
  CHECK(e.Seen(64));
  CHECK(!e.Seen(65));
  CHECK(!e.Seen(1));
}

TEST_CASE(
    "every malformed extras input is InvalidArgument: size, magic, version, "
    "flags, vocabulary, pending token, bits past the vocabulary",
    "[engine][session_extras]") {
  const std::string good = SerializeSessionExtras(Busy(kVocab));
  REQUIRE(ParseSessionExtras(good, kVocab).ok());
  using absl::StatusCode;
  const StatusCode kInvalid = StatusCode::kInvalidArgument;

  CHECK(ParseCode("") == kInvalid);
  CHECK(ParseCode(good.substr(0, good.size() - 1)) == kInvalid);
  CHECK(ParseCode(good + '\0') == kInvalid);
  CHECK(ParseCode(good, 200) == kInvalid);  // another bitmap size

  std::string bad_magic = good;
  bad_magic[0] = 'X';
  CHECK(ParseCode(bad_magic) == kInvalid);
  CHECK(ParseCode(With<uint32_t>(good, kOffVersion, 2)) == kInvalid);
  CHECK(ParseCode(With<uint32_t>(good, kOffFlags, 4)) == kInvalid);
  // The bitmap has the right size but the recorded vocabulary differs.
  CHECK(ParseCode(With<int64_t>(good, kOffVocab, 64)) == kInvalid);
  CHECK(ParseCode(With<int32_t>(good, kOffPending, kVocab)) == kInvalid);
  CHECK(ParseCode(With<int32_t>(good, kOffPending, -1)) == kInvalid);
  // Token 100 (first spare bit of the second word) and 127 (the last).
  const size_t second_word = kOffBitmap + 8;
  CHECK(ParseCode(With<uint64_t>(good, second_word, uint64_t{1} << 36)) ==
        kInvalid);
  CHECK(ParseCode(With<uint64_t>(good, second_word, uint64_t{1} << 63)) ==
        kInvalid);
  // A vocabulary of 120 shares the bitmap size of 100 (2 words): token 110
  // is fine for 120 and refused for 100.
  SessionExtras wide = NewSessionExtras(120);
  wide.MarkSeen({110});
  const std::string wide_bytes = SerializeSessionExtras(wide);
  CHECK(ParseSessionExtras(wide_bytes, 120).ok());
  CHECK(ParseCode(wide_bytes, kVocab) == kInvalid);
  // Without the pending flag, the pending field is not read.
  SessionExtras no_pending = Busy(kVocab);
  no_pending.pending_token.reset();
  const absl::StatusOr<SessionExtras> parsed = ParseSessionExtras(
      With<int32_t>(SerializeSessionExtras(no_pending), kOffPending, 0),
      kVocab);
  REQUIRE(parsed.ok());
  CHECK(!parsed->pending_token.has_value());

  const absl::Status message =
      ParseSessionExtras(With<int32_t>(good, kOffPending, 5000), kVocab)
          .status();
  CHECK(std::string(message.message()).find("5000") != std::string::npos);
}

}  // namespace
}  // namespace linserve::engine
