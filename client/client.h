// The linserve C++ client: one channel to a server and a blocking method per
// RPC of the public API (proto/linserve/v1/) and of grpc.health.v1, with
// absl::Status errors that keep the server's code and message.
//
//   auto client = linserve::client::Client::Connect("127.0.0.1:50051", {});
//   v1::GenerateRequest request;
//   request.mutable_prompt()->set_text("In the beginning");
//   request.mutable_sampling()->set_temperature(0);
//   auto result = (*client)->Generate(
//       request, [](const v1::GenerateChunk& c) { std::cout << c.text(); });
//
// Deadlines: unary calls, Generate, Score and session export / import use
// ClientOptions::default_timeout unless the call's CallOptions says
// otherwise; Chat and Ingest run as long as they take unless CallOptions
// gives a timeout. Every call that names a session also sends its id as the
// "x-linserve-session" metadata (routing, issue 5).
//
// Thread-safety: a Client may be used from many threads at once; each call
// is independent (gRPC multiplexes them on the channel).
#ifndef LINSERVE_CLIENT_CLIENT_H_
#define LINSERVE_CLIENT_CLIENT_H_

#include <grpcpp/channel.h>

#include <cstdint>
#include <functional>
#include <istream>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/call_control.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "linserve/v1/inference.grpc.pb.h"
#include "linserve/v1/models.grpc.pb.h"
#include "linserve/v1/sessions.grpc.pb.h"

namespace linserve::client {

namespace v1 = ::linserve::v1;

struct ClientOptions {
  // Deadline of calls that have one by default (see the banner).
  absl::Duration default_timeout = absl::Seconds(60);
  // Largest message sent or received, bytes.
  int max_message_bytes = 64 << 20;
  // HTTP/2 keepalive pings while calls are open; zero: off. The server must
  // allow pings this frequent (its keepalive flags), or it closes the
  // connection.
  absl::Duration keepalive_time = absl::ZeroDuration();
  absl::Duration keepalive_timeout = absl::Seconds(20);
  // Size of the chunks ImportSession sends (the server's limit is 1 MiB).
  int64_t import_chunk_bytes = 1 << 20;
};

// Everything one Generate streamed, collected.
struct GenerateOutput {
  std::string text;
  std::vector<int32_t> token_ids;
  // One per token when SamplingParams.logprobs was set.
  std::vector<v1::GeneratedTokenLogprobs> logprobs;
  v1::GenerateResult result;
};

// Called once per streamed GenerateChunk, on the calling thread.
using GenerateChunkCallback = std::function<void(const v1::GenerateChunk&)>;

// Progress of an Ingest: what has been handed to the stream so far and,
// when IngestOptions::progress_poll_interval is set, what the server has
// done with it.
struct IngestProgress {
  int64_t bytes_sent = 0;   // text input
  int64_t tokens_sent = 0;  // token input
  // Every chunk has been written; the call waits for the server to finish.
  // With the progress poll only (one more report after the last chunk's).
  bool all_sent = false;
  // The server's figures for the running call (GetSession's
  // SessionInfo.in_flight), as of its last answer to the progress poll;
  // false / zero until it has answered for the running call.
  bool server_reported = false;
  int64_t tokens_fed = 0;      // fed into the session
  int64_t tokens_queued = 0;   // received, waiting to be fed
  int64_t bytes_received = 0;  // text received (text input)
};

struct IngestOptions {
  // The session to append to; empty: the server creates one (its id comes
  // back in IngestResponse.session_id).
  std::string session_id;
  bool add_bos = false;
  // Size of each text chunk in bytes, or of each token chunk in ids.
  int64_t chunk_bytes = 64 << 10;
  int64_t chunk_tokens = 8192;
  // Called after each chunk was written (Write blocks while the server
  // applies backpressure, so this paces with the server), and after each
  // answer of the progress poll. Calls come from the calling thread and the
  // poll's thread, one at a time (serialized by the client); keep it quick.
  std::function<void(const IngestProgress&)> on_progress;
  // Non-zero: while the call runs, a thread of the client polls the
  // session's progress on the server (GetSession) this often, on the same
  // channel, without holding up the upload, and reports it through
  // on_progress (IngestProgress::tokens_fed, tokens_queued). The poll needs
  // the session's id up front, so without session_id the client creates
  // the session first (CreateSession) and deletes it again if the ingest
  // fails, as the server does with a session an Ingest creates.
  absl::Duration progress_poll_interval = absl::ZeroDuration();
};

class Client {
 public:
  // Creates the channel (TLS off). Does not wait for the server: the first
  // call fails with UNAVAILABLE if nothing listens at `address`.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(
      const std::string& address, const ClientOptions& options);

  const std::string& address() const { return address_; }
  const ClientOptions& options() const { return options_; }

  // Inference.

