// The token sampler (engine/sampler.h): penalties, temperature, top-k/top-p/
// min-p by partial selection under one total order (higher logit first, lower
// id on ties), draws from the sequence's own xoshiro256**, raw log-softmax
// log-probabilities, and stop-string matching with holdback.
#include "engine/sampler.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <utility>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "absl/strings/str_cat.h"

namespace linserve::engine {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// NaN never wins and never gets probability; +inf is clamped so that
// differences with the maximum stay finite.
inline float Sanitize(float x) {
  return std::isnan(x) ? kNegInf : std::min(x, FLT_MAX);
}

// The total order every selection uses: a before b when a's logit is higher,
// or equal with a lower id. As one integer, so that selections compare keys
// with no branches and no indirection: the float's bits made monotonic in
// the high half (sanitized logits have no NaN, -0 is counted below +0), the
// complemented id in the low half. Strict and total, so the selected sets do
// not depend on the std::nth_element implementation.
inline uint64_t OrderKey(float z, int32_t id) {
  uint32_t bits;
  std::memcpy(&bits, &z, sizeof(bits));
  bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (static_cast<uint64_t>(bits) << 32) | ~static_cast<uint32_t>(id);
}
inline int32_t KeyId(uint64_t key) {
  return static_cast<int32_t>(~static_cast<uint32_t>(key));
}
inline bool Before(const float* z, int32_t a, int32_t b) {
  return OrderKey(z[a], a) > OrderKey(z[b], b);
}

absl::Status OutOfRange(absl::string_view field, absl::string_view range,
                        const absl::AlphaNum& value) {
  return absl::InvalidArgumentError(
      absl::StrCat(field, " must be in ", range, ", got ", value));
}

uint64_t SplitMix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

inline uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t RandomSeed() {
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) ^ device();
}

void RecordOutputToken(SamplerState& state, int32_t token) {
  std::vector<TokenCount>& counts = state.token_counts;
  auto it = std::lower_bound(
      counts.begin(), counts.end(), token,
      [](const TokenCount& c, int32_t t) { return c.token < t; });
  if (it != counts.end() && it->token == token) {
    ++it->output_count;
  } else {
    counts.insert(it, TokenCount{token, 1, false});
  }
}

// exp(x) for x <= 0 in float, and 0 below -87 (so for -inf): Cephes' expf
// (Cody-Waite reduction by ln 2, degree-6 polynomial, relative error about
// 2e-7; exp(0) is exactly 1). Plain arithmetic and no libm call, so that GCC
// vectorizes ShiftedExp at -O2 (the exp passes are most of the sampler's
// time; libm's scalar exp ran at ~8 ns a token), and every build without FMA
// contraction (the engine is built for baseline x86-64) gives the same bits.
inline float ExpNonPositive(float x) {
  constexpr float kShift = 12582912.0f;  // 1.5 * 2^23: adding it rounds
  constexpr int32_t kShiftBits = 0x4B400000;
  constexpr int32_t kMinXBits = static_cast<int32_t>(0xC2AE0000u);  // -87
  // Selections by bit masks, not branches, so the loop has no control flow.
  const int32_t in_range = -static_cast<int32_t>(x >= -87.0f);
  int32_t x_bits;
  std::memcpy(&x_bits, &x, sizeof(x_bits));
  const int32_t xc_bits = (x_bits & in_range) | (kMinXBits & ~in_range);
  float xc;  // x clamped to >= -87, keeping 2^n a normal float
  std::memcpy(&xc, &xc_bits, sizeof(xc));
  const float shifted = xc * 1.44269504088896341f + kShift;
  const float n = shifted - kShift;
  int32_t n_bits;
  std::memcpy(&n_bits, &shifted, sizeof(n_bits));
  const int32_t scale_bits = (n_bits - kShiftBits + 127) << 23;
  float scale;
  std::memcpy(&scale, &scale_bits, sizeof(scale));
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = (p * (r * r) + r + 1.0f) * scale;
  int32_t y_bits;
  std::memcpy(&y_bits, &y, sizeof(y_bits));
  y_bits &= in_range;  // 0 below -87
  float out;
  std::memcpy(&out, &y_bits, sizeof(out));
  return out;
}

