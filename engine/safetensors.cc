#include "engine/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace linserve::engine {
namespace {

using json = nlohmann::json;

absl::Status ErrnoError(int err, const std::string& what) {
  const std::string message = absl::StrCat(what, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    default:
      return absl::InternalError(message);
  }
}

// Short description of a JSON value's type, for "expected X, found Y".
std::string JsonTypeName(const json& v) {
  if (v.is_number_integer()) return "integer";
  if (v.is_number_float()) return "float";
  return v.type_name();
}

std::optional<kernels::DType> ParseDType(const std::string& s) {
  if (s == "F32") return kernels::DType::kFloat32;
  if (s == "BF16") return kernels::DType::kBfloat16;
  if (s == "F16") return kernels::DType::kFloat16;
  return std::nullopt;
}

// A non-negative JSON integer that fits in int64.
bool AsNonNegativeInt(const json& v, int64_t* out) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return false;
    }
    *out = static_cast<int64_t>(u);
    return true;
  }
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i < 0) return false;
    *out = i;
    return true;
  }
  return false;
}

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ShapeString(absl::Span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// ---------------------------------------------------------------------------
// SafetensorsFile

SafetensorsFile::~SafetensorsFile() {
  if (mapping_ != nullptr) munmap(mapping_, static_cast<size_t>(file_bytes_));
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(
    const std::string& path) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;

  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, absl::StrCat("cannot open ", path));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return ErrnoError(err, absl::StrCat("cannot stat ", path));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a regular file"));
  }
  if (st.st_size < 8) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": file is ", st.st_size,
                     " bytes, too short for the 8-byte header length (a "
                     "truncated or empty safetensors file)"));
  }
  void* mapping = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ,
                         MAP_PRIVATE, fd, 0);
  const int mmap_err = errno;
  ::close(fd);  // The mapping keeps the file alive.
  if (mapping == MAP_FAILED) {
    return ErrnoError(mmap_err, absl::StrCat("cannot mmap ", path));
  }
  file->mapping_ = mapping;
  file->file_bytes_ = st.st_size;
  RETURN_IF_ERROR(file->ParseHeader());
  return file;
}

