// Every call that works on an existing session, made on a session that is
// spilled to disk (so the store reads it back on its I/O thread and the
// reactor continues there): Generate, Score, Ingest, Chat, ForkSession and
// ExportSession each give what they give on the same session in RAM. Runs
// the real server (bundled default model, max_sessions_in_ram 1, a fresh
// spill directory) through the client library.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "client/chat_session.h"
#include "client/client.h"
#include "server/server.h"

namespace linserve {
namespace {

namespace v1 = ::linserve::v1;
using client::ChatSession;
using client::Client;

template <typename T>
T ValueOk(absl::StatusOr<T> result) {
  INFO(result.status().ToString());
  REQUIRE(result.ok());
  return *std::move(result);
}

absl::Status StatusOf(const absl::Status& status) { return status; }
template <typename T>
absl::Status StatusOf(const absl::StatusOr<T>& result) {
  return result.status();
}

// `call()` again while it is ABORTED (its session is being written to the
// spill directory, or in use), as a client retries; for calls on sessions
// this test did not just spill.
template <typename Call>
auto Retrying(Call call) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (true) {
    auto result = call();
    if (StatusOf(result).code() != absl::StatusCode::kAborted ||
        std::chrono::steady_clock::now() > deadline) {
      return result;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

// A server holding one session in RAM, spilling the rest.
struct SpillingServer {
  SpillingServer() {
    char dir_template[] = "/tmp/linserve_spilled_calls_test_XXXXXX";
    REQUIRE(mkdtemp(dir_template) != nullptr);
    spill_dir = dir_template;
    server::ServerOptions options;
    options.model_dir = LINSERVE_DEFAULT_MODEL_DIR_FOR_TESTS;
    options.listen = "127.0.0.1:0";
    options.sessions.max_sessions_in_ram = 1;
    options.sessions.spill_dir = spill_dir;
    server = ValueOk(server::Server::Start(options));
    client = ValueOk(
        Client::Connect("127.0.0.1:" + std::to_string(server->port()), {}));
  }
  ~SpillingServer() {
    client.reset();
    server.reset();
    std::error_code ignored;
    std::filesystem::remove_all(spill_dir, ignored);
  }

  v1::SessionLocation LocationOf(const std::string& id) {
    return ValueOk(client->GetSession(id)).location();
  }

  // Uses `other` (a stateless-for-it Score) until `id` is on disk: with one
  // session in RAM, the store's I/O thread spills everything but the most
  // recently used.
  void Spill(const std::string& id, const std::string& other) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (LocationOf(id) != v1::SESSION_LOCATION_SPILL &&
           std::chrono::steady_clock::now() < deadline) {
      v1::ScoreRequest touch;
      touch.set_session_id(other);
      touch.mutable_input()->set_text("touch");
      (void)client->Score(touch);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    REQUIRE(LocationOf(id) == v1::SESSION_LOCATION_SPILL);
  }

  std::string spill_dir;
  std::unique_ptr<server::Server> server;
  std::unique_ptr<Client> client;
};

v1::GenerateRequest Greedy(const std::string& session_id,
                           const std::string& prompt) {
  v1::GenerateRequest request;
  request.set_session_id(session_id);
  request.mutable_prompt()->set_text(prompt);
  request.mutable_sampling()->set_temperature(0.0f);
  request.mutable_sampling()->set_max_tokens(6);
  request.mutable_sampling()->set_ignore_eos(true);
  return request;
}

TEST_CASE(
    "calls on a spilled session (read back on the store's I/O thread) give "
    "what they give on the same session in RAM") {
  SpillingServer s;
  Client& client = *s.client;
  ValueOk(client.CreateSession("main"));
  ValueOk(client.GenerateAll(Greedy("main", "In the beginning")));
  const std::string in_ram_export =
      ValueOk(client.ExportSessionToString("main"));
  const int64_t position = ValueOk(client.GetSession("main")).position();
  ValueOk(client.CreateSession("other"));  // "main" spills

  // ExportSession: the same bytes.
  s.Spill("main", "other");
  CHECK(ValueOk(client.ExportSessionToString("main")) == in_ram_export);

  // ForkSession: a copy at the same position; the source stays as it was.
  s.Spill("main", "other");
  const v1::SessionInfo fork = ValueOk(client.ForkSession("main", "fork"));
  CHECK(fork.position() == position);
  CHECK(ValueOk(Retrying([&] {
          return client.ExportSessionToString("fork");
        })) == in_ram_export);

  // Generate: the same greedy tokens as on the fork (both read back).
  s.Spill("main", "other");
  s.Spill("fork", "other");
  const client::GenerateOutput on_fork = ValueOk(Retrying(
      [&] { return client.GenerateAll(Greedy("fork", " and the earth")); }));
  s.Spill("main", "other");
  const client::GenerateOutput on_main =
      ValueOk(client.GenerateAll(Greedy("main", " and the earth")));
  CHECK(on_main.token_ids == on_fork.token_ids);
  CHECK(on_main.result.usage().session_position() ==
        on_fork.result.usage().session_position());
  const int64_t after_generate = on_main.result.usage().session_position();

  // Score: the same log-probabilities as on the fork, nothing appended.
  v1::ScoreRequest score;
  score.mutable_input()->set_text(" was without form");
  score.set_session_id("fork");
  const v1::ScoreResponse fork_score =
      ValueOk(Retrying([&] { return client.Score(score); }));
  s.Spill("main", "other");
  score.set_session_id("main");
  const v1::ScoreResponse main_score = ValueOk(client.Score(score));
  CHECK(main_score.total_logprob() == fork_score.total_logprob());
  CHECK(main_score.usage().session_position() ==
        fork_score.usage().session_position());
  CHECK(ValueOk(client.GetSession("main")).position() == after_generate);

  // Ingest: appended to the spilled session.
  s.Spill("main", "other");
  client::IngestOptions ingest;
  ingest.session_id = "main";
  const std::vector<int32_t> tokens = {11, 12, 13, 14};
  const v1::IngestResponse ingested =
      ValueOk(client.IngestTokens(tokens, ingest));
  CHECK(ingested.session_id() == "main");
  CHECK(ingested.session_position() == after_generate + 4);

  // Chat: starts at the spilled session's position, and a turn runs.
  s.Spill("main", "other");
  v1::ChatStart start;
  start.set_session_id("main");
  start.mutable_sampling()->set_temperature(0.0f);
  start.mutable_sampling()->set_max_tokens(3);
  start.mutable_sampling()->set_ignore_eos(true);
  std::unique_ptr<ChatSession> chat =
      ValueOk(ChatSession::Start(client, start));
  CHECK(chat->start_position() == after_generate + 4);
  const v1::ChatTurnEnd end = ValueOk(chat->SendTurn("Hello", {}));
  CHECK(end.usage().generated_tokens() == 3);
  CHECK(chat->Close().ok());

  // A spilled session that is not there (deleted meanwhile) is NOT_FOUND.
  s.Spill("main", "other");
  REQUIRE(client.DeleteSession("main").ok());
  CHECK(client.GenerateAll(Greedy("main", "x")).status().code() ==
        absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace linserve
