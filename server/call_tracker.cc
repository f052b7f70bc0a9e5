// Registry of running calls for draining (see call_tracker.h).
#include "server/call_tracker.h"

namespace linserve::server {

bool CallTracker::Begin(grpc::CallbackServerContext* context) {
  std::lock_guard<std::mutex> lock(mu_);
  if (draining_) return false;
  calls_.insert(context);
  return true;
}

void CallTracker::End(grpc::CallbackServerContext* context) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    calls_.erase(context);
  }
  idle_cv_.notify_all();
}

void CallTracker::StartDraining() {
  std::lock_guard<std::mutex> lock(mu_);
  draining_ = true;
}

bool CallTracker::draining() const {
  std::lock_guard<std::mutex> lock(mu_);
  return draining_;
}

bool CallTracker::WaitIdle(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return idle_cv_.wait_for(lock, timeout, [this] { return calls_.empty(); });
}

int64_t CallTracker::CancelAll() {
  std::lock_guard<std::mutex> lock(mu_);
  for (grpc::CallbackServerContext* context : calls_) context->TryCancel();
  return static_cast<int64_t>(calls_.size());
}

int64_t CallTracker::active() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(calls_.size());
}

}  // namespace linserve::server
