// How linserve's kernels share out work inside an OpenMP parallel region.
//
// Every parallel region runs on the whole team (omp_get_max_threads()), never
// a smaller one, even where fewer threads have work (a decode step's 4 heads
// on 16 cores): when a region asks for fewer threads than the one before,
// libgomp ends the surplus threads, and the next full-size region (oneDNN's,
// or the next GEMM's) has to create them again — on a 16-core VM that cost
// about 900 microseconds per region, more than the GEMM it preceded. Threads
// past the working ones get an empty range and wait at the closing barrier.
//
//   #pragma omp parallel
//   {
//     const ThreadRange r = FullTeamRange(num_items, workers);
//     for (int64_t i = r.begin; i < r.end; ++i) ...
//   }
#ifndef LINSERVE_KERNELS_INTERNAL_OMP_TEAM_H_
#define LINSERVE_KERNELS_INTERNAL_OMP_TEAM_H_

#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace linserve::kernels::internal {

struct ThreadRange {
  int64_t begin = 0;
  int64_t end = 0;
};

// Inside a parallel region: this thread's contiguous share of `items` split
// over the first min(workers, team size) threads; empty for the others.
inline ThreadRange FullTeamRange(int64_t items, int64_t workers) {
  const int64_t n =
      std::max<int64_t>(1, std::min<int64_t>(workers, omp_get_num_threads()));
  const int64_t t = omp_get_thread_num();
  if (t >= n) return {items, items};
  return {items * t / n, items * (t + 1) / n};
}

}  // namespace linserve::kernels::internal

#endif  // LINSERVE_KERNELS_INTERNAL_OMP_TEAM_H_
