// The server's assembly and lifecycle (see server.h).
#include "server/server.h"

#include <algorithm>
#include <cstdio>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/safetensors.h"
#include "engine/session_extras.h"
#include "kernels/cpu_features.h"
#include "server/chat_template.h"
#include "server/inference_service.h"
#include "server/models_service.h"
#include "server/reflection_service.h"
#include "server/sessions_service.h"

namespace linserve::server {
namespace {

// The health service names, "" being the server as a whole.
constexpr const char* kHealthServices[] = {
    "", "linserve.v1.Inference", "linserve.v1.Sessions", "linserve.v1.Models"};

// After the grace period, how long cancelled calls get to end (their jobs
// end at the scheduler's next step).
constexpr std::chrono::seconds kCancelledCallsWait{10};

std::string BaseName(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Parameters of the checkpoint (every tensor's elements); 0 if unreadable.
int64_t CountParameters(const std::string& model_dir) {
  absl::StatusOr<std::unique_ptr<engine::CheckpointReader>> reader =
      engine::CheckpointReader::Open(model_dir);
  if (!reader.ok()) return 0;
  int64_t total = 0;
  for (const auto& file : (*reader)->files()) {
    for (const engine::TensorView& tensor : file->tensors()) {
      total += tensor.numel();
    }
  }
  return total;
}

v1::ModelInfo DescribeModel(const ServerOptions& options,
                            const ServiceContext& context) {
  const engine::Model& model = *context.model;
  const engine::ModelConfig& config = model.config();
  v1::ModelInfo info;
  info.set_name(context.model_name);
  info.set_family(std::string(engine::ModelFamilyName(config.family)));
  info.set_num_layers(config.num_hidden_layers);
  info.set_hidden_size(config.hidden_size);
  info.set_num_heads(config.num_heads);
  info.set_vocab_size(config.vocab_size);
  info.set_parameters(CountParameters(options.model_dir));
  info.set_state_bytes(model.StateBytes());
  info.set_weight_dtype(
      std::string(kernels::DTypeName(model.options().weight_type)));
  info.set_fingerprint(model.fingerprint().ToString());
  info.set_has_tokenizer(context.tokenizer != nullptr);
  for (int64_t eos : config.eos_token_ids) {
    info.add_eos_token_ids(static_cast<int32_t>(eos));
  }
  if (config.bos_token_id.has_value()) {
    info.set_bos_token_id(static_cast<int32_t>(*config.bos_token_id));
  }
  info.set_chat_template(context.chat_template.ToFileFormat());
  v1::ServerLimits* limits = info.mutable_limits();
  limits->set_max_tokens(options.max_tokens);
  limits->set_max_input_tokens(options.max_input_tokens);
  limits->set_max_sessions_in_ram(static_cast<int32_t>(
      std::min<int64_t>(options.sessions.max_sessions_in_ram, INT32_MAX)));
  limits->set_max_sessions(options.sessions.max_sessions);
  limits->set_session_ttl_seconds(
      static_cast<double>(options.sessions.idle_ttl.count()));
  limits->set_max_batch(options.scheduler.max_batch);
  limits->set_max_message_bytes(options.max_message_bytes);
  return info;
}

}  // namespace

Server::Server(const ServerOptions& options) : options_(options) {}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(
    const ServerOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  std::unique_ptr<Server> server(new Server(options));
  RETURN_IF_ERROR(server->Init());
  server->startup_seconds_ =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  return server;
}

absl::Status Server::Init() {
  // ExportSession sends chunks of kExportChunkBytes.
  constexpr int64_t kMinMessageBytes = 2 * kExportChunkBytes;
  if (options_.max_tokens < 1 || options_.max_input_tokens < 1 ||
      options_.max_message_bytes < kMinMessageBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max_tokens and --max_input_tokens must be >= 1 and "
        "--max_message_bytes >= ",
        kMinMessageBytes, " (ExportSession's chunks are ", kExportChunkBytes,
        " bytes), got ", options_.max_tokens, ", ", options_.max_input_tokens,
        ", ", options_.max_message_bytes));
  }
  if (options_.min_tokens_per_message < 1 ||
      options_.min_tokens_per_message > kMaxCoalescedTokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--min_tokens_per_message must be in [1, ", kMaxCoalescedTokens,
        "], got ", options_.min_tokens_per_message));
  }
  engine::ModelOptions model_options;
  model_options.weight_type = options_.weight_type;
  // Loaded on a thread that ends here: oneDNN's packing runs OpenMP, and
  // libgomp keeps a thread pool per thread that ever started a parallel
  // region. A second pool (the caller's, besides the engine thread's) makes
  // libgomp count more threads than cores and stop spinning between
  // regions, so every region of every step waits for futex wake-ups: a
  // single stream ran 6x slower on 2 cores (docs/performance.md, Serving).
  absl::StatusOr<std::unique_ptr<engine::Model>> loaded;
  std::thread([&] {
    loaded = engine::Model::Load(options_.model_dir, model_options);
  }).join();
  ASSIGN_OR_RETURN(model_, std::move(loaded));
  ASSIGN_OR_RETURN(tokenizer_,
                   engine::LoadTokenizerIfPresent(
                       options_.model_dir,
                       engine::TokenizerOptionsFromConfig(model_->config())));
  ASSIGN_OR_RETURN(
      ChatTemplate chat_template,
      LoadChatTemplate(options_.chat_template, options_.model_dir));
  MetricsLabels labels;
  labels.model = BaseName(options_.model_dir);
  labels.version = LINSERVE_VERSION;
  labels.isa = std::string(kernels::KernelIsaName(kernels::ActiveKernelIsa()));
  labels.state_bytes_per_session = model_->StateBytes();
  labels.parameters = CountParameters(options_.model_dir);
  metrics_ = std::make_unique<Metrics>(labels);
  ASSIGN_OR_RETURN(store_, SessionStore::Open(*model_, options_.sessions));
  Metrics* metrics = options_.metrics_enabled ? metrics_.get() : nullptr;
  if (metrics != nullptr) {
    store_->on_evicted = [metrics] { metrics->AddEviction(); };
    store_->on_expired = [metrics] { metrics->AddExpired(1); };
    SessionStore* store = store_.get();
    metrics->SetRefresh([metrics, store] {
      metrics->SetSessions(store->size_in_ram(),
                           store->size() - store->size_in_ram(),
                           store->state_bytes_in_ram());
    });
    if (!options_.metrics_listen.empty()) {
      RETURN_IF_ERROR(metrics->Serve(options_.metrics_listen));
    }
  }
  scheduler_ = std::make_unique<Scheduler>(*model_, tokenizer_.get(),
                                           options_.scheduler, metrics);

