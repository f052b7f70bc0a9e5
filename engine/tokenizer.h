// The SentencePiece tokenizer of a model directory (tokenizer.model), and a
// streaming detokenizer that turns generated ids into text as they arrive.
//
// BOS and EOS ids come from the model's config.json (fla configs define
// them), not from the SentencePiece model: build TokenizerOptions with
// TokenizerOptionsFromConfig. A Tokenizer is immutable after Load and safe
// to share between threads; a StreamingDetokenizer is one generation
// stream's state (one thread at a time) and refers to its Tokenizer, which
// must outlive it.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
//                    LoadTokenizerIfPresent(dir, TokenizerOptionsFromConfig(
//                                                    model->config())));
//   if (tokenizer == nullptr) { /* ids only: text requests are refused */ }
//   ASSIGN_OR_RETURN(std::vector<int32_t> prompt,
//                    tokenizer->Encode(text, /*add_bos=*/true));
//   StreamingDetokenizer detok(*tokenizer);
//   for (int32_t id : generated) {
//     ASSIGN_OR_RETURN(std::string piece, detok.Push(id));
//     Send(piece);  // complete UTF-8, possibly empty
//   }
//   Send(detok.Flush());
#ifndef LINSERVE_ENGINE_TOKENIZER_H_
#define LINSERVE_ENGINE_TOKENIZER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/model_config.h"

namespace linserve::engine {

class SentencePieceModel;

// The file name a model directory's tokenizer has.
inline constexpr char kTokenizerFileName[] = "tokenizer.model";

struct TokenizerOptions {
  // Prepended by Encode(text, /*add_bos=*/true). Unset: add_bos is refused.
  std::optional<int32_t> bos_id;
  // Ids that end generation (IsEos). May be empty.
  std::vector<int32_t> eos_ids;
};

// bos_token_id and eos_token_id(s) of config.json.
TokenizerOptions TokenizerOptionsFromConfig(const ModelConfig& config);

class Tokenizer {
 public:
  // Reads a SentencePiece model file. NotFound naming the path when it does
  // not exist; InvalidArgument naming the path when it is not a SentencePiece
  // model, or when a BOS/EOS id of `options` is outside the vocabulary.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(
      const std::string& path, const TokenizerOptions& options = {});

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Number of pieces; valid ids are [0, vocab_size()). A model's vocab_size
  // may be larger (padded): ids past the tokenizer's are not text.
  int32_t vocab_size() const { return vocab_size_; }
  const TokenizerOptions& options() const { return options_; }
  bool IsEos(int32_t id) const;

  // Text (UTF-8; InvalidArgument otherwise) to ids, with options().bos_id
  // first when add_bos (FailedPrecondition when no BOS id is configured).
  // SentencePiece's add_dummy_prefix applies: "Hello" encodes as "▁Hello".
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              bool add_bos) const;

  // Ids to text exactly as SentencePiece decodes them: control pieces (BOS,
  // EOS) are empty, the first piece's leading "▁" is dropped, runs of byte
  // pieces become UTF-8 (U+FFFD for each byte that forms no character).
  // InvalidArgument naming the id and the vocabulary size for an id outside
  // [0, vocab_size()).
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const;

  // The piece of an id ("▁the", "<0xE2>", "<s>"); InvalidArgument out of
  // range.
  absl::StatusOr<std::string> IdToPiece(int32_t id) const;
  // The id of a piece; nullopt when the vocabulary has no such piece.
  std::optional<int32_t> PieceToId(std::string_view piece) const;

 private:
  friend class StreamingDetokenizer;

  Tokenizer();
  absl::Status CheckIds(absl::Span<const int32_t> ids) const;
  // Decode without validation (ids must be in range).
  absl::StatusOr<std::string> DecodeValid(const std::vector<int>& ids) const;

  std::unique_ptr<SentencePieceModel> model_;
  TokenizerOptions options_;
  int32_t vocab_size_ = 0;
  // byte_value_[id]: the byte of a byte-fallback piece <0xNN>, else -1.
  std::vector<int16_t> byte_value_;
  // A plain piece whose text is the same wherever it stands (-1 if none):
  // the streaming detokenizer decodes new ids behind it so that they decode
  // as they would in the middle of the text.
  int anchor_id_ = -1;
  std::string anchor_text_;
};

// model_dir/tokenizer.model if the file exists, else null (not an error):
// such a model is served with token ids only, and a request carrying text is
// refused with FailedPrecondition ("model has no tokenizer.model; send token
// ids"). Errors of a present but unreadable file are Load's.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerIfPresent(
    const std::string& model_dir, const TokenizerOptions& options = {});

// Generated ids to text, safe to stream: Push returns the text that the new
// id completes, and only complete UTF-8 (byte-fallback pieces of a
// multi-byte character are held until the character is complete, at most 3
// ids). The concatenation of every Push and the final Flush equals
// tokenizer.Decode(all ids) exactly, the first word's leading space dropped
// as Decode drops it. O(1) amortized per id: after text has been emitted,
// only the held ids (at most 3 byte pieces and the new id) are decoded.
//
// Continuing a session whose earlier text was already sent (a new chat
// turn, generation after a prompt): construct with continues_text = true.
// The first id then decodes as it would in the middle of the text (its
// leading space kept), i.e. the output equals Decode(earlier + new) minus
// Decode(earlier) whenever Decode(earlier) is non-empty and does not end in
// an unfinished byte sequence. With continues_text = false (the default) the
// output is Decode(new ids) alone.
class StreamingDetokenizer {
 public:
  explicit StreamingDetokenizer(const Tokenizer& tokenizer,
                                bool continues_text = false);

  // The text `id` completes (possibly empty). InvalidArgument for an id
  // outside the tokenizer's vocabulary; the stream is then unchanged.
  absl::StatusOr<std::string> Push(int32_t id);

  // The text still held: an unfinished byte sequence at the end becomes
  // U+FFFD per byte, as Decode does. Call once, when the stream ends; ids
  // pushed after a Flush continue as a new piece of text (the held bytes no
  // longer join them).
  std::string Flush();

 private:
  // True while the held ids end in the first bytes of a UTF-8 character.
  bool EndsInUnfinishedCharacter() const;
  // Decodes the held ids, behind the anchor once text has been emitted.
  absl::StatusOr<std::string> DecodeHeld() const;

  const Tokenizer* tokenizer_;
  // Set once the text so far is non-empty: later ids decode behind the
  // anchor, and the held ids are only those after the last emission.
  bool anchored_;
  std::vector<int32_t> held_;
  // Only for a tokenizer without an anchor piece, which holds every id: the
  // bytes of their decode already returned.
  size_t emitted_bytes_ = 0;
};

}  // namespace linserve::engine

#endif  // LINSERVE_ENGINE_TOKENIZER_H_
