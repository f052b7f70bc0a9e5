// The Inference service's reactors (see inference_service.h).
//
// Threads: gRPC reactions (constructors, OnReadDone, OnWriteDone, OnCancel)
// run on gRPC's threads; JobObserver callbacks on the scheduler's engine
// thread; Finalize* on the service's CallbackExecutor; the continuation
// after a session is opened inline or on the store's I/O thread (below).
// Each reactor's mutex guards its flags and, for the streaming calls, its
// StreamOutbox (the queued responses and the write in flight). Never held
// while calling into the scheduler (Submit, Wake), whose own lock is held
// while it calls observers; gRPC operations (StartWrite, StartRead, Finish)
// are started after unlocking. Finish is always the last thing a reaction
// does with the reactor: OnDone may delete it right after.
//
// Sessions are leased with the store's async calls (SessionStore::
// AcquireAsync), so a reaction never reads a spilled session's file: the
// continuation runs inline when the session is in RAM, else on the store's
// I/O thread. Until it has run the reactor does not Finish (a cancellation
// meanwhile only marks the call; the continuation sees it), so the reactor
// outlives the callback.
#include "server/inference_service.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/grpc_status.h"
#include "server/request_conversion.h"
#include "server/stream_outbox.h"
#include "server/tsan_annotations.h"

namespace linserve::server {
namespace {

// OpenCallSession (server/request_conversion.h) without blocking on disk:
// `done` gets a fresh state (no session_id) or the leased session, inline
// unless the session had to be read back from the spill directory (then on
// the store's I/O thread).
void OpenCallSessionAsync(
    const ServiceContext& context, const std::string& session_id,
    std::function<void(absl::StatusOr<CallSession>)> done) {
  if (session_id.empty()) {
    done(OpenCallSession(context, session_id));
    return;
  }
  context.store->AcquireAsync(
      session_id, [done = std::move(done)](absl::StatusOr<SessionLease> lease) {
        if (!lease.ok()) {
          done(lease.status());
          return;
        }
        CallSession session;
        session.lease = *std::move(lease);
        done(std::move(session));
      });
}

// ---------------------------------------------------------------------------
// Generate: one GenerateJob, its chunks streamed, then a GenerateResult.

class GenerateReactor final
    : public GrpcOrderedReactor<grpc::ServerWriteReactor<v1::GenerateResponse>>,
      public JobObserver {
 public:
  GenerateReactor(const ServiceContext& context, CallbackExecutor& executor,
                  grpc::CallbackServerContext* call,
                  const v1::GenerateRequest& request,
                  int min_tokens_per_message)
      : context_(context),
        executor_(executor),
        call_(call),
        outbox_(kMaxQueuedMessages, kMaxCoalescedTokens,
                min_tokens_per_message) {
    if (!context_.calls->Begin(call_)) {
      Finish(ToGrpcStatus(DrainingError()));
      return;
    }
    registered_ = true;
    // `request` lives until OnDone, which needs our Finish.
    OpenCallSessionAsync(context_, request.session_id(),
                         [this, &request](absl::StatusOr<CallSession> session) {
                           StartOrFinish(request, std::move(session));
                         });
  }

  // --- JobObserver (engine thread).
  bool CanAcceptOutput() override {
    std::lock_guard<std::mutex> lock(mu_);
    return outbox_.HasRoom();
  }

  void OnChunk(GeneratedChunk chunk) override {
    Outbox::Next next;
    {
      std::lock_guard<std::mutex> lock(mu_);
      outbox_.AddChunk(chunk, context_.tokenizer);
      next = TakeNextLocked();
    }
    Act(next);
  }

  void OnGenerateFinished(absl::StatusOr<GenerateOutcome> outcome) override {
    executor_.Post([this, outcome = std::move(outcome)]() mutable {
      Finalize(std::move(outcome));
    });
  }

  // --- Reactions.
  void OnWriteDone(bool ok) override {
    AcquireGrpcOrder();
    Outbox::Next next;
    bool wake;
    {
      std::lock_guard<std::mutex> lock(mu_);
      outbox_.WriteDone(ok);
      // The client is gone: nothing more can be delivered.
      if (!ok && job_ != nullptr) job_->Cancel();
      next = TakeNextLocked();
      wake = !job_done_;
    }
    if (wake) context_.scheduler->Wake();
    Act(next);
  }

  void OnCancel() override {
    AcquireGrpcOrder();
    std::lock_guard<std::mutex> lock(mu_);
    if (job_ != nullptr) job_->Cancel();
  }

  void OnDone() override {
    AcquireGrpcOrder();
    if (registered_) context_.calls->End(call_);
    // Orders the deletion after every reaction's last use of the mutex
    // (gRPC's own ordering is invisible to ThreadSanitizer).
    { std::lock_guard<std::mutex> lock(mu_); }
    delete this;
  }

 private:
  using Outbox = StreamOutbox<v1::GenerateResponse>;

  // Once the session is open (inline or on the store's I/O thread).
  void StartOrFinish(const v1::GenerateRequest& request,
                     absl::StatusOr<CallSession> session) {
    absl::Status started = Start(request, std::move(session));
    if (!started.ok()) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        job_.reset();
      }
      session_ = CallSession();
      Finish(ToGrpcStatus(started));
    }
  }

