// Tests of the recurrent linear-attention kernels (RecurrentStep,
// RecurrentForward) against the scalar reference, for every update rule and
// every kernel body this CPU supports, with the inputs each model family
// really produces (l2-normalised keys and beta in (0,1) or (0,2) for the delta
// rules, logsigmoid/16 gates for gla, Mamba-style decays for gated_deltanet,
// retnet's fixed gammas).
//
// Tolerances. The reference computes each token in double from the fp32 state
// and rounds the state to fp32 after every token; the kernels compute in fp32.
// Per token the difference is the rounding of length-K/V dot products and
// FMAs: a few ulp relative to the data's scale (2^-24 ~ 6e-8 each, growing
// like sqrt(K) for K <= 256, so ~1e-6). Both sides keep an fp32 state, so the
// per-token differences add up over T tokens as a random walk; the decaying
// and delta rules contract old errors, the additive rule does not (worst case
// ~T * 6e-8 = 6e-5 for T = 1000, in practice sqrt(T) * 6e-8 ~ 2e-6). Errors
// are measured relative to the data's scale (MaxScaledDiff); the largest seen
// over all cases here is ~1e-6 for both bodies. The checks allow 1e-5 for
// T <= 65 and 3e-5 for T = 1000: ~10x above what fp32 rounding produces, far
// below what a real bug gives (a wrong index or a missed decay is O(1e-2..1)).
#include <omp.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/linear_attention.h"
#include "kernels/reference/linear_attention_reference.h"
#include "tests/kernels/linear_attention_test_problem.h"
#include "tests/test_util.h"

namespace linserve::kernels {
namespace {

using ::linserve::testing::AllFinite;
using ::linserve::testing::KernelIsasToTest;
using ::linserve::testing::MaxScaledDiff;
using ::linserve::testing::RandomNormal;
using ::linserve::testing::RandomVector;

using ::linserve::kernels::attention_test::Family;
using ::linserve::kernels::attention_test::kFamilies;
using ::linserve::kernels::attention_test::MakeProblem;
using ::linserve::kernels::attention_test::Problem;

// The states of `sessions` sessions: zero, or what some history left behind.
struct States {
  std::vector<std::vector<float>> s, z;

  States(const AttentionSpec& spec, int sessions, bool nonzero, uint64_t seed) {
    const int64_t ss = int64_t{spec.num_heads} * spec.key_dim * spec.value_dim;
    const int64_t zs = int64_t{spec.num_heads} * spec.key_dim;
    for (int b = 0; b < sessions; ++b) {
      s.push_back(nonzero ? RandomNormal(ss, seed + 100 + b, 0.5f)
                          : std::vector<float>(ss, 0.0f));
      if (spec.normalize) {
        // z is a sum of past (positive) keys.
        z.push_back(nonzero ? RandomVector(zs, seed + 200 + b, 0.0f, 8.0f)
                            : std::vector<float>(zs, 0.0f));
      }
    }
  }

