// Specification of engine/sampler.h: greedy and temperature sampling, the
// top-k / top-p / min-p supports, penalties by their HF/vLLM/OpenAI formulas,
// per-sequence seeded reproducibility, raw log-probabilities, parameter
// validation, and stop tokens / stop strings / max tokens.
#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "absl/status/status.h"
#include "tests/test_util.h"

namespace linserve::engine {
namespace {

using Catch::Matchers::Contains;

SamplingParams Seeded(uint64_t seed) {
  SamplingParams p;
  p.seed = seed;
  return p;
}

// Softmax of logits / temperature in double.
std::vector<double> Softmax(const std::vector<float>& z, double t = 1.0) {
  double m = *std::max_element(z.begin(), z.end());
  std::vector<double> p(z.size());
  double sum = 0.0;
  for (size_t i = 0; i < z.size(); ++i) sum += p[i] = std::exp((z[i] - m) / t);
  for (double& x : p) x /= sum;
  return p;
}

std::vector<double> LogSoftmax(const std::vector<float>& z) {
  double m = *std::max_element(z.begin(), z.end());
  double sum = 0.0;
  for (float x : z) sum += std::exp(x - m);
  std::vector<double> out(z.size());
  for (size_t i = 0; i < z.size(); ++i) out[i] = z[i] - m - std::log(sum);
  return out;
}

std::vector<int32_t> Draw(const std::vector<float>& logits,
                          const SamplingParams& params, int n,
                          absl::Span<const int32_t> prompt = {}) {
  SamplerState state = NewSamplerState(params, prompt);
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(
        Sample(logits.data(), static_cast<int>(logits.size()), params, state)
            .token);
  }
  return out;
}

std::set<int32_t> Support(const std::vector<double>& p) {
  std::set<int32_t> s;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] > 0.0) s.insert(static_cast<int32_t>(i));
  }
  return s;
}

// Token ids ordered most likely first, lower id on ties.
std::vector<int32_t> ByProbability(const std::vector<float>& z) {
  std::vector<int32_t> ids(z.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(),
                   [&](int32_t a, int32_t b) { return z[a] > z[b]; });
  return ids;
}

TEST_CASE("xoshiro256** seeded by splitmix64 reproduces the reference values",
          "[sampler]") {
  Xoshiro256 rng = Xoshiro256::FromSeed(0);
  CHECK(rng.s[0] == 0xe220a8397b1dcdafULL);  // splitmix64's known first value
  CHECK(rng.Next() == 0x99ec5f36cb75f2b4ULL);
  CHECK(rng.Next() == 0xbf6e1f784956452aULL);
  rng = Xoshiro256::FromSeed(42);
  CHECK(rng.Next() == 0x15780b2e0c2ec716ULL);
  CHECK(rng.Next() == 0x6104d9866d113a7eULL);
  CHECK(rng.NextDouble() == 0xae17533239e499a1ULL / 2048 * 0x1.0p-53);
  for (int i = 0; i < 1000; ++i) {
    const double u = rng.NextDouble();
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
  }
}

TEST_CASE("greedy picks the argmax of the logits, the lowest id on ties",
          "[sampler]") {
  SamplingParams params = Seeded(1);
  params.temperature = 0.0f;
  CHECK(Draw({0.1f, 2.0f, -1.0f, 1.9f}, params, 5) ==
        std::vector<int32_t>(5, 1));
  CHECK(Draw({0.1f, 3.0f, -1.0f, 3.0f, 3.0f}, params, 3) ==
        std::vector<int32_t>(3, 1));
  // NaN never wins; +inf does.
  const float nan = std::nanf("");
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(Draw({nan, 1.0f, nan}, params, 1)[0] == 1);
  CHECK(Draw({1.0f, 2.0f, inf}, params, 1)[0] == 2);
}

