// Specification of engine/state_format.h and engine/fingerprint.h: an
// exported session, imported anywhere the same model runs, continues
// bit for bit like the uninterrupted one; a state of another model, a
// damaged, truncated or future-version state is refused with an error that
// says which, and the target session is left exactly as it was.
#include "engine/state_format.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/fingerprint.h"
#include "engine/model.h"
#include "tests/engine/safetensors_writer.h"

namespace linserve::engine {
namespace {

using Catch::Matchers::Contains;
using linserve::testing::TempDir;

const std::string kDataDir = LINSERVE_TEST_DATA_DIR;

std::vector<std::string> Fixtures() {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(kDataDir)) {
    if (e.is_directory()) out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<int32_t> GoldenTokens(const std::string& fixture) {
  std::ifstream in(kDataDir + "/" + fixture + "/golden.json");
  const nlohmann::json j = nlohmann::json::parse(in);
  std::vector<int32_t> tokens;
  for (const auto& t : j["tokens"]) tokens.push_back(t.get<int32_t>());
  return tokens;
}

std::unique_ptr<Model> LoadModel(const std::string& dir,
                                 const ModelOptions& options = {}) {
  absl::StatusOr<std::unique_ptr<Model>> model = Model::Load(dir, options);
  INFO(dir << ": " << model.status().ToString());
  REQUIRE(model.ok());
  return std::move(*model);
}

std::unique_ptr<Model> LoadFixture(const std::string& fixture) {
  return LoadModel(kDataDir + "/" + fixture);
}

std::string Export(const Model& model, const SessionState& state,
                   std::string_view extras = {}) {
  absl::StatusOr<std::string> bytes =
      SerializeSessionState(model, state, extras);
  INFO(bytes.status().ToString());
  REQUIRE(bytes.ok());
  return std::move(*bytes);
}

// What a session holds, for before/after comparisons.
struct Snapshot {
  std::vector<float> data;
  int64_t num_tokens;
  bool operator==(const Snapshot& o) const {
    return num_tokens == o.num_tokens && data.size() == o.data.size() &&
           std::memcmp(data.data(), o.data.data(),
                       data.size() * sizeof(float)) == 0;
  }
};

Snapshot Snap(const SessionState& s) {
  return {std::vector<float>(s.data().begin(), s.data().end()), s.num_tokens()};
}

// A session of `model` that has seen `n` tokens of `tokens` (not empty, so
// an import into it must overwrite real content).
std::unique_ptr<SessionState> Prefilled(Model& model,
                                        const std::vector<int32_t>& tokens,
                                        size_t n) {
  auto s = model.NewSession();
  const std::vector<int32_t> head(tokens.begin(), tokens.begin() + n);
  REQUIRE(model.Prefill(*s, head, LogitsMode::kNone, nullptr).ok());
  return s;
}

// Flips bits of the byte `from_end` bytes before the end of the file.
void FlipByteFromEnd(const std::string& path, int from_end, char mask) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(-from_end, std::ios::end);
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ mask);
  f.seekp(-from_end, std::ios::end);
  f.write(&c, 1);
  REQUIRE(f.good());
}

void Put64At(std::string& bytes, size_t offset, uint64_t v) {
  std::memcpy(bytes.data() + offset, &v, 8);
}

void RecomputeChecksum(std::string& bytes) {
  const size_t covered = bytes.size() - 8;
  Put64At(bytes, covered, Xxh64(bytes.data(), covered));
}

TEST_CASE("XXH64 equals the reference implementation's published values",
          "[state_format]") {
  const auto h = [](const std::string& s) { return Xxh64(s.data(), s.size()); };
  CHECK(h("") == 0xEF46DB3751D8E999ULL);
  CHECK(h("a") == 0xD24EC4F1A98C6E5BULL);
  CHECK(h("abc") == 0x44BC2CF5AD770999ULL);
  // 39 bytes: the 32-byte stripe loop, then 8-, 4- and 1-byte tails.
  CHECK(h("Nobody inspects the spammish repetition") == 0xFBCEA83C8A378BF1ULL);
  // Any alignment gives the same hash.
  std::string buf(1000, '\0');
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<char>(i * 7);
  const uint64_t aligned = Xxh64(buf.data() + 8, 512);
  std::string shifted = "x" + buf;
  CHECK(Xxh64(shifted.data() + 9, 512) == aligned);
}

TEST_CASE(
    "the model fingerprint is stable across loads and weight types and "
    "differs between every two fixtures",
    "[state_format]") {
  std::vector<std::string> seen;
  for (const std::string& fixture : Fixtures()) {
    INFO(fixture);
    auto a = LoadFixture(fixture);
    ModelOptions bf16;
    bf16.weight_type = kernels::DType::kBfloat16;
    auto b = LoadModel(kDataDir + "/" + fixture, bf16);
    CHECK(a->fingerprint() == b->fingerprint());
    CHECK(a->fingerprint().config_hash == ConfigHash(a->config()));
    const std::string fp = a->fingerprint().ToString();
    CHECK(fp.size() == 33);
    CHECK(std::find(seen.begin(), seen.end(), fp) == seen.end());
    seen.push_back(fp);
  }
  CHECK(seen.size() >= 5);
}

TEST_CASE(
    "the canonical config text covers every ModelConfig field the math reads "
    "(a size guard flags new fields)",
    "[state_format]") {
  ModelConfig a;
  ModelConfig b = a;
  b.performer.eps = 2e-4;
  CHECK(CanonicalConfigText(a) != CanonicalConfigText(b));
  b = a;
  b.clamp_min = -5.0;
  CHECK(ConfigHash(a) != ConfigHash(b));
  b = a;
  b.eos_token_ids = {7};
  b.attn_mode = "fused_chunk";
  CHECK(ConfigHash(a) == ConfigHash(b));
  // A field added to ModelConfig changes its size: decide whether it
  // changes a state or a logit; if so, add it to CanonicalConfigText (a new
  // fingerprint for every model: bump kStateFormatVersion), then update this.
  INFO("ModelConfig changed: review engine/fingerprint.cc CanonicalConfigText");
  CHECK(sizeof(ModelConfig) == 384);
}

TEST_CASE(
    "the fingerprint ignores config.json formatting and non-math keys but "
    "sees a single changed weight bit",
    "[state_format]") {
  const std::string fixture = "gla";
  auto original = LoadFixture(fixture);
  TempDir dir;
  std::filesystem::copy(kDataDir + "/" + fixture, dir.path(),
                        std::filesystem::copy_options::recursive);
  {
    std::ifstream in(dir.file("config.json"));
    nlohmann::json j = nlohmann::json::parse(in);
    j["some_unknown_key"] = "ignored";
    j["max_position_embeddings"] = 123456;
    j["attn_mode"] = "fused_chunk";
    std::ofstream(dir.file("config.json")) << j.dump(7);
  }
  auto reformatted = LoadModel(dir.path());
  CHECK(reformatted->fingerprint() == original->fingerprint());

  FlipByteFromEnd(dir.file("model.safetensors"), 1, 0x01);
  auto retrained = LoadModel(dir.path());
  CHECK(retrained->fingerprint().config_hash ==
        original->fingerprint().config_hash);
  CHECK(retrained->fingerprint().weights_hash !=
        original->fingerprint().weights_hash);
}

TEST_CASE(
    "for every fixture, a session exported after a prefill and imported into "
    "a fresh session continues bitwise equal to the uninterrupted one",
    "[state_format]") {
  for (const std::string& fixture : Fixtures()) {
    INFO(fixture);
    auto model = LoadFixture(fixture);
    const std::vector<int32_t> tokens = GoldenTokens(fixture);
    REQUIRE(tokens.size() >= 40);
    const int64_t V = model->vocab_size();
    auto original = Prefilled(*model, tokens, 24);
    const std::string bytes = Export(*model, *original);
    CHECK(static_cast<int64_t>(bytes.size()) ==
          SerializedStateBytes(*model, 0));
    // Streamed in chunks of any size, reassembled on the other side.
    std::string received;
    for (size_t at = 0; at < bytes.size(); at += 1000) {
      received += bytes.substr(at, 1000);
    }
    auto imported = Prefilled(*model, tokens, 3);  // overwritten by import
    const absl::Status s =
        DeserializeSessionState(*model, received, imported.get());
    INFO(s.ToString());
    REQUIRE(s.ok());
    CHECK(Snap(*imported) == Snap(*original));

    // Four decode steps, then a prefill piece, on both.
    for (size_t t = 24; t < 28; ++t) {
      std::vector<float> a(V), b(V);
      SessionState* sa = original.get();
      SessionState* sb = imported.get();
      REQUIRE(model->DecodeStep({&sa, 1}, {&tokens[t], 1}, a.data()).ok());
      REQUIRE(model->DecodeStep({&sb, 1}, {&tokens[t], 1}, b.data()).ok());
      CHECK(std::memcmp(a.data(), b.data(), V * sizeof(float)) == 0);
    }
    const std::vector<int32_t> rest(tokens.begin() + 28, tokens.begin() + 40);
    std::vector<float> a(rest.size() * V), b(rest.size() * V);
    REQUIRE(model->Prefill(*original, rest, LogitsMode::kAll, a.data()).ok());
    REQUIRE(model->Prefill(*imported, rest, LogitsMode::kAll, b.data()).ok());
    CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
    CHECK(imported->num_tokens() == 40);
    CHECK(Export(*model, *imported) == Export(*model, *original));
  }
}

TEST_CASE(
    "a fork exports the same bytes as its source and then evolves "
    "independently, a reset session exports as a fresh one",
    "[state_format]") {
  auto model = LoadFixture("gated_deltanet");
  const std::vector<int32_t> tokens = GoldenTokens("gated_deltanet");
  auto source = Prefilled(*model, tokens, 20);
  const std::string before = Export(*model, *source);
  std::unique_ptr<SessionState> fork = source->Fork();
  CHECK(Export(*model, *fork) == before);
  const std::vector<int32_t> more(tokens.begin() + 20, tokens.begin() + 30);
  REQUIRE(model->Prefill(*fork, more, LogitsMode::kNone, nullptr).ok());
  CHECK(Export(*model, *source) == before);
  CHECK(Export(*model, *fork) != before);
  fork->Reset();
  CHECK(Export(*model, *fork) == Export(*model, *model->NewSession()));
}

TEST_CASE(
    "a fresh session round-trips, and the extras section carries any bytes "
    "opaquely",
    "[state_format]") {
  auto model = LoadFixture("linear_attn_hedgehog");
  const std::vector<int32_t> tokens = GoldenTokens("linear_attn_hedgehog");
  auto fresh = model->NewSession();
  const std::string bytes = Export(*model, *fresh);
  auto target = Prefilled(*model, tokens, 10);
  std::string extras = "left over";
  REQUIRE(DeserializeSessionState(*model, bytes, target.get(), &extras).ok());
  CHECK(Snap(*target) == Snap(*fresh));
  CHECK(target->num_tokens() == 0);
  CHECK(extras.empty());

  const std::string sampler_state("rng\0state\xff", 10);
  auto used = Prefilled(*model, tokens, 10);
  const std::string with_extras = Export(*model, *used, sampler_state);
  CHECK(static_cast<int64_t>(with_extras.size()) ==
        SerializedStateBytes(*model, 10));
  auto back = model->NewSession();
  REQUIRE(
      DeserializeSessionState(*model, with_extras, back.get(), &extras).ok());
  CHECK(extras == sampler_state);
  CHECK(Snap(*back) == Snap(*used));
}

TEST_CASE(
    "the header records the model, token count and sizes at the documented "
    "offsets, readable without importing",
    "[state_format]") {
  auto model = LoadFixture("retnet");
  const std::vector<int32_t> tokens = GoldenTokens("retnet");
  auto s = Prefilled(*model, tokens, 17);
  const std::string bytes = Export(*model, *s, "xyz");
  absl::StatusOr<StateHeader> h = ParseStateHeader(bytes);
  REQUIRE(h.ok());
  CHECK(h->format_version == 1);
  CHECK(h->fingerprint == model->fingerprint());
  CHECK(h->family == ModelFamily::kRetNet);
  CHECK(h->num_layers == model->config().num_hidden_layers);
  CHECK(h->hidden_size == model->config().hidden_size);
  CHECK(h->vocab_size == model->vocab_size());
  CHECK(h->num_tokens == 17);
  CHECK(h->recurrent_bytes == model->state_layout().total_floats * 4);
  CHECK(h->extras_bytes == 3);

  // docs/state-format.md, field by field.
  const auto u32 = [&bytes](size_t at) {
    uint32_t v;
    std::memcpy(&v, bytes.data() + at, 4);
    return v;
  };
  const auto u64 = [&bytes](size_t at) {
    uint64_t v;
    std::memcpy(&v, bytes.data() + at, 8);
    return v;
  };
  CHECK(bytes.substr(0, 8) == "LSVSTATE");
  CHECK(u32(8) == 1);
  CHECK(u32(12) == 128);
  CHECK(u64(16) == bytes.size());
  CHECK(u64(24) == model->fingerprint().config_hash);
  CHECK(u64(32) == model->fingerprint().weights_hash);
  CHECK(u32(40) == 1);  // retnet
  CHECK(u32(44) == 1);  // fp32
  CHECK(u64(48) == static_cast<uint64_t>(h->num_layers));
  CHECK(u64(56) == static_cast<uint64_t>(h->hidden_size));
  CHECK(u64(64) == static_cast<uint64_t>(h->vocab_size));
  CHECK(u64(72) == 17);
  CHECK(u64(80) == static_cast<uint64_t>(h->recurrent_bytes));
  CHECK(u64(88) == 3);
  CHECK(u64(96) == StateLayoutHash(model->state_layout()));
  for (size_t i = 104; i < 128; ++i) CHECK(bytes[i] == 0);
  CHECK(std::memcmp(bytes.data() + 128, s->data().data(), h->recurrent_bytes) ==
        0);
  CHECK(bytes.substr(128 + h->recurrent_bytes, 3) == "xyz");
  CHECK(u64(bytes.size() - 8) == Xxh64(bytes.data(), bytes.size() - 8));
}

TEST_CASE(
    "a state of another fixture's model is refused with FailedPrecondition "
    "naming both models, and the target is unchanged",
    "[state_format]") {
  const std::vector<std::string> fixtures = Fixtures();
  for (size_t i = 0; i < fixtures.size(); ++i) {
    const std::string& from = fixtures[i];
    const std::string& to = fixtures[(i + 1) % fixtures.size()];
    INFO(from << " -> " << to);
    auto a = LoadFixture(from);
    auto b = LoadFixture(to);
    const std::string bytes =
        Export(*a, *Prefilled(*a, GoldenTokens(from), 12));
    auto target = Prefilled(*b, GoldenTokens(to), 5);
    const Snapshot before = Snap(*target);
    const absl::Status s = DeserializeSessionState(*b, bytes, target.get());
    INFO(s.ToString());
    CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
    CHECK_THAT(
        std::string(s.message()),
        Contains("state belongs to model " + a->fingerprint().ToString()) &&
            Contains("this server runs model " + b->fingerprint().ToString()) &&
            Contains(std::string(ModelFamilyName(a->config().family))) &&
            Contains(absl::StrCat(a->config().num_hidden_layers, " layers")));
    CHECK(Snap(*target) == before);
  }
}

TEST_CASE(
    "a state of the same config with other weights is refused as 'same "
    "config, different weights'",
    "[state_format]") {
  TempDir dir;
  std::filesystem::copy(kDataDir + "/delta_net", dir.path(),
                        std::filesystem::copy_options::recursive);
  FlipByteFromEnd(dir.file("model.safetensors"), 2, 0x01);
  auto original = LoadFixture("delta_net");
  auto tuned = LoadModel(dir.path());
  const std::string bytes = Export(*original, *original->NewSession());
  auto target = tuned->NewSession();
  const absl::Status s = DeserializeSessionState(*tuned, bytes, target.get());
  CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(s.message()),
             Contains("same config, different weights"));
}