  absl::Status Start(const v1::GenerateRequest& request,
                     absl::StatusOr<CallSession> opened) {
    ASSIGN_OR_RETURN(session_, std::move(opened));
    Session& session = session_.get();
    ASSIGN_OR_RETURN(std::vector<int32_t> prompt,
                     InputTokens(context_, request.prompt(),
                                 session.position() == 0, "prompt"));
    if (prompt.empty() && !session.extras.pending_token.has_value()) {
      return absl::InvalidArgumentError(
          request.session_id().empty()
              ? "prompt is empty: without a session_id generation needs a "
                "prompt (text or token ids)"
              : absl::StrCat("prompt is empty and session '",
                             request.session_id(),
                             "' is empty too: send a prompt"));
    }
    ASSIGN_OR_RETURN(engine::SamplingParams params,
                     ToSamplingParams(context_, request.sampling()));
    auto job = std::make_shared<GenerateJob>();
    job->session = &session;
    job->observer = this;
    job->deadline = DeadlineOf(*call_);
    job->prompt = std::move(prompt);
    job->params = std::move(params);
    job->want_logprobs = WantsLogprobs(request.sampling());
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = job;
    }
    // OnCancel may have come while the session was being read back (before
    // job_ was set). Not after Submit: the job may finish, and the reactor
    // be deleted, before Submit returns.
    if (call_->IsCancelled()) job->Cancel();
    return context_.scheduler->Submit(std::move(job));
  }

  // On the executor: the job is done and the scheduler no longer touches
  // the session.
  void Finalize(absl::StatusOr<GenerateOutcome> outcome) {
    Outbox::Next next;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (outcome.ok()) {
        if (session_.stored()) session_.lease.Commit();
        v1::GenerateResponse response;
        v1::GenerateResult* result = response.mutable_result();
        result->set_finish_reason(
            ToProto(outcome->finish, outcome->stopped_by_caller));
        result->set_stop_string(outcome->stop_string);
        result->mutable_usage()->set_prompt_tokens(outcome->prompt_tokens);
        result->mutable_usage()->set_generated_tokens(
            outcome->generated_tokens);
        result->mutable_usage()->set_session_position(
            outcome->session_position);
        ToProto(outcome->timings, result->mutable_timings());
        result->set_seed(outcome->seed);
        outbox_.Add(std::move(response));
        final_status_ = grpc::Status::OK;
      } else {
        final_status_ = ToGrpcStatus(outcome.status());
      }
      // Released before the status goes out: the client may use the session
      // again as soon as it sees the call end.
      session_ = CallSession();
      job_done_ = true;
      next = TakeNextLocked();
    }
    Act(next);
  }

  // The call ends once the job is done and its result written.
  Outbox::Next TakeNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return outbox_.TakeNext(/*may_finish=*/job_done_,
                            /*more_tokens_coming=*/!job_done_);
  }

  // After unlocking.
  void Act(const Outbox::Next& next) {
    if (next.write != nullptr) StartWrite(next.write);
    if (next.finish) Finish(final_status_);
  }

  const ServiceContext& context_;
  CallbackExecutor& executor_;
  grpc::CallbackServerContext* const call_;
  bool registered_ = false;
  CallSession session_;

  std::mutex mu_;
  std::shared_ptr<GenerateJob> job_ ABSL_GUARDED_BY(mu_);
  Outbox outbox_ ABSL_GUARDED_BY(mu_);
  bool job_done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status final_status_;  // written once, before the Finish is taken
};

// ---------------------------------------------------------------------------
// Chat: a ChatStart, then turns; each turn one GenerateJob on the session,
// which the call leases from start to end.

