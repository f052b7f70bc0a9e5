// Turns a validated checkpoint's tensors into what the layers keep: fp32
// vectors (norm, conv, gate parameters) and prepacked kernels::DenseLayer
// projections (several [out_i, in] tensors may be fused into one layer by
// stacking their rows). Handles f32/bf16/f16 sources and unaligned data.
//
// ValidateCheckpoint checks the checkpoint against ExpectedTensors first, so
// the getters can assume every tensor is present with the right shape.
// Owns nothing from the checkpoint: everything returned is a copy, so the
// mapping can be released after loading. One loader thread.
//
//   RETURN_IF_ERROR(ValidateCheckpoint(config, *ckpt));
//   WeightLoader w(*ckpt, expected, DType::kBfloat16);
//   ASSIGN_OR_RETURN(auto qkv, w.Dense({"a.q_proj.weight",
//   "a.k_proj.weight"}));
#ifndef LINSERVE_ENGINE_WEIGHT_LOADER_H_
#define LINSERVE_ENGINE_WEIGHT_LOADER_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_config.h"
#include "engine/safetensors.h"
#include "kernels/dense_layer.h"
#include "kernels/dtype.h"

namespace linserve::engine {

// Missing tensors (InvalidArgument listing each name with its expected
// shape), tensors of the wrong shape (naming tensor, expected and found
// shapes), and unexpected extra tensors (listing their names). Marks every
// expected tensor present as used.
absl::Status ValidateCheckpoint(const std::vector<ExpectedTensor>& expected,
                                CheckpointReader& checkpoint);

class WeightLoader {
 public:
  // `compute_type`: the GEMM dtype of Dense layers (kFloat32 or kBfloat16).
  WeightLoader(const CheckpointReader& checkpoint,
               const std::vector<ExpectedTensor>& expected,
               kernels::DType compute_type);

  // True if the tensor (or its tied alternative) is in the checkpoint.
  bool Has(const std::string& name) const;

  // The tensor as fp32 values (row-major). NotFound if absent.
  absl::StatusOr<std::vector<float>> Floats(const std::string& name) const;

  // One DenseLayer whose output rows are the rows of `names` stacked in
  // order (each [out_i, in], all with the same `in`), with an optional
  // bias tensor per name ("" for none: zero). `compute_type` overrides the
  // loader's GEMM dtype when set.
  absl::StatusOr<std::unique_ptr<kernels::DenseLayer>> Dense(
      const std::vector<std::string>& names,
      const std::vector<std::string>& biases = {},
      std::optional<kernels::DType> compute_type = std::nullopt) const;

 private:
  absl::StatusOr<TensorView> Get(const std::string& name) const;

  const CheckpointReader& checkpoint_;
  std::map<std::string, std::string> alternatives_;
  kernels::DType compute_type_;
};

}  // namespace linserve::engine

#endif  // LINSERVE_ENGINE_WEIGHT_LOADER_H_