TEST_CASE(
    "every single-byte corruption of header, payload, extras or checksum is "
    "refused (InvalidArgument in the magic, else DataLoss) and leaves the "
    "target unchanged",
    "[state_format]") {
  for (const std::string fixture : {"gla_conv_clamp_gqa", "linear_attn_dpfp"}) {
    INFO(fixture);
    auto model = LoadFixture(fixture);
    const std::vector<int32_t> tokens = GoldenTokens(fixture);
    const std::string good =
        Export(*model, *Prefilled(*model, tokens, 30), "sampler");
    auto target = Prefilled(*model, tokens, 7);
    std::string extras = "untouched";
    const Snapshot before = Snap(*target);
    std::vector<size_t> positions;
    for (size_t i = 0; i < 128; ++i) positions.push_back(i);
    for (size_t i = 128; i < good.size(); i += 37) positions.push_back(i);
    for (size_t i = good.size() - 16; i < good.size(); ++i) {
      positions.push_back(i);  // end of the extras, and the checksum
    }
    int refused = 0;
    for (size_t pos : positions) {
      for (const unsigned char flip : {0x01, 0x80, 0xff}) {
        std::string bad = good;
        bad[pos] = static_cast<char>(bad[pos] ^ flip);
        const absl::Status s =
            DeserializeSessionState(*model, bad, target.get(), &extras);
        INFO("byte " << pos << " ^ " << int(flip) << ": " << s.ToString());
        CHECK(s.code() == (pos < 8 ? absl::StatusCode::kInvalidArgument
                                   : absl::StatusCode::kDataLoss));
        refused += !s.ok();
      }
    }
    CHECK(refused == static_cast<int>(positions.size() * 3));
    CHECK(Snap(*target) == before);
    CHECK(extras == "untouched");
    // A payload corruption reads as a checksum mismatch.
    std::string bad = good;
    bad[200] ^= 0x10;
    CHECK_THAT(
        std::string(
            DeserializeSessionState(*model, bad, target.get()).message()),
        Contains("state is damaged: checksum mismatch"));
  }
}

