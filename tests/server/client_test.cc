// Integration tests of issue 4 §7: the real server started on 127.0.0.1
// port 0, talked to through the client library (client/). Text tests run on
// the bundled default model (it has a tokenizer); tests that only need
// token ids run on the tiny gated_deltanet fixture.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <catch2/catch.hpp>

#include "client/chat_session.h"
#include "client/client.h"
#include "server/server.h"
#include "tests/server/live_server.h"

namespace linserve {
namespace {

namespace v1 = ::linserve::v1;
using client::CallCanceller;
using client::CallOptions;
using client::ChatSession;
using client::Client;
using client::ClientOptions;
using HealthStatus = grpc::health::v1::HealthCheckResponse;

using testing::kTinyVocab;
using testing::Unwrap;
using Running = testing::LiveServer;

const std::string& kDefaultModel = testing::kDefaultModelDir;
const std::string& kTinyModel = testing::kTinyModelDir;

// A server on a free loopback port and a client connected to it.
Running StartServer(const std::string& model_dir,
                    const ClientOptions& client_options = {}) {
  server::ServerOptions options;
  options.model_dir = model_dir;
  // Room for the calls that must still be running when a test cancels
  // them or lets their deadline pass.
  options.max_tokens = 1 << 20;
  return testing::StartLiveServer(options, client_options);
}

void RequireOk(const absl::Status& status) {
  INFO(status.ToString());
  REQUIRE(status.ok());
}

v1::SamplingParams Greedy(int max_tokens) {
  v1::SamplingParams sampling;
  sampling.set_temperature(0);
  sampling.set_max_tokens(max_tokens);
  sampling.set_ignore_eos(true);
  return sampling;
}

v1::SamplingParams Seeded(int max_tokens, uint64_t seed) {
  v1::SamplingParams sampling;
  sampling.set_temperature(1.0f);
  sampling.set_seed(seed);
  sampling.set_max_tokens(max_tokens);
  sampling.set_ignore_eos(true);
  return sampling;
}

v1::GenerateRequest TextRequest(const std::string& session_id,
                                const std::string& text,
                                const v1::SamplingParams& sampling,
                                bool add_bos = false) {
  v1::GenerateRequest request;
  request.set_session_id(session_id);
  request.mutable_prompt()->set_text(text);
  request.mutable_prompt()->set_add_bos(add_bos);
  *request.mutable_sampling() = sampling;
  return request;
}

v1::GenerateRequest TokenRequest(const std::string& session_id,
                                 const std::vector<int32_t>& tokens,
                                 const v1::SamplingParams& sampling) {
  v1::GenerateRequest request;
  request.set_session_id(session_id);
  request.mutable_prompt()->mutable_tokens()->mutable_ids()->Add(tokens.begin(),
                                                                 tokens.end());
  *request.mutable_sampling() = sampling;
  return request;
}

std::vector<int32_t> TokensOf(const v1::ScoreResponse& score) {
  std::vector<int32_t> ids;
  for (const v1::TokenLogprob& t : score.tokens()) ids.push_back(t.token());
  return ids;
}

// Deterministic pseudo-random token ids of the tiny fixture's vocabulary
// (3 and up: clear of BOS 1 and EOS 2).
std::vector<int32_t> FixtureTokens(int count, int salt) {
  std::vector<int32_t> ids;
  uint32_t x = 2654435761u * (salt + 1);
  for (int i = 0; i < count; ++i) {
    x = x * 1664525u + 1013904223u;
    ids.push_back(3 + static_cast<int32_t>((x >> 8) % (kTinyVocab - 3)));
  }
  return ids;
}

// Waits until the server no longer reports the session busy (a cancelled
// call releases it within a step).
v1::SessionInfo WaitUntilIdle(Client& client, const std::string& id) {
  v1::SessionInfo info;
  for (int i = 0; i < 200; ++i) {
    info = Unwrap(client.GetSession(id));
    if (!info.busy()) return info;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  FAIL("session " << id << " still busy after 2 s");
  return info;
}

TEST_CASE(
    "models, health and session bookkeeping RPCs answer through the "
    "client library") {
  Running s = StartServer(kDefaultModel);
  Client& client = *s.client;

  const std::vector<v1::ModelInfo> models = Unwrap(client.ListModels());
  REQUIRE(models.size() == 1);
  CHECK(models[0].name() == "default");
  CHECK(models[0].family() == "gated_deltanet");
  CHECK(models[0].has_tokenizer());
  CHECK(models[0].vocab_size() == 4096);
  CHECK(models[0].state_bytes() > 0);
  CHECK(models[0].fingerprint().size() == 33);  // 16 hex, '-', 16 hex
  const v1::ModelInfo model = Unwrap(client.GetModel("default"));
  CHECK(model.SerializeAsString() == models[0].SerializeAsString());
  CHECK(client.GetModel("no-such-model").status().code() ==
        absl::StatusCode::kNotFound);

  for (const std::string service :
       {"", "linserve.v1.Inference", "linserve.v1.Sessions",
        "linserve.v1.Models"}) {
    INFO("service \"" << service << "\"");
    CHECK(Unwrap(client.CheckHealth(service)) == HealthStatus::SERVING);
  }
  CHECK(client.CheckHealth("no.such.Service").status().code() ==
        absl::StatusCode::kNotFound);

  const v1::SessionInfo created = Unwrap(client.CreateSession());
  CHECK(created.session_id().size() == 32);
  CHECK(created.position() == 0);
  CHECK(created.state_bytes() == model.state_bytes());
  CHECK(created.model() == "default");
  const v1::SessionInfo named = Unwrap(client.CreateSession("my-session.1"));
  CHECK(named.session_id() == "my-session.1");
  CHECK(client.CreateSession("my-session.1").status().code() ==
        absl::StatusCode::kAlreadyExists);
  CHECK(client.CreateSession("bad id!").status().code() ==
        absl::StatusCode::kInvalidArgument);

  const v1::SessionInfo got = Unwrap(client.GetSession("my-session.1"));
  CHECK(got.position() == 0);
  CHECK_FALSE(got.busy());
  CHECK(got.location() == v1::SESSION_LOCATION_RAM);
  CHECK(got.created_unix_seconds() > 1.6e9);

  std::vector<v1::SessionInfo> all = Unwrap(client.ListAllSessions());
  REQUIRE(all.size() == 2);
  CHECK(std::is_sorted(all.begin(), all.end(),
                       [](const v1::SessionInfo& a, const v1::SessionInfo& b) {
                         return a.session_id() < b.session_id();
                       }));

  RequireOk(client.DeleteSession("my-session.1"));
  CHECK(client.GetSession("my-session.1").status().code() ==
        absl::StatusCode::kNotFound);
  CHECK(client.DeleteSession("my-session.1").code() ==
        absl::StatusCode::kNotFound);
  CHECK(client.ForkSession("my-session.1").status().code() ==
        absl::StatusCode::kNotFound);
  CHECK(client.ExportSessionToString("my-session.1").status().code() ==
        absl::StatusCode::kNotFound);
  CHECK(Unwrap(client.ListAllSessions()).size() == 1);
}

TEST_CASE("ListSessions pages through every session in id order") {
  Running s = StartServer(kTinyModel);
  Client& client = *s.client;
  constexpr int kSessions = 230;
  for (int i = 0; i < kSessions; ++i) {
    char id[16];
    std::snprintf(id, sizeof(id), "s%03d", i);
    RequireOk(client.CreateSession(id).status());
  }
  const v1::ListSessionsResponse first =
      Unwrap(client.ListSessions(/*page_size=*/100, ""));
  CHECK(first.sessions_size() == 100);
  CHECK(first.total() == kSessions);
  CHECK_FALSE(first.next_page_token().empty());
  const std::vector<v1::SessionInfo> all = Unwrap(client.ListAllSessions());
  REQUIRE(all.size() == kSessions);
  for (int i = 0; i < kSessions; ++i) {
    char id[16];
    std::snprintf(id, sizeof(id), "s%03d", i);
    CHECK(all[i].session_id() == id);
  }
}

TEST_CASE(
    "Generate streams chunks that add up to the reply, and refuses bad "
    "requests precisely") {
  Running s = StartServer(kDefaultModel);
  Client& client = *s.client;
  const v1::GenerateRequest request =
      TextRequest("", "In the beginning God created", Greedy(12), true);

  std::string streamed_text;
  std::vector<int32_t> streamed_ids;
  int chunks = 0;
  const v1::GenerateResult result =
      Unwrap(client.Generate(request, [&](const v1::GenerateChunk& chunk) {
        ++chunks;
        streamed_text += chunk.text();
        streamed_ids.insert(streamed_ids.end(), chunk.token_ids().begin(),
                            chunk.token_ids().end());
      }));
  CHECK(chunks >= 1);
  CHECK(result.finish_reason() == v1::FINISH_REASON_LENGTH);
  CHECK(result.usage().generated_tokens() == 12);
  CHECK(result.usage().prompt_tokens() > 1);
  CHECK(streamed_ids.size() == 12);
  CHECK_FALSE(streamed_text.empty());
  CHECK(result.timings().total_seconds() >=
        result.timings().time_to_first_token_seconds());

  // Greedy is deterministic: the collecting form gives the same reply.
  const client::GenerateOutput again = Unwrap(client.GenerateAll(request));
  CHECK(again.token_ids == streamed_ids);
  CHECK(again.text == streamed_text);

  // Logprobs: one entry per token, with the asked number of alternatives.
  v1::GenerateRequest with_logprobs = request;
  with_logprobs.mutable_sampling()->set_logprobs(true);
  with_logprobs.mutable_sampling()->set_top_logprobs(3);
  const client::GenerateOutput scored =
      Unwrap(client.GenerateAll(with_logprobs));
  REQUIRE(scored.logprobs.size() == scored.token_ids.size());
  for (size_t i = 0; i < scored.logprobs.size(); ++i) {
    CHECK(scored.logprobs[i].chosen().token() == scored.token_ids[i]);
    CHECK(scored.logprobs[i].chosen().logprob() <= 0);
    CHECK(scored.logprobs[i].top_size() == 3);
    // Greedy picks the most likely token.
    CHECK(scored.logprobs[i].top(0).token() == scored.token_ids[i]);
  }

  // A session continues: the reply lands in it.
  const std::string id = Unwrap(client.CreateSession()).session_id();
  const v1::GenerateResult in_session = Unwrap(client.Generate(
      TextRequest(id, "And the earth", Greedy(5), true), nullptr));
  CHECK(Unwrap(client.GetSession(id)).position() ==
        in_session.usage().session_position());
  CHECK(in_session.usage().session_position() ==
        in_session.usage().prompt_tokens() + 5);

  // Errors name what is wrong; the server goes on serving.
  CHECK(client.Generate(TextRequest("no-such-session", "x", Greedy(2)), nullptr)
            .status()
            .code() == absl::StatusCode::kNotFound);
  v1::SamplingParams bad = Greedy(2);
  bad.set_temperature(-1);
  CHECK(client.Generate(TextRequest("", "x", bad), nullptr).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(client.Generate(TokenRequest("", {5, 4096}, Greedy(2)), nullptr)
            .status()
            .code() == absl::StatusCode::kInvalidArgument);
  CHECK(client.Generate(TokenRequest("", {}, Greedy(2)), nullptr)
            .status()
            .code() == absl::StatusCode::kInvalidArgument);
  CHECK(Unwrap(client.CheckHealth()) == HealthStatus::SERVING);
  CHECK(Unwrap(client.GenerateAll(request)).token_ids == streamed_ids);
}

TEST_CASE("Chat turns give what Generate gives over the same text (greedy)") {
  Running s = StartServer(kDefaultModel);
  Client& client = *s.client;
  // The server's default chat template (server/chat_template.h): BOS, then
  // "User: <text>\n\nAssistant:" per turn, "\n\n" between a reply and the
  // next turn, replies stopping at "\nUser:".
  const std::vector<std::string> user_turns = {"Who begat Enos?",
                                               "And who was his son?"};
  v1::SamplingParams sampling;
  sampling.set_temperature(0);
  sampling.set_max_tokens(10);

  v1::ChatStart start;
  *start.mutable_sampling() = sampling;
  std::unique_ptr<ChatSession> chat = Unwrap(ChatSession::Start(client, start));
  CHECK(chat->session_id().size() == 32);
  CHECK(chat->start_position() == 0);
  std::vector<std::vector<int32_t>> chat_ids;
  std::vector<std::string> chat_texts;
  std::vector<v1::ChatTurnEnd> chat_ends;
  for (const std::string& text : user_turns) {
    std::vector<int32_t> ids;
    std::string reply;
    chat_ends.push_back(
        Unwrap(chat->SendTurn(text, [&](const v1::GenerateChunk& chunk) {
          ids.insert(ids.end(), chunk.token_ids().begin(),
                     chunk.token_ids().end());
          reply += chunk.text();
        })));
    chat_ids.push_back(ids);
    chat_texts.push_back(reply);
  }
  const std::string chat_session = chat->session_id();
  RequireOk(chat->Close());
  CHECK(Unwrap(client.GetSession(chat_session)).position() ==
        chat_ends.back().usage().session_position());

  // The same turns as Generate calls on one session.
  const std::string id = Unwrap(client.CreateSession()).session_id();
  v1::SamplingParams generate_sampling = sampling;
  generate_sampling.add_stop_strings("\nUser:");
  for (size_t turn = 0; turn < user_turns.size(); ++turn) {
    const std::string text = (turn == 0 ? "" : "\n\n") +
                             ("User: " + user_turns[turn]) + "\n\nAssistant:";
    const client::GenerateOutput output = Unwrap(client.GenerateAll(
        TextRequest(id, text, generate_sampling, /*add_bos=*/turn == 0)));
    INFO("turn " << turn << ": chat \"" << chat_texts[turn] << "\", generate \""
                 << output.text << "\"");
    CHECK(output.token_ids == chat_ids[turn]);
    CHECK(output.text == chat_texts[turn]);
    CHECK(output.result.finish_reason() == chat_ends[turn].finish_reason());
    CHECK(output.result.usage().session_position() ==
          chat_ends[turn].usage().session_position());
  }

  // The first turn as one stateless Generate over its whole text.
  const client::GenerateOutput whole = Unwrap(client.GenerateAll(TextRequest(
      "", "User: " + user_turns[0] + "\n\nAssistant:", generate_sampling,
      /*add_bos=*/true)));
  CHECK(whole.token_ids == chat_ids[0]);
}

TEST_CASE(
    "a Chat reply cancelled mid-way ends with CANCELLED, keeps what was "
    "sent, and the chat goes on") {
  Running s = StartServer(kDefaultModel);
  Client& client = *s.client;
  v1::ChatStart start;
  start.mutable_sampling()->set_temperature(0);
  start.mutable_sampling()->set_max_tokens(4000);
  start.mutable_sampling()->set_ignore_eos(true);
  std::unique_ptr<ChatSession> chat = Unwrap(ChatSession::Start(client, start));

  int64_t received = 0;
  bool cancel_sent = false;
  const v1::ChatTurnEnd end = Unwrap(
      chat->SendTurn("Tell me everything.", [&](const v1::GenerateChunk& c) {
        received += c.token_ids_size();
        if (!cancel_sent && received >= 3) {
          cancel_sent = true;
          RequireOk(chat->Cancel());
        }
      }));
  CHECK(end.finish_reason() == v1::FINISH_REASON_CANCELLED);
  CHECK(end.usage().generated_tokens() < 4000);
  CHECK(received >= 3);
  CHECK(received <= end.usage().generated_tokens());

  // A Cancel with no reply running is a no-op; the next turn streams.
  RequireOk(chat->Cancel());
  v1::ChatTurn short_turn;
  short_turn.set_text("Amen.");
  short_turn.mutable_sampling()->set_max_tokens(4);
  int64_t next_tokens = 0;
  const v1::ChatTurnEnd next =
      Unwrap(chat->SendTurn(short_turn, [&](const v1::GenerateChunk& c) {
        next_tokens += c.token_ids_size();
      }));
  CHECK(next.finish_reason() == v1::FINISH_REASON_LENGTH);
  CHECK(next_tokens == 4);
  CHECK(next.usage().session_position() > end.usage().session_position());
  const std::string id = chat->session_id();
  RequireOk(chat->Close());
  CHECK(Unwrap(client.GetSession(id)).position() ==
        next.usage().session_position());
}

TEST_CASE("Ingest in chunks then Score equals Score of the whole") {
  Running s = StartServer(kTinyModel);
  Client& client = *s.client;
  const std::vector<int32_t> document = FixtureTokens(300, 1);
  const std::vector<int32_t> continuation = FixtureTokens(40, 2);

  client::IngestOptions options;
  options.chunk_tokens = 7;
  int64_t last_progress = 0;
  int progress_calls = 0;
  options.on_progress = [&](const client::IngestProgress& p) {
    CHECK(p.tokens_sent > last_progress);
    last_progress = p.tokens_sent;
    ++progress_calls;
  };
  const v1::IngestResponse ingested =
      Unwrap(client.IngestTokens(document, options));
  CHECK(ingested.session_id().size() == 32);
  CHECK(ingested.tokens_ingested() == 300);
  CHECK(ingested.session_position() == 300);
  CHECK(last_progress == 300);
  CHECK(progress_calls == (300 + 6) / 7);
  CHECK(Unwrap(client.GetSession(ingested.session_id())).position() == 300);

  v1::ScoreRequest in_session;
  in_session.set_session_id(ingested.session_id());
  in_session.set_per_token(true);
  in_session.mutable_input()->mutable_tokens()->mutable_ids()->Add(
      continuation.begin(), continuation.end());
  const v1::ScoreResponse after_ingest = Unwrap(client.Score(in_session));
  REQUIRE(after_ingest.tokens_size() == 40);
  CHECK(TokensOf(after_ingest) == continuation);
  // Score without append leaves the session unchanged.
  CHECK(Unwrap(client.GetSession(ingested.session_id())).position() == 300);

  std::vector<int32_t> whole = document;
  whole.insert(whole.end(), continuation.begin(), continuation.end());
  v1::ScoreRequest from_empty;
  from_empty.set_per_token(true);
  from_empty.mutable_input()->mutable_tokens()->mutable_ids()->Add(
      whole.begin(), whole.end());
  const v1::ScoreResponse of_whole = Unwrap(client.Score(from_empty));
  REQUIRE(of_whole.tokens_size() == 339);
  CHECK(of_whole.count() == 339);
  // Equal up to rounding: the server splits prefill into steps as the
  // chunks arrive, and the bf16 GEMMs round differently per split (a wrong
  // state would be off by whole nats).
  double tail_sum = 0;
  for (int i = 0; i < 40; ++i) {
    const v1::TokenLogprob& expected = of_whole.tokens(299 + i);
    CHECK(after_ingest.tokens(i).token() == expected.token());
    CHECK(after_ingest.tokens(i).logprob() ==
          Approx(expected.logprob()).margin(1e-2));
    tail_sum += expected.logprob();
  }
  CHECK(after_ingest.total_logprob() == Approx(tail_sum).margin(0.1));
  CHECK(after_ingest.perplexity() ==
        Approx(std::exp(-after_ingest.total_logprob() / 40)).epsilon(1e-4));

  // Ingest appends to an existing session; Score with append does too.
  client::IngestOptions append;
  append.session_id = ingested.session_id();
  append.chunk_tokens = 1000;
  const v1::IngestResponse more =
      Unwrap(client.IngestTokens(FixtureTokens(10, 3), append));
  CHECK(more.session_id() == ingested.session_id());
  CHECK(more.tokens_ingested() == 10);
  CHECK(more.session_position() == 310);
  in_session.set_append_to_session(true);
  RequireOk(client.Score(in_session).status());
  CHECK(Unwrap(client.GetSession(ingested.session_id())).position() == 350);

  // Unknown session and invalid ids are refused; nothing changes.
  client::IngestOptions unknown;
  unknown.session_id = "no-such-session";
  CHECK(client.IngestTokens(document, unknown).status().code() ==
        absl::StatusCode::kNotFound);
  CHECK(client.IngestTokens({1, 2, kTinyVocab}, append).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(Unwrap(client.GetSession(ingested.session_id())).position() == 350);
}

TEST_CASE(
    "text ingested in chunks that split characters equals the text "
    "ingested whole") {
  Running s = StartServer(kDefaultModel);
  Client& client = *s.client;
  std::string text;
  for (int i = 0; i < 20; ++i) {
    text += "And the LORD spake unto Moses, saying: café naïve — ";
  }
  client::IngestOptions small;
  small.add_bos = true;
  small.chunk_bytes = 3;  // splits the multi-byte characters
  std::istringstream in_chunks(text);
  const v1::IngestResponse chunked =
      Unwrap(client.IngestText(in_chunks, small));
  client::IngestOptions one;
  one.add_bos = true;
  one.chunk_bytes = 1 << 20;
  std::istringstream at_once(text);
  const v1::IngestResponse whole = Unwrap(client.IngestText(at_once, one));
  CHECK(chunked.tokens_ingested() == whole.tokens_ingested());
  CHECK(chunked.session_position() == whole.session_position());
  const client::GenerateOutput a = Unwrap(
      client.GenerateAll(TextRequest(chunked.session_id(), " And", Greedy(8))));
  const client::GenerateOutput b = Unwrap(
      client.GenerateAll(TextRequest(whole.session_id(), " And", Greedy(8))));
  CHECK(a.token_ids == b.token_ids);
}

TEST_CASE("a forked session continues independently of its source") {
  Running s = StartServer(kTinyModel);
  Client& client = *s.client;
  const std::string source = Unwrap(client.CreateSession()).session_id();
  RequireOk(client
                .Generate(TokenRequest(source, FixtureTokens(50, 4), Greedy(5)),
                          nullptr)
                .status());
  const int64_t position = Unwrap(client.GetSession(source)).position();

  const v1::SessionInfo fork = Unwrap(client.ForkSession(source, "the-fork"));
  CHECK(fork.session_id() == "the-fork");
  CHECK(fork.position() == position);
  CHECK(client.ForkSession(source, "the-fork").status().code() ==
        absl::StatusCode::kAlreadyExists);

  const std::vector<int32_t> question = FixtureTokens(8, 5);
  const client::GenerateOutput from_source =
      Unwrap(client.GenerateAll(TokenRequest(source, question, Seeded(12, 7))));
  // The source moved on; the fork did not.
  CHECK(Unwrap(client.GetSession("the-fork")).position() == position);
  CHECK(Unwrap(client.GetSession(source)).position() ==
        from_source.result.usage().session_position());
  const client::GenerateOutput from_fork = Unwrap(
      client.GenerateAll(TokenRequest("the-fork", question, Seeded(12, 7))));
  CHECK(from_fork.token_ids == from_source.token_ids);
  // Different continuations diverge without touching each other.
  const client::GenerateOutput source_again = Unwrap(
      client.GenerateAll(TokenRequest(source, FixtureTokens(3, 6), Greedy(6))));
  const std::string second_fork =
      Unwrap(client.ForkSession("the-fork")).session_id();
  const client::GenerateOutput fork_again = Unwrap(client.GenerateAll(
      TokenRequest("the-fork", FixtureTokens(3, 6), Greedy(6))));
  CHECK(fork_again.token_ids == source_again.token_ids);
  CHECK(Unwrap(client.GetSession(second_fork)).position() ==
        from_fork.result.usage().session_position());
}

TEST_CASE(
    "a session exported from one server and imported into another "
    "continues identically") {
  ClientOptions small_chunks;
  small_chunks.import_chunk_bytes = 4096;  // many ImportSession messages
  Running a = StartServer(kDefaultModel, small_chunks);
  Running b = StartServer(kDefaultModel, small_chunks);
  const std::string id = Unwrap(a.client->CreateSession()).session_id();
  // Unseeded: the session's own random stream starts (from a random seed)
  // and must travel with the export.
  v1::SamplingParams unseeded;
  unseeded.set_max_tokens(6);
  unseeded.set_ignore_eos(true);
  RequireOk(a.client
                ->Generate(TextRequest(id, "In the beginning was the Word",
                                       unseeded, true),
                           nullptr)
                .status());
  const v1::SessionInfo before = Unwrap(a.client->GetSession(id));

  const std::string state = Unwrap(a.client->ExportSessionToString(id));
  CHECK(state.size() > static_cast<size_t>(before.state_bytes()) / 2);
  // Export is read-only and repeatable.
  CHECK(Unwrap(a.client->ExportSessionToString(id)) == state);

  const v1::SessionInfo imported =
      Unwrap(b.client->ImportSessionFromString(state, "moved"));
  CHECK(imported.session_id() == "moved");
  CHECK(imported.position() == before.position());
  CHECK(imported.state_bytes() == before.state_bytes());

  // The session's own random stream (no seed), then greedy, then seeded.
  for (const v1::SamplingParams& sampling :
       {unseeded, Greedy(10), Seeded(10, 5), unseeded}) {
    INFO("sampling " << sampling.ShortDebugString());
    const client::GenerateOutput on_a = Unwrap(
        a.client->GenerateAll(TextRequest(id, " and the Word", sampling)));
    const client::GenerateOutput on_b = Unwrap(
        b.client->GenerateAll(TextRequest("moved", " and the Word", sampling)));
    CHECK(on_a.token_ids == on_b.token_ids);
    CHECK(on_a.result.usage().session_position() ==
          on_b.result.usage().session_position());
  }

  // Through a file, with a server-assigned id.
  const std::string path =
      (std::filesystem::temp_directory_path() /
       ("linserve-client-test-" + std::to_string(::getpid()) + ".state"))
          .string();
  CHECK(Unwrap(a.client->ExportSessionToFile(id, path)) > 0);
  const v1::SessionInfo from_file =
      Unwrap(b.client->ImportSessionFromFile(path));
  CHECK(from_file.session_id().size() == 32);
  CHECK(from_file.position() == Unwrap(a.client->GetSession(id)).position());
  std::remove(path.c_str());

  // Damaged bytes: DATA_LOSS; another model's state: FAILED_PRECONDITION.
  std::string damaged = state;
  damaged[damaged.size() / 2] ^= 0x5a;
  CHECK(b.client->ImportSessionFromString(damaged).status().code() ==
        absl::StatusCode::kDataLoss);
  CHECK(b.client->ImportSessionFromString(state.substr(0, state.size() / 3))
            .status()
            .code() == absl::StatusCode::kDataLoss);
  Running tiny = StartServer(kTinyModel);
  CHECK(tiny.client->ImportSessionFromString(state).status().code() ==
        absl::StatusCode::kFailedPrecondition);
  CHECK(b.client->ImportSessionFromString(state, "moved").status().code() ==
        absl::StatusCode::kAlreadyExists);
}

TEST_CASE(
    "64 concurrent sessions give the tokens they give one at a time "
    "(greedy and seeded)") {
  Running s = StartServer(kTinyModel);
  Client& client = *s.client;
  constexpr int kSessions = 64;
  const auto request_for = [](int i, const std::string& session) {
    return TokenRequest(session, FixtureTokens(5 + i % 17, 100 + i),
                        i % 2 == 0 ? Greedy(24) : Seeded(24, 1000 + i));
  };
  std::vector<std::vector<int32_t>> sequential(kSessions);
  for (int i = 0; i < kSessions; ++i) {
    const std::string id = Unwrap(client.CreateSession()).session_id();
    sequential[i] = Unwrap(client.GenerateAll(request_for(i, id))).token_ids;
    REQUIRE(sequential[i].size() == 24);
  }

  std::vector<std::string> ids(kSessions);
  for (int i = 0; i < kSessions; ++i) {
    ids[i] = Unwrap(client.CreateSession()).session_id();
  }
  std::vector<absl::StatusOr<client::GenerateOutput>> concurrent(
      kSessions, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < kSessions; ++i) {
    threads.emplace_back(
        [&, i] { concurrent[i] = client.GenerateAll(request_for(i, ids[i])); });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kSessions; ++i) {
    INFO("session " << i);
    REQUIRE(concurrent[i].ok());
    CHECK(concurrent[i]->token_ids == sequential[i]);
  }
}

TEST_CASE("a second call on a busy session is refused with ABORTED") {
  Running s = StartServer(kTinyModel);
  Client& client = *s.client;
  const std::string id = Unwrap(client.CreateSession()).session_id();
  CallCanceller canceller;
  std::atomic<bool> streaming{false};
  // Checked after the join: Catch2's assertions are not thread-safe.
  absl::StatusCode long_call_code = absl::StatusCode::kUnknown;
  std::thread long_call([&] {
    long_call_code =
        client
            .Generate(TokenRequest(id, FixtureTokens(4, 8), Greedy(1000000)),
                      [&](const v1::GenerateChunk&) { streaming.store(true); },
                      {.timeout = absl::Seconds(20), .canceller = &canceller})
            .status()
            .code();
  });
  while (!streaming.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const absl::Status second =
      client.Generate(TokenRequest(id, FixtureTokens(4, 9), Greedy(2)), nullptr)
          .status();
  CHECK(second.code() == absl::StatusCode::kAborted);
  CHECK(Unwrap(client.GetSession(id)).busy());
  canceller.Cancel();
  long_call.join();
  CHECK(long_call_code == absl::StatusCode::kCancelled);
  CHECK(WaitUntilIdle(client, id).position() == 0);
}

TEST_CASE("a Generate cancelled mid-stream leaves its session as before") {
  Running s = StartServer(kTinyModel);
  Client& client = *s.client;
  const std::string id = Unwrap(client.CreateSession()).session_id();
  RequireOk(
      client
          .Generate(TokenRequest(id, FixtureTokens(20, 10), Greedy(4)), nullptr)
          .status());
  const int64_t position = Unwrap(client.GetSession(id)).position();
  const std::string reference =
      Unwrap(client.ForkSession(id, "reference")).session_id();

  CallCanceller canceller;
  int64_t received = 0;
  const auto cancelled =
      client.Generate(TokenRequest(id, FixtureTokens(6, 11), Greedy(1000000)),
                      [&](const v1::GenerateChunk& chunk) {
                        received += chunk.token_ids_size();
                        if (received >= 5) canceller.Cancel();
                      },
                      {.canceller = &canceller});
  CHECK(cancelled.status().code() == absl::StatusCode::kCancelled);
  CHECK(received >= 5);
  CHECK(WaitUntilIdle(client, id).position() == position);

  const std::vector<int32_t> next = FixtureTokens(6, 12);
  const client::GenerateOutput after =
      Unwrap(client.GenerateAll(TokenRequest(id, next, Greedy(10))));
  const client::GenerateOutput expected =
      Unwrap(client.GenerateAll(TokenRequest(reference, next, Greedy(10))));
  CHECK(after.token_ids == expected.token_ids);
  CHECK(after.result.usage().session_position() ==
        expected.result.usage().session_position());

  // A canceller fired before the call starts cancels it at once.
  CallCanceller early;
  early.Cancel();
  CHECK(client
            .Generate(TokenRequest(id, next, Greedy(3)), nullptr,
                      {.canceller = &early})
            .status()
            .code() == absl::StatusCode::kCancelled);
  CHECK(WaitUntilIdle(client, id).position() ==
        after.result.usage().session_position());
}

TEST_CASE(
    "a passed deadline ends the call with DEADLINE_EXCEEDED, the "
    "session unchanged, and the server keeps serving") {
  Running s = StartServer(kTinyModel);
  Client& client = *s.client;
  const std::string id = Unwrap(client.CreateSession()).session_id();
  RequireOk(client
                .IngestTokens(FixtureTokens(30, 13),
                              {.session_id = id, .chunk_tokens = 30})
                .status());
  const absl::Status status =
      client
          .Generate(TokenRequest(id, FixtureTokens(3, 14), Greedy(1000000)),
                    nullptr, {.timeout = absl::Milliseconds(200)})
          .status();
  CHECK(status.code() == absl::StatusCode::kDeadlineExceeded);
  CHECK(WaitUntilIdle(client, id).position() == 30);
  CHECK(Unwrap(client.CheckHealth()) == HealthStatus::SERVING);
  const client::GenerateOutput after = Unwrap(
      client.GenerateAll(TokenRequest(id, FixtureTokens(3, 14), Greedy(5))));
  CHECK(after.token_ids.size() == 5);
  CHECK(after.result.usage().session_position() == 30 + 3 + 5);
}

// Records the x-linserve-session metadata of every call it gets (the real
// server does not expose request metadata) and answers UNIMPLEMENTED.
class MetadataRecorder final : public v1::Inference::Service,
                               public v1::Sessions::Service {
 public:
  std::vector<std::string> TakeRecorded() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(recorded_, {});
  }

  grpc::Status Generate(grpc::ServerContext* context,
                        const v1::GenerateRequest*,
                        grpc::ServerWriter<v1::GenerateResponse>*) override {
    return Record(context, "Generate");
  }
  grpc::Status Chat(grpc::ServerContext* context,
                    grpc::ServerReaderWriter<v1::ChatResponse, v1::ChatRequest>*
                        stream) override {
    v1::ChatRequest first;
    stream->Read(&first);
    return Record(context, "Chat");
  }
  grpc::Status Ingest(grpc::ServerContext* context,
                      grpc::ServerReader<v1::IngestRequest>* reader,
                      v1::IngestResponse*) override {
    v1::IngestRequest chunk;
    while (reader->Read(&chunk)) {
    }
    return Record(context, "Ingest");
  }
  grpc::Status Score(grpc::ServerContext* context, const v1::ScoreRequest*,
                     v1::ScoreResponse*) override {
    return Record(context, "Score");
  }
  grpc::Status GetSession(grpc::ServerContext* context,
                          const v1::GetSessionRequest*,
                          v1::SessionInfo*) override {
    return Record(context, "GetSession");
  }
  grpc::Status ForkSession(grpc::ServerContext* context,
                           const v1::ForkSessionRequest*,
                           v1::SessionInfo*) override {
    return Record(context, "ForkSession");
  }
  grpc::Status ExportSession(
      grpc::ServerContext* context, const v1::ExportSessionRequest*,
      grpc::ServerWriter<v1::ExportSessionChunk>*) override {
    return Record(context, "ExportSession");
  }
  grpc::Status DeleteSession(grpc::ServerContext* context,
                             const v1::DeleteSessionRequest*,
                             v1::DeleteSessionResponse*) override {
    return Record(context, "DeleteSession");
  }

 private:
  grpc::Status Record(grpc::ServerContext* context, const std::string& rpc) {
    const auto& metadata = context->client_metadata();
    const auto found = metadata.find(client::kSessionMetadataKey);
    std::string value = "(none)";
    if (found != metadata.end()) {
      value = std::string(found->second.data(), found->second.size());
    }
    std::lock_guard<std::mutex> lock(mu_);
    recorded_.push_back(rpc + " " + value);
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "recorder");
  }

  std::mutex mu_;
  std::vector<std::string> recorded_;
};

TEST_CASE(
    "every call that names a session sends it as x-linserve-session "
    "metadata") {
  MetadataRecorder recorder;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(static_cast<v1::Inference::Service*>(&recorder));
  builder.RegisterService(static_cast<v1::Sessions::Service*>(&recorder));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  REQUIRE(server != nullptr);
  std::unique_ptr<Client> client =
      Unwrap(Client::Connect("127.0.0.1:" + std::to_string(port), {}));

  client->Generate(TokenRequest("s-gen", {1}, Greedy(1)), nullptr)
      .status()
      .IgnoreError();
  client->Generate(TokenRequest("", {1}, Greedy(1)), nullptr)
      .status()
      .IgnoreError();
  v1::ChatStart start;
  start.set_session_id("s-chat");
  ChatSession::Start(*client, start).status().IgnoreError();
  client->IngestTokens({1, 2}, {.session_id = "s-ingest"})
      .status()
      .IgnoreError();
  v1::ScoreRequest score;
  score.set_session_id("s-score");
  client->Score(score).status().IgnoreError();
  client->GetSession("s-get").status().IgnoreError();
  client->ForkSession("s-fork", "new").status().IgnoreError();
  client->ExportSessionToString("s-export").status().IgnoreError();
  client->DeleteSession("s-delete").IgnoreError();
  server->Shutdown();

  CHECK(recorder.TakeRecorded() ==
        std::vector<std::string>{"Generate s-gen", "Generate (none)",
                                 "Chat s-chat", "Ingest s-ingest",
                                 "Score s-score", "GetSession s-get",
                                 "ForkSession s-fork", "ExportSession s-export",
                                 "DeleteSession s-delete"});
}

}  // namespace
}  // namespace linserve
