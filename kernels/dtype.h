// Element types of weight tensors as they arrive from a checkpoint and as
// kernels compute with them. Activations and recurrent state are always fp32.
#ifndef LINSERVE_KERNELS_DTYPE_H_
#define LINSERVE_KERNELS_DTYPE_H_

#include <cstdint>
#include <string_view>

namespace linserve::kernels {

enum class DType { kFloat32, kBfloat16, kFloat16 };

inline std::string_view DTypeName(DType t) {
  switch (t) {
    case DType::kFloat32:
      return "f32";
    case DType::kBfloat16:
      return "bf16";
    case DType::kFloat16:
      return "f16";
  }
  return "unknown";
}

inline int64_t DTypeSize(DType t) { return t == DType::kFloat32 ? 4 : 2; }

}  // namespace linserve::kernels

#endif  // LINSERVE_KERNELS_DTYPE_H_
