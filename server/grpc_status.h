// The one place where linserve's absl::Status becomes a grpc::Status (and
// back, for tests and the client's view of a server error). The codes are
// the same numbers in both (absl::StatusCode mirrors the canonical gRPC
// codes); messages are capped at kMaxStatusMessageBytes so that an error
// naming a huge input never becomes a huge trailer.
//
//   absl::Status s = store.Acquire(id).status();
//   if (!s.ok()) return reactor->Finish(ToGrpcStatus(s));
#ifndef LINSERVE_SERVER_GRPC_STATUS_H_
#define LINSERVE_SERVER_GRPC_STATUS_H_

#include <cstddef>

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace linserve::server {

inline constexpr size_t kMaxStatusMessageBytes = 4096;

// Same code, the message capped (with "... (truncated)").
grpc::Status ToGrpcStatus(const absl::Status& status);

// The inverse (same code and message).
absl::Status FromGrpcStatus(const grpc::Status& status);

// What every new call gets while the server drains (UNAVAILABLE).
absl::Status DrainingError();

}  // namespace linserve::server

#endif  // LINSERVE_SERVER_GRPC_STATUS_H_
