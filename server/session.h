// One server-kept session: the engine's recurrent state plus what the server
// keeps beside it (engine/session_extras.h: the last token, held unfed, and
// the sampler's state), and its bookkeeping. Plain data: the SessionStore
// hands out exclusive leases, so one call at a time touches it.
//
// The last token of a session is kept unfed ("pending"): the next call feeds
// it first, so that Score can give that call's first token a probability and
// Generate with an empty prompt can continue. position() counts it.
#ifndef LINSERVE_SERVER_SESSION_H_
#define LINSERVE_SERVER_SESSION_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "engine/session_extras.h"
#include "engine/session_state.h"

namespace linserve::server {

using Clock = std::chrono::system_clock;

struct Session {
  std::string id;
  std::unique_ptr<engine::SessionState> state;
  engine::SessionExtras extras;
  Clock::time_point created;
  Clock::time_point last_used;

  // Tokens in the session's context (fed ones plus the pending one).
  int64_t position() const {
    return state->num_tokens() + (extras.pending_token.has_value() ? 1 : 0);
  }
};

}  // namespace linserve::server

#endif  // LINSERVE_SERVER_SESSION_H_
