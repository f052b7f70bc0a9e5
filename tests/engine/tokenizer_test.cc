// Tokenizer and StreamingDetokenizer (engine/tokenizer.h) on a tiny BPE
// SentencePiece model with byte fallback (tests/tokenizer_data, made by
// tools/make_test_tokenizer/make_test_tokenizer.sh): round trips through
// Encode/Decode, streaming output equal to the whole decode on encoded texts
// and random ids (byte pieces split across pushes, only complete UTF-8
// emitted), leading-space handling, and refusals of bad files and ids.
#include "engine/tokenizer.h"

#include <chrono>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "absl/status/status.h"
#include "tests/engine/safetensors_writer.h"

namespace linserve::engine {
namespace {

using Catch::Matchers::Contains;
using linserve::testing::TempDir;

const std::string kTokenizerDir = LINSERVE_TOKENIZER_DATA_DIR;
const std::string kTokenizerPath = kTokenizerDir + "/tokenizer.model";

TokenizerOptions LlamaStyleOptions() {
  TokenizerOptions options;
  options.bos_id = 1;
  options.eos_ids = {2};
  return options;
}

std::unique_ptr<Tokenizer> LoadTestTokenizer(
    const TokenizerOptions& options = LlamaStyleOptions()) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      Tokenizer::Load(kTokenizerPath, options);
  INFO(tokenizer.status().ToString());
  REQUIRE(tokenizer.ok());
  return std::move(*tokenizer);
}

// Strict UTF-8 check: no overlongs, surrogates or code points past U+10FFFF.
bool IsValidUtf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    int n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = 2, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 3, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 4, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n > s.size()) return false;
    for (int k = 1; k < n; ++k) {
      const unsigned char t = s[i + k];
      if ((t & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (t & 0x3F);
    }
    const uint32_t min_cp = n == 2 ? 0x80 : n == 3 ? 0x800 : 0x10000;
    if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n;
  }
  return true;
}

std::string MustDecode(const Tokenizer& tokenizer,
                       const std::vector<int32_t>& ids) {
  absl::StatusOr<std::string> text = tokenizer.Decode(ids);
  INFO(text.status().ToString());
  REQUIRE(text.ok());
  return *text;
}

std::vector<int32_t> MustEncode(const Tokenizer& tokenizer,
                                const std::string& text, bool add_bos = false) {
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(text, add_bos);
  INFO(ids.status().ToString());
  REQUIRE(ids.ok());
  return *ids;
}

int32_t MustPieceToId(const Tokenizer& tokenizer, const std::string& piece) {
  std::optional<int32_t> id = tokenizer.PieceToId(piece);
  INFO(piece);
  REQUIRE(id.has_value());
  return *id;
}

// Pushes every id, one at a time, then flushes. Checks that every returned
// piece is valid UTF-8 and returns their concatenation.
std::string Stream(const Tokenizer& tokenizer, const std::vector<int32_t>& ids,
                   bool continues_text = false) {
  StreamingDetokenizer detok(tokenizer, continues_text);
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    absl::StatusOr<std::string> piece = detok.Push(ids[i]);
    INFO("push " << i << " id " << ids[i] << ": " << piece.status().ToString());
    REQUIRE(piece.ok());
    CHECK(IsValidUtf8(*piece));
    out += *piece;
  }
  const std::string rest = detok.Flush();
  CHECK(IsValidUtf8(rest));
  return out + rest;
}

const std::vector<std::string>& SampleTexts() {
  static const std::vector<std::string> texts = {
      "The quick brown fox jumps over the lazy dog.",
      "Hello, world!",
      " leading space",
      "   three leading spaces and trailing   ",
      "tabs\tand\nnewlines\r\n and  double  spaces",
      "\n\nstarts with newlines",
      "Caf\xC3\xA9 cr\xC3\xA8me br\xC3\xBBl\xC3\xA9\x65, na\xC3\xAFve "
      "\xC3\x85ngstr\xC3\xB6m",
      "\xE6\x9D\xB1\xE4\xBA\xAC \xE5\x8C\x97\xE4\xBA\xAC "
      "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE6\x96\x87",
      "emoji \xF0\x9F\x98\x80\xF0\x9F\x9A\x80 and \xF0\x9F\x91\x8D\xF0\x9F\x8F"
      "\xBD (skin tone)",
      "mixed: \xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 "
      "\xCE\xB1\xCE\xB2 "
      "\xE2\x82\xAC 42 \xF0\x9F\x98\x80x\xE4\xBD\xA0\xE5\xA5\xBD",
      "digits 3.14159 and 2024-05-17",
      "",
      " ",
  };
  return texts;
}

