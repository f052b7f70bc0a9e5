// Specification of engine/safetensors.h: valid checkpoints (single file and
// sharded) read back exactly; every kind of broken file is a precise error.
#include "engine/safetensors.h"

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "absl/status/status.h"
#include "tests/engine/safetensors_writer.h"

namespace linserve::engine {
namespace {

using Catch::Matchers::Contains;
using ::linserve::testing::Bits16Tensor;
using ::linserve::testing::F32Tensor;
using ::linserve::testing::SafetensorsBytes;
using ::linserve::testing::TempDir;
using ::linserve::testing::TestTensor;
using ::linserve::testing::ValidSafetensorsBytes;
using ::linserve::testing::WriteBytes;
using ::linserve::testing::WriteIndex;
using ::linserve::testing::WriteSafetensors;

std::string Message(const absl::Status& s) { return std::string(s.message()); }

// Opens a file holding exactly `bytes`; returns the status of the open.
absl::Status OpenBytes(const TempDir& dir, const std::string& bytes) {
  const std::string path = dir.file("model.safetensors");
  WriteBytes(path, bytes);
  return SafetensorsFile::Open(path).status();
}

// A header with one tensor entry given as raw JSON, and `data_bytes` zeros.
std::string OneTensorFile(const std::string& entry, size_t data_bytes) {
  return SafetensorsBytes("{\"w\":" + entry + "}", std::string(data_bytes, 0));
}

bool SameBytes(const TensorView& view, const std::string& bytes) {
  return view.bytes == static_cast<int64_t>(bytes.size()) &&
         std::memcmp(view.data, bytes.data(), bytes.size()) == 0;
}

TEST_CASE(
    "a single-file checkpoint reads back F32, BF16 and F16 tensors "
    "byte for byte, with shapes, dtypes and metadata") {
  TempDir dir;
  const TestTensor f32 = F32Tensor("a.weight", {2, 3}, {1, 2, 3, 4, 5, 6});
  // 1.0, -2.0 and 0.5 in bf16 and in f16.
  const TestTensor bf16 =
      Bits16Tensor("b.weight", "BF16", {3}, {0x3F80, 0xC000, 0x3F00});
  const TestTensor f16 =
      Bits16Tensor("c.weight", "F16", {1, 3}, {0x3C00, 0xC000, 0x3800});
  const TestTensor scalar = F32Tensor("scalar", {}, {7});
  const TestTensor empty = F32Tensor("empty", {0, 4}, {});
  WriteSafetensors(dir.file("model.safetensors"),
                   {f32, bf16, f16, scalar, empty}, {{"format", "pt"}});

  auto reader = CheckpointReader::Open(dir.path());
  REQUIRE(reader.ok());
  CHECK((*reader)->names() == std::vector<std::string>{"a.weight", "b.weight",
                                                       "c.weight", "empty",
                                                       "scalar"});

  auto a = (*reader)->Find("a.weight");
  REQUIRE(a.has_value());
  CHECK(a->name == "a.weight");
  CHECK(a->dtype == kernels::DType::kFloat32);
  CHECK(a->shape == std::vector<int64_t>{2, 3});
  CHECK(a->numel() == 6);
  CHECK(SameBytes(*a, f32.bytes));

  auto b = (*reader)->Find("b.weight");
  REQUIRE(b.has_value());
  CHECK(b->dtype == kernels::DType::kBfloat16);
  CHECK(SameBytes(*b, bf16.bytes));

  auto c = (*reader)->Find("c.weight");
  REQUIRE(c.has_value());
  CHECK(c->dtype == kernels::DType::kFloat16);
  CHECK(c->shape == std::vector<int64_t>{1, 3});
  CHECK(SameBytes(*c, f16.bytes));

  auto s = (*reader)->Find("scalar");
  REQUIRE(s.has_value());
  CHECK(s->shape.empty());
  CHECK(s->numel() == 1);
  CHECK(SameBytes(*s, scalar.bytes));

  auto e = (*reader)->Find("empty");
  REQUIRE(e.has_value());
  CHECK(e->numel() == 0);
  CHECK(e->bytes == 0);

  CHECK_FALSE((*reader)->Find("nope").has_value());
  REQUIRE((*reader)->files().size() == 1);
  CHECK((*reader)->files()[0]->metadata().at("format") == "pt");
}

TEST_CASE(
    "tensor data points into the mapping: views of one file are laid "
    "out in data-offset order after the header") {
  TempDir dir;
  WriteSafetensors(dir.file("model.safetensors"),
                   {F32Tensor("z", {2}, {1, 2}), F32Tensor("a", {1}, {3})});
  auto file = SafetensorsFile::Open(dir.file("model.safetensors"));
  REQUIRE(file.ok());
  const auto& tensors = (*file)->tensors();
  REQUIRE(tensors.size() == 2);
  CHECK(tensors[0].name == "z");
  CHECK(tensors[1].name == "a");
  CHECK(static_cast<const char*>(tensors[1].data) -
            static_cast<const char*>(tensors[0].data) ==
        8);
}

TEST_CASE(
    "a sharded checkpoint is merged through "
    "model.safetensors.index.json") {
  TempDir dir;
  WriteSafetensors(dir.file("model-00001-of-00002.safetensors"),
                   {F32Tensor("x", {2}, {1, 2}), F32Tensor("y", {1}, {3})});
  WriteSafetensors(dir.file("model-00002-of-00002.safetensors"),
                   {Bits16Tensor("z", "BF16", {2}, {0x3F80, 0x4000})});
  WriteIndex(dir.file("model.safetensors.index.json"),
             {{"x", "model-00001-of-00002.safetensors"},
              {"y", "model-00001-of-00002.safetensors"},
              {"z", "model-00002-of-00002.safetensors"}});

  auto reader = CheckpointReader::Open(dir.path());
  REQUIRE(reader.ok());
  CHECK((*reader)->names() == std::vector<std::string>{"x", "y", "z"});
  CHECK((*reader)->files().size() == 2);
  CHECK_THAT((*reader)->FileOf("z"), Contains("model-00002-of-00002"));
  auto z = (*reader)->Find("z");
  REQUIRE(z.has_value());
  CHECK(z->dtype == kernels::DType::kBfloat16);
}

TEST_CASE(
    "model.safetensors is read in preference to the index when both "
    "exist") {
  TempDir dir;
  WriteSafetensors(dir.file("model.safetensors"), {F32Tensor("one", {1}, {1})});
  WriteIndex(dir.file("model.safetensors.index.json"),
             {{"other", "missing.safetensors"}});
  auto reader = CheckpointReader::Open(dir.path());
  REQUIRE(reader.ok());
  CHECK((*reader)->names() == std::vector<std::string>{"one"});
}

TEST_CASE(
    "Require returns a tensor of the expected shape and marks it used, "
    "UnusedNames lists the extra tensors") {
  TempDir dir;
  WriteSafetensors(dir.file("model.safetensors"),
                   {F32Tensor("a", {2, 2}, {1, 2, 3, 4}),
                    F32Tensor("b", {1}, {5}), F32Tensor("c", {1}, {6})});
  auto reader = CheckpointReader::Open(dir.path());
  REQUIRE(reader.ok());
  CheckpointReader& ckpt = **reader;
  CHECK(ckpt.UnusedNames() == std::vector<std::string>{"a", "b", "c"});

  auto a = ckpt.Require("a", {2, 2});
  REQUIRE(a.ok());
  CHECK(a->shape == std::vector<int64_t>{2, 2});
  CHECK(ckpt.MarkUsed("c"));
  CHECK_FALSE(ckpt.MarkUsed("nope"));
  CHECK(ckpt.UnusedNames() == std::vector<std::string>{"b"});
  // Find does not mark.
  CHECK(ckpt.Find("b").has_value());
  CHECK(ckpt.UnusedNames() == std::vector<std::string>{"b"});
}

TEST_CASE(
    "Require of a missing tensor is NotFound naming the tensor and the "
    "expected shape") {
  TempDir dir;
  WriteSafetensors(dir.file("model.safetensors"), {F32Tensor("a", {1}, {1})});
  auto reader = CheckpointReader::Open(dir.path());
  REQUIRE(reader.ok());
  auto got = (*reader)->Require("lm_head.weight", {32000, 2048});
  REQUIRE(got.status().code() == absl::StatusCode::kNotFound);
  CHECK_THAT(Message(got.status()), Contains("\"lm_head.weight\"") &&
                                        Contains("missing") &&
                                        Contains("[32000, 2048]"));
}

TEST_CASE(
    "Require with the wrong shape names the tensor, its file and "
    "'expected [a, b] found [c, d]'") {
  TempDir dir;
  WriteSafetensors(dir.file("model.safetensors"),
                   {F32Tensor("q_proj.weight", {2, 3}, {1, 2, 3, 4, 5, 6})});
  auto reader = CheckpointReader::Open(dir.path());
  REQUIRE(reader.ok());
  auto got = (*reader)->Require("q_proj.weight", {3, 2});
  REQUIRE(got.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(Message(got.status()),
             Contains("\"q_proj.weight\"") && Contains("model.safetensors") &&
                 Contains("expected [3, 2] found [2, 3]"));
  CHECK((*reader)->UnusedNames() == std::vector<std::string>{"q_proj.weight"});
}

// --- broken files -----------------------------------------------------------

TEST_CASE(
    "a file shorter than the 8-byte header length is an error naming "
    "the file") {
  TempDir dir;
  for (const std::string bytes : {std::string(), std::string(5, '\0')}) {
    const absl::Status s = OpenBytes(dir, bytes);
    CHECK(s.code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(Message(s), Contains("model.safetensors") &&
                               Contains("too short for the 8-byte header"));
  }
}

TEST_CASE(
    "a header length past the end of the file is a truncation error "
    "with both sizes") {
  TempDir dir;
  std::string bytes = SafetensorsBytes("{}", "");
  bytes[0] = 100;  // claims 100 header bytes; the file has 2
  const absl::Status s = OpenBytes(dir, bytes);
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(Message(s), Contains("header length 100") &&
                             Contains("file is 10 bytes") &&
                             Contains("truncated"));
}

TEST_CASE("a header length over 100 MB is refused before reading it") {
  TempDir dir;
  std::string bytes = SafetensorsBytes("{}", "");
  bytes[3] = 0x10;  // 0x10000000 = 268 MB
  const absl::Status s = OpenBytes(dir, bytes);
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(Message(s), Contains("exceeds the limit of 100000000"));
}

TEST_CASE("a header that is not JSON, or not a JSON object, is an error") {
  TempDir dir;
  absl::Status s = OpenBytes(dir, SafetensorsBytes("{\"w\": [", ""));
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(Message(s),
             Contains("model.safetensors") && Contains("is not valid JSON"));
  s = OpenBytes(dir, SafetensorsBytes("", ""));
  CHECK_THAT(Message(s), Contains("is not valid JSON"));
  s = OpenBytes(dir, SafetensorsBytes("[1, 2]", ""));
  CHECK_THAT(Message(s), Contains("must be a JSON object, found array"));
}

TEST_CASE("an unsupported dtype names the file, the tensor and the dtype") {
  TempDir dir;
  const absl::Status s = OpenBytes(
      dir,
      OneTensorFile(
          R"({"dtype": "I64", "shape": [2], "data_offsets": [0, 16]})", 16));
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(Message(s), Contains("model.safetensors") &&
                             Contains("tensor \"w\"") &&
                             Contains("unsupported dtype \"I64\""));
}

TEST_CASE("data_offsets past the end of the file are a truncation error") {
  TempDir dir;
  const absl::Status s = OpenBytes(
      dir,
      OneTensorFile(
          R"({"dtype": "F32", "shape": [4], "data_offsets": [0, 16]})", 12));
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(Message(s), Contains("tensor \"w\"") &&
                             Contains("data_offsets [0, 16]") &&
                             Contains("(12 bytes after the header)") &&
                             Contains("truncated"));
}

TEST_CASE(
    "a byte range that does not match shape times dtype size is an "
    "error with both sizes") {
  TempDir dir;
  const absl::Status s = OpenBytes(
      dir,
      OneTensorFile(
          R"({"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 8]})", 8));
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(Message(s), Contains("tensor \"w\"") && Contains("hold 8 bytes") &&
                             Contains("expected 12") &&
                             Contains("shape [2, 3] of BF16"));
}

TEST_CASE("a shape whose size overflows 64 bits is an error, not a wrap") {
  TempDir dir;
  const absl::Status s = OpenBytes(dir, OneTensorFile(R"({"dtype": "F32",
          "shape": [4294967296, 4294967296], "data_offsets": [0, 0]})",
                                                      0));
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(Message(s), Contains("expected more than 2^63"));
}

TEST_CASE("overlapping tensors are an error naming both") {
  TempDir dir;
  const std::string header = R"({
      "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
      "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})";
  const absl::Status s =
      OpenBytes(dir, SafetensorsBytes(header, std::string(24, '\0')));
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(Message(s), Contains("\"a\" [0, 16)") &&
                             Contains("\"b\" [8, 24)") && Contains("overlap"));
}

TEST_CASE(
    "malformed tensor entries are errors naming the tensor and the "
    "field") {
  TempDir dir;
  struct Case {
    std::string entry;
    std::string message;
  };
  const std::vector<Case> cases = {
      {R"({"shape": [1], "data_offsets": [0, 4]})", "missing \"dtype\""},
      {R"({"dtype": "F32", "data_offsets": [0, 4]})", "missing \"shape\""},
      {R"({"dtype": "F32", "shape": [1]})", "missing \"data_offsets\""},
      {R"({"dtype": 3, "shape": [1], "data_offsets": [0, 4]})",
       "\"dtype\" must be a string, found integer"},
      {R"({"dtype": "F32", "shape": 1, "data_offsets": [0, 4]})",
       "\"shape\" must be an array, found integer"},
      {R"({"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]})",
       "must hold non-negative integers"},
      {R"({"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]})",
       "must hold non-negative integers"},
      {R"({"dtype": "F32", "shape": [1], "data_offsets": [0]})",
       "\"data_offsets\" must be [begin, end]"},
      {R"({"dtype": "F32", "shape": [1], "data_offsets": [4, 0]})",
       "begin > end"},
      {R"([1, 2, 3])", "entry must be a JSON object, found array"},
  };
  for (const Case& c : cases) {
    INFO(c.entry);
    const absl::Status s = OpenBytes(dir, OneTensorFile(c.entry, 4));
    CHECK(s.code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(Message(s), Contains("tensor \"w\"") && Contains(c.message));
  }
}

