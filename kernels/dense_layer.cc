// DenseLayer on oneDNN 2.6 matmul: packing, per-M-bucket primitives, and the
// bf16 -> f32 fallback. See dense_layer.h.
#include "kernels/dense_layer.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "kernels/bf16.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace linserve::kernels {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

dnnl::engine& CpuEngine() {
  static dnnl::engine* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

dt ToDnnl(DType t) { return t == DType::kBfloat16 ? dt::bf16 : dt::f32; }

bool IsReferenceKernel(const dnnl::primitive_desc_base& pd) {
  return std::string(pd.impl_info_str()).rfind("ref", 0) == 0;
}

}  // namespace

struct DenseLayer::Impl {
  int in = 0;
  int out = 0;
  DType compute = DType::kFloat32;
  bool has_bias = false;
  dnnl::memory::desc weights_desc;  // Packed layout chosen at Create.
  dnnl::memory weights;
  dnnl::memory bias;

  absl::Mutex mu;
  // One primitive per M bucket, built lazily; src/dst memories are reused
  // with set_data_handle.
  struct Bucket {
    dnnl::matmul matmul;
    dnnl::memory src;
    dnnl::memory dst;
    std::string kernel_name;
  };
  std::map<int64_t, Bucket> buckets ABSL_GUARDED_BY(mu);
  dnnl::stream stream ABSL_GUARDED_BY(mu);
  std::vector<bf16_t> src_bf16 ABSL_GUARDED_BY(mu);  // x rounded to bf16.
  std::vector<float> src_pad ABSL_GUARDED_BY(mu);    // f32 x padded to M.
  std::vector<float> dst_pad ABSL_GUARDED_BY(mu);    // y of a padded M.

  dnnl::matmul::primitive_desc MakePrimitiveDesc(
      int64_t m, const dnnl::memory::desc& weights_md) const {
    const dnnl::memory::desc src_md({m, in}, ToDnnl(compute), tag::ab);
    const dnnl::memory::desc dst_md({m, out}, dt::f32, tag::ab);
    if (has_bias) {
      const dnnl::memory::desc bias_md({1, out}, dt::f32, tag::ab);
      return dnnl::matmul::primitive_desc(
          dnnl::matmul::desc(src_md, weights_md, bias_md, dst_md), CpuEngine());
    }
    return dnnl::matmul::primitive_desc(
        dnnl::matmul::desc(src_md, weights_md, dst_md), CpuEngine());
  }

  Bucket& GetBucket(int64_t rows) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto it = buckets.find(rows);
    if (it != buckets.end()) return it->second;
    try {
      auto pd = MakePrimitiveDesc(rows, weights_desc);
      Bucket b{dnnl::matmul(pd),
               dnnl::memory(pd.src_desc(), CpuEngine(), DNNL_MEMORY_NONE),
               dnnl::memory(pd.dst_desc(), CpuEngine(), DNNL_MEMORY_NONE),
               pd.impl_info_str()};
      return buckets.emplace(rows, std::move(b)).first->second;
    } catch (const dnnl::error& e) {
      // Create() built the smallest and largest buckets with these weights,
      // so oneDNN refusing one in between is a bug, not an input error.
      std::fprintf(stderr,
                   "linserve: oneDNN cannot build a matmul for M=%lld "
                   "(%d x %d): %s\n",
                   static_cast<long long>(rows), out, in, e.what());
      std::abort();
    }
  }

  // Runs one block of m <= kMaxBlockRows rows.
  void RunBlock(const float* x, int64_t m, float* y)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const int64_t rows = BucketRows(m);
    Bucket& b = GetBucket(rows);
    const bool padded = rows != m;
    void* src = nullptr;
    if (compute == DType::kBfloat16) {
      ConvertFloatToBf16(x, m * in, src_bf16.data());
      if (padded) {
        std::fill(src_bf16.begin() + m * in, src_bf16.begin() + rows * in, 0);
      }
      src = src_bf16.data();
    } else if (padded) {
      std::memcpy(src_pad.data(), x, sizeof(float) * m * in);
      std::fill(src_pad.begin() + m * in, src_pad.begin() + rows * in, 0.0f);
      src = src_pad.data();
    } else {
      src = const_cast<float*>(x);
    }
    b.src.set_data_handle(src);
    b.dst.set_data_handle(padded ? dst_pad.data() : y);
    std::unordered_map<int, dnnl::memory> args = {{DNNL_ARG_SRC, b.src},
                                                  {DNNL_ARG_WEIGHTS, weights},
                                                  {DNNL_ARG_DST, b.dst}};
    if (has_bias) args.emplace(DNNL_ARG_BIAS, bias);
    b.matmul.execute(stream, args);
    stream.wait();
    if (padded) std::memcpy(y, dst_pad.data(), sizeof(float) * m * out);
  }
};

int64_t DenseLayer::BucketRows(int64_t m) {
  if (m <= 16) return m;
  return (m + 15) / 16 * 16;
}

