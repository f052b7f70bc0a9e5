// What the services share: the model, its tokenizer, the session store, the
// scheduler, the chat template, the server's limits and the registry of
// running calls. Plain pointers: the Server owns every one of them and
// outlives the services.
#ifndef LINSERVE_SERVER_SERVICE_CONTEXT_H_
#define LINSERVE_SERVER_SERVICE_CONTEXT_H_

#include <cstdint>
#include <string>

#include "engine/model.h"
#include "engine/tokenizer.h"
#include "server/call_tracker.h"
#include "server/chat_template.h"
#include "server/scheduler.h"
#include "server/session_store.h"

namespace linserve::server {

struct ServiceLimits {
  // Most tokens one call may generate (--max_tokens).
  int32_t max_tokens = 4096;
  // Most tokens of one Generate / Score input or Chat turn
  // (--max_input_tokens).
  int64_t max_input_tokens = 1 << 20;
};

struct ServiceContext {
  engine::Model* model = nullptr;
  const engine::Tokenizer* tokenizer = nullptr;  // null: token ids only
  SessionStore* store = nullptr;
  Scheduler* scheduler = nullptr;
  CallTracker* calls = nullptr;
  ChatTemplate chat_template;
  // The model directory's base name (ModelInfo.name, SessionInfo.model).
  std::string model_name;
  ServiceLimits limits;
};

}  // namespace linserve::server

#endif  // LINSERVE_SERVER_SERVICE_CONTEXT_H_
