// Counts every RPC for the metrics in one place: a gRPC server interceptor
// that, when a call sends its status, records linserve_requests_total
// {method, code} and the end-to-end latency, classifies refusals into
// linserve_rejected_total{reason}, and counts successful forks, exports and
// imports. The services themselves stay free of metrics code.
#ifndef LINSERVE_SERVER_METRICS_INTERCEPTOR_H_
#define LINSERVE_SERVER_METRICS_INTERCEPTOR_H_

#include <grpcpp/support/server_interceptor.h>

#include "server/metrics.h"

namespace linserve::server {

class MetricsInterceptorFactory
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // `metrics` must outlive the gRPC server.
  explicit MetricsInterceptorFactory(Metrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  Metrics* metrics_;
};

}  // namespace linserve::server

#endif  // LINSERVE_SERVER_METRICS_INTERCEPTOR_H_
