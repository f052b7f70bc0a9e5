// linserve-cli bench: a load generator. --concurrency workers each run one
// kind of stream over and over (the kinds are shared out among the workers
// in the proportions of --mix, so "chat=16,ingest=1" with --concurrency 17
// is 16 chat streams beside one ingest):
//   generate  a stateless Generate of --prompt_tokens random token ids,
//             --max_tokens tokens with EOS ignored (every request generates
//             exactly that many);
//   chat      turns on a Chat stream (needs a tokenizer), --chat_turns per
//             session, then the session is deleted and a new one started;
//   ingest    --ingest_tokens random token ids into a new session, which is
//             then deleted.
// It measures, per kind and in all: requests/s, generated and ingested
// tokens/s, and the p50/p90/p99 of the time to first token, the
// inter-token latency and the end-to-end latency. Inter-token latency: a
// chunk of k tokens arriving g seconds after the previous chunk counts as k
// gaps of g/k (the tokens beside the first one in the first chunk: gaps of
// 0).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/chat_session.h"
#include "client/cli/cli_flags.h"
#include "client/cli/commands.h"
#include "client/cli/json_output.h"

namespace linserve::cli {
namespace {

using SteadyClock = std::chrono::steady_clock;

double Seconds(SteadyClock::duration d) {
  return std::chrono::duration<double>(d).count();
}

enum class Kind { kGenerate, kChat, kIngest };
constexpr const char* kKindNames[] = {"generate", "chat", "ingest"};

// What one worker measured; merged at the end.
struct Measurements {
  std::vector<double> ttft;
  std::vector<double> inter_token;
  std::vector<double> end_to_end;
  int64_t requests = 0;
  int64_t generated_tokens = 0;
  // Streamed messages that carried tokens: generated_tokens / token_messages
  // is how many tokens the server merged into one message on average.
  int64_t token_messages = 0;
  int64_t ingested_tokens = 0;
  std::map<std::string, int64_t> errors;  // status code name -> count

  void Merge(const Measurements& other) {
    ttft.insert(ttft.end(), other.ttft.begin(), other.ttft.end());
    inter_token.insert(inter_token.end(), other.inter_token.begin(),
                       other.inter_token.end());
    end_to_end.insert(end_to_end.end(), other.end_to_end.begin(),
                      other.end_to_end.end());
    requests += other.requests;
    generated_tokens += other.generated_tokens;
    token_messages += other.token_messages;
    ingested_tokens += other.ingested_tokens;
    for (const auto& [code, count] : other.errors) errors[code] += count;
  }
};

// Times the chunks of one streamed reply.
class StreamTimer {
 public:
  StreamTimer(Measurements& m) : m_(m), start_(SteadyClock::now()) {}

  void OnChunk(const v1::GenerateChunk& chunk) {
    const int k = chunk.token_ids_size();
    if (k == 0) return;
    const auto now = SteadyClock::now();
    if (tokens_ == 0) {
      m_.ttft.push_back(Seconds(now - start_));
      for (int i = 1; i < k; ++i) m_.inter_token.push_back(0);
    } else {
      const double gap = Seconds(now - last_) / k;
      for (int i = 0; i < k; ++i) m_.inter_token.push_back(gap);
    }
    last_ = now;
    tokens_ += k;
    ++messages_;
  }

  void Done() {
    m_.end_to_end.push_back(Seconds(SteadyClock::now() - start_));
    m_.generated_tokens += tokens_;
    m_.token_messages += messages_;
    ++m_.requests;
  }

 private:
  Measurements& m_;
  SteadyClock::time_point start_;
  SteadyClock::time_point last_;
  int64_t tokens_ = 0;
  int64_t messages_ = 0;
};

struct BenchConfig {
  int32_t concurrency;
  double duration;
  int64_t requests;
  int32_t max_tokens;
  int32_t prompt_tokens;
  int64_t ingest_tokens;
  int32_t chat_turns;
  uint64_t seed;
  int64_t vocab_size;
};

// Hands out the right to start one more request.
class RequestBudget {
 public:
  RequestBudget(const BenchConfig& config)
      : remaining_(config.requests),
        limit_by_count_(config.requests > 0),
        end_(SteadyClock::now() +
             std::chrono::duration_cast<SteadyClock::duration>(
                 std::chrono::duration<double>(config.duration))) {}

  bool Take() {
    if (limit_by_count_) return remaining_.fetch_sub(1) > 0;
    return SteadyClock::now() < end_;
  }

