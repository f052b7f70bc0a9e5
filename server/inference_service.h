// The Inference service (proto/linserve/v1/inference.proto): Generate,
// Chat, Ingest and Score as gRPC callback reactors over the scheduler.
//
// Each call validates its request, opens its session (a store lease held
// until the call ends, or a fresh state it owns), submits one job per
// generation / scoring / ingest to the scheduler and streams what the job's
// observer callbacks report. Reactions never block: the engine thread only
// queues output and starts writes; the end of a job (releasing the lease,
// finishing the call) runs on a CallbackExecutor thread. Per stream, at
// most kMaxQueuedMessages responses wait and one write is in flight; while
// the queue is full the job skips steps (a slow reader slows its own call
// only). Tokens generated while a write is in flight go out together in the
// next message; with min_tokens_per_message > 1 a message also waits (while
// the job generates) until it holds that many tokens. The session lease is
// released before the final status is sent, so a client may start its next
// call on the session as soon as this one ends.
#ifndef LINSERVE_SERVER_INFERENCE_SERVICE_H_
#define LINSERVE_SERVER_INFERENCE_SERVICE_H_

#include <cstdint>

#include "linserve/v1/inference.grpc.pb.h"
#include "server/callback_executor.h"
#include "server/service_context.h"

namespace linserve::server {

// Responses one stream may have queued behind its write in flight.
inline constexpr size_t kMaxQueuedMessages = 64;
// Tokens merged into one queued chunk while a write is in flight.
inline constexpr int kMaxCoalescedTokens = 64;
// Ingest reads the next client message only while fewer input tokens than
// this wait in the job.
inline constexpr int64_t kMaxPendingIngestTokens = 1 << 16;
// Ingest text without a space is cut (at a UTF-8 boundary) past this size.
inline constexpr size_t kMaxIngestCarryBytes = 1 << 20;

class InferenceService final : public v1::Inference::CallbackService {
 public:
  // `min_tokens_per_message`: 1 to kMaxCoalescedTokens (StreamOutbox's
  // min_tokens_per_write for Generate and Chat streams).
  explicit InferenceService(const ServiceContext* context,
                            int min_tokens_per_message = 1)
      : context_(context), min_tokens_per_message_(min_tokens_per_message) {}

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* call,
      const v1::GenerateRequest* request) override;
  grpc::ServerBidiReactor<v1::ChatRequest, v1::ChatResponse>* Chat(
      grpc::CallbackServerContext* call) override;
  grpc::ServerReadReactor<v1::IngestRequest>* Ingest(
      grpc::CallbackServerContext* call, v1::IngestResponse* response) override;
  grpc::ServerUnaryReactor* Score(grpc::CallbackServerContext* call,
                                  const v1::ScoreRequest* request,
                                  v1::ScoreResponse* response) override;

 private:
  const ServiceContext* context_;
  const int min_tokens_per_message_;
  CallbackExecutor executor_;
};

}  // namespace linserve::server

#endif  // LINSERVE_SERVER_INFERENCE_SERVICE_H_
