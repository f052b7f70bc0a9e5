// The server's Prometheus metrics (prometheus-cpp), served as text on their
// own port at /metrics. Names follow vLLM's semantics with a `linserve_`
// prefix (`_seconds` histograms, `_total` counters), every series carries the
// `model` label, and no label ever holds a session id (low cardinality).
// docs/operations.md lists every series and what to graph.
//
// The hot path (the engine loop, once per step and per token) only touches
// pre-resolved counters, gauges and histograms: an atomic add, or a short
// uncontended lock for a histogram, with no label lookups.
//
//   ASSIGN_OR_RETURN(auto metrics, Metrics::Create(labels));
//   RETURN_IF_ERROR(metrics->Serve("0.0.0.0:9090"));
//   metrics->RecordRequest("Generate", grpc::StatusCode::OK, seconds);
#ifndef LINSERVE_SERVER_METRICS_H_
#define LINSERVE_SERVER_METRICS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace prometheus {
class Counter;
class Exposer;
class Gauge;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace linserve::server {

// What the static series report.
struct MetricsLabels {
  std::string model;    // the model's name (its directory's base name)
  std::string version;  // linserve's version
  std::string isa;      // the kernel ISA in use (avx512, portable)
  int64_t state_bytes_per_session = 0;
  int64_t parameters = 0;
};

// Why a call was refused before it ran (linserve_rejected_total's reason).
enum class RejectReason { kQueueFull, kDraining, kSessionBusy, kSessionLimit };

class Metrics {
 public:
  explicit Metrics(const MetricsLabels& labels);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Serves /metrics on `address` (host:port; port 0 picks one).
  // Unavailable naming the address if it cannot bind.
  absl::Status Serve(const std::string& address);
  // The port /metrics is served on (0 before Serve).
  int port() const { return port_; }
  // The text exposition of every series (what a scrape returns).
  std::string Scrape() const;
  // Called at the start of every scrape, to set gauges that are cheaper to
  // read when asked than to keep current (the session counts). Set before
  // Serve.
  void SetRefresh(std::function<void()> refresh) {
    refresh_ = std::move(refresh);
  }

  // A finished RPC: its method ("Generate", "GetSession", ...) and gRPC
  // status code (the integer value of grpc::StatusCode).
  void RecordRequest(absl::string_view method, int grpc_code,
                     double e2e_seconds);
  void RecordRejected(RejectReason reason);

  // Engine loop.
  void RecordQueueTime(double seconds);
  void RecordTimeToFirstToken(double seconds);
  void RecordInterTokenLatency(double seconds);
  void AddPromptTokens(int64_t n);
  void AddGenerationTokens(int64_t n);
  void AddIngestTokens(int64_t n);
  // One step: sessions decoded, tokens run (decode + prefill), duration.
  void RecordStep(int64_t batch_size, int64_t tokens, double seconds);
  void SetRequests(int64_t running, int64_t waiting);

  // Session store.
  void SetSessions(int64_t in_ram, int64_t spilled, int64_t state_bytes);
  void AddEviction();
  void AddExpired(int64_t n);
  void AddExport();
  void AddImport();
  void AddFork();

 private:
  class RefreshingCollectable;
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<RefreshingCollectable> collectable_;
  std::function<void()> refresh_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;

  prometheus::Family<prometheus::Counter>* requests_ = nullptr;
  prometheus::Family<prometheus::Histogram>* e2e_latency_ = nullptr;
  prometheus::Family<prometheus::Counter>* rejected_ = nullptr;
  prometheus::Histogram* queue_time_ = nullptr;
  prometheus::Histogram* ttft_ = nullptr;
  prometheus::Histogram* inter_token_ = nullptr;
  prometheus::Counter* prompt_tokens_ = nullptr;
  prometheus::Counter* generation_tokens_ = nullptr;
  prometheus::Counter* ingest_tokens_ = nullptr;
  prometheus::Histogram* batch_size_ = nullptr;
  prometheus::Histogram* step_tokens_ = nullptr;
  prometheus::Histogram* step_duration_ = nullptr;
  prometheus::Gauge* running_ = nullptr;
  prometheus::Gauge* waiting_ = nullptr;
  prometheus::Gauge* sessions_ram_ = nullptr;
  prometheus::Gauge* sessions_spill_ = nullptr;
  prometheus::Gauge* state_bytes_ = nullptr;
  prometheus::Counter* evictions_ = nullptr;
  prometheus::Counter* expired_ = nullptr;
  prometheus::Counter* exports_ = nullptr;
  prometheus::Counter* imports_ = nullptr;
  prometheus::Counter* forks_ = nullptr;
};

}  // namespace linserve::server

#endif  // LINSERVE_SERVER_METRICS_H_
