#include "client/client.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <algorithm>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace linserve::client {
namespace {

int ToMilliseconds(absl::Duration d) {
  return static_cast<int>(
      std::min<int64_t>(absl::ToInt64Milliseconds(d), INT32_MAX));
}

// Polls GetSession every `interval` on a thread of its own, from
// construction to Stop, and hands each answer that shows a running call
// (SessionInfo.in_flight) to `on_answer` (on that thread). Stop cancels a
// poll in flight, so it returns at once.
class IngestProgressPoller {
 public:
  IngestProgressPoller(Client& client, std::string session_id,
                       absl::Duration interval,
                       std::function<void(const v1::InFlightCall&)> on_answer)
      : client_(client),
        session_id_(std::move(session_id)),
        interval_(interval),
        on_answer_(std::move(on_answer)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~IngestProgressPoller() { Stop(); }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) return;
      stopped_ = true;
    }
    cv_.notify_all();
    // A poll that starts after this is cancelled as it starts.
    canceller_.Cancel();
    thread_.join();
  }

 private:
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, absl::ToChronoNanoseconds(interval_),
                         [this] { return stopped_; })) {
      lock.unlock();
      CallOptions call;
      // A slow answer delays the next poll, never the upload.
      call.timeout = std::max(4 * interval_, absl::Seconds(2));
      call.canceller = &canceller_;
      absl::StatusOr<v1::SessionInfo> info =
          client_.GetSession(session_id_, call);
      if (info.ok() && info->busy() && info->has_in_flight()) {
        on_answer_(info->in_flight());
      }
      lock.lock();
    }
  }

  Client& client_;
  const std::string session_id_;
  const absl::Duration interval_;
  const std::function<void(const v1::InFlightCall&)> on_answer_;
  CallCanceller canceller_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(
    const std::string& address, const ClientOptions& options) {
  if (address.empty()) {
    return absl::InvalidArgumentError(
        "empty server address: give host:port (e.g. 127.0.0.1:50051)");
  }
  if (options.max_message_bytes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_message_bytes must be positive, got ", options.max_message_bytes));
  }
  if (options.import_chunk_bytes <= 0 ||
      options.import_chunk_bytes > options.max_message_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "import_chunk_bytes must be in [1, max_message_bytes = ",
        options.max_message_bytes, "], got ", options.import_chunk_bytes));
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  if (options.keepalive_time > absl::ZeroDuration()) {
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
                ToMilliseconds(options.keepalive_time));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                ToMilliseconds(options.keepalive_timeout));
  }
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(
      address, grpc::InsecureChannelCredentials(), args);
  if (channel == nullptr) {
    return absl::InternalError(
        absl::StrCat("could not create a channel to ", address));
  }
  return std::unique_ptr<Client>(new Client(address, options, channel));
}

Client::Client(std::string address, const ClientOptions& options,
               std::shared_ptr<grpc::Channel> channel)
    : address_(std::move(address)),
      options_(options),
      channel_(std::move(channel)),
      inference_(v1::Inference::NewStub(channel_)),
      sessions_(v1::Sessions::NewStub(channel_)),
      models_(v1::Models::NewStub(channel_)),
      health_(grpc::health::v1::Health::NewStub(channel_)) {}

absl::StatusOr<v1::GenerateResult> Client::Generate(
    const v1::GenerateRequest& request, const GenerateChunkCallback& on_chunk,
    const CallOptions& call) {
  ScopedCallContext context(call, options_.default_timeout,
                            request.session_id());
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
      inference_->Generate(context.get(), request);
  v1::GenerateResponse response;
  std::optional<v1::GenerateResult> result;
  while (reader->Read(&response)) {
    if (response.has_chunk()) {
      if (on_chunk) on_chunk(response.chunk());
    } else if (response.has_result()) {
      result = std::move(*response.mutable_result());
    }
  }
  RETURN_IF_ERROR(FromGrpcStatus(reader->Finish()));
  if (!result.has_value()) {
    return absl::InternalError(
        "Generate ended without a GenerateResult message (server bug)");
  }
  return *std::move(result);
}

absl::StatusOr<GenerateOutput> Client::GenerateAll(
    const v1::GenerateRequest& request, const CallOptions& call) {
  GenerateOutput output;
  ASSIGN_OR_RETURN(output.result,
                   Generate(
                       request,
                       [&output](const v1::GenerateChunk& chunk) {
                         output.text += chunk.text();
                         output.token_ids.insert(output.token_ids.end(),
                                                 chunk.token_ids().begin(),
                                                 chunk.token_ids().end());
                         output.logprobs.insert(output.logprobs.end(),
                                                chunk.logprobs().begin(),
                                                chunk.logprobs().end());
                       },
                       call));
  return output;
}

