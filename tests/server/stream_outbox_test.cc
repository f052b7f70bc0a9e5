// StreamOutbox: the order of writes and the Finish, coalescing of chunks
// while a write is in flight, gathering min_tokens_per_write tokens, the
// queue's bound and a failed write.
#include "server/stream_outbox.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "linserve/v1/inference.pb.h"
#include "server/scheduler.h"

namespace linserve::server {
namespace {

using GenerateOutbox = StreamOutbox<v1::GenerateResponse>;
using ChatOutbox = StreamOutbox<v1::ChatResponse>;

GeneratedChunk Chunk(std::vector<int32_t> token_ids, std::string text) {
  GeneratedChunk chunk;
  chunk.token_ids = std::move(token_ids);
  chunk.text = std::move(text);
  return chunk;
}

v1::GenerateResponse Result(uint64_t seed) {
  v1::GenerateResponse response;
  response.mutable_result()->set_seed(seed);
  return response;
}

std::vector<int32_t> TokenIds(const v1::GenerateChunk& chunk) {
  return std::vector<int32_t>(chunk.token_ids().begin(),
                              chunk.token_ids().end());
}

TEST_CASE("a stream outbox keeps one write in flight and writes in order") {
  GenerateOutbox outbox(8, 64);
  outbox.Add(Result(1));
  outbox.Add(Result(2));

  GenerateOutbox::Next next = outbox.TakeNext(/*may_finish=*/false);
  REQUIRE(next.write != nullptr);
  CHECK(next.write->result().seed() == 1);
  CHECK_FALSE(next.finish);

  // The first write is in flight: nothing more until it is done.
  next = outbox.TakeNext(/*may_finish=*/false);
  CHECK(next.write == nullptr);
  CHECK_FALSE(next.finish);

  outbox.WriteDone(true);
  next = outbox.TakeNext(/*may_finish=*/false);
  REQUIRE(next.write != nullptr);
  CHECK(next.write->result().seed() == 2);

  outbox.WriteDone(true);
  next = outbox.TakeNext(/*may_finish=*/false);
  CHECK(next.write == nullptr);
  CHECK_FALSE(next.finish);
}

TEST_CASE(
    "a stream outbox merges chunks generated while a write is in flight "
    "into one message") {
  GenerateOutbox outbox(8, 64);
  outbox.AddChunk(Chunk({1}, "a"), nullptr);
  GenerateOutbox::Next next = outbox.TakeNext(/*may_finish=*/false);
  REQUIRE(next.write != nullptr);
  CHECK(TokenIds(next.write->chunk()) == std::vector<int32_t>{1});

  // The client lags: the next three chunks wait behind the write.
  GeneratedChunk with_logprobs = Chunk({3}, "c");
  with_logprobs.logprobs.resize(1);
  with_logprobs.logprobs[0].token = 3;
  with_logprobs.logprobs[0].logprob = -0.5f;
  outbox.AddChunk(Chunk({2}, "b"), nullptr);
  outbox.AddChunk(with_logprobs, nullptr);
  outbox.AddChunk(Chunk({4, 5}, "de"), nullptr);

  outbox.WriteDone(true);
  next = outbox.TakeNext(/*may_finish=*/false);
  REQUIRE(next.write != nullptr);
  const v1::GenerateChunk& merged = next.write->chunk();
  CHECK(TokenIds(merged) == std::vector<int32_t>{2, 3, 4, 5});
  CHECK(merged.text() == "bcde");
  REQUIRE(merged.logprobs_size() == 1);
  CHECK(merged.logprobs(0).chosen().token() == 3);
  CHECK(merged.logprobs(0).chosen().logprob() == -0.5f);

  // Everything went out in that one message.
  outbox.WriteDone(true);
  CHECK(outbox.TakeNext(/*may_finish=*/false).write == nullptr);
}

TEST_CASE(
    "a stream outbox starts a new chunk once the last queued one holds "
    "max_coalesced_tokens tokens") {
  GenerateOutbox outbox(8, 4);
  outbox.Add(Result(0));
  REQUIRE(outbox.TakeNext(/*may_finish=*/false).write != nullptr);

  outbox.AddChunk(Chunk({1, 2, 3}, ""), nullptr);
  // Three tokens are fewer than four: this chunk is merged whole.
  outbox.AddChunk(Chunk({4, 5}, ""), nullptr);
  // Five are not: a new message.
  outbox.AddChunk(Chunk({6}, ""), nullptr);

  outbox.WriteDone(true);
  GenerateOutbox::Next next = outbox.TakeNext(/*may_finish=*/false);
  REQUIRE(next.write != nullptr);
  CHECK(TokenIds(next.write->chunk()) == std::vector<int32_t>{1, 2, 3, 4, 5});
  outbox.WriteDone(true);
  next = outbox.TakeNext(/*may_finish=*/false);
  REQUIRE(next.write != nullptr);
  CHECK(TokenIds(next.write->chunk()) == std::vector<int32_t>{6});
}

TEST_CASE(
    "a stream outbox never merges a chunk into a queued message of another "
    "kind (a ChatTurnEnd stays whole)") {
  ChatOutbox outbox(8, 64);
  v1::ChatResponse started;
  started.mutable_started()->set_session_id("s");
  outbox.Add(started);
  REQUIRE(outbox.TakeNext(/*may_finish=*/false).write != nullptr);

  // A turn ends while the client lags, and the next turn's first chunk
  // comes before the ChatTurnEnd is written.
  v1::ChatResponse turn_end;
  turn_end.mutable_turn_end()->set_seed(7);
  outbox.Add(turn_end);
  outbox.AddChunk(Chunk({9}, "x"), nullptr);

  outbox.WriteDone(true);
  ChatOutbox::Next next = outbox.TakeNext(/*may_finish=*/false);
  REQUIRE(next.write != nullptr);
  REQUIRE(next.write->has_turn_end());
  CHECK(next.write->turn_end().seed() == 7);
  outbox.WriteDone(true);
  next = outbox.TakeNext(/*may_finish=*/false);
  REQUIRE(next.write != nullptr);
  REQUIRE(next.write->has_chunk());
  CHECK(TokenIds(next.write->chunk()) == std::vector<int32_t>{9});
}

TEST_CASE(
    "a stream outbox has room for max_queued messages behind the write in "
    "flight, and merged chunks take none") {
  GenerateOutbox outbox(3, 64);
  outbox.Add(Result(0));
  REQUIRE(outbox.TakeNext(/*may_finish=*/false).write != nullptr);
  CHECK(outbox.HasRoom());

  for (int32_t token = 0; token < 100; ++token) {
    outbox.AddChunk(Chunk({token}, ""), nullptr);
  }
  // 100 one-token chunks fill two messages (64 + 36).
  CHECK(outbox.HasRoom());
  outbox.Add(Result(1));
  CHECK_FALSE(outbox.HasRoom());
  // The bound is the scheduler's cue to wait; the outbox still queues.
  outbox.Add(Result(2));
  CHECK_FALSE(outbox.HasRoom());

  // Draining makes room again: after one write, three still wait.
  outbox.WriteDone(true);
  REQUIRE(outbox.TakeNext(/*may_finish=*/false).write != nullptr);
  CHECK_FALSE(outbox.HasRoom());
  outbox.WriteDone(true);
  REQUIRE(outbox.TakeNext(/*may_finish=*/false).write != nullptr);
  CHECK(outbox.HasRoom());
}

TEST_CASE(
    "a stream outbox hands out the Finish once, only after every queued "
    "message is written") {
  GenerateOutbox outbox(8, 64);
  outbox.AddChunk(Chunk({1}, ""), nullptr);
  outbox.Add(Result(1));

  GenerateOutbox::Next next = outbox.TakeNext(/*may_finish=*/true);
  REQUIRE(next.write != nullptr);
  CHECK(next.write->has_chunk());
  CHECK_FALSE(next.finish);
  // Nothing while the write is in flight, though the call may end.
  next = outbox.TakeNext(/*may_finish=*/true);
  CHECK(next.write == nullptr);
  CHECK_FALSE(next.finish);

  outbox.WriteDone(true);
  next = outbox.TakeNext(/*may_finish=*/true);
  REQUIRE(next.write != nullptr);
  CHECK(next.write->has_result());
  CHECK_FALSE(next.finish);

  outbox.WriteDone(true);
  // Drained, but the reactor still holds the call open.
  next = outbox.TakeNext(/*may_finish=*/false);
  CHECK(next.write == nullptr);
  CHECK_FALSE(next.finish);
  CHECK_FALSE(outbox.finished());

  next = outbox.TakeNext(/*may_finish=*/true);
  CHECK(next.write == nullptr);
  CHECK(next.finish);
  CHECK(outbox.finished());

  // Once: and nothing is written after it.
  outbox.Add(Result(2));
  next = outbox.TakeNext(/*may_finish=*/true);
  CHECK(next.write == nullptr);
  CHECK_FALSE(next.finish);
}

TEST_CASE(
    "a failed write drops the queued messages and everything added after "
    "it, and the Finish follows at once") {
  GenerateOutbox outbox(2, 64);
  outbox.Add(Result(1));
  outbox.Add(Result(2));
  outbox.Add(Result(3));
  REQUIRE(outbox.TakeNext(/*may_finish=*/false).write != nullptr);
  CHECK_FALSE(outbox.HasRoom());
  CHECK_FALSE(outbox.broken());

  outbox.WriteDone(false);
  CHECK(outbox.broken());
  CHECK(outbox.HasRoom());
  CHECK(outbox.TakeNext(/*may_finish=*/false).write == nullptr);

  outbox.AddChunk(Chunk({1}, "a"), nullptr);
  outbox.Add(Result(4));
  CHECK(outbox.HasRoom());
  GenerateOutbox::Next next = outbox.TakeNext(/*may_finish=*/true);
  CHECK(next.write == nullptr);
  CHECK(next.finish);
}

TEST_CASE(
    "with min_tokens_per_write a lone chunk waits for that many tokens while "
    "more are coming, and goes out with fewer once the job ends") {
  GenerateOutbox outbox(8, 64, /*min_tokens_per_write=*/3);
  outbox.AddChunk(Chunk({1}, "a"), nullptr);
  CHECK(outbox.TakeNext(/*may_finish=*/false, /*more_tokens_coming=*/true)
            .write == nullptr);
  outbox.AddChunk(Chunk({2}, "b"), nullptr);
  CHECK(outbox.TakeNext(false, true).write == nullptr);
  CHECK(outbox.HasRoom());
  outbox.AddChunk(Chunk({3}, "c"), nullptr);
  GenerateOutbox::Next next = outbox.TakeNext(false, true);
  REQUIRE(next.write != nullptr);
  CHECK(TokenIds(next.write->chunk()) == std::vector<int32_t>{1, 2, 3});
  CHECK(next.write->chunk().text() == "abc");
  outbox.WriteDone(true);

  // The job ends after one more token: it is not held any longer.
  outbox.AddChunk(Chunk({4}, "d"), nullptr);
  CHECK(outbox.TakeNext(false, true).write == nullptr);
  next = outbox.TakeNext(/*may_finish=*/false, /*more_tokens_coming=*/false);
  REQUIRE(next.write != nullptr);
  CHECK(TokenIds(next.write->chunk()) == std::vector<int32_t>{4});
  outbox.WriteDone(true);

  // A message queued behind a gathering chunk (a Chat turn's end) sends it.
  ChatOutbox chat(8, 64, /*min_tokens_per_write=*/3);
  GeneratedChunk held = Chunk({5}, "e");
  chat.AddChunk(held, nullptr);
  CHECK(chat.TakeNext(false, true).write == nullptr);
  v1::ChatResponse turn_end;
  turn_end.mutable_turn_end()->set_seed(7);
  chat.Add(std::move(turn_end));
  ChatOutbox::Next chat_next = chat.TakeNext(false, true);
  REQUIRE(chat_next.write != nullptr);
  CHECK(chat_next.write->chunk().token_ids_size() == 1);
  chat.WriteDone(true);
  chat_next = chat.TakeNext(false, true);
  REQUIRE(chat_next.write != nullptr);
  CHECK(chat_next.write->turn_end().seed() == 7);
}

TEST_CASE(
    "with min_tokens_per_write 1 every chunk goes out at once even while "
    "more tokens are coming") {
  GenerateOutbox outbox(8, 64);
  outbox.AddChunk(Chunk({1}, "a"), nullptr);
  GenerateOutbox::Next next =
      outbox.TakeNext(/*may_finish=*/false, /*more_tokens_coming=*/true);
  REQUIRE(next.write != nullptr);
  CHECK(TokenIds(next.write->chunk()) == std::vector<int32_t>{1});
}

}  // namespace
}  // namespace linserve::server
