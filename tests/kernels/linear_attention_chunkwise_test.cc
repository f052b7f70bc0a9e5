// Tests of ChunkwiseForward (the chunkwise-parallel prefill form of the
// linear-attention core) against the token-by-token scalar reference, for
// every update rule and every kernel body this CPU supports, with the inputs
// each model family really produces: l2-normalised keys and beta in (0,1) or
// (0,2) for the delta rules, q scaled by K^-1/2, logsigmoid(x)/16 gates for
// gla, -exp(A) softplus(a + dt_bias) decays for gated_deltanet and retnet's
// gamma_h = 1 - 2^(-5-h); plus steep decays that would overflow a naive
// chunk form (e^{-B}).
//
// Tolerances. The reference computes each token in double from the fp32 state
// and rounds the state to fp32 after every token. The chunk form computes in
// fp32 with another summation order: sums of length K and of up to C (chunk)
// terms in each product, exp of decay differences (~1 ulp), and the state is
// rounded once per chunk instead of once per token. Each of these is a few
// ulp (2^-24 ~ 6e-8) relative to the data's scale, growing like sqrt of the
// sum length; the delta rules add the triangular inverse (I + L)^-1, whose
// entries stay O(1) for l2-normalised keys and beta < 2. Errors are measured
// relative to the data's scale (MaxScaledDiff). Measured: at most 3.5e-6 for
// T <= 65 and 8.5e-6 for T up to 4096 (gated_deltanet with beta in (0, 2);
// the other rules stay below 3.5e-6): the fp32 state drifts from the
// reference like a random walk over chunks, which decaying and delta rules
// forget. The checks use 2e-5 for T <= 65 and 5e-5 above: a margin of ~6x
// over the drift, yet an exponent off by 1e-3 in one decay already fails
// (errors ~1e-3), and a wrong index, mask or missed beta gives 1e-2 to 1.
#include <omp.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/internal/linear_attention_chunkwise.h"
#include "kernels/linear_attention.h"
#include "kernels/reference/linear_attention_reference.h"
#include "tests/kernels/linear_attention_test_problem.h"
#include "tests/kernels/omp_test_util.h"
#include "tests/test_util.h"

namespace linserve::kernels {
namespace {

using ::linserve::testing::AllFinite;
using ::linserve::testing::KernelIsasToTest;
using ::linserve::testing::MaxScaledDiff;
using ::linserve::testing::RandomNormal;
using ::linserve::testing::RandomVector;

using ::linserve::kernels::attention_test::Decay;
using ::linserve::kernels::attention_test::Family;
using ::linserve::kernels::attention_test::kFamilies;
using ::linserve::kernels::attention_test::MakeProblem;
using ::linserve::kernels::attention_test::Problem;

// One session's state: zero, or what some history left behind.
struct State {
  std::vector<float> s, z;

  State(const AttentionSpec& spec, bool nonzero, uint64_t seed) {
    const int64_t ss = int64_t{spec.num_heads} * spec.key_dim * spec.value_dim;
    const int64_t zs = int64_t{spec.num_heads} * spec.key_dim;
    s = nonzero ? RandomNormal(ss, seed + 100, 0.5f)
                : std::vector<float>(ss, 0.0f);
    if (spec.normalize) {
      // z is a sum of past (positive) keys.
      z = nonzero ? RandomVector(zs, seed + 200, 0.0f, 8.0f)
                  : std::vector<float>(zs, 0.0f);
    }
  }