absl::StatusOr<v1::IngestResponse> Client::Ingest(
    const IngestOptions& options, const CallOptions& call,
    const std::function<bool(v1::IngestRequest&, IngestProgress&)>&
        next_chunk) {
  if (options.progress_poll_interval <= absl::ZeroDuration()) {
    return StreamIngest(options.session_id, options, call, next_chunk,
                        options.on_progress, /*report_all_sent=*/false);
  }
  std::string session_id = options.session_id;
  bool created = false;
  if (session_id.empty()) {
    CallOptions create;
    create.canceller = call.canceller;
    ASSIGN_OR_RETURN(v1::SessionInfo info, CreateSession("", create));
    session_id = info.session_id();
    created = true;
  }
  // The upload's and the poll's figures, reported one call at a time.
  std::mutex mu;
  IngestProgress shared;
  const auto report = [&](const IngestProgress& sent) {
    std::lock_guard<std::mutex> lock(mu);
    shared.bytes_sent = sent.bytes_sent;
    shared.tokens_sent = sent.tokens_sent;
    shared.all_sent = sent.all_sent;
    if (options.on_progress) options.on_progress(shared);
  };
  const auto on_answer = [&](const v1::InFlightCall& in_flight) {
    std::lock_guard<std::mutex> lock(mu);
    shared.server_reported = true;
    shared.tokens_fed = in_flight.tokens_fed();
    shared.tokens_queued = in_flight.tokens_queued();
    shared.bytes_received = in_flight.bytes_received();
    if (options.on_progress) options.on_progress(shared);
  };
  IngestProgressPoller poller(*this, session_id, options.progress_poll_interval,
                              on_answer);
  absl::StatusOr<v1::IngestResponse> response =
      StreamIngest(session_id, options, call, next_chunk, report,
                   /*report_all_sent=*/true);
  poller.Stop();
  if (!response.ok() && created) {
    // Best effort: the ingest's error is what the caller needs to see.
    CallOptions cleanup;
    cleanup.timeout = absl::Seconds(5);
    (void)DeleteSession(session_id, cleanup);
  }
  return response;
}

absl::StatusOr<v1::IngestResponse> Client::StreamIngest(
    const std::string& session_id, const IngestOptions& options,
    const CallOptions& call,
    const std::function<bool(v1::IngestRequest&, IngestProgress&)>& next_chunk,
    const std::function<void(const IngestProgress&)>& report,
    bool report_all_sent) {
  ScopedCallContext context(call, absl::InfiniteDuration(), session_id);
  v1::IngestResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::IngestRequest>> writer =
      inference_->Ingest(context.get(), &response);
  IngestProgress progress;
  bool first = true;
  bool written = true;
  while (true) {
    v1::IngestRequest request;
    if (first) {
      request.set_session_id(session_id);
      request.set_add_bos(options.add_bos);
    }
    const bool has_chunk = next_chunk(request, progress);
    if (!has_chunk && !first) break;
    // An empty document still sends one message naming the session, so
    // the server answers (and refuses or accepts the empty input itself).
    first = false;
    if (!writer->Write(request)) {  // the stream failed: see Finish
      written = false;
      break;
    }
    if (!has_chunk) break;
    if (report) report(progress);
  }
  if (written && report && report_all_sent) {
    progress.all_sent = true;
    report(progress);
  }
  writer->WritesDone();
  RETURN_IF_ERROR(FromGrpcStatus(writer->Finish()));
  return response;
}

absl::StatusOr<v1::IngestResponse> Client::IngestText(
    std::istream& text, const IngestOptions& options, const CallOptions& call) {
  if (options.chunk_bytes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chunk_bytes must be positive, got ", options.chunk_bytes));
  }
  std::string buffer;
  return Ingest(options, call,
                [&](v1::IngestRequest& request, IngestProgress& progress) {
                  buffer.resize(options.chunk_bytes);
                  text.read(buffer.data(), options.chunk_bytes);
                  const std::streamsize got = text.gcount();
                  if (got <= 0) return false;
                  buffer.resize(got);
                  request.set_text(buffer);
                  progress.bytes_sent += got;
                  return true;
                });
}

absl::StatusOr<v1::IngestResponse> Client::IngestFile(
    const std::string& path, const IngestOptions& options,
    const CallOptions& call) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::NotFoundError(absl::StrCat("cannot open ", path));
  }
  return IngestText(file, options, call);
}

