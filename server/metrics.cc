// The metric families and their buckets (server/metrics.h).
#include "server/metrics.h"

#include <exception>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"

namespace linserve::server {
namespace {

using prometheus::Histogram;

// Latencies from 0.1 ms (a decode step of a small model) to a minute (a
// long prompt behind a queue).
const Histogram::BucketBoundaries& LatencyBuckets() {
  static const Histogram::BucketBoundaries kBuckets = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
      0.1,    0.25,    0.5,    1.0,   2.5,    5.0,   10.0, 30.0,  60.0};
  return kBuckets;
}

// Whole calls: 1 ms (GetSession) to 20 minutes (a 1M-token ingest).
const Histogram::BucketBoundaries& RequestBuckets() {
  static const Histogram::BucketBoundaries kBuckets = {
      0.001, 0.005, 0.01, 0.025, 0.05, 0.1,   0.25,  0.5,   1.0,
      2.5,   5.0,   10.0, 30.0,  60.0, 120.0, 300.0, 600.0, 1200.0};
  return kBuckets;
}

// Powers of two: sessions per step up to the largest batch, tokens per step
// up to a generous budget.
Histogram::BucketBoundaries PowersOfTwo(int max_exponent) {
  Histogram::BucketBoundaries b;
  for (int e = 0; e <= max_exponent; ++e) b.push_back(double(int64_t{1} << e));
  return b;
}

const char* ReasonLabel(RejectReason reason) {
  switch (reason) {
    case RejectReason::kQueueFull:
      return "queue_full";
    case RejectReason::kDraining:
      return "draining";
    case RejectReason::kSessionBusy:
      return "session_busy";
    case RejectReason::kSessionLimit:
      return "session_limit";
  }
  return "other";
}

// grpc::StatusCode names, as gRPC spells them (label values).
const char* CodeName(int code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  if (code < 0 || code > 16) return "UNKNOWN";
  return kNames[code];
}

}  // namespace

Metrics::Metrics(const MetricsLabels& labels)
    : registry_(std::make_shared<prometheus::Registry>()) {
  const prometheus::Labels model = {{"model", labels.model}};
  auto& r = *registry_;
  auto histogram = [&](const std::string& name, const std::string& help,
                       const Histogram::BucketBoundaries& buckets) {
    return &prometheus::BuildHistogram()
                .Name(name)
                .Help(help)
                .Labels(model)
                .Register(r)
                .Add({}, buckets);
  };
  auto counter = [&](const std::string& name, const std::string& help) {
    return &prometheus::BuildCounter()
                .Name(name)
                .Help(help)
                .Labels(model)
                .Register(r)
                .Add({});
  };
  auto gauge = [&](const std::string& name, const std::string& help) {
    return &prometheus::BuildGauge()
                .Name(name)
                .Help(help)
                .Labels(model)
                .Register(r)
                .Add({});
  };

  requests_ = &prometheus::BuildCounter()
                   .Name("linserve_requests_total")
                   .Help("Finished RPCs by method and gRPC status code.")
                   .Labels(model)
                   .Register(r);
  e2e_latency_ = &prometheus::BuildHistogram()
                      .Name("linserve_e2e_request_latency_seconds")
                      .Help("Time from an RPC's arrival to its end.")
                      .Labels(model)
                      .Register(r);
  rejected_ = &prometheus::BuildCounter()
                   .Name("linserve_rejected_total")
                   .Help("Calls refused before they ran, by reason.")
                   .Labels(model)
                   .Register(r);
  // Every reason exists from the start (at 0), so rates and alerts see a
  // series before the first refusal.
  for (RejectReason reason :
       {RejectReason::kQueueFull, RejectReason::kDraining,
        RejectReason::kSessionBusy, RejectReason::kSessionLimit}) {
    rejected_->Add({{"reason", ReasonLabel(reason)}});
  }
  queue_time_ = histogram(
      "linserve_request_queue_time_seconds",
      "Time from a call's arrival to the first engine step that works on it.",
      LatencyBuckets());
  ttft_ = histogram("linserve_time_to_first_token_seconds",
                    "Time from a generating call's arrival to its first token.",
                    LatencyBuckets());
  inter_token_ =
      histogram("linserve_inter_token_latency_seconds",
                "Time between two consecutive tokens of one generation.",
                LatencyBuckets());
  prompt_tokens_ = counter("linserve_prompt_tokens_total",
                           "Prompt tokens fed by Generate and Chat calls.");
  generation_tokens_ =
      counter("linserve_generation_tokens_total", "Tokens generated.");
  ingest_tokens_ = counter("linserve_ingest_tokens_total",
                           "Tokens fed by Ingest and Score calls.");
  batch_size_ =
      histogram("linserve_batch_size", "Sessions decoded in one engine step.",
                PowersOfTwo(10));
  step_tokens_ = histogram("linserve_step_tokens",
                           "Tokens run in one engine step (decode + prefill).",
                           PowersOfTwo(16));
  step_duration_ = histogram("linserve_step_duration_seconds",
                             "Wall time of one engine step.", LatencyBuckets());
  running_ =
      gauge("linserve_num_requests_running", "Calls the engine is working on.");
  waiting_ = gauge("linserve_num_requests_waiting",
                   "Calls admitted and waiting for an engine slot.");
  auto& sessions = prometheus::BuildGauge()
                       .Name("linserve_sessions")
                       .Help("Sessions held, by where their state is.")
                       .Labels(model)
                       .Register(r);
  sessions_ram_ = &sessions.Add({{"where", "ram"}});
  sessions_spill_ = &sessions.Add({{"where", "spill"}});
  state_bytes_ = gauge("linserve_session_state_bytes",
                       "Bytes of session state resident in RAM.");
  evictions_ = counter("linserve_session_evictions_total",
                       "Sessions moved from RAM to the spill directory.");
  expired_ = counter("linserve_session_expired_total",
                     "Sessions deleted after their idle TTL.");
  exports_ = counter("linserve_session_exports_total", "Sessions exported.");
  imports_ = counter("linserve_session_imports_total", "Sessions imported.");
  forks_ = counter("linserve_session_forks_total", "Sessions forked.");

  prometheus::BuildGauge()
      .Name("linserve_build_info")
      .Help("Always 1; the labels say which build and kernels run.")
      .Labels(model)
      .Register(r)
      .Add({{"version", labels.version}, {"isa", labels.isa}})
      .Set(1);
  gauge("linserve_model_state_bytes_per_session",
        "Bytes of one session's state (constant in its length).")
      ->Set(static_cast<double>(labels.state_bytes_per_session));
  gauge("linserve_model_parameters", "Parameters of the model.")
      ->Set(static_cast<double>(labels.parameters));
}

