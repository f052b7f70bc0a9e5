// Scalar reference for the linear-attention core: one token at a time, one
// head at a time, the spec's equations written out with double arithmetic
// inside a token and the fp32 state buffers carried between tokens.
#include "kernels/reference/linear_attention_reference.h"

#include <cmath>
#include <cstdint>
#include <vector>

namespace linserve::kernels::reference {

void ReferenceLinearAttention(const AttentionSpec& spec, int64_t num_tokens,
                              const AttentionInputs& in, AttentionState state,
                              float* out) {
  const int H = spec.num_heads;
  const int K = spec.key_dim;
  const int V = spec.value_dim;
  const int64_t q_stride = in.q_stride != 0 ? in.q_stride : int64_t{H} * K;
  const int64_t k_stride = in.k_stride != 0 ? in.k_stride : int64_t{H} * K;
  const int64_t v_stride = in.v_stride != 0 ? in.v_stride : int64_t{H} * V;
  const bool normalize = spec.rule == UpdateRule::kAdditive && spec.normalize;

  std::vector<double> kv(V);  // S^T k (delta rules), then u.
  std::vector<double> o(V);
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int h = 0; h < H; ++h) {
      const float* q = in.q + t * q_stride + int64_t{h} * K;
      const float* k = in.k + t * k_stride + int64_t{h} * K;
      const float* v = in.v + t * v_stride + int64_t{h} * V;
      float* s = state.s + int64_t{h} * K * V;  // S[i][j] = s[i * V + j].

      switch (spec.rule) {
        case UpdateRule::kAdditive:
          // S_t = S_{t-1} + k v^T.
          for (int i = 0; i < K; ++i) {
            for (int j = 0; j < V; ++j) {
              s[i * V + j] = static_cast<float>(double{s[i * V + j]} +
                                                double{k[i]} * double{v[j]});
            }
          }
          break;
        case UpdateRule::kFixedDecay: {
          // S_t = gamma_h S_{t-1} + k v^T.
          const double gamma = std::exp(double{spec.head_log_decay[h]});
          for (int i = 0; i < K; ++i) {
            for (int j = 0; j < V; ++j) {
              s[i * V + j] = static_cast<float>(gamma * s[i * V + j] +
                                                double{k[i]} * double{v[j]});
            }
          }
          break;
        }
        case UpdateRule::kVectorDecay: {
          // S_t = diag(exp(g_t)) S_{t-1} + k v^T: row i scaled by exp(g_i).
          const float* g = in.log_decay + (t * H + h) * int64_t{K};
          for (int i = 0; i < K; ++i) {
            const double a = std::exp(double{g[i]});
            for (int j = 0; j < V; ++j) {
              s[i * V + j] = static_cast<float>(a * s[i * V + j] +
                                                double{k[i]} * double{v[j]});
            }
          }
          break;
        }
        case UpdateRule::kDelta:
        case UpdateRule::kGatedDelta: {
          // S~ = exp(g) S_{t-1} (g = 0 for kDelta);
          // u = beta (v - S~^T k); S_t = S~ + k u^T.
          const double beta = in.beta[t * H + h];
          const double a = spec.rule == UpdateRule::kGatedDelta
                               ? std::exp(double{in.log_decay[t * H + h]})
                               : 1.0;
          for (int j = 0; j < V; ++j) {
            double acc = 0.0;
            for (int i = 0; i < K; ++i) {
              acc += a * double{s[i * V + j]} * double{k[i]};
            }
            kv[j] = beta * (double{v[j]} - acc);
          }
          for (int i = 0; i < K; ++i) {
            for (int j = 0; j < V; ++j) {
              s[i * V + j] =
                  static_cast<float>(a * s[i * V + j] + double{k[i]} * kv[j]);
            }
          }
          break;
        }
      }

      // o_t = S_t^T q.
      for (int j = 0; j < V; ++j) {
        double acc = 0.0;
        for (int i = 0; i < K; ++i) acc += double{s[i * V + j]} * double{q[i]};
        o[j] = acc;
      }
      if (normalize) {
        // z_t = z_{t-1} + k; o_t /= (q . z_t + 1e-10).
        float* z = state.z + int64_t{h} * K;
        double qz = 0.0;
        for (int i = 0; i < K; ++i) {
          z[i] = static_cast<float>(double{z[i]} + double{k[i]});
          qz += double{q[i]} * double{z[i]};
        }
        for (int j = 0; j < V; ++j) o[j] /= (qz + 1e-10);
      }
      float* o_row = out + (t * H + h) * int64_t{V};
      for (int j = 0; j < V; ++j) o_row[j] = static_cast<float>(o[j]);
    }
  }
}

void ReferenceRecurrentStep(const AttentionSpec& spec, int batch,
                            const AttentionInputs& in,
                            const AttentionState* states, float* out) {
  const int H = spec.num_heads;
  const int K = spec.key_dim;
  const int V = spec.value_dim;
  const int64_t q_stride = in.q_stride != 0 ? in.q_stride : int64_t{H} * K;
  const int64_t k_stride = in.k_stride != 0 ? in.k_stride : int64_t{H} * K;
  const int64_t v_stride = in.v_stride != 0 ? in.v_stride : int64_t{H} * V;
  for (int b = 0; b < batch; ++b) {
    AttentionInputs row = in;
    row.q = in.q + b * q_stride;
    row.k = in.k + b * k_stride;
    row.v = in.v + b * v_stride;
    if (in.log_decay != nullptr) {
      const int64_t per_row =
          spec.rule == UpdateRule::kVectorDecay ? int64_t{H} * K : H;
      row.log_decay = in.log_decay + b * per_row;
    }
    if (in.beta != nullptr) row.beta = in.beta + int64_t{b} * H;
    ReferenceLinearAttention(spec, 1, row, states[b], out + int64_t{b} * H * V);
  }
}

}  // namespace linserve::kernels::reference