// The passes over the vocabulary (a few per token, serial time of the engine
// thread between decode steps) are written so that they vectorize: fixed
// blocks of 16 (the shape GCC's -O2 cost model vectorizes), SSE2 where a
// compare is involved. Each element gets the scalar expression's operations,
// so the bits are those of a plain loop. At vocab 4096 this took Sample at
// temperature 1 from 11.5 to 5.4 us, greedy from 10 to 3.9 us.
constexpr int kBlock = 16;

// Whether this CPU runs the AVX2 copies below: twice the lanes of the
// baseline copies, and the same bits, as AVX2 has no FMA to contract into.
// Chosen at run time by an ordinary branch, not by GCC's target_clones: its
// IFUNC resolvers run while the dynamic loader relocates the program, before
// a sanitizer's runtime is up, and crash every ThreadSanitizer build.
bool UseAvx2() {
  static const bool avx2 = __builtin_cpu_supports("avx2");
  return avx2;
}

// out[i] = ExpNonPositive((x[i] - shift) * scale), in place when out == x
// (no partial overlap).
inline void ShiftedExpBody(const float* x, float shift, float scale, float* out,
                           int64_t n) {
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    float block[kBlock];
    for (int j = 0; j < kBlock; ++j) {
      block[j] = ExpNonPositive((x[i + j] - shift) * scale);
    }
    for (int j = 0; j < kBlock; ++j) out[i + j] = block[j];
  }
  for (; i < n; ++i) out[i] = ExpNonPositive((x[i] - shift) * scale);
}

__attribute__((target("avx2"))) void ShiftedExpAvx2(const float* x, float shift,
                                                    float scale, float* out,
                                                    int64_t n) {
  ShiftedExpBody(x, shift, scale, out, n);
}

void ShiftedExp(const float* x, float shift, float scale, float* out,
                int64_t n) {
  if (UseAvx2()) return ShiftedExpAvx2(x, shift, scale, out, n);
  ShiftedExpBody(x, shift, scale, out, n);
}

// The index of the first maximum of x[0, n) (n >= 1, no NaN), -0 and +0
// equal: what `if (x[i] > x[best]) best = i` finds. Running maxima per
// lane, then the first element equal to the maximum.
int32_t FirstArgmax(const float* __restrict x, int32_t n) {
  int32_t i = 0;
  float m = kNegInf;
#if defined(__SSE2__)
  // maxps(a, b) is a > b ? a : b per lane.
  __m128 lane0 = _mm_set1_ps(kNegInf), lane1 = lane0;
  for (; i + 8 <= n; i += 8) {
    lane0 = _mm_max_ps(_mm_loadu_ps(x + i), lane0);
    lane1 = _mm_max_ps(_mm_loadu_ps(x + i + 4), lane1);
  }
  float lanes[4];
  _mm_storeu_ps(lanes, _mm_max_ps(lane0, lane1));
  for (float v : lanes) m = v > m ? v : m;
#endif
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  int32_t first = 0;
  while (!(x[first] == m)) ++first;
  return first;
}

// out[i] = Sanitize(in[i]).
void SanitizeRow(const float* __restrict in, int n, float* __restrict out) {
  int i = 0;
#if defined(__SSE2__)
  // minps(x, FLT_MAX) clamps +inf; NaN lanes are then replaced by -inf.
  const __m128 neg_inf = _mm_set1_ps(kNegInf);
  const __m128 max = _mm_set1_ps(FLT_MAX);
  for (; i + 4 <= n; i += 4) {
    const __m128 x = _mm_loadu_ps(in + i);
    const __m128 nan = _mm_cmpunord_ps(x, x);
    const __m128 clamped = _mm_min_ps(x, max);
    _mm_storeu_ps(out + i, _mm_or_ps(_mm_and_ps(nan, neg_inf),
                                     _mm_andnot_ps(nan, clamped)));
  }
#endif
  for (; i < n; ++i) out[i] = Sanitize(in[i]);
}

