// Embedding lookup (kernels/embedding.h): a row copy per token; bf16 rows go
// through the dispatched bulk conversion, so they get its AVX-512 body.
#include "kernels/embedding.h"

#include <cstdint>
#include <cstring>

#include "kernels/bf16.h"

namespace linserve::kernels {

void GatherRows(const float* table, int dim, const int32_t* ids, int64_t n,
                float* out) {
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(out + i * dim, table + static_cast<int64_t>(ids[i]) * dim,
                sizeof(float) * dim);
  }
}

void GatherRows(const bf16_t* table, int dim, const int32_t* ids, int64_t n,
                float* out) {
  for (int64_t i = 0; i < n; ++i) {
    ConvertBf16ToFloat(table + static_cast<int64_t>(ids[i]) * dim, dim,
                       out + i * dim);
  }
}

}  // namespace linserve::kernels
