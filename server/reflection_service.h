// gRPC server reflection (grpc.reflection.v1alpha.ServerReflection), so that
// grpcurl and similar tools can list the services and fetch their schemas.
// Answers from the process's generated descriptor pool: list_services with
// the names given at construction, file_by_filename and
// file_containing_symbol / _extension with the file and its transitive
// imports (each file once per stream), all_extension_numbers_of_type.
// linserve serves it itself because libgrpc++_reflection would load
// libprotobuf.so, which clashes with libsentencepiece (top-level
// CMakeLists.txt).
#ifndef LINSERVE_SERVER_REFLECTION_SERVICE_H_
#define LINSERVE_SERVER_REFLECTION_SERVICE_H_

#include <string>
#include <vector>

#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"

namespace linserve::server {

class ReflectionService final
    : public grpc::reflection::v1alpha::ServerReflection::CallbackService {
 public:
  // `services`: the full names ListServices reports.
  explicit ReflectionService(std::vector<std::string> services)
      : services_(std::move(services)) {}

  grpc::ServerBidiReactor<grpc::reflection::v1alpha::ServerReflectionRequest,
                          grpc::reflection::v1alpha::ServerReflectionResponse>*
  ServerReflectionInfo(grpc::CallbackServerContext* call) override;

  const std::vector<std::string>& services() const { return services_; }

 private:
  const std::vector<std::string> services_;
};

}  // namespace linserve::server

#endif  // LINSERVE_SERVER_REFLECTION_SERVICE_H_
