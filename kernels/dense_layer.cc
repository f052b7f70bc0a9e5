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
#include "common/status_macros.h"
#include "kernels/bf16.h"
#include "kernels/cpu_features.h"
#include "kernels/internal/packed_bf16_gemm.h"
#include "kernels/kernel_timing.h"
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

// The packed bf16 kernel's view of weights oneDNN packed as `desc`, if that
// is the layout the kernel reads ("BA16a<NB>b2a", NB a multiple of 16 up
// to 64, no extra data).
std::optional<internal::PackedBf16Weights> PackedBf16View(
    const dnnl::memory& packed) {
  const dnnl::memory::desc desc = packed.get_desc();
  const dnnl_memory_desc_t& md = desc.data;
  if (md.data_type != dnnl_bf16 || md.format_kind != dnnl_blocked ||
      md.ndims != 2 || md.extra.flags != 0 || md.offset0 != 0) {
    return std::nullopt;
  }
  const dnnl_blocking_desc_t& b = md.format_desc.blocking;
  if (b.inner_nblks != 3 || b.inner_idxs[0] != 0 || b.inner_idxs[1] != 1 ||
      b.inner_idxs[2] != 0 || b.inner_blks[0] != 16 || b.inner_blks[2] != 2) {
    return std::nullopt;
  }
  const int64_t n_block = b.inner_blks[1];
  const int64_t k_padded = md.padded_dims[0];
  if (n_block % internal::kPackedColumnGroup != 0 || n_block > 64 ||
      k_padded % 32 != 0 || md.padded_dims[1] % n_block != 0 ||
      b.strides[0] != 32 * n_block || b.strides[1] != k_padded * n_block) {
    return std::nullopt;
  }
  return internal::PackedBf16Weights{
      .data = static_cast<const bf16_t*>(packed.get_data_handle()),
      .n = static_cast<int>(md.dims[1]),
      .k_padded = static_cast<int>(k_padded),
      .n_block = static_cast<int>(n_block),
      .n_block_stride = b.strides[1]};
}

}  // namespace

struct DenseLayer::Impl {
  int in = 0;
  int out = 0;
  DType compute = DType::kFloat32;
  bool has_bias = false;
  // The weights packed in the layout oneDNN chose at Create for the largest
  // M. Should a bucket refuse that layout (oneDNN may want another for small
  // M on some ISAs), a second layout is packed from it and kept here too.
  std::vector<dnnl::memory> packed ABSL_GUARDED_BY(mu);
  dnnl::memory bias;

  mutable absl::Mutex mu;
  // One primitive per M bucket, built lazily; src/dst memories are reused
  // with set_data_handle.
  struct Bucket {
    dnnl::matmul matmul;
    dnnl::memory weights;  // One of `packed`.
    dnnl::memory src;
    dnnl::memory dst;
    std::string kernel_name;
  };
  std::map<int64_t, Bucket> buckets ABSL_GUARDED_BY(mu);
  dnnl::stream stream ABSL_GUARDED_BY(mu);
  std::vector<bf16_t> src_bf16 ABSL_GUARDED_BY(mu);  // x rounded to bf16.
  std::vector<float> src_pad ABSL_GUARDED_BY(mu);    // f32 x padded to M.
  std::vector<float> dst_pad ABSL_GUARDED_BY(mu);    // y of a padded M.
  // linserve's kernel for M <= kRowInvariantRows, reading packed.front(),
  // and its input: rows of x in bf16, zero past `in`.
  std::optional<internal::PackedBf16Weights> small_m;
  std::vector<bf16_t> small_m_src ABSL_GUARDED_BY(mu);

