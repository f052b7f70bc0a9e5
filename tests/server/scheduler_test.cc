// Specification of the continuous-batching scheduler (server/scheduler.h):
// jobs in a batch give what they give alone, the session's last token stays
// pending, failed and cancelled jobs restore the session, Stop keeps what
// was generated, a long ingest does not stall decoding, a slow reader only
// slows itself, and admission is bounded. Runs the real engine on a tiny
// golden fixture (no tokenizer: token ids only).
#include "server/scheduler.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <future>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "engine/model.h"
#include "engine/session_extras.h"

namespace linserve::server {
namespace {

using engine::FinishReason;
using engine::Model;
using engine::SamplingParams;

std::unique_ptr<Model> LoadFixture(const std::string& name = "gated_deltanet") {
  absl::StatusOr<std::unique_ptr<Model>> model =
      Model::Load(std::string(LINSERVE_TEST_DATA_DIR) + "/" + name);
  REQUIRE(model.ok());
  return *std::move(model);
}

std::unique_ptr<Session> NewSession(const Model& model) {
  auto s = std::make_unique<Session>();
  s->state = model.NewSession();
  s->extras = engine::NewSessionExtras(model.vocab_size());
  return s;
}

std::vector<int32_t> RandomTokens(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int32_t& x : t) {
    x = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab - 3)) + 3;
  }
  return t;
}

// Collects what a job reports; thread-safe, waitable.
class Collector : public JobObserver {
 public:
  bool CanAcceptOutput() override { return !blocked_.load(); }
  void OnChunk(GeneratedChunk chunk) override {
    std::lock_guard<std::mutex> lock(mu_);
    tokens_.insert(tokens_.end(), chunk.token_ids.begin(),
                   chunk.token_ids.end());
    ++chunks_;
  }
  void OnInputConsumed(int64_t n) override {
    std::lock_guard<std::mutex> lock(mu_);
    consumed_ += n;
  }
  void OnGenerateFinished(absl::StatusOr<GenerateOutcome> o) override {
    Finish(o.status(), [&] { generate_ = *std::move(o); });
  }
  void OnScoreFinished(absl::StatusOr<ScoreOutcome> o) override {
    Finish(o.status(), [&] { score_ = *std::move(o); });
  }
  void OnIngestFinished(absl::StatusOr<IngestOutcome> o) override {
    Finish(o.status(), [&] { ingest_ = *std::move(o); });
  }

  absl::Status Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    REQUIRE(
        cv_.wait_for(lock, std::chrono::seconds(60), [&] { return done_; }));
    CHECK(extra_finishes_ == 0);  // exactly one OnFinished per job
    return status_;
  }
  bool done() {
    std::lock_guard<std::mutex> lock(mu_);
    return done_;
  }
  std::vector<int32_t> tokens() {
    std::lock_guard<std::mutex> lock(mu_);
    return tokens_;
  }
  int64_t tokens_so_far() {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int64_t>(tokens_.size());
  }
  void set_blocked(bool b) { blocked_.store(b); }

  GenerateOutcome generate_;
  ScoreOutcome score_;
  IngestOutcome ingest_;

 private:
  template <typename F>
  void Finish(const absl::Status& status, F&& on_ok) {
    std::lock_guard<std::mutex> lock(mu_);
    // Catch2 is not thread-safe: count here, check on the test's thread.
    if (done_) ++extra_finishes_;
    status_ = status;
    if (status.ok()) on_ok();
    done_ = true;
    cv_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int32_t> tokens_;
  int64_t chunks_ = 0, consumed_ = 0;
  bool done_ = false;
  int extra_finishes_ = 0;
  absl::Status status_;
  std::atomic<bool> blocked_{false};
};

std::shared_ptr<GenerateJob> MakeGenerate(Session* s, Collector* c,
                                          std::vector<int32_t> prompt,
                                          SamplingParams params) {
  auto job = std::make_shared<GenerateJob>();
  job->session = s;
  job->observer = c;
  job->prompt = std::move(prompt);
  job->params = std::move(params);
  return job;
}

