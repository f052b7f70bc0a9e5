// The per-call interceptor behind MetricsInterceptorFactory.
#include "server/metrics_interceptor.h"

#include <chrono>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "server/tsan_annotations.h"

namespace linserve::server {
namespace {

using grpc::experimental::InterceptionHookPoints;

class MetricsInterceptor : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(Metrics* metrics, const char* full_method)
      : metrics_(metrics),
        start_(std::chrono::steady_clock::now()),
        method_(ShortName(full_method)) {
    // gRPC runs the hooks and the destructor on other threads, ordered in
    // code ThreadSanitizer cannot see (server/tsan_annotations.h).
    TsanHappensBefore(this);
  }
  ~MetricsInterceptor() override { TsanHappensAfter(this); }

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    TsanHappensAfter(this);
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS)) {
      Record(methods->GetSendStatus());
    }
    TsanHappensBefore(this);
    methods->Proceed();
  }

 private:
  // "/linserve.v1.Inference/Generate" -> "Generate".
  static std::string ShortName(const char* full_method) {
    const absl::string_view name(full_method == nullptr ? "" : full_method);
    const size_t slash = name.rfind('/');
    return std::string(
        slash == absl::string_view::npos ? name : name.substr(slash + 1));
  }

  void Record(const grpc::Status& status) {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_)
            .count();
    metrics_->RecordRequest(method_, static_cast<int>(status.error_code()),
                            seconds);
    switch (status.error_code()) {
      case grpc::StatusCode::OK:
        if (method_ == "ForkSession") metrics_->AddFork();
        if (method_ == "ExportSession") metrics_->AddExport();
        if (method_ == "ImportSession") metrics_->AddImport();
        break;
      case grpc::StatusCode::UNAVAILABLE:
        metrics_->RecordRejected(RejectReason::kDraining);
        break;
      case grpc::StatusCode::ABORTED:
        metrics_->RecordRejected(RejectReason::kSessionBusy);
        break;
      case grpc::StatusCode::RESOURCE_EXHAUSTED:
        // The scheduler's refusal names its flag (server/scheduler.cc);
        // the session store's names --max_sessions.
        metrics_->RecordRejected(
            absl::StrContains(status.error_message(), "--max_queued")
                ? RejectReason::kQueueFull
                : RejectReason::kSessionLimit);
        break;
      default:
        break;
    }
  }

  Metrics* const metrics_;
  const std::chrono::steady_clock::time_point start_;
  const std::string method_;
};

}  // namespace

grpc::experimental::Interceptor*
MetricsInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new MetricsInterceptor(metrics_, info->method());
}

}  // namespace linserve::server
