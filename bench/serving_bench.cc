// serving_bench: the linserve server on loopback against its own limits,
// measured in one run and printed as ratios (issue 4 §8,
// docs/performance.md "Serving"). The server runs in this process
// (server::Server on 127.0.0.1:0) and is driven through client::Client, so
// the figures include gRPC, the scheduler and the client library.
//
//   stream   one streamed Generate (greedy, ignore_eos, --generate_tokens
//            after a 16-token prompt) against the engine in-process doing
//            the same (Model::Prefill, then DecodeStep + argmax per token,
//            on a second Model loaded the same way): tokens/s, median of
//            --repeats alternating runs; goal >= 0.9
//   chats    aggregate generated tokens/s of --streams concurrent Chat
//            streams (each its own session, --chat_turns turns of
//            --chat_tokens tokens) against one stream (4x the turns);
//            DecodeStep in-process at B = 1 and B = --streams for scale;
//            goal >= 8x
//   latency  p50 / p99 client-side gap between consecutive GenerateChunk
//            arrivals of --latency_streams Chat streams, for
//            --latency_seconds alone and then for as long as an Ingest of
//            --ingest_tokens random token ids into another session runs;
//            goal p99 with ingest <= 3x p99 without (ingest tokens/s too,
//            alone on a quarter of the tokens and beside the chats)
//   unary    --unary_calls sequential Sessions.GetSession round trips
//            against a bare gRPC echo server (bench/echo.proto, callback
//            API, same process, same channel and server settings): median
//            and p99 microseconds and their ratio
//
// Usage: serving_bench [--model DIR] [--quick] [--json FILE]
//          [--generate_tokens N] [--repeats N] [--streams N]
//          [--chat_turns N] [--chat_tokens N] [--latency_streams N]
//          [--latency_seconds S] [--ingest_tokens N] [--unary_calls N]
//          [--prefill_chunk N]
// --quick: tiny counts, for the ctest smoke run. --prefill_chunk sets the
// scheduler's prefill tokens per job and step (SchedulerOptions), which
// bounds how much an ingest lengthens the chats' steps.
#include <grpcpp/grpcpp.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <latch>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "bench/echo.grpc.pb.h"
#include "client/chat_session.h"
#include "client/client.h"
#include "common/status_macros.h"
#include "engine/model.h"
#include "kernels/dtype.h"
#include "nlohmann/json.hpp"
#include "server/server.h"

namespace linserve::bench {
namespace {

namespace v1 = ::linserve::v1;
using Clock = std::chrono::steady_clock;

struct Flags {
  std::string model_dir = LINSERVE_DEFAULT_MODEL_DIR;
  bool quick = false;
  std::string json_path;
  int64_t generate_tokens = 256;
  int64_t repeats = 5;
  int64_t streams = 32;
  int64_t chat_turns = 8;
  int64_t chat_tokens = 64;
  int64_t latency_streams = 16;
  double latency_seconds = 10;
  int64_t ingest_tokens = 1000000;
  int64_t unary_calls = 5000;
  // The scheduler's prefill tokens per job and step; 0: the server default.
  int64_t prefill_chunk = 0;
};

absl::StatusOr<Flags> ParseFlags(int argc, char** argv) {
  Flags flags;
  std::set<std::string> given;  // --quick changes only the other defaults
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    given.insert(arg);
    auto value = [&]() -> absl::StatusOr<std::string> {
      if (i + 1 >= argc) {
        return absl::InvalidArgumentError(absl::StrCat(arg, " needs a value"));
      }
      return std::string(argv[++i]);
    };
    auto number = [&](int64_t& out) -> absl::Status {
      ASSIGN_OR_RETURN(const std::string text, value());
      if (!absl::SimpleAtoi(text, &out) || out < 1) {
        return absl::InvalidArgumentError(
            absl::StrCat(arg, ": expected a positive integer, got ", text));
      }
      return absl::OkStatus();
    };
    if (arg == "--model") {
      ASSIGN_OR_RETURN(flags.model_dir, value());
    } else if (arg == "--quick") {
      flags.quick = true;
    } else if (arg == "--json") {
      ASSIGN_OR_RETURN(flags.json_path, value());
    } else if (arg == "--generate_tokens") {
      RETURN_IF_ERROR(number(flags.generate_tokens));
    } else if (arg == "--repeats") {
      RETURN_IF_ERROR(number(flags.repeats));
    } else if (arg == "--streams") {
      RETURN_IF_ERROR(number(flags.streams));
    } else if (arg == "--chat_turns") {
      RETURN_IF_ERROR(number(flags.chat_turns));
    } else if (arg == "--chat_tokens") {
      RETURN_IF_ERROR(number(flags.chat_tokens));
    } else if (arg == "--latency_streams") {
      RETURN_IF_ERROR(number(flags.latency_streams));
    } else if (arg == "--latency_seconds") {
      ASSIGN_OR_RETURN(const std::string text, value());
      if (!absl::SimpleAtod(text, &flags.latency_seconds) ||
          !(flags.latency_seconds > 0)) {
        return absl::InvalidArgumentError(absl::StrCat(
            arg, ": expected a positive number of seconds, got ", text));
      }
    } else if (arg == "--ingest_tokens") {
      RETURN_IF_ERROR(number(flags.ingest_tokens));
    } else if (arg == "--unary_calls") {
      RETURN_IF_ERROR(number(flags.unary_calls));
    } else if (arg == "--prefill_chunk") {
      RETURN_IF_ERROR(number(flags.prefill_chunk));
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", arg));
    }
  }
  if (flags.quick) {
    auto tiny = [&](const char* flag, auto& field, auto value) {
      if (!given.contains(flag)) field = value;
    };
    tiny("--generate_tokens", flags.generate_tokens, 32);
    tiny("--repeats", flags.repeats, 2);
    tiny("--streams", flags.streams, 4);
    tiny("--chat_turns", flags.chat_turns, 2);
    tiny("--chat_tokens", flags.chat_tokens, 8);
    tiny("--latency_streams", flags.latency_streams, 4);
    tiny("--latency_seconds", flags.latency_seconds, 0.5);
    tiny("--ingest_tokens", flags.ingest_tokens, 20000);
    tiny("--unary_calls", flags.unary_calls, 200);
  }
  return flags;
}

void Check(const absl::Status& status, const char* what) {
  if (!status.ok()) {
    std::fprintf(stderr, "serving_bench: %s: %s\n", what,
                 status.ToString().c_str());
    std::exit(1);
  }
}

double SecondsBetween(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// The smallest value with at least `fraction` of the values at or below it.
double Percentile(std::vector<double> values, double fraction) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = std::ceil(fraction * values.size());
  const size_t index =
      std::clamp<size_t>(static_cast<size_t>(rank), 1, values.size()) - 1;
  return values[index];
}

std::vector<int32_t> RandomTokens(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0,
                                              static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> tokens(n);
  for (int32_t& t : tokens) t = dist(rng);
  return tokens;
}

// The 1-minute load average (other processes competing for the cores).
double LoadAverage() {
  std::ifstream loadavg("/proc/loadavg");
  double one_minute = -1;
  loadavg >> one_minute;
  return one_minute;
}

std::string Verdict(bool met) { return met ? "met" : "NOT met"; }

// ---- 1. One stream against the engine

int32_t Argmax(const std::vector<float>& logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) -
                              logits.begin());
}