SamplingParams Greedy(int max_tokens) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.max_tokens = max_tokens;
  return p;
}

SamplingParams Seeded(int max_tokens, uint64_t seed) {
  SamplingParams p;
  p.temperature = 0.9f;
  p.top_p = 0.95f;
  p.repetition_penalty = 1.1f;
  p.max_tokens = max_tokens;
  p.seed = seed;
  return p;
}

// Greedy generation run directly on the engine, the reference.
std::vector<int32_t> GreedyDirect(Model& model,
                                  const std::vector<int32_t>& prompt, int n) {
  auto state = model.NewSession();
  std::vector<float> logits(static_cast<size_t>(model.vocab_size()));
  REQUIRE(
      model.Prefill(*state, prompt, engine::LogitsMode::kLast, logits.data())
          .ok());
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    const int32_t t = static_cast<int32_t>(
        std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(t);
    if (i + 1 < n) {
      engine::SessionState* states[] = {state.get()};
      REQUIRE(model.DecodeStep(states, {&t, 1}, logits.data()).ok());
    }
  }
  return out;
}

bool SameState(const Session& a, const Session& b) {
  return a.state->num_tokens() == b.state->num_tokens() &&
         std::memcmp(a.state->data().data(), b.state->data().data(),
                     a.state->data().size() * sizeof(float)) == 0 &&
         a.extras == b.extras;
}

TEST_CASE(
    "a greedy generate job gives the engine's own greedy tokens, and "
    "leaves its last token pending in the session") {
  auto model = LoadFixture();
  Scheduler scheduler(*model, nullptr, {});
  const std::vector<int32_t> prompt = RandomTokens(37, model->vocab_size(), 1);
  auto session = NewSession(*model);
  Collector c;
  REQUIRE(scheduler.Submit(MakeGenerate(session.get(), &c, prompt, Greedy(12)))
              .ok());
  REQUIRE(c.Wait().ok());
  // Greedy over the fixture's vocabulary rarely hits the stop token 2; the
  // reference stops at it too.
  const std::vector<int32_t> want = GreedyDirect(*model, prompt, 12);
  CHECK(c.tokens() == want);
  CHECK(c.generate_.finish == FinishReason::kMaxTokens);
  CHECK(c.generate_.prompt_tokens == 37);
  CHECK(c.generate_.generated_tokens == 12);
  CHECK(c.generate_.session_position == 37 + 12);
  CHECK(session->state->num_tokens() == 37 + 11);
  REQUIRE(session->extras.pending_token.has_value());
  CHECK(*session->extras.pending_token == want.back());
}

TEST_CASE(
    "generating in two calls on a session equals one call over the "
    "same span (greedy), the second call with an empty prompt") {
  auto model = LoadFixture();
  Scheduler scheduler(*model, nullptr, {});
  const std::vector<int32_t> prompt = RandomTokens(20, model->vocab_size(), 2);
  auto session = NewSession(*model);
  Collector first, second;
  REQUIRE(
      scheduler.Submit(MakeGenerate(session.get(), &first, prompt, Greedy(6)))
          .ok());
  REQUIRE(first.Wait().ok());
  REQUIRE(scheduler.Submit(MakeGenerate(session.get(), &second, {}, Greedy(6)))
              .ok());
  REQUIRE(second.Wait().ok());
  std::vector<int32_t> both = first.tokens();
  const std::vector<int32_t> rest = second.tokens();
  both.insert(both.end(), rest.begin(), rest.end());
  CHECK(both == GreedyDirect(*model, prompt, 12));
  CHECK(second.generate_.session_position == 32);
}

