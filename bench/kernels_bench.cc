// kernels_bench: the machine's own limits and linserve's kernels against
// them, measured in one run, printed as ratios (docs/performance.md).
//
//   limits   oneDNN bf16 and f32 GEMM peak (large square GEMM), streaming
//            read+write memory bandwidth on buffers of the working-set size
//   dense    DenseLayer at M = 1..512 for D = 1024, 2048 and a 32768 x 1024
//            lm_head: FLOP/s as a fraction of the GEMM peak (and weight
//            bytes/s for small M); bf16 small M also on oneDNN alone
//   step     RecurrentStep, B = 1, 16, 64 sessions, H = 8, K = V = 128: state
//            bytes moved per second as a fraction of the bandwidth
//   prefill  ChunkwiseForward at T = 4096: tokens/s, and the core's share of
//            a D = 1024 layer's time next to its projection GEMMs
//
// Usage: kernels_bench [--quick]   (--quick: shorter timing, for smoke runs)
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "kernels/cpu_features.h"
#include "kernels/dense_layer.h"
#include "kernels/linear_attention.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace linserve::kernels {
namespace {

using bench::g_min_seconds;
using bench::GemmPeak;
using bench::Random;
using bench::ReadBandwidth;
using bench::ReadWriteBandwidth;
using bench::TimeIt;

// ---- Kernels ---------------------------------------------------------------

struct RuleCase {
  UpdateRule rule;
  bool normalize;
  const char* name;
};

const RuleCase kRules[] = {
    {UpdateRule::kAdditive, false, "additive (linear_attn)"},
    {UpdateRule::kAdditive, true, "additive+z (performer)"},
    {UpdateRule::kFixedDecay, false, "fixed decay (retnet)"},
    {UpdateRule::kVectorDecay, false, "vector decay (gla)"},
    {UpdateRule::kDelta, false, "delta (delta_net)"},
    {UpdateRule::kGatedDelta, false, "gated delta (gdn)"},
};

// Inputs for `rows` rows of H heads, realistic for the rule.
struct Inputs {
  std::vector<float> q, k, v, log_decay, beta, head_log_decay;
  AttentionSpec spec;
  AttentionInputs view;
};

Inputs MakeInputs(const RuleCase& rc, int64_t rows, int heads, int dk, int dv) {
  Inputs in;
  in.spec = {.rule = rc.rule,
             .num_heads = heads,
             .key_dim = dk,
             .value_dim = dv,
             .normalize = rc.normalize};
  const float scale = 1.0f / std::sqrt(static_cast<float>(dk));
  in.q = Random(rows * heads * dk, 1);
  in.k = Random(rows * heads * dk, 2);
  in.v = Random(rows * heads * dv, 3);
  for (float& x : in.q) x *= scale;
  if (rc.normalize) {
    for (float& x : in.q) x = std::fabs(x);
    for (float& x : in.k) x = std::fabs(x);
  }
  if (rc.rule == UpdateRule::kDelta || rc.rule == UpdateRule::kGatedDelta) {
    for (int64_t r = 0; r < rows * heads; ++r) {  // l2-normalised keys
      float* k = &in.k[r * dk];
      double ss = 0;
      for (int i = 0; i < dk; ++i) ss += k[i] * k[i];
      for (int i = 0; i < dk; ++i) k[i] /= std::sqrt(ss + 1e-6);
    }
    in.beta = Random(rows * heads, 4, 0.05f, 0.95f);
  }
  if (rc.rule == UpdateRule::kVectorDecay) {
    in.log_decay = Random(rows * heads * dk, 5, -0.3f, -0.001f);
  }
  if (rc.rule == UpdateRule::kGatedDelta) {
    in.log_decay = Random(rows * heads, 5, -0.3f, -0.001f);
  }
  for (int h = 0; h < heads; ++h) {
    in.head_log_decay.push_back(std::log(1.0f - std::exp2(-5.0f - h)));
  }
  in.spec.head_log_decay = in.head_log_decay.data();
  in.view = {.q = in.q.data(),
             .k = in.k.data(),
             .v = in.v.data(),
             .log_decay = in.log_decay.empty() ? nullptr : in.log_decay.data(),
             .beta = in.beta.empty() ? nullptr : in.beta.data()};
  return in;
}

void BenchDense(double bf16_peak, double f32_peak) {
  std::printf(
      "\n== Dense layer (y = x W^T, out x in weights; bf16 M <= %lld: "
      "linserve's packed kernel, and oneDNN's matmul on the same weights)\n",
      static_cast<long long>(DenseLayer::kRowInvariantRows));
  std::printf("  %-11s %-5s %-5s %10s %9s %12s %9s  %s\n", "out x in", "type",
              "M", "GFLOP/s", "of peak", "weight GB/s", "of read", "kernel");
  struct Shape {
    int out, in;
  };
  // Square layers that stay in a large L3, and an lm_head-sized one (64 MiB
  // in bf16) that streams from memory.
  for (Shape shape :
       {Shape{1024, 1024}, Shape{2048, 2048}, Shape{32768, 1024}}) {
    const auto w = Random(int64_t{shape.out} * shape.in, 7);
    for (DType type : {DType::kBfloat16, DType::kFloat32}) {
      for (bool small_m_kernel : {true, false}) {
        using SmallMKernel = DenseLayerOptions::SmallMKernel;
        if (type == DType::kFloat32 && !small_m_kernel) continue;
        auto layer = DenseLayer::Create(
            {.weights = w.data(),
             .out_features = shape.out,
             .in_features = shape.in,
             .compute_type = type,
             .small_m_kernel = small_m_kernel ? SmallMKernel::kAlways
                                              : SmallMKernel::kNever});
        if (!layer.ok()) {
          std::printf("  %dx%d %s: %s\n", shape.out, shape.in,
                      std::string(DTypeName(type)).c_str(),
                      std::string(layer.status().message()).c_str());
          continue;
        }
        const DType real = (*layer)->compute_type();
        if (!small_m_kernel && real != DType::kBfloat16) continue;
        // The limit for small M: reading the packed weights once per call.
        const double bandwidth = ReadBandwidth((*layer)->packed_weight_bytes());
        const double peak = real == DType::kBfloat16 ? bf16_peak : f32_peak;
        std::vector<int64_t> ms = {1, 2, 8, 16, 64, 512};
        if (!small_m_kernel) ms.pop_back();  // Same kernel as above.
        for (int64_t m : ms) {
          const auto x = Random(m * shape.in, 8);
          std::vector<float> y(m * shape.out);
          const double s =
              TimeIt([&] { (*layer)->Forward(x.data(), m, y.data()); });
          const double flops = 2.0 * m * shape.out * shape.in / s;
          const double weight_bw = (*layer)->packed_weight_bytes() / s;
          std::printf(
              "  %5dx%-5d %-5s %-5lld %10.1f %8.1f%% %12.1f %8.1f%%  %s\n",
              shape.out, shape.in, std::string(DTypeName(real)).c_str(),
              static_cast<long long>(m), flops / 1e9, 100 * flops / peak,
              weight_bw / 1e9, 100 * weight_bw / bandwidth,
              (*layer)->KernelName(m).c_str());
        }
      }
    }
  }
}

// A decode step's weight traffic: M = 1..2 through many distinct layers
// whose weights together are larger than any cache, as a model streams its
// weights from memory once per step.
void BenchDenseCold(bool quick) {
  const int out = 3072, in = 1024;
  const int layers = quick ? 8 : 96;  // 96 x 6 MiB = 576 MiB in bf16
  const double total_bytes = 2.0 * out * in * layers;
  std::printf(
      "\n== Dense layers, cold (%d layers of %dx%d, %.0f MiB in bf16, one "
      "call each, as a decode step)\n",
      layers, out, in, total_bytes / (1 << 20));
  const double bandwidth = ReadBandwidth(static_cast<int64_t>(total_bytes));
  std::printf("  read bandwidth of that size %.1f GB/s\n", bandwidth / 1e9);
  std::printf("  %-5s %12s %9s %10s  %s\n", "M", "weight GB/s", "of read",
              "GFLOP/s", "kernel");
  const auto w = Random(int64_t{out} * in, 7);
  for (bool small_m_kernel : {true, false}) {
    using SmallMKernel = DenseLayerOptions::SmallMKernel;
    std::vector<std::unique_ptr<DenseLayer>> stack;
    for (int l = 0; l < layers; ++l) {
      auto layer = DenseLayer::Create(
          {.weights = w.data(),
           .out_features = out,
           .in_features = in,
           .compute_type = DType::kBfloat16,
           .small_m_kernel =
               small_m_kernel ? SmallMKernel::kAlways : SmallMKernel::kNever});
      if (!layer.ok() || (*layer)->compute_type() != DType::kBfloat16) return;
      stack.push_back(*std::move(layer));
    }
    // M = 64: a batched decode step, where each weight byte serves 64 rows
    // and the GEMMs should run near the compute peak, not the bandwidth.
    for (int64_t m : {1, 2, 8, 64}) {
      const auto x = Random(m * in, 8);
      std::vector<float> y(m * out);
      const double s = TimeIt([&] {
        for (auto& layer : stack) layer->Forward(x.data(), m, y.data());
      });
      std::printf("  %-5lld %12.1f %8.1f%% %10.1f  %s\n",
                  static_cast<long long>(m), total_bytes / s / 1e9,
                  100 * total_bytes / s / bandwidth, total_bytes * m / s / 1e9,
                  stack.front()->KernelName(m).c_str());
    }
  }
}

void BenchRecurrentStep(bool quick) {
  const int heads = 8, dk = 128, dv = 128;
  const int64_t state_floats = int64_t{heads} * dk * dv;
  const int64_t state_bytes = state_floats * 4;
  // "Cold": every call takes the next B sessions of a pool far larger than
  // the caches, as a server with many sessions sees; compared with the
  // read+write bandwidth of a buffer of the pool's size. "Hot": the same B
  // sessions every call, compared with the bandwidth of a buffer of B states.
  const int64_t pool_bytes = (quick ? int64_t{256} : int64_t{1024}) << 20;
  const int64_t pool_sessions = pool_bytes / state_bytes;
  const double cold_bw = ReadWriteBandwidth(pool_bytes);
  std::printf(
      "\n== Recurrent step (H=%d, K=V=%d, %lld KiB of state per session; "
      "state bytes read + written)\n",
      heads, dk, static_cast<long long>(state_bytes / 1024));
  std::printf(
      "  cold: sessions cycle through a %lld MiB pool, bandwidth of "
      "that size %.1f GB/s\n",
      static_cast<long long>(pool_bytes >> 20), cold_bw / 1e9);
  std::printf("  %-24s %4s %10s %11s %7s %11s %7s\n", "rule", "B", "steps/s",
              "hot GB/s", "of bw", "cold GB/s", "of bw");
  std::vector<float> pool(pool_sessions * state_floats, 0.0f);
  std::vector<float> z(pool_sessions * heads * dk, 0.0f);
  for (int batch : {1, 16, 64}) {
    const double hot_bw = ReadWriteBandwidth(batch * state_bytes);
    std::printf("  %-24s %4d %10s %11.1f\n", "(read+write bandwidth)", batch,
                "", hot_bw / 1e9);
    for (const RuleCase& rc : kRules) {
      Inputs in = MakeInputs(rc, batch, heads, dk, dv);
      std::vector<AttentionState> states(batch);
      int64_t next = 0;  // First pool session of the next call.
      auto point_at = [&](int64_t first) {
        for (int b = 0; b < batch; ++b) {
          const int64_t session = (first + b) % pool_sessions;
          states[b] = {.s = &pool[session * state_floats],
                       .z = rc.normalize ? &z[session * heads * dk] : nullptr};
        }
      };
      std::vector<float> out(batch * heads * dv);
      point_at(0);
      const double hot = TimeIt([&] {
        RecurrentStep(in.spec, batch, in.view, states.data(), out.data());
      });
      const double cold = TimeIt([&] {
        point_at(next);
        next = (next + batch) % pool_sessions;
        RecurrentStep(in.spec, batch, in.view, states.data(), out.data());
      });
      const double bytes = 2.0 * batch * state_bytes;
      std::printf("  %-24s %4d %10.0f %11.1f %6.0f%% %11.1f %6.0f%%\n", rc.name,
                  batch, 1 / hot, bytes / hot / 1e9, 100 * bytes / hot / hot_bw,
                  bytes / cold / 1e9, 100 * bytes / cold / cold_bw);
    }
  }
}

void BenchPrefill(bool quick) {
  const int heads = 8, dk = 128, dv = 128, d_model = 1024;
  const int64_t tokens = 4096;
  std::printf(
      "\n== Chunkwise prefill (T=%lld, H=%d, K=V=%d, chunk %d) vs the "
      "projections of a D=%d layer\n",
      static_cast<long long>(tokens), heads, dk, kDefaultChunkSize, d_model);
  // The layer's projection GEMMs: q, k, v, output gate and o_proj, each
  // D x D on T tokens, in bf16 (the serving default).
  const auto w = Random(int64_t{d_model} * d_model, 9);
  auto proj = DenseLayer::Create({.weights = w.data(),
                                  .out_features = d_model,
                                  .in_features = d_model,
                                  .compute_type = DType::kBfloat16});
  if (!proj.ok()) return;
  const auto x = Random(tokens * d_model, 10);
  std::vector<float> y(tokens * d_model);
  const double one_proj =
      TimeIt([&] { (*proj)->Forward(x.data(), tokens, y.data()); });
  const double projections = 5 * one_proj;
  // The layer's SwiGLU MLP (fla's width rule: I = 2816 for D = 1024, ratio 4):
  // gate and up [D -> I], down [I -> D].
  const int mlp_width = 2816;
  const auto w_up = Random(int64_t{mlp_width} * d_model, 11);
  auto up = DenseLayer::Create({.weights = w_up.data(),
                                .out_features = mlp_width,
                                .in_features = d_model,
                                .compute_type = DType::kBfloat16});
  auto down = DenseLayer::Create({.weights = w_up.data(),
                                  .out_features = d_model,
                                  .in_features = mlp_width,
                                  .compute_type = DType::kBfloat16});
  if (!up.ok() || !down.ok()) return;
  std::vector<float> hidden(tokens * mlp_width);
  const double mlp =
      2 * TimeIt([&] { (*up)->Forward(x.data(), tokens, hidden.data()); }) +
      TimeIt([&] { (*down)->Forward(hidden.data(), tokens, y.data()); });
  std::printf(
      "  projections: 5 x [%lld x %d x %d] %s GEMMs (q, k, v, gate, o): "
      "%.2f ms\n",
      static_cast<long long>(tokens), d_model, d_model,
      std::string(DTypeName((*proj)->compute_type())).c_str(),
      projections * 1e3);
  std::printf("  MLP: gate, up [%d -> %d], down [%d -> %d]: %.2f ms\n", d_model,
              mlp_width, mlp_width, d_model, mlp * 1e3);
  std::printf("  %-24s %10s %8s %9s %14s %14s\n", "rule", "tokens/s", "ms",
              "GFLOP/s", "core/(core+proj)", "core/(+MLP)");
  for (const RuleCase& rc : kRules) {
    Inputs in = MakeInputs(rc, tokens, heads, dk, dv);
    std::vector<float> s(int64_t{heads} * dk * dv);
    std::vector<float> z(heads * dk);
    std::vector<float> out(tokens * heads * dv);
    const double sec = TimeIt([&] {
      std::fill(s.begin(), s.end(), 0.0f);
      std::fill(z.begin(), z.end(), 0.0f);
      ChunkwiseForward(in.spec, tokens, in.view,
                       {.s = s.data(), .z = rc.normalize ? z.data() : nullptr},
                       out.data());
    });
    // Useful FLOPs of the chunk form with C = 64 (per head and chunk:
    // Q S, Q K^T, P V, K^T V; the delta rules add W S and the solve).
    const double c = kDefaultChunkSize;
    double per_chunk = 2 * c * dk * dv * 2 + 2 * c * c * dk + 2 * c * c * dv;
    if (rc.rule == UpdateRule::kDelta || rc.rule == UpdateRule::kGatedDelta) {
      per_chunk += 2 * c * dk * dv + 2 * c * c * dk + c * c * (dk + dv);
    }
    const double flops = per_chunk * heads * (tokens / c);
    std::printf("  %-24s %10.0f %8.2f %9.1f %15.1f%% %13.1f%%\n", rc.name,
                tokens / sec, sec * 1e3, flops / sec / 1e9,
                100 * sec / (sec + projections),
                100 * sec / (sec + projections + mlp));
    if (quick) break;
  }
}

int Main(int argc, char** argv) {
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--quick") quick = true;
  }
  if (quick) g_min_seconds = 0.05;
  const CpuFeatures& f = DetectedCpuFeatures();
  std::printf("linserve kernels_bench\n");
  std::printf(
      "  threads %d, kernel ISA %s, avx512f %d, avx512_bf16 %d, amx_bf16 %d, "
      "oneDNN ISA cap %s\n",
      omp_get_max_threads(),
      std::string(KernelIsaName(ActiveKernelIsa())).c_str(), f.avx512f,
      f.avx512_bf16, f.amx_bf16,
      std::getenv("ONEDNN_MAX_CPU_ISA") ? std::getenv("ONEDNN_MAX_CPU_ISA")
                                        : "none");

  std::printf("\n== Machine limits\n");
  const int64_t n = quick ? 1024 : 2048;
  const double bf16_peak = GemmPeak(dnnl::memory::data_type::bf16, n);
  std::printf("  %-40s %10.1f GFLOP/s\n", "oneDNN bf16 GEMM peak (n^3)",
              bf16_peak / 1e9);
  const double f32_peak = GemmPeak(dnnl::memory::data_type::f32, n);
  std::printf("  %-40s %10.1f GFLOP/s\n", "oneDNN f32 GEMM peak (n^3)",
              f32_peak / 1e9);
  for (int64_t mib : {8, 64, 256}) {
    std::printf("  read bandwidth (%3lld MiB) %24.1f GB/s\n",
                static_cast<long long>(mib), ReadBandwidth(mib << 20) / 1e9);
  }

  BenchDense(bf16_peak, f32_peak);
  BenchDenseCold(quick);
  BenchRecurrentStep(quick);
  BenchPrefill(quick);
  return 0;
}

}  // namespace
}  // namespace linserve::kernels

int main(int argc, char** argv) { return linserve::kernels::Main(argc, argv); }