  AttentionState View() { return {s.data(), z.empty() ? nullptr : z.data()}; }
};

std::string Describe(const Family& f, KernelIsa isa, int H, int K, int V,
                     int64_t T, int chunk, bool nonzero, bool strided) {
  return std::string(f.name) + " isa=" + std::string(KernelIsaName(isa)) +
         " H=" + std::to_string(H) + " K=" + std::to_string(K) +
         " V=" + std::to_string(V) + " T=" + std::to_string(T) +
         " chunk=" + std::to_string(chunk) +
         (nonzero ? " nonzero-state" : " zero-state") +
         (strided ? " strided" : " dense");
}

// See the file comment.
float ToleranceFor(int64_t T) { return T <= 65 ? 2e-5f : 5e-5f; }

struct Shape {
  int heads, k, v;
  std::vector<int64_t> tokens;
};

// The reference is O(T H K V) in double: long sequences only for small heads.
const Shape kShapes[] = {
    {2, 16, 16, {1, 63, 64, 65, 1000, 4096}},
    {2, 32, 32, {4096}},
    {2, 64, 64, {1, 63, 64, 65, 1000}},
    {2, 128, 128, {1, 63, 64, 65, 300}},
    {1, 256, 256, {1, 65, 130}},
    {3, 48, 48, {1, 63, 64, 65, 1000}},
    {2, 32, 80, {1, 63, 65, 1000}},
    {2, 128, 64, {64, 129}},
};

// Runs the reference once per problem and ChunkwiseForward for every ISA and
// chunk size.
void CheckMatchesReference(const Family& f, Decay decay, const Shape* shapes,
                           int num_shapes, const std::vector<int>& chunks) {
  uint64_t seed = 7000;
  for (int si = 0; si < num_shapes; ++si) {
    const Shape& sh = shapes[si];
    for (int64_t T : sh.tokens) {
      for (bool nonzero : {false, true}) {
        const bool strided = (T + (nonzero ? 1 : 0)) % 2 == 1;
        const Problem p =
            MakeProblem(f, sh.heads, sh.k, sh.v, T, strided, ++seed, decay);
        State want(p.spec, nonzero, seed);
        std::vector<float> ref(T * sh.heads * sh.v, NAN);
        reference::ReferenceLinearAttention(p.spec, T, p.Inputs(), want.View(),
                                            ref.data());
        for (KernelIsa isa : KernelIsasToTest()) {
          ScopedKernelIsa scope(isa);
          for (int chunk : chunks) {
            State got(p.spec, nonzero, seed);
            std::vector<float> out(ref.size(), NAN);
            ChunkwiseForward(p.spec, T, p.Inputs(), got.View(), out.data(),
                             chunk);
            INFO(Describe(f, isa, sh.heads, sh.k, sh.v, T, chunk, nonzero,
                          strided));
            REQUIRE(AllFinite(out));
            REQUIRE(AllFinite(got.s));
            const float tol = ToleranceFor(T);
            CHECK(MaxScaledDiff(out, ref) <= tol);
            CHECK(MaxScaledDiff(got.s, want.s) <= tol);
            if (f.normalize) CHECK(MaxScaledDiff(got.z, want.z) <= tol);
          }
        }
      }
    }
  }
}

TEST_CASE("ChunkwiseForward equals the token-by-token reference for every rule",
          "[linear_attention][chunkwise]") {
  for (const Family& f : kFamilies) {
    SECTION(f.name) {
      CheckMatchesReference(f, Decay::kRealistic, kShapes,
                            static_cast<int>(std::size(kShapes)), {64, 17});
    }
  }
}

TEST_CASE(
    "ChooseValueSplit balances heads over threads against the work each "
    "slice repeats",
    "[linear_attention][chunkwise]") {
  using internal::ChooseValueSplit;
  using internal::ValueSplit;
  auto same = [](ValueSplit a, ValueSplit b) {
    return a.slices == b.slices && a.width == b.width;
  };
  // One thread, or as many heads as threads: nothing to balance.
  CHECK(same(ChooseValueSplit(UpdateRule::kGatedDelta, 6, 256, 512, 64, 1),
             {1, 512}));
  CHECK(same(ChooseValueSplit(UpdateRule::kGatedDelta, 16, 128, 128, 64, 16),
             {1, 128}));
  // 2 threads, 4 heads: splitting only repeats work.
  CHECK(same(ChooseValueSplit(UpdateRule::kGatedDelta, 4, 64, 128, 64, 2),
             {1, 128}));
  // gla-340m on 16 threads: 4 heads x 4 slices of 64, one round.
  CHECK(same(ChooseValueSplit(UpdateRule::kVectorDecay, 4, 128, 256, 64, 16),
             {4, 64}));
  // gdn-340m on 16 threads: 6 heads do not share out over 16 threads; 3
  // slices each (18 items, two rounds of 176 columns) cost more than 8
  // slices of 64 (48 items, three rounds of 64 columns).
  CHECK(same(ChooseValueSplit(UpdateRule::kGatedDelta, 6, 256, 512, 64, 16),
             {8, 64}));
  // Never narrower than 64 columns, widths a multiple of 16.
  for (int v : {64, 100, 130, 200, 256, 1000}) {
    for (int threads : {2, 3, 8, 16, 64}) {
      const ValueSplit s =
          ChooseValueSplit(UpdateRule::kAdditive, 1, 64, v, 64, threads);
      CAPTURE(v, threads, s.slices, s.width);
      CHECK(s.slices >= 1);
      CHECK((s.width == v || (s.width % 16 == 0 && s.width >= 64)));
      CHECK(s.width * (s.slices - 1) < v);
      CHECK(s.width * s.slices >= v);
    }
  }
}

TEST_CASE(
    "ChunkwiseForward gives bitwise the same outputs and state on 8 threads "
    "as on 1, split heads and their shared first pass included",
    "[linear_attention][chunkwise]") {
  // 8 threads split 2 heads of V = 200 into 3 slices each; the delta rules
  // and GLA then compute each chunk's state-free products once per head in
  // a first pass, here in windows of 2 chunks (delta rules) or 1 (GLA, whose
  // blocks are larger) under the cap set for the test, so that a call of
  // 300 tokens in chunks of 17 goes in 9 or 18 windows. Slicing and sharing
  // change no arithmetic: every output element is computed by the same
  // operations.
  struct Cap {
    Cap() { internal::SetMaxChunkProductFloatsForTesting(2 * 2 * 2 * 17 * 17); }
    ~Cap() { internal::SetMaxChunkProductFloatsForTesting(0); }
  } two_chunk_windows;
  for (const Family& f : kFamilies) {
    for (KernelIsa isa : KernelIsasToTest()) {
      ScopedKernelIsa scope(isa);
      for (int64_t T : {65, 300}) {
        const Problem p =
            MakeProblem(f, /*H=*/2, 64, 200, T, /*strided=*/true, 91);
        auto run = [&](int threads, State& state, std::vector<float>& out) {
          const testing::ScopedTeamSize team(threads);
          ChunkwiseForward(p.spec, T, p.Inputs(), state.View(), out.data(), 17);
        };
        State one(p.spec, true, 5), eight(p.spec, true, 5);
        std::vector<float> out_one(T * 2 * 200, NAN), out_eight = out_one;
        run(1, one, out_one);
        run(8, eight, out_eight);
        INFO(f.name << ", " << KernelIsaName(isa) << ", T = " << T);
        CHECK(std::memcmp(out_one.data(), out_eight.data(),
                          out_one.size() * sizeof(float)) == 0);
        CHECK(std::memcmp(one.s.data(), eight.s.data(),
                          one.s.size() * sizeof(float)) == 0);
      }
    }
  }
}

TEST_CASE(
    "with more threads than heads, ChunkwiseForward splits each head's value "
    "columns over threads and still equals the reference for every rule",
    "[linear_attention][chunkwise]") {
  // 8 threads whatever the machine: ChooseValueSplit makes 2 heads of
  // V = 200 into 3 slices of 80, 80 and 40 columns, 1 head of 256 four of
  // 64, 3 heads of 130 two of 80 and 50, for every rule (the normalised rule
  // is never split).
  const testing::ScopedTeamSize eight_threads(8);
  const Shape shapes[] = {{2, 64, 200, {65, 300}},
                          {1, 32, 256, {130, 1000}},
                          {3, 48, 130, {64, 129}}};
  for (const Family& f : kFamilies) {
    SECTION(f.name) {
      CheckMatchesReference(f, Decay::kRealistic, shapes,
                            static_cast<int>(std::size(shapes)), {64, 17});
    }
  }
}

TEST_CASE(
    "ChunkwiseForward stays exact with decays steep enough to overflow a "
    "naive chunk form",
    "[linear_attention][chunkwise]") {
  // e^{-B} over a 64-token chunk of logsigmoid(-20)/16 gates is e^80 (and
  // e^1200 for logsigmoid(-300)/16): inf in fp32.
  const Shape shapes[] = {{2, 32, 32, {63, 1000}}, {2, 64, 48, {4096}}};
  for (const Family& f : kFamilies) {
    if (f.rule != UpdateRule::kVectorDecay &&
        f.rule != UpdateRule::kGatedDelta &&
        f.rule != UpdateRule::kFixedDecay) {
      continue;
    }
    for (Decay decay : {Decay::kSteep, Decay::kExtreme}) {
      if (decay == Decay::kExtreme && f.rule != UpdateRule::kVectorDecay) {
        continue;
      }
      INFO((decay == Decay::kSteep ? "steep" : "extreme") << " decays");
      CheckMatchesReference(f, decay, shapes, 2, {64, 48});
    }
  }
}

TEST_CASE(
    "any split of the tokens into ChunkwiseForward and RecurrentForward calls "
    "gives the same outputs and state as one call",
    "[linear_attention][chunkwise]") {
  const int H = 2, K = 48, V = 32;
  const int64_t T = 300;
  for (const Family& f : kFamilies) {
    for (KernelIsa isa : KernelIsasToTest()) {
      ScopedKernelIsa scope(isa);
      const Problem p = MakeProblem(f, H, K, V, T, /*strided=*/true, 91);
      State whole(p.spec, /*nonzero=*/true, 92);
      std::vector<float> out_whole(T * H * V, NAN);
      ChunkwiseForward(p.spec, T, p.Inputs(), whole.View(), out_whole.data());
      std::mt19937 rng(93);
      for (int trial = 0; trial < 4; ++trial) {
        State split(p.spec, /*nonzero=*/true, 92);
        std::vector<float> out_split(T * H * V, NAN);
        std::string pieces;
        for (int64_t t = 0; t < T;) {
          // Pieces of 1..130 tokens, each with its own chunk size; every
          // fourth piece decodes token by token instead.
          const int64_t len =
              std::min<int64_t>(T - t, 1 + static_cast<int64_t>(rng() % 130));
          const int chunk =
              std::vector<int>{1, 3, 16, 17, 48, 64, 128}[rng() % 7];
          const bool recurrent = rng() % 4 == 0;
          if (recurrent) {
            RecurrentForward(p.spec, len, p.Inputs(t), split.View(),
                             out_split.data() + t * H * V);
          } else {
            ChunkwiseForward(p.spec, len, p.Inputs(t), split.View(),
                             out_split.data() + t * H * V, chunk);
          }
          pieces += " " + std::to_string(len) +
                    (recurrent ? "r" : "c" + std::to_string(chunk));
          t += len;
        }
        INFO(f.name << " isa=" << KernelIsaName(isa) << " pieces:" << pieces);
        REQUIRE(AllFinite(out_split));
        // Both sides are fp32 forms that differ only in where chunks (and
        // the state's rounding) fall: rounding-level differences (measured:
        // below 1e-6).
        CHECK(MaxScaledDiff(out_split, out_whole) <= 2e-5f);
        CHECK(MaxScaledDiff(split.s, whole.s) <= 2e-5f);
        if (f.normalize) CHECK(MaxScaledDiff(split.z, whole.z) <= 2e-5f);
      }
    }
  }
}

TEST_CASE(
    "100k tokens of a decaying rule stay finite and match token-by-token "
    "decode",
    "[linear_attention][chunkwise]") {
  const int H = 2, K = 16, V = 16;
  const int64_t T = 100000;
  for (const Family& f : kFamilies) {
    if (f.rule != UpdateRule::kFixedDecay &&
        f.rule != UpdateRule::kVectorDecay &&
        !(f.rule == UpdateRule::kGatedDelta && !f.allow_neg_eigval)) {
      continue;
    }
    const Problem p = MakeProblem(f, H, K, V, T, /*strided=*/false, 61);
    State want(p.spec, /*nonzero=*/true, 62);
    std::vector<float> ref(T * H * V, NAN);
    reference::ReferenceLinearAttention(p.spec, T, p.Inputs(), want.View(),
                                        ref.data());
    for (KernelIsa isa : KernelIsasToTest()) {
      ScopedKernelIsa scope(isa);
      State got(p.spec, /*nonzero=*/true, 62);
      std::vector<float> out(ref.size(), NAN);
      ChunkwiseForward(p.spec, T, p.Inputs(), got.View(), out.data());
      INFO(f.name << " isa=" << KernelIsaName(isa));
      REQUIRE(AllFinite(out));
      REQUIRE(AllFinite(got.s));
      // Decay bounds the state, so errors do not accumulate beyond the
      // per-chunk rounding (measured: below 1e-6; see the file comment).
      CHECK(MaxScaledDiff(out, ref) <= 2e-5f);
      CHECK(MaxScaledDiff(got.s, want.s) <= 2e-5f);
    }
  }
}

}  // namespace
}  // namespace linserve::kernels
