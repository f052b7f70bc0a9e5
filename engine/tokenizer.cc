// Tokenizer and StreamingDetokenizer (tokenizer.h). SentencePiece itself is
// reached through SentencePieceModel, whose .cc is the only one that includes
// sentencepiece's header.
#include "engine/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/sentencepiece_model.h"

namespace linserve::engine {
namespace {

// Offset of the first byte that is not part of well-formed UTF-8, or npos.
size_t FirstInvalidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    int n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 4;
      cp = c & 0x07;
    } else {
      return i;
    }
    if (i + n > s.size()) return i;
    for (int k = 1; k < n; ++k) {
      const unsigned char t = s[i + k];
      if ((t & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (t & 0x3F);
    }
    const uint32_t min_cp = n == 2 ? 0x80 : n == 3 ? 0x800 : 0x10000;
    if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return i;
    }
    i += n;
  }
  return std::string_view::npos;
}

// Bytes a UTF-8 sequence starting with `lead` has; 1 for a byte that starts
// no multi-byte sequence (ASCII, or a byte no valid sequence starts with).
int Utf8SequenceLength(unsigned char lead) {
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 1;
}

bool IsUtf8Continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

// The byte of a byte-fallback piece "<0xNN>", or -1.
int ParseBytePiece(const std::string& piece) {
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') {
    return -1;
  }
  int value = 0;
  for (int k = 3; k < 5; ++k) {
    const char c = piece[k];
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return -1;
    }
    value = value * 16 + digit;
  }
  return value;
}

int32_t ToId(int64_t id) {
  if (id < std::numeric_limits<int32_t>::min() ||
      id > std::numeric_limits<int32_t>::max()) {
    return -1;  // out of every vocabulary; Load reports it
  }
  return static_cast<int32_t>(id);
}

}  // namespace

TokenizerOptions TokenizerOptionsFromConfig(const ModelConfig& config) {
  TokenizerOptions options;
  if (config.bos_token_id.has_value()) {
    options.bos_id = ToId(*config.bos_token_id);
  }
  for (int64_t id : config.eos_token_ids) options.eos_ids.push_back(ToId(id));
  return options;
}

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(
    const std::string& path, const TokenizerOptions& options) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::NotFoundError(
        absl::StrCat("tokenizer model ", path, " not found"));
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("tokenizer model ", path, " cannot be read"));
  }
  std::string error;
  std::unique_ptr<SentencePieceModel> model =
      SentencePieceModel::FromSerialized(bytes.str(), &error);
  if (model == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer model ", path, " is not a SentencePiece model: ", error));
  }

  std::unique_ptr<Tokenizer> tokenizer(new Tokenizer());
  tokenizer->vocab_size_ = model->size();
  tokenizer->options_ = options;
  const int32_t vocab = tokenizer->vocab_size_;
  auto check_special = [&](int32_t id, const char* what) -> absl::Status {
    if (id < 0 || id >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer model ", path, ": ", what, " id ", id,
                       " is outside its vocabulary of ", vocab, " pieces"));
    }
    return absl::OkStatus();
  };
  if (options.bos_id.has_value()) {
    RETURN_IF_ERROR(check_special(*options.bos_id, "BOS"));
  }
  for (int32_t id : options.eos_ids) RETURN_IF_ERROR(check_special(id, "EOS"));

  tokenizer->byte_value_.assign(vocab, -1);
  for (int id = 0; id < vocab; ++id) {
    if (model->IsByte(id)) {
      tokenizer->byte_value_[id] =
          static_cast<int16_t>(ParseBytePiece(model->IdToPiece(id)));
    }
  }
  tokenizer->model_ = std::move(model);

  // The anchor: the first plain piece with a non-empty text. One without a
  // leading "▁" is preferred (its text cannot depend on its position).
  for (int pass = 0; pass < 2 && tokenizer->anchor_id_ < 0; ++pass) {
    const SentencePieceModel& m = *tokenizer->model_;
    for (int id = 0; id < vocab; ++id) {
      if (m.IsControl(id) || m.IsUnknown(id) || m.IsUnused(id) ||
          m.IsByte(id)) {
        continue;
      }
      if (pass == 0 && m.IdToPiece(id).rfind("\xE2\x96\x81", 0) == 0) continue;
      absl::StatusOr<std::string> text = tokenizer->DecodeValid({id});
      if (text.ok() && !text->empty()) {
        tokenizer->anchor_id_ = id;
        tokenizer->anchor_text_ = *std::move(text);
        break;
      }
    }
  }
  return tokenizer;
}

bool Tokenizer::IsEos(int32_t id) const {
  return std::find(options_.eos_ids.begin(), options_.eos_ids.end(), id) !=
         options_.eos_ids.end();
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text,
                                                       bool add_bos) const {
  if (add_bos && !options_.bos_id.has_value()) {
    return absl::FailedPreconditionError(
        "cannot add BOS: the model's config.json defines no bos_token_id");
  }
  const size_t bad = FirstInvalidUtf8(text);
  if (bad != std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("text is not valid UTF-8 (byte ", bad, ")"));
  }
  std::vector<int> pieces;
  std::string error;
  if (!model_->Encode(text, &pieces, &error)) {
    return absl::InternalError(absl::StrCat("SentencePiece encode: ", error));
  }
  std::vector<int32_t> ids;
  ids.reserve(pieces.size() + 1);
  if (add_bos) ids.push_back(*options_.bos_id);
  ids.insert(ids.end(), pieces.begin(), pieces.end());
  return ids;
}

