// absl::Status <-> grpc::Status (see grpc_status.h).
#include "server/grpc_status.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace linserve::server {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  std::string message(status.message());
  if (message.size() > kMaxStatusMessageBytes) {
    constexpr char kSuffix[] = "... (truncated)";
    message.resize(kMaxStatusMessageBytes - sizeof(kSuffix) + 1);
    // Do not cut a UTF-8 character in two: back off continuation bytes.
    while (!message.empty() &&
           (static_cast<unsigned char>(message.back()) & 0xC0) == 0x80) {
      message.pop_back();
    }
    if (!message.empty() &&
        (static_cast<unsigned char>(message.back()) & 0x80) != 0) {
      message.pop_back();
    }
    message += kSuffix;
  }
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), message);
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

absl::Status DrainingError() {
  return absl::UnavailableError(
      "server is draining (shutting down): no new calls are accepted; retry "
      "on another replica or after the server restarts");
}

}  // namespace linserve::server
