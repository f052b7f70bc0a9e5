// Specification of Model::Score (engine/model.h): per-token log-probabilities
// equal the log-softmax of every fixture's float64 golden logits, pieces and
// split calls agree with one call (the second call's first token only
// conditions), and bad ids leave the session untouched.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/model.h"
#include "nlohmann/json.hpp"

namespace linserve::engine {
namespace {

const std::string kDataDir = LINSERVE_TEST_DATA_DIR;

std::vector<std::string> Fixtures() {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(kDataDir)) {
    if (e.is_directory()) out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

struct GoldenScores {
  std::vector<int32_t> tokens;
  std::vector<double> logprobs;  // of tokens[1..], from the golden logits
};

GoldenScores LoadGoldenScores(const std::string& fixture) {
  std::ifstream in(kDataDir + "/" + fixture + "/golden.json");
  const nlohmann::json j = nlohmann::json::parse(in);
  GoldenScores g;
  for (const auto& t : j["tokens"]) g.tokens.push_back(t.get<int32_t>());
  const auto& logits = j["logits"];
  for (size_t i = 0; i + 1 < g.tokens.size(); ++i) {
    std::vector<double> row;
    for (const auto& v : logits[i]) row.push_back(v.get<double>());
    const double max = *std::max_element(row.begin(), row.end());
    double sum = 0.0;
    for (double x : row) sum += std::exp(x - max);
    g.logprobs.push_back(row[g.tokens[i + 1]] - max - std::log(sum));
  }
  return g;
}

std::unique_ptr<Model> LoadModel(const std::string& fixture,
                                 const ModelOptions& options = {}) {
  auto model = Model::Load(kDataDir + "/" + fixture, options);
  INFO(fixture << ": " << model.status().ToString());
  REQUIRE(model.ok());
  return std::move(*model);
}

ScoreResult ScoreOk(Model& model, SessionState& state,
                    absl::Span<const int32_t> tokens) {
  absl::StatusOr<ScoreResult> r = model.Score(state, tokens);
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  return *std::move(r);
}

TEST_CASE(
    "Score's logprobs of every fixture equal the log-softmax of the golden "
    "logits within 1e-4, in one piece and in pieces of 7",
    "[engine][score]") {
  for (const std::string& fixture : Fixtures()) {
    const GoldenScores golden = LoadGoldenScores(fixture);
    for (int64_t piece : {int64_t{256}, int64_t{7}}) {
      ModelOptions options;
      options.prefill_piece_tokens = piece;
      auto model = LoadModel(fixture, options);
      auto state = model->NewSession();
      const ScoreResult r = ScoreOk(*model, *state, golden.tokens);
      INFO(fixture << " piece " << piece);
      REQUIRE(r.logprobs.size() == golden.logprobs.size());
      CHECK(r.count == static_cast<int64_t>(golden.logprobs.size()));
      CHECK(state->num_tokens() == static_cast<int64_t>(golden.tokens.size()));
      double worst = 0.0, total = 0.0;
      for (size_t i = 0; i < r.logprobs.size(); ++i) {
        worst = std::max(worst, std::abs(r.logprobs[i] - golden.logprobs[i]));
        total += golden.logprobs[i];
      }
      CHECK(worst <= 1e-4);
      CHECK(std::abs(r.total_logprob - total) <= 1e-4 * r.count);
      const double ppl = std::exp(-total / static_cast<double>(r.count));
      CHECK(std::abs(r.perplexity - ppl) <= 1e-4 * ppl);
    }
  }
}

TEST_CASE(
    "scoring in two calls on one session equals one call, without the "
    "logprob of the second call's first token",
    "[engine][score]") {
  for (const std::string fixture : {"retnet", "gated_deltanet", "gla"}) {
    const GoldenScores golden = LoadGoldenScores(fixture);
    auto model = LoadModel(fixture);
    auto whole_state = model->NewSession();
    const ScoreResult whole = ScoreOk(*model, *whole_state, golden.tokens);
    const absl::Span<const int32_t> all(golden.tokens);
    for (size_t split : {size_t{1}, size_t{13}, all.size() - 1}) {
      INFO(fixture << " split at " << split);
      auto state = model->NewSession();
      const ScoreResult a = ScoreOk(*model, *state, all.subspan(0, split));
      const ScoreResult b = ScoreOk(*model, *state, all.subspan(split));
      CHECK(state->num_tokens() == static_cast<int64_t>(all.size()));
      std::vector<float> want = whole.logprobs;
      want.erase(want.begin() + (split - 1));  // the logprob of tokens[split]
      std::vector<float> got = a.logprobs;
      got.insert(got.end(), b.logprobs.begin(), b.logprobs.end());
      REQUIRE(got.size() == want.size());
      for (size_t i = 0; i < got.size(); ++i) {
        CHECK(std::abs(got[i] - want[i]) <= 1e-4f);
      }
      CHECK(a.count + b.count == whole.count - 1);
    }
  }
}

TEST_CASE(
    "Score of fewer than two tokens has no logprobs and a NaN perplexity, a "
    "bad id anywhere leaves the session unchanged",
    "[engine][score]") {
  ModelOptions options;
  options.prefill_piece_tokens = 4;
  auto model = LoadModel("retnet", options);
  auto state = model->NewSession();
  const ScoreResult one = ScoreOk(*model, *state, std::vector<int32_t>{3});
  CHECK(one.count == 0);
  CHECK(std::isnan(one.perplexity));
  CHECK(state->num_tokens() == 1);

  std::vector<int32_t> tokens(10, 1);
  tokens[9] = static_cast<int32_t>(model->vocab_size());
  const absl::StatusOr<ScoreResult> bad = model->Score(*state, tokens);
  CHECK(bad.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(state->num_tokens() == 1);
}

TEST_CASE(
    "Score with feed_last_token false gives the same logprobs and leaves "
    "the state of tokens[0..n-2] bit for bit, feeding the last token then "
    "equals feed_last_token true up to float rounding",
    "[engine][score]") {
  for (const std::string fixture : {"retnet", "gated_deltanet", "gla"}) {
    INFO(fixture);
    const GoldenScores golden = LoadGoldenScores(fixture);
    auto model = LoadModel(fixture);
    const absl::Span<const int32_t> all(golden.tokens);
    const size_t n = all.size();
    auto same_bits = [](const SessionState& a, const SessionState& b) {
      return a.data().size() == b.data().size() &&
             std::memcmp(a.data().data(), b.data().data(),
                         a.data().size() * sizeof(float)) == 0;
    };
    auto fed = model->NewSession();
    const ScoreResult with_last = ScoreOk(*model, *fed, all);
    auto unfed = model->NewSession();
    const absl::StatusOr<ScoreResult> without_last =
        model->Score(*unfed, all, /*feed_last_token=*/false);
    REQUIRE(without_last.ok());
    REQUIRE(without_last->count == with_last.count);
    for (size_t i = 0; i < with_last.logprobs.size(); ++i) {
      CHECK(without_last->logprobs[i] == with_last.logprobs[i]);
    }
    CHECK(without_last->total_logprob == with_last.total_logprob);

    auto prefix = model->NewSession();
    REQUIRE(model
                ->Prefill(*prefix, all.subspan(0, n - 1), LogitsMode::kNone,
                          nullptr)
                .ok());
    CHECK(unfed->num_tokens() == static_cast<int64_t>(n - 1));
    CHECK(same_bits(*unfed, *prefix));

    // Feeding the last token afterwards continues exactly as a session that
    // was fed tokens[0..n-2] and then it. It equals feed_last_token true up
    // to float rounding only: there the last token ran inside the prefill's
    // chunk, here in a pass of its own (~1e-6 apart on these fixtures).
    for (SessionState* state : {unfed.get(), prefix.get()}) {
      REQUIRE(
          model->Prefill(*state, all.subspan(n - 1), LogitsMode::kNone, nullptr)
              .ok());
    }
    CHECK(same_bits(*unfed, *prefix));
    CHECK(unfed->num_tokens() == fed->num_tokens());
    float worst = 0.0f;
    for (size_t i = 0; i < fed->data().size(); ++i) {
      const float want = fed->data()[i];
      worst = std::max(worst, std::abs(unfed->data()[i] - want) /
                                  std::max(1.0f, std::abs(want)));
    }
    CHECK(worst <= 1e-5f);
  }
}

}  // namespace
}  // namespace linserve::engine