TEST_CASE(
    "64 seeded sampling jobs batched together give exactly the tokens "
    "each gives alone") {
  auto model = LoadFixture();
  constexpr int kJobs = 64;
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < kJobs; ++i) {
    prompts.push_back(
        RandomTokens(5 + 7 * i % 50, model->vocab_size(), 100 + i));
  }
  std::vector<std::vector<int32_t>> alone(kJobs);
  {
    Scheduler scheduler(*model, nullptr, {});
    for (int i = 0; i < kJobs; ++i) {
      auto s = NewSession(*model);
      Collector c;
      REQUIRE(scheduler
                  .Submit(MakeGenerate(s.get(), &c, prompts[i],
                                       Seeded(10, 1000 + i)))
                  .ok());
      REQUIRE(c.Wait().ok());
      alone[i] = c.tokens();
    }
  }
  SchedulerOptions options;
  options.max_batch = kJobs;
  options.prefill_chunk = 16;  // prompts spread over steps, batches mix
  Scheduler scheduler(*model, nullptr, options);
  std::vector<std::unique_ptr<Session>> sessions;
  std::vector<std::unique_ptr<Collector>> collectors;
  for (int i = 0; i < kJobs; ++i) {
    sessions.push_back(NewSession(*model));
    collectors.push_back(std::make_unique<Collector>());
    REQUIRE(
        scheduler
            .Submit(MakeGenerate(sessions.back().get(), collectors.back().get(),
                                 prompts[i], Seeded(10, 1000 + i)))
            .ok());
  }
  for (int i = 0; i < kJobs; ++i) {
    REQUIRE(collectors[i]->Wait().ok());
    CHECK(collectors[i]->tokens() == alone[i]);
  }
}

TEST_CASE(
    "ingesting a text in chunks and then scoring the rest equals "
    "scoring the whole text from an empty context") {
  auto model = LoadFixture();
  SchedulerOptions options;
  options.prefill_chunk = 24;  // several steps for every job
  Scheduler scheduler(*model, nullptr, options);
  const std::vector<int32_t> text = RandomTokens(300, model->vocab_size(), 3);
  const size_t split = 171;

  auto whole_session = NewSession(*model);
  Collector whole;
  auto whole_job = std::make_shared<ScoreJob>();
  whole_job->session = whole_session.get();
  whole_job->observer = &whole;
  whole_job->tokens = text;
  REQUIRE(scheduler.Submit(whole_job).ok());
  REQUIRE(whole.Wait().ok());
  REQUIRE(whole.score_.score.count == 299);
  // Not appended: the session is untouched.
  CHECK(whole_session->state->num_tokens() == 0);
  CHECK_FALSE(whole_session->extras.pending_token.has_value());

  auto session = NewSession(*model);
  Collector ingest;
  auto ingest_job = std::make_shared<IngestJob>();
  ingest_job->session = session.get();
  ingest_job->observer = &ingest;
  REQUIRE(scheduler.Submit(ingest_job).ok());
  for (size_t begin = 0; begin < split; begin += 50) {
    const size_t end = std::min(split, begin + 50);
    ingest_job->AppendInput({text.begin() + begin, text.begin() + end});
    scheduler.Wake();
  }
  ingest_job->FinishInput();
  scheduler.Wake();
  REQUIRE(ingest.Wait().ok());
  CHECK(ingest.ingest_.tokens_ingested == static_cast<int64_t>(split));
  CHECK(ingest.ingest_.session_position == static_cast<int64_t>(split));

  Collector rest;
  auto rest_job = std::make_shared<ScoreJob>();
  rest_job->session = session.get();
  rest_job->observer = &rest;
  rest_job->tokens.assign(text.begin() + split, text.end());
  rest_job->append_to_session = true;
  REQUIRE(scheduler.Submit(rest_job).ok());
  REQUIRE(rest.Wait().ok());
  // In a non-empty session every token of the input is scored.
  REQUIRE(rest.score_.score.count == static_cast<int64_t>(300 - split));
  CHECK(rest.score_.scored_tokens ==
        std::vector<int32_t>(text.begin() + split, text.end()));
  for (size_t i = 0; i < 300 - split; ++i) {
    CHECK(rest.score_.score.logprobs[i] ==
          Approx(whole.score_.score.logprobs[split - 1 + i]).margin(1e-4));
  }
  CHECK(rest.score_.session_position == 300);
}

