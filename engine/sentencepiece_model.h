// A thin wrapper of sentencepiece::SentencePieceProcessor with a std-only
// interface, used by tokenizer.cc and nothing else. It exists because
// sentencepiece's header declares `absl::string_view` as std::string_view,
// which clashes with Debian's Abseil (whose absl::string_view is its own
// class): sentencepiece headers are included in sentencepiece_model.cc only,
// which includes no Abseil header. Errors are returned as strings; the caller
// turns them into absl::Status. Immutable after loading; the const methods
// are safe to call from several threads.
#ifndef LINSERVE_ENGINE_SENTENCEPIECE_MODEL_H_
#define LINSERVE_ENGINE_SENTENCEPIECE_MODEL_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}  // namespace sentencepiece

namespace linserve::engine {

class SentencePieceModel {
 public:
  // Parses a serialized ModelProto (the bytes of a tokenizer.model). Returns
  // null and sets *error when they are not a valid SentencePiece model.
  static std::unique_ptr<SentencePieceModel> FromSerialized(
      std::string_view bytes, std::string* error);

  ~SentencePieceModel();
  SentencePieceModel(const SentencePieceModel&) = delete;
  SentencePieceModel& operator=(const SentencePieceModel&) = delete;

  int size() const;
  // The ids must be in [0, size()): callers validate them.
  const std::string& IdToPiece(int id) const;
  // -1 when `piece` is not in the vocabulary.
  int PieceToId(std::string_view piece) const;
  bool IsControl(int id) const;
  bool IsUnknown(int id) const;
  bool IsUnused(int id) const;
  bool IsByte(int id) const;

  // SentencePiece's own Encode and Decode. False and *error on failure.
  bool Encode(std::string_view text, std::vector<int>* ids,
              std::string* error) const;
  bool Decode(const std::vector<int>& ids, std::string* text,
              std::string* error) const;

 private:
  SentencePieceModel();
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
};

}  // namespace linserve::engine

#endif  // LINSERVE_ENGINE_SENTENCEPIECE_MODEL_H_