TEST_CASE(
    "every truncation, and any trailing byte, is refused as DataLoss naming "
    "expected and found sizes, and leaves the target unchanged",
    "[state_format]") {
  auto model = LoadFixture("retnet_gqa_unfused");
  const std::vector<int32_t> tokens = GoldenTokens("retnet_gqa_unfused");
  const std::string good = Export(*model, *Prefilled(*model, tokens, 9), "ab");
  auto target = Prefilled(*model, tokens, 4);
  const Snapshot before = Snap(*target);
  for (size_t len = 0; len < good.size(); ++len) {
    const absl::Status s = DeserializeSessionState(
        *model, std::string_view(good).substr(0, len), target.get());
    INFO("length " << len << ": " << s.ToString());
    REQUIRE(s.code() == absl::StatusCode::kDataLoss);
    if (len >= 32) {
      CHECK_THAT(
          std::string(s.message()),
          Contains(absl::StrCat("says ", good.size(), " bytes, found ", len)));
    } else {
      CHECK_THAT(std::string(s.message()), Contains("truncated"));
    }
  }
  const absl::Status s =
      DeserializeSessionState(*model, good + '\0', target.get());
  CHECK(s.code() == absl::StatusCode::kDataLoss);
  CHECK_THAT(std::string(s.message()), Contains("trailing bytes"));
  CHECK(Snap(*target) == before);
}