TEST_CASE(
    "extreme logits: NaN and -inf get no probability, huge values "
    "do not overflow",
    "[sampler]") {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> logits = {-inf, 1e30f, std::nanf(""), 1e30f, -1e30f};
  for (float t : {1.0f, 1e-45f, 100.0f}) {
    SamplingParams params = Seeded(21);
    params.temperature = t;
    const std::vector<double> p = SamplingProbabilities(
        logits.data(), 5, params, NewSamplerState(params, {}));
    CHECK(p == std::vector<double>{0.0, 0.5, 0.0, 0.5, 0.0});
    std::set<int32_t> seen;
    SamplerState state = NewSamplerState(params, {});
    for (int i = 0; i < 100; ++i) {
      const SampleResult r = Sample(logits.data(), 5, params, state);
      seen.insert(r.token);
      REQUIRE(r.logprob == Approx(std::log(0.5)));
    }
    CHECK(seen == std::set<int32_t>{1, 3});
  }
}

TEST_CASE("sampling at a temperature near 0 equals greedy", "[sampler]") {
  const std::vector<float> logits = testing::RandomVector(500, 3, -5, 5);
  const int32_t argmax = static_cast<int32_t>(
      std::max_element(logits.begin(), logits.end()) - logits.begin());
  for (float t : {1e-3f, 1e-10f, 1e-40f}) {
    SamplingParams params = Seeded(7);
    params.temperature = t;
    CHECK(Draw(logits, params, 50) == std::vector<int32_t>(50, argmax));
  }
}

TEST_CASE("top_k = 1 equals greedy", "[sampler]") {
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const std::vector<float> logits = testing::RandomVector(300, seed, -3, 3);
    SamplingParams params = Seeded(seed);
    params.top_k = 1;
    params.temperature = 2.0f;
    SamplingParams greedy = params;
    greedy.temperature = 0.0f;
    CHECK(Draw(logits, params, 10) == Draw(logits, greedy, 10));
  }
}

TEST_CASE("temperature-1 sampling matches the softmax probabilities",
          "[sampler]") {
  const std::vector<float> logits = {1.0f, 0.0f, 2.0f, -1.0f, 0.5f, 1.5f};
  const std::vector<double> p = Softmax(logits);
  const int n = 40000;
  std::vector<int> count(logits.size(), 0);
  for (int32_t t : Draw(logits, Seeded(123), n)) ++count[t];
  double chi2 = 0.0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double expected = n * p[i];
    chi2 += (count[i] - expected) * (count[i] - expected) / expected;
    CHECK(std::abs(count[i] / double(n) - p[i]) < 0.01);
  }
  // 5 degrees of freedom: P(chi2 > 25.7) = 1e-4.
  CHECK(chi2 < 25.7);
}

TEST_CASE("the sampling distribution is softmax(logits / temperature)",
          "[sampler]") {
  const std::vector<float> logits = testing::RandomVector(1000, 5, -8, 8);
  for (float t : {0.25f, 1.0f, 3.0f}) {
    SamplingParams params = Seeded(1);
    params.temperature = t;
    const std::vector<double> got = SamplingProbabilities(
        logits.data(), 1000, params, NewSamplerState(params, {}));
    const std::vector<double> want = Softmax(logits, t);
    for (size_t i = 0; i < want.size(); ++i) {
      REQUIRE(got[i] == Approx(want[i]).epsilon(2e-6).margin(1e-30));
    }
  }
}

TEST_CASE("sampling inverts the CDF in id order at the sequence's uniforms",
          "[sampler]") {
  // The spec of a draw: u from the sequence's xoshiro256**, the first token
  // whose cumulative probability (id order) exceeds u.
  const std::vector<float> logits = testing::RandomVector(64, 9, -2, 2);
  const std::vector<double> p = Softmax(logits);
  Xoshiro256 rng = Xoshiro256::FromSeed(99);
  const std::vector<int32_t> got = Draw(logits, Seeded(99), 200);
  for (int k = 0; k < 200; ++k) {
    const double u = rng.NextDouble();
    double cum = 0.0;
    int32_t want = 63;
    for (int32_t i = 0; i < 64; ++i) {
      cum += p[i];
      if (cum > u) {
        want = i;
        break;
      }
    }
    // A draw within rounding of a CDF step may land on either side.
    if (std::abs(cum - u) > 1e-12) REQUIRE(got[k] == want);
  }
}

