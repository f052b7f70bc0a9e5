// Feature maps phi of linear attention (fla linear_attn, and Performer
// FAVOR+), applied per head to rows of length d = head key dim.
//
// The learned maps (hedgehog, t2r, elementwise_product) and Performer need a
// small matrix product first (W x + b, or Omega x); the engine does that with
// a DenseLayer and passes the result here, so these kernels are elementwise.
// The math follows ../shared/spec/model-families.md §3.3 and §10 exactly.
// AVX-512 and portable bodies as in elementwise.h. Outputs never alias inputs.
//
//   // elu+1 on q: [tokens * heads, d]
//   EluPlusOne(q, tokens * heads * d, phi_q);
#ifndef LINSERVE_KERNELS_FEATURE_MAPS_H_
#define LINSERVE_KERNELS_FEATURE_MAPS_H_

#include <cstdint>

namespace linserve::kernels {

// phi = elu(x) + 1 (alpha = 1): x + 1 for x > 0, exp(x) otherwise.
void EluPlusOne(const float* x, int64_t n, float* phi);

// phi = max(x, 0) (fla "relu", and "t2r" after its linear layer).
void Relu(const float* x, int64_t n, float* phi);

// Hedgehog: given a = W x + b per row ([rows, dim]), phi[r] = softmax over the
// 2*dim entries of [2a, -2a] (one softmax per row). phi is [rows, 2*dim].
void HedgehogFeatures(const float* a, int64_t rows, int dim, float* phi);

// DPFP with nu = 4 as fla computes it: r = relu(x), u = [r, -r] (length 2d),
// block j = 1..4: b_j[i] = u[i] * u[(i - j) mod 2d]; phi = [b_1 .. b_4].
// phi is [rows, 8*dim].
void DpfpFeatures(const float* x, int64_t rows, int dim, float* phi);

// How Performer stabilises the exponent (spec §10.2).
enum class PerformerStabilizer {
  kRowMax,    // subtract the max over this row's m features (queries)
  kConstant,  // subtract a fixed constant (keys: causal, time-invariant)
};

// Performer FAVOR+ positive random features (spec §10.1-10.2).
// x: [rows, dim] raw q or k rows; projected: [rows, m] = Omega * (dim^-1/4 x)
// (Omega [m, dim] applied to the data-normalised rows). With
// h = |dim^-1/4 x|^2 / 2:
//   phi[r, i] = m^-1/2 * (exp(projected[r, i] - h - stab) + eps)
// where stab is max_i projected[r, i] (kRowMax) or `constant` (kConstant).
// phi is [rows, m].
void PerformerFeatures(const float* x, const float* projected, int64_t rows,
                       int dim, int num_features,
                       PerformerStabilizer stabilizer, float constant,
                       float eps, float* phi);

}  // namespace linserve::kernels

#endif  // LINSERVE_KERNELS_FEATURE_MAPS_H_
