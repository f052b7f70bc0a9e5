// One Inference.Chat stream: many turns of one server-kept session on one
// bidirectional stream, with replies streamed as they are generated.
//
//   v1::ChatStart start;                      // empty id: a new session
//   start.mutable_sampling()->set_temperature(0);
//   auto chat = ChatSession::Start(*client, start);
//   v1::ChatTurn turn;
//   turn.set_text("Who begat Enos?");
//   auto end = (*chat)->SendTurn(turn, [](const v1::GenerateChunk& c) {
//     std::cout << c.text() << std::flush;
//   });
//   ... (*chat)->Close();
//
// Thread-safety: one thread drives Start / SendTurn / Close; Cancel() may
// be called from any other thread while a reply streams (it sends
// ChatCancel: the turn then ends with FINISH_REASON_CANCELLED and the
// session keeps what was sent). After an error the stream is over: every
// further call returns that error.
#ifndef LINSERVE_CLIENT_CHAT_SESSION_H_
#define LINSERVE_CLIENT_CHAT_SESSION_H_

#include <grpcpp/client_context.h>
#include <grpcpp/support/sync_stream.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/call_control.h"
#include "client/client.h"

namespace linserve::client {

class ChatSession {
 public:
  // Opens the stream, sends `start` and waits for ChatStarted. The stream
  // has no deadline unless `call` gives one; `call.canceller` ends the
  // whole stream.
  static absl::StatusOr<std::unique_ptr<ChatSession>> Start(
      Client& client, const v1::ChatStart& start, const CallOptions& call = {});

  // Ends the stream (cancelling it if Close was not called).
  ~ChatSession();
  ChatSession(const ChatSession&) = delete;
  ChatSession& operator=(const ChatSession&) = delete;

  // The session (the server's id when ChatStart left it empty).
  const std::string& session_id() const { return session_id_; }
  // The session's position when the chat started.
  int64_t start_position() const { return start_position_; }

  // Sends one user turn and streams the reply to `on_chunk` until the turn
  // ends.
  absl::StatusOr<v1::ChatTurnEnd> SendTurn(
      const v1::ChatTurn& turn, const GenerateChunkCallback& on_chunk);
  absl::StatusOr<v1::ChatTurnEnd> SendTurn(
      const std::string& text, const GenerateChunkCallback& on_chunk);

  // Stops the reply in progress; a no-op on the server when none is.
  absl::Status Cancel();

  // Half-closes the stream and returns the server's final status.
  absl::Status Close();

 private:
  ChatSession() = default;
  // Drains and finishes the stream (once) and returns ClosedError().
  absl::Status Fail();
  // What calls on a finished stream return: the server's error, or
  // FAILED_PRECONDITION when it ended cleanly.
  absl::Status ClosedError() const;

  std::unique_ptr<ScopedCallContext> context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::ChatRequest, v1::ChatResponse>>
      stream_;
  std::mutex write_mu_;         // one Write at a time (SendTurn vs Cancel)
  bool writes_closed_ = false;  // guarded by write_mu_: WritesDone or Finish
  std::string session_id_;
  int64_t start_position_ = 0;
  // Touched by the driving thread only.
  bool finished_ = false;      // Finish() was called
  absl::Status final_status_;  // Finish()'s status once finished_
};

}  // namespace linserve::client

#endif  // LINSERVE_CLIENT_CHAT_SESSION_H_