TEST_CASE("top-k keeps exactly the k most likely tokens, ties to lower ids",
          "[sampler]") {
  std::vector<float> logits = testing::RandomVector(200, 11, -2, 2);
  logits[17] = logits[18] = logits[19] = 5.0f;  // a three-way tie at the top
  const std::vector<int32_t> order = ByProbability(logits);
  for (int k : {1, 2, 3, 10, 199, 200}) {
    SamplingParams params = Seeded(k);
    params.top_k = k;
    const std::vector<double> p = SamplingProbabilities(
        logits.data(), 200, params, NewSamplerState(params, {}));
    const std::set<int32_t> want(order.begin(), order.begin() + k);
    CHECK(Support(p) == want);
    for (int32_t t : Draw(logits, params, 300)) REQUIRE(want.count(t) == 1);
  }
}

TEST_CASE(
    "top-k selects the same set by heap (small k) and by "
    "nth_element (large k)",
    "[sampler]") {
  std::vector<float> logits = testing::RandomVector(3000, 20, -2, 2);
  for (int i = 0; i < 3000; i += 7) logits[i] = 0.5f;  // many ties
  const std::vector<int32_t> order = ByProbability(logits);
  for (int k : {1000, 1024, 1025, 2999}) {
    SamplingParams params = Seeded(k);
    params.top_k = k;
    const std::vector<double> p = SamplingProbabilities(
        logits.data(), 3000, params, NewSamplerState(params, {}));
    CHECK(Support(p) == std::set<int32_t>(order.begin(), order.begin() + k));
  }
}

TEST_CASE("top-p keeps the smallest most-likely prefix reaching p",
          "[sampler]") {
  const std::vector<float> logits = testing::RandomVector(300, 12, -4, 4);
  const std::vector<int32_t> order = ByProbability(logits);
  const std::vector<double> softmax = Softmax(logits);
  for (float top_p : {0.01f, 0.3f, 0.9f, 0.999f}) {
    size_t n = 0;
    double cum = 0.0;
    while (cum < top_p) cum += softmax[order[n++]];
    SamplingParams params = Seeded(3);
    params.top_p = top_p;
    const std::vector<double> p = SamplingProbabilities(
        logits.data(), 300, params, NewSamplerState(params, {}));
    const std::set<int32_t> want(order.begin(), order.begin() + n);
    CHECK(Support(p) == want);
    for (int32_t t : Draw(logits, params, 300)) REQUIRE(want.count(t) == 1);
    // Renormalised over the survivors.
    for (int32_t t : want) {
      REQUIRE(p[t] == Approx(softmax[t] / cum).epsilon(2e-6));
    }
  }
}

TEST_CASE("top-p over a flat large vocab keeps the lowest ids", "[sampler]") {
  // Thousands of tied tokens: the growing partial sort runs many rounds.
  const std::vector<float> logits(5000, 0.25f);
  SamplingParams params = Seeded(3);
  params.top_p = 0.5f;
  const std::set<int32_t> support = Support(SamplingProbabilities(
      logits.data(), 5000, params, NewSamplerState(params, {})));
  REQUIRE(support.size() == 2500);
  CHECK(*support.rbegin() == 2499);
}

TEST_CASE("top-p applies after top-k, over the renormalised top-k",
          "[sampler]") {
  const std::vector<float> logits = {3.0f, 2.0f, 1.0f, 0.0f, -1.0f};
  // After top-k 2: p = {0.731, 0.269}; top-p 0.7 keeps token 0 only.
  SamplingParams params = Seeded(1);
  params.top_k = 2;
  params.top_p = 0.7f;
  CHECK(Support(SamplingProbabilities(logits.data(), 5, params,
                                      NewSamplerState(params, {}))) ==
        std::set<int32_t>{0});
  params.top_p = 0.75f;
  CHECK(Support(SamplingProbabilities(logits.data(), 5, params,
                                      NewSamplerState(params, {}))) ==
        std::set<int32_t>{0, 1});
}

TEST_CASE("min-p keeps the tokens with p >= min_p * p_max", "[sampler]") {
  const std::vector<float> logits = testing::RandomVector(400, 13, -3, 3);
  for (float t : {0.5f, 1.0f, 2.0f}) {
    const std::vector<double> softmax = Softmax(logits, t);
    const double p_max = *std::max_element(softmax.begin(), softmax.end());
    for (float min_p : {0.05f, 0.5f, 1.0f}) {
      std::set<int32_t> want;
      for (int32_t i = 0; i < 400; ++i) {
        if (softmax[i] >= min_p * p_max) want.insert(i);
      }
      SamplingParams params = Seeded(2);
      params.temperature = t;
      params.min_p = min_p;
      CHECK(Support(SamplingProbabilities(logits.data(), 400, params,
                                          NewSamplerState(params, {}))) ==
            want);
      for (int32_t tok : Draw(logits, params, 200)) {
        REQUIRE(want.count(tok) == 1);
      }
    }
  }
}

