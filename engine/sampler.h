// The token sampler: turns one row of fp32 logits into the next token of a
// sequence (greedy, temperature, top-k, top-p, min-p, repetition / presence /
// frequency penalties), with the chosen token's log-probability and the top-n
// alternatives, plus the stop conditions (stop token ids, stop strings held
// back across text pieces, max tokens). No gRPC, no model: plain functions on
// plain structs, so the server can batch rows however it likes.
//
// Reproducibility: the RNG (xoshiro256**, seeded through splitmix64, uniforms
// computed here, no <random> distributions) lives in the sequence's
// SamplerState, and every Sample call draws exactly one uniform, greedy or
// not. The same seed and logits therefore give the same tokens whatever the
// batch or the other sequences; the sampling weights use the sampler's own
// exp (no libm), so they are the same bits on every platform built without
// FMA contraction (libm's log only touches the reported logprobs).
//
// Thread safety: a SamplerState belongs to one sequence (one caller at a
// time); Sample uses thread-local scratch, so threads may sample different
// sequences concurrently.
//
//   RETURN_IF_ERROR(params.Validate(model->vocab_size()));
//   SamplerState sampler = NewSamplerState(params, prompt);
//   StopChecker stop(params);
//   SampleResult r = Sample(logits.data(), vocab, params, sampler);
//   StopChecker::Step step = stop.Next(r.token, detokenized_piece,
//                                      sampler.num_generated);
//   stream(step.text); if (step.finish != FinishReason::kNone) done;
#ifndef LINSERVE_ENGINE_SAMPLER_H_
#define LINSERVE_ENGINE_SAMPLER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace linserve::engine {

inline constexpr float kMaxTemperature = 100.0f;
inline constexpr float kMaxRepetitionPenalty = 10.0f;
inline constexpr float kMaxPresencePenalty = 2.0f;   // and -2 below
inline constexpr float kMaxFrequencyPenalty = 2.0f;  // and -2 below
inline constexpr int kMaxTopLogprobs = 20;
inline constexpr int kMaxStopStrings = 16;
inline constexpr int kMaxStopStringBytes = 256;

// What one request asks of the sampler. Defaults sample the model's
// distribution unchanged (temperature 1, no truncation, no penalties).
//
// Order of the transformations (HF and vLLM's order): repetition penalty,
// then frequency and presence penalties, then temperature, then top-k, top-p
// (over the renormalised top-k survivors) and min-p (relative to the most
// likely token, which no filter removes).
struct SamplingParams {
  // [0, 100]. 0 = greedy (argmax of the penalised logits, lowest id on ties).
  float temperature = 1.0f;
  // [0, vocab]. 0 = off. Keeps the k most likely tokens (ties: lower id).
  int32_t top_k = 0;
  // (0, 1]. 1 = off. Keeps the smallest most-likely-first prefix whose
  // probability reaches top_p (at least one token).
  float top_p = 1.0f;
  // [0, 1]. 0 = off. Keeps tokens with p >= min_p * p_max.
  float min_p = 0.0f;
  // (0, 10]. 1 = off. HF/vLLM: the logit of every token seen in the prompt
  // or the output so far is divided by it when positive, multiplied when
  // negative.
  float repetition_penalty = 1.0f;
  // [-2, 2]. 0 = off. OpenAI/vLLM, over generated tokens only:
  //   logit -= frequency_penalty * count + presence_penalty * (count > 0).
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  // Unset: a random seed is drawn once, by NewSamplerState (and kept in
  // SamplerState::seed so the server can report it).
  std::optional<uint64_t> seed;
  // [1, 2^31 - 1]. Generation ends with kMaxTokens after this many tokens.
  int32_t max_tokens = 16;
  // Each in [0, vocab). Sampling one ends generation with kStopToken; its
  // text is not emitted. (The server adds the model's EOS here.)
  std::vector<int32_t> stop_token_ids;
  // At most 16, each 1 to 256 bytes. Generation ends with kStopString when
  // the text contains one; the text is cut before it.
  std::vector<std::string> stop_strings;
  // [0, 20]. How many most likely alternatives to report per token.
  int32_t top_logprobs = 0;

  // InvalidArgument naming the first bad field, its value and the allowed
  // range, e.g. "temperature must be in [0, 100], got -1". NaN is refused.
  absl::Status Validate(int vocab_size) const;
  // True when any penalty is on (then SamplerState counts tokens).
  bool HasPenalties() const;
};

// xoshiro256** (Blackman and Vigna), seeded by splitmix64 of the seed: a
// small, fast, fully specified generator (same numbers on every platform).
struct Xoshiro256 {
  uint64_t s[4] = {0, 0, 0, 0};

  static Xoshiro256 FromSeed(uint64_t seed);
  uint64_t Next();
  // Uniform in [0, 1): the top 53 bits of Next() times 2^-53.
  double NextDouble();
};

// How often a token was seen, for the penalties.
struct TokenCount {
  int32_t token = 0;
  int32_t output_count = 0;  // times generated (presence / frequency)
  bool in_prompt = false;    // in the prompt (repetition, with output)
};

