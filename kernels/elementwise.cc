// Dispatch and portable bodies of kernels/elementwise.h.
#include "kernels/elementwise.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cpu_features.h"
#include "kernels/internal/elementwise_bodies.h"
#include "kernels/parallel_for.h"

namespace linserve::kernels {

namespace portable {
namespace {

// Eight partial sums in a fixed order: deterministic, and a shape the
// compiler vectorises without reassociating floats.
float SumOfSquares(const float* x, int dim) {
  float acc[8] = {};
  int i = 0;
  for (; i + 8 <= dim; i += 8) {
    for (int k = 0; k < 8; ++k) acc[k] += x[i + k] * x[i + k];
  }
  for (int k = 0; i < dim; ++i, ++k) acc[k] += x[i] * x[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) +
         ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

float Sum(const float* x, int dim) {
  float acc[8] = {};
  int i = 0;
  for (; i + 8 <= dim; i += 8) {
    for (int k = 0; k < 8; ++k) acc[k] += x[i + k];
  }
  for (int k = 0; i < dim; ++i, ++k) acc[k] += x[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) +
         ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

float SiluScalar(float x) { return x / (1.0f + std::exp(-x)); }

// ln(1 + e^-|x|): never overflows, and keeps relative accuracy for large |x|.
float Log1pExpNegAbs(float x) { return std::log1p(std::exp(-std::fabs(x))); }

}  // namespace

void RmsNorm(const float* x, const float* weight, int64_t rows, int dim,
             float eps, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    const float mean = SumOfSquares(xr, dim) / static_cast<float>(dim);
    const float rstd = 1.0f / std::sqrt(mean + eps);
    if (weight != nullptr) {
      for (int i = 0; i < dim; ++i) yr[i] = xr[i] * rstd * weight[i];
    } else {
      for (int i = 0; i < dim; ++i) yr[i] = xr[i] * rstd;
    }
  }
}

void GatedRmsNorm(const float* x, const float* gate, const float* weight,
                  int64_t rows, int dim, float eps, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    const float* gr = gate + r * dim;
    float* yr = y + r * dim;
    const float mean = SumOfSquares(xr, dim) / static_cast<float>(dim);
    const float rstd = 1.0f / std::sqrt(mean + eps);
    for (int i = 0; i < dim; ++i) {
      float v = xr[i] * rstd;
      if (weight != nullptr) v *= weight[i];
      yr[i] = v * SiluScalar(gr[i]);
    }
  }
}

void Silu(const float* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = SiluScalar(x[i]);
}

void SwiGlu(const float* gate, const float* up, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = SiluScalar(gate[i]) * up[i];
}

void Sigmoid(const float* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = 1.0f / (1.0f + std::exp(-x[i]));
}

void Softplus(const float* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    y[i] = v > 20.0f ? v : std::max(v, 0.0f) + Log1pExpNegAbs(v);
  }
}

void LogSigmoid(const float* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    y[i] = std::min(v, 0.0f) - Log1pExpNegAbs(v);
  }
}

void L2Normalize(const float* x, int64_t rows, int dim, float eps, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    const float rstd = 1.0f / std::sqrt(SumOfSquares(xr, dim) + eps);
    for (int i = 0; i < dim; ++i) yr[i] = xr[i] * rstd;
  }
}

void SumNormalize(const float* x, int64_t rows, int dim, float eps, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    // Divide rather than multiply by the reciprocal, as fla does.
    const float denom = Sum(xr, dim) + eps;
    for (int i = 0; i < dim; ++i) yr[i] = xr[i] / denom;
  }
}

void Scale(const float* x, int64_t n, float scale, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale;
}

void Multiply(const float* a, const float* b, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
}

void Add(const float* a, const float* b, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

}  // namespace portable

namespace {

// Block boundaries of a parallel split fall on multiples of this many
// elements (four AVX-512 vectors), so that no element moves between a
// vectorised loop and its tail (kernels/parallel_for.h).
constexpr int64_t kAlign = 64;

bool UseAvx512() {
#if LINSERVE_HAVE_AVX512_BODIES
  return ActiveKernelIsa() == KernelIsa::kAvx512;
#else
  return false;
#endif
}

}  // namespace