absl::StatusOr<v1::IngestResponse> Client::IngestTokens(
    absl::Span<const int32_t> tokens, const IngestOptions& options,
    const CallOptions& call) {
  if (options.chunk_tokens <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chunk_tokens must be positive, got ", options.chunk_tokens));
  }
  size_t next = 0;
  return Ingest(
      options, call, [&](v1::IngestRequest& request, IngestProgress& progress) {
        if (next >= tokens.size()) return false;
        const size_t count =
            std::min<size_t>(options.chunk_tokens, tokens.size() - next);
        request.mutable_tokens()->mutable_ids()->Add(
            tokens.begin() + next, tokens.begin() + next + count);
        next += count;
        progress.tokens_sent += count;
        return true;
      });
}

absl::StatusOr<v1::ScoreResponse> Client::Score(const v1::ScoreRequest& request,
                                                const CallOptions& call) {
  ScopedCallContext context(call, options_.default_timeout,
                            request.session_id());
  v1::ScoreResponse response;
  RETURN_IF_ERROR(
      FromGrpcStatus(inference_->Score(context.get(), request, &response)));
  return response;
}

absl::StatusOr<v1::SessionInfo> Client::CreateSession(
    const std::string& session_id, const CallOptions& call) {
  ScopedCallContext context(call, options_.default_timeout, session_id);
  v1::CreateSessionRequest request;
  request.set_session_id(session_id);
  v1::SessionInfo info;
  RETURN_IF_ERROR(
      FromGrpcStatus(sessions_->CreateSession(context.get(), request, &info)));
  return info;
}

absl::StatusOr<v1::SessionInfo> Client::GetSession(
    const std::string& session_id, const CallOptions& call) {
  ScopedCallContext context(call, options_.default_timeout, session_id);
  v1::GetSessionRequest request;
  request.set_session_id(session_id);
  v1::SessionInfo info;
  RETURN_IF_ERROR(
      FromGrpcStatus(sessions_->GetSession(context.get(), request, &info)));
  return info;
}

absl::StatusOr<v1::ListSessionsResponse> Client::ListSessions(
    int32_t page_size, const std::string& page_token, const CallOptions& call) {
  ScopedCallContext context(call, options_.default_timeout, "");
  v1::ListSessionsRequest request;
  request.set_page_size(page_size);
  request.set_page_token(page_token);
  v1::ListSessionsResponse response;
  RETURN_IF_ERROR(FromGrpcStatus(
      sessions_->ListSessions(context.get(), request, &response)));
  return response;
}

absl::StatusOr<std::vector<v1::SessionInfo>> Client::ListAllSessions(
    const CallOptions& call) {
  std::vector<v1::SessionInfo> sessions;
  std::string page_token;
  do {
    ASSIGN_OR_RETURN(v1::ListSessionsResponse page,
                     ListSessions(/*page_size=*/1000, page_token, call));
    for (v1::SessionInfo& info : *page.mutable_sessions()) {
      sessions.push_back(std::move(info));
    }
    if (!page.next_page_token().empty() &&
        page.next_page_token() == page_token) {
      return absl::InternalError(
          absl::StrCat("ListSessions returned the same page token twice (\"",
                       page_token, "\"): server bug"));
    }
    page_token = page.next_page_token();
  } while (!page_token.empty());
  return sessions;
}

absl::StatusOr<v1::SessionInfo> Client::ForkSession(
    const std::string& session_id, const std::string& new_session_id,
    const CallOptions& call) {
  ScopedCallContext context(call, options_.default_timeout, session_id);
  v1::ForkSessionRequest request;
  request.set_session_id(session_id);
  request.set_new_session_id(new_session_id);
  v1::SessionInfo info;
  RETURN_IF_ERROR(
      FromGrpcStatus(sessions_->ForkSession(context.get(), request, &info)));
  return info;
}

absl::StatusOr<int64_t> Client::ExportSession(const std::string& session_id,
                                              std::ostream& out,
                                              const CallOptions& call) {
  ScopedCallContext context(call, options_.default_timeout, session_id);
  v1::ExportSessionRequest request;
  request.set_session_id(session_id);
  std::unique_ptr<grpc::ClientReader<v1::ExportSessionChunk>> reader =
      sessions_->ExportSession(context.get(), request);
  v1::ExportSessionChunk chunk;
  int64_t written = 0;
  int64_t announced = -1;
  bool write_failed = false;
  while (reader->Read(&chunk)) {
    if (announced < 0 && chunk.total_bytes() > 0) {
      announced = chunk.total_bytes();
    }
    if (write_failed) continue;  // drain the stream so Finish returns
    out.write(chunk.data().data(),
              static_cast<std::streamsize>(chunk.data().size()));
    if (!out) {
      write_failed = true;
      context.get()->TryCancel();
    }
    written += static_cast<int64_t>(chunk.data().size());
  }
  const grpc::Status status = reader->Finish();
  if (write_failed) {
    return absl::DataLossError(absl::StrCat(
        "writing the exported state of session ", session_id, " failed after ",
        written, " bytes (disk full or not writable?)"));
  }
  RETURN_IF_ERROR(FromGrpcStatus(status));
  if (announced >= 0 && announced != written) {
    return absl::DataLossError(absl::StrCat(
        "ExportSession announced ", announced, " bytes but sent ", written));
  }
  return written;
}