// Greedy generation of `count` tokens after `prompt` on a fresh session, as
// the server does it: prefill, then one DecodeStep per further token.
std::vector<int32_t> EngineGenerate(engine::Model& model,
                                    const std::vector<int32_t>& prompt,
                                    int64_t count) {
  std::vector<float> logits(model.vocab_size());
  auto session = model.NewSession();
  Check(
      model.Prefill(*session, prompt, engine::LogitsMode::kLast, logits.data()),
      "engine prefill");
  std::vector<int32_t> tokens = {Argmax(logits)};
  engine::SessionState* states[] = {session.get()};
  while (static_cast<int64_t>(tokens.size()) < count) {
    const int32_t last = tokens.back();
    Check(
        model.DecodeStep(states, absl::MakeConstSpan(&last, 1), logits.data()),
        "engine decode step");
    tokens.push_back(Argmax(logits));
  }
  return tokens;
}

std::vector<int32_t> ServerGenerate(client::Client& client,
                                    const std::vector<int32_t>& prompt,
                                    int64_t count) {
  v1::GenerateRequest request;
  request.mutable_prompt()->mutable_tokens()->mutable_ids()->Add(prompt.begin(),
                                                                 prompt.end());
  v1::SamplingParams& sampling = *request.mutable_sampling();
  sampling.set_temperature(0);
  sampling.set_ignore_eos(true);
  sampling.set_max_tokens(static_cast<int32_t>(count));
  std::vector<int32_t> tokens;
  absl::StatusOr<v1::GenerateResult> result =
      client.Generate(request, [&](const v1::GenerateChunk& chunk) {
        tokens.insert(tokens.end(), chunk.token_ids().begin(),
                      chunk.token_ids().end());
      });
  Check(result.status(), "Generate");
  return tokens;
}

struct StreamResult {
  double engine_tokens_per_s = 0, server_tokens_per_s = 0;
  bool same_tokens = false;
};

