// Timing and machine-limit probes shared by the benchmarks (kernels_bench,
// engine_bench): a median-of-repetitions timer, the oneDNN GEMM peak (one
// large square matmul) and streaming read / read+write bandwidth over a
// buffer of a given size, so every benchmark compares its code with limits
// measured in the same run. Header-only; the probes use all OpenMP threads.
//
//   const double peak = bench::GemmPeak(dnnl::memory::data_type::bf16, 2048);
//   const double bw = bench::ReadBandwidth(int64_t{256} << 20);
//   const double s = bench::TimeIt([&] { layer->Forward(x, m, y); });
#ifndef LINSERVE_BENCH_BENCH_UTIL_H_
#define LINSERVE_BENCH_BENCH_UTIL_H_

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "kernels/cpu_features.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace linserve::bench {

// Seconds each TimeIt measurement lasts at least (--quick lowers it).
inline double g_min_seconds = 0.5;

// Median seconds per call of `fn`, after a warm-up, over repetitions that
// together last at least g_min_seconds.
inline double TimeIt(const std::function<void()>& fn) {
  using Clock = std::chrono::steady_clock;
  fn();
  const auto probe_start = Clock::now();
  fn();
  const double probe =
      std::chrono::duration<double>(Clock::now() - probe_start).count();
  const int reps = std::clamp(
      static_cast<int>(g_min_seconds / 7 / std::max(probe, 1e-7)), 1, 100000);
  std::vector<double> samples;
  const auto bench_start = Clock::now();
  while (samples.size() < 7 ||
         std::chrono::duration<double>(Clock::now() - bench_start).count() <
             g_min_seconds) {
    const auto start = Clock::now();
    for (int i = 0; i < reps; ++i) fn();
    samples.push_back(
        std::chrono::duration<double>(Clock::now() - start).count() / reps);
    if (samples.size() >= 200) break;
  }
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

inline std::vector<float> Random(int64_t n, uint64_t seed, float lo = -1.0f,
                                 float hi = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// The fastest of single calls of `fn` over about `seconds` (after a
// warm-up; at most 1000 calls): the best the machine does, for the limits
// below. On a shared machine interference only ever slows a call down, so
// the fastest call is the steadiest estimate of a limit, and a ratio against
// it never flatters the code measured.
inline double FastestTimeIt(const std::function<void()>& fn, double seconds) {
  using Clock = std::chrono::steady_clock;
  fn();
  double best = 1e30;
  const auto bench_start = Clock::now();
  for (int i = 0; i < 1000; ++i) {
    const auto start = Clock::now();
    fn();
    best = std::min(
        best, std::chrono::duration<double>(Clock::now() - start).count());
    if (std::chrono::duration<double>(Clock::now() - bench_start).count() >=
        seconds) {
      break;
    }
  }
  return best;
}

// ---- Machine limits ------------------------------------------------------

// FLOP/s of one large square oneDNN matmul (the best the library does here):
// its fastest call over 2 x g_min_seconds.
inline double GemmPeak(dnnl::memory::data_type type, int64_t n) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const dnnl::memory::desc a_md({n, n}, type, tag::ab);
  const dnnl::memory::desc b_any({n, n}, type, tag::any);
  const dnnl::memory::desc c_md({n, n}, dt::f32, tag::ab);
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_any, c_md),
                                  engine);
  dnnl::memory a(a_md, engine), b(pd.weights_desc(), engine), c(c_md, engine);
  std::memset(a.get_data_handle(), 0x3c, a_md.get_size());
  std::memset(b.get_data_handle(), 0x3c, pd.weights_desc().get_size());
  dnnl::matmul mm(pd);
  const double s = FastestTimeIt(
      [&] {
        mm.execute(
            stream,
            {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
        stream.wait();
      },
      2 * g_min_seconds);
  std::printf("  %-40s %s\n", "", pd.impl_info_str());
  return 2.0 * n * n * n / s;
}

// The bandwidth probes below are the best streams this CPU runs: AVX-512
// bodies where available (so that the kernels are not compared with a slower
// loop), else plain loops with independent accumulators. They run on all
// threads over a buffer of the working-set size asked for.
// Each thread's range is swept as `streams` interleaved sequential streams,
// one 64-byte line of each in turn: more streams in flight can get more out
// of the memory system, so the probes below keep the best of 1, 2 and 4.
#if defined(__x86_64__)
inline __attribute__((target("avx512f"))) float SumAvx512(const float* p,
                                                          int64_t n,
                                                          int streams) {
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(),
                   _mm512_setzero_ps(), _mm512_setzero_ps()};
  const int64_t part = n / streams / 16 * 16;
  for (int64_t i = 0; i < part; i += 16) {
    for (int s = 0; s < streams; ++s) {
      acc[s] = _mm512_add_ps(acc[s], _mm512_loadu_ps(p + s * part + i));
    }
  }
  float sum = 0;
  for (int s = 0; s < streams; ++s) sum += _mm512_reduce_add_ps(acc[s]);
  return sum;
}