  void RunSmallM(const float* x, int64_t m, float* y)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const int64_t ldx = small_m->k_padded;
    for (int64_t r = 0; r < m; ++r) {
      ConvertFloatToBf16(x + r * in, in, small_m_src.data() + r * ldx);
    }
    internal::PackedBf16Gemm(
        small_m_src.data(), ldx, static_cast<int>(m), *small_m,
        has_bias ? static_cast<const float*>(bias.get_data_handle()) : nullptr,
        y, out);
  }

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

  // A primitive for `rows` rows that takes one of the packed layouts, or
  // oneDNN's preferred layout for it, packed now from the first one.
  absl::StatusOr<Bucket> MakeBucket(int64_t rows)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    for (const dnnl::memory& weights : packed) {
      try {
        auto pd = MakePrimitiveDesc(rows, weights.get_desc());
        if (!IsReferenceKernel(pd)) return MakeBucket(pd, weights);
      } catch (const dnnl::error&) {
        // This layout is not accepted for this M: try the next.
      }
    }
    try {
      auto pd = MakePrimitiveDesc(
          rows, dnnl::memory::desc({in, out}, ToDnnl(compute), tag::any));
      dnnl::memory weights(pd.weights_desc(), CpuEngine());
      dnnl::stream reorder_stream(CpuEngine());
      dnnl::reorder(packed.front(), weights)
          .execute(reorder_stream, packed.front(), weights);
      reorder_stream.wait();
      packed.push_back(weights);
      return MakeBucket(pd, weights);
    } catch (const dnnl::error& e) {
      return absl::InternalError(absl::StrCat(
          "oneDNN cannot build a ", std::string(DTypeName(compute)),
          " matmul of M=", rows, " x [", out, ", ", in, "]: ", e.what()));
    }
  }

  static Bucket MakeBucket(const dnnl::matmul::primitive_desc& pd,
                           const dnnl::memory& weights) {
    return Bucket{dnnl::matmul(pd), weights,
                  dnnl::memory(pd.src_desc(), CpuEngine(), DNNL_MEMORY_NONE),
                  dnnl::memory(pd.dst_desc(), CpuEngine(), DNNL_MEMORY_NONE),
                  pd.impl_info_str()};
  }

  Bucket& GetBucket(int64_t rows) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto it = buckets.find(rows);
    if (it != buckets.end()) return it->second;
    absl::StatusOr<Bucket> bucket = MakeBucket(rows);
    if (!bucket.ok()) {
      // Create() built the smallest and the largest bucket, so a refusal in
      // between is a oneDNN defect, not an input error.
      std::fprintf(stderr, "linserve: %s\n",
                   std::string(bucket.status().message()).c_str());
      std::abort();
    }
    return buckets.emplace(rows, *std::move(bucket)).first->second;
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
                                                  {DNNL_ARG_WEIGHTS, b.weights},
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
    dnnl::memory weights(pd->weights_desc(), engine);
    dnnl::stream stream(engine);
    dnnl::reorder(user_weights, weights).execute(stream, user_weights, weights);
    stream.wait();
    absl::MutexLock lock(&impl->mu);
    impl->packed.push_back(weights);
    using SmallMKernel = DenseLayerOptions::SmallMKernel;
    const bool small_m_kernel =
        options.small_m_kernel == SmallMKernel::kAlways ||
        (options.small_m_kernel == SmallMKernel::kAuto &&
         !DetectedCpuFeatures().amx_bf16);
    if (impl->compute == DType::kBfloat16 && small_m_kernel) {
      impl->small_m = PackedBf16View(weights);
      if (impl->small_m) {
        impl->small_m_src.assign(kRowInvariantRows * impl->small_m->k_padded,
                                 0);
      }
    }

    if (impl->has_bias) {
      impl->bias = dnnl::memory(
          dnnl::memory::desc({1, impl->out}, dt::f32, tag::ab), engine);
      std::memcpy(impl->bias.get_data_handle(), options.bias,
                  sizeof(float) * impl->out);
    }
    impl->stream = dnnl::stream(engine);
    // Build the smallest and the largest bucket now, so that a oneDNN
    // refusal is an error at load, not during serving.
    for (int64_t rows : {int64_t{1}, kMaxBlockRows}) {
      ASSIGN_OR_RETURN(Impl::Bucket bucket, impl->MakeBucket(rows));
      impl->buckets.emplace(rows, std::move(bucket));
    }
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
  const ScopedKernelTimer timer(KernelKind::kGemm);
  absl::MutexLock lock(&impl_->mu);
  if (impl_->small_m && m <= kRowInvariantRows) {
    impl_->RunSmallM(x, m, y);
    return;
  }
  for (int64_t row = 0; row < m; row += kMaxBlockRows) {
    const int64_t rows = std::min(kMaxBlockRows, m - row);
    impl_->RunBlock(x + row * impl_->in, rows, y + row * impl_->out);
  }
}

int DenseLayer::in_features() const { return impl_->in; }
int DenseLayer::out_features() const { return impl_->out; }
DType DenseLayer::compute_type() const { return impl_->compute; }

int64_t DenseLayer::packed_weight_bytes() const {
  absl::MutexLock lock(&impl_->mu);
  int64_t bytes = 0;
  for (const dnnl::memory& w : impl_->packed) {
    bytes += static_cast<int64_t>(w.get_desc().get_size());
  }
  return bytes;
}

bool DenseLayer::uses_small_m_kernel() const {
  return impl_->small_m.has_value();
}

std::string DenseLayer::KernelName(int64_t m) {
  absl::MutexLock lock(&impl_->mu);
  if (impl_->small_m && m <= kRowInvariantRows) {
    return absl::StrCat("linserve:packed_bf16_",
                        internal::PackedBf16GemmBodyName());
  }
  return impl_->GetBucket(BucketRows(std::min(m, kMaxBlockRows))).kernel_name;
}

}  // namespace linserve::kernels