class ChatReactor final
    : public GrpcOrderedReactor<
          grpc::ServerBidiReactor<v1::ChatRequest, v1::ChatResponse>>,
      public JobObserver {
 public:
  ChatReactor(const ServiceContext& context, CallbackExecutor& executor,
              grpc::CallbackServerContext* call, int min_tokens_per_message)
      : context_(context),
        executor_(executor),
        call_(call),
        outbox_(kMaxQueuedMessages, kMaxCoalescedTokens,
                min_tokens_per_message) {
    if (!context_.calls->Begin(call_)) {
      Finish(ToGrpcStatus(DrainingError()));
      return;
    }
    registered_ = true;
    StartRead(&request_);
  }

  // --- JobObserver (engine thread).
  bool CanAcceptOutput() override {
    std::lock_guard<std::mutex> lock(mu_);
    return outbox_.HasRoom();
  }

  void OnChunk(GeneratedChunk chunk) override {
    Act(WithLock([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      outbox_.AddChunk(chunk, context_.tokenizer);
    }));
  }

  void OnGenerateFinished(absl::StatusOr<GenerateOutcome> outcome) override {
    executor_.Post([this, outcome = std::move(outcome)]() mutable {
      FinalizeTurn(std::move(outcome));
    });
  }

  // --- Reactions.
  void OnReadDone(bool ok) override {
    AcquireGrpcOrder();
    if (!ok) {
      // The client closed its side (or the call is cancelled): end after
      // the turn in progress.
      Act(WithLock([this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        if (!ending_) {
          ending_ = true;
          final_status_ = grpc::Status::OK;
        }
      }));
      return;
    }
    if (request_.kind_case() == v1::ChatRequest::kStart) {
      // May continue on the store's I/O thread (a spilled session).
      HandleStart(request_.start());
      return;
    }
    AfterRequest(HandleRequest());
  }

  void OnWriteDone(bool ok) override {
    AcquireGrpcOrder();
    bool wake = false;
    Action action = WithLock([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      outbox_.WriteDone(ok);
      if (!ok) EndWithErrorLocked(absl::CancelledError("the client went away"));
      wake = job_ != nullptr;
    });
    if (wake) context_.scheduler->Wake();
    Act(action);
  }

  void OnCancel() override {
    AcquireGrpcOrder();
    Act(WithLock([this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      EndWithErrorLocked(absl::CancelledError("the call was cancelled"));
    }));
  }

  void OnDone() override {
    AcquireGrpcOrder();
    if (registered_) context_.calls->End(call_);
    // Orders the deletion after every reaction's last use of the mutex
    // (gRPC's own ordering is invisible to ThreadSanitizer).
    { std::lock_guard<std::mutex> lock(mu_); }
    delete this;
  }

 private:
  using Outbox = StreamOutbox<v1::ChatResponse>;

  // What a reaction does after unlocking.
  struct Action {
    bool read = false;
    Outbox::Next outgoing;  // a write or the Finish
  };

  // Runs `update` under the lock, then decides the next gRPC operations.
  template <typename Update>
  Action WithLock(Update update) {
    std::lock_guard<std::mutex> lock(mu_);
    update();
    Action action;
    action.read = std::exchange(read_next_, false) && !outbox_.finished();
    // Until StartRead has been called, Finish must wait (gRPC takes no
    // StartRead after Finish).
    if (action.read) starting_read_ = true;
    // The call ends once it is ending, no turn runs or session is being
    // opened, and every queued response is written (or the stream broke).
    action.outgoing = outbox_.TakeNext(
        /*may_finish=*/ending_ && job_ == nullptr && !loading_ &&
            !starting_read_,
        /*more_tokens_coming=*/job_ != nullptr);
    if (action.outgoing.finish) {
      action.read = false;
      // Released before the status goes out (the client may continue the
      // session with its next call as soon as this one ends).
      lease_ = SessionLease();
    }
    return action;
  }

  void Act(const Action& action) {
    if (action.outgoing.write != nullptr) StartWrite(action.outgoing.write);
    if (action.read) {
      StartRead(&request_);
      // A finish that waited for the read to be started may go now.
      Act(WithLock([this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        starting_read_ = false;
      }));
      return;
    }
    if (action.outgoing.finish) Finish(final_status_);
  }

  void EndWithErrorLocked(const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!ending_ || final_status_.ok()) final_status_ = ToGrpcStatus(status);
    ending_ = true;
    // The turn in progress rolls back; earlier turns stay.
    if (job_ != nullptr) job_->Cancel();
  }

  // After a request was handled: the next read, or the end on an error.
  void AfterRequest(const absl::Status& handled) {
    Act(WithLock([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (!handled.ok()) {
        EndWithErrorLocked(handled);
      } else if (!ending_) {
        read_next_ = true;  // the next message (a turn, a cancel)
      }
    }));
  }

  // Handles request_ but a start (a gRPC thread, no lock held on entry).
  absl::Status HandleRequest() {
    switch (request_.kind_case()) {
      case v1::ChatRequest::kStart:
        break;  // HandleStart
      case v1::ChatRequest::kTurn:
        return HandleTurn(request_.turn());
      case v1::ChatRequest::kCancel: {
        std::lock_guard<std::mutex> lock(mu_);
        if (!started_) return NotStartedError();
        if (job_ != nullptr) job_->Stop();
        return absl::OkStatus();
      }
      case v1::ChatRequest::KIND_NOT_SET:
        break;
    }
    return absl::InvalidArgumentError(
        "a ChatRequest must carry start, turn or cancel");
  }

  static absl::Status NotStartedError() {
    return absl::InvalidArgumentError(
        "the first message of a Chat must be a ChatStart");
  }

  // Opens the chat's session, then AfterRequest: inline, or on the store's
  // I/O thread when the session is read back (meanwhile `loading_` holds
  // the Finish back, so the reactor outlives the callback).
  void HandleStart(const v1::ChatStart& start) {
    absl::Status checked = CheckStart(start);
    if (!checked.ok()) {
      AfterRequest(checked);
      return;
    }
    if (start.session_id().empty()) {
      absl::StatusOr<SessionLease> lease = context_.store->Create();
      AfterRequest(lease.ok() ? Started(start, *std::move(lease))
                              : lease.status());
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      loading_ = true;
    }
    context_.store->AcquireAsync(
        start.session_id(), [this, start](absl::StatusOr<SessionLease> lease) {
          absl::Status handled =
              lease.ok() ? Started(start, *std::move(lease)) : lease.status();
          {
            std::lock_guard<std::mutex> lock(mu_);
            loading_ = false;
          }
          AfterRequest(handled);
        });
  }

  absl::Status CheckStart(const v1::ChatStart& start) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (started_) {
        return absl::InvalidArgumentError(
            "ChatStart must be the first message of a Chat, and only the "
            "first");
      }
    }
    // Checked now so that a bad default fails the chat before any turn.
    return ToSamplingParams(context_, start.sampling(),
                            context_.chat_template.stop_strings)
        .status();
  }

  // The chat's session is leased: the chat starts (unless the call ended
  // meanwhile; then the lease goes back at once).
  absl::Status Started(const v1::ChatStart& start, SessionLease lease) {
    std::lock_guard<std::mutex> lock(mu_);
    if (ending_) return absl::OkStatus();  // `lease` released on return
    started_ = true;
    defaults_ = start.sampling();
    system_prompt_ = start.system_prompt();
    v1::ChatResponse response;
    v1::ChatStarted* started = response.mutable_started();
    started->set_session_id(lease.session().id);
    started->set_session_position(lease.session().position());
    outbox_.Add(std::move(response));
    lease_ = std::move(lease);
    return absl::OkStatus();
  }

  absl::Status HandleTurn(const v1::ChatTurn& turn) {
    std::shared_ptr<GenerateJob> job;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!started_) return NotStartedError();
      // Cancelled meanwhile: the call is ending, start nothing.
      if (ending_) return absl::OkStatus();
      if (job_ != nullptr) {
        return absl::FailedPreconditionError(
            "a ChatTurn arrived while the previous reply is still streaming; "
            "send ChatCancel and wait for its ChatTurnEnd before the next "
            "turn");
      }
      Session& session = lease_.session();
      const bool empty = session.position() == 0;
      const ChatTemplate& chat_template = context_.chat_template;
      const std::string text =
          chat_template.RenderTurn(empty, system_prompt_, turn.text());
      const bool add_bos = empty && chat_template.add_bos &&
                           context_.model->config().bos_token_id.has_value();
      ASSIGN_OR_RETURN(std::vector<int32_t> prompt,
                       EncodeText(context_, text, add_bos));
      if (static_cast<int64_t>(prompt.size()) >
          context_.limits.max_input_tokens) {
        return absl::InvalidArgumentError(absl::StrCat(
            "the turn has ", prompt.size(),
            " tokens with the chat template, more than the server's limit ",
            context_.limits.max_input_tokens,
            " (--max_input_tokens); Ingest long documents into the session "
            "first"));
      }
      const v1::SamplingParams sampling =
          MergeSampling(defaults_, turn.sampling());
      ASSIGN_OR_RETURN(
          engine::SamplingParams params,
          ToSamplingParams(context_, sampling, chat_template.stop_strings));
      job = std::make_shared<GenerateJob>();
      job->session = &session;
      job->observer = this;
      job->deadline = DeadlineOf(*call_);
      job->prompt = std::move(prompt);
      job->params = std::move(params);
      job->want_logprobs = WantsLogprobs(sampling);
      job_ = job;
    }
    absl::Status submitted = context_.scheduler->Submit(job);
    if (!submitted.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      job_.reset();
    }
    return submitted;
  }

  // On the executor: the turn's job is done.
  void FinalizeTurn(absl::StatusOr<GenerateOutcome> outcome) {
    Act(WithLock([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      job_.reset();
      if (!outcome.ok()) {
        EndWithErrorLocked(outcome.status());
        return;
      }
      lease_.Commit();
      v1::ChatResponse response;
      v1::ChatTurnEnd* end = response.mutable_turn_end();
      end->set_finish_reason(
          ToProto(outcome->finish, outcome->stopped_by_caller));
      end->set_stop_string(outcome->stop_string);
      end->mutable_usage()->set_prompt_tokens(outcome->prompt_tokens);
      end->mutable_usage()->set_generated_tokens(outcome->generated_tokens);
      end->mutable_usage()->set_session_position(outcome->session_position);
      ToProto(outcome->timings, end->mutable_timings());
      end->set_seed(outcome->seed);
      outbox_.Add(std::move(response));  // dropped if the client is gone
    }));
  }

  const ServiceContext& context_;
  CallbackExecutor& executor_;
  grpc::CallbackServerContext* const call_;
  bool registered_ = false;
  v1::ChatRequest request_;  // owned by the read in flight

  std::mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  SessionLease lease_ ABSL_GUARDED_BY(mu_);
  v1::SamplingParams defaults_ ABSL_GUARDED_BY(mu_);
  std::string system_prompt_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<GenerateJob> job_ ABSL_GUARDED_BY(mu_);
  Outbox outbox_ ABSL_GUARDED_BY(mu_);
  bool read_next_ ABSL_GUARDED_BY(mu_) = false;
  bool starting_read_ ABSL_GUARDED_BY(mu_) = false;
  bool loading_ ABSL_GUARDED_BY(mu_) = false;  // the ChatStart's session
  bool ending_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status final_status_ ABSL_GUARDED_BY(mu_);
};

