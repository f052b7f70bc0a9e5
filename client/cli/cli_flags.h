// The flags of linserve-cli (Abseil flags). Each subcommand accepts the
// subset listed in its Command entry (command_line.cc); "--help" after a
// subcommand lists them with these descriptions.
#ifndef LINSERVE_CLIENT_CLI_CLI_FLAGS_H_
#define LINSERVE_CLIENT_CLI_CLI_FLAGS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "client/cli/command_line.h"
#include "linserve/v1/types.pb.h"

// Common.
ABSL_DECLARE_FLAG(std::string, address);
ABSL_DECLARE_FLAG(double, timeout);

// Output.
ABSL_DECLARE_FLAG(bool, json);
ABSL_DECLARE_FLAG(bool, quiet);

// Sessions and input.
ABSL_DECLARE_FLAG(std::string, session);
ABSL_DECLARE_FLAG(bool, tokens);
ABSL_DECLARE_FLAG(bool, add_bos);
ABSL_DECLARE_FLAG(std::string, system_prompt);

// Sampling.
ABSL_DECLARE_FLAG(double, temperature);
ABSL_DECLARE_FLAG(int32_t, top_k);
ABSL_DECLARE_FLAG(double, top_p);
ABSL_DECLARE_FLAG(double, min_p);
ABSL_DECLARE_FLAG(double, repetition_penalty);
ABSL_DECLARE_FLAG(double, presence_penalty);
ABSL_DECLARE_FLAG(double, frequency_penalty);
ABSL_DECLARE_FLAG(uint64_t, seed);
ABSL_DECLARE_FLAG(int32_t, max_tokens);
ABSL_DECLARE_FLAG(std::vector<std::string>, stop);
ABSL_DECLARE_FLAG(std::vector<std::string>, stop_token_ids);
ABSL_DECLARE_FLAG(int32_t, top_logprobs);
ABSL_DECLARE_FLAG(bool, logprobs);
ABSL_DECLARE_FLAG(bool, ignore_eos);

// Ingest and score.
ABSL_DECLARE_FLAG(int64_t, chunk_bytes);
ABSL_DECLARE_FLAG(int64_t, chunk_tokens);
ABSL_DECLARE_FLAG(double, progress_interval);
ABSL_DECLARE_FLAG(bool, per_token);
ABSL_DECLARE_FLAG(bool, append);

// Health.
ABSL_DECLARE_FLAG(std::string, service);

// Bench.
ABSL_DECLARE_FLAG(int32_t, concurrency);
ABSL_DECLARE_FLAG(double, duration);
ABSL_DECLARE_FLAG(int64_t, requests);
ABSL_DECLARE_FLAG(std::string, mix);
ABSL_DECLARE_FLAG(int32_t, prompt_tokens);
ABSL_DECLARE_FLAG(int64_t, ingest_tokens);
ABSL_DECLARE_FLAG(int32_t, chat_turns);

namespace linserve::cli {

// The names of the sampling flags (for the subcommands that take them).
const std::vector<std::string>& SamplingFlagNames();

// SamplingParams from the sampling flags; fields whose flag was not given
// stay unset (the server's or the chat's defaults apply).
absl::StatusOr<v1::SamplingParams> SamplingFromFlags(
    const Invocation& invocation);

}  // namespace linserve::cli

#endif  // LINSERVE_CLIENT_CLI_CLI_FLAGS_H_
