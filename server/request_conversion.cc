// Request validation and message conversion (see request_conversion.h).
#include "server/request_conversion.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/status_macros.h"
#include "engine/session_extras.h"

namespace linserve::server {

absl::Status CheckTokenIds(const ServiceContext& context,
                           absl::Span<const int32_t> ids,
                           absl::string_view field) {
  const int64_t vocab = context.model->vocab_size();
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " token id ", ids[i], " (at index ", i,
                       ") is outside the model's vocabulary [0, ", vocab, ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> EncodeText(const ServiceContext& context,
                                                absl::string_view text,
                                                bool add_bos) {
  if (context.tokenizer == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model '", context.model_name,
        "' has no tokenizer.model, so text input is not possible; send token "
        "ids instead"));
  }
  return context.tokenizer->Encode(std::string_view(text.data(), text.size()),
                                   add_bos);
}

absl::StatusOr<std::vector<int32_t>> InputTokens(const ServiceContext& context,
                                                 const v1::Input& input,
                                                 bool at_session_start,
                                                 absl::string_view field) {
  std::vector<int32_t> tokens;
  const bool add_bos = input.add_bos() && at_session_start;
  if (add_bos) {
    const auto& bos = context.model->config().bos_token_id;
    if (!bos.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".add_bos is set but model '", context.model_name,
                       "' has no BOS token"));
    }
    tokens.push_back(static_cast<int32_t>(*bos));
  }
  switch (input.kind_case()) {
    case v1::Input::kText: {
      ASSIGN_OR_RETURN(std::vector<int32_t> encoded,
                       EncodeText(context, input.text(), /*add_bos=*/false));
      tokens.insert(tokens.end(), encoded.begin(), encoded.end());
      break;
    }
    case v1::Input::kTokens: {
      const auto& ids = input.tokens().ids();
      RETURN_IF_ERROR(CheckTokenIds(
          context, absl::MakeConstSpan(ids.data(), ids.size()), field));
      tokens.insert(tokens.end(), ids.begin(), ids.end());
      break;
    }
    case v1::Input::KIND_NOT_SET:
      break;
  }
  const int64_t limit = context.limits.max_input_tokens;
  if (static_cast<int64_t>(tokens.size()) > limit) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " has ", tokens.size(), " tokens, more than the server's limit ",
        limit,
        " (--max_input_tokens); stream long inputs into a session with Ingest "
        "instead"));
  }
  return tokens;
}

absl::StatusOr<engine::SamplingParams> ToSamplingParams(
    const ServiceContext& context, const v1::SamplingParams& sampling,
    absl::Span<const std::string> extra_stop_strings) {
  engine::SamplingParams params;
  if (sampling.has_temperature()) params.temperature = sampling.temperature();
  params.top_k = sampling.top_k();
  if (sampling.has_top_p()) params.top_p = sampling.top_p();
  params.min_p = sampling.min_p();
  if (sampling.has_repetition_penalty()) {
    params.repetition_penalty = sampling.repetition_penalty();
  }
  params.presence_penalty = sampling.presence_penalty();
  params.frequency_penalty = sampling.frequency_penalty();
  if (sampling.has_seed()) params.seed = sampling.seed();
  if (sampling.has_max_tokens()) {
    const int32_t limit = context.limits.max_tokens;
    if (sampling.max_tokens() < 1 || sampling.max_tokens() > limit) {
      return absl::InvalidArgumentError(absl::StrCat(
          "max_tokens must be in [1, ", limit,
          "] (the server's --max_tokens), got ", sampling.max_tokens()));
    }
    params.max_tokens = sampling.max_tokens();
  } else {
    params.max_tokens = std::min(params.max_tokens, context.limits.max_tokens);
  }
  params.stop_token_ids.assign(sampling.stop_token_ids().begin(),
                               sampling.stop_token_ids().end());
  params.stop_strings.assign(sampling.stop_strings().begin(),
                             sampling.stop_strings().end());
  params.top_logprobs = sampling.top_logprobs();
  RETURN_IF_ERROR(
      params.Validate(static_cast<int>(context.model->vocab_size())));

  // After validation, so that the caller's own lists are checked against
  // the documented limits, and the server's additions never make a valid
  // request invalid.
  if (!sampling.ignore_eos()) {
    for (int64_t eos : context.model->config().eos_token_ids) {
      if (eos < 0 || eos >= context.model->vocab_size()) continue;
      if (std::find(params.stop_token_ids.begin(), params.stop_token_ids.end(),
                    eos) == params.stop_token_ids.end()) {
        params.stop_token_ids.push_back(static_cast<int32_t>(eos));
      }
    }
  }
  for (const std::string& stop : extra_stop_strings) {
    params.stop_strings.push_back(stop);
  }
  return params;
}

