// The Models service (proto/linserve/v1/models.proto): the one model the
// server runs, described once at startup (Server::Start builds the
// ModelInfo from the model's config, the tokenizer, the chat template and
// the server's limits) and returned as is.
#ifndef LINSERVE_SERVER_MODELS_SERVICE_H_
#define LINSERVE_SERVER_MODELS_SERVICE_H_

#include "linserve/v1/models.grpc.pb.h"
#include "server/call_tracker.h"

namespace linserve::server {

class ModelsService final : public v1::Models::CallbackService {
 public:
  // `calls` (for draining) must outlive the service.
  ModelsService(v1::ModelInfo info, const CallTracker* calls)
      : info_(std::move(info)), calls_(calls) {}

  grpc::ServerUnaryReactor* ListModels(
      grpc::CallbackServerContext* call, const v1::ListModelsRequest* request,
      v1::ListModelsResponse* response) override;
  // An empty name means the server's model.
  grpc::ServerUnaryReactor* GetModel(grpc::CallbackServerContext* call,
                                     const v1::GetModelRequest* request,
                                     v1::ModelInfo* response) override;

  const v1::ModelInfo& info() const { return info_; }

 private:
  const v1::ModelInfo info_;
  const CallTracker* calls_;
};

}  // namespace linserve::server

#endif  // LINSERVE_SERVER_MODELS_SERVICE_H_