// Sum in double with four interleaved accumulators (a fixed order, so
// deterministic; four times shorter dependency chain than one). The AVX2
// copy keeps the four in one register: the same additions.
inline double SumInDoubleBody(const float* v, int64_t n) {
  double acc[4] = {0.0, 0.0, 0.0, 0.0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    for (int j = 0; j < 4; ++j) acc[j] += v[i + j];
  }
  for (; i < n; ++i) acc[i & 3] += v[i];
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

__attribute__((target("avx2"))) double SumInDoubleAvx2(const float* v,
                                                       int64_t n) {
  return SumInDoubleBody(v, n);
}

double SumInDouble(const float* v, int64_t n) {
  return UseAvx2() ? SumInDoubleAvx2(v, n) : SumInDoubleBody(v, n);
}

// Up to this top_k the candidates are found by a heap in one pass, above it
// by std::nth_element.
constexpr int32_t kTopKHeapMax = 1024;

// Per-thread scratch, so that sampling allocates nothing in steady state.
struct Scratch {
  std::vector<float> z;        // penalised, sanitized logits [vocab]
  std::vector<float> w;        // exp((z - z_max) / T) [vocab], candidates only
  std::vector<float> tmp;      // exp(raw - max) for the log-sum-exp [vocab]
  std::vector<int32_t> cand;   // top-k candidates in id order
  std::vector<uint64_t> keys;  // OrderKeys for top-k / top-p selection
};

Scratch& ThreadScratch() {
  thread_local Scratch scratch;
  return scratch;
}

void PenalizeInto(const float* logits, int vocab, const SamplingParams& params,
                  const SamplerState& state, std::vector<float>& z) {
  z.resize(vocab);
  SanitizeRow(logits, vocab, z.data());
  const float rep = params.repetition_penalty;
  const float freq = params.frequency_penalty;
  const float pres = params.presence_penalty;
  for (const TokenCount& c : state.token_counts) {
    if (c.token < 0 || c.token >= vocab) continue;
    float& x = z[c.token];
    if (rep != 1.0f) x = x > 0.0f ? x / rep : x * rep;
    if (c.output_count > 0) {
      x -= freq * static_cast<float>(c.output_count);
      x -= pres;
    }
  }
}

// What survives the filters: the candidates (all tokens, or s.cand with
// top-k) not after `threshold` in the Before order (all when threshold < 0)
// whose weight is at least `min_w`.
struct Support {
  bool greedy = false;  // temperature 0, or no finite logit
  bool all_candidates = true;
  int32_t argmax = 0;
  int32_t threshold = -1;
  double min_w = 0.0;
  double candidate_mass = 0.0;  // sum of w over the candidates, id order
};

// Only candidates have a weight; non-candidates fail the threshold test
// first (top-k sets it), so their stale w is never read.
inline bool Kept(const Scratch& s, const Support& support, int32_t i) {
  return (support.threshold < 0 || !Before(s.z.data(), support.threshold, i)) &&
         s.w[i] >= support.min_w;
}

// Calls f(id) for every candidate, in id order.
template <typename F>
void ForEachCandidate(const Scratch& s, const Support& support, int vocab,
                      F f) {
  if (support.all_candidates) {
    for (int32_t i = 0; i < vocab; ++i) f(i);
  } else {
    for (int32_t i : s.cand) f(i);
  }
}

// The token at which the mass of the tokens up to it, in the Before order,
// first reaches `target` (the last token when rounding never gets there).
// A quickselect on mass rather than a sort: each round partitions the live
// range around a median-of-three pivot and keeps the side holding the cut,
// O(n) expected. The partition is written out (not std::partition) and the
// pivots depend only on positions, so the sums and the result are the same
// with every standard library.
int32_t TopPCut(const float* w, uint64_t* a, int64_t n, double target) {
  int64_t lo = 0, hi = n;
  double acc = 0.0;  // mass of the tokens before a[lo, hi); acc < target
  while (hi - lo > 32) {
    uint64_t x = a[lo], y = a[lo + (hi - lo) / 2], v = a[hi - 1];
    if (y > x) std::swap(x, y);
    if (v > y) std::swap(y, v);
    if (y > x) std::swap(x, y);
    const uint64_t pivot = y;  // the median of the three
    int64_t store = lo;
    double front = 0.0;
    // Branch-free Lomuto partition (the comparison is a coin flip): keys
    // before the pivot move to [lo, store); adding w * 0 leaves front as is.
    for (int64_t j = lo; j < hi; ++j) {
      const uint64_t key = a[j];
      const bool is_before = key > pivot;
      front += w[KeyId(key)] * static_cast<double>(is_before);
      a[j] = a[store];
      a[store] = key;
      store += is_before;
    }
    if (acc + front >= target) {
      hi = store;  // the cut lies among the tokens before the pivot
      continue;
    }
    acc += front;
    if (acc + w[KeyId(pivot)] >= target) return KeyId(pivot);
    acc += w[KeyId(pivot)];
    // Drop the pivot and everything before it.
    for (int64_t j = store; j < hi; ++j) {
      if (a[j] == pivot) {
        std::swap(a[store], a[j]);
        break;
      }
    }
    lo = store + 1;
  }
  std::sort(a + lo, a + hi, std::greater<uint64_t>());
  for (int64_t j = lo; j < hi; ++j) {
    acc += w[KeyId(a[j])];
    if (acc >= target) return KeyId(a[j]);
  }
  return KeyId(a[hi - 1]);
}

// Fills s.z and, unless greedy, the candidates' weights, and works out the
// support.
Support Prepare(const float* logits, int vocab, const SamplingParams& params,
                const SamplerState& state, Scratch& s) {
  PenalizeInto(logits, vocab, params, state, s.z);
  const float* z = s.z.data();
  Support support;
  const int32_t argmax = FirstArgmax(z, vocab);
  support.argmax = argmax;
  const float z_max = z[argmax];
  if (params.temperature == 0.0f || z_max == kNegInf) {
    support.greedy = true;
    return support;
  }
  // top-k by partial selection on the logits (the order does not depend on
  // the temperature), so only the k candidates need an exp.
  const bool top_k_on = params.top_k > 0 && params.top_k < vocab;
  if (top_k_on) {
    const int32_t k = params.top_k;
    if (k <= kTopKHeapMax) {
      // One pass with a min-heap of the best k keys: most tokens cost one
      // comparison with the heap's root.
      s.keys.clear();
      for (int32_t i = 0; i < vocab; ++i) {
        const uint64_t key = OrderKey(z[i], i);
        if (static_cast<int32_t>(s.keys.size()) < k) {
          s.keys.push_back(key);
          std::push_heap(s.keys.begin(), s.keys.end(),
                         std::greater<uint64_t>());
        } else if (key > s.keys.front()) {
          std::pop_heap(s.keys.begin(), s.keys.end(), std::greater<uint64_t>());
          s.keys.back() = key;
          std::push_heap(s.keys.begin(), s.keys.end(),
                         std::greater<uint64_t>());
        }
      }
      support.threshold = KeyId(s.keys.front());
    } else {
      s.keys.resize(vocab);
      for (int32_t i = 0; i < vocab; ++i) s.keys[i] = OrderKey(z[i], i);
      std::nth_element(s.keys.begin(), s.keys.begin() + (k - 1), s.keys.end(),
                       std::greater<uint64_t>());
      support.threshold = KeyId(s.keys[k - 1]);
    }
    support.all_candidates = false;
    s.cand.resize(params.top_k);
    for (int32_t j = 0; j < params.top_k; ++j) s.cand[j] = KeyId(s.keys[j]);
    std::sort(s.cand.begin(), s.cand.end());
  }

  // Weights relative to the maximum (which gets exactly 1); -inf logits get
  // 0. 1/T is capped so that the maximum's 0 * (1/T) stays 0: below
  // T = 1e-30 sampling is greedy in effect anyway.
  const float inv_t = static_cast<float>(
      std::min(1.0 / static_cast<double>(params.temperature), 1e30));
  s.w.resize(vocab);
  float* w = s.w.data();
  double mass = 0.0;
  if (support.all_candidates) {
    ShiftedExp(z, z_max, inv_t, w, vocab);
    mass = SumInDouble(w, vocab);
  } else {
    for (int32_t i : s.cand) {
      w[i] = ExpNonPositive((z[i] - z_max) * inv_t);
      mass += w[i];
    }
  }
  support.candidate_mass = mass;

  // top-p over the candidates: the first token, in the Before order, at
  // which the cumulative mass reaches top_p.
  if (params.top_p < 1.0f) {
    if (top_k_on) {
      for (int32_t j = 0; j < params.top_k; ++j) {
        s.keys[j] = OrderKey(z[s.cand[j]], s.cand[j]);
      }
      s.keys.resize(params.top_k);
    } else {
      s.keys.resize(vocab);
      for (int32_t i = 0; i < vocab; ++i) s.keys[i] = OrderKey(z[i], i);
    }
    support.threshold =
        TopPCut(w, s.keys.data(), static_cast<int64_t>(s.keys.size()),
                static_cast<double>(params.top_p) * mass);
  }

  // min-p: p >= min_p * p_max, and p_max's weight is exactly 1.
  support.min_w = params.min_p;
  return support;
}

// The log-softmax normaliser of a row, kept as max + log(sum(exp(x - max)))
// so that logprob = (x - max) - log_sum stays exact when the max is huge.
struct LogNormalizer {
  double max = 0.0;
  double log_sum = 0.0;
  bool valid() const { return max != kNegInf; }
  float LogProb(float x) const {
    return static_cast<float>((static_cast<double>(x) - max) - log_sum);
  }
};

// The normaliser of a sanitized row x whose maximum is m, summed in double;
// tmp may be x itself.
LogNormalizer LogSumExp(const float* x, int vocab, float m,
                        std::vector<float>& tmp) {
  LogNormalizer norm;
  norm.max = m;
  if (m == kNegInf) return norm;
  if (x != tmp.data()) tmp.resize(vocab);
  ShiftedExp(x, m, 1.0f, tmp.data(), vocab);
  norm.log_sum = std::log(SumInDouble(tmp.data(), vocab));
  return norm;
}

// The n best tokens of the raw logits, best first: one pass keeping a small
// sorted list (n <= 20).
std::vector<TokenLogprob> TopRaw(const float* logits, int vocab, int n,
                                 const LogNormalizer& norm) {
  std::vector<int32_t> best;
  best.reserve(n + 1);
  auto better = [logits](int32_t a, int32_t b) {
    const float za = Sanitize(logits[a]), zb = Sanitize(logits[b]);
    return za > zb || (za == zb && a < b);
  };
  for (int32_t i = 0; i < vocab && n > 0; ++i) {
    if (static_cast<int>(best.size()) == n && !better(i, best.back())) continue;
    best.insert(std::upper_bound(best.begin(), best.end(), i, better), i);
    if (static_cast<int>(best.size()) > n) best.pop_back();
  }
  std::vector<TokenLogprob> out;
  out.reserve(best.size());
  for (int32_t t : best) {
    out.push_back({t, norm.LogProb(Sanitize(logits[t]))});
  }
  return out;
}

}  // namespace