TEST_CASE(
    "an intact state of another format version is refused with "
    "FailedPrecondition naming both versions",
    "[state_format]") {
  auto model = LoadFixture("gated_deltanet_gva_bf16");
  std::string bytes = Export(*model, *model->NewSession());
  auto target = model->NewSession();
  bytes[8] = 2;
  // Without a valid checksum the changed byte is damage...
  CHECK(DeserializeSessionState(*model, bytes, target.get()).code() ==
        absl::StatusCode::kDataLoss);
  // ...with one it is a state this server cannot read.
  RecomputeChecksum(bytes);
  const absl::Status s = DeserializeSessionState(*model, bytes, target.get());
  CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(s.message()),
             Contains("state format version 2 is not supported") &&
                 Contains("reads version 1") && Contains("newer linserve"));
}

TEST_CASE(
    "intact states with inconsistent headers are refused as malformed, and "
    "bytes that are not a state as InvalidArgument",
    "[state_format]") {
  auto model = LoadFixture("linear_attn_elu_gqa");
  const std::string good = Export(*model, *model->NewSession(), "e");
  auto target = model->NewSession();
  const auto refuse = [&](std::string bytes, const std::string& words) {
    RecomputeChecksum(bytes);
    const absl::Status s = DeserializeSessionState(*model, bytes, target.get());
    INFO(s.ToString());
    CHECK(!s.ok());
    CHECK_THAT(std::string(s.message()), Contains(words));
  };
  std::string b = good;
  Put64At(b, 88, 2);  // extras 2 bytes: sections overrun the state
  refuse(b, "do not fill");
  b = good;
  b[44] = 2;  // bf16 state
  refuse(b, "state dtype code 2");
  b = good;
  b[40] = 9;
  refuse(b, "unknown model family code 9");
  b = good;
  b[110] = 1;
  refuse(b, "reserved byte 110");
  b = good;
  Put64At(b, 96, 12345);  // another build's layout of the same model
  refuse(b, "state layout differs");

  const absl::Status s = DeserializeSessionState(
      *model, "{\"tokens\": [1, 2, 3], \"what\": \"json\"}", target.get());
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(s.message()),
             Contains("not a linserve session state"));
}

