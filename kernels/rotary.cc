// Rotary position embedding (kernels/rotary.h). One body for every ISA: the
// cos/sin of a token are computed once (libm, fp32 angles as fla) and shared
// by all its heads; the rotation loop is plain C++ the compiler vectorises.
#include "kernels/rotary.h"

#include <cmath>
#include <cstdint>
#include <vector>

namespace linserve::kernels {
namespace {

// Frequencies and one token's cos/sin, on the stack for head_dim <= 512.
class RotaryTables {
 public:
  RotaryTables(int head_dim, float base) : half_(head_dim / 2) {
    if (half_ > kStackHalf) heap_.resize(3 * static_cast<size_t>(half_));
    float* data = heap_.empty() ? stack_ : heap_.data();
    inv_freq_ = data;
    cos_ = data + half_;
    sin_ = data + 2 * half_;
    // torch: 1 / base ** (arange(0, d, 2).float() / d), all in fp32.
    for (int i = 0; i < half_; ++i) {
      inv_freq_[i] = 1.0f / std::pow(base, static_cast<float>(2 * i) /
                                               static_cast<float>(head_dim));
    }
  }
  // The table pointers point into this object.
  RotaryTables(const RotaryTables&) = delete;
  RotaryTables& operator=(const RotaryTables&) = delete;

  // The angle p * theta_i is rounded to fp32 before cos/sin, as in fla.
  void SetPosition(int64_t position) {
    const float p = static_cast<float>(position);
    for (int i = 0; i < half_; ++i) {
      const float angle = p * inv_freq_[i];
      cos_[i] = std::cos(angle);
      sin_[i] = std::sin(angle);
    }
  }

  // Rotates `heads` contiguous head vectors of one token.
  void Rotate(float* row, int heads) const {
    const int d = 2 * half_;
    for (int h = 0; h < heads; ++h) {
      float* lo = row + static_cast<int64_t>(h) * d;
      float* hi = lo + half_;
      for (int i = 0; i < half_; ++i) {
        const float x1 = lo[i];
        const float x2 = hi[i];
        lo[i] = x1 * cos_[i] - x2 * sin_[i];
        hi[i] = x2 * cos_[i] + x1 * sin_[i];
      }
    }
  }

 private:
  static constexpr int kStackHalf = 256;
  int half_;
  float* inv_freq_;
  float* cos_;
  float* sin_;
  float stack_[3 * kStackHalf];
  std::vector<float> heap_;
};

}  // namespace

void ApplyRotary(float* x, int64_t row_stride, int64_t tokens, int heads,
                 int head_dim, int64_t position_offset, float base) {
  if (tokens <= 0) return;
  RotaryTables tables(head_dim, base);
  for (int64_t t = 0; t < tokens; ++t) {
    tables.SetPosition(position_offset + t);
    tables.Rotate(x + t * row_stride, heads);
  }
}

void ApplyRotaryAtPositions(float* x, int64_t row_stride, int batch, int heads,
                            int head_dim, const int64_t* positions,
                            float base) {
  if (batch <= 0) return;
  RotaryTables tables(head_dim, base);
  for (int b = 0; b < batch; ++b) {
    tables.SetPosition(positions[b]);
    tables.Rotate(x + b * row_stride, heads);
  }
}

}  // namespace linserve::kernels
