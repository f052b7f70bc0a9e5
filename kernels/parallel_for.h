// ParallelFor: how a kernel or a model layer spreads independent per-element
// (or per-row) work over the OpenMP team. Prefill runs every layer on pieces
// of up to 1024 tokens; its GEMMs and recurrent core use all cores, and an
// activation, a norm or a bf16 conversion left on one thread while the
// others wait at the next barrier costs more than its GEMM on a 16-core CPU.
//
// The range [0, n) is cut into contiguous blocks, one per thread, each at
// least `grain` items (so small calls stay on the calling thread, where a
// fork would cost more than the work), and every block but the last starts
// and ends on a multiple of `align` items. Each item is computed by the same
// code whatever the split, so results are bitwise independent of the thread
// count; `align` (a multiple of the vector width, in elements) also keeps
// the split from moving elements between a vectorised loop and its scalar
// tail. Regions use the whole team (kernels/internal/omp_team.h). Called from
// inside a parallel region, the body runs on the calling thread alone.
//
//   kernels::ParallelFor(n, kernels::kElementwiseGrain, 64,
//                        [&](int64_t begin, int64_t end) {
//                          Body(x + begin, end - begin, y + begin);
//                        });
#ifndef LINSERVE_KERNELS_PARALLEL_FOR_H_
#define LINSERVE_KERNELS_PARALLEL_FOR_H_

#include <cstdint>

#include "absl/functional/function_ref.h"

namespace linserve::kernels {

// Elements of a cheap elementwise operation (an add, a bf16 conversion, an
// exp) worth a thread of their own: below about 10 microseconds of work a
// fork/join of a 16-thread team costs as much as it saves.
constexpr int64_t kElementwiseGrain = int64_t{1} << 14;

// Calls body(begin, end) on disjoint blocks covering [0, n), on up to every
// thread of the team. `grain` >= 1; `align` >= 1.
void ParallelFor(int64_t n, int64_t grain, int64_t align,
                 absl::FunctionRef<void(int64_t begin, int64_t end)> body);

// Rows of `row_elements` elements each, `grain` counted in elements: blocks
// of whole rows, at least max(1, grain / row_elements) rows each.
void ParallelForRows(int64_t rows, int64_t row_elements, int64_t grain,
                     absl::FunctionRef<void(int64_t begin, int64_t end)> body);

}  // namespace linserve::kernels

#endif  // LINSERVE_KERNELS_PARALLEL_FOR_H_
