// The outgoing side of one server-streaming call (Generate, Chat): the
// responses that wait for the client, with one gRPC write in flight at a
// time. The queue is bounded (the scheduler asks HasRoom before producing
// more, so a slow reader slows only its own call), tokens generated while
// the client lags are merged into the last queued chunk, a failed write
// drops everything still queued, and the call's Finish is handed out once,
// only after every queued response has been written. Optionally
// (min_tokens_per_write > 1) a chunk waits until it holds that many tokens
// while the job still produces them: fewer messages for more latency.
//
// Not thread-safe: the reactor owns one, guards it with its own mutex
// (together with the flags that say when its call may end) and starts the
// gRPC operations it is handed after unlocking:
//
//   StreamOutbox<v1::GenerateResponse>::Next next;
//   {
//     std::lock_guard<std::mutex> lock(mu_);
//     outbox_.AddChunk(chunk, tokenizer);
//     next = outbox_.TakeNext(/*may_finish=*/job_done_);
//   }
//   if (next.write != nullptr) StartWrite(next.write);
//   if (next.finish) Finish(final_status_);
//
// Instantiated for v1::GenerateResponse and v1::ChatResponse (any message
// with a GenerateChunk `chunk` in its oneof would do).
#ifndef LINSERVE_SERVER_STREAM_OUTBOX_H_
#define LINSERVE_SERVER_STREAM_OUTBOX_H_

#include <cstddef>
#include <deque>

namespace linserve::engine {
class Tokenizer;
}  // namespace linserve::engine

namespace linserve::server {

struct GeneratedChunk;

template <typename Response>
class StreamOutbox {
 public:
  // What the reactor starts after unlocking: at most one of the two.
  struct Next {
    // StartWrite(write): the outbox keeps the message alive until the next
    // TakeNext after WriteDone.
    const Response* write = nullptr;
    bool finish = false;  // Finish: the stream is drained (or broken)
  };

  // `max_queued`: responses that may wait behind the write in flight before
  // HasRoom turns false. `max_coalesced_tokens`: a queued chunk takes more
  // tokens only while it holds fewer than this. `min_tokens_per_write`
  // (1 to max_coalesced_tokens): while more tokens are coming, a chunk
  // alone in the queue is written only once it holds this many (each
  // message costs the server and the client tens of microseconds of CPU;
  // each held token waits for the next ones, one engine step each).
  StreamOutbox(size_t max_queued, int max_coalesced_tokens,
               int min_tokens_per_write = 1)
      : max_queued_(max_queued),
        max_coalesced_tokens_(max_coalesced_tokens),
        min_tokens_per_write_(min_tokens_per_write) {}

  // Whether fewer than max_queued responses wait (the job's
  // JobObserver::CanAcceptOutput). Soft: Add and AddChunk never refuse.
  bool HasRoom() const { return queue_.size() < max_queued_; }

  // Queues `response` behind the others; dropped once the stream is broken.
  void Add(Response response);

  // Appends `chunk`'s tokens, text and logprobs to the last queued response
  // when that is a chunk with fewer than max_coalesced_tokens tokens (the
  // client lags), else queues a new chunk; dropped once the stream is
  // broken. `tokenizer` (may be null) gives the logprob entries' text.
  void AddChunk(const GeneratedChunk& chunk,
                const engine::Tokenizer* tokenizer);

  // The next gRPC operation: the oldest queued response when no write is in
  // flight (except a chunk of fewer than min_tokens_per_write tokens alone
  // in the queue while `more_tokens_coming`: the job that feeds it is still
  // generating); else, when `may_finish` (the reactor has nothing more to
  // queue and nothing else holds the call open), the Finish once the queue
  // is drained and the last write done. The Finish is handed out once;
  // after it, nothing more.
  Next TakeNext(bool may_finish, bool more_tokens_coming = false);

  // The write in flight is done (OnWriteDone). `ok` false: the client is
  // gone; the queue is dropped and the stream broken for good.
  void WriteDone(bool ok);

  bool broken() const { return broken_; }
  // Whether TakeNext has handed out the Finish.
  bool finished() const { return finished_; }

 private:
  const size_t max_queued_;
  const int max_coalesced_tokens_;
  const int min_tokens_per_write_;
  std::deque<Response> queue_;
  Response in_flight_;  // read by gRPC while write_in_flight_
  bool write_in_flight_ = false;
  bool broken_ = false;
  bool finished_ = false;
};

}  // namespace linserve::server

#endif  // LINSERVE_SERVER_STREAM_OUTBOX_H_
