#include "client/cli/cli_flags.h"

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

ABSL_FLAG(std::string, address, "",
          "Server host:port. Default: $LINSERVE_ADDRESS, else "
          "127.0.0.1:50051.");
ABSL_FLAG(double, timeout, 60,
          "Deadline of each call in seconds; 0: none. Chat and ingest have "
          "none unless this flag is given.");

ABSL_FLAG(bool, json, false, "Print machine-readable JSON on stdout.");
ABSL_FLAG(bool, quiet, false,
          "Print nothing but errors (health: print nothing at all).");

ABSL_FLAG(std::string, session, "",
          "Session id to continue (chat: created with this id if the server "
          "has none).");
ABSL_FLAG(bool, tokens, false,
          "Input (and generate's output) is token ids, separated by spaces "
          "or commas, instead of text.");
ABSL_FLAG(bool, add_bos, false,
          "Prepend the model's BOS token (at session position 0 only).");
ABSL_FLAG(std::string, system_prompt, "",
          "Chat: system text placed before the first turn of a new session.");

ABSL_FLAG(double, temperature, 1.0,
          "Sampling temperature in [0, 100]; 0 is "
          "greedy.");
ABSL_FLAG(int32_t, top_k, 0, "Keep the k most likely tokens; 0: off.");
ABSL_FLAG(double, top_p, 1.0, "Nucleus sampling mass in (0, 1]; 1: off.");
ABSL_FLAG(double, min_p, 0.0,
          "Keep tokens with p >= min_p * p(most likely), in [0, 1]; 0: off.");
ABSL_FLAG(double, repetition_penalty, 1.0,
          "Repetition penalty over the context, in (0, 10]; 1: off.");
ABSL_FLAG(double, presence_penalty, 0.0, "Presence penalty in [-2, 2].");
ABSL_FLAG(double, frequency_penalty, 0.0, "Frequency penalty in [-2, 2].");
ABSL_FLAG(uint64_t, seed, 0,
          "Random seed (given: reproducible; else the session's stream).");
ABSL_FLAG(int32_t, max_tokens, 16, "Most tokens to generate per reply.");
ABSL_FLAG(std::vector<std::string>, stop, {},
          "Stop strings, comma-separated (the text is cut before them).");
ABSL_FLAG(std::vector<std::string>, stop_token_ids, {},
          "Stop token ids, comma-separated (besides the model's EOS).");
ABSL_FLAG(int32_t, top_logprobs, 0,
          "Report this many most likely alternatives per token, in [0, 20].");
ABSL_FLAG(bool, logprobs, false,
          "Report the log-probability of every generated token.");
ABSL_FLAG(bool, ignore_eos, false, "Do not stop at the model's EOS tokens.");

ABSL_FLAG(int64_t, chunk_bytes, 64 << 10, "Ingest: bytes of text per chunk.");
ABSL_FLAG(int64_t, chunk_tokens, 8192, "Ingest: token ids per chunk.");
ABSL_FLAG(double, progress_interval, 0.25,
          "Ingest: seconds between polls of the server's progress "
          "(GetSession), which the progress bar shows as tokens fed, "
          "tokens/s and ETA; 0: no polling (the bar then shows what was "
          "sent).");
ABSL_FLAG(bool, per_token, false,
          "Score: print every token's log-probability (JSON).");
ABSL_FLAG(bool, append, false,
          "Score with --session: also append the text to the session.");

ABSL_FLAG(std::string, service, "",
          "Health: the service to check (e.g. linserve.v1.Inference); empty: "
          "the whole server.");

ABSL_FLAG(int32_t, concurrency, 8, "Bench: streams running at once.");
ABSL_FLAG(double, duration, 10,
          "Bench: seconds to run (ignored when --requests is given).");
ABSL_FLAG(int64_t, requests, 0,
          "Bench: stop after this many requests in all (0: use --duration).");
ABSL_FLAG(std::string, mix, "generate=1",
          "Bench: share of the streams per kind, e.g. "
          "generate=3,chat=1,ingest=1 (kinds: generate, chat, ingest).");
ABSL_FLAG(int32_t, prompt_tokens, 32,
          "Bench: prompt length of generate requests (random token ids).");
ABSL_FLAG(int64_t, ingest_tokens, 4096,
          "Bench: tokens of each ingest request (random token ids).");
ABSL_FLAG(int32_t, chat_turns, 8,
          "Bench: turns per chat session before a new one is started.");

namespace linserve::cli {

const std::vector<std::string>& SamplingFlagNames() {
  static const auto* names = new std::vector<std::string>{"temperature",
                                                          "top_k",
                                                          "top_p",
                                                          "min_p",
                                                          "repetition_penalty",
                                                          "presence_penalty",
                                                          "frequency_penalty",
                                                          "seed",
                                                          "max_tokens",
                                                          "stop",
                                                          "stop_token_ids",
                                                          "top_logprobs",
                                                          "logprobs",
                                                          "ignore_eos"};
  return *names;
}

absl::StatusOr<v1::SamplingParams> SamplingFromFlags(
    const Invocation& invocation) {
  v1::SamplingParams params;
  if (invocation.IsSet("temperature")) {
    params.set_temperature(absl::GetFlag(FLAGS_temperature));
  }
  params.set_top_k(absl::GetFlag(FLAGS_top_k));
  if (invocation.IsSet("top_p")) params.set_top_p(absl::GetFlag(FLAGS_top_p));
  params.set_min_p(absl::GetFlag(FLAGS_min_p));
  if (invocation.IsSet("repetition_penalty")) {
    params.set_repetition_penalty(absl::GetFlag(FLAGS_repetition_penalty));
  }
  params.set_presence_penalty(absl::GetFlag(FLAGS_presence_penalty));
  params.set_frequency_penalty(absl::GetFlag(FLAGS_frequency_penalty));
  if (invocation.IsSet("seed")) params.set_seed(absl::GetFlag(FLAGS_seed));
  if (invocation.IsSet("max_tokens")) {
    params.set_max_tokens(absl::GetFlag(FLAGS_max_tokens));
  }
  for (const std::string& stop : absl::GetFlag(FLAGS_stop)) {
    params.add_stop_strings(stop);
  }
  for (const std::string& id : absl::GetFlag(FLAGS_stop_token_ids)) {
    int32_t value;
    if (!absl::SimpleAtoi(id, &value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--stop_token_ids: \"", id, "\" is not a token id"));
    }
    params.add_stop_token_ids(value);
  }
  params.set_top_logprobs(absl::GetFlag(FLAGS_top_logprobs));
  params.set_logprobs(absl::GetFlag(FLAGS_logprobs));
  params.set_ignore_eos(absl::GetFlag(FLAGS_ignore_eos));
  return params;
}

}  // namespace linserve::cli