absl::Status SamplingParams::Validate(int vocab_size) const {
  if (vocab_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("vocab_size must be positive, got ", vocab_size));
  }
  if (!(temperature >= 0.0f && temperature <= kMaxTemperature)) {
    return OutOfRange("temperature", "[0, 100]", temperature);
  }
  if (top_k < 0 || top_k > vocab_size) {
    return OutOfRange("top_k", absl::StrCat("[0, ", vocab_size, "]"), top_k);
  }
  if (!(top_p > 0.0f && top_p <= 1.0f)) {
    return OutOfRange("top_p", "(0, 1]", top_p);
  }
  if (!(min_p >= 0.0f && min_p <= 1.0f)) {
    return OutOfRange("min_p", "[0, 1]", min_p);
  }
  if (!(repetition_penalty > 0.0f &&
        repetition_penalty <= kMaxRepetitionPenalty)) {
    return OutOfRange("repetition_penalty", "(0, 10]", repetition_penalty);
  }
  if (!(presence_penalty >= -kMaxPresencePenalty &&
        presence_penalty <= kMaxPresencePenalty)) {
    return OutOfRange("presence_penalty", "[-2, 2]", presence_penalty);
  }
  if (!(frequency_penalty >= -kMaxFrequencyPenalty &&
        frequency_penalty <= kMaxFrequencyPenalty)) {
    return OutOfRange("frequency_penalty", "[-2, 2]", frequency_penalty);
  }
  if (max_tokens < 1) {
    return OutOfRange("max_tokens", "[1, 2147483647]", max_tokens);
  }
  for (size_t i = 0; i < stop_token_ids.size(); ++i) {
    if (stop_token_ids[i] < 0 || stop_token_ids[i] >= vocab_size) {
      return OutOfRange(absl::StrCat("stop_token_ids[", i, "]"),
                        absl::StrCat("[0, ", vocab_size, ")"),
                        stop_token_ids[i]);
    }
  }
  if (stop_strings.size() > static_cast<size_t>(kMaxStopStrings)) {
    return absl::InvalidArgumentError(
        absl::StrCat("stop_strings must have at most ", kMaxStopStrings,
                     " entries, got ", stop_strings.size()));
  }
  for (size_t i = 0; i < stop_strings.size(); ++i) {
    const size_t len = stop_strings[i].size();
    if (len < 1 || len > static_cast<size_t>(kMaxStopStringBytes)) {
      return absl::InvalidArgumentError(
          absl::StrCat("stop_strings[", i, "] must be 1 to ",
                       kMaxStopStringBytes, " bytes long, got ", len));
    }
  }
  if (top_logprobs < 0 || top_logprobs > kMaxTopLogprobs) {
    return OutOfRange("top_logprobs", "[0, 20]", top_logprobs);
  }
  return absl::OkStatus();
}