TEST_CASE(
    "a cancelled generate job and one past its deadline leave the "
    "session bit for bit as before the call") {
  auto model = LoadFixture();
  Scheduler scheduler(*model, nullptr, {});
  auto session = NewSession(*model);
  {
    Collector c;
    REQUIRE(scheduler
                .Submit(MakeGenerate(session.get(), &c,
                                     RandomTokens(40, model->vocab_size(), 4),
                                     Greedy(3)))
                .ok());
    REQUIRE(c.Wait().ok());
  }
  const Session before{"",
                       std::make_unique<engine::SessionState>(*session->state),
                       session->extras};

  Collector cancelled;
  auto job =
      MakeGenerate(session.get(), &cancelled,
                   RandomTokens(500, model->vocab_size(), 5), Greedy(1000000));
  REQUIRE(scheduler.Submit(job).ok());
  while (cancelled.tokens_so_far() < 5) std::this_thread::yield();
  job->Cancel();
  scheduler.Wake();
  CHECK(cancelled.Wait().code() == absl::StatusCode::kCancelled);
  CHECK(SameState(*session, before));

  Collector expired;
  auto late =
      MakeGenerate(session.get(), &expired,
                   RandomTokens(10, model->vocab_size(), 6), Greedy(1000000));
  late->deadline = SteadyClock::now() + std::chrono::milliseconds(50);
  REQUIRE(scheduler.Submit(late).ok());
  CHECK(expired.Wait().code() == absl::StatusCode::kDeadlineExceeded);
  CHECK(SameState(*session, before));
}

TEST_CASE(
    "Stop ends a generation normally and the session keeps every "
    "token that was handed out") {
  auto model = LoadFixture();
  Scheduler scheduler(*model, nullptr, {});
  auto session = NewSession(*model);
  const std::vector<int32_t> prompt = RandomTokens(16, model->vocab_size(), 7);
  SamplingParams params = Greedy(1000000);
  params.stop_token_ids.clear();
  Collector c;
  auto job = MakeGenerate(session.get(), &c, prompt, params);
  REQUIRE(scheduler.Submit(job).ok());
  while (c.tokens_so_far() < 8) std::this_thread::yield();
  job->Stop();
  REQUIRE(c.Wait().ok());
  CHECK(c.generate_.stopped_by_caller);
  const std::vector<int32_t> got = c.tokens();
  CHECK(c.generate_.generated_tokens == static_cast<int64_t>(got.size()));
  CHECK(session->position() == 16 + static_cast<int64_t>(got.size()));
  CHECK(got == GreedyDirect(*model, prompt, static_cast<int>(got.size())));
}

TEST_CASE(
    "a long ingest advances chunk by chunk while a generation keeps "
    "getting a token every step") {
  auto model = LoadFixture();
  SchedulerOptions options;
  options.prefill_chunk = 64;
  options.step_token_budget = 128;
  Scheduler scheduler(*model, nullptr, options);
  auto doc_session = NewSession(*model);
  Collector ingest;
  auto ingest_job = std::make_shared<IngestJob>();
  ingest_job->session = doc_session.get();
  ingest_job->observer = &ingest;
  ingest_job->AppendInput(RandomTokens(40000, model->vocab_size(), 8));
  ingest_job->FinishInput();
  REQUIRE(scheduler.Submit(ingest_job).ok());

  auto chat_session = NewSession(*model);
  Collector chat;
  REQUIRE(scheduler
              .Submit(MakeGenerate(chat_session.get(), &chat,
                                   RandomTokens(10, model->vocab_size(), 9),
                                   Greedy(50)))
              .ok());
  REQUIRE(chat.Wait().ok());
  // 50 tokens take 50 steps; the ingest needs 40000 / 64 = 625.
  CHECK_FALSE(ingest.done());
  REQUIRE(ingest.Wait().ok());
  CHECK(ingest.ingest_.tokens_ingested == 40000);
}