 private:
  std::atomic<int64_t> remaining_;
  bool limit_by_count_;
  SteadyClock::time_point end_;
};

// Counts a failed request and backs off a little, so that a server that
// refuses everything is not hammered in a tight loop.
void RecordError(Measurements& m, const absl::Status& status) {
  ++m.errors[absl::StatusCodeToString(status.code())];
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

std::vector<int32_t> RandomTokens(std::mt19937_64& rng, int64_t count,
                                  int64_t vocab_size) {
  std::uniform_int_distribution<int32_t> dist(
      0, static_cast<int32_t>(vocab_size - 1));
  std::vector<int32_t> tokens(count);
  for (int32_t& t : tokens) t = dist(rng);
  return tokens;
}

void RunGenerateWorker(client::Client& client, const BenchConfig& config,
                       RequestBudget& budget, std::mt19937_64& rng,
                       Measurements& m) {
  while (budget.Take()) {
    v1::GenerateRequest request;
    const std::vector<int32_t> prompt =
        RandomTokens(rng, config.prompt_tokens, config.vocab_size);
    request.mutable_prompt()->mutable_tokens()->mutable_ids()->Add(
        prompt.begin(), prompt.end());
    request.mutable_sampling()->set_max_tokens(config.max_tokens);
    request.mutable_sampling()->set_ignore_eos(true);
    request.mutable_sampling()->set_seed(rng());
    StreamTimer timer(m);
    auto result = client.Generate(
        request, [&](const v1::GenerateChunk& c) { timer.OnChunk(c); });
    if (result.ok()) {
      timer.Done();
    } else {
      RecordError(m, result.status());
    }
  }
}

constexpr const char* kChatLines[] = {
    "Tell me about the flood.",
    "Who were the sons of Noah?",
    "What did the king command?",
    "Say something about the river and the land beyond it.",
    "And what happened after that?",
};

void RunChatWorker(client::Client& client, const BenchConfig& config,
                   RequestBudget& budget, std::mt19937_64& rng,
                   Measurements& m) {
  std::unique_ptr<client::ChatSession> chat;
  int turns = 0;
  const auto end_session = [&] {
    if (chat == nullptr) return;
    const std::string id = chat->session_id();
    chat->Close().IgnoreError();
    chat.reset();
    client.DeleteSession(id).IgnoreError();
  };
  while (budget.Take()) {
    if (chat == nullptr || turns >= config.chat_turns) {
      end_session();
      v1::ChatStart start;
      start.mutable_sampling()->set_max_tokens(config.max_tokens);
      start.mutable_sampling()->set_ignore_eos(true);
      start.mutable_sampling()->set_seed(rng());
      auto started = client::ChatSession::Start(client, start);
      if (!started.ok()) {
        RecordError(m, started.status());
        continue;
      }
      chat = *std::move(started);
      turns = 0;
    }
    StreamTimer timer(m);
    auto end =
        chat->SendTurn(kChatLines[rng() % std::size(kChatLines)],
                       [&](const v1::GenerateChunk& c) { timer.OnChunk(c); });
    ++turns;
    if (end.ok()) {
      timer.Done();
    } else {
      RecordError(m, end.status());
      chat.reset();  // the stream is over
    }
  }
  end_session();
}

void RunIngestWorker(client::Client& client, const BenchConfig& config,
                     RequestBudget& budget, std::mt19937_64& rng,
                     Measurements& m) {
  while (budget.Take()) {
    const std::vector<int32_t> tokens =
        RandomTokens(rng, config.ingest_tokens, config.vocab_size);
    const auto start = SteadyClock::now();
    auto response = client.IngestTokens(tokens, client::IngestOptions());
    if (!response.ok()) {
      RecordError(m, response.status());
      continue;
    }
    m.end_to_end.push_back(Seconds(SteadyClock::now() - start));
    m.ingested_tokens += response->tokens_ingested();
    ++m.requests;
    client.DeleteSession(response->session_id()).IgnoreError();
  }
}

// Shares `concurrency` workers out among the kinds in proportion to their
// weights (largest remainder).
absl::StatusOr<std::vector<Kind>> AssignKinds(const std::string& mix,
                                              int32_t concurrency) {
  std::vector<double> weights(3, 0);
  for (absl::string_view part :
       absl::StrSplit(mix, ',', absl::SkipWhitespace())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(part, '=');
    double weight;
    if (!absl::SimpleAtod(kv.second, &weight) || weight < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--mix: \"", part, "\" is not kind=weight with weight >= 0"));
    }
    const auto* found =
        std::find(std::begin(kKindNames), std::end(kKindNames), kv.first);
    if (found == std::end(kKindNames)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--mix: unknown kind \"", kv.first,
                       "\" (kinds: generate, chat, ingest)"));
    }
    weights[found - std::begin(kKindNames)] = weight;
  }
  double total = 0;
  for (double w : weights) total += w;
  if (total <= 0) {
    return absl::InvalidArgumentError("--mix gives no kind a positive weight");
  }
  std::vector<int> counts(3);
  std::vector<std::pair<double, int>> remainders;
  int assigned = 0;
  for (int k = 0; k < 3; ++k) {
    const double exact = concurrency * weights[k] / total;
    counts[k] = static_cast<int>(exact);
    assigned += counts[k];
    remainders.push_back({exact - counts[k], k});
  }
  std::sort(remainders.rbegin(), remainders.rend());
  for (int i = 0; assigned < concurrency; ++i, ++assigned) {
    ++counts[remainders[i % 3].second];
  }
  std::vector<Kind> kinds;
  for (int k = 0; k < 3; ++k) {
    kinds.insert(kinds.end(), counts[k], static_cast<Kind>(k));
  }
  return kinds;
}

