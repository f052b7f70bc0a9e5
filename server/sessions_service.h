// The Sessions service (proto/linserve/v1/sessions.proto): create, inspect,
// list, fork, export, import and delete server-kept sessions. Thin: every
// RPC is one SessionStore call. The unary RPCs finish inline (the store
// never holds its lock over disk I/O); ExportSession streams the state in
// chunks of kExportChunkBytes; ImportSession gathers at most the model's
// serialized state size before handing the bytes to the store.
#ifndef LINSERVE_SERVER_SESSIONS_SERVICE_H_
#define LINSERVE_SERVER_SESSIONS_SERVICE_H_

#include <cstdint>

#include "linserve/v1/sessions.grpc.pb.h"
#include "server/service_context.h"

namespace linserve::server {

inline constexpr int64_t kExportChunkBytes = 1 << 20;
inline constexpr int32_t kDefaultListPageSize = 100;
inline constexpr int32_t kMaxListPageSize = 1000;

class SessionsService final : public v1::Sessions::CallbackService {
 public:
  explicit SessionsService(const ServiceContext* context) : context_(context) {}

  grpc::ServerUnaryReactor* CreateSession(
      grpc::CallbackServerContext* call,
      const v1::CreateSessionRequest* request,
      v1::SessionInfo* response) override;
  grpc::ServerUnaryReactor* GetSession(grpc::CallbackServerContext* call,
                                       const v1::GetSessionRequest* request,
                                       v1::SessionInfo* response) override;
  grpc::ServerUnaryReactor* ListSessions(
      grpc::CallbackServerContext* call, const v1::ListSessionsRequest* request,
      v1::ListSessionsResponse* response) override;
  grpc::ServerUnaryReactor* ForkSession(grpc::CallbackServerContext* call,
                                        const v1::ForkSessionRequest* request,
                                        v1::SessionInfo* response) override;
  grpc::ServerWriteReactor<v1::ExportSessionChunk>* ExportSession(
      grpc::CallbackServerContext* call,
      const v1::ExportSessionRequest* request) override;
  grpc::ServerReadReactor<v1::ImportSessionRequest>* ImportSession(
      grpc::CallbackServerContext* call, v1::SessionInfo* response) override;
  grpc::ServerUnaryReactor* DeleteSession(
      grpc::CallbackServerContext* call,
      const v1::DeleteSessionRequest* request,
      v1::DeleteSessionResponse* response) override;

 private:
  const ServiceContext* context_;
};

}  // namespace linserve::server

#endif  // LINSERVE_SERVER_SESSIONS_SERVICE_H_