StreamResult BenchStream(const Flags& flags, client::Client& client,
                         engine::Model& model) {
  const std::vector<int32_t> prompt = RandomTokens(16, model.vocab_size(), 1);
  const int64_t n = flags.generate_tokens;
  std::vector<double> engine_rates, server_rates;
  std::vector<int32_t> engine_tokens, server_tokens;
  EngineGenerate(model, prompt, n);  // warm-up of both paths
  ServerGenerate(client, prompt, n);
  for (int64_t r = 0; r < flags.repeats; ++r) {
    auto start = Clock::now();
    engine_tokens = EngineGenerate(model, prompt, n);
    engine_rates.push_back(n / SecondsBetween(start, Clock::now()));
    start = Clock::now();
    server_tokens = ServerGenerate(client, prompt, n);
    server_rates.push_back(server_tokens.size() /
                           SecondsBetween(start, Clock::now()));
  }
  StreamResult result;
  result.engine_tokens_per_s = Median(engine_rates);
  result.server_tokens_per_s = Median(server_rates);
  result.same_tokens = engine_tokens == server_tokens;
  std::printf(
      "\n== One stream: Generate of %lld tokens (greedy, ignore_eos, 16-token "
      "prompt) vs the engine in-process; median of %lld\n",
      static_cast<long long>(n), static_cast<long long>(flags.repeats));
  std::printf("  %-44s %12.0f tokens/s\n",
              "engine (Prefill + DecodeStep + argmax)",
              result.engine_tokens_per_s);
  std::printf("  %-44s %12.0f tokens/s\n", "server (streamed Generate)",
              result.server_tokens_per_s);
  std::printf("  %-44s %12.3f (goal >= 0.9)\n", "server / engine",
              result.server_tokens_per_s / result.engine_tokens_per_s);
  std::printf("  %-44s %12s\n", "same tokens as the engine",
              result.same_tokens ? "yes" : "NO");
  return result;
}

// ---- Metrics cost (issue 5 §1)

struct MetricsCostResult {
  double on_tokens_per_s = 0, off_tokens_per_s = 0;
};

// The same streamed Generate on the benchmark's server (metrics on: the
// interceptor, the engine loop's per-step and per-token series) and on a
// second server with ServerOptions::metrics_enabled = false, alternating,
// median of 2 x repeats each.
MetricsCostResult BenchMetricsCost(const Flags& flags, client::Client& on,
                                   client::Client& off, int64_t vocab) {
  const std::vector<int32_t> prompt = RandomTokens(16, vocab, 2);
  const int64_t n = flags.generate_tokens;
  std::vector<double> on_rates, off_rates;
  ServerGenerate(on, prompt, n);  // warm-up
  ServerGenerate(off, prompt, n);
  for (int64_t r = 0; r < 2 * flags.repeats; ++r) {
    for (bool metrics : {true, false}) {
      const auto start = Clock::now();
      const std::vector<int32_t> tokens =
          ServerGenerate(metrics ? on : off, prompt, n);
      (metrics ? on_rates : off_rates)
          .push_back(tokens.size() / SecondsBetween(start, Clock::now()));
    }
  }
  MetricsCostResult result;
  result.on_tokens_per_s = Median(on_rates);
  result.off_tokens_per_s = Median(off_rates);
  std::printf(
      "\n== Metrics cost: one streamed Generate of %lld tokens, metrics on vs "
      "off (a second server); median of %lld\n",
      static_cast<long long>(n), static_cast<long long>(2 * flags.repeats));
  std::printf("  %-44s %12.0f tokens/s\n", "metrics on",
              result.on_tokens_per_s);
  std::printf("  %-44s %12.0f tokens/s\n", "metrics off",
              result.off_tokens_per_s);
  std::printf("  %-44s %12.3f\n", "on / off",
              result.on_tokens_per_s / result.off_tokens_per_s);
  return result;
}

// ---- Chat streams

// One GenerateChunk as the client saw it.
struct ChunkArrival {
  Clock::time_point at;
  int32_t tokens = 0;
  // Seconds since the previous chunk of the same turn; negative for a
  // turn's first chunk (that gap is the time to first token, not an
  // inter-token gap).
  double gap = -1;
};

struct ChatLoad {
  int64_t streams = 1;
  int64_t max_tokens = 64;
  // Turns per stream; 0: turns until `stop` is set.
  int64_t turns = 0;
  std::atomic<bool>* stop = nullptr;
  // Set (when non-null) once every stream is open and the turns start.
  std::atomic<bool>* started = nullptr;
};

struct ChatRun {
  Clock::time_point start, end;  // from the common start to the last reply
  std::vector<ChunkArrival> chunks;
};

