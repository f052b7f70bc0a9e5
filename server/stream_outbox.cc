// StreamOutbox (see stream_outbox.h), instantiated for the Inference
// service's two server-streaming responses.
#include "server/stream_outbox.h"

#include <utility>

#include "linserve/v1/inference.pb.h"
#include "server/request_conversion.h"
#include "server/scheduler.h"

namespace linserve::server {

template <typename Response>
void StreamOutbox<Response>::Add(Response response) {
  if (broken_) return;
  queue_.push_back(std::move(response));
}

template <typename Response>
void StreamOutbox<Response>::AddChunk(const GeneratedChunk& chunk,
                                      const engine::Tokenizer* tokenizer) {
  if (broken_) return;
  // has_chunk first: mutable_chunk on another kind (a ChatTurnEnd) would
  // replace it.
  if (!queue_.empty() && queue_.back().has_chunk() &&
      queue_.back().chunk().token_ids_size() < max_coalesced_tokens_) {
    ToProto(chunk, tokenizer, queue_.back().mutable_chunk());
    return;
  }
  ToProto(chunk, tokenizer, queue_.emplace_back().mutable_chunk());
}

template <typename Response>
typename StreamOutbox<Response>::Next StreamOutbox<Response>::TakeNext(
    bool may_finish, bool more_tokens_coming) {
  Next next;
  if (finished_ || write_in_flight_) return next;
  if (more_tokens_coming && queue_.size() == 1 && queue_.front().has_chunk() &&
      queue_.front().chunk().token_ids_size() < min_tokens_per_write_) {
    return next;  // gathering
  }
  if (!queue_.empty()) {
    in_flight_ = std::move(queue_.front());
    queue_.pop_front();
    write_in_flight_ = true;
    next.write = &in_flight_;
  } else if (may_finish) {
    finished_ = true;
    next.finish = true;
  }
  return next;
}

template <typename Response>
void StreamOutbox<Response>::WriteDone(bool ok) {
  write_in_flight_ = false;
  if (!ok) {
    broken_ = true;
    queue_.clear();
  }
}

template class StreamOutbox<v1::GenerateResponse>;
template class StreamOutbox<v1::ChatResponse>;

}  // namespace linserve::server