absl::Status Tokenizer::CheckIds(absl::Span<const int32_t> ids) const {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token id ", ids[i], " (position ", i,
          ") is outside the tokenizer's vocabulary [0, ", vocab_size_, ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Tokenizer::DecodeValid(
    const std::vector<int>& ids) const {
  std::string text, error;
  if (!model_->Decode(ids, &text, &error)) {
    return absl::InternalError(absl::StrCat("SentencePiece decode: ", error));
  }
  return text;
}

absl::StatusOr<std::string> Tokenizer::Decode(
    absl::Span<const int32_t> ids) const {
  RETURN_IF_ERROR(CheckIds(ids));
  return DecodeValid(std::vector<int>(ids.begin(), ids.end()));
}

absl::StatusOr<std::string> Tokenizer::IdToPiece(int32_t id) const {
  RETURN_IF_ERROR(CheckIds({id}));
  return model_->IdToPiece(id);
}

std::optional<int32_t> Tokenizer::PieceToId(std::string_view piece) const {
  const int id = model_->PieceToId(piece);
  if (id < 0) return std::nullopt;
  return id;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerIfPresent(
    const std::string& model_dir, const TokenizerOptions& options) {
  const std::filesystem::path path =
      std::filesystem::path(model_dir) / kTokenizerFileName;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return nullptr;
  return Tokenizer::Load(path.string(), options);
}

// Why decoding only the held ids is exact: SentencePiece gives each piece a
// text that depends only on the piece and on whether any text precedes it
// (the first piece loses its leading "▁"), except for byte pieces, which are
// decoded as UTF-8 per run of consecutive bytes. Ids are released only when
// they do not end in an unfinished character, so a later byte never changes
// how an earlier one decodes; and once text has been emitted, decoding the
// held ids behind the anchor (a plain piece with fixed, non-empty text)
// reproduces "some text precedes". Before any text, every id since the start
// is held and decoded from the beginning, as Decode does.
StreamingDetokenizer::StreamingDetokenizer(const Tokenizer& tokenizer,
                                           bool continues_text)
    : tokenizer_(&tokenizer),
      anchored_(continues_text && tokenizer.anchor_id_ >= 0) {}

bool StreamingDetokenizer::EndsInUnfinishedCharacter() const {
  // Look back over the last (at most 3) byte pieces for the lead byte of a
  // sequence that still lacks continuation bytes.
  int seen = 0;
  for (auto it = held_.rbegin(); it != held_.rend() && seen < 3; ++it) {
    const int byte = tokenizer_->byte_value_[*it];
    if (byte < 0) return false;  // a non-byte piece ends the run
    ++seen;
    const unsigned char c = static_cast<unsigned char>(byte);
    if (IsUtf8Continuation(c)) continue;
    return seen < Utf8SequenceLength(c);
  }
  return false;
}

absl::StatusOr<std::string> StreamingDetokenizer::DecodeHeld() const {
  std::vector<int> ids;
  ids.reserve(held_.size() + 1);
  if (anchored_) ids.push_back(tokenizer_->anchor_id_);
  ids.insert(ids.end(), held_.begin(), held_.end());
  ASSIGN_OR_RETURN(std::string text, tokenizer_->DecodeValid(ids));
  if (!anchored_) return text;
  const std::string& anchor = tokenizer_->anchor_text_;
  if (text.compare(0, anchor.size(), anchor) != 0) {
    return absl::InternalError("streaming detokenizer: anchor text changed");
  }
  return text.substr(anchor.size());
}

absl::StatusOr<std::string> StreamingDetokenizer::Push(int32_t id) {
  RETURN_IF_ERROR(tokenizer_->CheckIds({id}));
  held_.push_back(id);
  if (EndsInUnfinishedCharacter()) return std::string();
  absl::StatusOr<std::string> text = DecodeHeld();
  if (!text.ok()) {
    held_.pop_back();
    return text.status();
  }
  if (text->empty() && !anchored_) return std::string();  // keep the start
  if (tokenizer_->anchor_id_ < 0) {
    // No anchor (a vocabulary of control and byte pieces only): keep every
    // id and emit the new suffix of the whole decode.
    std::string fresh = text->substr(emitted_bytes_);
    emitted_bytes_ = text->size();
    return fresh;
  }
  held_.clear();
  anchored_ = true;
  return *std::move(text);
}

std::string StreamingDetokenizer::Flush() {
  if (held_.empty()) return std::string();
  absl::StatusOr<std::string> text = DecodeHeld();
  std::string fresh;
  if (text.ok()) {
    fresh = tokenizer_->anchor_id_ < 0 ? text->substr(emitted_bytes_)
                                       : *std::move(text);
  }
  held_.clear();
  emitted_bytes_ = 0;
  anchored_ = tokenizer_->anchor_id_ >= 0 && (anchored_ || !fresh.empty());
  return fresh;
}

}  // namespace linserve::engine
