// The continuous-batching engine loop (server/scheduler.h).
//
// Each job becomes a Running entry with its phase (feeding input, or
// decoding one token per step), its snapshot for rollback and its sampler.
// A step: drop cancelled / expired jobs (restoring their sessions), run one
// batched DecodeStep over every decoding job whose caller has room for
// output and sample its rows (on the OpenMP team when there are several),
// then hand the rest of the step's token budget to the jobs that
// have input to feed, round robin from where the previous step stopped.
// After each step that worked on a job, the job's progress goes to its
// session (Session::progress: two relaxed atomic stores, for GetSession).
#include "server/scheduler.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/session_extras.h"
#include "kernels/parallel_for.h"
#include "kernels/thread_affinity.h"

namespace linserve::server {
namespace {

double SecondsBetween(SteadyClock::time_point a, SteadyClock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// How long the loop sleeps when no job can progress before looking again
// (cancellations and deadlines are noticed within this, or at once through
// Wake).
constexpr std::chrono::milliseconds kIdlePoll{5};

// Rows of a decode step worth a sampling thread of their own: a row takes
// about 5 us (vocab 4096), a fork of the team a few.
constexpr int64_t kMinRowsPerSamplingThread = 4;

}  // namespace

void IngestJob::AppendInput(std::vector<int32_t> tokens, int64_t text_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  input_.insert(input_.end(), tokens.begin(), tokens.end());
  text_bytes_ += text_bytes;
}

void IngestJob::FinishInput() {
  std::lock_guard<std::mutex> lock(mu_);
  input_finished_ = true;
}

int64_t IngestJob::pending_input() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(input_.size());
}

// One admitted job and everything the engine thread keeps for it.
struct Scheduler::Running {
  enum class Kind { kGenerate, kScore, kIngest };

  std::shared_ptr<Job> job;
  Kind kind = Kind::kGenerate;
  GenerateJob* generate = nullptr;
  ScoreJob* score = nullptr;
  IngestJob* ingest = nullptr;

  // The session before the job, restored on failure (and after a score
  // that does not append).
  std::unique_ptr<engine::SessionState> snapshot_state;
  engine::SessionExtras snapshot_extras;

  // Tokens still to feed, from `next_input` on. Generate: the session's
  // pending token and the prompt, all fed before sampling. Score: the same,
  // scored in chunks that overlap by one token (the last token of a chunk
  // is scored but not fed; it opens the next chunk). Ingest: unused (input
  // comes from the job's queue; `held` is the unfed last token).
  std::vector<int32_t> input;
  size_t next_input = 0;
  std::optional<int32_t> held;  // ingest

  SteadyClock::time_point first_step{};
  bool started = false;
  int64_t prompt_tokens = 0;
  // 1 when `input` starts with the session's pending token (already
  // counted in its position), else 0.
  size_t pending_in_input = 0;
  // The session's progress.tokens_fed at admission: what the lease
  // holder's earlier jobs added (the turns of a Chat before this one).
  int64_t fed_before = 0;

  // Generate.
  bool decoding = false;
  int32_t next_token = 0;  // sampled, fed by the next decode step
  engine::SamplerState sampler;
  bool uses_session_stream = false;  // continues the session's RNG
  std::optional<engine::StopChecker> stop;
  std::optional<engine::StreamingDetokenizer> detokenizer;
  std::vector<int32_t> generated;
  bool first_token_sent = false;
  SteadyClock::time_point first_token{};
  SteadyClock::time_point last_token{};

  // Score.
  ScoreOutcome score_outcome;