struct Percentiles {
  double p50 = 0, p90 = 0, p99 = 0, mean = 0;
  size_t count = 0;
};

Percentiles Summarize(std::vector<double> values) {
  Percentiles p;
  p.count = values.size();
  if (values.empty()) return p;
  std::sort(values.begin(), values.end());
  const auto at = [&](double q) {
    const size_t rank = static_cast<size_t>(std::ceil(q * values.size()));
    return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
  };
  p.p50 = at(0.50);
  p.p90 = at(0.90);
  p.p99 = at(0.99);
  double sum = 0;
  for (double v : values) sum += v;
  p.mean = sum / values.size();
  return p;
}

std::string PercentilesJson(const Percentiles& p) {
  char buffer[200];
  std::snprintf(buffer, sizeof(buffer),
                "{\"p50\":%.4f,\"p90\":%.4f,\"p99\":%.4f,\"mean\":%.4f,"
                "\"count\":%zu}",
                p.p50 * 1e3, p.p90 * 1e3, p.p99 * 1e3, p.mean * 1e3, p.count);
  return buffer;
}

std::string MeasurementsJson(const Measurements& m, double seconds) {
  std::string errors = "{";
  int64_t error_count = 0;
  for (const auto& [code, count] : m.errors) {
    absl::StrAppend(&errors, errors.size() > 1 ? "," : "", JsonString(code),
                    ":", count);
    error_count += count;
  }
  errors += "}";
  char rates[200];
  std::snprintf(rates, sizeof(rates),
                "\"requests_per_s\":%.3f,\"generated_tokens_per_s\":%.2f,"
                "\"ingested_tokens_per_s\":%.2f",
                m.requests / seconds, m.generated_tokens / seconds,
                m.ingested_tokens / seconds);
  return absl::StrCat(
      "{\"requests\":", m.requests, ",\"errors\":", error_count,
      ",\"error_codes\":", errors, ",\"generated_tokens\":", m.generated_tokens,
      ",\"token_messages\":", m.token_messages,
      ",\"ingested_tokens\":", m.ingested_tokens, ",", rates,
      ",\"ttft_ms\":", PercentilesJson(Summarize(m.ttft)),
      ",\"inter_token_ms\":", PercentilesJson(Summarize(m.inter_token)),
      ",\"e2e_ms\":", PercentilesJson(Summarize(m.end_to_end)), "}");
}

void PrintTable(const std::string& name, const Measurements& m,
                double seconds) {
  int64_t errors = 0;
  for (const auto& [code, count] : m.errors) errors += count;
  std::printf(
      "%-9s %8lld req %7lld err %9.2f req/s %10.1f gen tok/s %10.1f "
      "ingest tok/s\n",
      name.c_str(), static_cast<long long>(m.requests),
      static_cast<long long>(errors), m.requests / seconds,
      m.generated_tokens / seconds, m.ingested_tokens / seconds);
  const auto line = [](const char* what, const std::vector<double>& v) {
    if (v.empty()) return;
    const Percentiles p = Summarize(v);
    std::printf("  %-12s p50 %9.2f ms  p90 %9.2f ms  p99 %9.2f ms  (n=%zu)\n",
                what, p.p50 * 1e3, p.p90 * 1e3, p.p99 * 1e3, p.count);
  };
  line("ttft", m.ttft);
  line("inter-token", m.inter_token);
  line("end-to-end", m.end_to_end);
  for (const auto& [code, count] : m.errors) {
    std::printf("  error %s: %lld\n", code.c_str(),
                static_cast<long long>(count));
  }
}

}  // namespace