TEST_CASE("tokenizer: a missing tokenizer.model is NotFound naming the path",
          "[tokenizer]") {
  TempDir dir;
  const std::string path = dir.file("tokenizer.model");
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::Load(path);
  REQUIRE_FALSE(tokenizer.ok());
  CHECK(tokenizer.status().code() == absl::StatusCode::kNotFound);
  CHECK_THAT(std::string(tokenizer.status().message()), Contains(path));
}

TEST_CASE(
    "tokenizer: a file that is not a SentencePiece model is refused naming "
    "the path",
    "[tokenizer]") {
  TempDir dir;
  for (const std::string& bytes :
       {std::string("this is not a protobuf \xFF\xFF\xFF\xFF"), std::string(),
        std::string("\x0a\x05hello", 7)}) {
    const std::string path = dir.file("tokenizer.model");
    std::ofstream(path, std::ios::binary) << bytes;
    absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
        Tokenizer::Load(path);
    INFO(tokenizer.status().ToString());
    REQUIRE_FALSE(tokenizer.ok());
    CHECK(tokenizer.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(tokenizer.status().message()), Contains(path));
  }
}

TEST_CASE(
    "tokenizer: a model directory without tokenizer.model gives no tokenizer "
    "and no error",
    "[tokenizer]") {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<Tokenizer>> none =
      LoadTokenizerIfPresent(dir.path());
  REQUIRE(none.ok());
  CHECK(*none == nullptr);

  absl::StatusOr<std::unique_ptr<Tokenizer>> present =
      LoadTokenizerIfPresent(kTokenizerDir, LlamaStyleOptions());
  INFO(present.status().ToString());
  REQUIRE(present.ok());
  REQUIRE(*present != nullptr);
  CHECK((*present)->vocab_size() == 400);
}

TEST_CASE(
    "tokenizer: BOS and EOS come from the model config, and ids outside the "
    "vocabulary are refused at load",
    "[tokenizer]") {
  ModelConfig config;
  config.bos_token_id = 1;
  config.eos_token_ids = {2, 7};
  const TokenizerOptions options = TokenizerOptionsFromConfig(config);
  REQUIRE(options.bos_id.has_value());
  CHECK(*options.bos_id == 1);
  CHECK(options.eos_ids == std::vector<int32_t>{2, 7});

  std::unique_ptr<Tokenizer> tokenizer = LoadTestTokenizer(options);
  CHECK(tokenizer->IsEos(2));
  CHECK(tokenizer->IsEos(7));
  CHECK_FALSE(tokenizer->IsEos(1));

  TokenizerOptions bad;
  bad.eos_ids = {400};
  absl::StatusOr<std::unique_ptr<Tokenizer>> refused =
      Tokenizer::Load(kTokenizerPath, bad);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(refused.status().message()), Contains("EOS id 400"));
}

TEST_CASE(
    "tokenizer: Encode with add_bos puts the configured BOS first, and is "
    "refused when the config defines none",
    "[tokenizer]") {
  TokenizerOptions options;
  options.bos_id = 5;  // deliberately not SentencePiece's own <s>
  std::unique_ptr<Tokenizer> tokenizer = LoadTestTokenizer(options);
  const std::vector<int32_t> plain = MustEncode(*tokenizer, "the token");
  const std::vector<int32_t> with_bos = MustEncode(*tokenizer, "the token",
                                                   /*add_bos=*/true);
  REQUIRE(with_bos.size() == plain.size() + 1);
  CHECK(with_bos[0] == 5);
  CHECK(std::vector<int32_t>(with_bos.begin() + 1, with_bos.end()) == plain);
  CHECK(MustEncode(*tokenizer, "", /*add_bos=*/true) ==
        std::vector<int32_t>{5});

  std::unique_ptr<Tokenizer> no_bos = LoadTestTokenizer(TokenizerOptions{});
  absl::StatusOr<std::vector<int32_t>> refused =
      no_bos->Encode("the", /*add_bos=*/true);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(refused.status().message()), Contains("bos"));
}

