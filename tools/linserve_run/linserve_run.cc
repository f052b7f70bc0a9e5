// linserve-run: the engine's local command, with no server in between. It
// generates from a prompt, scores a text (perplexity, per-token logprobs as
// JSON to compare any checkpoint with another implementation token by token)
// and prefills a long file to show prefill speed and constant memory. It
// links linserve_engine only; flags are parsed by hand.
//
//   linserve-run generate --model DIR --prompt "Once upon" --max-tokens 32
//   linserve-run score --model DIR --tokens ids.txt --json
//   linserve-run prefill --model DIR --file book.txt --piece 512
//
// Exit status: 0 on success, 1 for an error (its status message is printed),
// 2 for bad flags (usage is printed).
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "nlohmann/json.hpp"

namespace linserve::engine {
namespace {

constexpr char kUsage[] = R"(usage:
  linserve-run generate --model DIR (--prompt TEXT | --tokens FILE)
      [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--min-p P]
      [--seed S] [--dtype f32|bf16]
  linserve-run score --model DIR (--text FILE | --tokens FILE) [--json]
      [--dtype f32|bf16]
  linserve-run prefill --model DIR (--file FILE | --tokens FILE) [--piece N]
      [generate's sampling flags] [--dtype f32|bf16]

Token files hold whitespace-separated integer ids. A model directory without
tokenizer.model takes and prints ids only. generate prints the text (or ids)
on stdout and tokens/s on stderr; score prints the perplexity, or with --json
{"tokens": [...], "logprobs": [...], "perplexity": x} where logprobs[i] is
the natural-log probability of tokens[i + 1] (tokens[0] only conditions).
)";

// A parsed command line: the command, flags with values, and switches.
struct Flags {
  std::string command;
  std::map<std::string, std::string> values;
  std::set<std::string> switches;

  bool Has(const std::string& name) const {
    return values.count(name) > 0 || switches.count(name) > 0;
  }
  std::string Get(const std::string& name) const {
    auto it = values.find(name);
    return it == values.end() ? "" : it->second;
  }
};

// The flags each command takes; those in kSwitches take no value.
const std::set<std::string> kSamplingFlags = {
    "--max-tokens", "--temperature", "--top-k", "--top-p", "--min-p", "--seed"};
const std::set<std::string> kSwitches = {"--json"};

std::set<std::string> AllowedFlags(const std::string& command) {
  std::set<std::string> allowed = {"--model", "--dtype"};
  if (command == "generate") {
    allowed.insert({"--prompt", "--tokens"});
    allowed.insert(kSamplingFlags.begin(), kSamplingFlags.end());
  } else if (command == "score") {
    allowed.insert({"--text", "--tokens", "--json"});
  } else if (command == "prefill") {
    allowed.insert({"--file", "--tokens", "--piece"});
    allowed.insert(kSamplingFlags.begin(), kSamplingFlags.end());
  } else {
    return {};
  }
  return allowed;
}

// nullopt (after printing why) for an unknown command or flag, a missing
// value, a repeated flag, or a missing or doubled input.
std::optional<Flags> ParseFlags(int argc, char** argv) {
  if (argc < 2) return std::nullopt;
  Flags flags;
  flags.command = argv[1];
  const std::set<std::string> allowed = AllowedFlags(flags.command);
  if (allowed.empty()) {
    std::cerr << "unknown command: " << flags.command << "\n";
    return std::nullopt;
  }
  for (int i = 2; i < argc; ++i) {
    const std::string name = argv[i];
    if (allowed.count(name) == 0) {
      std::cerr << "unknown flag for " << flags.command << ": " << name << "\n";
      return std::nullopt;
    }
    if (flags.Has(name)) {
      std::cerr << "flag given twice: " << name << "\n";
      return std::nullopt;
    }
    if (kSwitches.count(name) > 0) {
      flags.switches.insert(name);
      continue;
    }
    if (i + 1 >= argc) {
      std::cerr << "flag " << name << " needs a value\n";
      return std::nullopt;
    }
    flags.values[name] = argv[++i];
  }
  if (!flags.Has("--model")) {
    std::cerr << "--model DIR is required\n";
    return std::nullopt;
  }
  const char* text_flag = flags.command == "generate" ? "--prompt"
                          : flags.command == "score"  ? "--text"
                                                      : "--file";
  if (flags.Has(text_flag) == flags.Has("--tokens")) {
    std::cerr << "give exactly one of " << text_flag << " and --tokens\n";
    return std::nullopt;
  }
  return flags;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

absl::StatusOr<std::vector<int32_t>> ReadTokenFile(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string text, ReadFile(path));
  std::istringstream words(text);
  std::vector<int32_t> ids;
  std::string word;
  while (words >> word) {
    int32_t id = 0;
    if (!absl::SimpleAtoi(word, &id)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": \"", word, "\" is not an integer token id (word ",
          ids.size() + 1, ")"));
    }
    ids.push_back(id);
  }
  return ids;
}

