// Test helpers that write safetensors checkpoints (valid ones, and raw bytes
// for broken ones) into a temporary directory removed at scope exit.
//
//   TempDir dir;
//   WriteSafetensors(dir.file("model.safetensors"),
//                    {F32Tensor("w", {2, 2}, {1, 2, 3, 4})});
#ifndef LINSERVE_TESTS_ENGINE_SAFETENSORS_WRITER_H_
#define LINSERVE_TESTS_ENGINE_SAFETENSORS_WRITER_H_

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace linserve::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents.
class TempDir {
 public:
  TempDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern =
        std::string(tmp != nullptr ? tmp : "/tmp") + "/linserve_test_XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) {
      throw std::runtime_error("mkdtemp failed");
    }
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// One tensor to write: safetensors dtype name, shape, raw little-endian bytes.
struct TestTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

inline TestTensor F32Tensor(const std::string& name, std::vector<int64_t> shape,
                            const std::vector<float>& values) {
  std::string bytes(values.size() * 4, '\0');
  if (!values.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  return {name, "F32", std::move(shape), std::move(bytes)};
}

// 16-bit tensors (BF16 or F16) from raw bit patterns.
inline TestTensor Bits16Tensor(const std::string& name,
                               const std::string& dtype,
                               std::vector<int64_t> shape,
                               const std::vector<uint16_t>& bits) {
  std::string bytes(bits.size() * 2, '\0');
  if (!bits.empty()) std::memcpy(bytes.data(), bits.data(), bytes.size());
  return {name, dtype, std::move(shape), std::move(bytes)};
}

// A zero-filled F32 tensor of the given shape.
inline TestTensor ZerosF32(const std::string& name,
                           std::vector<int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return {name, "F32", std::move(shape), std::string(n * 4, '\0')};
}

inline void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

// The 8-byte little-endian length, then the header, then the data.
inline std::string SafetensorsBytes(const std::string& header,
                                    const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

// The header JSON and data section of a valid file holding `tensors` in
// order, padded with spaces to a multiple of 8 bytes (as the HF writer does).
inline std::string ValidSafetensorsBytes(
    const std::vector<TestTensor>& tensors,
    const std::map<std::string, std::string>& metadata = {}) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string data;
  for (const TestTensor& t : tensors) {
    const size_t begin = data.size();
    data += t.bytes;
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {begin, data.size()}}};
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return SafetensorsBytes(text, data);
}

inline void WriteSafetensors(
    const std::string& path, const std::vector<TestTensor>& tensors,
    const std::map<std::string, std::string>& metadata = {}) {
  WriteBytes(path, ValidSafetensorsBytes(tensors, metadata));
}

// model.safetensors.index.json mapping each tensor name to its shard.
inline void WriteIndex(const std::string& path,
                       const std::map<std::string, std::string>& weight_map) {
  nlohmann::json index = {{"metadata", {{"total_size", 0}}},
                          {"weight_map", weight_map}};
  WriteBytes(path, index.dump(2));
}

}  // namespace linserve::testing

#endif  // LINSERVE_TESTS_ENGINE_SAFETENSORS_WRITER_H_