// ---------------------------------------------------------------------------
// Ingest: text or token chunks appended to one IngestJob as the client
// streams them, read only while little input waits (constant memory).

// The part of `carry` that can be tokenized now, removed from it: the text
// before its last space (SentencePiece's "▁" attaches to the following word,
// so a segment that ends before a space tokenizes as it would inside the
// whole text), or everything at the end of the input. Text without a space
// is held up to kMaxIngestCarryBytes, then cut at a UTF-8 boundary.
std::string TakeTokenizableText(std::string& carry, bool end_of_input) {
  if (end_of_input) return std::exchange(carry, std::string());
  size_t cut = carry.rfind(' ');
  if (cut == std::string::npos || cut == 0) {
    if (carry.size() <= kMaxIngestCarryBytes) return std::string();
    cut = carry.size() - 1;
    while (cut > 0 && (static_cast<unsigned char>(carry[cut]) & 0xC0) == 0x80) {
      --cut;
    }
  }
  std::string segment = carry.substr(0, cut);
  carry.erase(0, cut);
  return segment;
}

class IngestReactor final
    : public GrpcOrderedReactor<grpc::ServerReadReactor<v1::IngestRequest>>,
      public JobObserver {
 public:
  IngestReactor(const ServiceContext& context, CallbackExecutor& executor,
                grpc::CallbackServerContext* call, v1::IngestResponse* response)
      : context_(context),
        executor_(executor),
        call_(call),
        response_(response) {
    if (!context_.calls->Begin(call_)) {
      Finish(ToGrpcStatus(DrainingError()));
      return;
    }
    registered_ = true;
    StartRead(&request_);
  }

  // --- JobObserver (engine thread).
  void OnInputConsumed(int64_t tokens) override {
    (void)tokens;
    bool read = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (read_paused_ && !finished_ && job_ != nullptr &&
          job_->pending_input() < kMaxPendingIngestTokens) {
        read_paused_ = false;
        read = starting_read_ = true;
      }
    }
    if (read) StartNextRead();
  }

  void OnIngestFinished(absl::StatusOr<IngestOutcome> outcome) override {
    executor_.Post([this, outcome = std::move(outcome)]() mutable {
      Finalize(std::move(outcome));
    });
  }

  // --- Reactions.
  // Each read's handling (this reaction, and for the first message its
  // continuation) runs with handling_ set: a Finish from Finalize (the job
  // may end, e.g. cancelled, at any time once submitted) waits for its end.
  void OnReadDone(bool ok) override {
    AcquireGrpcOrder();
    {
      std::lock_guard<std::mutex> lock(mu_);
      handling_ = true;
    }
    if (!ok) {
      EndOfInput();
      EndHandling(/*read_more=*/false);
      return;
    }
    bool first;
    {
      std::lock_guard<std::mutex> lock(mu_);
      first = job_ == nullptr;
    }
    if (first && !request_.session_id().empty()) {
      // The session first; the chunk is handled once it is leased (on the
      // store's I/O thread if it is read back). No read is started and no
      // job exists meanwhile, and handling_ holds any Finish back.
      context_.store->AcquireAsync(request_.session_id(),
                                   [this](absl::StatusOr<SessionLease> lease) {
                                     if (!lease.ok()) {
                                       AfterChunk(lease.status());
                                       return;
                                     }
                                     lease_ = *std::move(lease);
                                     AfterChunk(HandleChunk());
                                   });
      return;
    }
    AfterChunk(HandleChunk());
  }

  void OnCancel() override {
    AcquireGrpcOrder();
    std::lock_guard<std::mutex> lock(mu_);
    if (job_ != nullptr) job_->Cancel();
  }

  void OnDone() override {
    AcquireGrpcOrder();
    if (registered_) context_.calls->End(call_);
    // Orders the deletion after every reaction's last use of the mutex
    // (gRPC's own ordering is invisible to ThreadSanitizer).
    { std::lock_guard<std::mutex> lock(mu_); }
    delete this;
  }

 private:
  // After a chunk was handled: the next read, a pause, or the end.
  void AfterChunk(const absl::Status& handled) {
    if (!handled.ok()) Fail(handled);
    EndHandling(/*read_more=*/handled.ok());
  }

  // The end of a read's handling: a Finish that waited for it goes now;
  // else, when `read_more`, the next read (or a pause while much input
  // waits).
  void EndHandling(bool read_more) {
    bool read = false;
    std::optional<grpc::Status> deferred;
    {
      std::lock_guard<std::mutex> lock(mu_);
      handling_ = false;
      deferred.swap(deferred_finish_);
      if (deferred.has_value() || !read_more || finished_) {
        // The call ends (or the job ended early, e.g. deadline or
        // cancellation, and its Finalize comes): read no more.
      } else if (job_->pending_input() < kMaxPendingIngestTokens) {
        read = starting_read_ = true;
      } else {
        read_paused_ = true;
      }
    }
    if (deferred.has_value()) {
      Finish(*deferred);
      return;
    }
    if (read) StartNextRead();
  }

  // Handles request_; the first message's session is already leased unless
  // it is to be created.
  absl::Status HandleChunk() {
    std::vector<int32_t> tokens;
    bool first = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      first = job_ == nullptr;
    }
    if (first) {
      // The first message opens (or creates) the session and starts the job.
      if (request_.session_id().empty()) {
        ASSIGN_OR_RETURN(lease_, context_.store->Create());
        created_session_ = true;
      }
      if (request_.add_bos() && lease_.session().position() == 0) {
        const auto& bos = context_.model->config().bos_token_id;
        if (!bos.has_value()) {
          return absl::InvalidArgumentError(
              absl::StrCat("add_bos is set but model '", context_.model_name,
                           "' has no BOS token"));
        }
        tokens.push_back(static_cast<int32_t>(*bos));
      }
      auto job = std::make_shared<IngestJob>();
      job->session = &lease_.session();
      job->observer = this;
      job->deadline = DeadlineOf(*call_);
      RETURN_IF_ERROR(context_.scheduler->Submit(job));
      // OnCancel may have come before the job existed.
      if (call_->IsCancelled()) job->Cancel();
      std::lock_guard<std::mutex> lock(mu_);
      job_ = std::move(job);
    }
    switch (request_.chunk_case()) {
      case v1::IngestRequest::kText: {
        if (context_.tokenizer == nullptr) {
          // EncodeText's FailedPrecondition, before the text is held.
          RETURN_IF_ERROR(EncodeText(context_, "", false).status());
        }
        carry_ += request_.text();
        const std::string segment = TakeTokenizableText(carry_, false);
        if (!segment.empty()) {
          ASSIGN_OR_RETURN(std::vector<int32_t> encoded,
                           EncodeText(context_, segment, false));
          tokens.insert(tokens.end(), encoded.begin(), encoded.end());
        }
        break;
      }
      case v1::IngestRequest::kTokens: {
        const auto& ids = request_.tokens().ids();
        RETURN_IF_ERROR(CheckTokenIds(
            context_, absl::MakeConstSpan(ids.data(), ids.size()), "tokens"));
        tokens.insert(tokens.end(), ids.begin(), ids.end());
        break;
      }
      case v1::IngestRequest::CHUNK_NOT_SET:
        break;
    }
    if (!tokens.empty() || !request_.text().empty()) {
      job_->AppendInput(std::move(tokens),
                        static_cast<int64_t>(request_.text().size()));
    }
    return absl::OkStatus();
  }

  // The client's last message has arrived (or the call was cancelled).
  void EndOfInput() {
    std::shared_ptr<IngestJob> job;
    {
      std::lock_guard<std::mutex> lock(mu_);
      job = job_;
    }
    if (job == nullptr) {
      FinishNow(call_->IsCancelled()
                    ? absl::CancelledError("the call was cancelled")
                    : absl::InvalidArgumentError(
                          "Ingest received no message: the first message "
                          "names the session (or leaves it empty to create "
                          "one)"));
      return;
    }
    // A cancelled call's job ends without its input (and may already be
    // finalizing): add nothing. Cancel again: OnCancel may have come before
    // the job existed.
    if (job->cancelled() || call_->IsCancelled()) {
      job->Cancel();
      context_.scheduler->Wake();
      return;
    }
    if (!carry_.empty()) {
      absl::StatusOr<std::vector<int32_t>> rest =
          EncodeText(context_, TakeTokenizableText(carry_, true), false);
      if (!rest.ok()) {
        Fail(rest.status());
        return;
      }
      if (!rest->empty()) job->AppendInput(*std::move(rest));
    }
    job->FinishInput();
    context_.scheduler->Wake();
  }

  // A bad chunk: the job (if any) is cancelled and the call ends with
  // `status` once the scheduler has rolled the session back.
  void Fail(const absl::Status& status) {
    std::shared_ptr<IngestJob> job;
    {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = status;
      job = job_;
    }
    if (job == nullptr) {
      FinishNow(status);
      return;
    }
    job->Cancel();
    job->FinishInput();
    context_.scheduler->Wake();
  }

  // StartRead with starting_read_ set by the caller; then a Finish that
  // waited for it goes.
  void StartNextRead() {
    StartRead(&request_);
    std::optional<grpc::Status> deferred;
    {
      std::lock_guard<std::mutex> lock(mu_);
      starting_read_ = false;
      deferred.swap(deferred_finish_);
    }
    if (deferred.has_value()) Finish(*deferred);
  }

  // Finishes now, or right after a StartRead being started (gRPC takes no
  // StartRead after Finish) or a read's handling (which still uses the
  // reactor).
  void FinishOnce(grpc::Status status) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      finished_ = true;
      if (starting_read_ || handling_) {
        deferred_finish_ = std::move(status);
        return;
      }
    }
    Finish(status);
  }

  void FinishNow(const absl::Status& status) {
    if (created_session_) lease_.DeleteOnRelease();
    lease_ = SessionLease();
    FinishOnce(ToGrpcStatus(status));
  }

  // On the executor.
  void Finalize(absl::StatusOr<IngestOutcome> outcome) {
    if (outcome.ok()) {
      lease_.Commit();
      response_->set_session_id(lease_.session().id);
      response_->set_tokens_ingested(outcome->tokens_ingested);
      response_->set_session_position(outcome->session_position);
      ToProto(outcome->timings, response_->mutable_timings());
      lease_ = SessionLease();
      FinishOnce(grpc::Status::OK);
      return;
    }
    absl::Status error;
    {
      std::lock_guard<std::mutex> lock(mu_);
      error = error_.ok() ? outcome.status() : error_;
    }
    FinishNow(error);
  }

  const ServiceContext& context_;
  CallbackExecutor& executor_;
  grpc::CallbackServerContext* const call_;
  v1::IngestResponse* const response_;
  bool registered_ = false;
  v1::IngestRequest request_;  // owned by the read in flight

  // Touched by the reads (one at a time; the first one's continuation may
  // run on the store's I/O thread before the next read starts) and then by
  // Finalize, which runs after the job has ended, i.e. after FinishInput:
  // never concurrently.
  SessionLease lease_;
  bool created_session_ = false;
  std::string carry_;

  std::mutex mu_;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<IngestJob> job_ ABSL_GUARDED_BY(mu_);
  bool read_paused_ ABSL_GUARDED_BY(mu_) = false;
  bool starting_read_ ABSL_GUARDED_BY(mu_) = false;
  bool handling_ ABSL_GUARDED_BY(mu_) = false;  // OnReadDone and its sequel
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> deferred_finish_ ABSL_GUARDED_BY(mu_);
};

