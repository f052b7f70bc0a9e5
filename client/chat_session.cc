#include "client/chat_session.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace linserve::client {

absl::StatusOr<std::unique_ptr<ChatSession>> ChatSession::Start(
    Client& client, const v1::ChatStart& start, const CallOptions& call) {
  std::unique_ptr<ChatSession> chat(new ChatSession());
  chat->context_ = std::make_unique<ScopedCallContext>(
      call, absl::InfiniteDuration(), start.session_id());
  chat->stream_ = client.inference_stub().Chat(chat->context_->get());
  v1::ChatRequest request;
  *request.mutable_start() = start;
  if (!chat->stream_->Write(request)) return chat->Fail();
  v1::ChatResponse response;
  if (!chat->stream_->Read(&response)) return chat->Fail();
  if (!response.has_started()) {
    chat->context_->get()->TryCancel();
    chat->Fail().IgnoreError();
    return absl::InternalError(
        "Chat: the server's first message is not ChatStarted (server bug)");
  }
  chat->session_id_ = response.started().session_id();
  chat->start_position_ = response.started().session_position();
  return chat;
}

ChatSession::~ChatSession() {
  if (stream_ != nullptr && !finished_) {
    context_->get()->TryCancel();
    Fail().IgnoreError();
  }
}

absl::Status ChatSession::Fail() {
  if (!finished_) {
    finished_ = true;
    {
      // No Cancel() may write once Finish runs.
      std::lock_guard<std::mutex> lock(write_mu_);
      writes_closed_ = true;
    }
    v1::ChatResponse ignored;
    while (stream_->Read(&ignored)) {
    }
    final_status_ = FromGrpcStatus(stream_->Finish());
  }
  return ClosedError();
}

absl::Status ChatSession::ClosedError() const {
  if (!final_status_.ok()) return final_status_;
  return absl::FailedPreconditionError(
      "the Chat stream is closed; start a new ChatSession");
}

absl::StatusOr<v1::ChatTurnEnd> ChatSession::SendTurn(
    const std::string& text, const GenerateChunkCallback& on_chunk) {
  v1::ChatTurn turn;
  turn.set_text(text);
  return SendTurn(turn, on_chunk);
}

absl::StatusOr<v1::ChatTurnEnd> ChatSession::SendTurn(
    const v1::ChatTurn& turn, const GenerateChunkCallback& on_chunk) {
  if (finished_) return ClosedError();
  v1::ChatRequest request;
  *request.mutable_turn() = turn;
  bool written;
  {
    std::lock_guard<std::mutex> lock(write_mu_);
    written = !writes_closed_ && stream_->Write(request);
  }
  if (!written) return Fail();
  v1::ChatResponse response;
  while (stream_->Read(&response)) {
    if (response.has_chunk()) {
      if (on_chunk) on_chunk(response.chunk());
    } else if (response.has_turn_end()) {
      return std::move(*response.mutable_turn_end());
    } else {
      context_->get()->TryCancel();
      Fail().IgnoreError();
      return absl::InternalError(
          absl::StrCat("Chat: unexpected message during a reply (server bug): ",
                       response.ShortDebugString()));
    }
  }
  return Fail();
}

absl::Status ChatSession::Cancel() {
  v1::ChatRequest request;
  request.mutable_cancel();
  std::lock_guard<std::mutex> lock(write_mu_);
  if (writes_closed_ || !stream_->Write(request)) {
    return absl::UnavailableError(
        "Chat: the stream is closed, the cancel was not sent");
  }
  return absl::OkStatus();
}

absl::Status ChatSession::Close() {
  if (finished_) return final_status_;
  {
    std::lock_guard<std::mutex> lock(write_mu_);
    writes_closed_ = true;
    stream_->WritesDone();
  }
  Fail().IgnoreError();
  return final_status_;
}

}  // namespace linserve::client