TEST_CASE(
    "tokenizer: encode then decode returns the text (ASCII, accents, CJK, "
    "emoji, mixed whitespace)",
    "[tokenizer]") {
  std::unique_ptr<Tokenizer> tokenizer = LoadTestTokenizer();
  for (const std::string& text : SampleTexts()) {
    INFO("text: \"" << text << "\"");
    const std::vector<int32_t> ids = MustEncode(*tokenizer, text);
    CHECK(MustDecode(*tokenizer, ids) == text);
    // BOS is a control piece: it decodes to nothing.
    CHECK(MustDecode(*tokenizer, MustEncode(*tokenizer, text, true)) == text);
  }
}

TEST_CASE("tokenizer: characters outside the vocabulary encode as byte pieces",
          "[tokenizer]") {
  std::unique_ptr<Tokenizer> tokenizer = LoadTestTokenizer();
  // U+1F600 is F0 9F 98 80; the corpus has no emoji.
  const std::vector<int32_t> ids = MustEncode(*tokenizer, "\xF0\x9F\x98\x80");
  std::vector<std::string> pieces;
  for (int32_t id : ids) pieces.push_back(*tokenizer->IdToPiece(id));
  CHECK(pieces == std::vector<std::string>{"\xE2\x96\x81", "<0xF0>", "<0x9F>",
                                           "<0x98>", "<0x80>"});
  CHECK(MustPieceToId(*tokenizer, "<0xF0>") == ids[1]);
}

TEST_CASE(
    "tokenizer: ids outside the vocabulary are refused by name, pieces not in "
    "it are absent",
    "[tokenizer]") {
  std::unique_ptr<Tokenizer> tokenizer = LoadTestTokenizer();
  for (int32_t bad : {-1, 400, 1 << 30}) {
    absl::StatusOr<std::string> text = tokenizer->Decode({5, bad, 6});
    REQUIRE_FALSE(text.ok());
    CHECK(text.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(text.status().message()),
               Contains("token id " + std::to_string(bad)) && Contains("400"));
    CHECK_FALSE(tokenizer->IdToPiece(bad).ok());
  }
  CHECK_FALSE(tokenizer->PieceToId("no such piece").has_value());
  CHECK(tokenizer->PieceToId("<unk>") == std::optional<int32_t>(0));
  CHECK(*tokenizer->IdToPiece(1) == "<s>");
}

TEST_CASE("tokenizer: Encode refuses text that is not UTF-8", "[tokenizer]") {
  std::unique_ptr<Tokenizer> tokenizer = LoadTestTokenizer();
  for (const std::string& bad :
       {std::string("ab\xFF"), std::string("\xE2\x82"), std::string("\xC0\xAF"),
        std::string("\xED\xA0\x80")}) {
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer->Encode(bad, false);
    REQUIRE_FALSE(ids.ok());
    CHECK(ids.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(ids.status().message()), Contains("UTF-8"));
  }
}

TEST_CASE(
    "tokenizer: streaming the ids of encoded texts gives exactly their "
    "decode, pushing one id at a time",
    "[tokenizer]") {
  std::unique_ptr<Tokenizer> tokenizer = LoadTestTokenizer();
  for (const std::string& text : SampleTexts()) {
    for (bool add_bos : {false, true}) {
      INFO("text: \"" << text << "\" add_bos " << add_bos);
      const std::vector<int32_t> ids = MustEncode(*tokenizer, text, add_bos);
      CHECK(Stream(*tokenizer, ids) == MustDecode(*tokenizer, ids));
    }
  }
}