  std::vector<AttentionState> Views() {
    std::vector<AttentionState> views;
    for (size_t b = 0; b < s.size(); ++b) {
      views.push_back({s[b].data(), z.empty() ? nullptr : z[b].data()});
    }
    return views;
  }
};

std::string Describe(const Family& f, KernelIsa isa, int H, int K, int V,
                     int64_t rows, bool nonzero, bool strided) {
  return std::string(f.name) + " isa=" + std::string(KernelIsaName(isa)) +
         " H=" + std::to_string(H) + " K=" + std::to_string(K) +
         " V=" + std::to_string(V) + " rows=" + std::to_string(rows) +
         (nonzero ? " nonzero-state" : " zero-state") +
         (strided ? " strided" : " dense");
}

struct HeadDims {
  int k, v;
};
// The model sizes (K = V in 16..256, K != V) plus V % 16 != 0 (masked tails),
// an odd K, several column blocks (V > 128) and K above the 1024 rows whose
// decays the kernels cache on the stack.
const HeadDims kHeadDims[] = {{16, 16},   {64, 64}, {128, 128},
                              {256, 256}, {48, 48}, {32, 48},
                              {24, 40},   {7, 200}, {1040, 16}};

// Heads per test: enough to catch head-offset mistakes, few enough to keep
// the double-precision reference quick.
int HeadsFor(const HeadDims& d) { return d.k * d.v >= 128 * 128 ? 2 : 3; }

void CheckStepMatchesReference(const Family& f) {
  uint64_t seed = 1000;
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    for (const HeadDims& d : kHeadDims) {
      for (int batch : {1, 3, 64}) {
        for (bool nonzero : {false, true}) {
          const bool strided = (batch + (nonzero ? 1 : 0)) % 2 == 0;
          const int H = HeadsFor(d);
          const Problem p = MakeProblem(f, H, d.k, d.v, batch, strided, ++seed);
          States got(p.spec, batch, nonzero, seed);
          States want(p.spec, batch, nonzero, seed);
          std::vector<float> out(int64_t{batch} * H * d.v, NAN);
          std::vector<float> ref(out.size(), NAN);
          const std::vector<AttentionState> got_views = got.Views();
          const std::vector<AttentionState> want_views = want.Views();
          RecurrentStep(p.spec, batch, p.Inputs(), got_views.data(),
                        out.data());
          reference::ReferenceRecurrentStep(p.spec, batch, p.Inputs(),
                                            want_views.data(), ref.data());
          INFO(Describe(f, isa, H, d.k, d.v, batch, nonzero, strided));
          REQUIRE(AllFinite(out));
          // One token: per-token rounding only (see the file comment).
          CHECK(MaxScaledDiff(out, ref) <= 1e-5f);
          for (int b = 0; b < batch; ++b) {
            CHECK(MaxScaledDiff(got.s[b], want.s[b]) <= 1e-5f);
            if (f.normalize) CHECK(MaxScaledDiff(got.z[b], want.z[b]) <= 1e-5f);
          }
        }
      }
    }
  }
}

void CheckForwardMatchesReference(const Family& f) {
  uint64_t seed = 5000;
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    for (const HeadDims& d : kHeadDims) {
      for (int64_t T : {1, 63, 64, 65, 1000}) {
        // 1000 tokens only for small heads: the reference is O(T H K V).
        if (T == 1000 && (d.k > 64 || d.v > 64)) continue;
        for (bool nonzero : {false, true}) {
          const bool strided = (T + (nonzero ? 1 : 0)) % 2 == 1;
          const int H = HeadsFor(d);
          const Problem p = MakeProblem(f, H, d.k, d.v, T, strided, ++seed);
          States got(p.spec, 1, nonzero, seed);
          States want(p.spec, 1, nonzero, seed);
          std::vector<float> out(T * H * d.v, NAN);
          std::vector<float> ref(out.size(), NAN);
          RecurrentForward(p.spec, T, p.Inputs(), got.Views()[0], out.data());
          reference::ReferenceLinearAttention(p.spec, T, p.Inputs(),
                                              want.Views()[0], ref.data());
          INFO(Describe(f, isa, H, d.k, d.v, T, nonzero, strided));
          REQUIRE(AllFinite(out));
          // Rounding differences drift over T tokens (see the file comment).
          const float tol = T > 65 ? 3e-5f : 1e-5f;
          CHECK(MaxScaledDiff(out, ref) <= tol);
          CHECK(MaxScaledDiff(got.s[0], want.s[0]) <= tol);
          if (f.normalize) CHECK(MaxScaledDiff(got.z[0], want.z[0]) <= tol);
        }
      }
    }
  }
}

TEST_CASE("RecurrentStep matches the reference for linear_attn",
          "[linear_attention][recurrent]") {
  CheckStepMatchesReference(kFamilies[0]);
}

TEST_CASE(
    "RecurrentStep matches the reference for linear_attn with the normaliser",
    "[linear_attention][recurrent]") {
  CheckStepMatchesReference(kFamilies[1]);
}

TEST_CASE("RecurrentStep matches the reference for retnet",
          "[linear_attention][recurrent]") {
  CheckStepMatchesReference(kFamilies[2]);
}

TEST_CASE("RecurrentStep matches the reference for gla",
          "[linear_attention][recurrent]") {
  CheckStepMatchesReference(kFamilies[3]);
}

