// The kernels keep the OpenMP team whole (kernels/internal/omp_team.h): a
// call with less parallel work than threads (a decode step's few heads, a
// small GEMM) must not shrink the team, because libgomp then ends the
// surplus threads and the next full-size region has to create them again.
// Checked by the ids of the team's threads before and after each kind of
// call.
#include <omp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <vector>

#include "kernels/bf16.h"
#include "kernels/internal/packed_bf16_gemm.h"
#include "kernels/linear_attention.h"
#include "tests/kernels/linear_attention_test_problem.h"
#include "tests/kernels/omp_test_util.h"

namespace linserve::kernels {
namespace {

using attention_test::kFamilies;
using attention_test::MakeProblem;
using attention_test::Problem;
using ::linserve::testing::ScopedTeamSize;

// The kernel thread ids of a full-size team, in team order. libgomp reuses
// its threads from region to region while the team never shrinks; a thread
// it ended and created again has a new id.
std::vector<pid_t> TeamThreadIds() {
  std::vector<pid_t> ids(omp_get_max_threads(), 0);
#pragma omp parallel
  ids[omp_get_thread_num()] = static_cast<pid_t>(syscall(SYS_gettid));
  return ids;
}

TEST_CASE(
    "kernels with fewer parallel work items than threads keep the OpenMP "
    "team whole",
    "[omp]") {
  // More threads than work items, whatever the machine's core count.
  const ScopedTeamSize six_threads(6);
  const std::vector<pid_t> team = TeamThreadIds();
  REQUIRE(team.size() == 6);
  REQUIRE(team == TeamThreadIds());

  const Problem p = MakeProblem(kFamilies[6], /*H=*/2, 128, 128, 256,
                                /*strided=*/false, 3);
  const int64_t state_floats =
      AttentionStateBytes(p.spec) / static_cast<int64_t>(sizeof(float));
  std::vector<float> out(p.rows * 2 * 128);
  std::vector<float> s(2 * state_floats, 0.0f);
  const AttentionState states[2] = {{s.data(), nullptr},
                                    {s.data() + state_floats, nullptr}};

  SECTION("RecurrentStep of 2 sessions x 2 heads") {
    RecurrentStep(p.spec, 2, p.Inputs(), states, out.data());
  }
  SECTION("RecurrentForward of 2 heads") {
    RecurrentForward(p.spec, p.rows, p.Inputs(), states[0], out.data());
  }
  SECTION("ChunkwiseForward of 2 heads") {
    ChunkwiseForward(p.spec, p.rows, p.Inputs(), states[0], out.data());
  }
  SECTION("PackedBf16Gemm of 3 column groups") {
    internal::PackedBf16Weights w;
    std::vector<bf16_t> packed(64 * 4096, FloatToBf16(0.01f));
    w.data = packed.data();
    w.n = 48;
    w.k_padded = 4096;
    w.n_block = 64;
    w.n_block_stride = int64_t{4096} * 64;
    std::vector<bf16_t> x(4096, FloatToBf16(1.0f));
    std::vector<float> y(48);
    internal::PackedBf16Gemm(x.data(), 4096, 1, w, nullptr, y.data(), 48);
    CHECK(y[47] > 0.0f);
  }
  CHECK(TeamThreadIds() == team);
}

}  // namespace
}  // namespace linserve::kernels