  // Ingest.
  int64_t ingested = 0;
};

Scheduler::Scheduler(engine::Model& model, const engine::Tokenizer* tokenizer,
                     const SchedulerOptions& options, Metrics* metrics)
    : model_(model),
      tokenizer_(tokenizer),
      options_(options),
      metrics_(metrics) {
  thread_ = std::thread([this] { Loop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutting_down_ = true;
    accepting_ = false;
  }
  cv_.notify_all();
  thread_.join();
}

absl::Status Scheduler::Submit(std::shared_ptr<Job> job) {
  if (job == nullptr || job->session == nullptr ||
      job->session->state == nullptr || job->observer == nullptr) {
    return absl::InvalidArgumentError(
        "Scheduler::Submit: a job needs a session and an observer");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!accepting_) {
      return absl::UnavailableError(
          "server is draining and takes no new calls; retry on another "
          "replica");
    }
    if (static_cast<int64_t>(queue_.size()) >= options_.max_queued) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "server busy: ", queue_.size(),
          " calls are already waiting for the engine (--max_queued=",
          options_.max_queued, "); retry with backoff"));
    }
    job->submitted_ = SteadyClock::now();
    queue_.push_back(std::move(job));
    wake_ = true;
  }
  cv_.notify_one();
  return absl::OkStatus();
}

void Scheduler::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake_ = true;
  }
  cv_.notify_one();
}

void Scheduler::StopAccepting() {
  std::lock_guard<std::mutex> lock(mu_);
  accepting_ = false;
}

int64_t Scheduler::num_running() const { return running_count_.load(); }

int64_t Scheduler::num_waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(queue_.size());
}

namespace {

// Restores the session of a job that did not complete.
void Restore(Session& session, std::unique_ptr<engine::SessionState>& state,
             engine::SessionExtras& extras) {
  if (state == nullptr) return;
  *session.state = *state;
  session.extras = std::move(extras);
  state.reset();
}

JobTimings TimingsOf(SteadyClock::time_point submitted,
                     SteadyClock::time_point first_step, bool started,
                     std::optional<SteadyClock::time_point> first_token) {
  const SteadyClock::time_point now = SteadyClock::now();
  JobTimings t;
  t.queue_seconds = SecondsBetween(submitted, started ? first_step : now);
  t.time_to_first_token_seconds =
      first_token.has_value() ? SecondsBetween(submitted, *first_token) : 0.0;
  t.total_seconds = SecondsBetween(submitted, now);
  return t;
}

}  // namespace