TEST_CASE(
    "tokenizer: streaming a long text is exact and costs the same per id "
    "throughout",
    "[tokenizer]") {
  std::unique_ptr<Tokenizer> tokenizer = LoadTestTokenizer();
  std::ifstream in(kTokenizerDir + "/corpus.txt");
  const std::string corpus((std::istreambuf_iterator<char>(in)),
                           std::istreambuf_iterator<char>());
  std::string text;
  for (int i = 0; i < 40; ++i) {
    text += corpus + "\xF0\x9F\x98\x80 \xE6\x97\xA5\xE6\x9C\xAC\n";
  }
  const std::vector<int32_t> ids = MustEncode(*tokenizer, text);
  REQUIRE(ids.size() > 20000);
  // Re-decoding the past at every id would take minutes here.
  const auto start = std::chrono::steady_clock::now();
  CHECK(Stream(*tokenizer, ids) == text);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  CHECK(seconds < 5.0);
}

TEST_CASE(
    "tokenizer: streaming random ids gives exactly their decode and only "
    "valid UTF-8",
    "[tokenizer]") {
  std::unique_ptr<Tokenizer> tokenizer = LoadTestTokenizer();
  // Byte pieces are drawn often (and UTF-8 lead and continuation bytes
  // most), so that characters are split across pushes, broken, and mixed
  // with "▁", control and unknown pieces.
  std::vector<int32_t> bytes, leads, continuations;
  for (int b = 0; b < 256; ++b) {
    char piece[8];
    std::snprintf(piece, sizeof(piece), "<0x%02X>", b);
    const int32_t id = MustPieceToId(*tokenizer, piece);
    bytes.push_back(id);
    if (b >= 0xC2 && b <= 0xF4) leads.push_back(id);
    if (b >= 0x80 && b <= 0xBF) continuations.push_back(id);
  }
  const std::vector<int32_t> specials = {
      0, 1, 2, MustPieceToId(*tokenizer, "\xE2\x96\x81")};
  std::mt19937 rng(1234);
  auto pick = [&](const std::vector<int32_t>& from) {
    return from[std::uniform_int_distribution<size_t>(0, from.size() - 1)(rng)];
  };
  for (int trial = 0; trial < 3000; ++trial) {
    const int length = std::uniform_int_distribution<int>(0, 24)(rng);
    std::vector<int32_t> ids;
    for (int i = 0; i < length; ++i) {
      const int kind = std::uniform_int_distribution<int>(0, 9)(rng);
      if (kind <= 2) {
        ids.push_back(std::uniform_int_distribution<int32_t>(0, 399)(rng));
      } else if (kind == 3) {
        ids.push_back(pick(bytes));
      } else if (kind == 4) {
        ids.push_back(pick(leads));
      } else if (kind <= 6) {
        ids.push_back(pick(continuations));
      } else if (kind == 7) {
        ids.push_back(pick(specials));
      } else {
        // A whole valid multi-byte character, as byte pieces.
        const std::string ch =
            (kind == 8) ? "\xF0\x9F\x98\x80" : "\xE2\x82\xAC";
        for (unsigned char c : ch) ids.push_back(bytes[c]);
      }
    }
    INFO("trial " << trial);
    const std::string whole = MustDecode(*tokenizer, ids);
    CHECK(IsValidUtf8(whole));
    CHECK(Stream(*tokenizer, ids) == whole);

    // Continuing: earlier text that ends in a non-byte piece and is not
    // empty, then the rest streamed with continues_text.
    const size_t split =
        std::uniform_int_distribution<size_t>(0, ids.size())(rng);
    if (split == 0 ||
        tokenizer->IdToPiece(ids[split - 1])->rfind("<0x", 0) == 0) {
      continue;
    }
    const std::vector<int32_t> earlier(ids.begin(), ids.begin() + split);
    const std::vector<int32_t> later(ids.begin() + split, ids.end());
    const std::string earlier_text = MustDecode(*tokenizer, earlier);
    if (earlier_text.empty()) continue;
    CHECK(earlier_text + Stream(*tokenizer, later, /*continues_text=*/true) ==
          whole);
  }
}

