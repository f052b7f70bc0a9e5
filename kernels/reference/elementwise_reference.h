// Scalar references for the elementwise kernel family (kernels/elementwise.h,
// feature_maps.h, short_conv.h, rotary.h, bf16.h, embedding.h): plain loops
// that mirror the equations of ../shared/spec/model-families.md (§2, §3.3,
// §4.3, §9, §10), for tests and benchmarks to check the optimised kernels
// against. Same signatures and layouts as the kernels they check.
//
// Math is done in double from the fp32 inputs and rounded to fp32 once per
// output, except where the spec fixes fp32 (the rotary angles). Slow by
// design; not for serving.
#ifndef LINSERVE_KERNELS_REFERENCE_ELEMENTWISE_REFERENCE_H_
#define LINSERVE_KERNELS_REFERENCE_ELEMENTWISE_REFERENCE_H_

#include <cstdint>

#include "kernels/bf16.h"
#include "kernels/feature_maps.h"
#include "kernels/short_conv.h"

namespace linserve::kernels::reference {

// elementwise.h
void RmsNorm(const float* x, const float* weight, int64_t rows, int dim,
             float eps, float* y);
void GatedRmsNorm(const float* x, const float* gate, const float* weight,
                  int64_t rows, int dim, float eps, float* y);
void Silu(const float* x, int64_t n, float* y);
void SwiGlu(const float* gate, const float* up, int64_t n, float* y);
void Sigmoid(const float* x, int64_t n, float* y);
void Softplus(const float* x, int64_t n, float* y);
void LogSigmoid(const float* x, int64_t n, float* y);
void L2Normalize(const float* x, int64_t rows, int dim, float eps, float* y);
void SumNormalize(const float* x, int64_t rows, int dim, float eps, float* y);
void Scale(const float* x, int64_t n, float scale, float* y);
void Multiply(const float* a, const float* b, int64_t n, float* y);
void Add(const float* a, const float* b, int64_t n, float* y);

// feature_maps.h
void EluPlusOne(const float* x, int64_t n, float* phi);
void Relu(const float* x, int64_t n, float* phi);
void HedgehogFeatures(const float* a, int64_t rows, int dim, float* phi);
void DpfpFeatures(const float* x, int64_t rows, int dim, float* phi);
void PerformerFeatures(const float* x, const float* projected, int64_t rows,
                       int dim, int num_features,
                       PerformerStabilizer stabilizer, float constant,
                       float eps, float* phi);

// short_conv.h: the conv over the history [cache slots, x rows], written
// without a sliding window.
void CausalShortConv(const float* x, int64_t x_stride, int64_t tokens,
                     int channels, const float* weight, int width,
                     ConvActivation activation, float* cache, float* y);
void CausalShortConvStep(const float* x, int64_t x_stride, int batch,
                         int channels, const float* weight, int width,
                         ConvActivation activation, float* const* caches,
                         float* y);

// rotary.h: angles in fp32 as the spec prescribes, cos/sin and the rotation
// in double.
void ApplyRotary(float* x, int64_t row_stride, int64_t tokens, int heads,
                 int head_dim, int64_t position_offset, float base);

// bf16.h: float -> bf16 by picking the nearer of the two neighbouring bf16
// values (ties to even) rather than by the bit trick; half -> float by the
// IEEE formula.
bf16_t FloatToBf16(float f);
float HalfToFloat(uint16_t h);

// embedding.h
void GatherRows(const float* table, int dim, const int32_t* ids, int64_t n,
                float* out);
void GatherRows(const bf16_t* table, int dim, const int32_t* ids, int64_t n,
                float* out);

}  // namespace linserve::kernels::reference

#endif  // LINSERVE_KERNELS_REFERENCE_ELEMENTWISE_REFERENCE_H_
