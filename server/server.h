// The linserve server assembled: the model and its tokenizer, the session
// store, the scheduler, the Inference / Sessions / Models services, the
// standard health service (per-service status for "", linserve.v1.Inference,
// linserve.v1.Sessions and linserve.v1.Models) and server reflection, on
// one gRPC server, plus a thread that deletes sessions idle past the TTL.
//
// Lifecycle: Start (load, bind, serve) -> Drain (on SIGTERM: health
// NOT_SERVING, new calls refused with UNAVAILABLE, running calls get
// `grace` to end and are then cancelled, every session spilled) ->
// Shutdown (stop the gRPC server) -> destruction. Thread-safe: Drain,
// Shutdown and Wait may be called from any thread; Shutdown is idempotent.
//
//   ServerOptions options;
//   options.model_dir = "models/default";
//   ASSIGN_OR_RETURN(std::unique_ptr<Server> server, Server::Start(options));
//   std::cout << server->port();   // "127.0.0.1:0" picked a free port
//   ... server->Drain(std::chrono::seconds(30)); server->Shutdown();
#ifndef LINSERVE_SERVER_SERVER_H_
#define LINSERVE_SERVER_SERVER_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <grpcpp/server.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model.h"
#include "engine/tokenizer.h"
#include "kernels/dtype.h"
#include "server/call_tracker.h"
#include "server/metrics.h"
#include "server/metrics_interceptor.h"
#include "server/scheduler.h"
#include "server/service_context.h"
#include "server/session_store.h"

namespace linserve::server {

class InferenceService;
class SessionsService;
class ModelsService;
class ReflectionService;

struct ServerOptions {
  // The model directory: config.json, model.safetensors, optionally
  // tokenizer.model and chat_template.txt.
  std::string model_dir;
  // host:port to listen on; port 0 picks a free port (see port()).
  std::string listen = "127.0.0.1:0";
  // The dtype of the projections' GEMMs.
  kernels::DType weight_type = kernels::DType::kBfloat16;
  SchedulerOptions scheduler;
  SessionStoreOptions sessions;
  // Most tokens one call may generate.
  int32_t max_tokens = 4096;
  // Most tokens of one Generate / Score input or Chat turn.
  int64_t max_input_tokens = 1 << 20;
  // Largest gRPC message received or sent.
  int64_t max_message_bytes = 16 << 20;
  // Tokens a Generate / Chat stream gathers before it sends a message, while
  // the job generates (1 to kMaxCoalescedTokens). 1: each token goes out as
  // soon as it is sampled (tokens generated during a write in flight are
  // merged anyway). More: less gRPC work per token (each message costs the
  // server and a client tens of microseconds of CPU), each held token
  // delayed by one engine step per token after it.
  int min_tokens_per_message = 1;
  // HTTP/2 keepalive pings to idle clients, and how long to wait for the
  // answer before closing the connection.
  std::chrono::milliseconds keepalive_time{std::chrono::seconds(60)};
  std::chrono::milliseconds keepalive_timeout{std::chrono::seconds(20)};
  // What Drain gives running calls by default (main's SIGTERM handling).
  std::chrono::milliseconds drain_grace{std::chrono::seconds(30)};
  // host:port for Prometheus /metrics (port 0 picks one, see
  // metrics_port()); empty: metrics are kept but not served.
  std::string metrics_listen;
  // False: nothing is recorded (no interceptor, no engine-loop series) and
  // nothing served; for measuring what the instrumentation costs
  // (bench/serving_bench).
  bool metrics_enabled = true;
  // A chat template file; empty: model_dir/chat_template.txt or the
  // built-in default (server/chat_template.h).
  std::string chat_template;
};

class Server {
 public:
  // Loads the model (and tokenizer.model if present), opens the session
  // store, starts the scheduler and the gRPC server. Errors: the model's
  // (NotFound, InvalidArgument naming the file / field), the chat
  // template's, Unavailable when `listen` cannot be bound.
  static absl::StatusOr<std::unique_ptr<Server>> Start(
      const ServerOptions& options);
  // Shutdown, then releases everything.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The port bound (the one picked when `listen` asked for port 0).
  int port() const { return port_; }
  // "host:port" with the bound port.
  const std::string& address() const { return address_; }
  // The port /metrics is served on (0 when not served).
  int metrics_port() const { return metrics_->port(); }
  Metrics& metrics() { return *metrics_; }
  // Seconds Start took.
  double startup_seconds() const { return startup_seconds_; }

  // Health NOT_SERVING; new calls get UNAVAILABLE; waits up to `grace` for
  // running calls, cancels the rest (their sessions roll back to before the
  // call) and waits for them to end; then spills every session to the spill
  // directory. The gRPC server keeps answering (health, refusals) until
  // Shutdown. Returns the spill's error, if any.
  absl::Status Drain(std::chrono::milliseconds grace);
  // Stops the gRPC server (cancelling whatever still runs) and the TTL
  // sweep. Idempotent.
  void Shutdown();
  // Blocks until Shutdown.
  void Wait();

  const ServerOptions& options() const { return options_; }
  engine::Model& model() { return *model_; }
  const engine::Tokenizer* tokenizer() const { return tokenizer_.get(); }
  SessionStore& store() { return *store_; }
  Scheduler& scheduler() { return *scheduler_; }
  const ServiceContext& context() const { return context_; }

 private:
  explicit Server(const ServerOptions& options);
  absl::Status Init();
  void SweepLoop();

  const ServerOptions options_;
  std::unique_ptr<engine::Model> model_;
  std::unique_ptr<engine::Tokenizer> tokenizer_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<SessionStore> store_;
  std::unique_ptr<Scheduler> scheduler_;
  CallTracker calls_;
  ServiceContext context_;
  std::unique_ptr<InferenceService> inference_service_;
  std::unique_ptr<SessionsService> sessions_service_;
  std::unique_ptr<ModelsService> models_service_;
  std::unique_ptr<ReflectionService> reflection_service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  int port_ = 0;
  std::string address_;
  double startup_seconds_ = 0;

  std::mutex mu_;  // guards shutdown_ and the sweep thread's wait
  std::condition_variable sweep_cv_;
  bool shutdown_ = false;
  std::thread sweep_thread_;
  std::mutex drain_mu_;  // one Drain at a time
};

}  // namespace linserve::server

#endif  // LINSERVE_SERVER_SERVER_H_
