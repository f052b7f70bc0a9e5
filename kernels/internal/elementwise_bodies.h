// The per-ISA bodies behind kernels/elementwise.h, feature_maps.h,
// short_conv.h and bf16.h. The public functions dispatch on ActiveKernelIsa()
// to one of these; tests reach them only through the public functions (with
// ScopedKernelIsa). Each body has its public function's contract, except
// where a comment below narrows it.
#ifndef LINSERVE_KERNELS_INTERNAL_ELEMENTWISE_BODIES_H_
#define LINSERVE_KERNELS_INTERNAL_ELEMENTWISE_BODIES_H_

#include <cstdint>

#include "kernels/bf16.h"
#include "kernels/feature_maps.h"
#include "kernels/short_conv.h"

namespace linserve::kernels {

// Plain C++ that the compiler vectorises for the baseline ISA.
namespace portable {

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

void EluPlusOne(const float* x, int64_t n, float* phi);
void Relu(const float* x, int64_t n, float* phi);
void HedgehogFeatures(const float* a, int64_t rows, int dim, float* phi);
void DpfpFeatures(const float* x, int64_t rows, int dim, float* phi);
void PerformerFeatures(const float* x, const float* projected, int64_t rows,
                       int dim, int num_features,
                       PerformerStabilizer stabilizer, float constant,
                       float eps, float* phi);

// The conv bodies compute the outputs of the tokens [token_begin,
// token_end) of a call (reading, never writing, the cache: the dispatcher
// shifts it once all outputs are done), or of the sessions [session_begin,
// session_end) of a step (each session's cache shifted as it goes): the
// dispatcher splits tokens or sessions over threads.
void CausalShortConv(const float* x, int64_t x_stride, int64_t token_begin,
                     int64_t token_end, int channels, const float* weight,
                     int width, ConvActivation activation, const float* cache,
                     float* y);
void CausalShortConvStep(const float* x, int64_t x_stride, int session_begin,
                         int session_end, int channels, const float* weight,
                         int width, ConvActivation activation,
                         float* const* caches, float* y);

void ConvertFloatToBf16(const float* x, int64_t n, bf16_t* y);
void ConvertBf16ToFloat(const bf16_t* x, int64_t n, float* y);
void ConvertHalfToFloat(const uint16_t* x, int64_t n, float* y);

}  // namespace portable

// AVX-512 (F, BW, DQ, VL) + FMA intrinsics; defined only when
// LINSERVE_HAVE_AVX512_BODIES, called only when the CPU has them.
namespace avx512 {

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

void EluPlusOne(const float* x, int64_t n, float* phi);
void Relu(const float* x, int64_t n, float* phi);
void HedgehogFeatures(const float* a, int64_t rows, int dim, float* phi);
void DpfpFeatures(const float* x, int64_t rows, int dim, float* phi);
void PerformerFeatures(const float* x, const float* projected, int64_t rows,
                       int dim, int num_features,
                       PerformerStabilizer stabilizer, float constant,
                       float eps, float* phi);

// The conv bodies transpose a tile of weights into a fixed stack buffer: they
// take widths up to kMaxConvWidth; the dispatcher sends wider convs to the
// portable body.
inline constexpr int kMaxConvWidth = 16;
// The conv bodies compute the outputs of the tokens [token_begin,
// token_end) of a call (reading, never writing, the cache: the dispatcher
// shifts it once all outputs are done), or of the sessions [session_begin,
// session_end) of a step (each session's cache shifted as it goes): the
// dispatcher splits tokens or sessions over threads.
void CausalShortConv(const float* x, int64_t x_stride, int64_t token_begin,
                     int64_t token_end, int channels, const float* weight,
                     int width, ConvActivation activation, const float* cache,
                     float* y);
void CausalShortConvStep(const float* x, int64_t x_stride, int session_begin,
                         int session_end, int channels, const float* weight,
                         int width, ConvActivation activation,
                         float* const* caches, float* y);

void ConvertFloatToBf16(const float* x, int64_t n, bf16_t* y);
void ConvertBf16ToFloat(const bf16_t* x, int64_t n, float* y);
void ConvertHalfToFloat(const uint16_t* x, int64_t n, float* y);

}  // namespace avx512
}  // namespace linserve::kernels

#endif  // LINSERVE_KERNELS_INTERNAL_ELEMENTWISE_BODIES_H_
