// The SwiGLU MLP of every block (spec §1.4): down( silu(x Wg^T) * (x Wu^T) ),
// with gate_proj and up_proj fused into one DenseLayer [2I, D]. Scratch from
// the caller's Workspace; one caller at a time.
#ifndef LINSERVE_ENGINE_MLP_H_
#define LINSERVE_ENGINE_MLP_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/token_mixer.h"
#include "engine/weight_loader.h"
#include "kernels/dense_layer.h"

namespace linserve::engine {

class Mlp {
 public:
  // `prefix` is "model.layers.{i}.mlp.".
  static absl::StatusOr<std::unique_ptr<Mlp>> Create(
      const std::string& prefix, const WeightLoader& weights);

  // x [rows, D] -> out [rows, D]. Uses workspace slots 0 and 1.
  void Forward(const float* x, int64_t rows, Workspace& ws, float* out);

 private:
  Mlp() = default;
  std::unique_ptr<kernels::DenseLayer> gate_up_;  // [2I, D]
  std::unique_ptr<kernels::DenseLayer> down_;     // [D, I]
};

}  // namespace linserve::engine

#endif  // LINSERVE_ENGINE_MLP_H_
