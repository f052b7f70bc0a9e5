// The Sessions service (see sessions_service.h).
//
// ForkSession and ExportSession may need a spilled session read back: they
// use the store's async calls (SessionStore::ForkAsync, ExportAsync), whose
// continuation runs inline when the session is in RAM, else on the store's
// I/O thread, so no reaction waits on the disk. Their reactors Finish only
// from that continuation (or later), so they outlive it, and are registered
// with the call tracker, so a drain waits for them before SpillAll. The
// other calls touch no file but Delete's unlinks.
#include "server/sessions_service.h"

#include <algorithm>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/session_extras.h"
#include "engine/state_format.h"
#include "server/grpc_status.h"
#include "server/request_conversion.h"
#include "server/tsan_annotations.h"

namespace linserve::server {
namespace {

// Finishes a unary call with `status` through the default reactor.
grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* call,
                                      const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = call->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// Runs `body` unless the server drains.
template <typename Body>
grpc::ServerUnaryReactor* Unary(const ServiceContext& context,
                                grpc::CallbackServerContext* call, Body body) {
  if (context.calls->draining()) return FinishUnary(call, DrainingError());
  return FinishUnary(call, body());
}

// GetSession's and ListSessions' description of a session: ToProto's, plus
// the running call's progress while the session is busy.
void SummaryToProto(const ServiceContext& context,
                    const SessionSummary& summary, v1::SessionInfo* out) {
  ToProto(context, summary, out);
  if (summary.busy) {
    v1::InFlightCall* in_flight = out->mutable_in_flight();
    in_flight->set_tokens_fed(summary.in_flight_tokens_fed);
    in_flight->set_tokens_queued(summary.in_flight_tokens_queued);
    in_flight->set_bytes_received(summary.in_flight_bytes_received);
  }
}

// A leased session's description (the lease is the caller's, so not busy
// for anyone once the call returns).
void LeaseToProto(const ServiceContext& context, const SessionLease& lease,
                  v1::SessionInfo* out) {
  const Session& session = lease.session();
  SessionSummary summary;
  summary.id = session.id;
  summary.position = session.position();
  summary.created = session.created;
  summary.last_used = session.last_used;
  summary.in_ram = true;
  summary.busy = false;
  ToProto(context, summary, out);
}

// ForkSession: one store.ForkAsync.
class ForkReactor final : public GrpcOrderedReactor<grpc::ServerUnaryReactor> {
 public:
  ForkReactor(const ServiceContext& context, grpc::CallbackServerContext* call,
              const v1::ForkSessionRequest& request, v1::SessionInfo* response)
      : context_(context), call_(call), response_(response) {
    if (!context_.calls->Begin(call_)) {
      Finish(ToGrpcStatus(DrainingError()));
      return;
    }
    registered_ = true;
    context_.store->ForkAsync(request.session_id(), request.new_session_id(),
                              [this](absl::StatusOr<SessionLease> lease) {
                                Forked(std::move(lease));
                              });
  }

  void OnDone() override {
    AcquireGrpcOrder();
    if (registered_) context_.calls->End(call_);
    // Orders the deletion after the continuation's last use of the reactor
    // (it may run on the store's I/O thread).
    { std::lock_guard<std::mutex> lock(mu_); }
    delete this;
  }

 private:
  void Forked(absl::StatusOr<SessionLease> lease) {
    grpc::Status status;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (lease.ok()) {
        lease->Commit();
        LeaseToProto(context_, *lease, response_);
        // Released before the status goes out: the client may use the new
        // session as soon as it sees the call end.
        *lease = SessionLease();
      } else {
        status = ToGrpcStatus(lease.status());
      }
    }
    Finish(status);
  }

