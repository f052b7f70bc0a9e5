// Memory-mapped reading of safetensors checkpoints: `model.safetensors`, or
// the shards of `model.safetensors.index.json`. Each file is mapped read-only
// and fully validated at Open; errors name file, tensor, expected vs found.
// No data is copied: TensorView::data points into mappings the reader owns
// (valid while it lives; files must not be truncated meanwhile: SIGBUS).
// Find is const; Require/MarkUsed mutate the used-set (one loader thread).
//
//   ASSIGN_OR_RETURN(auto ckpt, CheckpointReader::Open("/models/gla-340m"));
//   ASSIGN_OR_RETURN(TensorView w, ckpt->Require("lm_head.weight", {V, D}));
//   for (const std::string& name : ckpt->UnusedNames()) { ...extra... }
#ifndef LINSERVE_ENGINE_SAFETENSORS_H_
#define LINSERVE_ENGINE_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/dtype.h"

namespace linserve::engine {

// One tensor of a checkpoint, pointing into a file mapping. `data` has the
// alignment the file gives it (8 bytes from HF writers, not guaranteed):
// memcpy rather than dereference typed pointers on it.
struct TensorView {
  std::string name;
  kernels::DType dtype = kernels::DType::kFloat32;
  std::vector<int64_t> shape;  // [] is a scalar (one element).
  const void* data = nullptr;
  int64_t bytes = 0;  // == numel() * DTypeSize(dtype)

  int64_t numel() const;
};

// "[2048, 512]" (and "[]" for a scalar).
std::string ShapeString(absl::Span<const int64_t> shape);

// The largest JSON header accepted (the safetensors library's own limit).
inline constexpr int64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// One validated, mapped safetensors file.
class SafetensorsFile {
 public:
  // Errors: NotFound (no such file), PermissionDenied, InvalidArgument for any
  // problem with the file's contents (truncation included).
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(
      const std::string& path);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // In the order of their data offsets.
  const std::vector<TensorView>& tensors() const { return tensors_; }
  // The header's "__metadata__" (string to string), empty if absent.
  const std::map<std::string, std::string>& metadata() const {
    return metadata_;
  }

 private:
  SafetensorsFile() = default;
  absl::Status ParseHeader();

  std::string path_;
  void* mapping_ = nullptr;  // munmap'ed by the destructor.
  int64_t file_bytes_ = 0;
  std::vector<TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// The tensors of a whole checkpoint (all shards merged), by name. Tracks
// which tensors the loader has used, so it can report the ones it did not.
class CheckpointReader {
 public:
  static constexpr char kSingleFileName[] = "model.safetensors";
  static constexpr char kIndexFileName[] = "model.safetensors.index.json";

  // Opens `model_dir`/model.safetensors if it exists, otherwise the shards
  // listed in `model_dir`/model.safetensors.index.json (the order
  // transformers uses). Every tensor the index names must be in the shard it
  // names; a tensor name in two shards is an error; tensors a shard holds
  // beyond the index are kept (and so reported by UnusedNames).
  static absl::StatusOr<std::unique_ptr<CheckpointReader>> Open(
      const std::string& model_dir);

  // Opens exactly these safetensors files as one checkpoint.
  static absl::StatusOr<std::unique_ptr<CheckpointReader>> OpenFiles(
      const std::vector<std::string>& paths);

  // The tensor, if present. Does not mark it used.
  std::optional<TensorView> Find(std::string_view name) const;

  // The tensor, marked used. NotFound if absent; InvalidArgument naming the
  // tensor, its file, and "expected [a, b], found [c, d]" if its shape
  // differs.
  absl::StatusOr<TensorView> Require(std::string_view name,
                                     absl::Span<const int64_t> expected_shape);

  // Marks a tensor used (e.g. a legacy tensor the loader ignores on purpose).
  // Returns false if there is no such tensor.
  bool MarkUsed(std::string_view name);

  // Every tensor name, sorted.
  std::vector<std::string> names() const;
  // The names not yet marked used, sorted: "unexpected extra tensors".
  std::vector<std::string> UnusedNames() const;

  // The file that holds `name` (for messages); empty if absent.
  std::string FileOf(std::string_view name) const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const {
    return files_;
  }
  // Where the tensors come from: the directory or the file list, for
  // messages.
  const std::string& description() const { return description_; }

 private:
  struct Entry {
    const TensorView* view;
    const SafetensorsFile* file;
    bool used = false;
  };

  CheckpointReader() = default;
  absl::Status AddFile(std::unique_ptr<SafetensorsFile> file);

  std::string description_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Entry, std::less<>> entries_;
};

}  // namespace linserve::engine

#endif  // LINSERVE_ENGINE_SAFETENSORS_H_