TEST_CASE("the same seed gives the same tokens and different seeds differ",
          "[sampler]") {
  const std::vector<float> logits = testing::RandomVector(1000, 14, -1, 1);
  SamplingParams params = Seeded(2024);
  params.top_p = 0.9f;
  params.top_k = 500;
  const std::vector<int32_t> a = Draw(logits, params, 100);
  CHECK(Draw(logits, params, 100) == a);
  CHECK(Draw(logits, Seeded(2025), 100) != a);
  // An unset seed is drawn once and kept, so the run can be replayed.
  SamplingParams unseeded;
  SamplerState s1 = NewSamplerState(unseeded, {});
  SamplerState s2 = NewSamplerState(unseeded, {});
  CHECK(s1.seed != s2.seed);
  CHECK(Draw(logits, Seeded(s1.seed), 20) == [&] {
    std::vector<int32_t> out;
    for (int i = 0; i < 20; ++i) {
      out.push_back(Sample(logits.data(), 1000, unseeded, s1).token);
    }
    return out;
  }());
}

TEST_CASE(
    "a sequence's tokens do not depend on other sequences sampled "
    "alongside it",
    "[sampler]") {
  const std::vector<float> la = testing::RandomVector(100, 15, -1, 1);
  const std::vector<float> lb = testing::RandomVector(100, 16, -1, 1);
  SamplingParams pa = Seeded(5);
  SamplingParams pb = Seeded(5);  // even the same seed
  pb.temperature = 0.0f;          // and a greedy neighbour
  const std::vector<int32_t> alone = Draw(la, pa, 50);
  SamplerState sa = NewSamplerState(pa, {});
  SamplerState sb = NewSamplerState(pb, {});
  std::vector<int32_t> interleaved;
  for (int i = 0; i < 50; ++i) {
    for (int j = 0; j < i % 3; ++j) Sample(lb.data(), 100, pb, sb);
    interleaved.push_back(Sample(la.data(), 100, pa, sa).token);
  }
  CHECK(interleaved == alone);
}

TEST_CASE("greedy and sampled steps consume one draw each", "[sampler]") {
  // Switching a step to greedy does not shift the later draws.
  const std::vector<float> logits = testing::RandomVector(50, 17, -1, 1);
  SamplingParams sampled = Seeded(8);
  SamplingParams greedy = Seeded(8);
  greedy.temperature = 0.0f;
  SamplerState a = NewSamplerState(sampled, {});
  SamplerState b = NewSamplerState(sampled, {});
  Sample(logits.data(), 50, sampled, a);
  Sample(logits.data(), 50, greedy, b);
  for (int i = 0; i < 10; ++i) {
    REQUIRE(Sample(logits.data(), 50, sampled, a).token ==
            Sample(logits.data(), 50, sampled, b).token);
  }
}

TEST_CASE("penalties change the logits exactly as the HF/vLLM formulas",
          "[sampler]") {
  const std::vector<float> logits = {2.0f, -1.0f, 0.5f, -0.25f, 3.0f, 1.0f};
  SamplingParams params = Seeded(1);
  params.repetition_penalty = 1.3f;
  params.presence_penalty = 0.4f;
  params.frequency_penalty = 0.7f;
  // Prompt: tokens 0 and 1. Output so far: 2 twice, 1 once, 3 once.
  const std::vector<int32_t> prompt = {1, 0, 1, 1};
  SamplerState state = NewSamplerState(params, prompt);
  std::map<int32_t, int> output;
  for (int32_t t : {2, 1, 2, 3}) {
    // Force the token by sampling from a one-hot row.
    std::vector<float> onehot(6, -1e30f);
    onehot[t] = 0.0f;
    REQUIRE(Sample(onehot.data(), 6, params, state).token == t);
    ++output[t];
  }
  const std::vector<float> got =
      PenalizedLogits(logits.data(), 6, params, state);
  for (int32_t i = 0; i < 6; ++i) {
    const bool seen = i == 0 || i == 1 || output.count(i);
    float want = logits[i];
    if (seen) want = want > 0 ? want / 1.3f : want * 1.3f;
    if (output.count(i)) want -= 0.7f * output[i] + 0.4f;
    INFO("token " << i);
    CHECK(got[i] == Approx(want).epsilon(1e-6));
  }
  // Tokens 4 and 5 were never seen: untouched.
  CHECK(got[4] == 3.0f);
  CHECK(got[5] == 1.0f);
  // The sampling distribution is the softmax of the penalised logits.
  const std::vector<double> p =
      SamplingProbabilities(logits.data(), 6, params, state);
  const std::vector<double> want = Softmax(got);
  for (int32_t i = 0; i < 6; ++i) CHECK(p[i] == Approx(want[i]));
}