// Opens load.streams Chat streams (each a new session), then runs their
// turns concurrently, one thread per stream, from a common start.
ChatRun RunChats(client::Client& client, const ChatLoad& load) {
  v1::ChatStart start;
  v1::SamplingParams& sampling = *start.mutable_sampling();
  sampling.set_temperature(0);
  sampling.set_ignore_eos(true);
  sampling.set_max_tokens(static_cast<int32_t>(load.max_tokens));
  std::vector<std::unique_ptr<client::ChatSession>> chats;
  for (int64_t i = 0; i < load.streams; ++i) {
    absl::StatusOr<std::unique_ptr<client::ChatSession>> chat =
        client::ChatSession::Start(client, start);
    Check(chat.status(), "ChatSession::Start");
    chats.push_back(*std::move(chat));
  }
  std::vector<std::vector<ChunkArrival>> per_stream(load.streams);
  std::latch go(1);
  std::vector<std::thread> threads;
  for (int64_t i = 0; i < load.streams; ++i) {
    threads.emplace_back([&, i] {
      go.wait();
      std::vector<ChunkArrival>& arrivals = per_stream[i];
      for (int64_t turn = 0;
           load.turns == 0 ? !load.stop->load() : turn < load.turns; ++turn) {
        std::optional<Clock::time_point> previous;
        absl::StatusOr<v1::ChatTurnEnd> end = chats[i]->SendTurn(
            "Tell me what happened next.", [&](const v1::GenerateChunk& chunk) {
              if (chunk.token_ids().empty()) return;
              const Clock::time_point now = Clock::now();
              arrivals.push_back(
                  {.at = now,
                   .tokens = chunk.token_ids_size(),
                   .gap = previous ? SecondsBetween(*previous, now) : -1});
              previous = now;
            });
        Check(end.status(), "Chat turn");
      }
    });
  }
  ChatRun run;
  run.start = Clock::now();
  go.count_down();
  if (load.started != nullptr) *load.started = true;
  for (std::thread& t : threads) t.join();
  run.end = Clock::now();
  for (auto& chat : chats) Check(chat->Close(), "ChatSession::Close");
  for (auto& arrivals : per_stream) {
    run.chunks.insert(run.chunks.end(), arrivals.begin(), arrivals.end());
  }
  return run;
}

// What the chunks that arrived in [from, to] show.
struct WindowStats {
  int64_t tokens = 0, chunks = 0;
  double seconds = 0;
  std::vector<double> gaps;  // inter-chunk gaps within turns, seconds
  double tokens_per_s() const { return seconds > 0 ? tokens / seconds : 0; }
  double tokens_per_chunk() const {
    return chunks > 0 ? static_cast<double>(tokens) / chunks : 0;
  }
};

WindowStats InWindow(const ChatRun& run, Clock::time_point from,
                     Clock::time_point to) {
  WindowStats stats;
  stats.seconds = SecondsBetween(from, to);
  for (const ChunkArrival& chunk : run.chunks) {
    if (chunk.at < from || chunk.at > to) continue;
    stats.tokens += chunk.tokens;
    ++stats.chunks;
    if (chunk.gap >= 0) stats.gaps.push_back(chunk.gap);
  }
  return stats;
}

// ---- 2. Aggregate throughput of many chats

struct ChatsResult {
  double one_tokens_per_s = 0, many_tokens_per_s = 0;
  // Model::DecodeStep in-process with B = 1 and B = streams sessions.
  double engine_one_tokens_per_s = 0, engine_many_tokens_per_s = 0;
};

// Tokens/s of Model::DecodeStep over `batch` sessions (each after a
// 16-token prefill), median of steps over about `seconds`.
double EngineDecodeTokensPerSecond(engine::Model& model, int64_t batch,
                                   double seconds) {
  std::vector<std::unique_ptr<engine::SessionState>> sessions;
  std::vector<engine::SessionState*> states;
  const std::vector<int32_t> prompt = RandomTokens(16, model.vocab_size(), 3);
  for (int64_t i = 0; i < batch; ++i) {
    sessions.push_back(model.NewSession());
    states.push_back(sessions.back().get());
    Check(model.Prefill(*sessions.back(), prompt, engine::LogitsMode::kNone,
                        nullptr),
          "engine prefill");
  }
  const std::vector<int32_t> tokens =
      RandomTokens(batch, model.vocab_size(), 4);
  std::vector<float> logits(batch * model.vocab_size());
  std::vector<double> step_seconds;
  const auto start = Clock::now();
  while (step_seconds.size() < 5 ||
         SecondsBetween(start, Clock::now()) < seconds) {
    const auto step_start = Clock::now();
    Check(model.DecodeStep(states, tokens, logits.data()), "engine decode");
    step_seconds.push_back(SecondsBetween(step_start, Clock::now()));
  }
  return batch / Median(step_seconds);
}

ChatsResult BenchChats(const Flags& flags, client::Client& client,
                       engine::Model& model) {
  std::printf(
      "\n== Chat streams: aggregate generated tokens/s, turns of %lld tokens "
      "(greedy, ignore_eos); one stream runs 4x the turns, so that both "
      "runs last about as long\n",
      static_cast<long long>(flags.chat_tokens));
  std::printf("  %-8s %6s %12s %9s %10s %14s\n", "streams", "turns", "tokens/s",
              "s", "tokens", "tokens/chunk");
  ChatsResult result;
  for (const int64_t streams : {int64_t{1}, flags.streams}) {
    const int64_t turns =
        streams == 1 ? 4 * flags.chat_turns : flags.chat_turns;
    const ChatRun run = RunChats(
        client,
        {.streams = streams, .max_tokens = flags.chat_tokens, .turns = turns});
    const WindowStats stats = InWindow(run, run.start, run.end);
    std::printf("  %-8lld %6lld %12.0f %9.2f %10lld %14.2f\n",
                static_cast<long long>(streams), static_cast<long long>(turns),
                stats.tokens_per_s(), stats.seconds,
                static_cast<long long>(stats.tokens), stats.tokens_per_chunk());
    (streams == 1 ? result.one_tokens_per_s : result.many_tokens_per_s) =
        stats.tokens_per_s();
  }
  std::printf("  %-15s %12.1fx (goal >= 8x)\n",
              absl::StrCat(flags.streams, " / 1").c_str(),
              result.many_tokens_per_s / result.one_tokens_per_s);
  // The engine alone, for scale: what batching can give on this machine.
  const double seconds = flags.quick ? 0.05 : 0.5;
  result.engine_one_tokens_per_s =
      EngineDecodeTokensPerSecond(model, 1, seconds);
  result.engine_many_tokens_per_s =
      EngineDecodeTokensPerSecond(model, flags.streams, seconds);
  std::printf(
      "  engine in-process, Model::DecodeStep: B=1 %.0f tokens/s, B=%lld "
      "%.0f tokens/s (%.1fx)\n",
      result.engine_one_tokens_per_s, static_cast<long long>(flags.streams),
      result.engine_many_tokens_per_s,
      result.engine_many_tokens_per_s / result.engine_one_tokens_per_s);
  return result;
}

