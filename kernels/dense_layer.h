// A dense (linear) layer y = x W^T (+ b) on oneDNN 2.6 matmul, with the
// weights prepacked once into the layout the fastest kernel wants.
//
// Weights arrive in the checkpoint layout W [out, in] as f32, bf16 or f16 and
// are converted and reordered once at Create (format_tag::any + reorder); the
// source buffer is not kept. The GEMM runs in bf16 x bf16 -> f32 (AMX or
// AVX512-BF16 where present) or in f32. Activations x and y are fp32; in bf16
// mode x is rounded to bf16 on the way in.
//
// oneDNN picks a slower kernel for a run-time M, so primitives are created
// per M bucket (exact for M <= 16, then multiples of 16 up to 512; larger M
// runs in blocks of 512), lazily, with the same packed weights. (Should
// oneDNN refuse that layout for some M, the layer packs a second copy in the
// layout it wants for that M; packed_weight_bytes() counts both.)
//
// Rows are independent: up to kRowInvariantRows rows, a row's result does
// not depend on M, so a session decoded alone or in a batch gets bitwise the
// same logits (tests/kernels/dense_layer_test.cc checks it on every CPU).
// Small M (a decode step: M = sessions <= kRowInvariantRows) in bf16 runs on
// CPUs without AMX on linserve's own kernel over the same packed weights
// (kernels/internal/packed_bf16_gemm.h), which computes each row on its own
// by construction and streams the weights somewhat faster than oneDNN's
// matmul at M = 1..2 (docs/performance.md). With AMX, oneDNN's AMX kernels
// are 3-5x faster from M = 8 on, and row-independent too, so they run every
// M there.
//
// Thread safety: Forward may be called from any thread; calls on one layer
// are serialised by an internal mutex, so a oneDNN primitive never runs on
// two threads at once. Different layers run concurrently.
//
//   ASSIGN_OR_RETURN(auto q_proj, DenseLayer::Create({.weights = w,
//       .weight_type = DType::kBfloat16, .out_features = 1024,
//       .in_features = 1024, .compute_type = DType::kBfloat16}));
//   q_proj->Forward(x, num_tokens, q);
#ifndef LINSERVE_KERNELS_DENSE_LAYER_H_
#define LINSERVE_KERNELS_DENSE_LAYER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/dtype.h"

namespace linserve::kernels {

struct DenseLayerOptions {
  const void* weights = nullptr;  // [out_features, in_features], row-major.
  DType weight_type = DType::kFloat32;
  int out_features = 0;
  int in_features = 0;
  const float* bias = nullptr;  // [out_features] or null; copied.
  // kBfloat16 or kFloat32. A bf16 request falls back to f32 where oneDNN has
  // only a reference bf16 kernel (CPUs without AVX-512); see compute_type().
  DType compute_type = DType::kBfloat16;
  // Whether M <= kRowInvariantRows runs on linserve's packed bf16 kernel
  // (bf16 compute only): kAuto on CPUs without AMX; kAlways and kNever for
  // tests and benchmarks.
  enum class SmallMKernel { kAuto, kAlways, kNever };
  SmallMKernel small_m_kernel = SmallMKernel::kAuto;
};

class DenseLayer {
 public:
  // Largest M run by one primitive; larger M runs in blocks of this size.
  static constexpr int64_t kMaxBlockRows = 512;
  // Up to this M each row of y depends only on its row of x: callers that
  // need batch-independent results (decode) run at most this many rows per
  // call.
  static constexpr int64_t kRowInvariantRows = 64;

  static absl::StatusOr<std::unique_ptr<DenseLayer>> Create(
      const DenseLayerOptions& options);

  ~DenseLayer();
  DenseLayer(const DenseLayer&) = delete;
  DenseLayer& operator=(const DenseLayer&) = delete;

  // y [m, out_features] = x [m, in_features] W^T (+ bias). x and y are dense
  // fp32 and must not overlap. m >= 0.
  void Forward(const float* x, int64_t m, float* y);

  int in_features() const;
  int out_features() const;
  // The dtype the GEMM really runs in (bf16 may have fallen back to f32).
  DType compute_type() const;
  // Whether M <= kRowInvariantRows runs on linserve's packed bf16 kernel.
  bool uses_small_m_kernel() const;
  // Bytes of the packed weights (every layout kept).
  int64_t packed_weight_bytes() const;
  // The name of the kernel used for `m` rows: oneDNN's (e.g.
  // "brg:avx512_core_amx"), creating the primitive if needed, or
  // "linserve:packed_bf16" (+ the body). For logs and benchmarks.
  std::string KernelName(int64_t m);

  // The row count the primitive for `m` (1 <= m <= kMaxBlockRows) is built
  // for: m itself up to 16, then m rounded up to a multiple of 16.
  static int64_t BucketRows(int64_t m);

 private:
  struct Impl;
  explicit DenseLayer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace linserve::kernels

#endif  // LINSERVE_KERNELS_DENSE_LAYER_H_
