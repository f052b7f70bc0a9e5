// Dispatch and portable bodies of kernels/feature_maps.h.
#include "kernels/feature_maps.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cpu_features.h"
#include "kernels/internal/elementwise_bodies.h"

namespace linserve::kernels {

namespace portable {

void EluPlusOne(const float* x, int64_t n, float* phi) {
  for (int64_t i = 0; i < n; ++i) {
    phi[i] = x[i] > 0.0f ? x[i] + 1.0f : std::exp(x[i]);
  }
}

void Relu(const float* x, int64_t n, float* phi) {
  for (int64_t i = 0; i < n; ++i) phi[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void HedgehogFeatures(const float* a, int64_t rows, int dim, float* phi) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* ar = a + r * dim;
    float* pos = phi + r * 2 * dim;
    float* neg = pos + dim;
    // The softmax max over [2a, -2a] is 2 max|a|.
    float max_abs = 0.0f;
    for (int i = 0; i < dim; ++i) max_abs = std::max(max_abs, std::fabs(ar[i]));
    const float shift = 2.0f * max_abs;
    float sum = 0.0f;
    for (int i = 0; i < dim; ++i) {
      const float y = 2.0f * ar[i];
      pos[i] = std::exp(y - shift);
      neg[i] = std::exp(-y - shift);
      sum += pos[i] + neg[i];
    }
    const float inv = 1.0f / sum;
    for (int i = 0; i < 2 * dim; ++i) pos[i] *= inv;
  }
}

void DpfpFeatures(const float* x, int64_t rows, int dim, float* phi) {
  const int n2 = 2 * dim;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* pr = phi + r * 8 * dim;
    // u = [relu(x), -relu(x)] is read straight from x: no scratch row.
    for (int j = 1; j <= 4; ++j) {
      float* block = pr + (j - 1) * n2;
      for (int i = 0; i < n2; ++i) {
        const int k = ((i - j) % n2 + n2) % n2;
        const float ri = std::max(xr[i < dim ? i : i - dim], 0.0f);
        const float rk = std::max(xr[k < dim ? k : k - dim], 0.0f);
        block[i] = (i < dim ? ri : -ri) * (k < dim ? rk : -rk);
      }
    }
  }
}

void PerformerFeatures(const float* x, const float* projected, int64_t rows,
                       int dim, int num_features,
                       PerformerStabilizer stabilizer, float constant,
                       float eps, float* phi) {
  const float inv_sqrt_dim = 1.0f / std::sqrt(static_cast<float>(dim));
  const float scale = 1.0f / std::sqrt(static_cast<float>(num_features));
  const int m = num_features;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    const float* pr = projected + r * m;
    float* out = phi + r * m;
    float sum_sq = 0.0f;
    for (int i = 0; i < dim; ++i) sum_sq += xr[i] * xr[i];
    // |dim^-1/4 x|^2 / 2 = sum(x^2) / 2 * dim^-1/2 (performer-pytorch's order).
    const float h = sum_sq * 0.5f * inv_sqrt_dim;
    float stab = constant;
    if (stabilizer == PerformerStabilizer::kRowMax) {
      stab = -INFINITY;
      for (int i = 0; i < m; ++i) stab = std::max(stab, pr[i]);
    }
    for (int i = 0; i < m; ++i) {
      out[i] = scale * (std::exp(pr[i] - h - stab) + eps);
    }
  }
}

}  // namespace portable

void EluPlusOne(const float* x, int64_t n, float* phi) {
#if LINSERVE_HAVE_AVX512_BODIES
  if (ActiveKernelIsa() == KernelIsa::kAvx512) {
    return avx512::EluPlusOne(x, n, phi);
  }
#endif
  return portable::EluPlusOne(x, n, phi);
}

void Relu(const float* x, int64_t n, float* phi) {
#if LINSERVE_HAVE_AVX512_BODIES
  if (ActiveKernelIsa() == KernelIsa::kAvx512) {
    return avx512::Relu(x, n, phi);
  }
#endif
  return portable::Relu(x, n, phi);
}

void HedgehogFeatures(const float* a, int64_t rows, int dim, float* phi) {
#if LINSERVE_HAVE_AVX512_BODIES
  if (ActiveKernelIsa() == KernelIsa::kAvx512) {
    return avx512::HedgehogFeatures(a, rows, dim, phi);
  }
#endif
  return portable::HedgehogFeatures(a, rows, dim, phi);
}

void DpfpFeatures(const float* x, int64_t rows, int dim, float* phi) {
#if LINSERVE_HAVE_AVX512_BODIES
  if (ActiveKernelIsa() == KernelIsa::kAvx512) {
    return avx512::DpfpFeatures(x, rows, dim, phi);
  }
#endif
  return portable::DpfpFeatures(x, rows, dim, phi);
}

void PerformerFeatures(const float* x, const float* projected, int64_t rows,
                       int dim, int num_features,
                       PerformerStabilizer stabilizer, float constant,
                       float eps, float* phi) {
#if LINSERVE_HAVE_AVX512_BODIES
  if (ActiveKernelIsa() == KernelIsa::kAvx512) {
    return avx512::PerformerFeatures(x, projected, rows, dim, num_features,
                                     stabilizer, constant, eps, phi);
  }
#endif
  return portable::PerformerFeatures(x, projected, rows, dim, num_features,
                                     stabilizer, constant, eps, phi);
}

}  // namespace linserve::kernels
