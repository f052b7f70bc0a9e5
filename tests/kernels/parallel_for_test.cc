// kernels::ParallelFor's split (every item once, aligned blocks, small calls
// and nested calls on the calling thread), and the kernels that run on it:
// an elementwise kernel, a bf16 conversion or a short conv gives bitwise the
// same result on a team of six as on one thread, for every kernel body, on
// sizes that cross the parallel threshold with ragged tails.
#include "kernels/parallel_for.h"

#include <omp.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

#include "kernels/bf16.h"
#include "kernels/cpu_features.h"
#include "kernels/elementwise.h"
#include "kernels/short_conv.h"
#include "tests/kernels/omp_test_util.h"
#include "tests/test_util.h"

namespace linserve::kernels {
namespace {

using ::linserve::testing::KernelIsasToTest;
using ::linserve::testing::RandomNormal;
using ::linserve::testing::RandomVector;
using ::linserve::testing::ScopedTeamSize;

struct Block {
  int64_t begin;
  int64_t end;
  int thread;
  bool operator<(const Block& o) const { return begin < o.begin; }
};

std::vector<Block> Blocks(int64_t n, int64_t grain, int64_t align) {
  std::vector<Block> blocks;
  std::mutex mu;
  ParallelFor(n, grain, align, [&](int64_t begin, int64_t end) {
    std::lock_guard<std::mutex> lock(mu);
    blocks.push_back({begin, end, omp_get_thread_num()});
  });
  std::sort(blocks.begin(), blocks.end());
  return blocks;
}

TEST_CASE(
    "ParallelFor covers every item once, in aligned blocks of at least "
    "the grain",
    "[parallel_for]") {
  const ScopedTeamSize six(6);
  for (const int64_t n : {1, 63, 64, 65, 1000, 4097, 100003}) {
    for (const int64_t grain : {1, 64, 1000, 1 << 14}) {
      for (const int64_t align : {1, 16, 64}) {
        CAPTURE(n, grain, align);
        const std::vector<Block> blocks = Blocks(n, grain, align);
        REQUIRE(!blocks.empty());
        CHECK(blocks.front().begin == 0);
        CHECK(blocks.back().end == n);
        CHECK(blocks.size() <= 6);
        for (size_t i = 0; i < blocks.size(); ++i) {
          CHECK(blocks[i].begin < blocks[i].end);
          if (i + 1 < blocks.size()) {
            CHECK(blocks[i].end == blocks[i + 1].begin);
            CHECK(blocks[i].end % align == 0);
          }
          // Split only where every block gets about a grain of work.
          if (blocks.size() > 1)
            CHECK(blocks[i].end - blocks[i].begin >= grain / 2);
        }
        if (n < 2 * grain) {
          REQUIRE(blocks.size() == 1);
          CHECK(blocks[0].thread == 0);  // The caller's own thread.
        }
      }
    }
  }
  // Enough work for every thread: the whole team gets a block.
  CHECK(Blocks(6 * 1000, 1000, 1).size() == 6);
}

TEST_CASE(
    "ParallelFor called inside a parallel region runs on the calling "
    "thread",
    "[parallel_for]") {
  const ScopedTeamSize four(4);
  std::vector<int> blocks_seen(4, 0);
  std::vector<int> foreign(4, 0);
#pragma omp parallel
  {
    const int me = omp_get_thread_num();
    ParallelFor(1 << 20, 1, 1, [&](int64_t begin, int64_t end) {
      ++blocks_seen[me];
      if (omp_get_thread_num() != me || begin != 0 || end != (1 << 20)) {
        ++foreign[me];
      }
    });
  }
  for (int t = 0; t < 4; ++t) {
    CHECK(blocks_seen[t] == 1);
    CHECK(foreign[t] == 0);
  }
}

// Runs `kernel` (which writes `out`) on one thread and on six, for every
// kernel body, and requires bitwise equal outputs.
template <typename T>
void CheckThreadCountInvariant(const std::function<void()>& kernel,
                               const std::vector<T>& out) {
  for (const KernelIsa isa : KernelIsasToTest()) {
    CAPTURE(KernelIsaName(isa));
    const ScopedKernelIsa scope(isa);
    std::vector<T> one;
    {
      const ScopedTeamSize single(1);
      kernel();
      one = out;
    }
    const ScopedTeamSize six(6);
    kernel();
    REQUIRE(out.size() == one.size());
    CHECK(std::memcmp(out.data(), one.data(), out.size() * sizeof(T)) == 0);
  }
}

TEST_CASE(
    "elementwise kernels give bitwise the same result on six threads "
    "as on one",
    "[parallel_for]") {
  // Past 6 x kElementwiseGrain, with a tail that is no multiple of 16.
  const int64_t n = 6 * kElementwiseGrain + 16 * 37 + 5;
  const std::vector<float> a = RandomNormal(n, 1, 4.0f);
  const std::vector<float> b = RandomNormal(n, 2, 4.0f);
  std::vector<float> y(n);
  CheckThreadCountInvariant<float>([&] { Silu(a.data(), n, y.data()); }, y);
  CheckThreadCountInvariant<float>(
      [&] { SwiGlu(a.data(), b.data(), n, y.data()); }, y);
  CheckThreadCountInvariant<float>([&] { Sigmoid(a.data(), n, y.data()); }, y);
  CheckThreadCountInvariant<float>([&] { Softplus(a.data(), n, y.data()); }, y);
  CheckThreadCountInvariant<float>([&] { LogSigmoid(a.data(), n, y.data()); },
                                   y);
  CheckThreadCountInvariant<float>([&] { Scale(a.data(), n, 0.3f, y.data()); },
                                   y);
  CheckThreadCountInvariant<float>(
      [&] { Multiply(a.data(), b.data(), n, y.data()); }, y);
  CheckThreadCountInvariant<float>(
      [&] { Add(a.data(), b.data(), n, y.data()); }, y);

  // Row kernels: rows of an awkward width, more rows than one grain holds.
  const int dim = 333;
  const int64_t rows = n / dim;
  const std::vector<float> w = RandomNormal(dim, 3, 1.0f);
  CheckThreadCountInvariant<float>(
      [&] { RmsNorm(a.data(), w.data(), rows, dim, 1e-6f, y.data()); }, y);
  CheckThreadCountInvariant<float>(
      [&] {
        GatedRmsNorm(a.data(), b.data(), w.data(), rows, dim, 1e-6f, y.data());
      },
      y);
  CheckThreadCountInvariant<float>(
      [&] { L2Normalize(a.data(), rows, dim, 1e-6f, y.data()); }, y);
  CheckThreadCountInvariant<float>(
      [&] { SumNormalize(a.data(), rows, dim, 1e-4f, y.data()); }, y);
}

TEST_CASE(
    "bf16 conversions give bitwise the same result on six threads as "
    "on one",
    "[parallel_for]") {
  const int64_t n = 6 * kElementwiseGrain + 16 * 11 + 3;
  const std::vector<float> x = RandomNormal(n, 4, 100.0f);
  std::vector<bf16_t> bf(n);
  CheckThreadCountInvariant<bf16_t>(
      [&] { ConvertFloatToBf16(x.data(), n, bf.data()); }, bf);
  std::vector<float> back(n);
  CheckThreadCountInvariant<float>(
      [&] { ConvertBf16ToFloat(bf.data(), n, back.data()); }, back);
  std::vector<uint16_t> half(n);
  for (int64_t i = 0; i < n; ++i) half[i] = static_cast<uint16_t>(i * 7919);
  CheckThreadCountInvariant<float>(
      [&] { ConvertHalfToFloat(half.data(), n, back.data()); }, back);
}

TEST_CASE(
    "short convs split over tokens or sessions give bitwise the same "
    "outputs and caches on six threads as on one",
    "[parallel_for]") {
  // Rows of 1000 channels x width 4: blocks of at least 4 rows (tokens of a
  // call, sessions of a step); 1000 channels are no multiple of the bodies'
  // 256-channel tiles. The call's first tokens read the starting cache.
  const int channels = 1000;
  const int width = 4;
  const int64_t tokens = 197;
  const int64_t x_stride = channels + 24;
  const std::vector<float> x = RandomNormal(tokens * x_stride, 5, 1.0f);
  const std::vector<float> w = RandomNormal(int64_t{channels} * width, 6, 0.5f);
  const std::vector<float> cache0 =
      RandomNormal(int64_t{channels} * width, 7, 1.0f);
  // Output and final cache together, so both are compared.
  std::vector<float> state(tokens * channels + int64_t{channels} * width);
  CheckThreadCountInvariant<float>(
      [&] {
        std::copy(cache0.begin(), cache0.end(),
                  state.begin() + tokens * channels);
        CausalShortConv(x.data(), x_stride, tokens, channels, w.data(), width,
                        ConvActivation::kSilu, state.data() + tokens * channels,
                        state.data());
      },
      state);

  // A decode step of many sessions, each with its own cache.
  const int batch = 40;
  std::vector<float> step(int64_t{batch} * channels * (1 + width));
  CheckThreadCountInvariant<float>(
      [&] {
        std::vector<float*> caches(batch);
        for (int b = 0; b < batch; ++b) {
          caches[b] = step.data() + int64_t{batch} * channels +
                      int64_t{b} * channels * width;
          std::copy(cache0.begin(), cache0.end(), caches[b]);
        }
        CausalShortConvStep(x.data(), x_stride, batch, channels, w.data(),
                            width, ConvActivation::kSilu, caches.data(),
                            step.data());
      },
      step);
}

}  // namespace
}  // namespace linserve::kernels