TEST_CASE("a caller that reads nothing holds back its own job only") {
  auto model = LoadFixture();
  Scheduler scheduler(*model, nullptr, {});
  auto slow_session = NewSession(*model);
  auto fast_session = NewSession(*model);
  Collector slow, fast;
  slow.set_blocked(true);
  REQUIRE(scheduler
              .Submit(MakeGenerate(slow_session.get(), &slow,
                                   RandomTokens(10, model->vocab_size(), 10),
                                   Greedy(20)))
              .ok());
  REQUIRE(scheduler
              .Submit(MakeGenerate(fast_session.get(), &fast,
                                   RandomTokens(10, model->vocab_size(), 11),
                                   Greedy(20)))
              .ok());
  REQUIRE(fast.Wait().ok());
  CHECK_FALSE(slow.done());
  CHECK(slow.tokens_so_far() == 0);
  slow.set_blocked(false);
  scheduler.Wake();
  REQUIRE(slow.Wait().ok());
  CHECK(slow.tokens_so_far() == 20);
}

TEST_CASE(
    "admission is bounded: past max_queued Submit fails at once with "
    "ResourceExhausted, and after StopAccepting with Unavailable") {
  auto model = LoadFixture();
  SchedulerOptions options;
  options.max_batch = 1;
  options.max_queued = 2;
  Scheduler scheduler(*model, nullptr, options);
  std::vector<std::unique_ptr<Session>> sessions;
  std::vector<std::unique_ptr<Collector>> collectors;
  std::vector<std::shared_ptr<GenerateJob>> jobs;
  for (int i = 0; i < 3; ++i) {
    sessions.push_back(NewSession(*model));
    collectors.push_back(std::make_unique<Collector>());
    jobs.push_back(MakeGenerate(sessions.back().get(), collectors.back().get(),
                                RandomTokens(5, model->vocab_size(), 20 + i),
                                Greedy(1000000)));
    REQUIRE(scheduler.Submit(jobs.back()).ok());
    // The first one is admitted into the single slot before the next.
    if (i == 0) {
      while (scheduler.num_running() == 0) std::this_thread::yield();
    }
  }
  auto extra_session = NewSession(*model);
  Collector extra;
  const absl::Status full = scheduler.Submit(
      MakeGenerate(extra_session.get(), &extra, {5}, Greedy(1)));
  CHECK(full.code() == absl::StatusCode::kResourceExhausted);
  CHECK(absl::StrContains(full.message(), "--max_queued=2"));
  scheduler.StopAccepting();
  CHECK(scheduler
            .Submit(MakeGenerate(extra_session.get(), &extra, {5}, Greedy(1)))
            .code() == absl::StatusCode::kUnavailable);
  for (auto& job : jobs) job->Cancel();
  scheduler.Wake();
  for (auto& c : collectors) {
    CHECK(c->Wait().code() == absl::StatusCode::kCancelled);
  }
}

TEST_CASE(
    "bad input fails the job with InvalidArgument and leaves the "
    "session as it was") {
  auto model = LoadFixture();
  Scheduler scheduler(*model, nullptr, {});
  auto session = NewSession(*model);
  Collector empty;
  REQUIRE(scheduler.Submit(MakeGenerate(session.get(), &empty, {}, Greedy(3)))
              .ok());
  CHECK(empty.Wait().code() == absl::StatusCode::kInvalidArgument);

  Collector bad_ingest;
  auto job = std::make_shared<IngestJob>();
  job->session = session.get();
  job->observer = &bad_ingest;
  job->AppendInput({5, 6, static_cast<int32_t>(model->vocab_size())});
  job->FinishInput();
  REQUIRE(scheduler.Submit(job).ok());
  CHECK(bad_ingest.Wait().code() == absl::StatusCode::kInvalidArgument);
  CHECK(session->position() == 0);

  SamplingParams bad = Greedy(3);
  bad.top_p = 2.0f;
  Collector bad_params;
  REQUIRE(scheduler.Submit(MakeGenerate(session.get(), &bad_params, {5}, bad))
              .ok());
  CHECK(bad_params.Wait().code() == absl::StatusCode::kInvalidArgument);
  CHECK(session->position() == 0);
}

}  // namespace
}  // namespace linserve::server
