// The Models service (see models_service.h).
#include "server/models_service.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/grpc_status.h"

namespace linserve::server {
namespace {

grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* call,
                                      const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = call->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* ModelsService::ListModels(
    grpc::CallbackServerContext* call, const v1::ListModelsRequest* request,
    v1::ListModelsResponse* response) {
  (void)request;
  if (calls_->draining()) return FinishUnary(call, DrainingError());
  *response->add_models() = info_;
  return FinishUnary(call, absl::OkStatus());
}

grpc::ServerUnaryReactor* ModelsService::GetModel(
    grpc::CallbackServerContext* call, const v1::GetModelRequest* request,
    v1::ModelInfo* response) {
  if (calls_->draining()) return FinishUnary(call, DrainingError());
  if (!request->name().empty() && request->name() != info_.name()) {
    return FinishUnary(call, absl::NotFoundError(absl::StrCat(
                                 "model '", request->name(),
                                 "' is not served here; this "
                                 "server runs '",
                                 info_.name(), "' (ListModels lists it)")));
  }
  *response = info_;
  return FinishUnary(call, absl::OkStatus());
}

}  // namespace linserve::server
