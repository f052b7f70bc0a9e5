// The continuous-batching scheduler: one engine thread that owns the Model
// and runs every call's work in steps. Each step takes
//   - one token for every job that is generating (one batched
//     Model::DecodeStep: the projections and MLP are M = B GEMMs), and
//   - prefill chunks (prompts, ingested documents, scored texts) of at most
//     `prefill_chunk` tokens per job, round robin over the jobs, up to the
//     step's token budget,
// so a long prefill (a 1M-token ingest) advances chunk by chunk while the
// decoding streams keep getting a token every step.
//
// Jobs are submitted from gRPC reactions (Submit never blocks: past the
// admission queue's bound it returns ResourceExhausted at once). Results go
// back through a JobObserver, called on the engine thread; observers must
// not block either. A job whose observer has no room for output skips steps
// (a slow reader slows its own session only).
//
// Atomicity: a job works on its session in place but first snapshots it; if
// the job fails, is cancelled or passes its deadline, the session is
// restored to the snapshot before OnFinished, so it is exactly as before the
// call. Stop() (a Chat cancel) instead ends a generation normally, keeping
// the tokens generated so far (all of which have been handed to OnChunk).
//
// Sessions: a session's last token is kept unfed (server/session.h); a job
// feeds it first. Generate leaves its last sampled token pending; Ingest and
// Score (with append) leave the input's last token pending.
//
// Determinism: per-session RNG streams, batched == alone (the engine's
// DecodeStep guarantee), so a seeded job's tokens do not depend on the rest
// of the batch.
//
//   Scheduler scheduler(*model, tokenizer.get(), options);  // starts thread
//   auto job = std::make_shared<GenerateJob>();
//   job->session = &lease.session(); job->prompt = ids; job->params = p;
//   job->observer = this;            // a reactor
//   RETURN_IF_ERROR(scheduler.Submit(job));
//   ... OnChunk(...) ... OnFinished(...)  // then drop the lease
#ifndef LINSERVE_SERVER_SCHEDULER_H_
#define LINSERVE_SERVER_SCHEDULER_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "server/metrics.h"
#include "server/session.h"

namespace linserve::server {

using SteadyClock = std::chrono::steady_clock;

struct SchedulerOptions {
  // Most jobs running at once; a step's decode has at most this many rows.
  // Further jobs wait in the admission queue.
  int max_batch = 64;
  // Most tokens of one step, decode rows included.
  int64_t step_token_budget = 1024;
  // Most prefill tokens of one job in one step.
  int64_t prefill_chunk = 256;
  // Jobs admitted but not yet running; past it Submit returns
  // ResourceExhausted.
  int64_t max_queued = 1024;
};

// The timings every job reports (seconds from Submit).
struct JobTimings {
  double queue_seconds = 0;
  double time_to_first_token_seconds = 0;
  double total_seconds = 0;
};

// Output of a generate job since its previous chunk.
struct GeneratedChunk {
  std::vector<int32_t> token_ids;  // stop tokens excluded
  std::string text;  // complete UTF-8, stop-string holdback applied
  // One per token when the job asked for logprobs.
  std::vector<engine::SampleResult> logprobs;
};

struct GenerateOutcome {
  engine::FinishReason finish = engine::FinishReason::kNone;
  bool stopped_by_caller = false;  // Stop(): FINISH_REASON_CANCELLED
  std::string stop_string;
  int64_t prompt_tokens = 0, generated_tokens = 0, session_position = 0;
  uint64_t seed = 0;
  JobTimings timings;
};

struct ScoreOutcome {
  engine::ScoreResult score;           // logprobs of the scored tokens
  std::vector<int32_t> scored_tokens;  // the tokens logprobs[i] belongs to
  int64_t prompt_tokens = 0, session_position = 0;
  JobTimings timings;
};

struct IngestOutcome {
  int64_t tokens_ingested = 0, session_position = 0;
  JobTimings timings;
};

// Called on the engine thread; implementations must not block (queue and
// return). After OnFinished the scheduler never touches the job's session
// or observer again.
class JobObserver {
 public:
  virtual ~JobObserver() = default;
  // False while the caller's outgoing queue is full: the job skips steps
  // until the caller calls Scheduler::Wake after draining.
  virtual bool CanAcceptOutput() { return true; }
  virtual void OnChunk(GeneratedChunk chunk) { (void)chunk; }
  // Ingest: `tokens` more input tokens were consumed (room for more input).
  virtual void OnInputConsumed(int64_t tokens) { (void)tokens; }
  virtual void OnGenerateFinished(absl::StatusOr<GenerateOutcome> outcome) {
    (void)outcome;
  }
  virtual void OnScoreFinished(absl::StatusOr<ScoreOutcome> outcome) {
    (void)outcome;
  }
  virtual void OnIngestFinished(absl::StatusOr<IngestOutcome> outcome) {
    (void)outcome;
  }
};

// Common to all jobs. Fields are set before Submit and then belong to the
// scheduler, except the thread-safe methods.
class Job {
 public:
  virtual ~Job() = default;