#if LINSERVE_HAVE_AVX512_BODIES
#define LINSERVE_ELEMENTWISE_BODY(name, ...) \
  (UseAvx512() ? avx512::name(__VA_ARGS__) : portable::name(__VA_ARGS__))
#else
#define LINSERVE_ELEMENTWISE_BODY(name, ...) portable::name(__VA_ARGS__)
#endif

void RmsNorm(const float* x, const float* weight, int64_t rows, int dim,
             float eps, float* y) {
  ParallelForRows(rows, dim, kElementwiseGrain, [&](int64_t b, int64_t e) {
    LINSERVE_ELEMENTWISE_BODY(RmsNorm, x + b * dim, weight, e - b, dim, eps,
                              y + b * dim);
  });
}

void GatedRmsNorm(const float* x, const float* gate, const float* weight,
                  int64_t rows, int dim, float eps, float* y) {
  ParallelForRows(rows, dim, kElementwiseGrain, [&](int64_t b, int64_t e) {
    LINSERVE_ELEMENTWISE_BODY(GatedRmsNorm, x + b * dim, gate + b * dim, weight,
                              e - b, dim, eps, y + b * dim);
  });
}

void Silu(const float* x, int64_t n, float* y) {
  ParallelFor(n, kElementwiseGrain, kAlign, [&](int64_t b, int64_t e) {
    LINSERVE_ELEMENTWISE_BODY(Silu, x + b, e - b, y + b);
  });
}

void SwiGlu(const float* gate, const float* up, int64_t n, float* y) {
  ParallelFor(n, kElementwiseGrain, kAlign, [&](int64_t b, int64_t e) {
    LINSERVE_ELEMENTWISE_BODY(SwiGlu, gate + b, up + b, e - b, y + b);
  });
}

void Sigmoid(const float* x, int64_t n, float* y) {
  ParallelFor(n, kElementwiseGrain, kAlign, [&](int64_t b, int64_t e) {
    LINSERVE_ELEMENTWISE_BODY(Sigmoid, x + b, e - b, y + b);
  });
}

void Softplus(const float* x, int64_t n, float* y) {
  ParallelFor(n, kElementwiseGrain, kAlign, [&](int64_t b, int64_t e) {
    LINSERVE_ELEMENTWISE_BODY(Softplus, x + b, e - b, y + b);
  });
}

void LogSigmoid(const float* x, int64_t n, float* y) {
  ParallelFor(n, kElementwiseGrain, kAlign, [&](int64_t b, int64_t e) {
    LINSERVE_ELEMENTWISE_BODY(LogSigmoid, x + b, e - b, y + b);
  });
}

void L2Normalize(const float* x, int64_t rows, int dim, float eps, float* y) {
  ParallelForRows(rows, dim, kElementwiseGrain, [&](int64_t b, int64_t e) {
    LINSERVE_ELEMENTWISE_BODY(L2Normalize, x + b * dim, e - b, dim, eps,
                              y + b * dim);
  });
}

void SumNormalize(const float* x, int64_t rows, int dim, float eps, float* y) {
  ParallelForRows(rows, dim, kElementwiseGrain, [&](int64_t b, int64_t e) {
    LINSERVE_ELEMENTWISE_BODY(SumNormalize, x + b * dim, e - b, dim, eps,
                              y + b * dim);
  });
}

void Scale(const float* x, int64_t n, float scale, float* y) {
  ParallelFor(n, kElementwiseGrain, kAlign, [&](int64_t b, int64_t e) {
    LINSERVE_ELEMENTWISE_BODY(Scale, x + b, e - b, scale, y + b);
  });
}

void Multiply(const float* a, const float* b, int64_t n, float* y) {
  ParallelFor(n, kElementwiseGrain, kAlign, [&](int64_t i, int64_t e) {
    LINSERVE_ELEMENTWISE_BODY(Multiply, a + i, b + i, e - i, y + i);
  });
}

void Add(const float* a, const float* b, int64_t n, float* y) {
  ParallelFor(n, kElementwiseGrain, kAlign, [&](int64_t i, int64_t e) {
    LINSERVE_ELEMENTWISE_BODY(Add, a + i, b + i, e - i, y + i);
  });
}

#undef LINSERVE_ELEMENTWISE_BODY

}  // namespace linserve::kernels
