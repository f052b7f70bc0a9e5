// The progress of a call in flight (issue 4 §5): GetSession on a session busy
// with a call reports SessionInfo.in_flight, the tokens the call has fed so
// far (and, for Ingest, those waiting), published by the engine loop; an
// idle session reports none. Tested against the real server on 127.0.0.1
// port 0 with the tiny gated_deltanet fixture, through the raw Ingest stream
// (the test paces the upload, so every figure is exact) and through the
// client library's progress poll.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "client/chat_session.h"
#include "client/client.h"
#include "server/server.h"
#include "tests/server/live_server.h"

namespace linserve {
namespace {

namespace v1 = ::linserve::v1;
using client::Client;

using testing::kTinyVocab;
using testing::Unwrap;
using Running = testing::LiveServer;

const std::string& kTinyModel = testing::kTinyModelDir;
const std::string& kDefaultModel = testing::kDefaultModelDir;
// Longer than the server and the transport can buffer, so the client reads
// chunks while the call still runs.
constexpr int kLongGeneration = 20000;

Running StartServer(const server::SchedulerOptions& scheduler = {},
                    const std::string& model_dir = kTinyModel) {
  server::ServerOptions options;
  options.model_dir = model_dir;
  options.scheduler = scheduler;
  options.max_tokens = kLongGeneration;
  return testing::StartLiveServer(options);
}

// Token ids of the fixture's vocabulary, clear of BOS 1 and EOS 2.
std::vector<int32_t> Tokens(int count) {
  std::vector<int32_t> ids;
  for (int i = 0; i < count; ++i) ids.push_back(3 + (i * 7) % (kTinyVocab - 3));
  return ids;
}

v1::IngestRequest TokenChunk(int count, const std::string& session_id = "") {
  v1::IngestRequest request;
  request.set_session_id(session_id);
  const std::vector<int32_t> ids = Tokens(count);
  request.mutable_tokens()->mutable_ids()->Add(ids.begin(), ids.end());
  return request;
}

// Polls GetSession until the running call reports `tokens_fed` (at most
// 10 s); returns the last answer.
v1::SessionInfo WaitForFed(Client& client, const std::string& id,
                           int64_t tokens_fed) {
  v1::SessionInfo info;
  const auto give_up =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < give_up) {
    info = Unwrap(client.GetSession(id));
    if (info.has_in_flight() && info.in_flight().tokens_fed() >= tokens_fed) {
      return info;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return info;
}

// Polls GetSession until the session is idle (at most 10 s).
v1::SessionInfo WaitUntilIdle(Client& client, const std::string& id) {
  v1::SessionInfo info;
  const auto give_up =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < give_up) {
    info = Unwrap(client.GetSession(id));
    if (!info.busy()) return info;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return info;
}

TEST_CASE(
    "GetSession during an Ingest reports the tokens fed so far, growing "
    "chunk by chunk, and nothing once the session is idle") {
  Running s = StartServer();
  Client& client = *s.client;
  Unwrap(client.CreateSession("doc"));
  const v1::SessionInfo idle = Unwrap(client.GetSession("doc"));
  CHECK_FALSE(idle.busy());
  CHECK_FALSE(idle.has_in_flight());

  grpc::ClientContext context;
  v1::IngestResponse response;
  auto writer = client.inference_stub().Ingest(&context, &response);
  constexpr int kChunk = 100;
  constexpr int kChunks = 5;
  int64_t previous = -1;
  for (int k = 1; k <= kChunks; ++k) {
    REQUIRE(writer->Write(TokenChunk(kChunk, k == 1 ? "doc" : "")));
    // The test writes the next chunk only once the server has fed this one,
    // so each answer is exact.
    const v1::SessionInfo info = WaitForFed(client, "doc", k * kChunk);
    INFO("after chunk " << k << ": " << info.ShortDebugString());
    CHECK(info.busy());
    REQUIRE(info.has_in_flight());
    CHECK(info.in_flight().tokens_fed() == k * kChunk);
    CHECK(info.in_flight().tokens_queued() == 0);
    CHECK(info.in_flight().tokens_fed() > previous);
    previous = info.in_flight().tokens_fed();
    // The session itself changes only when the call succeeds.
    CHECK(info.position() == 0);
    // ListSessions describes it the same way.
    const v1::ListSessionsResponse listed = Unwrap(client.ListSessions(0, ""));
    REQUIRE(listed.sessions_size() == 1);
    CHECK(listed.sessions(0).in_flight().tokens_fed() == k * kChunk);
  }
  writer->WritesDone();
  const grpc::Status finished = writer->Finish();
  INFO(finished.error_message());
  REQUIRE(finished.ok());
  CHECK(response.tokens_ingested() == kChunk * kChunks);

  const v1::SessionInfo after = Unwrap(client.GetSession("doc"));
  CHECK_FALSE(after.busy());
  CHECK_FALSE(after.has_in_flight());
  CHECK(after.position() == kChunk * kChunks);
}

TEST_CASE(
    "a cancelled Ingest's progress disappears with it and the session "
    "stays as before") {
  Running s = StartServer();
  Client& client = *s.client;
  Unwrap(client.CreateSession("doc"));
  {
    grpc::ClientContext context;
    v1::IngestResponse response;
    auto writer = client.inference_stub().Ingest(&context, &response);
    REQUIRE(writer->Write(TokenChunk(50, "doc")));
    writer->WritesDone();
    REQUIRE(writer->Finish().ok());
  }
  grpc::ClientContext context;
  v1::IngestResponse response;
  auto writer = client.inference_stub().Ingest(&context, &response);
  REQUIRE(writer->Write(TokenChunk(300, "doc")));
  const v1::SessionInfo running = WaitForFed(client, "doc", 300);
  CHECK(running.in_flight().tokens_fed() == 300);
  CHECK(running.position() == 50);
  context.TryCancel();
  CHECK(writer->Finish().error_code() == grpc::StatusCode::CANCELLED);
  const v1::SessionInfo after = WaitUntilIdle(client, "doc");
  CHECK_FALSE(after.busy());
  CHECK_FALSE(after.has_in_flight());
  CHECK(after.position() == 50);
}

TEST_CASE(
    "a Generate's progress counts its prompt and every token generated "
    "before the client sees it") {
  Running s = StartServer();
  Client& client = *s.client;
  Unwrap(client.CreateSession("gen"));
  v1::GenerateRequest request;
  request.set_session_id("gen");
  const std::vector<int32_t> prompt = Tokens(20);
  request.mutable_prompt()->mutable_tokens()->mutable_ids()->Add(prompt.begin(),
                                                                 prompt.end());
  request.mutable_sampling()->set_temperature(0);
  request.mutable_sampling()->set_max_tokens(kLongGeneration);
  request.mutable_sampling()->set_ignore_eos(true);
  int64_t received = 0;
  int checked = 0;
  std::vector<std::string> failures;
  const v1::GenerateResult result =
      Unwrap(client.Generate(request, [&](const v1::GenerateChunk& chunk) {
        received += chunk.token_ids_size();
        // From inside the stream: the session is busy with this call,
        // unless the last chunks come after the call has ended (they are
        // sent with the result, after the session is released).
        absl::StatusOr<v1::SessionInfo> info = client.GetSession("gen");
        const bool ok =
            info.ok() &&
            (info->busy()
                 ? info->has_in_flight() &&
                       info->in_flight().tokens_fed() >= 20 + received &&
                       info->in_flight().tokens_fed() <= 20 + kLongGeneration
                 : !info->has_in_flight() &&
                       info->position() == 20 + kLongGeneration);
        if (!ok) {
          failures.push_back(info.ok() ? info->ShortDebugString()
                                       : info.status().ToString());
        }
        if (info.ok() && info->busy()) ++checked;
      }));
  INFO(failures.size() << " failures, first: "
                       << (failures.empty() ? "" : failures[0]));
  INFO(checked << " chunks checked while busy");
  CHECK(failures.empty());
  CHECK(checked > 0);
  CHECK(received == kLongGeneration);
  const v1::SessionInfo after = Unwrap(client.GetSession("gen"));
  CHECK_FALSE(after.has_in_flight());
  CHECK(after.position() == result.usage().session_position());
  CHECK(after.position() == 20 + kLongGeneration);
}

// A scheduler that feeds one token per step: a long ingest takes long
// enough to be watched.
server::SchedulerOptions SlowPrefill() {
  server::SchedulerOptions options;
  options.prefill_chunk = 1;
  options.step_token_budget = 1;
  return options;
}

TEST_CASE(
    "the client library's progress poll reports the server's figures while "
    "the document streams") {
  Running s = StartServer(SlowPrefill());
  Client& client = *s.client;
  const std::vector<int32_t> document = Tokens(200000);
  client::IngestOptions options;
  options.chunk_tokens = 10000;
  options.progress_poll_interval = absl::Milliseconds(10);
  std::mutex mu;
  std::vector<client::IngestProgress> reports;
  options.on_progress = [&](const client::IngestProgress& progress) {
    std::lock_guard<std::mutex> lock(mu);
    reports.push_back(progress);
  };
  // No session_id: the client creates the session to poll it.
  const auto started = std::chrono::steady_clock::now();
  const v1::IngestResponse response =
      Unwrap(client.IngestTokens(document, options));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started)
          .count();
  CHECK(response.tokens_ingested() == 200000);
  CHECK(Unwrap(client.GetSession(response.session_id())).position() == 200000);

  std::lock_guard<std::mutex> lock(mu);
  int64_t last_fed = 0;
  int midway = 0;
  bool monotonic = true;
  bool saw_all_sent = false;
  for (const client::IngestProgress& report : reports) {
    saw_all_sent = saw_all_sent || report.all_sent;
    if (!report.server_reported) continue;
    if (report.tokens_fed < last_fed) monotonic = false;
    last_fed = report.tokens_fed;
    if (report.tokens_fed > 0 && report.tokens_fed < 200000) ++midway;
    // The server has at most what was sent (the poll may answer before
    // the upload reports the chunk it has just written).
    CHECK(report.tokens_fed + report.tokens_queued <=
          report.tokens_sent + options.chunk_tokens);
  }
  INFO(reports.size() << " reports over " << seconds << " s");
  CHECK(monotonic);
  CHECK(saw_all_sent);
  // One step per token: tens of milliseconds at least, so several polls.
  CHECK(midway >= 2);
}

TEST_CASE(
    "a failed Ingest into a session the client created for the poll "
    "leaves no session behind") {
  Running s = StartServer();
  Client& client = *s.client;
  std::vector<int32_t> document = Tokens(100);
  document[60] = kTinyVocab + 5;  // outside the vocabulary
  client::IngestOptions options;
  options.chunk_tokens = 50;
  options.progress_poll_interval = absl::Milliseconds(10);
  const absl::StatusOr<v1::IngestResponse> response =
      client.IngestTokens(document, options);
  CHECK(response.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(Unwrap(client.ListAllSessions()).empty());
}

TEST_CASE(
    "a Chat's progress sums its turns while the stream holds the session, "
    "and becomes the position when it closes") {
  Running s = StartServer({}, kDefaultModel);
  Client& client = *s.client;
  Unwrap(client.CreateSession("talk"));
  v1::ChatStart start;
  start.set_session_id("talk");
  start.mutable_sampling()->set_temperature(0);
  start.mutable_sampling()->set_max_tokens(6);
  start.mutable_sampling()->set_ignore_eos(true);
  auto chat = Unwrap(client::ChatSession::Start(client, start));
  CHECK(chat->start_position() == 0);
  const v1::ChatTurnEnd first = Unwrap(
      chat->SendTurn("Who begat Enos?", [](const v1::GenerateChunk&) {}));
  // Between turns the stream still holds the session: busy, position as
  // before the chat, and the turn's tokens in flight.
  const v1::SessionInfo between = Unwrap(client.GetSession("talk"));
  CHECK(between.busy());
  CHECK(between.position() == 0);
  CHECK(between.in_flight().tokens_fed() == first.usage().session_position());
  const v1::ChatTurnEnd second =
      Unwrap(chat->SendTurn("And then?", [](const v1::GenerateChunk&) {}));
  CHECK(second.usage().session_position() > first.usage().session_position());
  CHECK(Unwrap(client.GetSession("talk")).in_flight().tokens_fed() ==
        second.usage().session_position());
  REQUIRE(chat->Close().ok());
  const v1::SessionInfo closed = WaitUntilIdle(client, "talk");
  CHECK_FALSE(closed.has_in_flight());
  CHECK(closed.position() == second.usage().session_position());
}

TEST_CASE(
    "a Score that does not append reports its progress, then nothing is "
    "added") {
  Running s = StartServer(SlowPrefill());
  Client& client = *s.client;
  Unwrap(client.CreateSession("scored"));
  v1::ScoreRequest request;
  request.set_session_id("scored");
  const std::vector<int32_t> input = Tokens(20000);
  request.mutable_input()->mutable_tokens()->mutable_ids()->Add(input.begin(),
                                                                input.end());
  std::atomic<bool> done{false};
  bool scored = false;  // checked after the join: Catch2 is not thread-safe
  std::thread scorer([&] {
    scored = client.Score(request).ok();
    done = true;
  });
  int64_t most = 0;
  bool within_input = true;
  while (!done) {
    const v1::SessionInfo info = Unwrap(client.GetSession("scored"));
    if (info.has_in_flight()) {
      within_input = within_input && info.in_flight().tokens_fed() <= 20000;
      most = std::max(most, info.in_flight().tokens_fed());
    }
  }
  scorer.join();
  CHECK(scored);
  CHECK(within_input);
  CHECK(most > 0);
  const v1::SessionInfo after = Unwrap(client.GetSession("scored"));
  CHECK_FALSE(after.has_in_flight());
  CHECK(after.position() == 0);
}

}  // namespace
}  // namespace linserve