int RunBench(const Invocation& invocation) {
  if (!invocation.args.empty()) {
    return UsageError(invocation, "bench takes no arguments");
  }
  BenchConfig config;
  config.concurrency = absl::GetFlag(FLAGS_concurrency);
  config.duration = absl::GetFlag(FLAGS_duration);
  config.requests = absl::GetFlag(FLAGS_requests);
  config.max_tokens = absl::GetFlag(FLAGS_max_tokens);
  config.prompt_tokens = absl::GetFlag(FLAGS_prompt_tokens);
  config.ingest_tokens = absl::GetFlag(FLAGS_ingest_tokens);
  config.chat_turns = absl::GetFlag(FLAGS_chat_turns);
  config.seed = absl::GetFlag(FLAGS_seed);
  if (config.concurrency < 1 || config.max_tokens < 1 ||
      config.prompt_tokens < 1 || config.ingest_tokens < 1 ||
      config.chat_turns < 1 || config.requests < 0 ||
      (config.requests == 0 && config.duration <= 0)) {
    return UsageError(invocation,
                      "--concurrency, --max_tokens, --prompt_tokens, "
                      "--ingest_tokens and --chat_turns must be >= 1, and "
                      "--duration > 0 or --requests >= 1");
  }
  auto kinds = AssignKinds(absl::GetFlag(FLAGS_mix), config.concurrency);
  if (!kinds.ok()) {
    return UsageError(invocation, std::string(kinds.status().message()));
  }
  auto made = MakeClient(invocation);
  if (!made.ok()) return ReportFailure(invocation, "client", made.status());
  client::Client& client = **made;
  auto models = client.ListModels();
  if (!models.ok())
    return ReportFailure(invocation, "ListModels", models.status());
  if (models->empty()) {
    return ReportFailure(invocation, "ListModels",
                         absl::FailedPreconditionError("no model served"));
  }
  config.vocab_size = (*models)[0].vocab_size();

  RequestBudget budget(config);
  std::vector<Measurements> measured(kinds->size());
  std::vector<std::thread> workers;
  const auto start = SteadyClock::now();
  for (size_t i = 0; i < kinds->size(); ++i) {
    workers.emplace_back([&, i] {
      std::mt19937_64 rng(config.seed * 1000003 + i);
      switch ((*kinds)[i]) {
        case Kind::kGenerate:
          RunGenerateWorker(client, config, budget, rng, measured[i]);
          break;
        case Kind::kChat:
          RunChatWorker(client, config, budget, rng, measured[i]);
          break;
        case Kind::kIngest:
          RunIngestWorker(client, config, budget, rng, measured[i]);
          break;
      }
    });
  }
  for (std::thread& worker : workers) worker.join();
  const double seconds = Seconds(SteadyClock::now() - start);

  Measurements all;
  std::map<int, Measurements> by_kind;
  for (size_t i = 0; i < kinds->size(); ++i) {
    all.Merge(measured[i]);
    by_kind[static_cast<int>((*kinds)[i])].Merge(measured[i]);
  }
  std::map<int, int> workers_per_kind;
  for (Kind kind : *kinds) ++workers_per_kind[static_cast<int>(kind)];

  if (absl::GetFlag(FLAGS_json)) {
    std::string per_kind = "{";
    for (const auto& [kind, m] : by_kind) {
      absl::StrAppend(&per_kind, per_kind.size() > 1 ? "," : "",
                      JsonString(kKindNames[kind]), ":",
                      MeasurementsJson(m, seconds));
    }
    per_kind += "}";
    std::string streams = "{";
    for (const auto& [kind, count] : workers_per_kind) {
      absl::StrAppend(&streams, streams.size() > 1 ? "," : "",
                      JsonString(kKindNames[kind]), ":", count);
    }
    streams += "}";
    char duration[64];
    std::snprintf(duration, sizeof(duration), "%.3f", seconds);
    std::cout << "{\"address\":" << JsonString(ServerAddress(invocation))
              << ",\"model\":" << JsonString((*models)[0].name())
              << ",\"concurrency\":" << config.concurrency
              << ",\"streams\":" << streams
              << ",\"max_tokens\":" << config.max_tokens
              << ",\"prompt_tokens\":" << config.prompt_tokens
              << ",\"ingest_tokens\":" << config.ingest_tokens
              << ",\"duration_s\":" << duration
              << ",\"total\":" << MeasurementsJson(all, seconds)
              << ",\"kinds\":" << per_kind << "}\n";
  } else {
    std::printf("%d streams for %.2f s against %s (model %s)\n",
                config.concurrency, seconds, ServerAddress(invocation).c_str(),
                (*models)[0].name().c_str());
    for (const auto& [kind, m] : by_kind) {
      PrintTable(absl::StrCat(kKindNames[kind], " x", workers_per_kind[kind]),
                 m, seconds);
    }
    if (by_kind.size() > 1) PrintTable("total", all, seconds);
  }
  int64_t errors = 0;
  for (const auto& [code, count] : all.errors) errors += count;
  return errors == 0 ? kExitOk : kExitFailure;
}

}  // namespace linserve::cli