void Scheduler::Loop() {
  // The primary thread of every OpenMP team of the engine: on the first
  // OpenMP place when OpenMP binds threads, where libgomp would have put the
  // process's initial thread (kernels/thread_affinity.h; main() unpinned
  // the threads the server creates).
  kernels::PinCallingThreadToFirstPlace();
  std::vector<std::unique_ptr<Running>> running;
  size_t round_robin = 0;
  const int vocab = static_cast<int>(model_.vocab_size());
  std::vector<float> logits;
  std::vector<engine::SampleResult> samples;  // one per decode row

  // The first step that works on a job.
  auto mark_started = [&](Running& r, SteadyClock::time_point now) {
    r.started = true;
    r.first_step = now;
    if (metrics_ != nullptr) {
      metrics_->RecordQueueTime(SecondsBetween(r.job->submitted_, now));
    }
  };

  // Publishes a job's progress for GetSession: `added` tokens added to the
  // session by this job so far, `queued` waiting to be fed. Before the
  // job's OnFinished (after it, the session may be gone).
  auto publish = [&](Running& r, int64_t added, int64_t queued,
                     int64_t bytes_received = 0) {
    InFlightProgress& progress = r.job->session->progress;
    progress.tokens_fed.store(r.fed_before + added, std::memory_order_relaxed);
    progress.tokens_queued.store(queued, std::memory_order_relaxed);
    progress.bytes_received.store(bytes_received, std::memory_order_relaxed);
  };
  // Prompt (or scored input) tokens of a generate or score job fed so far.
  auto input_fed = [](const Running& r) {
    return static_cast<int64_t>(r.next_input) -
           std::min(static_cast<int64_t>(r.next_input),
                    static_cast<int64_t>(r.pending_in_input));
  };

  // Ends a job with an error: its session goes back to the snapshot.
  auto fail = [&](Running& r, absl::Status status) {
    Restore(*r.job->session, r.snapshot_state, r.snapshot_extras);
    publish(r, 0, 0);
    switch (r.kind) {
      case Running::Kind::kGenerate:
        r.job->observer->OnGenerateFinished(std::move(status));
        break;
      case Running::Kind::kScore:
        r.job->observer->OnScoreFinished(std::move(status));
        break;
      case Running::Kind::kIngest:
        r.job->observer->OnIngestFinished(std::move(status));
        break;
    }
  };

  // Sets up a newly admitted job; false (after reporting) if it cannot run.
  auto admit = [&](Running& r) -> bool {
    Job& job = *r.job;
    Session& session = *job.session;
    if (job.restore_on_failure) {
      r.snapshot_state = std::make_unique<engine::SessionState>(*session.state);
      r.snapshot_extras = session.extras;
    }
    if (session.extras.seen.empty()) {
      session.extras = engine::NewSessionExtras(model_.vocab_size());
    }
    r.fed_before = session.progress.tokens_fed.load(std::memory_order_relaxed);
    if (session.extras.pending_token.has_value()) {
      r.input.push_back(*session.extras.pending_token);
      r.pending_in_input = 1;
    }
    if (auto* g = dynamic_cast<GenerateJob*>(&job)) {
      r.kind = Running::Kind::kGenerate;
      r.generate = g;
      r.input.insert(r.input.end(), g->prompt.begin(), g->prompt.end());
      r.prompt_tokens = static_cast<int64_t>(g->prompt.size());
      if (r.input.empty()) {
        fail(r, absl::InvalidArgumentError(
                    "nothing to generate from: the prompt is empty and the "
                    "session has no tokens; send a prompt"));
        return false;
      }
      if (absl::Status valid = g->params.Validate(vocab); !valid.ok()) {
        fail(r, std::move(valid));
        return false;
      }
      session.extras.MarkSeen(g->prompt);
      // The random stream: the request's seed, else the session's own
      // stream (started from a random seed the first time).
      engine::SamplingParams params = g->params;
      if (!params.seed.has_value()) {
        if (!session.extras.rng_seeded) {
          engine::SamplingParams draw = params;
          const engine::SamplerState fresh = engine::NewSamplerState(draw, {});
          session.extras.seed = fresh.seed;
          session.extras.rng = fresh.rng;
          session.extras.rng_seeded = true;
        }
        params.seed = session.extras.seed;
        r.uses_session_stream = true;
      }
      std::vector<int32_t> context;
      if (params.HasPenalties()) context = session.extras.SeenTokens();
      r.sampler = engine::NewSamplerState(params, context);
      if (r.uses_session_stream) r.sampler.rng = session.extras.rng;
      r.stop.emplace(params);
      if (tokenizer_ != nullptr) {
        r.detokenizer.emplace(*tokenizer_, /*continues_text=*/true);
      }
    } else if (auto* s = dynamic_cast<ScoreJob*>(&job)) {
      r.kind = Running::Kind::kScore;
      r.score = s;
      r.input.insert(r.input.end(), s->tokens.begin(), s->tokens.end());
      r.prompt_tokens = static_cast<int64_t>(s->tokens.size());
      session.extras.MarkSeen(s->tokens);
      if (!s->append_to_session && r.snapshot_state == nullptr) {
        r.snapshot_state =
            std::make_unique<engine::SessionState>(*session.state);
        r.snapshot_extras = session.extras;
      }
    } else if (auto* i = dynamic_cast<IngestJob*>(&job)) {
      r.kind = Running::Kind::kIngest;
      r.ingest = i;
      r.held = session.extras.pending_token;
      r.input.clear();
    } else {
      fail(r, absl::InternalError("Scheduler: unknown job type"));
      return false;
    }
    return true;
  };

  // Hands a sampled token to the caller and decides whether generation
  // ends. Returns true when the job finished (and was reported).
  auto on_sampled = [&](Running& r, const engine::SampleResult& sample) {
    GenerateJob& g = *r.generate;
    r.generated.push_back(sample.token);
    publish(r, r.prompt_tokens + static_cast<int64_t>(r.generated.size()), 0);
    // Counted before the caller hears of it, so a scrape after the call
    // ends includes it.
    if (metrics_ != nullptr) metrics_->AddGenerationTokens(1);
    std::string piece;
    if (r.detokenizer.has_value()) {
      absl::StatusOr<std::string> text = r.detokenizer->Push(sample.token);
      if (text.ok()) piece = *std::move(text);
    }
    engine::StopChecker::Step step =
        r.stop->Next(sample.token, piece, r.sampler.num_generated);
    const bool finished = step.finish != engine::FinishReason::kNone;
    if (finished && step.finish != engine::FinishReason::kStopString &&
        r.detokenizer.has_value()) {
      step.text += r.detokenizer->Flush();
    }
    GeneratedChunk chunk;
    const bool is_stop_token = step.finish == engine::FinishReason::kStopToken;
    if (!is_stop_token) chunk.token_ids.push_back(sample.token);
    if (g.want_logprobs && !is_stop_token) chunk.logprobs.push_back(sample);
    chunk.text = std::move(step.text);
    if (!chunk.token_ids.empty() || !chunk.text.empty()) {
      const SteadyClock::time_point now = SteadyClock::now();
      if (!r.first_token_sent) {
        r.first_token_sent = true;
        r.first_token = now;
        if (metrics_ != nullptr) {
          metrics_->RecordTimeToFirstToken(SecondsBetween(g.submitted_, now));
        }
      } else if (metrics_ != nullptr) {
        metrics_->RecordInterTokenLatency(SecondsBetween(r.last_token, now));
      }
      r.last_token = now;
      g.observer->OnChunk(std::move(chunk));
    }
    r.next_token = sample.token;
    if (!finished) return false;

    Session& session = *g.session;
    session.extras.pending_token = sample.token;
    session.extras.MarkSeen(r.generated);
    if (r.uses_session_stream) session.extras.rng = r.sampler.rng;
    GenerateOutcome outcome;
    outcome.finish = step.finish;
    if (step.finish == engine::FinishReason::kStopString &&
        r.stop->matcher().matched_index() >= 0) {
      outcome.stop_string = g.params.stop_strings[static_cast<size_t>(
          r.stop->matcher().matched_index())];
    }
    outcome.prompt_tokens = r.prompt_tokens;
    outcome.generated_tokens = static_cast<int64_t>(r.generated.size());
    outcome.session_position = session.position();
    outcome.seed = r.sampler.seed;
    outcome.timings = TimingsOf(
        g.submitted_, r.first_step, r.started,
        r.first_token_sent ? std::optional(r.first_token) : std::nullopt);
    r.snapshot_state.reset();
    g.observer->OnGenerateFinished(std::move(outcome));
    return true;
  };

  // Ends a generation the caller stopped (Chat cancel): a normal end that
  // keeps every token generated so far.
  auto finish_stopped = [&](Running& r) {
    GenerateJob& g = *r.generate;
    // The text held back for stop strings or unfinished characters belongs
    // to tokens the session keeps: send it.
    GeneratedChunk chunk;
    chunk.text = r.stop->FlushHeldText();
    if (r.detokenizer.has_value()) chunk.text += r.detokenizer->Flush();
    if (!chunk.text.empty()) g.observer->OnChunk(std::move(chunk));
    Session& session = *g.session;
    session.extras.pending_token = r.next_token;
    session.extras.MarkSeen(r.generated);
    if (r.uses_session_stream) session.extras.rng = r.sampler.rng;
    GenerateOutcome outcome;
    outcome.stopped_by_caller = true;
    outcome.prompt_tokens = r.prompt_tokens;
    outcome.generated_tokens = static_cast<int64_t>(r.generated.size());
    outcome.session_position = session.position();
    outcome.seed = r.sampler.seed;
    outcome.timings = TimingsOf(
        g.submitted_, r.first_step, r.started,
        r.first_token_sent ? std::optional(r.first_token) : std::nullopt);
    r.snapshot_state.reset();
    g.observer->OnGenerateFinished(std::move(outcome));
  };

  // Feeds up to `budget` tokens of a job's input. Returns the tokens used,
  // or an error (the caller fails the job). Sets *done when the job
  // finished (and was reported).
  auto feed = [&](Running& r, int64_t budget,
                  bool* done) -> absl::StatusOr<int64_t> {
    *done = false;
    Session& session = *r.job->session;
    switch (r.kind) {
      case Running::Kind::kGenerate: {
        const int64_t left =
            static_cast<int64_t>(r.input.size() - r.next_input);
        const int64_t n = std::min(left, budget);
        const bool last = n == left;
        const absl::Span<const int32_t> piece(r.input.data() + r.next_input,
                                              static_cast<size_t>(n));
        logits.resize(static_cast<size_t>(vocab));
        RETURN_IF_ERROR(model_.Prefill(
            *session.state, piece,
            last ? engine::LogitsMode::kLast : engine::LogitsMode::kNone,
            last ? logits.data() : nullptr));
        if (metrics_ != nullptr) metrics_->AddPromptTokens(n);
        r.next_input += static_cast<size_t>(n);
        if (!last) publish(r, input_fed(r), 0);
        if (last) {
          session.extras.pending_token.reset();
          r.decoding = true;
          const engine::SampleResult sample = engine::Sample(
              logits.data(), vocab, r.generate->params, r.sampler);
          *done = on_sampled(r, sample);
        }
        return n;
      }
      case Running::Kind::kScore: {
        // A chunk [next_input, end] scores tokens next_input+1..end and
        // feeds next_input..end-1; `end` opens the next chunk.
        const size_t begin = r.next_input;
        const int64_t left = static_cast<int64_t>(r.input.size() - begin);
        if (left >= 2) {
          const int64_t n = std::min(left, budget + 1);
          const absl::Span<const int32_t> piece(r.input.data() + begin,
                                                static_cast<size_t>(n));
          ASSIGN_OR_RETURN(engine::ScoreResult part,
                           model_.Score(*session.state, piece,
                                        /*feed_last_token=*/false));
          ScoreOutcome& out = r.score_outcome;
          for (size_t j = 0; j < part.logprobs.size(); ++j) {
            out.score.logprobs.push_back(part.logprobs[j]);
            out.scored_tokens.push_back(r.input[begin + 1 + j]);
          }
          out.score.total_logprob += part.total_logprob;
          if (metrics_ != nullptr) metrics_->AddIngestTokens(n - 1);
          r.next_input = begin + static_cast<size_t>(n) - 1;
          if (r.next_input + 1 < r.input.size()) {
            publish(r, input_fed(r), 0);
            return n - 1;
          }
        }
        // Done: the last token stays unfed (pending) in the session.
        ScoreOutcome out = std::move(r.score_outcome);
        out.score.count = static_cast<int64_t>(out.score.logprobs.size());
        out.score.perplexity =
            out.score.count > 0 ? std::exp(-out.score.total_logprob /
                                           static_cast<double>(out.score.count))
                                : std::nan("");
        if (!r.input.empty()) session.extras.pending_token = r.input.back();
        out.prompt_tokens = r.prompt_tokens;
        out.session_position = session.position();
        out.timings =
            TimingsOf(r.job->submitted_, r.first_step, r.started, std::nullopt);
        if (r.score->append_to_session) {
          r.snapshot_state.reset();
          publish(r, r.prompt_tokens, 0);
        } else {
          Restore(session, r.snapshot_state, r.snapshot_extras);
          publish(r, 0, 0);
        }
        r.job->observer->OnScoreFinished(std::move(out));
        *done = true;
        return std::max<int64_t>(left - 1, 0);
      }
      case Running::Kind::kIngest: {
        IngestJob& in = *r.ingest;
        std::vector<int32_t> taken;
        bool finished_input = false;
        int64_t still_queued = 0, text_bytes = 0;
        {
          std::lock_guard<std::mutex> lock(in.mu_);
          const int64_t n =
              std::min<int64_t>(budget, static_cast<int64_t>(in.input_.size()));
          taken.assign(in.input_.begin(), in.input_.begin() + n);
          in.input_.erase(in.input_.begin(), in.input_.begin() + n);
          finished_input = in.input_finished_ && in.input_.empty();
          still_queued = static_cast<int64_t>(in.input_.size());
          text_bytes = in.text_bytes_;
        }
        if (!taken.empty()) {
          for (int32_t id : taken) {
            if (id < 0 || id >= vocab) {
              return absl::InvalidArgumentError(absl::StrCat(
                  "token id ", id, " is outside the model's vocabulary [0, ",
                  vocab, ")"));
            }
          }
          // Feed the held token and all but the last new one.
          std::vector<int32_t> piece;
          piece.reserve(taken.size());
          if (r.held.has_value()) piece.push_back(*r.held);
          piece.insert(piece.end(), taken.begin(), taken.end() - 1);
          if (!piece.empty()) {
            RETURN_IF_ERROR(model_.Prefill(*session.state, piece,
                                           engine::LogitsMode::kNone, nullptr));
          }
          r.held = taken.back();
          session.extras.pending_token = r.held;
          session.extras.MarkSeen(taken);
          r.ingested += static_cast<int64_t>(taken.size());
          publish(r, r.ingested, still_queued, text_bytes);
          if (metrics_ != nullptr) {
            metrics_->AddIngestTokens(static_cast<int64_t>(taken.size()));
          }
          in.observer->OnInputConsumed(static_cast<int64_t>(taken.size()));
        }
        if (finished_input) {
          IngestOutcome out;
          out.tokens_ingested = r.ingested;
          out.session_position = session.position();
          out.timings =
              TimingsOf(in.submitted_, r.first_step, r.started, std::nullopt);
          r.snapshot_state.reset();
          in.observer->OnIngestFinished(std::move(out));
          *done = true;
        }
        return static_cast<int64_t>(taken.size());
      }
    }
    return 0;
  };

  // Whether a job has something to feed this step.
  auto wants_feed = [&](Running& r) {
    switch (r.kind) {
      case Running::Kind::kGenerate:
        return !r.decoding && r.generate->observer->CanAcceptOutput();
      case Running::Kind::kScore:
        return true;
      case Running::Kind::kIngest: {
        std::lock_guard<std::mutex> lock(r.ingest->mu_);
        return !r.ingest->input_.empty() || r.ingest->input_finished_;
      }
    }
    return false;
  };

  for (;;) {
    // Admit queued jobs into free slots.
    std::vector<std::shared_ptr<Job>> admitted;
    bool shutting_down = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      shutting_down = shutting_down_;
      while (!queue_.empty() &&
             static_cast<int>(running.size() + admitted.size()) <
                 options_.max_batch) {
        admitted.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      if (shutting_down) {
        for (auto& job : queue_) admitted.push_back(std::move(job));
        queue_.clear();
      }
      wake_ = false;
    }
    for (auto& job : admitted) {
      auto r = std::make_unique<Running>();
      r->job = std::move(job);
      if (admit(*r)) running.push_back(std::move(r));
    }
    running_count_.store(static_cast<int64_t>(running.size()));

    if (shutting_down) {
      for (auto& r : running) {
        fail(*r, absl::UnavailableError(
                     "server shut down before the call completed; the "
                     "session is as before the call: retry"));
      }
      running.clear();
      running_count_.store(0);
      return;
    }

    // Cancelled and expired jobs end here, their sessions restored.
    const SteadyClock::time_point now = SteadyClock::now();
    int64_t step_fed = 0;
    std::erase_if(running, [&](std::unique_ptr<Running>& r) {
      if (r->job->cancelled()) {
        fail(*r, absl::CancelledError("the call was cancelled; the session "
                                      "is as before the call"));
        return true;
      }
      if (r->job->deadline.has_value() && now >= *r->job->deadline) {
        fail(*r, absl::DeadlineExceededError(
                     "the call's deadline passed before it completed; the "
                     "session is as before the call: retry with a longer "
                     "deadline"));
        return true;
      }
      if (r->kind == Running::Kind::kGenerate && r->decoding &&
          r->generate->stop_requested()) {
        finish_stopped(*r);
        return true;
      }
      return false;
    });

    // The decode rows: every generating job whose caller has room.
    std::vector<Running*> decoders;
    for (auto& r : running) {
      if (r->kind == Running::Kind::kGenerate && r->decoding &&
          r->generate->observer->CanAcceptOutput()) {
        decoders.push_back(r.get());
      }
    }
    bool progressed = false;
    std::vector<Running*> finished;
    if (!decoders.empty()) {
      std::vector<engine::SessionState*> states;
      std::vector<int32_t> tokens;
      for (Running* r : decoders) {
        if (!r->started) mark_started(*r, now);
        states.push_back(r->job->session->state.get());
        tokens.push_back(r->next_token);
      }
      logits.resize(decoders.size() * static_cast<size_t>(vocab));
      const absl::Status status =
          model_.DecodeStep(states, tokens, logits.data());
      // The rows are sampled on the engine's OpenMP team (each row's own
      // sampler state and RNG, so the tokens are those of one thread), then
      // handed to their callers in order on this thread.
      samples.resize(decoders.size());
      if (status.ok()) {
        kernels::ParallelFor(
            static_cast<int64_t>(decoders.size()), kMinRowsPerSamplingThread,
            /*align=*/1, [&](int64_t begin, int64_t end) {
              for (int64_t b = begin; b < end; ++b) {
                Running& r = *decoders[static_cast<size_t>(b)];
                samples[static_cast<size_t>(b)] = engine::Sample(
                    logits.data() + static_cast<size_t>(b) * vocab, vocab,
                    r.generate->params, r.sampler);
              }
            });
      }
      for (size_t b = 0; b < decoders.size(); ++b) {
        Running& r = *decoders[b];
        if (!status.ok()) {
          fail(r, status);
          finished.push_back(&r);
          continue;
        }
        if (on_sampled(r, samples[b])) finished.push_back(&r);
      }
      progressed = true;
    }

    // Prefill: the rest of the budget, round robin over jobs with input.
    int64_t budget =
        options_.step_token_budget - static_cast<int64_t>(decoders.size());
    if (!running.empty()) {
      const size_t n = running.size();
      const size_t start = round_robin % n;
      for (size_t k = 0; k < n && budget > 0; ++k) {
        Running& r = *running[(start + k) % n];
        if (std::find(finished.begin(), finished.end(), &r) != finished.end())
          continue;
        if (r.kind == Running::Kind::kGenerate && r.decoding) continue;
        if (!wants_feed(r)) continue;
        if (!r.started) mark_started(r, now);
        bool done = false;
        absl::StatusOr<int64_t> used =
            feed(r, std::min(budget, options_.prefill_chunk), &done);
        if (!used.ok()) {
          fail(r, used.status());
          done = true;
        } else {
          budget -= std::max<int64_t>(*used, 1);
          step_fed += *used;
        }
        if (done) finished.push_back(&r);
        progressed = true;
      }
      round_robin = start + 1;
    }
    if (!finished.empty()) {
      std::erase_if(running, [&](std::unique_ptr<Running>& r) {
        return std::find(finished.begin(), finished.end(), r.get()) !=
               finished.end();
      });
    }
    running_count_.store(static_cast<int64_t>(running.size()));
    if (metrics_ != nullptr) {
      if (progressed) {
        metrics_->RecordStep(static_cast<int64_t>(decoders.size()),
                             static_cast<int64_t>(decoders.size()) + step_fed,
                             SecondsBetween(now, SteadyClock::now()));
      }
      metrics_->SetRequests(static_cast<int64_t>(running.size()),
                            num_waiting());
    }

    if (!progressed) {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, kIdlePoll, [&] {
        return wake_ || shutting_down_ ||
               (!queue_.empty() &&
                static_cast<int>(running.size()) < options_.max_batch);
      });
    }
  }
}

}  // namespace linserve::server
