// ParallelFor (kernels/parallel_for.h).
#include "kernels/parallel_for.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "kernels/internal/omp_team.h"

namespace linserve::kernels {

void ParallelFor(int64_t n, int64_t grain, int64_t align,
                 absl::FunctionRef<void(int64_t begin, int64_t end)> body) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  align = std::max<int64_t>(align, 1);
  // Blocks are counted in units of `align` items; the last unit may be short.
  const int64_t units = (n + align - 1) / align;
  const int64_t workers = std::min<int64_t>(
      {n / grain, units, static_cast<int64_t>(omp_get_max_threads())});
  if (workers <= 1 || omp_in_parallel()) {
    body(0, n);
    return;
  }
  // The whole team, never a smaller one (kernels/internal/omp_team.h): the
  // first `workers` threads get a block, the others wait at the barrier.
#pragma omp parallel
  {
    const internal::ThreadRange r = internal::FullTeamRange(units, workers);
    const int64_t begin = std::min(n, r.begin * align);
    const int64_t end = std::min(n, r.end * align);
    if (begin < end) body(begin, end);
  }
}

void ParallelForRows(int64_t rows, int64_t row_elements, int64_t grain,
                     absl::FunctionRef<void(int64_t begin, int64_t end)> body) {
  const int64_t grain_rows =
      std::max<int64_t>(1, grain / std::max<int64_t>(row_elements, 1));
  ParallelFor(rows, grain_rows, 1, body);
}

}  // namespace linserve::kernels