TEST_CASE(
    "tokenizer: a character split over byte pieces is emitted only when its "
    "last byte arrives",
    "[tokenizer]") {
  std::unique_ptr<Tokenizer> tokenizer = LoadTestTokenizer();
  const std::vector<int32_t> ids =
      MustEncode(*tokenizer, "go \xF0\x9F\x9A\x80 now");
  StreamingDetokenizer detok(*tokenizer);
  std::vector<std::string> pieces;
  for (int32_t id : ids) pieces.push_back(*detok.Push(id));
  pieces.push_back(detok.Flush());
  // The rocket appears whole, at its last byte, and nowhere else.
  int rocket_at = -1;
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (pieces[i].find("\xF0\x9F\x9A\x80") != std::string::npos) {
      CHECK(rocket_at == -1);
      rocket_at = static_cast<int>(i);
    }
  }
  REQUIRE(rocket_at >= 0);
  CHECK(*tokenizer->IdToPiece(ids[rocket_at]) == "<0x80>");
  CHECK(pieces[rocket_at] == "\xF0\x9F\x9A\x80");
  for (int k = 1; k <= 3; ++k) CHECK(pieces[rocket_at - k].empty());
  std::string joined;
  for (const std::string& p : pieces) joined += p;
  CHECK(joined == "go \xF0\x9F\x9A\x80 now");
}

TEST_CASE(
    "tokenizer: the first word's leading space is dropped as Decode drops "
    "it, and kept when continuing earlier text",
    "[tokenizer]") {
  std::unique_ptr<Tokenizer> tokenizer = LoadTestTokenizer();
  const std::vector<int32_t> hello = MustEncode(*tokenizer, "the token");
  // "▁the" first: no space in front, as in Decode.
  CHECK(Stream(*tokenizer, hello) == "the token");
  // Leading whitespace-only pieces and control pieces before the first word.
  const int32_t space = MustPieceToId(*tokenizer, "\xE2\x96\x81");
  std::vector<int32_t> spaced = {1, space, space};
  spaced.insert(spaced.end(), hello.begin(), hello.end());
  CHECK(Stream(*tokenizer, spaced) == MustDecode(*tokenizer, spaced));

  // A new turn after text that was already sent: the space stays.
  const std::vector<int32_t> earlier = MustEncode(*tokenizer, "Hello");
  CHECK(Stream(*tokenizer, hello, /*continues_text=*/true) == " the token");
  std::vector<int32_t> both = earlier;
  both.insert(both.end(), hello.begin(), hello.end());
  CHECK(MustDecode(*tokenizer, earlier) +
            Stream(*tokenizer, hello, /*continues_text=*/true) ==
        MustDecode(*tokenizer, both));
}

TEST_CASE(
    "tokenizer: Flush turns an unfinished byte sequence into U+FFFD per "
    "byte, as Decode does",
    "[tokenizer]") {
  std::unique_ptr<Tokenizer> tokenizer = LoadTestTokenizer();
  const std::vector<int32_t> ids = {
      MustPieceToId(*tokenizer, "\xE2\x96\x81the"),
      MustPieceToId(*tokenizer, "<0xE2>"), MustPieceToId(*tokenizer, "<0x82>")};
  StreamingDetokenizer detok(*tokenizer);
  CHECK(*detok.Push(ids[0]) == "the");
  CHECK(detok.Push(ids[1])->empty());
  CHECK(detok.Push(ids[2])->empty());
  const std::string rest = detok.Flush();
  CHECK(rest == "\xEF\xBF\xBD\xEF\xBF\xBD");
  CHECK("the" + rest == MustDecode(*tokenizer, ids));
  CHECK(detok.Flush().empty());
}

TEST_CASE(
    "tokenizer: Push refuses an id outside the vocabulary and the stream "
    "goes on unchanged",
    "[tokenizer]") {
  std::unique_ptr<Tokenizer> tokenizer = LoadTestTokenizer();
  const std::vector<int32_t> ids =
      MustEncode(*tokenizer, "caf\xC3\xA9 \xF0\x9F\x98\x80");
  StreamingDetokenizer detok(*tokenizer);
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    absl::StatusOr<std::string> refused = detok.Push(i % 2 == 0 ? 400 : -3);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.status().code() == absl::StatusCode::kInvalidArgument);
    out += *detok.Push(ids[i]);
  }
  out += detok.Flush();
  CHECK(out == "caf\xC3\xA9 \xF0\x9F\x98\x80");
}

}  // namespace
}  // namespace linserve::engine
