// Server reflection from the generated descriptor pool (see
// reflection_service.h).
#include "server/reflection_service.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "server/tsan_annotations.h"

namespace linserve::server {
namespace {

namespace reflection = grpc::reflection::v1alpha;
using google::protobuf::Descriptor;
using google::protobuf::DescriptorPool;
using google::protobuf::FieldDescriptor;
using google::protobuf::FileDescriptor;

// One request answered per read: read, answer, write, read again.
class ReflectionReactor final
    : public GrpcOrderedReactor<
          grpc::ServerBidiReactor<reflection::ServerReflectionRequest,
                                  reflection::ServerReflectionResponse>> {
 public:
  explicit ReflectionReactor(const ReflectionService& service)
      : service_(service) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    AcquireGrpcOrder();
    if (!ok) {
      Finish(grpc::Status::OK);
      return;
    }
    response_.Clear();
    Answer();
    StartWrite(&response_);
  }

  void OnWriteDone(bool ok) override {
    AcquireGrpcOrder();
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
      return;
    }
    StartRead(&request_);
  }

  void OnDone() override {
    AcquireGrpcOrder();
    delete this;
  }

 private:
  void Answer() {
    const DescriptorPool* pool = DescriptorPool::generated_pool();
    response_.set_valid_host(request_.host());
    *response_.mutable_original_request() = request_;
    switch (request_.message_request_case()) {
      case reflection::ServerReflectionRequest::kListServices:
        for (const std::string& name : service_.services()) {
          response_.mutable_list_services_response()->add_service()->set_name(
              name);
        }
        return;
      case reflection::ServerReflectionRequest::kFileByFilename:
        return SendFile(pool->FindFileByName(request_.file_by_filename()),
                        request_.file_by_filename());
      case reflection::ServerReflectionRequest::kFileContainingSymbol:
        return SendFile(
            pool->FindFileContainingSymbol(request_.file_containing_symbol()),
            request_.file_containing_symbol());
      case reflection::ServerReflectionRequest::kFileContainingExtension: {
        const auto& extension = request_.file_containing_extension();
        const Descriptor* type =
            pool->FindMessageTypeByName(extension.containing_type());
        const FieldDescriptor* field =
            type == nullptr ? nullptr
                            : pool->FindExtensionByNumber(
                                  type, extension.extension_number());
        return SendFile(field == nullptr ? nullptr : field->file(),
                        extension.containing_type());
      }
      case reflection::ServerReflectionRequest::kAllExtensionNumbersOfType: {
        const Descriptor* type = pool->FindMessageTypeByName(
            request_.all_extension_numbers_of_type());
        if (type == nullptr) {
          return Error(
              grpc::StatusCode::NOT_FOUND,
              "unknown type " + request_.all_extension_numbers_of_type());
        }
        std::vector<const FieldDescriptor*> extensions;
        pool->FindAllExtensions(type, &extensions);
        auto* numbers = response_.mutable_all_extension_numbers_response();
        numbers->set_base_type_name(type->full_name());
        for (const FieldDescriptor* field : extensions) {
          numbers->add_extension_number(field->number());
        }
        return;
      }
      case reflection::ServerReflectionRequest::MESSAGE_REQUEST_NOT_SET:
        break;
    }
    Error(grpc::StatusCode::INVALID_ARGUMENT, "the request names no query");
  }

  // The file and every import not yet sent on this stream.
  void SendFile(const FileDescriptor* file, const std::string& what) {
    if (file == nullptr) {
      return Error(grpc::StatusCode::NOT_FOUND, "not found: " + what);
    }
    auto* files = response_.mutable_file_descriptor_response();
    std::vector<const FileDescriptor*> pending = {file};
    while (!pending.empty()) {
      const FileDescriptor* next = pending.back();
      pending.pop_back();
      if (!sent_.insert(next->name()).second) continue;
      google::protobuf::FileDescriptorProto proto;
      next->CopyTo(&proto);
      files->add_file_descriptor_proto(proto.SerializeAsString());
      for (int i = 0; i < next->dependency_count(); ++i) {
        pending.push_back(next->dependency(i));
      }
    }
  }

  void Error(grpc::StatusCode code, const std::string& message) {
    response_.mutable_error_response()->set_error_code(code);
    response_.mutable_error_response()->set_error_message(message);
  }

  const ReflectionService& service_;
  reflection::ServerReflectionRequest request_;
  reflection::ServerReflectionResponse response_;
  std::set<std::string> sent_;
};

}  // namespace

grpc::ServerBidiReactor<grpc::reflection::v1alpha::ServerReflectionRequest,
                        grpc::reflection::v1alpha::ServerReflectionResponse>*
ReflectionService::ServerReflectionInfo(grpc::CallbackServerContext* call) {
  (void)call;
  return HandedToGrpc(new ReflectionReactor(*this));
}

}  // namespace linserve::server