// ---------------------------------------------------------------------------
// Score: one ScoreJob.

class ScoreReactor final : public GrpcOrderedReactor<grpc::ServerUnaryReactor>,
                           public JobObserver {
 public:
  ScoreReactor(const ServiceContext& context, CallbackExecutor& executor,
               grpc::CallbackServerContext* call,
               const v1::ScoreRequest& request, v1::ScoreResponse* response)
      : context_(context),
        executor_(executor),
        call_(call),
        per_token_(request.per_token()),
        append_(request.append_to_session() && !request.session_id().empty()),
        response_(response) {
    if (!context_.calls->Begin(call_)) {
      Finish(ToGrpcStatus(DrainingError()));
      return;
    }
    registered_ = true;
    // `request` lives until OnDone, which needs our Finish.
    OpenCallSessionAsync(context_, request.session_id(),
                         [this, &request](absl::StatusOr<CallSession> session) {
                           absl::Status started =
                               Start(request, std::move(session));
                           if (!started.ok()) {
                             session_ = CallSession();
                             Finish(ToGrpcStatus(started));
                           }
                         });
  }

  void OnScoreFinished(absl::StatusOr<ScoreOutcome> outcome) override {
    executor_.Post([this, outcome = std::move(outcome)]() mutable {
      Finalize(std::move(outcome));
    });
  }

  void OnCancel() override {
    AcquireGrpcOrder();
    std::lock_guard<std::mutex> lock(mu_);
    if (job_ != nullptr) job_->Cancel();
  }

  void OnDone() override {
    AcquireGrpcOrder();
    if (registered_) context_.calls->End(call_);
    // Orders the deletion after every reaction's last use of the mutex
    // (gRPC's own ordering is invisible to ThreadSanitizer).
    { std::lock_guard<std::mutex> lock(mu_); }
    delete this;
  }

 private:
  absl::Status Start(const v1::ScoreRequest& request,
                     absl::StatusOr<CallSession> opened) {
    ASSIGN_OR_RETURN(session_, std::move(opened));
    Session& session = session_.get();
    ASSIGN_OR_RETURN(std::vector<int32_t> tokens,
                     InputTokens(context_, request.input(),
                                 session.position() == 0, "input"));
    if (tokens.empty()) {
      return absl::InvalidArgumentError(
          "input is empty: send the text or token ids to score");
    }
    auto job = std::make_shared<ScoreJob>();
    job->session = &session;
    job->observer = this;
    job->deadline = DeadlineOf(*call_);
    job->tokens = std::move(tokens);
    job->append_to_session = append_;
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = job;
    }
    // OnCancel may have come while the session was being read back (before
    // job_ was set). Not after Submit: the job may finish, and the reactor
    // be deleted, before Submit returns.
    if (call_->IsCancelled()) job->Cancel();
    absl::Status submitted = context_.scheduler->Submit(std::move(job));
    if (!submitted.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      job_.reset();
    }
    return submitted;
  }

  void Finalize(absl::StatusOr<ScoreOutcome> outcome) {
    if (!outcome.ok()) {
      session_ = CallSession();
      Finish(ToGrpcStatus(outcome.status()));
      return;
    }
    if (append_) session_.lease.Commit();
    session_ = CallSession();
    const engine::ScoreResult& score = outcome->score;
    if (per_token_) {
      const size_t n =
          std::min(score.logprobs.size(), outcome->scored_tokens.size());
      for (size_t i = 0; i < n; ++i) {
        v1::TokenLogprob* entry = response_->add_tokens();
        entry->set_token(outcome->scored_tokens[i]);
        entry->set_logprob(score.logprobs[i]);
        entry->set_text(
            TokenText(context_.tokenizer, outcome->scored_tokens[i]));
      }
    }
    response_->set_total_logprob(score.total_logprob);
    response_->set_count(score.count);
    response_->set_perplexity(score.perplexity);
    response_->mutable_usage()->set_prompt_tokens(outcome->prompt_tokens);
    response_->mutable_usage()->set_session_position(outcome->session_position);
    ToProto(outcome->timings, response_->mutable_timings());
    Finish(grpc::Status::OK);
  }

  const ServiceContext& context_;
  CallbackExecutor& executor_;
  grpc::CallbackServerContext* const call_;
  const bool per_token_;
  const bool append_;
  v1::ScoreResponse* const response_;
  bool registered_ = false;
  CallSession session_;

  std::mutex mu_;
  std::shared_ptr<ScoreJob> job_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

grpc::ServerWriteReactor<v1::GenerateResponse>* InferenceService::Generate(
    grpc::CallbackServerContext* call, const v1::GenerateRequest* request) {
  return HandedToGrpc(new GenerateReactor(*context_, executor_, call, *request,
                                          min_tokens_per_message_));
}

grpc::ServerBidiReactor<v1::ChatRequest, v1::ChatResponse>*
InferenceService::Chat(grpc::CallbackServerContext* call) {
  return HandedToGrpc(
      new ChatReactor(*context_, executor_, call, min_tokens_per_message_));
}

grpc::ServerReadReactor<v1::IngestRequest>* InferenceService::Ingest(
    grpc::CallbackServerContext* call, v1::IngestResponse* response) {
  return HandedToGrpc(new IngestReactor(*context_, executor_, call, response));
}

grpc::ServerUnaryReactor* InferenceService::Score(
    grpc::CallbackServerContext* call, const v1::ScoreRequest* request,
    v1::ScoreResponse* response) {
  return HandedToGrpc(
      new ScoreReactor(*context_, executor_, call, *request, response));
}

}  // namespace linserve::server
