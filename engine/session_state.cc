// SessionState: one sequence's recurrent state, conv caches and token count
// in one contiguous buffer (see session_state.h).
#include "engine/session_state.h"

#include <algorithm>

namespace linserve::engine {

StateLayout StateLayout::ForConfig(const ModelConfig& c) {
  StateLayout layout;
  const int64_t state_heads =
      c.family == ModelFamily::kGatedDeltaNet ? c.num_v_heads : c.num_heads;
  int64_t next = 0;
  const auto take = [&next](int64_t floats) {
    const int64_t offset = next;
    next += floats;
    return offset;
  };
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    LayerStateLayout l;
    l.s_floats = state_heads * c.feature_dim * c.head_v_dim;
    l.s_offset = take(l.s_floats);
    if (c.family == ModelFamily::kLinearAttn && c.norm_feature_map) {
      l.z_floats = c.num_heads * c.feature_dim;
      l.z_offset = take(l.z_floats);
    }
    if (c.use_short_conv) {
      const bool gla = c.family == ModelFamily::kGla;
      const int64_t channels[3] = {c.key_dim, gla ? c.kv_key_dim() : c.key_dim,
                                   gla ? c.kv_value_dim() : c.value_dim};
      for (int j = 0; j < 3; ++j) {
        l.conv_floats[j] = c.conv_size * channels[j];
        l.conv_offset[j] = take(l.conv_floats[j]);
      }
    }
    layout.layers.push_back(l);
  }
  layout.total_floats = next;
  return layout;
}

bool StateLayout::operator==(const StateLayout& o) const {
  if (total_floats != o.total_floats || layers.size() != o.layers.size()) {
    return false;
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    const LayerStateLayout& a = layers[i];
    const LayerStateLayout& b = o.layers[i];
    if (a.s_offset != b.s_offset || a.s_floats != b.s_floats ||
        a.z_offset != b.z_offset || a.z_floats != b.z_floats ||
        !std::equal(a.conv_offset, a.conv_offset + 3, b.conv_offset) ||
        !std::equal(a.conv_floats, a.conv_floats + 3, b.conv_floats)) {
      return false;
    }
  }
  return true;
}

SessionState::SessionState(std::shared_ptr<const StateLayout> layout)
    : layout_(std::move(layout)), data_(layout_->total_floats, 0.0f) {}

std::unique_ptr<SessionState> SessionState::Fork() const {
  return std::make_unique<SessionState>(*this);
}

void SessionState::Reset() {
  std::fill(data_.begin(), data_.end(), 0.0f);
  num_tokens_ = 0;
}

int64_t SessionState::StateBytes() const { return layout_->bytes(); }

kernels::AttentionState SessionState::attention(int layer) {
  const LayerStateLayout& l = layout_->layers[layer];
  kernels::AttentionState st;
  st.s = data_.data() + l.s_offset;
  st.z = l.z_floats > 0 ? data_.data() + l.z_offset : nullptr;
  return st;
}

float* SessionState::conv_cache(int layer, int which) {
  const LayerStateLayout& l = layout_->layers[layer];
  return l.conv_floats[which] > 0 ? data_.data() + l.conv_offset[which]
                                  : nullptr;
}

}  // namespace linserve::engine
