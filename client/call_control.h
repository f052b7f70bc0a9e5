// Per-call controls of the client library: a deadline, a canceller that can
// stop a call from another thread, and the session id sent as routing
// metadata; plus the one conversion of grpc::Status into absl::Status.
//
//   linserve::client::CallCanceller canceller;
//   std::thread watcher([&] { WaitForCtrlC(); canceller.Cancel(); });
//   auto result = client.Generate(request, on_chunk,
//                                 {.timeout = absl::Seconds(30),
//                                  .canceller = &canceller});
//   // result.status() is CANCELLED if the watcher fired first.
//
// Thread-safety: CallCanceller is thread-safe; a canceller serves one call
// at a time (attach it to the next call once the previous one returned).
#ifndef LINSERVE_CLIENT_CALL_CONTROL_H_
#define LINSERVE_CLIENT_CALL_CONTROL_H_

#include <grpcpp/client_context.h>
#include <grpcpp/support/status.h>

#include <mutex>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace linserve::client {

// The request metadata key that carries a call's session id, so that a
// consistent-hash load balancer routes every call of a session to the
// replica holding it (proto/linserve/v1/sessions.proto).
inline constexpr char kSessionMetadataKey[] = "x-linserve-session";

// Keeps the code and the message of a gRPC status.
absl::Status FromGrpcStatus(const grpc::Status& status);

// Cancels the call it is attached to (grpc::ClientContext::TryCancel). A
// Cancel() before the call starts cancels it as soon as it starts; the call
// then fails with CANCELLED.
class CallCanceller {
 public:
  void Cancel();
  bool cancelled() const;
  // Forgets an earlier Cancel() so the canceller can serve another call.
  void Reset();

 private:
  friend class ScopedCallContext;
  void Attach(grpc::ClientContext* context);
  void Detach();

  mutable std::mutex mu_;
  grpc::ClientContext* context_ = nullptr;  // guarded by mu_
  bool cancelled_ = false;                  // guarded by mu_
};

struct CallOptions {
  // Overrides the client's default deadline for this call;
  // absl::InfiniteDuration() for none.
  std::optional<absl::Duration> timeout;
  // Not owned; may be null.
  CallCanceller* canceller = nullptr;
};

// A grpc::ClientContext set up for one call (deadline, session metadata,
// canceller attached), detached from the canceller when it goes away.
class ScopedCallContext {
 public:
  // `default_timeout` applies when options.timeout is unset (infinite:
  // no deadline). `session_id` may be empty (no metadata then).
  ScopedCallContext(const CallOptions& options, absl::Duration default_timeout,
                    const std::string& session_id);
  ~ScopedCallContext();
  ScopedCallContext(const ScopedCallContext&) = delete;
  ScopedCallContext& operator=(const ScopedCallContext&) = delete;

  grpc::ClientContext* get() { return &context_; }

 private:
  grpc::ClientContext context_;
  CallCanceller* canceller_;
};

}  // namespace linserve::client

#endif  // LINSERVE_CLIENT_CALL_CONTROL_H_