absl::Status SafetensorsFile::ParseHeader() {
  const auto* base = static_cast<const unsigned char*>(mapping_);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];

  const auto error = [&](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": ", parts...));
  };

  if (header_len > static_cast<uint64_t>(kMaxSafetensorsHeaderBytes)) {
    return error("header length ", header_len, " exceeds the limit of ",
                 kMaxSafetensorsHeaderBytes,
                 " bytes (not a safetensors file, or a corrupt one)");
  }
  const int64_t header_bytes = static_cast<int64_t>(header_len);
  if (header_bytes > file_bytes_ - 8) {
    return error("header length ", header_bytes,
                 " runs past the end of the file (file is ", file_bytes_,
                 " bytes, so at most ", file_bytes_ - 8,
                 " header bytes): truncated file");
  }
  const char* header_begin = reinterpret_cast<const char*>(base + 8);
  const unsigned char* data_begin = base + 8 + header_bytes;
  const int64_t data_bytes = file_bytes_ - 8 - header_bytes;

  json header;
  try {
    header = json::parse(header_begin, header_begin + header_bytes);
  } catch (const json::exception& e) {
    return error("header (", header_bytes,
                 " bytes) is not valid JSON: ", e.what());
  }
  if (!header.is_object()) {
    return error("header must be a JSON object, found ", JsonTypeName(header));
  }

  // Byte ranges [begin, end) within the data section, for the overlap check.
  struct Range {
    int64_t begin, end;
    size_t tensor;
  };
  std::vector<Range> ranges;

  try {
    for (const auto& [name, info] : header.items()) {
      if (name == "__metadata__") {
        if (!info.is_object()) {
          return error("\"__metadata__\" must be a JSON object, found ",
                       JsonTypeName(info));
        }
        for (const auto& [key, value] : info.items()) {
          if (!value.is_string()) {
            return error("\"__metadata__\" entry \"", key,
                         "\" must be a string, found ", JsonTypeName(value));
          }
          metadata_[key] = value.get<std::string>();
        }
        continue;
      }
      const auto terror = [&](auto&&... parts) {
        return error("tensor \"", name, "\": ", parts...);
      };
      if (!info.is_object()) {
        return terror("entry must be a JSON object, found ",
                      JsonTypeName(info));
      }
      for (const char* key : {"dtype", "shape", "data_offsets"}) {
        if (!info.contains(key)) return terror("missing \"", key, "\"");
      }

      const json& jdtype = info["dtype"];
      if (!jdtype.is_string()) {
        return terror("\"dtype\" must be a string, found ",
                      JsonTypeName(jdtype));
      }
      const std::string dtype_name = jdtype.get<std::string>();
      const std::optional<kernels::DType> dtype = ParseDType(dtype_name);
      if (!dtype) {
        return terror("unsupported dtype \"", dtype_name,
                      "\" (supported: F32, BF16, F16)");
      }

      const json& jshape = info["shape"];
      if (!jshape.is_array()) {
        return terror("\"shape\" must be an array, found ",
                      JsonTypeName(jshape));
      }
      TensorView view;
      view.name = name;
      view.dtype = *dtype;
      // numel and its byte size, with overflow caught.
      int64_t numel = 1;
      bool overflow = false, has_zero = false;
      for (const json& jdim : jshape) {
        int64_t dim = 0;
        if (!AsNonNegativeInt(jdim, &dim)) {
          return terror("\"shape\" ", jshape.dump(),
                        " must hold non-negative integers");
        }
        view.shape.push_back(dim);
        has_zero = has_zero || dim == 0;
        overflow = overflow || __builtin_mul_overflow(numel, dim, &numel);
      }
      int64_t expected_bytes = 0;
      overflow =
          overflow || __builtin_mul_overflow(numel, kernels::DTypeSize(*dtype),
                                             &expected_bytes);
      if (has_zero) {
        overflow = false;
        expected_bytes = 0;
      }

      const json& joffsets = info["data_offsets"];
      int64_t begin = 0, end = 0;
      if (!joffsets.is_array() || joffsets.size() != 2 ||
          !AsNonNegativeInt(joffsets[0], &begin) ||
          !AsNonNegativeInt(joffsets[1], &end)) {
        return terror(
            "\"data_offsets\" must be [begin, end] of "
            "non-negative integers, found ",
            joffsets.dump());
      }
      if (begin > end) {
        return terror("data_offsets [", begin, ", ", end, "] has begin > end");
      }
      if (end > data_bytes) {
        return terror("data_offsets [", begin, ", ", end,
                      "] run past the end of the data section (", data_bytes,
                      " bytes after the header): truncated file");
      }
      if (overflow || expected_bytes != end - begin) {
        return terror("data_offsets [", begin, ", ", end, "] hold ",
                      end - begin, " bytes, expected ",
                      overflow ? std::string("more than 2^63")
                               : absl::StrCat(expected_bytes),
                      " for shape ", ShapeString(view.shape), " of ",
                      dtype_name);
      }
      view.data = data_begin + begin;
      view.bytes = end - begin;
      ranges.push_back({begin, end, tensors_.size()});
      tensors_.push_back(std::move(view));
    }
  } catch (const json::exception& e) {
    // Not expected after the type checks above; a guard, not a path.
    return error("malformed header: ", e.what());
  }

  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const Range* previous = nullptr;
  for (const Range& r : ranges) {
    if (r.begin == r.end) continue;  // empty tensors occupy no bytes
    if (previous != nullptr && r.begin < previous->end) {
      return error("tensors \"", tensors_[previous->tensor].name, "\" [",
                   previous->begin, ", ", previous->end, ") and \"",
                   tensors_[r.tensor].name, "\" [", r.begin, ", ", r.end,
                   ") overlap in the data section");
    }
    previous = &r;
  }

  // Data-offset order: the order the bytes lie in the file.
  std::vector<TensorView> ordered;
  ordered.reserve(tensors_.size());
  for (const Range& r : ranges)
    ordered.push_back(std::move(tensors_[r.tensor]));
  tensors_ = std::move(ordered);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// CheckpointReader

absl::Status CheckpointReader::AddFile(std::unique_ptr<SafetensorsFile> file) {
  for (const TensorView& view : file->tensors()) {
    auto [it, inserted] =
        entries_.emplace(view.name, Entry{&view, file.get(), false});
    if (!inserted) {
      return absl::InvalidArgumentError(
          absl::StrCat(description_, ": tensor \"", view.name, "\" is in both ",
                       it->second.file->path(), " and ", file->path()));
    }
  }
  files_.push_back(std::move(file));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CheckpointReader>> CheckpointReader::OpenFiles(
    const std::vector<std::string>& paths) {
  std::unique_ptr<CheckpointReader> reader(new CheckpointReader());
  reader->description_ = absl::StrJoin(paths, ", ");
  for (const std::string& path : paths) {
    ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                     SafetensorsFile::Open(path));
    RETURN_IF_ERROR(reader->AddFile(std::move(file)));
  }
  return reader;
}