  // The session worked on: a leased store session, or a fresh session the
  // caller owns (stateless Generate / Score). Must outlive OnFinished.
  Session* session = nullptr;
  JobObserver* observer = nullptr;
  // Fails the job with DeadlineExceeded when passed.
  std::optional<SteadyClock::time_point> deadline;
  // False when the session is a scratch one the caller discards after the
  // job (stateless Generate): no snapshot is taken.
  bool restore_on_failure = true;

  // Thread-safe. Ends the job with Cancelled at the next step; the session
  // is restored to its state before the job.
  void Cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

 private:
  friend class Scheduler;
  std::atomic<bool> cancelled_{false};
  SteadyClock::time_point submitted_;
};

class GenerateJob : public Job {
 public:
  // Fed after the session's pending token. May be empty when the session
  // has a pending token.
  std::vector<int32_t> prompt;
  // Validated by the caller (SamplingParams::Validate). stop_token_ids
  // already include the model's EOS unless the request said ignore_eos.
  engine::SamplingParams params;
  // Whether to report SampleResult logprobs in chunks.
  bool want_logprobs = false;

  // Thread-safe. Ends generation normally at the next step with
  // FINISH_REASON_CANCELLED (stopped_by_caller); the session keeps the
  // prompt and every token generated so far.
  void Stop() { stop_requested_.store(true); }
  bool stop_requested() const { return stop_requested_.load(); }

 private:
  std::atomic<bool> stop_requested_{false};
};

class ScoreJob : public Job {
 public:
  std::vector<int32_t> tokens;
  // Keep the input in the session; otherwise it is restored afterwards.
  bool append_to_session = false;
};

// Input arrives while the job runs: the caller appends tokens as the client
// streams them and calls FinishInput at the end. The scheduler consumes at
// most prefill_chunk tokens of it per step and reports each consumption
// through OnInputConsumed, so the caller reads more from the client only
// when the pending input is small (constant memory).
class IngestJob : public Job {
 public:
  // Thread-safe. `text_bytes`: with text input, the bytes of text received
  // with these tokens (which may be fewer than the text's: a word cut by
  // the chunk waits for the next), for the progress GetSession reports
  // (Session::progress).
  void AppendInput(std::vector<int32_t> tokens, int64_t text_bytes = 0);
  void FinishInput();
  int64_t pending_input() const;

 private:
  friend class Scheduler;
  mutable std::mutex mu_;
  std::deque<int32_t> input_;
  int64_t text_bytes_ = 0;
  bool input_finished_ = false;
};

class Scheduler {
 public:
  // Starts the engine thread. `model` (and `tokenizer`, which may be null
  // for models without one: generated text is then empty) must outlive the
  // scheduler.
  // `metrics` (may be null) receives the per-step and per-token series.
  Scheduler(engine::Model& model, const engine::Tokenizer* tokenizer,
            const SchedulerOptions& options, Metrics* metrics = nullptr);
  // Cancels every job still queued or running (each gets its OnFinished),
  // then joins the engine thread.
  ~Scheduler();

  // Queues a job (GenerateJob, ScoreJob or IngestJob). ResourceExhausted
  // when the admission queue is full ("server busy: N calls are queued
  // (--max_queued); retry with backoff"), Unavailable after StopAccepting.
  // Never blocks.
  absl::Status Submit(std::shared_ptr<Job> job);

  // Thread-safe: something a waiting job needs (output room, input, a
  // cancellation) happened; the engine thread looks at once instead of at
  // its next poll (every few milliseconds).
  void Wake();

  // Refuses new jobs (Unavailable) and lets running ones finish.
  void StopAccepting();
  // Jobs the engine is working on, and jobs admitted but waiting for a slot.
  int64_t num_running() const;
  int64_t num_waiting() const;
  bool idle() const { return num_running() + num_waiting() == 0; }

  const SchedulerOptions& options() const { return options_; }

 private:
  struct Running;
  void Loop();

  engine::Model& model_;
  const engine::Tokenizer* tokenizer_;
  const SchedulerOptions options_;
  Metrics* const metrics_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool accepting_ = true;
  bool shutting_down_ = false;
  bool wake_ = false;
  std::atomic<int64_t> running_count_{0};
  std::thread thread_;
};

}  // namespace linserve::server

#endif  // LINSERVE_SERVER_SCHEDULER_H_