// One sequence's sampling state: small, copyable, serialisable with the
// session. token_counts is a vector of distinct tokens sorted by id rather
// than a hash map or a vocab-sized array: its size is the number of distinct
// tokens seen (bounded by the vocab, usually far below), applying the
// penalties is one linear walk, and its order is deterministic for
// serialisation. It stays empty when the request has no penalty.
struct SamplerState {
  uint64_t seed = 0;  // the seed in use (drawn when the request had none)
  Xoshiro256 rng;
  int64_t num_generated = 0;  // tokens sampled so far
  std::vector<TokenCount> token_counts;
};

// The state for a new request: the RNG seeded from params.seed (or a random
// seed from std::random_device), and, when penalties are on, the prompt's
// tokens recorded for the repetition penalty (any length, O(n log n)).
SamplerState NewSamplerState(const SamplingParams& params,
                             absl::Span<const int32_t> prompt_tokens);

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

struct SampleResult {
  int32_t token = 0;
  // log-softmax of the raw model logits (before penalties, temperature and
  // truncation) at `token`, computed in double: comparable across requests
  // whatever their sampling parameters (OpenAI's definition).
  float logprob = 0.0f;
  // The params.top_logprobs most likely tokens under the same raw
  // log-softmax, most likely first (ties: lower id first).
  std::vector<TokenLogprob> top_logprobs;
};

// Samples the next token of the sequence from `logits` [vocab] and advances
// `state` (one RNG draw, num_generated, the token's count when penalties are
// on). Precondition: params.Validate(vocab) is OK and state came from
// NewSamplerState with these params. NaN logits count as -inf and +inf as the
// largest float. O(vocab) expected: top-k and top-p use partial selection
// (a k-heap, a quickselect on mass), never a sort of the vocab.
SampleResult Sample(const float* logits, int vocab,
                    const SamplingParams& params, SamplerState& state);

// Inspection helpers (tests, debugging); Sample does not call them but they
// run the same code.
//
// The logits after the penalties (before temperature), [vocab].
std::vector<float> PenalizedLogits(const float* logits, int vocab,
                                   const SamplingParams& params,
                                   const SamplerState& state);
// The distribution Sample draws from: penalties, temperature, top-k, top-p,
// min-p, renormalised; 0 for removed tokens. Greedy: one-hot at the argmax.
std::vector<double> SamplingProbabilities(const float* logits, int vocab,
                                          const SamplingParams& params,
                                          const SamplerState& state);

enum class FinishReason {
  kNone,        // still generating
  kStopToken,   // sampled one of stop_token_ids
  kStopString,  // the text contains one of stop_strings
  kMaxTokens,   // generated max_tokens tokens
};
absl::string_view FinishReasonName(FinishReason reason);

// Finds stop strings in streamed text. Text that could still be the start of
// a stop string is held back until the next piece decides it. A match is
// reported as soon as a stop string completes (the earliest end; among
// matches ending there, the earliest start), so the result does not depend
// on how the text is split into pieces. Byte-based: if the pieces are whole
// UTF-8 characters, so is every emitted piece.
//
//   StopStringMatcher m({"\n\nUser:"});
//   m.Append("Hi!\n");   // {"Hi!", false}   ("\n" held back)
//   m.Append("\nUser");  // {"", false}      ("\n\nUser" held back)
//   m.Append(": x");     // {"", true}       stopped; the rest is dropped
//   m.Flush();           // "" (when generation ends for another reason)
class StopStringMatcher {
 public:
  struct Result {
    std::string text;  // to emit now
    bool stopped = false;
  };

  // Empty strings are ignored (Validate refuses them).
  explicit StopStringMatcher(std::vector<std::string> stop_strings);

  // Appends a piece of generated text. Once stopped, returns {"", true}.
  Result Append(absl::string_view piece);
  // The held-back text, to emit when generation ends without a stop string.
  std::string Flush();

  bool stopped() const { return stopped_; }
  // Index in stop_strings of the string that matched, or -1.
  int matched_index() const { return matched_index_; }
  // Bytes currently held back.
  size_t held_bytes() const { return pending_.size(); }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
  int matched_index_ = -1;
};

// All stop conditions of one request, fed once per generated token, in the
// OpenAI/vLLM order: stop token, then stop string, then max tokens.
class StopChecker {
 public:
  struct Step {
    std::string text;  // to emit for this token (with released holdback)
    FinishReason finish = FinishReason::kNone;
  };

  explicit StopChecker(const SamplingParams& params);

  // `token` was just sampled, `piece` is its decoded text and
  // `num_generated` counts it (SamplerState::num_generated after Sample).
  // A stop token's piece is not emitted; the held-back text is.
  Step Next(int32_t token, absl::string_view piece, int64_t num_generated);

  const StopStringMatcher& matcher() const { return matcher_; }
  // The text held back so far (generation ended for another reason, e.g. the
  // caller stopped it): the matcher forgets it.
  std::string FlushHeldText() { return matcher_.Flush(); }

 private:
  std::vector<int32_t> stop_token_ids_;
  int64_t max_tokens_;
  StopStringMatcher matcher_;
  FinishReason finish_ = FinishReason::kNone;
};

}  // namespace linserve::engine

#endif  // LINSERVE_ENGINE_SAMPLER_H_
