// One sequence's fixed-size state between calls: per layer the recurrent
// state S [heads, K, V] fp32 (with the linear_attn normaliser z [H, K]), the
// short-conv caches (kernels/short_conv.h layout [width, channels], q, k, v),
// and the number of tokens the sequence has seen (retnet's rotary offset).
//
// Everything lives in one contiguous fp32 buffer laid out by a StateLayout
// that depends on the model only, so StateBytes() is constant in the context
// length and export/import can later be a copy of data(). Fork = copy,
// Reset = zero. Not thread-safe: one caller at a time per session.
//
//   std::unique_ptr<SessionState> a = model->NewSession();
//   std::unique_ptr<SessionState> b = a->Fork();   // independent copy
#ifndef LINSERVE_ENGINE_SESSION_STATE_H_
#define LINSERVE_ENGINE_SESSION_STATE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/types/span.h"
#include "engine/model_config.h"
#include "kernels/linear_attention.h"

namespace linserve::engine {

// Where one layer's pieces sit in the state buffer (offsets and sizes in
// floats; a size of 0 means the piece does not exist).
struct LayerStateLayout {
  int64_t s_offset = 0, s_floats = 0;
  int64_t z_offset = 0, z_floats = 0;
  int64_t conv_offset[3] = {0, 0, 0};  // q, k, v caches [width, channels]
  int64_t conv_floats[3] = {0, 0, 0};
};

struct StateLayout {
  std::vector<LayerStateLayout> layers;
  int64_t total_floats = 0;

  // The layout of `config`'s state (spec §11).
  static StateLayout ForConfig(const ModelConfig& config);
  // Bytes of a session with this layout (the buffer plus the token count).
  int64_t bytes() const {
    return total_floats * static_cast<int64_t>(sizeof(float)) +
           static_cast<int64_t>(sizeof(int64_t));
  }
  bool operator==(const StateLayout& other) const;
};

class SessionState {
 public:
  // A zeroed state (no tokens seen).
  explicit SessionState(std::shared_ptr<const StateLayout> layout);

  SessionState(const SessionState&) = default;
  SessionState& operator=(const SessionState&) = default;

  // An independent copy: the two sequences continue separately.
  std::unique_ptr<SessionState> Fork() const;
  // Back to the empty sequence.
  void Reset();

  // Tokens processed so far (the position of the next token).
  int64_t num_tokens() const { return num_tokens_; }
  void AdvanceTokens(int64_t n) { num_tokens_ += n; }
  // For import (engine/state_format.h), together with data().
  void set_num_tokens(int64_t n) { num_tokens_ = n; }

  // Bytes of the state (the fp32 buffer plus the token count).
  int64_t StateBytes() const;
  const StateLayout& layout() const { return *layout_; }

  // Layer `i`'s recurrent state (z is null without a normaliser).
  kernels::AttentionState attention(int layer);
  // Layer `i`'s conv cache `which` (0 = q, 1 = k, 2 = v), or null.
  float* conv_cache(int layer, int which);

  // The whole buffer, for serialization.
  absl::Span<float> data() { return absl::MakeSpan(data_); }
  absl::Span<const float> data() const { return data_; }

 private:
  std::shared_ptr<const StateLayout> layout_;
  std::vector<float> data_;
  int64_t num_tokens_ = 0;
};

}  // namespace linserve::engine

#endif  // LINSERVE_ENGINE_SESSION_STATE_H_