absl::StatusOr<std::unique_ptr<DenseLayer>> DenseLayer::Create(
    const DenseLayerOptions& options) {
  if (options.weights == nullptr || options.in_features <= 0 ||
      options.out_features <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("DenseLayer needs weights and positive sizes, got [",
                     options.out_features, ", ", options.in_features, "]"));
  }
  if (options.compute_type == DType::kFloat16) {
    return absl::InvalidArgumentError(
        "DenseLayer computes in bf16 or f32, not f16");
  }
  auto impl = std::make_unique<Impl>();
  impl->in = options.in_features;
  impl->out = options.out_features;
  impl->has_bias = options.bias != nullptr;
  impl->compute = options.compute_type;
  const int64_t n_weights = int64_t{impl->in} * impl->out;

  try {
    dnnl::engine& engine = CpuEngine();
    const dnnl::memory::dims weight_dims = {impl->in, impl->out};
    const dnnl::memory::desc any_weights(weight_dims, dt::bf16, tag::any);
    std::optional<dnnl::matmul::primitive_desc> pd;
    if (impl->compute == DType::kBfloat16) {
      // Without AVX-512 (or with ONEDNN_MAX_CPU_ISA capping it) oneDNN has
      // no bf16 matmul, or only a reference kernel orders of magnitude slower
      // than f32: compute in f32 then.
      try {
        pd = impl->MakePrimitiveDesc(kMaxBlockRows, any_weights);
        if (IsReferenceKernel(*pd)) pd.reset();
      } catch (const dnnl::error&) {
        pd.reset();
      }
      if (!pd) impl->compute = DType::kFloat32;
    }
    if (!pd) {
      pd = impl->MakePrimitiveDesc(
          kMaxBlockRows, dnnl::memory::desc(weight_dims, dt::f32, tag::any));
    }
    impl->weights_desc = pd->weights_desc();

    // The checkpoint's W [out, in] is the matmul's [K = in, N = out] in
    // column-major ("ba") order. f16 is widened here; oneDNN's reorder does
    // f32/bf16 -> compute type and the packing.
    std::vector<float> widened;
    const void* source = options.weights;
    DType source_type = options.weight_type;
    if (source_type == DType::kFloat16) {
      widened.resize(n_weights);
      ConvertHalfToFloat(static_cast<const uint16_t*>(source), n_weights,
                         widened.data());
      source = widened.data();
      source_type = DType::kFloat32;
    }
    dnnl::memory user_weights(
        dnnl::memory::desc(weight_dims, ToDnnl(source_type), tag::ba), engine,
        const_cast<void*>(source));
    impl->weights = dnnl::memory(impl->weights_desc, engine);
    dnnl::stream stream(engine);
    dnnl::reorder(user_weights, impl->weights)
        .execute(stream, user_weights, impl->weights);
    stream.wait();

    if (impl->has_bias) {
      impl->bias = dnnl::memory(
          dnnl::memory::desc({1, impl->out}, dt::f32, tag::ab), engine);
      std::memcpy(impl->bias.get_data_handle(), options.bias,
                  sizeof(float) * impl->out);
    }
    impl->stream = dnnl::stream(engine);
    // Every bucket must accept the packed weights: check the extremes now so
    // that a refusal is an error at load, not during serving.
    impl->MakePrimitiveDesc(1, impl->weights_desc);
    impl->MakePrimitiveDesc(kMaxBlockRows, impl->weights_desc);
  } catch (const dnnl::error& e) {
    return absl::InternalError(absl::StrCat(
        "oneDNN could not set up a ",
        std::string(DTypeName(options.compute_type)), " matmul of [", impl->out,
        ", ", impl->in, "]: ", e.what()));
  }
  const int64_t max_rows = kMaxBlockRows;
  if (impl->compute == DType::kBfloat16) {
    impl->src_bf16.resize(max_rows * impl->in);
  } else {
    impl->src_pad.resize(max_rows * impl->in);
  }
  impl->dst_pad.resize(max_rows * impl->out);
  return std::unique_ptr<DenseLayer>(new DenseLayer(std::move(impl)));
}

DenseLayer::DenseLayer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DenseLayer::~DenseLayer() = default;

void DenseLayer::Forward(const float* x, int64_t m, float* y) {
  absl::MutexLock lock(&impl_->mu);
  for (int64_t row = 0; row < m; row += kMaxBlockRows) {
    const int64_t rows = std::min(kMaxBlockRows, m - row);
    impl_->RunBlock(x + row * impl_->in, rows, y + row * impl_->out);
  }
}

int DenseLayer::in_features() const { return impl_->in; }
int DenseLayer::out_features() const { return impl_->out; }
DType DenseLayer::compute_type() const { return impl_->compute; }

int64_t DenseLayer::packed_weight_bytes() const {
  return static_cast<int64_t>(impl_->weights_desc.get_size());
}

std::string DenseLayer::KernelName(int64_t m) {
  absl::MutexLock lock(&impl_->mu);
  return impl_->GetBucket(BucketRows(std::min(m, kMaxBlockRows))).kernel_name;
}

}  // namespace linserve::kernels
