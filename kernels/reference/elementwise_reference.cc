// Scalar references for the elementwise kernel family; see the header.
#include "kernels/reference/elementwise_reference.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace linserve::kernels::reference {
namespace {

double SigmoidD(double x) { return 1.0 / (1.0 + std::exp(-x)); }

double SiluD(double x) { return x * SigmoidD(x); }

// ln(1 + e^x), written to avoid overflow of e^x for large x.
double SoftplusNoThresholdD(double x) {
  return x > 0.0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
}

}  // namespace

void RmsNorm(const float* x, const float* weight, int64_t rows, int dim,
             float eps, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    double sum_sq = 0.0;
    for (int i = 0; i < dim; ++i) {
      sum_sq += static_cast<double>(x[r * dim + i]) * x[r * dim + i];
    }
    const double rstd = 1.0 / std::sqrt(sum_sq / dim + eps);
    for (int i = 0; i < dim; ++i) {
      const double w = weight != nullptr ? weight[i] : 1.0;
      y[r * dim + i] = static_cast<float>(x[r * dim + i] * rstd * w);
    }
  }
}

void GatedRmsNorm(const float* x, const float* gate, const float* weight,
                  int64_t rows, int dim, float eps, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    double sum_sq = 0.0;
    for (int i = 0; i < dim; ++i) {
      sum_sq += static_cast<double>(x[r * dim + i]) * x[r * dim + i];
    }
    const double rstd = 1.0 / std::sqrt(sum_sq / dim + eps);
    for (int i = 0; i < dim; ++i) {
      const double w = weight != nullptr ? weight[i] : 1.0;
      const double g = gate[r * dim + i];
      y[r * dim + i] =
          static_cast<float>(x[r * dim + i] * rstd * w * g * SigmoidD(g));
    }
  }
}

void Silu(const float* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(SiluD(x[i]));
}

void SwiGlu(const float* gate, const float* up, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    y[i] = static_cast<float>(SiluD(gate[i]) * up[i]);
  }
}

void Sigmoid(const float* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(SigmoidD(x[i]));
}

void Softplus(const float* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    y[i] = x[i] > 20.0f ? x[i] : static_cast<float>(SoftplusNoThresholdD(x[i]));
  }
}

void LogSigmoid(const float* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    y[i] =
        static_cast<float>(-SoftplusNoThresholdD(-static_cast<double>(x[i])));
  }
}

void L2Normalize(const float* x, int64_t rows, int dim, float eps, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    double sum_sq = 0.0;
    for (int i = 0; i < dim; ++i) {
      sum_sq += static_cast<double>(x[r * dim + i]) * x[r * dim + i];
    }
    const double norm = std::sqrt(sum_sq + eps);
    for (int i = 0; i < dim; ++i) {
      y[r * dim + i] = static_cast<float>(x[r * dim + i] / norm);
    }
  }
}

void SumNormalize(const float* x, int64_t rows, int dim, float eps, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0.0;
    for (int i = 0; i < dim; ++i) sum += x[r * dim + i];
    for (int i = 0; i < dim; ++i) {
      y[r * dim + i] = static_cast<float>(x[r * dim + i] / (sum + eps));
    }
  }
}

void Scale(const float* x, int64_t n, float scale, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    y[i] = static_cast<float>(static_cast<double>(x[i]) * scale);
  }
}

void Multiply(const float* a, const float* b, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    y[i] = static_cast<float>(static_cast<double>(a[i]) * b[i]);
  }
}

void Add(const float* a, const float* b, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    y[i] = static_cast<float>(static_cast<double>(a[i]) + b[i]);
  }
}

void EluPlusOne(const float* x, int64_t n, float* phi) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    phi[i] = static_cast<float>(v > 0.0 ? v + 1.0 : std::exp(v));
  }
}

