// SwiGLU MLP (see mlp.h).
#include "engine/mlp.h"

#include "common/status_macros.h"
#include "kernels/elementwise.h"
#include "kernels/parallel_for.h"

namespace linserve::engine {

absl::StatusOr<std::unique_ptr<Mlp>> Mlp::Create(const std::string& prefix,
                                                 const WeightLoader& weights) {
  auto mlp = std::unique_ptr<Mlp>(new Mlp());
  ASSIGN_OR_RETURN(mlp->gate_up_, weights.Dense({prefix + "gate_proj.weight",
                                                 prefix + "up_proj.weight"}));
  ASSIGN_OR_RETURN(mlp->down_, weights.Dense({prefix + "down_proj.weight"}));
  return mlp;
}

void Mlp::Forward(const float* x, int64_t rows, Workspace& ws, float* out) {
  const int64_t inter = down_->in_features();
  float* gate_up = ws.Get(0, rows * 2 * inter);
  float* act = ws.Get(1, rows * inter);
  gate_up_->Forward(x, rows, gate_up);
  kernels::ParallelForRows(rows, 2 * inter, kernels::kElementwiseGrain,
                           [&](int64_t begin, int64_t end) {
                             for (int64_t r = begin; r < end; ++r) {
                               const float* g = gate_up + r * 2 * inter;
                               kernels::SwiGlu(g, g + inter, inter,
                                               act + r * inter);
                             }
                           });
  down_->Forward(act, rows, out);
}

}  // namespace linserve::engine