TEST_CASE("__metadata__ must map strings to strings") {
  TempDir dir;
  absl::Status s =
      OpenBytes(dir, SafetensorsBytes(R"({"__metadata__": {"n": 1}})", ""));
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(Message(s), Contains("\"__metadata__\" entry \"n\" must be a "
                                  "string, found integer"));
  s = OpenBytes(dir, SafetensorsBytes(R"({"__metadata__": []})", ""));
  CHECK_THAT(Message(s), Contains("must be a JSON object, found array"));
}

TEST_CASE("a missing file is NotFound naming the path") {
  TempDir dir;
  auto file = SafetensorsFile::Open(dir.file("absent.safetensors"));
  CHECK(file.status().code() == absl::StatusCode::kNotFound);
  CHECK_THAT(Message(file.status()), Contains("absent.safetensors"));

  auto reader = CheckpointReader::Open(dir.path());
  CHECK(reader.status().code() == absl::StatusCode::kNotFound);
  CHECK_THAT(Message(reader.status()),
             Contains("model.safetensors.index.json"));
}

TEST_CASE(
    "a shard named by the index but absent is NotFound naming the "
    "shard and the index") {
  TempDir dir;
  WriteSafetensors(dir.file("a.safetensors"), {F32Tensor("x", {1}, {1})});
  WriteIndex(dir.file("model.safetensors.index.json"),
             {{"x", "a.safetensors"}, {"y", "b.safetensors"}});
  auto reader = CheckpointReader::Open(dir.path());
  CHECK(reader.status().code() == absl::StatusCode::kNotFound);
  CHECK_THAT(Message(reader.status()),
             Contains("shard \"b.safetensors\"") &&
                 Contains("model.safetensors.index.json"));
}