// A loaded model with its tokenizer (null: ids only).
struct Loaded {
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::string dir;
};

absl::StatusOr<Loaded> LoadModelDir(const Flags& flags, int64_t piece) {
  ModelOptions options;
  const std::string dtype = flags.Has("--dtype") ? flags.Get("--dtype") : "f32";
  if (dtype == "bf16") {
    options.weight_type = kernels::DType::kBfloat16;
  } else if (dtype != "f32") {
    return absl::InvalidArgumentError(
        absl::StrCat("--dtype must be f32 or bf16, got ", dtype));
  }
  options.prefill_piece_tokens = piece;
  Loaded loaded;
  loaded.dir = flags.Get("--model");
  ASSIGN_OR_RETURN(loaded.model, Model::Load(loaded.dir, options));
  ASSIGN_OR_RETURN(
      loaded.tokenizer,
      LoadTokenizerIfPresent(
          loaded.dir, TokenizerOptionsFromConfig(loaded.model->config())));
  return loaded;
}

// The input ids: the token file, or the text (a flag's value or a file's
// contents) encoded with BOS when the config has one.
absl::StatusOr<std::vector<int32_t>> InputTokens(const Loaded& loaded,
                                                 const Flags& flags,
                                                 const std::string& text_flag,
                                                 bool text_is_file) {
  if (flags.Has("--tokens")) return ReadTokenFile(flags.Get("--tokens"));
  if (loaded.tokenizer == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model directory ", loaded.dir, " has no ", kTokenizerFileName, ", so ",
        text_flag, " cannot be tokenized; pass --tokens FILE with ids"));
  }
  std::string text = flags.Get(text_flag);
  if (text_is_file) {
    ASSIGN_OR_RETURN(text, ReadFile(text));
  }
  const bool add_bos = loaded.tokenizer->options().bos_id.has_value();
  return loaded.tokenizer->Encode(text, add_bos);
}

absl::StatusOr<SamplingParams> ParseSampling(const Flags& flags, int vocab) {
  SamplingParams params;
  params.max_tokens = 64;
  auto bad = [](const std::string& name, const std::string& value) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": cannot parse \"", value, "\""));
  };
  for (const auto& [name, value] : flags.values) {
    bool ok = true;
    if (name == "--max-tokens") {
      ok = absl::SimpleAtoi(value, &params.max_tokens);
    } else if (name == "--temperature") {
      ok = absl::SimpleAtof(value, &params.temperature);
    } else if (name == "--top-k") {
      ok = absl::SimpleAtoi(value, &params.top_k);
    } else if (name == "--top-p") {
      ok = absl::SimpleAtof(value, &params.top_p);
    } else if (name == "--min-p") {
      ok = absl::SimpleAtof(value, &params.min_p);
    } else if (name == "--seed") {
      uint64_t seed = 0;
      ok = absl::SimpleAtoi(value, &seed);
      params.seed = seed;
    }
    if (!ok) return bad(name, value);
  }
  RETURN_IF_ERROR(params.Validate(vocab));
  return params;
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since)
      .count();
}

double PeakRssMiB() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is KiB
}

// Prefills `prompt` into a fresh session and samples until an EOS id of the
// config or params.max_tokens, streaming text (or ids) to stdout and the
// speeds to stderr.
absl::Status PrefillAndGenerate(Loaded& loaded,
                                const std::vector<int32_t>& prompt,
                                const SamplingParams& params,
                                bool report_memory) {
  Model& model = *loaded.model;
  const int vocab = static_cast<int>(model.vocab_size());
  if (prompt.empty()) {
    return absl::InvalidArgumentError("the prompt has no tokens");
  }
  auto session = model.NewSession();
  std::vector<float> logits(vocab);
  const auto prefill_start = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(
      model.Prefill(*session, prompt, LogitsMode::kLast, logits.data()));
  const double prefill_s = Seconds(prefill_start);
  std::fprintf(stderr, "prefill: %zu tokens in %.3f s, %.1f tokens/s\n",
               prompt.size(), prefill_s, prompt.size() / prefill_s);
  if (report_memory) {
    std::fprintf(
        stderr, "peak RSS after prefill: %.1f MiB (session state %lld bytes)\n",
        PeakRssMiB(), static_cast<long long>(model.StateBytes()));
  }

  const TokenizerOptions token_options =
      TokenizerOptionsFromConfig(model.config());
  SamplerState sampler = NewSamplerState(params, prompt);
  std::optional<StreamingDetokenizer> detokenizer;
  if (loaded.tokenizer != nullptr) {
    detokenizer.emplace(*loaded.tokenizer, /*continues_text=*/true);
  }
  SessionState* sessions[] = {session.get()};
  int64_t generated = 0;
  const auto decode_start = std::chrono::steady_clock::now();
  while (generated < params.max_tokens) {
    const SampleResult r = Sample(logits.data(), vocab, params, sampler);
    ++generated;
    bool eos = false;
    for (int32_t id : token_options.eos_ids) eos = eos || id == r.token;
    if (eos) break;
    if (detokenizer.has_value()) {
      ASSIGN_OR_RETURN(const std::string text, detokenizer->Push(r.token));
      std::fputs(text.c_str(), stdout);
    } else {
      std::fprintf(stdout, "%s%d", generated > 1 ? " " : "", r.token);
    }
    std::fflush(stdout);
    if (generated == params.max_tokens) break;
    const int32_t next[] = {r.token};
    RETURN_IF_ERROR(model.DecodeStep(sessions, next, logits.data()));
  }
  if (detokenizer.has_value()) std::fputs(detokenizer->Flush().c_str(), stdout);
  std::fputs("\n", stdout);
  std::fflush(stdout);
  const double decode_s = Seconds(decode_start);
  std::fprintf(stderr, "decode: %lld tokens in %.3f s, %.1f tokens/s\n",
               static_cast<long long>(generated), decode_s,
               generated / decode_s);
  return absl::OkStatus();
}