TEST_CASE("RecurrentStep matches the reference for delta_net",
          "[linear_attention][recurrent]") {
  CheckStepMatchesReference(kFamilies[4]);
}

TEST_CASE(
    "RecurrentStep matches the reference for delta_net with negative "
    "eigenvalues",
    "[linear_attention][recurrent]") {
  CheckStepMatchesReference(kFamilies[5]);
}

TEST_CASE("RecurrentStep matches the reference for gated_deltanet",
          "[linear_attention][recurrent]") {
  CheckStepMatchesReference(kFamilies[6]);
}

TEST_CASE(
    "RecurrentStep matches the reference for gated_deltanet with negative "
    "eigenvalues",
    "[linear_attention][recurrent]") {
  CheckStepMatchesReference(kFamilies[7]);
}

TEST_CASE("RecurrentForward matches the reference for linear_attn",
          "[linear_attention][recurrent]") {
  CheckForwardMatchesReference(kFamilies[0]);
}

TEST_CASE(
    "RecurrentForward matches the reference for linear_attn with the "
    "normaliser",
    "[linear_attention][recurrent]") {
  CheckForwardMatchesReference(kFamilies[1]);
}

TEST_CASE("RecurrentForward matches the reference for retnet",
          "[linear_attention][recurrent]") {
  CheckForwardMatchesReference(kFamilies[2]);
}

TEST_CASE("RecurrentForward matches the reference for gla",
          "[linear_attention][recurrent]") {
  CheckForwardMatchesReference(kFamilies[3]);
}

TEST_CASE("RecurrentForward matches the reference for delta_net",
          "[linear_attention][recurrent]") {
  CheckForwardMatchesReference(kFamilies[4]);
}

TEST_CASE(
    "RecurrentForward matches the reference for delta_net with negative "
    "eigenvalues",
    "[linear_attention][recurrent]") {
  CheckForwardMatchesReference(kFamilies[5]);
}

TEST_CASE("RecurrentForward matches the reference for gated_deltanet",
          "[linear_attention][recurrent]") {
  CheckForwardMatchesReference(kFamilies[6]);
}

TEST_CASE(
    "RecurrentForward matches the reference for gated_deltanet with negative "
    "eigenvalues",
    "[linear_attention][recurrent]") {
  CheckForwardMatchesReference(kFamilies[7]);
}

TEST_CASE(
    "RecurrentStep over a batch gives each session exactly what it gets "
    "alone",
    "[linear_attention][recurrent]") {
  for (const Family& f : kFamilies) {
    for (KernelIsa isa : KernelIsasToTest()) {
      ScopedKernelIsa scope(isa);
      const int batch = 16, H = 4, K = 64, V = 64;
      const Problem p = MakeProblem(f, H, K, V, batch, /*strided=*/true, 77);
      States batched(p.spec, batch, /*nonzero=*/true, 78);
      States alone(p.spec, batch, /*nonzero=*/true, 78);
      std::vector<float> out(int64_t{batch} * H * V);
      std::vector<float> out_alone(out.size());
      const std::vector<AttentionState> views = batched.Views();
      RecurrentStep(p.spec, batch, p.Inputs(), views.data(), out.data());
      const std::vector<AttentionState> alone_views = alone.Views();
      for (int b = 0; b < batch; ++b) {
        AttentionInputs in = p.Inputs();
        in.q += b * p.q_stride;
        in.k += b * p.k_stride;
        in.v += b * p.v_stride;
        if (in.log_decay != nullptr) {
          in.log_decay +=
              b * (f.rule == UpdateRule::kVectorDecay ? int64_t{H} * K
                                                      : int64_t{H});
        }
        if (in.beta != nullptr) in.beta += int64_t{b} * H;
        RecurrentStep(p.spec, 1, in, &alone_views[b],
                      out_alone.data() + int64_t{b} * H * V);
      }
      INFO(f.name << " isa=" << KernelIsaName(isa));
      // Sessions are independent, so batching must not change a single bit.
      CHECK(out == out_alone);
      for (int b = 0; b < batch; ++b) {
        CHECK(batched.s[b] == alone.s[b]);
        if (f.normalize) CHECK(batched.z[b] == alone.z[b]);
      }
    }
  }
}