absl::StatusOr<std::unique_ptr<CheckpointReader>> CheckpointReader::Open(
    const std::string& model_dir) {
  namespace fs = std::filesystem;
  const fs::path dir(model_dir);
  std::error_code ec;
  const fs::path single = dir / kSingleFileName;
  if (fs::exists(single, ec)) {
    ASSIGN_OR_RETURN(auto reader, OpenFiles({single.string()}));
    reader->description_ = single.string();
    return reader;
  }
  const fs::path index_path = dir / kIndexFileName;
  if (!fs::exists(index_path, ec)) {
    return absl::NotFoundError(
        absl::StrCat(model_dir, ": no checkpoint: neither ", kSingleFileName,
                     " nor ", kIndexFileName, " exists"));
  }

  const std::string index_name = index_path.string();
  std::ifstream in(index_path, std::ios::binary);
  if (!in) return ErrnoError(errno, absl::StrCat("cannot open ", index_name));
  std::stringstream text;
  text << in.rdbuf();
  json index;
  try {
    index = json::parse(text.str());
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(index_name, ": not valid JSON: ", e.what()));
  }
  if (!index.is_object() || !index.contains("weight_map") ||
      !index["weight_map"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        index_name, ": expected a JSON object with a \"weight_map\" object"));
  }

  // Shards in first-mention order; each tensor's shard as the index says.
  std::vector<std::string> shards;
  std::map<std::string, std::string> shard_of;
  for (const auto& [name, value] : index["weight_map"].items()) {
    if (!value.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_name, ": weight_map[\"", name,
                       "\"] must be a shard file name (string), found ",
                       JsonTypeName(value)));
    }
    const std::string shard = value.get<std::string>();
    const fs::path shard_path(shard);
    if (shard.empty() || shard_path.is_absolute() ||
        std::find(shard_path.begin(), shard_path.end(), "..") !=
            shard_path.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          index_name, ": weight_map[\"", name, "\"] = \"", shard,
          "\" must be a file name inside the checkpoint directory"));
    }
    if (std::find(shards.begin(), shards.end(), shard) == shards.end()) {
      shards.push_back(shard);
    }
    shard_of[name] = shard;
  }

  std::unique_ptr<CheckpointReader> reader(new CheckpointReader());
  reader->description_ = index_name;
  for (const std::string& shard : shards) {
    const std::string path = (dir / shard).string();
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
        SafetensorsFile::Open(path);
    if (!file.ok()) {
      return absl::Status(
          file.status().code(),
          absl::StrCat("shard \"", shard, "\" named by ", index_name, ": ",
                       file.status().message()));
    }
    RETURN_IF_ERROR(reader->AddFile(*std::move(file)));
  }
  for (const auto& [name, shard] : shard_of) {
    const std::string file = reader->FileOf(name);
    const std::string want = (dir / shard).string();
    if (file.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_name, ": tensor \"", name, "\" should be in ",
                       want, " but that shard has no such tensor"));
    }
    if (file != want) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_name, ": tensor \"", name, "\" should be in ",
                       want, " but is in ", file));
    }
  }
  return reader;
}

std::optional<TensorView> CheckpointReader::Find(std::string_view name) const {
  const auto it = entries_.find(name);
  if (it == entries_.end()) return std::nullopt;
  return *it->second.view;
}

absl::StatusOr<TensorView> CheckpointReader::Require(
    std::string_view name, absl::Span<const int64_t> expected_shape) {
  const auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat(
        description_, ": tensor \"", std::string(name),
        "\" is missing (expected shape ", ShapeString(expected_shape), ")"));
  }
  const TensorView& view = *it->second.view;
  if (!std::equal(view.shape.begin(), view.shape.end(), expected_shape.begin(),
                  expected_shape.end())) {
    return absl::InvalidArgumentError(absl::StrCat(
        it->second.file->path(), ": tensor \"", view.name,
        "\" has the wrong shape: expected ", ShapeString(expected_shape),
        " found ", ShapeString(view.shape)));
  }
  it->second.used = true;
  return view;
}

bool CheckpointReader::MarkUsed(std::string_view name) {
  const auto it = entries_.find(name);
  if (it == entries_.end()) return false;
  it->second.used = true;
  return true;
}

std::vector<std::string> CheckpointReader::names() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& [name, entry] : entries_) out.push_back(name);
  return out;
}

std::vector<std::string> CheckpointReader::UnusedNames() const {
  std::vector<std::string> out;
  for (const auto& [name, entry] : entries_) {
    if (!entry.used) out.push_back(name);
  }
  return out;
}

std::string CheckpointReader::FileOf(std::string_view name) const {
  const auto it = entries_.find(name);
  return it == entries_.end() ? std::string() : it->second.file->path();
}

}  // namespace linserve::engine