absl::Status RunGenerate(const Flags& flags) {
  ASSIGN_OR_RETURN(Loaded loaded,
                   LoadModelDir(flags, ModelOptions{}.prefill_piece_tokens));
  ASSIGN_OR_RETURN(const std::vector<int32_t> prompt,
                   InputTokens(loaded, flags, "--prompt", false));
  ASSIGN_OR_RETURN(const SamplingParams params,
                   ParseSampling(flags, loaded.model->vocab_size()));
  return PrefillAndGenerate(loaded, prompt, params, /*report_memory=*/false);
}

absl::Status RunPrefill(const Flags& flags) {
  int64_t piece = ModelOptions{}.prefill_piece_tokens;
  if (flags.Has("--piece") &&
      (!absl::SimpleAtoi(flags.Get("--piece"), &piece) || piece < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--piece must be a positive integer, got \"",
                     flags.Get("--piece"), "\""));
  }
  ASSIGN_OR_RETURN(Loaded loaded, LoadModelDir(flags, piece));
  std::fprintf(stderr, "peak RSS after load: %.1f MiB\n", PeakRssMiB());
  ASSIGN_OR_RETURN(const std::vector<int32_t> prompt,
                   InputTokens(loaded, flags, "--file", true));
  ASSIGN_OR_RETURN(const SamplingParams params,
                   ParseSampling(flags, loaded.model->vocab_size()));
  return PrefillAndGenerate(loaded, prompt, params, /*report_memory=*/true);
}

absl::Status RunScore(const Flags& flags) {
  ASSIGN_OR_RETURN(Loaded loaded,
                   LoadModelDir(flags, ModelOptions{}.prefill_piece_tokens));
  ASSIGN_OR_RETURN(const std::vector<int32_t> tokens,
                   InputTokens(loaded, flags, "--text", true));
  if (tokens.size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "scoring needs at least 2 tokens (the first only conditions), got ",
        tokens.size()));
  }
  auto session = loaded.model->NewSession();
  const auto start = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(const ScoreResult r, loaded.model->Score(*session, tokens));
  const double seconds = Seconds(start);
  if (flags.Has("--json")) {
    nlohmann::json out;
    out["tokens"] = tokens;
    out["logprobs"] = r.logprobs;
    out["total_logprob"] = r.total_logprob;
    out["count"] = r.count;
    out["perplexity"] = r.perplexity;
    std::cout << out.dump() << "\n";
  } else {
    std::printf(
        "perplexity %.6f over %lld scored tokens (total logprob %.6f)\n",
        r.perplexity, static_cast<long long>(r.count), r.total_logprob);
  }
  std::fprintf(stderr, "score: %zu tokens in %.3f s, %.1f tokens/s\n",
               tokens.size(), seconds, tokens.size() / seconds);
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  const std::optional<Flags> flags = ParseFlags(argc, argv);
  if (!flags.has_value()) {
    std::cerr << kUsage;
    return 2;
  }
  absl::Status status;
  if (flags->command == "generate") {
    status = RunGenerate(*flags);
  } else if (flags->command == "score") {
    status = RunScore(*flags);
  } else {
    status = RunPrefill(*flags);
  }
  if (!status.ok()) {
    std::cerr << "linserve-run " << flags->command << ": " << status << "\n";
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace linserve::engine

int main(int argc, char** argv) { return linserve::engine::Main(argc, argv); }
