// Elementwise and per-row kernels of the model layers, on fp32 activations.
//
// Each function has an AVX-512 body and a portable body, chosen per call by
// ActiveKernelIsa() (kernels/cpu_features.h); both give the same results up to
// float rounding (tests/kernels/elementwise_test.cc states the tolerances).
// Rows are contiguous: row r of a [rows, dim] array starts at r * dim. Unless
// noted, the output may alias the input (in-place use is allowed). Thread-safe:
// no state, no allocation. Large calls run on the OpenMP team
// (kernels/parallel_for.h), bitwise the same as on one thread.
//
//   RmsNorm(hidden, norm_weight, num_tokens, hidden_size, 1e-6f, normed);
//   SwiGlu(gate, up, num_tokens * intermediate_size, mlp_hidden);
#ifndef LINSERVE_KERNELS_ELEMENTWISE_H_
#define LINSERVE_KERNELS_ELEMENTWISE_H_

#include <cstdint>

namespace linserve::kernels {

// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight. `weight` ([dim]) may be
// null for a norm without affine weight.
void RmsNorm(const float* x, const float* weight, int64_t rows, int dim,
             float eps, float* y);

// Gated RMSNorm with a swish gate (fla FusedRMSNormGated):
// y[r] = RmsNorm(x[r]) * weight * silu(gate[r]). `weight` may be null.
void GatedRmsNorm(const float* x, const float* gate, const float* weight,
                  int64_t rows, int dim, float eps, float* y);

// y = x * sigmoid(x).
void Silu(const float* x, int64_t n, float* y);

// y = silu(gate) * up (the SwiGLU MLP's activation). y may alias gate or up.
void SwiGlu(const float* gate, const float* up, int64_t n, float* y);

// y = 1 / (1 + exp(-x)).
void Sigmoid(const float* x, int64_t n, float* y);

// y = ln(1 + exp(x)), and y = x where x > 20 (the threshold torch and fla use).
void Softplus(const float* x, int64_t n, float* y);

// y = ln(sigmoid(x)) = -softplus(-x), computed without overflow for any x.
void LogSigmoid(const float* x, int64_t n, float* y);

// y[r] = x[r] / sqrt(sum(x[r]^2) + eps) (eps inside the square root, as
// fla's l2norm; fla uses eps = 1e-6).
void L2Normalize(const float* x, int64_t rows, int dim, float eps, float* y);

// y[r] = x[r] / (sum(x[r]) + eps) (linear_attn norm_q / norm_k use 1e-4;
// DeltaNet's qk_norm='sum' uses 0).
void SumNormalize(const float* x, int64_t rows, int dim, float eps, float* y);

// y = x * scale.
void Scale(const float* x, int64_t n, float scale, float* y);

// y = a * b (elementwise product).
void Multiply(const float* a, const float* b, int64_t n, float* y);

// y = a + b.
void Add(const float* a, const float* b, int64_t n, float* y);

}  // namespace linserve::kernels

#endif  // LINSERVE_KERNELS_ELEMENTWISE_H_