void Relu(const float* x, int64_t n, float* phi) {
  for (int64_t i = 0; i < n; ++i) phi[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void HedgehogFeatures(const float* a, int64_t rows, int dim, float* phi) {
  std::vector<double> z(2 * dim);
  for (int64_t r = 0; r < rows; ++r) {
    for (int i = 0; i < dim; ++i) {
      z[i] = 2.0 * a[r * dim + i];
      z[dim + i] = -2.0 * a[r * dim + i];
    }
    const double max = *std::max_element(z.begin(), z.end());
    double sum = 0.0;
    for (double v : z) sum += std::exp(v - max);
    for (int i = 0; i < 2 * dim; ++i) {
      phi[r * 2 * dim + i] = static_cast<float>(std::exp(z[i] - max) / sum);
    }
  }
}

void DpfpFeatures(const float* x, int64_t rows, int dim, float* phi) {
  const int n2 = 2 * dim;
  std::vector<double> u(n2);
  for (int64_t r = 0; r < rows; ++r) {
    for (int i = 0; i < dim; ++i) {
      const double relu = std::max<double>(x[r * dim + i], 0.0);
      u[i] = relu;
      u[dim + i] = -relu;
    }
    // torch.roll(u, shifts=j)[i] = u[(i - j) mod 2d].
    for (int j = 1; j <= 4; ++j) {
      for (int i = 0; i < n2; ++i) {
        const int rolled = ((i - j) % n2 + n2) % n2;
        phi[r * 8 * dim + (j - 1) * n2 + i] =
            static_cast<float>(u[i] * u[rolled]);
      }
    }
  }
}

void PerformerFeatures(const float* x, const float* projected, int64_t rows,
                       int dim, int num_features,
                       PerformerStabilizer stabilizer, float constant,
                       float eps, float* phi) {
  const int m = num_features;
  const double normalizer = std::pow(static_cast<double>(dim), -0.25);
  for (int64_t r = 0; r < rows; ++r) {
    double h = 0.0;
    for (int i = 0; i < dim; ++i) {
      const double xt = normalizer * x[r * dim + i];
      h += xt * xt;
    }
    h /= 2.0;
    double stab = constant;
    if (stabilizer == PerformerStabilizer::kRowMax) {
      stab = *std::max_element(projected + r * m, projected + (r + 1) * m);
    }
    for (int i = 0; i < m; ++i) {
      phi[r * m + i] = static_cast<float>(
          (std::exp(projected[r * m + i] - h - stab) + eps) / std::sqrt(m));
    }
  }
}

void CausalShortConv(const float* x, int64_t x_stride, int64_t tokens,
                     int channels, const float* weight, int width,
                     ConvActivation activation, float* cache, float* y) {
  // history[k]: cache slot k for k < width, then x row k - width.
  std::vector<float> history(width + tokens);
  for (int c = 0; c < channels; ++c) {
    for (int k = 0; k < width; ++k) {
      history[k] = cache[static_cast<int64_t>(k) * channels + c];
    }
    for (int64_t t = 0; t < tokens; ++t) {
      history[width + t] = x[t * x_stride + c];
    }
    // y_t = act(sum_j w[c, j] x_{t - width + 1 + j}); x_s is history[width +
    // s].
    for (int64_t t = 0; t < tokens; ++t) {
      double acc = 0.0;
      for (int j = 0; j < width; ++j) {
        acc +=
            static_cast<double>(weight[static_cast<int64_t>(c) * width + j]) *
            history[t + 1 + j];
      }
      if (activation == ConvActivation::kSilu) acc = SiluD(acc);
      y[t * channels + c] = static_cast<float>(acc);
    }
    // The last `width` inputs, oldest first.
    for (int k = 0; k < width; ++k) {
      cache[static_cast<int64_t>(k) * channels + c] = history[tokens + k];
    }
  }
}

void CausalShortConvStep(const float* x, int64_t x_stride, int batch,
                         int channels, const float* weight, int width,
                         ConvActivation activation, float* const* caches,
                         float* y) {
  for (int b = 0; b < batch; ++b) {
    reference::CausalShortConv(x + b * x_stride, x_stride, 1, channels, weight,
                               width, activation, caches[b],
                               y + static_cast<int64_t>(b) * channels);
  }
}

void ApplyRotary(float* x, int64_t row_stride, int64_t tokens, int heads,
                 int head_dim, int64_t position_offset, float base) {
  const int half = head_dim / 2;
  for (int64_t t = 0; t < tokens; ++t) {
    const float p = static_cast<float>(position_offset + t);
    for (int i = 0; i < half; ++i) {
      // theta_i = base^(-2i/d) and p * theta_i, both in fp32 (spec §4.3).
      const float inv_freq =
          1.0f / std::pow(base, static_cast<float>(2 * i) /
                                    static_cast<float>(head_dim));
      const double angle = p * inv_freq;
      const double c = std::cos(angle);
      const double s = std::sin(angle);
      for (int h = 0; h < heads; ++h) {
        float* v = x + t * row_stride + static_cast<int64_t>(h) * head_dim;
        const double x1 = v[i];
        const double x2 = v[i + half];
        v[i] = static_cast<float>(x1 * c - x2 * s);
        v[i + half] = static_cast<float>(x2 * c + x1 * s);
      }
    }
  }
}

bf16_t FloatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if (std::isnan(f)) return static_cast<bf16_t>((bits >> 16) | 0x40u);
  if (std::isinf(f)) return static_cast<bf16_t>(bits >> 16);
  // The two bf16 values around f: truncated toward zero, and one step away.
  // Magnitudes decoded by hand so that the step above the largest finite
  // bf16 counts as 2^128 (it rounds to inf).
  const uint32_t magnitude = bits & 0x7fffffffu;
  const uint32_t down = magnitude >> 16;
  const uint32_t up = down + 1;
  auto value = [](uint32_t b16) {
    const int exponent = static_cast<int>(b16 >> 7);
    const int mantissa = static_cast<int>(b16 & 0x7f);
    if (exponent == 0) return std::ldexp(static_cast<double>(mantissa), -133);
    return std::ldexp(128.0 + mantissa, exponent - 134);
  };
  const double a = std::fabs(static_cast<double>(f));
  const double below = a - value(down);
  const double above = value(up) - a;
  uint32_t chosen;
  if (below < above) {
    chosen = down;
  } else if (above < below) {
    chosen = up;
  } else {
    chosen = (down & 1u) == 0 ? down : up;
  }
  return static_cast<bf16_t>(chosen | ((bits >> 16) & 0x8000u));
}

float HalfToFloat(uint16_t h) {
  const double sign = (h & 0x8000u) ? -1.0 : 1.0;
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  if (exponent == 0x1f) {
    return mantissa == 0 ? static_cast<float>(sign * INFINITY) : NAN;
  }
  if (exponent == 0) {
    return static_cast<float>(sign * std::ldexp(mantissa, -24));
  }
  return static_cast<float>(sign * std::ldexp(1024 + mantissa, exponent - 25));
}

void GatherRows(const float* table, int dim, const int32_t* ids, int64_t n,
                float* out) {
  for (int64_t i = 0; i < n; ++i) {
    for (int j = 0; j < dim; ++j) {
      out[i * dim + j] = table[static_cast<int64_t>(ids[i]) * dim + j];
    }
  }
}

void GatherRows(const bf16_t* table, int dim, const int32_t* ids, int64_t n,
                float* out) {
  for (int64_t i = 0; i < n; ++i) {
    for (int j = 0; j < dim; ++j) {
      const uint32_t bits =
          static_cast<uint32_t>(table[static_cast<int64_t>(ids[i]) * dim + j])
          << 16;
      std::memcpy(&out[i * dim + j], &bits, sizeof(float));
    }
  }
}

}  // namespace linserve::kernels::reference