  const ServiceContext& context_;
  grpc::CallbackServerContext* const call_;
  v1::SessionInfo* const response_;
  bool registered_ = false;
  std::mutex mu_;
};

// ExportSession: the state's bytes in chunks, one write in flight.
class ExportReactor final
    : public GrpcOrderedReactor<
          grpc::ServerWriteReactor<v1::ExportSessionChunk>> {
 public:
  ExportReactor(const ServiceContext& context,
                grpc::CallbackServerContext* call, const std::string& id)
      : context_(context), call_(call) {
    if (!context_.calls->Begin(call_)) {
      Finish(ToGrpcStatus(DrainingError()));
      return;
    }
    registered_ = true;
    context_.store->ExportAsync(id, [this](absl::StatusOr<std::string> bytes) {
      Exported(std::move(bytes));
    });
  }

  void OnWriteDone(bool ok) override {
    AcquireGrpcOrder();
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED,
                          "the client stopped reading the export"));
      return;
    }
    WriteNext();
  }

  void OnDone() override {
    AcquireGrpcOrder();
    if (registered_) context_.calls->End(call_);
    // Orders the deletion after the continuation's last use of the reactor
    // (it may run on the store's I/O thread).
    { std::lock_guard<std::mutex> lock(mu_); }
    delete this;
  }

 private:
  // The bytes are ready (inline, or on the store's I/O thread).
  void Exported(absl::StatusOr<std::string> bytes) {
    if (!bytes.ok()) {
      Finish(ToGrpcStatus(bytes.status()));
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      bytes_ = *std::move(bytes);
    }
    WriteNext();
  }

  // Starts the next write, or finishes after the last.
  // (The mutex orders these fields for ThreadSanitizer across the threads
  // that run Exported and OnWriteDone; gRPC calls are made after unlocking.)
  void WriteNext() {
    bool write = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!wrote_first_ || offset_ < bytes_.size()) {
        const size_t n =
            std::min<size_t>(kExportChunkBytes, bytes_.size() - offset_);
        chunk_.Clear();
        if (!wrote_first_) {
          chunk_.set_total_bytes(static_cast<int64_t>(bytes_.size()));
        }
        chunk_.set_data(bytes_.substr(offset_, n));
        offset_ += n;
        wrote_first_ = true;
        write = true;
      }
    }
    if (write) {
      StartWrite(&chunk_);
    } else {
      Finish(grpc::Status::OK);
    }
  }

  const ServiceContext& context_;
  grpc::CallbackServerContext* const call_;
  bool registered_ = false;
  std::string bytes_;
  size_t offset_ = 0;
  bool wrote_first_ = false;
  v1::ExportSessionChunk chunk_;  // owned by the write in flight
  std::mutex mu_;
};

// ImportSession: gathers the chunks (at most the model's state size), then
// one store.Import.
class ImportReactor final
    : public GrpcOrderedReactor<
          grpc::ServerReadReactor<v1::ImportSessionRequest>> {
 public:
  ImportReactor(const ServiceContext& context,
                grpc::CallbackServerContext* call, v1::SessionInfo* response)
      : context_(context),
        call_(call),
        response_(response),
        max_bytes_(engine::SerializedStateBytes(
            *context.model,
            engine::SessionExtrasBytes(context.model->vocab_size()))) {
    if (!context_.calls->Begin(call_)) {
      Finish(ToGrpcStatus(DrainingError()));
      return;
    }
    registered_ = true;
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    AcquireGrpcOrder();
    if (!ok) {
      if (call_->IsCancelled()) {
        Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
        return;
      }
      Finish(ToGrpcStatus(Import()));
      return;
    }
    if (first_) {
      id_ = request_.session_id();
      first_ = false;
    }
    if (static_cast<int64_t>(bytes_.size() + request_.data().size()) >
        max_bytes_) {
      Finish(ToGrpcStatus(TooLargeError(bytes_ + request_.data())));
      return;
    }
    bytes_ += request_.data();
    StartRead(&request_);
  }

  void OnDone() override {
    AcquireGrpcOrder();
    if (registered_) context_.calls->End(call_);
    delete this;
  }

 private:
  // A linserve state larger than this model's belongs to another model
  // (FailedPrecondition, as the store says for a state of the right size);
  // anything else is not a state at all.
  absl::Status TooLargeError(absl::string_view start) const {
    const absl::string_view magic(engine::kStateMagic,
                                  sizeof(engine::kStateMagic));
    if (absl::StartsWith(start, magic)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the imported state is larger than a state of model '",
          context_.model_name, "' (", max_bytes_,
          " bytes): it was exported from another model; import it into a "
          "server running that model"));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "the imported bytes are not a linserve session state (no LSVSTATE "
        "header) and exceed the state size of model '",
        context_.model_name, "' (", max_bytes_,
        " bytes); send the bytes ExportSession returned"));
  }

  absl::Status Import() {
    if (first_) {
      return absl::InvalidArgumentError(
          "ImportSession received no message: send the exported state's "
          "chunks");
    }
    ASSIGN_OR_RETURN(SessionLease lease, context_.store->Import(bytes_, id_));
    lease.Commit();
    LeaseToProto(context_, lease, response_);
    return absl::OkStatus();
  }

  const ServiceContext& context_;
  grpc::CallbackServerContext* const call_;
  v1::SessionInfo* const response_;
  const int64_t max_bytes_;
  bool registered_ = false;
  bool first_ = true;
  std::string id_;
  std::string bytes_;
  v1::ImportSessionRequest request_;  // owned by the read in flight
};

}  // namespace

