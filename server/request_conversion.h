// Conversions between the public API's messages (proto/linserve/v1) and the
// engine's and scheduler's structs, with the request validation the
// services share: inputs to token ids (tokenizer, vocabulary range, BOS,
// --max_input_tokens), SamplingParams (defaults for unset fields, ranges,
// EOS as a stop token, --max_tokens), and outcomes back to messages.
// Errors are absl::Status with messages that name the field and the limit.
#ifndef LINSERVE_SERVER_REQUEST_CONVERSION_H_
#define LINSERVE_SERVER_REQUEST_CONVERSION_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/server_context.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "linserve/v1/inference.pb.h"
#include "linserve/v1/sessions.pb.h"
#include "linserve/v1/types.pb.h"
#include "server/scheduler.h"
#include "server/service_context.h"
#include "server/session_store.h"

namespace linserve::server {

// The tokens of `input` (text through the tokenizer, or ids checked against
// the vocabulary). With add_bos and `at_session_start`, the model's BOS
// first. `field` names the input in messages ("prompt", "input").
// FailedPrecondition: text without a tokenizer; InvalidArgument: an id out
// of range, no BOS id, more than --max_input_tokens.
absl::StatusOr<std::vector<int32_t>> InputTokens(const ServiceContext& context,
                                                 const v1::Input& input,
                                                 bool at_session_start,
                                                 absl::string_view field);

// Text through the tokenizer (FailedPrecondition without one).
absl::StatusOr<std::vector<int32_t>> EncodeText(const ServiceContext& context,
                                                absl::string_view text,
                                                bool add_bos);

// InvalidArgument naming the first id outside [0, vocab) and its index.
absl::Status CheckTokenIds(const ServiceContext& context,
                           absl::Span<const int32_t> ids,
                           absl::string_view field);

// Unset fields take the engine's defaults; checked by Validate; max_tokens
// also against --max_tokens; the model's EOS ids become stop tokens unless
// ignore_eos. `extra_stop_strings` (the chat template's) are appended.
absl::StatusOr<engine::SamplingParams> ToSamplingParams(
    const ServiceContext& context, const v1::SamplingParams& sampling,
    absl::Span<const std::string> extra_stop_strings = {});

// Whether the caller asked for per-token log-probabilities.
bool WantsLogprobs(const v1::SamplingParams& sampling);

// `overrides` on top of `defaults`, field by field (set optional fields and
// non-zero scalars win; a non-empty repeated field replaces the default's).
v1::SamplingParams MergeSampling(const v1::SamplingParams& defaults,
                                 const v1::SamplingParams& overrides);

// The call's deadline on the steady clock; nullopt when it has none.
std::optional<SteadyClock::time_point> DeadlineOf(
    const grpc::CallbackServerContext& call);

// The text of one token for log-probability entries: the SentencePiece
// piece with "▁" as a space (empty without a tokenizer or past its vocab).
std::string TokenText(const engine::Tokenizer* tokenizer, int32_t token);

void ToProto(const GeneratedChunk& chunk, const engine::Tokenizer* tokenizer,
             v1::GenerateChunk* out);
v1::FinishReason ToProto(engine::FinishReason reason, bool stopped_by_caller);
void ToProto(const JobTimings& timings, v1::Timings* out);

// A session's public description.
void ToProto(const ServiceContext& context, const SessionSummary& summary,
             v1::SessionInfo* out);

// The session a call works on: a leased store session, or a fresh state
// owned by the call (stateless Generate / Score).
struct CallSession {
  SessionLease lease;
  std::unique_ptr<Session> owned;

  Session& get() { return owned != nullptr ? *owned : lease.session(); }
  bool stored() const { return owned == nullptr; }
};

// `session_id` leased from the store, or a fresh state when it is empty.
absl::StatusOr<CallSession> OpenCallSession(const ServiceContext& context,
                                            const std::string& session_id);

}  // namespace linserve::server

#endif  // LINSERVE_SERVER_REQUEST_CONVERSION_H_
