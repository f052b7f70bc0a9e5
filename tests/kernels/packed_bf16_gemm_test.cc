// The packed bf16 GEMM (kernels/internal/packed_bf16_gemm.h) on weights this
// test packs itself in oneDNN's "BA16a<NB>b2a" layout, for every block width,
// awkward sizes and 1..64 rows: against a double-precision reference, every
// body bitwise against the portable one, and each row's result independent
// of the other rows, of M and of how the columns are split over threads.
#include "kernels/internal/packed_bf16_gemm.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/bf16.h"
#include "kernels/cpu_features.h"
#include "tests/test_util.h"

namespace linserve::kernels::internal {
namespace {

using ::linserve::testing::RandomNormal;

struct Problem {
  int n = 0, k = 0, n_block = 0;
  int k_padded = 0;
  std::vector<bf16_t> w;       // [n, k] row-major, as a checkpoint has it.
  std::vector<bf16_t> packed;  // The blocked layout, zero padding.
  std::vector<float> bias;

  PackedBf16Weights View() const {
    return {.data = packed.data(),
            .n = n,
            .k_padded = k_padded,
            .n_block = n_block,
            .n_block_stride = int64_t{k_padded} * n_block};
  }
};

Problem MakeProblem(int n, int k, int n_block, uint64_t seed) {
  Problem p;
  p.n = n;
  p.k = k;
  p.n_block = n_block;
  p.k_padded = (k + 31) / 32 * 32;
  const int n_padded = (n + n_block - 1) / n_block * n_block;
  const std::vector<float> w = RandomNormal(int64_t{n} * k, seed);
  p.w.resize(w.size());
  for (size_t i = 0; i < w.size(); ++i) p.w[i] = FloatToBf16(w[i]);
  p.packed.assign(int64_t{n_padded} * p.k_padded, 0);
  for (int col = 0; col < n; ++col) {
    for (int row = 0; row < k; ++row) {
      const int64_t at = int64_t{col / n_block} * p.k_padded * n_block +
                         int64_t{row / 2} * 2 * n_block + (col % n_block) * 2 +
                         row % 2;
      p.packed[at] = p.w[int64_t{col} * k + row];
    }
  }
  p.bias = RandomNormal(n, seed + 1);
  return p;
}

// Rows of x in bf16 with k_padded columns, zero past k.
std::vector<bf16_t> MakeInput(const Problem& p, int m, uint64_t seed) {
  const std::vector<float> x = RandomNormal(int64_t{m} * p.k, seed);
  std::vector<bf16_t> padded(int64_t{m} * p.k_padded, 0);
  for (int r = 0; r < m; ++r) {
    for (int i = 0; i < p.k; ++i) {
      padded[int64_t{r} * p.k_padded + i] =
          FloatToBf16(x[int64_t{r} * p.k + i]);
    }
  }
  return padded;
}

// Checks y against sums in double, within fp32 rounding of k products.
void CheckAgainstReference(const Problem& p, const std::vector<bf16_t>& x,
                           int m, const float* bias,
                           const std::vector<float>& y) {
  for (int r = 0; r < m; ++r) {
    for (int col = 0; col < p.n; ++col) {
      double sum = 0.0, magnitude = 0.0;
      for (int i = 0; i < p.k; ++i) {
        const double product =
            static_cast<double>(Bf16ToFloat(x[int64_t{r} * p.k_padded + i])) *
            Bf16ToFloat(p.w[int64_t{col} * p.k + i]);
        sum += product;
        magnitude += std::fabs(product);
      }
      if (bias != nullptr) sum += bias[col];
      const double bound = 2.0 * p.k * 6e-8 * magnitude + 1e-6;
      const double got = y[int64_t{r} * p.n + col];
      if (std::fabs(got - sum) > bound) {
        FAIL("row " << r << " column " << col << ": " << got << " vs " << sum
                    << " (bound " << bound << ")");
      }
    }
  }
}

bool BitwiseEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), sizeof(float) * a.size()) == 0;
}

struct Body {
  const char* name;
  // Runs the body on column groups [begin, end).
  void (*run)(const bf16_t*, int64_t, int, const PackedBf16Weights&,
              const float*, float*, int64_t, int, int);
};