inline __attribute__((target("avx512f"))) void ScaleAvx512(float* p, int64_t n,
                                                           int streams) {
  const __m512 f = _mm512_set1_ps(0.999f);
  const int64_t part = n / streams / 16 * 16;
  for (int64_t i = 0; i < part; i += 16) {
    for (int s = 0; s < streams; ++s) {
      float* q = p + s * part + i;
      _mm512_storeu_ps(q, _mm512_mul_ps(f, _mm512_loadu_ps(q)));
    }
  }
}
#endif

inline bool UseAvx512() {
  return kernels::ActiveKernelIsa() == kernels::KernelIsa::kAvx512;
}

inline float SumPortable(const float* p, int64_t n, int streams) {
  float acc[4][16] = {};
  const int64_t part = n / streams / 16 * 16;
  for (int64_t i = 0; i < part; i += 16) {
    for (int s = 0; s < streams; ++s) {
      for (int j = 0; j < 16; ++j) acc[s][j] += p[s * part + i + j];
    }
  }
  float sum = 0;
  for (int s = 0; s < streams; ++s) {
    for (float a : acc[s]) sum += a;
  }
  return sum;
}

inline float Sum(const float* p, int64_t n, int streams) {
#if defined(__x86_64__)
  if (UseAvx512()) return SumAvx512(p, n, streams);
#endif
  return SumPortable(p, n, streams);
}

inline void Scale(float* p, int64_t n, int streams) {
#if defined(__x86_64__)
  if (UseAvx512()) return ScaleAvx512(p, n, streams);
#endif
  const int64_t part = n / streams / 16 * 16;
  for (int64_t i = 0; i < part; i += 16) {
    for (int s = 0; s < streams; ++s) {
      for (int j = 0; j < 16; ++j) p[s * part + i + j] *= 0.999f;
    }
  }
}

// Splits [0, n) into one contiguous range per thread and runs fn on each.
template <typename Fn>
void ForEachThreadRange(int64_t n, Fn fn) {
#pragma omp parallel
  {
    const int64_t threads = omp_get_num_threads();
    const int64_t t = omp_get_thread_num();
    const int64_t begin = n * t / threads / 64 * 64;
    const int64_t end = t + 1 == threads ? n : n * (t + 1) / threads / 64 * 64;
    fn(begin, end);
  }
}

// Bytes/s of a read-only sweep over `bytes`: streaming a layer's weights.
inline double ReadBandwidth(int64_t bytes) {
  const int64_t n = bytes / sizeof(float);
  std::vector<float> x(n, 1.0f);
  const float* p = x.data();
  std::vector<float> sums(256);
  double best = 1e30;
  for (int streams : {1, 2, 4}) {
    best = std::min(best, TimeIt([&] {
                      ForEachThreadRange(n, [&](int64_t b, int64_t e) {
                        sums[omp_get_thread_num()] +=
                            Sum(p + b, e - b, streams);
                      });
                    }));
  }
  return bytes / best;
}

// Bytes/s (read + written) of an in-place read-modify-write sweep over
// `bytes`: the access pattern of a recurrent state update.
inline double ReadWriteBandwidth(int64_t bytes) {
  const int64_t n = bytes / sizeof(float);
  std::vector<float> x(n, 1.0f);
  float* p = x.data();
  double best = 1e30;
  for (int streams : {1, 2, 4}) {
    best = std::min(best, TimeIt([&] {
                      ForEachThreadRange(n, [&](int64_t b, int64_t e) {
                        Scale(p + b, e - b, streams);
                      });
                    }));
  }
  return 2.0 * bytes / best;
}

}  // namespace linserve::bench

#endif  // LINSERVE_BENCH_BENCH_UTIL_H_