bool SamplingParams::HasPenalties() const {
  return repetition_penalty != 1.0f || presence_penalty != 0.0f ||
         frequency_penalty != 0.0f;
}

Xoshiro256 Xoshiro256::FromSeed(uint64_t seed) {
  Xoshiro256 rng;
  uint64_t x = seed;
  for (uint64_t& word : rng.s) word = SplitMix64(x);
  return rng;
}

uint64_t Xoshiro256::Next() {
  const uint64_t result = Rotl(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = Rotl(s[3], 45);
  return result;
}

double Xoshiro256::NextDouble() {
  return static_cast<double>(Next() >> 11) * 0x1.0p-53;
}

SamplerState NewSamplerState(const SamplingParams& params,
                             absl::Span<const int32_t> prompt_tokens) {
  SamplerState state;
  state.seed = params.seed.has_value() ? *params.seed : RandomSeed();
  state.rng = Xoshiro256::FromSeed(state.seed);
  if (params.HasPenalties() && !prompt_tokens.empty()) {
    std::vector<int32_t> ids(prompt_tokens.begin(), prompt_tokens.end());
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    state.token_counts.reserve(ids.size());
    for (int32_t id : ids) state.token_counts.push_back({id, 0, true});
  }
  return state;
}

SampleResult Sample(const float* logits, int vocab,
                    const SamplingParams& params, SamplerState& state) {
  // One draw per token whatever the parameters, so a sequence's stream of
  // uniforms depends on its position only.
  const double u = state.rng.NextDouble();
  Scratch& s = ThreadScratch();
  const Support support = Prepare(logits, vocab, params, state, s);

  int32_t token = support.argmax;
  if (!support.greedy) {
    double mass = support.candidate_mass;
    const bool filtered = (support.threshold >= 0 && support.all_candidates) ||
                          support.min_w > 0.0 || params.top_p < 1.0f;
    if (filtered) {
      mass = 0.0;
      ForEachCandidate(s, support, vocab, [&](int32_t i) {
        if (Kept(s, support, i)) mass += s.w[i];
      });
    }
    const double target = u * mass;
    double cum = 0.0;
    int32_t last_positive = support.argmax;
    token = -1;
    auto reaches_target = [&](int32_t i) {
      if (!Kept(s, support, i) || s.w[i] == 0.0f) return false;
      cum += s.w[i];
      last_positive = i;
      return cum > target;
    };
    if (support.all_candidates) {
      for (int32_t i = 0; i < vocab && token < 0; ++i) {
        if (reaches_target(i)) token = i;
      }
    } else {
      for (size_t j = 0; j < s.cand.size() && token < 0; ++j) {
        if (reaches_target(s.cand[j])) token = s.cand[j];
      }
    }
    // Rounding can leave u * mass at mass: the last token with weight wins.
    if (token < 0) token = last_positive;
  }

  // With no penalty, temperature 1 and every token a candidate, the weights
  // are the raw softmax's.
  LogNormalizer norm;
  if (!support.greedy && support.all_candidates && params.temperature == 1.0f &&
      state.token_counts.empty()) {
    norm.max = s.z[support.argmax];
    norm.log_sum = std::log(support.candidate_mass);
  } else if (state.token_counts.empty()) {
    // No penalty: z is the sanitized raw row and z[argmax] its maximum.
    norm = LogSumExp(s.z.data(), vocab, s.z[support.argmax], s.tmp);
  } else {
    s.tmp.resize(vocab);
    SanitizeRow(logits, vocab, s.tmp.data());
    const float m = s.tmp[FirstArgmax(s.tmp.data(), vocab)];
    norm = LogSumExp(s.tmp.data(), vocab, m, s.tmp);
  }
  SampleResult result;
  result.token = token;
  result.logprob =
      norm.valid() ? norm.LogProb(Sanitize(logits[token])) : kNegInf;
  if (params.top_logprobs > 0 && norm.valid()) {
    result.top_logprobs = TopRaw(logits, vocab, params.top_logprobs, norm);
  }

  ++state.num_generated;
  if (params.HasPenalties()) RecordOutputToken(state, token);
  return result;
}

std::vector<float> PenalizedLogits(const float* logits, int vocab,
                                   const SamplingParams& params,
                                   const SamplerState& state) {
  std::vector<float> z;
  PenalizeInto(logits, vocab, params, state, z);
  return z;
}

std::vector<double> SamplingProbabilities(const float* logits, int vocab,
                                          const SamplingParams& params,
                                          const SamplerState& state) {
  Scratch s;
  const Support support = Prepare(logits, vocab, params, state, s);
  std::vector<double> p(vocab, 0.0);
  if (support.greedy) {
    p[support.argmax] = 1.0;
    return p;
  }
  double mass = 0.0;
  ForEachCandidate(s, support, vocab, [&](int32_t i) {
    if (Kept(s, support, i)) mass += s.w[i];
  });
  ForEachCandidate(s, support, vocab, [&](int32_t i) {
    if (Kept(s, support, i)) p[i] = s.w[i] / mass;
  });
  return p;
}

absl::string_view FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone:
      return "none";
    case FinishReason::kStopToken:
      return "stop_token";
    case FinishReason::kStopString:
      return "stop_string";
    case FinishReason::kMaxTokens:
      return "max_tokens";
  }
  return "unknown";
}