std::vector<Body> BodiesOfThisCpu() {
  std::vector<Body> bodies = {{"portable", PackedBf16GemmPortable}};
#if LINSERVE_HAVE_AVX512_BODIES
  if (DetectedCpuFeatures().avx512f && DetectedCpuFeatures().avx512bw) {
    bodies.push_back(
        {"avx512 (two FMAs per pair)",
         [](const bf16_t* x, int64_t ldx, int m, const PackedBf16Weights& w,
            const float* bias, float* y, int64_t ldy, int begin, int end) {
           avx512::internal::PackedBf16Gemm(x, ldx, m, w, bias, y, ldy, begin,
                                            end, false);
         }});
  }
  if (DetectedCpuFeatures().avx512_bf16) {
    bodies.push_back(
        {"avx512bf16 (VDPBF16PS)",
         [](const bf16_t* x, int64_t ldx, int m, const PackedBf16Weights& w,
            const float* bias, float* y, int64_t ldy, int begin, int end) {
           avx512::internal::PackedBf16Gemm(x, ldx, m, w, bias, y, ldy, begin,
                                            end, true);
         }});
  }
#endif
  return bodies;
}

int Groups(const Problem& p) {
  return (p.n + kPackedColumnGroup - 1) / kPackedColumnGroup;
}

TEST_CASE(
    "every packed bf16 body matches the double reference and the portable "
    "body bitwise, for every block width and awkward sizes",
    "[packed_bf16]") {
  struct Size {
    int n, k;
  };
  const Size sizes[] = {{1, 1},     {5, 3},    {17, 33},   {70, 100},
                        {129, 257}, {200, 64}, {700, 1000}};
  const int ms[] = {1, 2, 3, 4, 5, 9, 64};
  for (int n_block : {16, 32, 48, 64}) {
    for (const Size& size : sizes) {
      const Problem p = MakeProblem(size.n, size.k, n_block, 11 + size.n);
      for (int m : ms) {
        for (bool with_bias : {false, true}) {
          INFO("NB " << n_block << ", n " << p.n << ", k " << p.k << ", m " << m
                     << (with_bias ? ", bias" : ""));
          const std::vector<bf16_t> x = MakeInput(p, m, 5 + m);
          const float* bias = with_bias ? p.bias.data() : nullptr;
          std::vector<float> portable;
          for (const Body& body : BodiesOfThisCpu()) {
            INFO(body.name);
            std::vector<float> y(int64_t{m} * p.n, NAN);
            body.run(x.data(), p.k_padded, m, p.View(), bias, y.data(), p.n, 0,
                     Groups(p));
            if (portable.empty()) {
              CheckAgainstReference(p, x, m, bias, y);
              portable = y;
            } else {
              CHECK(BitwiseEqual(y, portable));
            }
          }
        }
      }
    }
  }
}

TEST_CASE(
    "a row's result does not depend on the other rows, on M or on the "
    "split of the columns over threads",
    "[packed_bf16]") {
  const Problem p = MakeProblem(300, 515, 64, 3);
  constexpr int kRows = kPackedBf16GemmMaxRows;
  const std::vector<bf16_t> x = MakeInput(p, kRows, 9);
  std::vector<float> all(int64_t{kRows} * p.n);
  PackedBf16Gemm(x.data(), p.k_padded, kRows, p.View(), p.bias.data(),
                 all.data(), p.n);
  CheckAgainstReference(p, x, kRows, p.bias.data(), all);
  for (int r : {0, 1, 5, 31, 63}) {
    INFO("row " << r << " alone");
    std::vector<float> alone(p.n);
    PackedBf16Gemm(x.data() + int64_t{r} * p.k_padded, p.k_padded, 1, p.View(),
                   p.bias.data(), alone.data(), p.n);
    CHECK(BitwiseEqual(alone, std::vector<float>(all.begin() + r * p.n,
                                                 all.begin() + (r + 1) * p.n)));
  }
  for (const Body& body : BodiesOfThisCpu()) {
    INFO(body.name << ", columns in uneven ranges");
    std::vector<float> split(all.size(), NAN);
    const int groups = Groups(p);
    const int cuts[] = {0, 1, 3, 7, 8, 13, groups};
    for (int i = 0; i + 1 < static_cast<int>(std::size(cuts)); ++i) {
      body.run(x.data(), p.k_padded, kRows, p.View(), p.bias.data(),
               split.data(), p.n, cuts[i], cuts[i + 1]);
    }
    CHECK(BitwiseEqual(split, all));
  }
}

}  // namespace
}  // namespace linserve::kernels::internal