  context_.model = model_.get();
  context_.tokenizer = tokenizer_.get();
  context_.store = store_.get();
  context_.scheduler = scheduler_.get();
  context_.calls = &calls_;
  context_.chat_template = std::move(chat_template);
  context_.model_name = BaseName(options_.model_dir);
  context_.limits.max_tokens = options_.max_tokens;
  context_.limits.max_input_tokens = options_.max_input_tokens;

  inference_service_ = std::make_unique<InferenceService>(
      &context_, options_.min_tokens_per_message);
  sessions_service_ = std::make_unique<SessionsService>(&context_);
  models_service_ = std::make_unique<ModelsService>(
      DescribeModel(options_, context_), &calls_);
  reflection_service_ =
      std::make_unique<ReflectionService>(std::vector<std::string>{
          "linserve.v1.Inference", "linserve.v1.Sessions", "linserve.v1.Models",
          "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"});

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  if (metrics != nullptr) {
    interceptors.push_back(
        std::make_unique<MetricsInterceptorFactory>(metrics));
    builder.experimental().SetInterceptorCreators(std::move(interceptors));
  }
  builder.AddListeningPort(options_.listen, grpc::InsecureServerCredentials(),
                           &port_);
  builder.RegisterService(inference_service_.get());
  builder.RegisterService(sessions_service_.get());
  builder.RegisterService(models_service_.get());
  builder.RegisterService(reflection_service_.get());
  const int max_message = static_cast<int>(
      std::min<int64_t>(options_.max_message_bytes, INT32_MAX));
  builder.SetMaxReceiveMessageSize(max_message);
  builder.SetMaxSendMessageSize(max_message);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(options_.keepalive_time.count()));
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
      static_cast<int>(options_.keepalive_timeout.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Accept client keepalive pings every 10 s or more (gRPC's default
  // refuses pings more often than every 5 minutes without data).
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  grpc_server_ = builder.BuildAndStart();
  if (grpc_server_ == nullptr || port_ == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on '", options_.listen,
        "' (--listen): the address is malformed, in use, or not local"));
  }
  const size_t colon = options_.listen.rfind(':');
  address_ = absl::StrCat(options_.listen.substr(0, colon), ":", port_);

  grpc::HealthCheckServiceInterface* health =
      grpc_server_->GetHealthCheckService();
  for (const char* service : kHealthServices) {
    health->SetServingStatus(service, true);
  }

  if (options_.sessions.idle_ttl.count() > 0) {
    sweep_thread_ = std::thread([this] { SweepLoop(); });
  }
  return absl::OkStatus();
}

Server::~Server() { Shutdown(); }

void Server::SweepLoop() {
  // A tenth of the TTL, between 1 s and 1 min: sessions live at most 10%
  // past their TTL.
  const auto interval = std::clamp<std::chrono::milliseconds>(
      std::chrono::duration_cast<std::chrono::milliseconds>(
          options_.sessions.idle_ttl) /
          10,
      std::chrono::seconds(1), std::chrono::minutes(1));
  std::unique_lock<std::mutex> lock(mu_);
  while (!shutdown_) {
    if (sweep_cv_.wait_for(lock, interval, [this] { return shutdown_; })) {
      break;
    }
    lock.unlock();
    store_->Sweep();
    lock.lock();
  }
}

absl::Status Server::Drain(std::chrono::milliseconds grace) {
  std::lock_guard<std::mutex> drain_lock(drain_mu_);
  calls_.StartDraining();
  if (grpc_server_ != nullptr) {
    grpc_server_->GetHealthCheckService()->SetServingStatus(false);
  }
  if (!calls_.WaitIdle(grace)) {
    const int64_t cancelled = calls_.CancelAll();
    std::fprintf(stderr,
                 "linserve: drain: %lld call(s) still running after the grace "
                 "period; cancelled (their sessions roll back)\n",
                 static_cast<long long>(cancelled));
    if (!calls_.WaitIdle(kCancelledCallsWait)) {
      std::fprintf(stderr,
                   "linserve: drain: %lld call(s) did not end after "
                   "cancellation; their sessions are not spilled\n",
                   static_cast<long long>(calls_.active()));
    }
  }
  scheduler_->StopAccepting();
  if (options_.sessions.spill_dir.empty()) return absl::OkStatus();
  return store_->SpillAll();
}

void Server::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shutdown_) return;
    shutdown_ = true;
  }
  sweep_cv_.notify_all();
  if (sweep_thread_.joinable()) sweep_thread_.join();
  if (grpc_server_ != nullptr) {
    // Calls still running are cancelled at once; Shutdown returns when every
    // reactor is done.
    grpc_server_->Shutdown(std::chrono::system_clock::now());
  }
}

void Server::Wait() {
  if (grpc_server_ != nullptr) grpc_server_->Wait();
}

}  // namespace linserve::server