// ---- 3. Inter-token latency beside a long ingest

struct LatencyResult {
  WindowStats alone, with_ingest;
  double engine_prefill_tokens_per_s = 0;  // Model::Prefill in-process
  double ingest_alone_tokens_per_s = 0, ingest_tokens_per_s = 0;
  double ingest_seconds = 0;
};

double IngestTokensPerSecond(client::Client& client,
                             const std::vector<int32_t>& tokens,
                             double* seconds) {
  const auto start = Clock::now();
  absl::StatusOr<v1::IngestResponse> response = client.IngestTokens(tokens, {});
  *seconds = SecondsBetween(start, Clock::now());
  Check(response.status(), "IngestTokens");
  if (response->tokens_ingested() != static_cast<int64_t>(tokens.size())) {
    Check(absl::InternalError(absl::StrCat("the server ingested ",
                                           response->tokens_ingested(), " of ",
                                           tokens.size(), " tokens")),
          "IngestTokens");
  }
  return tokens.size() / *seconds;
}

LatencyResult BenchLatency(const Flags& flags, client::Client& client,
                           engine::Model& model) {
  LatencyResult result;
  const std::vector<int32_t> document =
      RandomTokens(flags.ingest_tokens, model.vocab_size(), 2);
  const ChatLoad load = {.streams = flags.latency_streams,
                         .max_tokens = flags.chat_tokens};

  // The ingest alone, on a quarter of the document.
  double alone_seconds = 0;
  const std::vector<int32_t> quarter(
      document.begin(),
      document.begin() + std::max<int64_t>(1, flags.ingest_tokens / 4));
  result.ingest_alone_tokens_per_s =
      IngestTokensPerSecond(client, quarter, &alone_seconds);
  // The engine's own prefill of the same tokens, for scale.
  {
    auto session = model.NewSession();
    const auto start = Clock::now();
    Check(model.Prefill(*session, quarter, engine::LogitsMode::kNone, nullptr),
          "engine prefill");
    result.engine_prefill_tokens_per_s =
        quarter.size() / SecondsBetween(start, Clock::now());
  }

  // The chats alone for a fixed window.
  {
    std::atomic<bool> stop = false;
    ChatLoad alone = load;
    alone.stop = &stop;
    ChatRun run;
    std::thread chats([&] { run = RunChats(client, alone); });
    std::this_thread::sleep_for(
        std::chrono::duration<double>(flags.latency_seconds));
    stop = true;
    chats.join();
    result.alone = InWindow(run, run.start, run.end);
  }

  // The chats for as long as the whole document's ingest runs.
  {
    std::atomic<bool> stop = false, started = false;
    ChatLoad beside = load;
    beside.stop = &stop;
    beside.started = &started;
    ChatRun run;
    std::thread chats([&] { run = RunChats(client, beside); });
    // Let the streams get going before the ingest starts.
    while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const auto ingest_start = Clock::now();
    result.ingest_tokens_per_s =
        IngestTokensPerSecond(client, document, &result.ingest_seconds);
    const auto ingest_end = Clock::now();
    stop = true;
    chats.join();
    result.with_ingest = InWindow(run, ingest_start, ingest_end);
  }

  std::printf(
      "\n== Inter-token latency: %lld Chat streams (turns of %lld tokens), "
      "client-side gaps between GenerateChunk arrivals\n",
      static_cast<long long>(flags.latency_streams),
      static_cast<long long>(flags.chat_tokens));
  std::printf("  %-34s %9s %9s %9s %9s %11s %8s\n", "", "p50 ms", "p90 ms",
              "p99 ms", "max ms", "chat tok/s", "tok/chunk");
  auto print_row = [](const std::string& name, const WindowStats& stats) {
    std::printf(
        "  %-34s %9.2f %9.2f %9.2f %9.2f %11.0f %8.2f\n", name.c_str(),
        1e3 * Percentile(stats.gaps, 0.5), 1e3 * Percentile(stats.gaps, 0.9),
        1e3 * Percentile(stats.gaps, 0.99), 1e3 * Percentile(stats.gaps, 1.0),
        stats.tokens_per_s(), stats.tokens_per_chunk());
  };
  print_row(absl::StrCat("alone (", flags.latency_seconds, " s)"),
            result.alone);
  print_row(absl::StrCat("beside a ", flags.ingest_tokens, "-token ingest"),
            result.with_ingest);
  std::printf("  %-34s %9.2fx (goal <= 3x)\n", "p99 beside / alone",
              Percentile(result.with_ingest.gaps, 0.99) /
                  Percentile(result.alone.gaps, 0.99));
  std::printf("  %-34s %9.0f tokens/s (%lld tokens)\n",
              "engine Model::Prefill in-process",
              result.engine_prefill_tokens_per_s,
              static_cast<long long>(quarter.size()));
  std::printf("  %-34s %9.0f tokens/s (%lld tokens, %.1f s)\n", "ingest alone",
              result.ingest_alone_tokens_per_s,
              static_cast<long long>(quarter.size()), alone_seconds);
  std::printf("  %-34s %9.0f tokens/s (%lld tokens, %.1f s)\n",
              "ingest beside the chats", result.ingest_tokens_per_s,
              static_cast<long long>(document.size()), result.ingest_seconds);
  return result;
}