TEST_CASE(
    "RecurrentStep leaves the states of sessions outside the batch "
    "untouched",
    "[linear_attention][recurrent]") {
  for (const Family& f : kFamilies) {
    for (KernelIsa isa : KernelIsasToTest()) {
      ScopedKernelIsa scope(isa);
      const int H = 3, K = 32, V = 48;
      // Five states side by side in one arena with guard floats around each;
      // the batch holds sessions 0, 2 and 4 only.
      const int64_t s_floats = int64_t{H} * K * V;
      const int64_t z_floats = int64_t{H} * K;
      const int64_t guard = 19;
      const int64_t slot = guard + s_floats + z_floats;
      std::vector<float> arena = RandomNormal(5 * slot + guard, 31, 0.5f);
      const std::vector<float> before = arena;
      std::vector<AttentionState> batch_states;
      for (int b : {0, 2, 4}) {
        float* base = arena.data() + b * slot + guard;
        batch_states.push_back({base, f.normalize ? base + s_floats : nullptr});
      }
      const Problem p = MakeProblem(f, H, K, V, 3, /*strided=*/false, 32);
      std::vector<float> out(3 * H * V);
      RecurrentStep(p.spec, 3, p.Inputs(), batch_states.data(), out.data());
      INFO(f.name << " isa=" << KernelIsaName(isa));
      const int64_t z_used = f.normalize ? z_floats : 0;
      bool outside_untouched = true;
      bool inside_changed = false;
      for (int64_t i = 0; i < static_cast<int64_t>(arena.size()); ++i) {
        const int64_t b = i / slot;
        const int64_t off = i % slot;
        const bool in_batch_state = i < 5 * slot && b % 2 == 0 &&
                                    off >= guard &&
                                    off < guard + s_floats + z_used;
        if (!in_batch_state && arena[i] != before[i]) outside_untouched = false;
        if (in_batch_state && arena[i] != before[i]) inside_changed = true;
      }
      CHECK(outside_untouched);
      CHECK(inside_changed);
    }
  }
}

TEST_CASE(
    "RecurrentForward over T tokens equals any split of them into calls and "
    "T single-token steps",
    "[linear_attention][recurrent]") {
  for (const Family& f : kFamilies) {
    for (KernelIsa isa : KernelIsasToTest()) {
      ScopedKernelIsa scope(isa);
      const int H = 2, K = 48, V = 32;
      const int64_t T = 37;
      const Problem p = MakeProblem(f, H, K, V, T, /*strided=*/true, 55);
      States whole(p.spec, 1, /*nonzero=*/true, 56);
      States split(p.spec, 1, /*nonzero=*/true, 56);
      States steps(p.spec, 1, /*nonzero=*/true, 56);
      std::vector<float> out_whole(T * H * V), out_split(T * H * V),
          out_steps(T * H * V);
      RecurrentForward(p.spec, T, p.Inputs(), whole.Views()[0],
                       out_whole.data());
      auto inputs_from = [&](int64_t t) {
        AttentionInputs in = p.Inputs();
        in.q += t * p.q_stride;
        in.k += t * p.k_stride;
        in.v += t * p.v_stride;
        if (in.log_decay != nullptr) {
          in.log_decay +=
              t * (f.rule == UpdateRule::kVectorDecay ? int64_t{H} * K
                                                      : int64_t{H});
        }
        if (in.beta != nullptr) in.beta += t * H;
        return in;
      };
      const int64_t cut = 20;
      RecurrentForward(p.spec, cut, inputs_from(0), split.Views()[0],
                       out_split.data());
      RecurrentForward(p.spec, T - cut, inputs_from(cut), split.Views()[0],
                       out_split.data() + cut * H * V);
      for (int64_t t = 0; t < T; ++t) {
        const AttentionInputs in = inputs_from(t);
        const std::vector<AttentionState> views = steps.Views();
        RecurrentStep(p.spec, 1, in, views.data(),
                      out_steps.data() + t * H * V);
      }
      INFO(f.name << " isa=" << KernelIsaName(isa));
      // The same per-token arithmetic in every form: exact equality.
      CHECK(out_split == out_whole);
      CHECK(split.s[0] == whole.s[0]);
      CHECK(out_steps == out_whole);
      CHECK(steps.s[0] == whole.s[0]);
      if (f.normalize) CHECK(steps.z[0] == whole.z[0]);
    }
  }
}

