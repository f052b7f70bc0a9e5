// Inputs of the linear-attention kernel tests, shared by the recurrent and
// the chunkwise test: for every family's flavour of the update rules, random
// q/k/v rows (optionally strided, the padding holding garbage) with decays
// and betas as trained models produce them, or steeper ones that stress the
// chunk form's exponentials.
#ifndef LINSERVE_TESTS_KERNELS_LINEAR_ATTENTION_TEST_PROBLEM_H_
#define LINSERVE_TESTS_KERNELS_LINEAR_ATTENTION_TEST_PROBLEM_H_

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/linear_attention.h"
#include "tests/test_util.h"

namespace linserve::kernels::attention_test {

using ::linserve::testing::RandomNormal;
using ::linserve::testing::RandomVector;

// One family's flavour of the update rules, as the model layers call them.
struct Family {
  const char* name;
  UpdateRule rule;
  bool normalize = false;
  bool allow_neg_eigval = false;  // Delta rules: beta in (0, 2).
};

inline const Family kFamilies[] = {
    {"linear_attn", UpdateRule::kAdditive},
    {"linear_attn with the normaliser", UpdateRule::kAdditive, true},
    {"retnet", UpdateRule::kFixedDecay},
    {"gla", UpdateRule::kVectorDecay},
    {"delta_net", UpdateRule::kDelta},
    {"delta_net with negative eigenvalues", UpdateRule::kDelta, false, true},
    {"gated_deltanet", UpdateRule::kGatedDelta},
    {"gated_deltanet with negative eigenvalues", UpdateRule::kGatedDelta, false,
     true},
};

// How fast the decaying rules forget.
enum class Decay {
  kRealistic,  // What trained models produce.
  kSteep,      // gla: logsigmoid(-20..-10)/16 per step; gdn: up to -60.
  // gla: logsigmoid(-300..5)/16, e^-140 across 16 tokens: beyond the
  // reference-row trick, which must fall back to element-wise exponentials.
  kExtreme,
};

inline float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
inline float Softplus(float x) {
  return x > 20.0f ? x : std::log1p(std::exp(x));
}
inline float LogSigmoid(float x) { return -Softplus(-x); }

inline void L2NormaliseHeads(std::vector<float>& x, int64_t rows,
                             int64_t stride, int heads, int dim, float scale) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int h = 0; h < heads; ++h) {
      float* p = x.data() + r * stride + int64_t{h} * dim;
      double ss = 0.0;
      for (int i = 0; i < dim; ++i) ss += double{p[i]} * p[i];
      const float inv = scale / static_cast<float>(std::sqrt(ss + 1e-6));
      for (int i = 0; i < dim; ++i) p[i] *= inv;
    }
  }
}

// T rows (tokens, or sessions) of inputs for one family, with row strides
// larger than dense when `strided` (the padding holds garbage).
struct Problem {
  AttentionSpec spec;
  int64_t rows = 0;  // Tokens of one sequence, or sessions of a batch.
  std::vector<float> q, k, v, log_decay, beta, head_log_decay;
  int64_t q_stride = 0, k_stride = 0, v_stride = 0;

  // The inputs from row t on.
  AttentionInputs Inputs(int64_t t = 0) const {
    const int H = spec.num_heads;
    AttentionInputs in;
    in.q = q.data() + t * q_stride;
    in.k = k.data() + t * k_stride;
    in.v = v.data() + t * v_stride;
    if (!log_decay.empty()) {
      const int64_t per_token = spec.rule == UpdateRule::kVectorDecay
                                    ? int64_t{H} * spec.key_dim
                                    : int64_t{H};
      in.log_decay = log_decay.data() + t * per_token;
    }
    if (!beta.empty()) in.beta = beta.data() + t * H;
    in.q_stride = q_stride;
    in.k_stride = k_stride;
    in.v_stride = v_stride;
    return in;
  }
};