TEST_CASE("without penalties no tokens are counted", "[sampler]") {
  std::vector<int32_t> prompt(1000);
  std::iota(prompt.begin(), prompt.end(), 0);
  SamplingParams params = Seeded(1);
  SamplerState state = NewSamplerState(params, prompt);
  const std::vector<float> logits(1000, 0.0f);
  Sample(logits.data(), 1000, params, state);
  CHECK(state.token_counts.empty());
  CHECK(state.num_generated == 1);
  params.presence_penalty = 0.5f;
  state = NewSamplerState(params, {5, 3, 5});
  CHECK(state.token_counts.size() == 2);  // distinct, sorted
  CHECK(state.token_counts[0].token == 3);
}

TEST_CASE("a strong frequency penalty stops greedy repetition", "[sampler]") {
  const std::vector<float> logits = {1.0f, 0.9f, 0.8f};
  SamplingParams params = Seeded(1);
  params.temperature = 0.0f;
  params.frequency_penalty = 2.0f;
  CHECK(Draw(logits, params, 3) == std::vector<int32_t>{0, 1, 2});
}

TEST_CASE(
    "logprob is the raw log-softmax in double within 1e-5, whatever "
    "the sampling parameters",
    "[sampler]") {
  const std::vector<float> logits = testing::RandomVector(32000, 18, -10, 10);
  const std::vector<double> want = LogSoftmax(logits);
  SamplingParams plain = Seeded(4);
  SamplingParams processed = Seeded(4);
  processed.temperature = 0.7f;
  processed.top_k = 40;
  processed.top_p = 0.8f;
  processed.repetition_penalty = 1.2f;
  processed.frequency_penalty = 0.5f;
  SamplingParams greedy = Seeded(4);
  greedy.temperature = 0.0f;
  for (const SamplingParams& params : {plain, processed, greedy}) {
    SamplerState state = NewSamplerState(params, {1, 2, 3});
    for (int i = 0; i < 5; ++i) {
      const SampleResult r = Sample(logits.data(), 32000, params, state);
      REQUIRE(std::abs(r.logprob - want[r.token]) < 1e-5);
    }
  }
}

TEST_CASE("top_logprobs are the n most likely raw tokens, sorted, ties by id",
          "[sampler]") {
  std::vector<float> logits = testing::RandomVector(5000, 19, -6, 6);
  logits[4000] = logits[30] = logits[31] = 7.0f;  // tie at the top
  logits[2] = 6.5f;
  const std::vector<double> want = LogSoftmax(logits);
  const std::vector<int32_t> order = ByProbability(logits);
  SamplingParams params = Seeded(6);
  params.top_logprobs = 20;
  params.repetition_penalty = 2.0f;  // must not affect the reported values
  SamplerState state = NewSamplerState(params, {30, 31});
  const SampleResult r = Sample(logits.data(), 5000, params, state);
  REQUIRE(r.top_logprobs.size() == 20);
  CHECK(r.top_logprobs[0].token == 30);
  CHECK(r.top_logprobs[1].token == 31);
  CHECK(r.top_logprobs[2].token == 4000);
  CHECK(r.top_logprobs[3].token == 2);
  for (int i = 0; i < 20; ++i) {
    CHECK(r.top_logprobs[i].token == order[i]);
    CHECK(std::abs(r.top_logprobs[i].logprob - want[order[i]]) < 1e-5);
  }
  params.top_logprobs = 0;
  CHECK(Sample(logits.data(), 5000, params, state).top_logprobs.empty());
  params.top_logprobs = 3;
  const std::vector<float> small = {0.0f, 1.0f};
  CHECK(Sample(small.data(), 2, params, state).top_logprobs.size() == 2);
}