TEST_CASE(
    "RecurrentStep and RecurrentForward give the same bits with any number "
    "of threads",
    "[linear_attention][recurrent]") {
  // Work is split among threads by (session, head); every head is computed
  // the same way whichever thread gets it, so the thread count may not
  // change a bit (1, fewer threads than heads, more threads than heads).
  const int saved_threads = omp_get_max_threads();
  for (const Family& f : kFamilies) {
    for (KernelIsa isa : KernelIsasToTest()) {
      ScopedKernelIsa scope(isa);
      INFO(f.name << " isa=" << KernelIsaName(isa));
      const int H = 2, K = 64, V = 200, batch = 3;
      const int64_t T = 9;
      const Problem step = MakeProblem(f, H, K, V, batch, true, 91);
      const Problem fwd = MakeProblem(f, H, K, V, T, true, 92);
      std::vector<float> step_out0, fwd_out0;
      std::vector<std::vector<float>> step_s0, fwd_s0;
      for (int threads : {1, 3, 16}) {
        omp_set_num_threads(threads);
        States step_states(step.spec, batch, /*nonzero=*/true, 93);
        States fwd_states(fwd.spec, 1, /*nonzero=*/true, 94);
        std::vector<float> step_out(int64_t{batch} * H * V);
        std::vector<float> fwd_out(T * H * V);
        const std::vector<AttentionState> views = step_states.Views();
        RecurrentStep(step.spec, batch, step.Inputs(), views.data(),
                      step_out.data());
        RecurrentForward(fwd.spec, T, fwd.Inputs(), fwd_states.Views()[0],
                         fwd_out.data());
        if (threads == 1) {
          step_out0 = step_out;
          fwd_out0 = fwd_out;
          step_s0 = step_states.s;
          fwd_s0 = fwd_states.s;
        } else {
          INFO("threads=" << threads);
          CHECK(step_out == step_out0);
          CHECK(fwd_out == fwd_out0);
          CHECK(step_states.s == step_s0);
          CHECK(fwd_states.s == fwd_s0);
        }
      }
    }
  }
  omp_set_num_threads(saved_threads);
}

TEST_CASE("RecurrentStep and RecurrentForward with no rows do nothing",
          "[linear_attention][recurrent]") {
  for (KernelIsa isa : KernelIsasToTest()) {
    ScopedKernelIsa scope(isa);
    const Problem p =
        MakeProblem(kFamilies[0], 2, 16, 16, 1, /*strided=*/false, 3);
    States st(p.spec, 1, /*nonzero=*/true, 4);
    const std::vector<float> before = st.s[0];
    const std::vector<AttentionState> views = st.Views();
    RecurrentStep(p.spec, 0, p.Inputs(), views.data(), nullptr);
    RecurrentForward(p.spec, 0, p.Inputs(), views[0], nullptr);
    CHECK(st.s[0] == before);
  }
}

TEST_CASE("AttentionStateBytes counts S and the normaliser",
          "[linear_attention][recurrent]") {
  AttentionSpec spec;
  spec.num_heads = 8;
  spec.key_dim = 128;
  spec.value_dim = 64;
  CHECK(AttentionStateBytes(spec) == 4 * 8 * 128 * 64);
  spec.normalize = true;
  CHECK(AttentionStateBytes(spec) == 4 * (8 * 128 * 64 + 8 * 128));
  spec.rule = UpdateRule::kDelta;
  CHECK(AttentionStateBytes(spec) == 4 * 8 * 128 * 64);
  CHECK(std::string(UpdateRuleName(UpdateRule::kGatedDelta)) == "gated_delta");
}

}  // namespace
}  // namespace linserve::kernels