// What the exposer collects: the registry, after the refresh callback.
class Metrics::RefreshingCollectable : public prometheus::Collectable {
 public:
  explicit RefreshingCollectable(const Metrics* metrics) : metrics_(metrics) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    if (metrics_->refresh_) metrics_->refresh_();
    return metrics_->registry_->Collect();
  }

 private:
  const Metrics* metrics_;
};

Metrics::~Metrics() {
  // Stop serving before the registry and the callbacks go away.
  exposer_.reset();
}

absl::Status Metrics::Serve(const std::string& address) {
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(address);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", address, ": ", e.what(),
                     " (is the port taken? set --metrics_port)"));
  }
  collectable_ = std::make_shared<RefreshingCollectable>(this);
  exposer_->RegisterCollectable(collectable_);
  const std::vector<int> ports = exposer_->GetListeningPorts();
  port_ = ports.empty() ? 0 : ports.front();
  return absl::OkStatus();
}

std::string Metrics::Scrape() const {
  if (refresh_) refresh_();
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

void Metrics::RecordRequest(absl::string_view method, int grpc_code,
                            double e2e_seconds) {
  const std::string m(method);
  requests_->Add({{"method", m}, {"code", CodeName(grpc_code)}}).Increment();
  e2e_latency_->Add({{"method", m}}, RequestBuckets()).Observe(e2e_seconds);
}

void Metrics::RecordRejected(RejectReason reason) {
  rejected_->Add({{"reason", ReasonLabel(reason)}}).Increment();
}

void Metrics::RecordQueueTime(double s) { queue_time_->Observe(s); }
void Metrics::RecordTimeToFirstToken(double s) { ttft_->Observe(s); }
void Metrics::RecordInterTokenLatency(double s) { inter_token_->Observe(s); }
void Metrics::AddPromptTokens(int64_t n) {
  prompt_tokens_->Increment(static_cast<double>(n));
}
void Metrics::AddGenerationTokens(int64_t n) {
  generation_tokens_->Increment(static_cast<double>(n));
}
void Metrics::AddIngestTokens(int64_t n) {
  ingest_tokens_->Increment(static_cast<double>(n));
}

void Metrics::RecordStep(int64_t batch_size, int64_t tokens, double seconds) {
  if (batch_size > 0) batch_size_->Observe(static_cast<double>(batch_size));
  step_tokens_->Observe(static_cast<double>(tokens));
  step_duration_->Observe(seconds);
}

void Metrics::SetRequests(int64_t running, int64_t waiting) {
  running_->Set(static_cast<double>(running));
  waiting_->Set(static_cast<double>(waiting));
}

void Metrics::SetSessions(int64_t in_ram, int64_t spilled,
                          int64_t state_bytes) {
  sessions_ram_->Set(static_cast<double>(in_ram));
  sessions_spill_->Set(static_cast<double>(spilled));
  state_bytes_->Set(static_cast<double>(state_bytes));
}

void Metrics::AddEviction() { evictions_->Increment(); }
void Metrics::AddExpired(int64_t n) {
  expired_->Increment(static_cast<double>(n));
}
void Metrics::AddExport() { exports_->Increment(); }
void Metrics::AddImport() { imports_->Increment(); }
void Metrics::AddFork() { forks_->Increment(); }

}  // namespace linserve::server