TEST_CASE(
    "sessions and buffers of the wrong model or size are refused on export "
    "and import",
    "[state_format]") {
  auto gla = LoadFixture("gla");
  auto retnet = LoadFixture("retnet_no_gate");
  auto other = retnet->NewSession();
  CHECK(SerializeSessionState(*gla, *other).status().code() ==
        absl::StatusCode::kInvalidArgument);
  std::string small(10, '\0');
  CHECK(SerializeSessionStateTo(*gla, *gla->NewSession(), {},
                                absl::MakeSpan(small))
            .code() == absl::StatusCode::kInvalidArgument);
  const std::string bytes = Export(*gla, *gla->NewSession());
  CHECK(DeserializeSessionState(*gla, bytes, other.get()).code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(DeserializeSessionState(*gla, bytes, nullptr).code() ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE(
    "fingerprinting the weights costs well under a second per GB "
    "(prints the measured rate)",
    "[state_format]") {
  std::vector<char> buf(128 << 20);
  for (size_t i = 0; i < buf.size(); i += 4096) buf[i] = static_cast<char>(i);
  Xxh64(buf.data(), buf.size());  // fault the pages in
  const auto t0 = std::chrono::steady_clock::now();
  const uint64_t h = Xxh64(buf.data(), buf.size());
  const double s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  const double gb_per_s = buf.size() / s / 1e9;
  std::printf("XXH64: %.2f GB/s (hash %016llx), so %.3f s per GB of weights\n",
              gb_per_s, static_cast<unsigned long long>(h), 1.0 / gb_per_s);

  // A whole fixture's manifest hash, for the per-tensor overhead.
  auto ckpt = CheckpointReader::Open(kDataDir + "/gla_tied_unfused");
  REQUIRE(ckpt.ok());
  const auto t1 = std::chrono::steady_clock::now();
  const int reps = 20;
  for (int i = 0; i < reps; ++i) WeightsHash(**ckpt);
  const double us = std::chrono::duration<double, std::micro>(
                        std::chrono::steady_clock::now() - t1)
                        .count() /
                    reps;
  std::printf("WeightsHash of gla_tied_unfused (%zu tensors): %.1f us\n",
              (*ckpt)->names().size(), us);
  CHECK(gb_per_s > 0.2);  // loose: sanitizer and debug builds run here too
}

}  // namespace
}  // namespace linserve::engine