TEST_CASE(
    "the index must agree with the shards: every listed tensor in its "
    "shard, no tensor in two shards") {
  TempDir dir;
  WriteSafetensors(dir.file("a.safetensors"), {F32Tensor("x", {1}, {1})});
  WriteSafetensors(dir.file("b.safetensors"),
                   {F32Tensor("y", {1}, {1}), F32Tensor("x", {1}, {2})});
  SECTION("a tensor the shard lacks") {
    WriteIndex(dir.file("model.safetensors.index.json"),
               {{"x", "a.safetensors"}, {"w", "a.safetensors"}});
    auto reader = CheckpointReader::Open(dir.path());
    CHECK(reader.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(Message(reader.status()),
               Contains("tensor \"w\" should be in") &&
                   Contains("has no such tensor"));
  }
  SECTION("a tensor in two shards") {
    WriteIndex(dir.file("model.safetensors.index.json"),
               {{"x", "a.safetensors"}, {"y", "b.safetensors"}});
    auto reader = CheckpointReader::Open(dir.path());
    CHECK(reader.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(Message(reader.status()), Contains("tensor \"x\" is in both") &&
                                             Contains("a.safetensors") &&
                                             Contains("b.safetensors"));
  }
}

TEST_CASE("a malformed index is an error naming the index file") {
  TempDir dir;
  const std::string index = dir.file("model.safetensors.index.json");
  WriteBytes(index, "{\"weight_map\": ");
  auto reader = CheckpointReader::Open(dir.path());
  CHECK(reader.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(
      Message(reader.status()),
      Contains("model.safetensors.index.json") && Contains("not valid JSON"));

  WriteBytes(index, R"({"weight_map": {"x": 3}})");
  reader = CheckpointReader::Open(dir.path());
  CHECK_THAT(Message(reader.status()),
             Contains("weight_map[\"x\"] must be a shard file name"));

  WriteBytes(index, R"({"weight_map": {"x": "../outside.safetensors"}})");
  reader = CheckpointReader::Open(dir.path());
  CHECK_THAT(Message(reader.status()),
             Contains("must be a file name inside the checkpoint directory"));

  WriteBytes(index, R"({"metadata": {}})");
  reader = CheckpointReader::Open(dir.path());
  CHECK_THAT(Message(reader.status()), Contains("\"weight_map\" object"));
}

TEST_CASE("every truncation of a valid file is an error, never a crash") {
  TempDir dir;
  const std::string full =
      ValidSafetensorsBytes({F32Tensor("a", {3}, {1, 2, 3}),
                             Bits16Tensor("b", "BF16", {2}, {0x3F80, 0x4000})});
  REQUIRE(OpenBytes(dir, full).ok());
  for (size_t n = 0; n < full.size(); ++n) {
    INFO("truncated to " << n << " of " << full.size() << " bytes");
    CHECK(OpenBytes(dir, full.substr(0, n)).code() ==
          absl::StatusCode::kInvalidArgument);
  }
}

TEST_CASE(
    "random corruption of a file is an error or a valid file, never a "
    "crash") {
  TempDir dir;
  const std::string full = ValidSafetensorsBytes(
      {F32Tensor("a", {3}, {1, 2, 3}), F32Tensor("b", {2}, {4, 5})});
  std::mt19937 rng(42);
  for (int trial = 0; trial < 500; ++trial) {
    std::string bytes = full;
    const int flips = 1 + trial % 4;
    for (int f = 0; f < flips; ++f) {
      bytes[rng() % bytes.size()] = static_cast<char>(rng() & 0xff);
    }
    const absl::Status s = OpenBytes(dir, bytes);
    if (!s.ok()) {
      CHECK(s.code() == absl::StatusCode::kInvalidArgument);
    }
  }
}

}  // namespace
}  // namespace linserve::engine
