// One server-kept session: the engine's recurrent state plus what the server
// keeps beside it (engine/session_extras.h: the last token, held unfed, and
// the sampler's state), and its bookkeeping. Plain data: the SessionStore
// hands out exclusive leases, so one call at a time touches it; the one
// exception is `progress`, which the engine thread publishes while a call
// runs and GetSession reads from any thread.
//
// The last token of a session is kept unfed ("pending"): the next call feeds
// it first, so that Score can give that call's first token a probability and
// Generate with an empty prompt can continue. position() counts it.
#ifndef LINSERVE_SERVER_SESSION_H_
#define LINSERVE_SERVER_SESSION_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "engine/session_extras.h"
#include "engine/session_state.h"

namespace linserve::server {

using Clock = std::chrono::system_clock;

// How far the call running on a session has got (GetSession's
// SessionInfo.in_flight). Written by the scheduler on the engine thread after
// each step that worked on the call, read by the session store under its own
// mutex from any thread; relaxed atomics: progress figures, no ordering
// with anything else. The store zeroes them when the lease is released.
struct InFlightProgress {
  // Tokens the lease holder's calls have added to the session so far (what
  // the position grows by if the running call succeeds now).
  std::atomic<int64_t> tokens_fed{0};
  // Ingest: tokens received and tokenized, waiting to be fed.
  std::atomic<int64_t> tokens_queued{0};
  // Ingest of text: bytes of text received.
  std::atomic<int64_t> bytes_received{0};

  void Reset() {
    tokens_fed.store(0, std::memory_order_relaxed);
    tokens_queued.store(0, std::memory_order_relaxed);
    bytes_received.store(0, std::memory_order_relaxed);
  }
};

struct Session {
  std::string id;
  std::unique_ptr<engine::SessionState> state;
  engine::SessionExtras extras;
  Clock::time_point created;
  Clock::time_point last_used;
  InFlightProgress progress;

  // Tokens in the session's context (fed ones plus the pending one).
  int64_t position() const {
    return state->num_tokens() + (extras.pending_token.has_value() ? 1 : 0);
  }
};

}  // namespace linserve::server

#endif  // LINSERVE_SERVER_SESSION_H_