grpc::ServerUnaryReactor* SessionsService::CreateSession(
    grpc::CallbackServerContext* call, const v1::CreateSessionRequest* request,
    v1::SessionInfo* response) {
  return Unary(*context_, call, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(SessionLease lease,
                     context_->store->Create(request->session_id()));
    lease.Commit();
    LeaseToProto(*context_, lease, response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* SessionsService::GetSession(
    grpc::CallbackServerContext* call, const v1::GetSessionRequest* request,
    v1::SessionInfo* response) {
  return Unary(*context_, call, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(SessionSummary summary,
                     context_->store->Get(request->session_id()));
    SummaryToProto(*context_, summary, response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* SessionsService::ListSessions(
    grpc::CallbackServerContext* call, const v1::ListSessionsRequest* request,
    v1::ListSessionsResponse* response) {
  return Unary(*context_, call, [&]() -> absl::Status {
    if (request->page_size() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("page_size must be >= 0 (0: ", kDefaultListPageSize,
                       "), got ", request->page_size()));
    }
    const int64_t page_size =
        request->page_size() == 0
            ? kDefaultListPageSize
            : std::min(request->page_size(), kMaxListPageSize);
    // One more than the page, to know whether another page follows.
    std::vector<SessionSummary> sessions =
        context_->store->List(request->page_token(), page_size + 1);
    const bool more = static_cast<int64_t>(sessions.size()) > page_size;
    if (more) sessions.resize(page_size);
    for (const SessionSummary& summary : sessions) {
      SummaryToProto(*context_, summary, response->add_sessions());
    }
    if (more) response->set_next_page_token(sessions.back().id);
    response->set_total(context_->store->size());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* SessionsService::ForkSession(
    grpc::CallbackServerContext* call, const v1::ForkSessionRequest* request,
    v1::SessionInfo* response) {
  return HandedToGrpc(new ForkReactor(*context_, call, *request, response));
}

grpc::ServerWriteReactor<v1::ExportSessionChunk>*
SessionsService::ExportSession(grpc::CallbackServerContext* call,
                               const v1::ExportSessionRequest* request) {
  return HandedToGrpc(
      new ExportReactor(*context_, call, request->session_id()));
}

grpc::ServerReadReactor<v1::ImportSessionRequest>*
SessionsService::ImportSession(grpc::CallbackServerContext* call,
                               v1::SessionInfo* response) {
  return HandedToGrpc(new ImportReactor(*context_, call, response));
}

grpc::ServerUnaryReactor* SessionsService::DeleteSession(
    grpc::CallbackServerContext* call, const v1::DeleteSessionRequest* request,
    v1::DeleteSessionResponse* response) {
  (void)response;
  return Unary(*context_, call, [&]() -> absl::Status {
    return context_->store->Delete(request->session_id());
  });
}

}  // namespace linserve::server