  // Streams the chunks to `on_chunk` (may be empty) and returns the final
  // GenerateResult.
  absl::StatusOr<v1::GenerateResult> Generate(
      const v1::GenerateRequest& request, const GenerateChunkCallback& on_chunk,
      const CallOptions& call = {});
  // Generate collecting all text, tokens and logprobs.
  absl::StatusOr<GenerateOutput> GenerateAll(const v1::GenerateRequest& request,
                                             const CallOptions& call = {});

  // Streams `text` in chunks of options.chunk_bytes.
  absl::StatusOr<v1::IngestResponse> IngestText(std::istream& text,
                                                const IngestOptions& options,
                                                const CallOptions& call = {});
  absl::StatusOr<v1::IngestResponse> IngestFile(const std::string& path,
                                                const IngestOptions& options,
                                                const CallOptions& call = {});
  // Streams `tokens` in chunks of options.chunk_tokens.
  absl::StatusOr<v1::IngestResponse> IngestTokens(
      absl::Span<const int32_t> tokens, const IngestOptions& options,
      const CallOptions& call = {});

  absl::StatusOr<v1::ScoreResponse> Score(const v1::ScoreRequest& request,
                                          const CallOptions& call = {});

  // The Chat stream lives in ChatSession (client/chat_session.h), which
  // uses this stub.
  v1::Inference::Stub& inference_stub() { return *inference_; }

  // Sessions.

  // `session_id` empty: the server assigns one.
  absl::StatusOr<v1::SessionInfo> CreateSession(
      const std::string& session_id = "", const CallOptions& call = {});
  absl::StatusOr<v1::SessionInfo> GetSession(const std::string& session_id,
                                             const CallOptions& call = {});
  // One page.
  absl::StatusOr<v1::ListSessionsResponse> ListSessions(
      int32_t page_size, const std::string& page_token,
      const CallOptions& call = {});
  // Every page, in session id order.
  absl::StatusOr<std::vector<v1::SessionInfo>> ListAllSessions(
      const CallOptions& call = {});
  absl::StatusOr<v1::SessionInfo> ForkSession(
      const std::string& session_id, const std::string& new_session_id = "",
      const CallOptions& call = {});
  // Writes the exported state to `out` and returns its size in bytes.
  absl::StatusOr<int64_t> ExportSession(const std::string& session_id,
                                        std::ostream& out,
                                        const CallOptions& call = {});
  absl::StatusOr<std::string> ExportSessionToString(
      const std::string& session_id, const CallOptions& call = {});
  absl::StatusOr<int64_t> ExportSessionToFile(const std::string& session_id,
                                              const std::string& path,
                                              const CallOptions& call = {});
  // Sends the state in chunks of options().import_chunk_bytes.
  // `new_session_id` empty: the server assigns one.
  absl::StatusOr<v1::SessionInfo> ImportSession(
      std::istream& state, const std::string& new_session_id = "",
      const CallOptions& call = {});
  absl::StatusOr<v1::SessionInfo> ImportSessionFromString(
      const std::string& state, const std::string& new_session_id = "",
      const CallOptions& call = {});
  absl::StatusOr<v1::SessionInfo> ImportSessionFromFile(
      const std::string& path, const std::string& new_session_id = "",
      const CallOptions& call = {});
  absl::Status DeleteSession(const std::string& session_id,
                             const CallOptions& call = {});

  // Models.

  absl::StatusOr<std::vector<v1::ModelInfo>> ListModels(
      const CallOptions& call = {});
  absl::StatusOr<v1::ModelInfo> GetModel(const std::string& name,
                                         const CallOptions& call = {});

  // Health of `service` ("" is the server as a whole; else e.g.
  // "linserve.v1.Inference").
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus>
  CheckHealth(const std::string& service = "", const CallOptions& call = {});

 private:
  Client(std::string address, const ClientOptions& options,
         std::shared_ptr<grpc::Channel> channel);

  absl::StatusOr<v1::IngestResponse> Ingest(
      const IngestOptions& options, const CallOptions& call,
      const std::function<bool(v1::IngestRequest&, IngestProgress&)>&
          next_chunk);
  // The stream itself, into `session_id` (empty: a new session), reporting
  // after each chunk through `report` (null: no progress reports), and
  // once more with all_sent when `report_all_sent`.
  absl::StatusOr<v1::IngestResponse> StreamIngest(
      const std::string& session_id, const IngestOptions& options,
      const CallOptions& call,
      const std::function<bool(v1::IngestRequest&, IngestProgress&)>&
          next_chunk,
      const std::function<void(const IngestProgress&)>& report,
      bool report_all_sent);

  std::string address_;
  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Inference::Stub> inference_;
  std::unique_ptr<v1::Sessions::Stub> sessions_;
  std::unique_ptr<v1::Models::Stub> models_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

}  // namespace linserve::client

#endif  // LINSERVE_CLIENT_CLIENT_H_