// ---- 4. Unary round trip against a bare echo server

class EchoService final : public Echo::CallbackService {
 public:
  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* call,
                                 const EchoMessage* request,
                                 EchoMessage* response) override {
    *response = *request;
    grpc::ServerUnaryReactor* reactor = call->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

// The echo server with the transport settings server::Server uses.
std::unique_ptr<grpc::Server> StartEchoServer(const server::ServerOptions& like,
                                              EchoService& service, int* port) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           port);
  builder.RegisterService(&service);
  const int max_message =
      static_cast<int>(std::min<int64_t>(like.max_message_bytes, INT32_MAX));
  builder.SetMaxReceiveMessageSize(max_message);
  builder.SetMaxSendMessageSize(max_message);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(like.keepalive_time.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             static_cast<int>(like.keepalive_timeout.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  return builder.BuildAndStart();
}

struct UnaryResult {
  double echo_p50_us = 0, echo_p99_us = 0;
  double get_p50_us = 0, get_p99_us = 0;
};

UnaryResult BenchUnary(const Flags& flags, const server::ServerOptions& like,
                       client::Client& client) {
  EchoService service;
  int port = 0;
  std::unique_ptr<grpc::Server> echo_server =
      StartEchoServer(like, service, &port);
  if (echo_server == nullptr || port == 0) {
    Check(absl::UnavailableError("cannot start the echo server on 127.0.0.1"),
          "echo server");
  }
  // The channel settings of client::Client::Connect.
  const client::ClientOptions& options = client.options();
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  std::unique_ptr<Echo::Stub> echo = Echo::NewStub(
      grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                grpc::InsecureChannelCredentials(), args));

  absl::StatusOr<v1::SessionInfo> session = client.CreateSession();
  Check(session.status(), "CreateSession");
  const std::string id = session->session_id();
  EchoMessage request;
  request.set_text(id);  // a request of the GetSession request's size

  auto call_echo = [&] {
    grpc::ClientContext context;  // the same default deadline as Client's
    context.set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoNanoseconds(options.default_timeout));
    EchoMessage response;
    const grpc::Status status = echo->Echo(&context, request, &response);
    if (!status.ok()) {
      Check(client::FromGrpcStatus(status), "Echo");
    }
  };
  auto call_get = [&] { Check(client.GetSession(id).status(), "GetSession"); };
  auto time_us = [](const auto& call) {
    const auto start = Clock::now();
    call();
    return 1e6 * SecondsBetween(start, Clock::now());
  };

  const int64_t warm_up = std::min<int64_t>(500, flags.unary_calls);
  for (int64_t i = 0; i < warm_up; ++i) {
    call_echo();
    call_get();
  }
  // Alternating blocks, so that both see the same machine.
  std::vector<double> echo_us, get_us;
  const int64_t block = std::max<int64_t>(1, flags.unary_calls / 10);
  while (static_cast<int64_t>(get_us.size()) < flags.unary_calls) {
    for (int64_t i = 0; i < block; ++i) echo_us.push_back(time_us(call_echo));
    for (int64_t i = 0; i < block; ++i) get_us.push_back(time_us(call_get));
  }
  echo_server->Shutdown();
  Check(client.DeleteSession(id), "DeleteSession");

  UnaryResult result = {.echo_p50_us = Percentile(echo_us, 0.5),
                        .echo_p99_us = Percentile(echo_us, 0.99),
                        .get_p50_us = Percentile(get_us, 0.5),
                        .get_p99_us = Percentile(get_us, 0.99)};
  std::printf(
      "\n== Unary round trip: %lld sequential calls each (after %lld warm-up "
      "calls), one channel each, same process\n",
      static_cast<long long>(get_us.size()), static_cast<long long>(warm_up));
  std::printf("  %-44s %10s %10s\n", "", "p50 us", "p99 us");
  std::printf("  %-44s %10.1f %10.1f\n", "bare gRPC echo (bench/echo.proto)",
              result.echo_p50_us, result.echo_p99_us);
  std::printf("  %-44s %10.1f %10.1f\n", "linserve Sessions.GetSession",
              result.get_p50_us, result.get_p99_us);
  std::printf("  %-44s %9.2fx %9.2fx\n", "GetSession / echo",
              result.get_p50_us / result.echo_p50_us,
              result.get_p99_us / result.echo_p99_us);
  return result;
}