TEST_CASE(
    "Validate rejects each bad field, naming it, the value and the "
    "allowed range",
    "[sampler]") {
  auto error = [](SamplingParams p) {
    const absl::Status s = p.Validate(1000);
    REQUIRE(s.code() == absl::StatusCode::kInvalidArgument);
    return std::string(s.message());
  };
  CHECK(SamplingParams().Validate(1000).ok());
  SamplingParams p;
  p.temperature = -1.0f;
  CHECK(error(p) == "temperature must be in [0, 100], got -1");
  p = {};
  p.temperature = std::nanf("");
  CHECK(error(p) == "temperature must be in [0, 100], got nan");
  p = {};
  p.top_k = 1001;
  CHECK(error(p) == "top_k must be in [0, 1000], got 1001");
  p = {};
  p.top_p = 0.0f;
  CHECK(error(p) == "top_p must be in (0, 1], got 0");
  p = {};
  p.min_p = 1.5f;
  CHECK(error(p) == "min_p must be in [0, 1], got 1.5");
  p = {};
  p.repetition_penalty = 0.0f;
  CHECK(error(p) == "repetition_penalty must be in (0, 10], got 0");
  p = {};
  p.presence_penalty = 2.5f;
  CHECK(error(p) == "presence_penalty must be in [-2, 2], got 2.5");
  p = {};
  p.frequency_penalty = -3.0f;
  CHECK(error(p) == "frequency_penalty must be in [-2, 2], got -3");
  p = {};
  p.max_tokens = 0;
  CHECK(error(p) == "max_tokens must be in [1, 2147483647], got 0");
  p = {};
  p.stop_token_ids = {5, 1000};
  CHECK(error(p) == "stop_token_ids[1] must be in [0, 1000), got 1000");
  p = {};
  p.stop_strings = {"a", ""};
  CHECK(error(p) == "stop_strings[1] must be 1 to 256 bytes long, got 0");
  p = {};
  p.stop_strings = std::vector<std::string>(17, "x");
  CHECK(error(p) == "stop_strings must have at most 16 entries, got 17");
  p = {};
  p.top_logprobs = 21;
  CHECK(error(p) == "top_logprobs must be in [0, 20], got 21");
  // Edges of the ranges are allowed.
  p = {};
  p.temperature = 100.0f;
  p.top_k = 1000;
  p.top_p = 1.0f;
  p.min_p = 1.0f;
  p.repetition_penalty = 10.0f;
  p.presence_penalty = -2.0f;
  p.frequency_penalty = 2.0f;
  p.stop_token_ids = {0, 999};
  p.stop_strings = {std::string(256, 'x')};
  p.top_logprobs = 20;
  CHECK(p.Validate(1000).ok());
}

TEST_CASE(
    "a stop string spanning pieces is found, the text before it is "
    "emitted, the text that might start it is held back",
    "[sampler]") {
  StopStringMatcher m({"</s>", "\n\nUser:"});
  StopStringMatcher::Result r = m.Append("Hello <");
  CHECK(r.text == "Hello ");
  CHECK_FALSE(r.stopped);
  CHECK(m.held_bytes() == 1);
  r = m.Append("b> ok\n");  // "<b" is no stop string: released
  CHECK(r.text == "<b> ok");
  r = m.Append("\nUs");
  CHECK(r.text.empty());
  CHECK(m.held_bytes() == 4);
  r = m.Append("er: more");
  CHECK(r.text.empty());
  CHECK(r.stopped);
  CHECK(m.matched_index() == 1);
  // After the stop everything is dropped.
  r = m.Append("tail");
  CHECK(r.stopped);
  CHECK(r.text.empty());
  CHECK(m.Flush().empty());
}

