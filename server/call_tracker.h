// The streaming calls in progress, for draining: while the server drains,
// new calls are refused (Begin returns false), running ones are waited for
// (WaitIdle) and, past the grace period, cancelled (CancelAll: each call's
// reactor sees OnCancel, cancels its job and finishes once the scheduler has
// rolled its session back).
//
// Thread-safe. A reactor calls Begin when it starts and End at the start of
// its OnDone (before it is deleted), so CancelAll never touches a finished
// call.
#ifndef LINSERVE_SERVER_CALL_TRACKER_H_
#define LINSERVE_SERVER_CALL_TRACKER_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

#include <grpcpp/server_context.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"

namespace linserve::server {

class CallTracker {
 public:
  // Registers a call. False while draining: the caller then refuses the call
  // with DrainingError() and must not call End.
  bool Begin(grpc::CallbackServerContext* context);
  void End(grpc::CallbackServerContext* context);

  // From now on Begin refuses calls.
  void StartDraining();
  bool draining() const;

  // Waits until no call is registered or `timeout` passes; true if idle.
  bool WaitIdle(std::chrono::milliseconds timeout);
  // Cancels every registered call (grpc TryCancel); returns how many.
  int64_t CancelAll();
  int64_t active() const;

 private:
  // std::mutex rather than absl::Mutex: Debian's Abseil is not built with
  // ThreadSanitizer, which would not see absl::Mutex's ordering.
  mutable std::mutex mu_;
  std::condition_variable idle_cv_;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_set<grpc::CallbackServerContext*> calls_ ABSL_GUARDED_BY(mu_);
};

}  // namespace linserve::server

#endif  // LINSERVE_SERVER_CALL_TRACKER_H_