absl::StatusOr<std::string> Client::ExportSessionToString(
    const std::string& session_id, const CallOptions& call) {
  std::ostringstream out;
  RETURN_IF_ERROR(ExportSession(session_id, out, call).status());
  return std::move(out).str();
}

absl::StatusOr<int64_t> Client::ExportSessionToFile(
    const std::string& session_id, const std::string& path,
    const CallOptions& call) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  if (!file) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot open ", path, " for writing"));
  }
  ASSIGN_OR_RETURN(int64_t bytes, ExportSession(session_id, file, call));
  file.close();
  if (!file) {
    return absl::DataLossError(absl::StrCat("closing ", path, " failed"));
  }
  return bytes;
}

absl::StatusOr<v1::SessionInfo> Client::ImportSession(
    std::istream& state, const std::string& new_session_id,
    const CallOptions& call) {
  ScopedCallContext context(call, options_.default_timeout, new_session_id);
  v1::SessionInfo info;
  std::unique_ptr<grpc::ClientWriter<v1::ImportSessionRequest>> writer =
      sessions_->ImportSession(context.get(), &info);
  bool first = true;
  std::string buffer;
  while (true) {
    v1::ImportSessionRequest request;
    if (first) request.set_session_id(new_session_id);
    buffer.resize(options_.import_chunk_bytes);
    state.read(buffer.data(), options_.import_chunk_bytes);
    const std::streamsize got = state.gcount();
    if (got <= 0 && !first) break;
    buffer.resize(std::max<std::streamsize>(got, 0));
    request.set_data(buffer);
    first = false;
    if (!writer->Write(request)) break;  // the stream failed: see Finish
    if (got <= 0) break;
  }
  writer->WritesDone();
  RETURN_IF_ERROR(FromGrpcStatus(writer->Finish()));
  return info;
}

absl::StatusOr<v1::SessionInfo> Client::ImportSessionFromString(
    const std::string& state, const std::string& new_session_id,
    const CallOptions& call) {
  std::istringstream in(state);
  return ImportSession(in, new_session_id, call);
}

absl::StatusOr<v1::SessionInfo> Client::ImportSessionFromFile(
    const std::string& path, const std::string& new_session_id,
    const CallOptions& call) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::NotFoundError(absl::StrCat("cannot open ", path));
  }
  return ImportSession(file, new_session_id, call);
}

absl::Status Client::DeleteSession(const std::string& session_id,
                                   const CallOptions& call) {
  ScopedCallContext context(call, options_.default_timeout, session_id);
  v1::DeleteSessionRequest request;
  request.set_session_id(session_id);
  v1::DeleteSessionResponse response;
  return FromGrpcStatus(
      sessions_->DeleteSession(context.get(), request, &response));
}

absl::StatusOr<std::vector<v1::ModelInfo>> Client::ListModels(
    const CallOptions& call) {
  ScopedCallContext context(call, options_.default_timeout, "");
  v1::ListModelsResponse response;
  RETURN_IF_ERROR(FromGrpcStatus(
      models_->ListModels(context.get(), v1::ListModelsRequest(), &response)));
  return std::vector<v1::ModelInfo>(response.models().begin(),
                                    response.models().end());
}

absl::StatusOr<v1::ModelInfo> Client::GetModel(const std::string& name,
                                               const CallOptions& call) {
  ScopedCallContext context(call, options_.default_timeout, "");
  v1::GetModelRequest request;
  request.set_name(name);
  v1::ModelInfo info;
  RETURN_IF_ERROR(
      FromGrpcStatus(models_->GetModel(context.get(), request, &info)));
  return info;
}

absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus>
Client::CheckHealth(const std::string& service, const CallOptions& call) {
  ScopedCallContext context(call, options_.default_timeout, "");
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  RETURN_IF_ERROR(
      FromGrpcStatus(health_->Check(context.get(), request, &response)));
  return response.status();
}

}  // namespace linserve::client
