// WeightLoader and ValidateCheckpoint: checkpoint tensors into fp32 vectors
// and prepacked DenseLayers (see weight_loader.h).
#include "engine/weight_loader.h"

#include <cstring>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "kernels/bf16.h"

namespace linserve::engine {

absl::Status ValidateCheckpoint(const std::vector<ExpectedTensor>& expected,
                                CheckpointReader& checkpoint) {
  std::vector<std::string> missing;
  for (const ExpectedTensor& t : expected) {
    const bool present = checkpoint.Find(t.name).has_value();
    const bool alt_present =
        !t.alternative.empty() && checkpoint.Find(t.alternative).has_value();
    if (present) {
      absl::StatusOr<TensorView> view = checkpoint.Require(t.name, t.shape);
      if (!view.ok()) return view.status();
    } else if (t.presence == TensorPresence::kRequired && !alt_present) {
      missing.push_back(absl::StrCat(t.name, " ", ShapeString(t.shape)));
    }
  }
  if (!missing.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(checkpoint.description(),
                     ": missing tensors: ", absl::StrJoin(missing, ", ")));
  }
  const std::vector<std::string> extra = checkpoint.UnusedNames();
  if (!extra.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        checkpoint.description(),
        ": unexpected extra tensors: ", absl::StrJoin(extra, ", ")));
  }
  return absl::OkStatus();
}

WeightLoader::WeightLoader(const CheckpointReader& checkpoint,
                           const std::vector<ExpectedTensor>& expected,
                           kernels::DType compute_type)
    : checkpoint_(checkpoint), compute_type_(compute_type) {
  for (const ExpectedTensor& t : expected) {
    if (!t.alternative.empty()) alternatives_[t.name] = t.alternative;
  }
}

absl::StatusOr<TensorView> WeightLoader::Get(const std::string& name) const {
  if (std::optional<TensorView> v = checkpoint_.Find(name)) return *v;
  const auto alt = alternatives_.find(name);
  if (alt != alternatives_.end()) {
    if (std::optional<TensorView> v = checkpoint_.Find(alt->second)) return *v;
  }
  return absl::NotFoundError(
      absl::StrCat(checkpoint_.description(), ": missing tensor ", name));
}

bool WeightLoader::Has(const std::string& name) const { return Get(name).ok(); }

namespace {

// Converts any supported dtype to fp32; `data` may be unaligned.
std::vector<float> ToFloats(const TensorView& v) {
  const int64_t n = v.numel();
  std::vector<float> out(n);
  if (v.dtype == kernels::DType::kFloat32) {
    std::memcpy(out.data(), v.data, n * sizeof(float));
    return out;
  }
  std::vector<uint16_t> bits(n);
  std::memcpy(bits.data(), v.data, n * sizeof(uint16_t));
  if (v.dtype == kernels::DType::kBfloat16) {
    kernels::ConvertBf16ToFloat(bits.data(), n, out.data());
  } else {
    kernels::ConvertHalfToFloat(bits.data(), n, out.data());
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<float>> WeightLoader::Floats(
    const std::string& name) const {
  ASSIGN_OR_RETURN(TensorView v, Get(name));
  return ToFloats(v);
}

absl::StatusOr<std::unique_ptr<kernels::DenseLayer>> WeightLoader::Dense(
    const std::vector<std::string>& names,
    const std::vector<std::string>& biases,
    std::optional<kernels::DType> compute_type) const {
  std::vector<float> weights;
  std::vector<float> bias;
  int64_t in = -1;
  int64_t out = 0;
  bool any_bias = false;
  for (size_t i = 0; i < names.size(); ++i) {
    ASSIGN_OR_RETURN(TensorView v, Get(names[i]));
    if (v.shape.size() != 2 || (in >= 0 && v.shape[1] != in)) {
      return absl::InvalidArgumentError(
          absl::StrCat(names[i], ": cannot fuse shape ", ShapeString(v.shape),
                       " with in_features ", in));
    }
    in = v.shape[1];
    const std::vector<float> w = ToFloats(v);
    weights.insert(weights.end(), w.begin(), w.end());
    std::vector<float> b(v.shape[0], 0.0f);
    if (i < biases.size() && !biases[i].empty()) {
      ASSIGN_OR_RETURN(b, Floats(biases[i]));
      any_bias = true;
    }
    bias.insert(bias.end(), b.begin(), b.end());
    out += v.shape[0];
  }
  kernels::DenseLayerOptions options;
  options.weights = weights.data();
  options.weight_type = kernels::DType::kFloat32;
  options.out_features = static_cast<int>(out);
  options.in_features = static_cast<int>(in);
  options.bias = any_bias ? bias.data() : nullptr;
  options.compute_type = compute_type.value_or(compute_type_);
  return kernels::DenseLayer::Create(options);
}

}  // namespace linserve::engine
