// SentencePieceModel: the one translation unit that includes sentencepiece's
// header (see sentencepiece_model.h for why). Includes no Abseil header.
#include "engine/sentencepiece_model.h"

#include <sentencepiece_processor.h>

namespace linserve::engine {

SentencePieceModel::SentencePieceModel()
    : processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {}

SentencePieceModel::~SentencePieceModel() = default;

std::unique_ptr<SentencePieceModel> SentencePieceModel::FromSerialized(
    std::string_view bytes, std::string* error) {
  std::unique_ptr<SentencePieceModel> model(new SentencePieceModel());
  const sentencepiece::util::Status status =
      model->processor_->LoadFromSerializedProto(bytes);
  if (!status.ok()) {
    *error = status.ToString();
    return nullptr;
  }
  if (model->processor_->GetPieceSize() <= 0) {
    *error = "the model has an empty vocabulary";
    return nullptr;
  }
  return model;
}

int SentencePieceModel::size() const { return processor_->GetPieceSize(); }

const std::string& SentencePieceModel::IdToPiece(int id) const {
  return processor_->IdToPiece(id);
}

int SentencePieceModel::PieceToId(std::string_view piece) const {
  const int id = processor_->PieceToId(piece);
  // PieceToId answers unk_id for a piece it does not know.
  if (processor_->IsUnknown(id) && processor_->IdToPiece(id) != piece) {
    return -1;
  }
  return id;
}

bool SentencePieceModel::IsControl(int id) const {
  return processor_->IsControl(id);
}
bool SentencePieceModel::IsUnknown(int id) const {
  return processor_->IsUnknown(id);
}
bool SentencePieceModel::IsUnused(int id) const {
  return processor_->IsUnused(id);
}
bool SentencePieceModel::IsByte(int id) const { return processor_->IsByte(id); }

bool SentencePieceModel::Encode(std::string_view text, std::vector<int>* ids,
                                std::string* error) const {
  const sentencepiece::util::Status status = processor_->Encode(text, ids);
  if (!status.ok()) {
    *error = status.ToString();
    return false;
  }
  return true;
}

bool SentencePieceModel::Decode(const std::vector<int>& ids, std::string* text,
                                std::string* error) const {
  const sentencepiece::util::Status status = processor_->Decode(ids, text);
  if (!status.ok()) {
    *error = status.ToString();
    return false;
  }
  return true;
}

}  // namespace linserve::engine
