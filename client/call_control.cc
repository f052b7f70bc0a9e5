#include "client/call_control.h"

#include <chrono>

namespace linserve::client {

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  // grpc::StatusCode and absl::StatusCode share the canonical values.
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

void CallCanceller::Cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  if (context_ != nullptr) context_->TryCancel();
}

bool CallCanceller::cancelled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

void CallCanceller::Reset() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = false;
}

void CallCanceller::Attach(grpc::ClientContext* context) {
  std::lock_guard<std::mutex> lock(mu_);
  context_ = context;
  if (cancelled_) context_->TryCancel();
}

void CallCanceller::Detach() {
  std::lock_guard<std::mutex> lock(mu_);
  context_ = nullptr;
}

ScopedCallContext::ScopedCallContext(const CallOptions& options,
                                     absl::Duration default_timeout,
                                     const std::string& session_id)
    : canceller_(options.canceller) {
  const absl::Duration timeout = options.timeout.value_or(default_timeout);
  if (timeout != absl::InfiniteDuration()) {
    context_.set_deadline(std::chrono::system_clock::now() +
                          absl::ToChronoNanoseconds(timeout));
  }
  if (!session_id.empty()) {
    context_.AddMetadata(kSessionMetadataKey, session_id);
  }
  if (canceller_ != nullptr) canceller_->Attach(&context_);
}

ScopedCallContext::~ScopedCallContext() {
  if (canceller_ != nullptr) canceller_->Detach();
}

}  // namespace linserve::client