inline Problem MakeProblem(const Family& f, int H, int K, int V, int64_t T,
                           bool strided, uint64_t seed,
                           Decay decay = Decay::kRealistic) {
  Problem p;
  p.spec.rule = f.rule;
  p.spec.num_heads = H;
  p.spec.key_dim = K;
  p.spec.value_dim = V;
  p.spec.normalize = f.normalize;
  p.rows = T;
  const int64_t hk = int64_t{H} * K;
  const int64_t hv = int64_t{H} * V;
  p.q_stride = strided ? 3 * hk + 5 : hk;
  p.k_stride = strided ? hk + 7 : hk;
  p.v_stride = strided ? 2 * hv + 1 : hv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(K));
  if (f.rule == UpdateRule::kAdditive && f.normalize) {
    // Positive feature maps (elu+1, relu, ...) keep q . z away from 0.
    p.q = RandomVector(T * p.q_stride, seed + 1, 0.0f, scale);
    p.k = RandomVector(T * p.k_stride, seed + 2, 0.0f, 1.0f);
  } else {
    p.q = RandomNormal(T * p.q_stride, seed + 1, scale);
    p.k = RandomNormal(T * p.k_stride, seed + 2, scale);
  }
  p.v = RandomNormal(T * p.v_stride, seed + 3, 1.0f);
  switch (f.rule) {
    case UpdateRule::kAdditive:
      break;
    case UpdateRule::kFixedDecay:
      // gamma_h = 1 - 2^(-5-h); steep: gamma_h = 0.3^(h+1).
      for (int h = 0; h < H; ++h) {
        p.head_log_decay.push_back(static_cast<float>(
            decay == Decay::kRealistic ? std::log(1.0 - std::exp2(-5.0 - h))
                                       : (h + 1) * std::log(0.3)));
      }
      p.spec.head_log_decay = p.head_log_decay.data();
      break;
    case UpdateRule::kVectorDecay:
      // gk = logsigmoid(x) / 16.
      if (decay == Decay::kRealistic) {
        p.log_decay = RandomNormal(T * hk, seed + 4, 2.0f);
      } else if (decay == Decay::kSteep) {
        p.log_decay = RandomVector(T * hk, seed + 4, -20.0f, -10.0f);
      } else {
        p.log_decay = RandomVector(T * hk, seed + 4, -300.0f, 5.0f);
      }
      for (float& g : p.log_decay) g = LogSigmoid(g) / 16.0f;
      break;
    case UpdateRule::kGatedDelta: {
      // gdec = -exp(A_log[h]) * softplus(a + dt_bias[h]), A in [1, 16],
      // dt = softplus(dt_bias) in [1e-3, 1e-1] (fla's initialisation);
      // steep: A in [16, 64] and a shifted up, so gdec reaches ~ -60.
      const bool steep = decay != Decay::kRealistic;
      const std::vector<float> a_coef = RandomVector(
          H, seed + 5, steep ? 16.0f : 1.0f, steep ? 64.0f : 16.0f);
      const std::vector<float> dt = RandomVector(H, seed + 6, 1e-3f, 1e-1f);
      p.log_decay = RandomNormal(T * H, seed + 7, steep ? 2.0f : 1.0f);
      for (int64_t t = 0; t < T; ++t) {
        for (int h = 0; h < H; ++h) {
          const float dt_bias = std::log(std::expm1(dt[h]));
          float& g = p.log_decay[t * H + h];
          g = -a_coef[h] * Softplus(g + dt_bias + (steep ? 3.0f : 0.0f));
        }
      }
      [[fallthrough]];
    }
    case UpdateRule::kDelta: {
      L2NormaliseHeads(p.q, T, p.q_stride, H, K, scale);
      L2NormaliseHeads(p.k, T, p.k_stride, H, K, 1.0f);
      p.beta = RandomNormal(T * H, seed + 8, 2.0f);
      for (float& b : p.beta) {
        b = (f.allow_neg_eigval ? 2.0f : 1.0f) * Sigmoid(b);
      }
      break;
    }
  }
  return p;
}

}  // namespace linserve::kernels::attention_test

#endif  // LINSERVE_TESTS_KERNELS_LINEAR_ATTENTION_TEST_PROBLEM_H_