StopStringMatcher::StopStringMatcher(std::vector<std::string> stop_strings)
    : stops_(std::move(stop_strings)) {}

StopStringMatcher::Result StopStringMatcher::Append(absl::string_view piece) {
  Result result;
  if (stopped_) {
    result.stopped = true;
    return result;
  }
  pending_.append(piece.data(), piece.size());
  const absl::string_view text(pending_);

  // The match that completes first; among those, the one starting first.
  size_t best_pos = absl::string_view::npos, best_end = 0;
  for (size_t i = 0; i < stops_.size(); ++i) {
    if (stops_[i].empty()) continue;
    const size_t pos = text.find(stops_[i]);
    if (pos == absl::string_view::npos) continue;
    const size_t end = pos + stops_[i].size();
    if (best_pos == absl::string_view::npos || end < best_end ||
        (end == best_end && pos < best_pos)) {
      best_pos = pos;
      best_end = end;
      matched_index_ = static_cast<int>(i);
    }
  }
  if (best_pos != absl::string_view::npos) {
    result.text = pending_.substr(0, best_pos);
    result.stopped = stopped_ = true;
    pending_.clear();
    return result;
  }

  // Hold back the longest suffix that is a proper prefix of a stop string.
  size_t hold = 0;
  for (const std::string& stop : stops_) {
    const size_t longest = std::min(text.size(), stop.size() - 1);
    for (size_t k = longest; k > hold; --k) {
      if (text.substr(text.size() - k) ==
          absl::string_view(stop).substr(0, k)) {
        hold = k;
        break;
      }
    }
  }
  result.text = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return result;
}

std::string StopStringMatcher::Flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

StopChecker::StopChecker(const SamplingParams& params)
    : stop_token_ids_(params.stop_token_ids),
      max_tokens_(params.max_tokens),
      matcher_(params.stop_strings) {}

StopChecker::Step StopChecker::Next(int32_t token, absl::string_view piece,
                                    int64_t num_generated) {
  Step step;
  if (finish_ != FinishReason::kNone) {
    step.finish = finish_;
    return step;
  }
  if (std::find(stop_token_ids_.begin(), stop_token_ids_.end(), token) !=
      stop_token_ids_.end()) {
    step.text = matcher_.Flush();
    step.finish = finish_ = FinishReason::kStopToken;
    return step;
  }
  StopStringMatcher::Result r = matcher_.Append(piece);
  step.text = std::move(r.text);
  if (r.stopped) {
    step.finish = finish_ = FinishReason::kStopString;
  } else if (num_generated >= max_tokens_) {
    step.text += matcher_.Flush();
    step.finish = finish_ = FinishReason::kMaxTokens;
  }
  return step;
}

}  // namespace linserve::engine