TEST_CASE("Flush releases the held-back text", "[sampler]") {
  StopStringMatcher m({"STOP"});
  CHECK(m.Append("abc ST").text == "abc ");
  CHECK(m.Flush() == "ST");
  StopStringMatcher none({});
  CHECK(none.Append("anything").text == "anything");
  CHECK(none.Flush().empty());
}

TEST_CASE("stop-string results do not depend on how the text is split",
          "[sampler]") {
  const std::vector<std::string> stops = {"xaby", "ab", "bbbc", "aaa"};
  const std::vector<std::string> texts = {"zzxabyq", "xaxabbbbcz", "aab aa",
                                          "bbbbc",   "aabaaa",     "no match"};
  for (const std::string& text : texts) {
    // Reference: character by character.
    StopStringMatcher ref(stops);
    std::string want;
    bool want_stopped = false;
    for (char c : text) {
      StopStringMatcher::Result r = ref.Append(std::string(1, c));
      want += r.text;
      if ((want_stopped = r.stopped)) break;
    }
    if (!want_stopped) want += ref.Flush();
    // Every split into up to three pieces.
    for (size_t i = 0; i <= text.size(); ++i) {
      for (size_t j = i; j <= text.size(); ++j) {
        StopStringMatcher m(stops);
        std::string got;
        bool stopped = false;
        for (std::string piece :
             {text.substr(0, i), text.substr(i, j - i), text.substr(j)}) {
          StopStringMatcher::Result r = m.Append(piece);
          got += r.text;
          stopped = r.stopped;
          if (stopped) break;
        }
        if (!stopped) got += m.Flush();
        INFO(text << " split at " << i << ", " << j);
        REQUIRE(got == want);
        REQUIRE(stopped == want_stopped);
      }
    }
  }
  // The first stop string to complete wins: "ab" completes before "xaby".
  StopStringMatcher m(stops);
  CHECK(m.Append("zzxaby").text == "zzx");
}

TEST_CASE("StopChecker ends on a stop token, a stop string or max tokens",
          "[sampler]") {
  SamplingParams params;
  params.max_tokens = 3;
  params.stop_token_ids = {2};
  params.stop_strings = {"END"};
  {
    StopChecker c(params);
    CHECK(c.Next(7, "a E", 1).text == "a ");
    const StopChecker::Step s = c.Next(2, "</s>", 2);
    CHECK(s.finish == FinishReason::kStopToken);
    CHECK(s.text == "E");  // holdback released, the stop token's text not
    CHECK(c.Next(7, "more", 3).finish == FinishReason::kStopToken);
  }
  {
    StopChecker c(params);
    CHECK(c.Next(7, "xE", 1).finish == FinishReason::kNone);
    const StopChecker::Step s = c.Next(8, "ND!", 2);
    CHECK(s.finish == FinishReason::kStopString);
    CHECK(s.text.empty());
  }
  {
    StopChecker c(params);
    CHECK(c.Next(7, "a", 1).finish == FinishReason::kNone);
    CHECK(c.Next(7, "b", 2).finish == FinishReason::kNone);
    const StopChecker::Step s = c.Next(7, "cEN", 3);
    CHECK(s.finish == FinishReason::kMaxTokens);
    CHECK(s.text == "cEN");
  }
  {
    // A stop string completed by the last allowed token is a stop.
    StopChecker c(params);
    c.Next(7, "a", 1);
    c.Next(7, "EN", 2);
    CHECK(c.Next(7, "D", 3).finish == FinishReason::kStopString);
  }
  CHECK(FinishReasonName(FinishReason::kMaxTokens) == "max_tokens");
}

TEST_CASE("max tokens counts the sampler state's generated tokens",
          "[sampler]") {
  SamplingParams params = Seeded(1);
  params.max_tokens = 5;
  const std::vector<float> logits = {0.0f, 0.0f};
  SamplerState state = NewSamplerState(params, {});
  StopChecker stop(params);
  int steps = 0;
  FinishReason finish = FinishReason::kNone;
  while (finish == FinishReason::kNone) {
    const SampleResult r = Sample(logits.data(), 2, params, state);
    finish = stop.Next(r.token, "x", state.num_generated).finish;
    ++steps;
  }
  CHECK(steps == 5);
  CHECK(finish == FinishReason::kMaxTokens);
}

}  // namespace
}  // namespace linserve::engine