// ---- Main

int Main(int argc, char** argv) {
  absl::StatusOr<Flags> parsed = ParseFlags(argc, argv);
  if (!parsed.ok()) {
    std::fprintf(stderr,
                 "serving_bench: %s\nusage: serving_bench [--model DIR] "
                 "[--quick] [--json FILE] [--generate_tokens N] [--repeats N] "
                 "[--streams N] [--chat_turns N] [--chat_tokens N] "
                 "[--latency_streams N] [--latency_seconds S] "
                 "[--ingest_tokens N] [--unary_calls N] "
                 "[--prefill_chunk N]\n",
                 std::string(parsed.status().message()).c_str());
    return 2;
  }
  const Flags& flags = *parsed;
  // Line by line, so that a run cut short (a time limit) keeps its tables.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const double load_before = LoadAverage();
  const auto bench_start = Clock::now();

  server::ServerOptions server_options;
  server_options.model_dir = flags.model_dir;
  server_options.listen = "127.0.0.1:0";
  server_options.weight_type = kernels::DType::kBfloat16;
  if (flags.prefill_chunk > 0) {
    server_options.scheduler.prefill_chunk = flags.prefill_chunk;
  }
  absl::StatusOr<std::unique_ptr<server::Server>> server =
      server::Server::Start(server_options);
  Check(server.status(), "Server::Start");
  absl::StatusOr<std::unique_ptr<client::Client>> client =
      client::Client::Connect((*server)->address(), {});
  Check(client.status(), "Client::Connect");
  // The engine baseline: a second model loaded as the server loads its own.
  engine::ModelOptions model_options;
  model_options.weight_type = server_options.weight_type;
  absl::StatusOr<std::unique_ptr<engine::Model>> model =
      engine::Model::Load(flags.model_dir, model_options);
  Check(model.status(), "Model::Load");

  const engine::ModelConfig& config = (*model)->config();
  std::printf("linserve serving_bench\n");
  std::printf(
      "  model %s: %s, D=%lld, %lld layers, vocab %lld, GEMMs in %s; server "
      "on %s, started in %.2f s\n",
      flags.model_dir.c_str(),
      std::string(engine::ModelFamilyName(config.family)).c_str(),
      static_cast<long long>(config.hidden_size),
      static_cast<long long>(config.num_hidden_layers),
      static_cast<long long>(config.vocab_size),
      std::string(kernels::DTypeName(server_options.weight_type)).c_str(),
      (*server)->address().c_str(), (*server)->startup_seconds());
  const server::SchedulerOptions& scheduler = server_options.scheduler;
  std::printf(
      "  scheduler: max batch %d, step budget %lld tokens, prefill chunk %lld "
      "tokens per job and step\n",
      scheduler.max_batch, static_cast<long long>(scheduler.step_token_budget),
      static_cast<long long>(scheduler.prefill_chunk));
  std::printf(
      "  %u hardware threads, %d OpenMP threads, load average %.2f at the "
      "start\n",
      std::thread::hardware_concurrency(), omp_get_max_threads(), load_before);

  const StreamResult stream = BenchStream(flags, **client, **model);
  MetricsCostResult metrics_cost;
  {
    server::ServerOptions off_options = server_options;
    off_options.metrics_enabled = false;
    absl::StatusOr<std::unique_ptr<server::Server>> off_server =
        server::Server::Start(off_options);
    Check(off_server.status(), "Server::Start (metrics off)");
    absl::StatusOr<std::unique_ptr<client::Client>> off_client =
        client::Client::Connect((*off_server)->address(), {});
    Check(off_client.status(), "Client::Connect (metrics off)");
    metrics_cost =
        BenchMetricsCost(flags, **client, **off_client, (*model)->vocab_size());
  }
  const ChatsResult chats = BenchChats(flags, **client, **model);
  const LatencyResult latency = BenchLatency(flags, **client, **model);
  const UnaryResult unary = BenchUnary(flags, server_options, **client);

  const double stream_ratio =
      stream.server_tokens_per_s / stream.engine_tokens_per_s;
  const double chats_ratio = chats.many_tokens_per_s / chats.one_tokens_per_s;
  const double alone_p99 = Percentile(latency.alone.gaps, 0.99);
  const double ingest_p99 = Percentile(latency.with_ingest.gaps, 0.99);
  const double latency_ratio = ingest_p99 / alone_p99;
  const double unary_ratio = unary.get_p50_us / unary.echo_p50_us;
  const double load_after = LoadAverage();
  std::printf("\n== Summary against issue 4 §8 (load average %.2f -> %.2f)\n",
              load_before, load_after);
  std::printf("  %-52s %10s %10s  %s\n", "", "measured", "goal", "");
  std::printf("  %-52s %10.3f %10s  %s\n",
              "one streamed Generate / engine in-process, tokens/s",
              stream_ratio, ">= 0.9", Verdict(stream_ratio >= 0.9).c_str());
  std::printf(
      "  %-52s %9.1fx %10s  %s\n",
      absl::StrCat(flags.streams, " chat streams / 1, aggregate tokens/s")
          .c_str(),
      chats_ratio, ">= 8x", Verdict(chats_ratio >= 8).c_str());
  std::printf("  %-52s %9.2fx %10s  %s\n",
              absl::StrCat("p99 inter-token, ", flags.latency_streams,
                           " chats beside / without ingest")
                  .c_str(),
              latency_ratio, "<= 3x", Verdict(latency_ratio <= 3).c_str());
  std::printf("  %-52s %9.2fx %10s  (%.0f us over the echo)\n",
              "GetSession / bare echo, median round trip", unary_ratio,
              "report", unary.get_p50_us - unary.echo_p50_us);
  const double metrics_ratio =
      metrics_cost.on_tokens_per_s / metrics_cost.off_tokens_per_s;
  std::printf("  %-52s %10.3f %10s  (issue 5 §1)\n",
              "streamed Generate, metrics on / off, tokens/s", metrics_ratio,
              "~1");
  std::printf("  total %.1f s\n", SecondsBetween(bench_start, Clock::now()));

  if (!flags.json_path.empty()) {
    auto window = [](const WindowStats& s) {
      return nlohmann::json{{"p50_ms", 1e3 * Percentile(s.gaps, 0.5)},
                            {"p90_ms", 1e3 * Percentile(s.gaps, 0.9)},
                            {"p99_ms", 1e3 * Percentile(s.gaps, 0.99)},
                            {"max_ms", 1e3 * Percentile(s.gaps, 1.0)},
                            {"gaps", s.gaps.size()},
                            {"tokens_per_s", s.tokens_per_s()},
                            {"tokens_per_chunk", s.tokens_per_chunk()}};
    };
    nlohmann::json report = {
        {"model", flags.model_dir},
        {"threads", omp_get_max_threads()},
        {"prefill_chunk", server_options.scheduler.prefill_chunk},
        {"load_average", {load_before, load_after}},
        {"stream",
         {{"tokens", flags.generate_tokens},
          {"engine_tokens_per_s", stream.engine_tokens_per_s},
          {"server_tokens_per_s", stream.server_tokens_per_s},
          {"ratio", stream_ratio},
          {"same_tokens", stream.same_tokens},
          {"goal_met", stream_ratio >= 0.9}}},
        {"metrics_cost",
         {{"on_tokens_per_s", metrics_cost.on_tokens_per_s},
          {"off_tokens_per_s", metrics_cost.off_tokens_per_s},
          {"ratio", metrics_ratio}}},
        {"chats",
         {{"streams", flags.streams},
          {"one_tokens_per_s", chats.one_tokens_per_s},
          {"many_tokens_per_s", chats.many_tokens_per_s},
          {"engine_decode_one_tokens_per_s", chats.engine_one_tokens_per_s},
          {"engine_decode_many_tokens_per_s", chats.engine_many_tokens_per_s},
          {"ratio", chats_ratio},
          {"goal_met", chats_ratio >= 8}}},
        {"latency",
         {{"streams", flags.latency_streams},
          {"alone", window(latency.alone)},
          {"with_ingest", window(latency.with_ingest)},
          {"p99_ratio", latency_ratio},
          {"goal_met", latency_ratio <= 3},
          {"ingest_tokens", flags.ingest_tokens},
          {"ingest_seconds", latency.ingest_seconds},
          {"ingest_tokens_per_s", latency.ingest_tokens_per_s},
          {"ingest_alone_tokens_per_s", latency.ingest_alone_tokens_per_s},
          {"engine_prefill_tokens_per_s",
           latency.engine_prefill_tokens_per_s}}},
        {"unary",
         {{"calls", flags.unary_calls},
          {"echo_p50_us", unary.echo_p50_us},
          {"echo_p99_us", unary.echo_p99_us},
          {"get_session_p50_us", unary.get_p50_us},
          {"get_session_p99_us", unary.get_p99_us},
          {"p50_ratio", unary_ratio}}}};
    std::ofstream out(flags.json_path);
    out << report.dump(2) << "\n";
    if (!out) {
      std::fprintf(stderr, "serving_bench: cannot write %s\n",
                   flags.json_path.c_str());
      return 1;
    }
  }
  (*server)->Shutdown();
  return 0;
}

}  // namespace
}  // namespace linserve::bench

int main(int argc, char** argv) { return linserve::bench::Main(argc, argv); }