bool WantsLogprobs(const v1::SamplingParams& sampling) {
  return sampling.logprobs() || sampling.top_logprobs() > 0;
}

v1::SamplingParams MergeSampling(const v1::SamplingParams& defaults,
                                 const v1::SamplingParams& overrides) {
  v1::SamplingParams merged = defaults;
  // Proto3 MergeFrom already does "set optional fields and non-zero
  // scalars win"; repeated fields it would append, so they are replaced.
  v1::SamplingParams scalars = overrides;
  scalars.clear_stop_token_ids();
  scalars.clear_stop_strings();
  merged.MergeFrom(scalars);
  if (overrides.stop_token_ids_size() > 0) {
    *merged.mutable_stop_token_ids() = overrides.stop_token_ids();
  }
  if (overrides.stop_strings_size() > 0) {
    *merged.mutable_stop_strings() = overrides.stop_strings();
  }
  return merged;
}

std::optional<SteadyClock::time_point> DeadlineOf(
    const grpc::CallbackServerContext& call) {
  const auto deadline = call.deadline();
  const auto now = std::chrono::system_clock::now();
  // gRPC reports "no deadline" as a time far in the future.
  if (deadline - now > std::chrono::hours(24 * 365)) return std::nullopt;
  return SteadyClock::now() +
         std::chrono::duration_cast<SteadyClock::duration>(deadline - now);
}

std::string TokenText(const engine::Tokenizer* tokenizer, int32_t token) {
  if (tokenizer == nullptr || token < 0 || token >= tokenizer->vocab_size()) {
    return "";
  }
  absl::StatusOr<std::string> piece = tokenizer->IdToPiece(token);
  if (!piece.ok()) return "";
  return absl::StrReplaceAll(*piece, {{"\xE2\x96\x81", " "}});
}

void ToProto(const GeneratedChunk& chunk, const engine::Tokenizer* tokenizer,
             v1::GenerateChunk* out) {
  out->mutable_token_ids()->Add(chunk.token_ids.begin(), chunk.token_ids.end());
  out->mutable_text()->append(chunk.text);
  for (const engine::SampleResult& result : chunk.logprobs) {
    v1::GeneratedTokenLogprobs* entry = out->add_logprobs();
    entry->mutable_chosen()->set_token(result.token);
    entry->mutable_chosen()->set_logprob(result.logprob);
    entry->mutable_chosen()->set_text(TokenText(tokenizer, result.token));
    for (const engine::TokenLogprob& top : result.top_logprobs) {
      v1::TokenLogprob* alternative = entry->add_top();
      alternative->set_token(top.token);
      alternative->set_logprob(top.logprob);
      alternative->set_text(TokenText(tokenizer, top.token));
    }
  }
}

v1::FinishReason ToProto(engine::FinishReason reason, bool stopped_by_caller) {
  if (stopped_by_caller) return v1::FINISH_REASON_CANCELLED;
  switch (reason) {
    case engine::FinishReason::kMaxTokens:
      return v1::FINISH_REASON_LENGTH;
    case engine::FinishReason::kStopToken:
      return v1::FINISH_REASON_STOP_TOKEN;
    case engine::FinishReason::kStopString:
      return v1::FINISH_REASON_STOP_STRING;
    case engine::FinishReason::kNone:
      break;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

void ToProto(const JobTimings& timings, v1::Timings* out) {
  out->set_queue_seconds(timings.queue_seconds);
  out->set_time_to_first_token_seconds(timings.time_to_first_token_seconds);
  out->set_total_seconds(timings.total_seconds);
}

namespace {
double UnixSeconds(Clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}
}  // namespace

void ToProto(const ServiceContext& context, const SessionSummary& summary,
             v1::SessionInfo* out) {
  out->set_session_id(summary.id);
  out->set_position(summary.position);
  out->set_state_bytes(context.model->StateBytes());
  out->set_created_unix_seconds(UnixSeconds(summary.created));
  out->set_last_used_unix_seconds(UnixSeconds(summary.last_used));
  out->set_model(context.model_name);
  out->set_location(summary.in_ram ? v1::SESSION_LOCATION_RAM
                                   : v1::SESSION_LOCATION_SPILL);
  out->set_busy(summary.busy);
}

absl::StatusOr<CallSession> OpenCallSession(const ServiceContext& context,
                                            const std::string& session_id) {
  CallSession call_session;
  if (session_id.empty()) {
    auto fresh = std::make_unique<Session>();
    fresh->state = context.model->NewSession();
    fresh->extras = engine::NewSessionExtras(context.model->vocab_size());
    fresh->created = fresh->last_used = Clock::now();
    call_session.owned = std::move(fresh);
    return call_session;
  }
  ASSIGN_OR_RETURN(call_session.lease, context.store->Acquire(session_id));
  return call_session;
}

}  // namespace linserve::server
