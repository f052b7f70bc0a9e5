// engine_bench: one model's prefill and decode speed against the machine's
// own limits, measured in one run (issue 3 §6, docs/performance.md "Engine").
//
//   limits   oneDNN GEMM peak of the weights' dtype (large square GEMM),
//            read bandwidth over a buffer of the GEMM weights' size,
//            read+write bandwidth over the largest batch's states
//   prefill  one session, Model::Prefill with LogitsMode::kLast, at 512,
//            4096 and 65536 tokens: tokens/s and the fraction of the GEMM
//            roofline (2 x GEMM parameters per token / peak; also with the
//            chunkwise attention core's FLOPs added)
//   decode   Model::DecodeStep over B = 1, 8, 64 distinct sessions (each
//            after a 16-token prefill): tokens/s, weight and state bytes per
//            step against the bandwidths (roofline: weights at the read
//            bandwidth plus states at the read+write bandwidth, over the
//            step's time), and the B / B=1 speed-up
//   memory   VmRSS of the process with one session after 1k tokens and
//            after --rss-tokens tokens (default 1M), prefilled in pieces
//
// Usage: engine_bench --model DIR [--dtype bf16|f32] [--quick] [--profile]
//          [--rss-tokens N] [--prefill-piece N] [--prefill-tokens 512,4096]
//          [--batches 1,8,64] [--json FILE]
// --profile: after each prefill size and batch, one more run with kernel
// timing on (kernels/kernel_timing.h), and the share of its wall-clock time
// spent in the GEMMs, the attention core, the short convs and elsewhere.
// (an empty --prefill-tokens or --batches list skips that part)
// --quick: tiny sizes and short timing, for the ctest smoke run.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "bench/bench_util.h"
#include "common/status_macros.h"
#include "engine/model.h"
#include "engine/model_config.h"
#include "kernels/cpu_features.h"
#include "kernels/dtype.h"
#include "kernels/kernel_timing.h"
#include "kernels/linear_attention.h"
#include "nlohmann/json.hpp"
#include "oneapi/dnnl/dnnl.hpp"

namespace linserve::bench {
namespace {

using engine::LogitsMode;
using engine::Model;
using engine::ModelConfig;
using engine::ModelFamily;
using engine::SessionState;

struct Flags {
  std::string model_dir;
  kernels::DType dtype = kernels::DType::kBfloat16;
  bool quick = false;
  bool profile = false;
  int64_t rss_tokens = 1000000;
  int64_t prefill_piece = 0;  // 0: the engine's default
  std::vector<int64_t> prefill_tokens = {512, 4096, 65536};
  std::vector<int64_t> batches = {1, 8, 64};
  std::string json_path;
};

// "512,4096" -> {512, 4096}; "" -> {} (that part is skipped).
absl::StatusOr<std::vector<int64_t>> ParseList(const std::string& flag,
                                               const std::string& text) {
  std::vector<int64_t> values;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int64_t n = 0;
    if (!absl::SimpleAtoi(item, &n) || n < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          flag, ": expected positive integers separated by commas, got ",
          text));
    }
    values.push_back(n);
  }
  return values;
}

absl::StatusOr<Flags> ParseFlags(int argc, char** argv) {
  Flags flags;
  bool rss_set = false, prefill_set = false, batches_set = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> absl::StatusOr<std::string> {
      if (i + 1 >= argc) {
        return absl::InvalidArgumentError(absl::StrCat(arg, " needs a value"));
      }
      return std::string(argv[++i]);
    };
    auto number = [&]() -> absl::StatusOr<int64_t> {
      ASSIGN_OR_RETURN(const std::string text, value());
      int64_t n = 0;
      if (!absl::SimpleAtoi(text, &n) || n < 1) {
        return absl::InvalidArgumentError(
            absl::StrCat(arg, ": expected a positive integer, got ", text));
      }
      return n;
    };
    if (arg == "--model") {
      ASSIGN_OR_RETURN(flags.model_dir, value());
    } else if (arg == "--dtype") {
      ASSIGN_OR_RETURN(const std::string d, value());
      if (d == "bf16") {
        flags.dtype = kernels::DType::kBfloat16;
      } else if (d == "f32") {
        flags.dtype = kernels::DType::kFloat32;
      } else {
        return absl::InvalidArgumentError("--dtype: expected bf16 or f32");
      }
    } else if (arg == "--quick") {
      flags.quick = true;
    } else if (arg == "--profile") {
      flags.profile = true;
    } else if (arg == "--rss-tokens") {
      ASSIGN_OR_RETURN(flags.rss_tokens, number());
      rss_set = true;
    } else if (arg == "--prefill-piece") {
      ASSIGN_OR_RETURN(flags.prefill_piece, number());
    } else if (arg == "--prefill-tokens") {
      ASSIGN_OR_RETURN(const std::string text, value());
      ASSIGN_OR_RETURN(flags.prefill_tokens, ParseList(arg, text));
      prefill_set = true;
    } else if (arg == "--batches") {
      ASSIGN_OR_RETURN(const std::string text, value());
      ASSIGN_OR_RETURN(flags.batches, ParseList(arg, text));
      batches_set = true;
    } else if (arg == "--json") {
      ASSIGN_OR_RETURN(flags.json_path, value());
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", arg));
    }
  }
  if (flags.model_dir.empty()) {
    return absl::InvalidArgumentError("--model DIR is required");
  }
  if (flags.quick && !rss_set) flags.rss_tokens = 4096;
  if (flags.quick && !prefill_set) flags.prefill_tokens = {64, 512};
  if (flags.quick && !batches_set) flags.batches = {1, 8};
  return flags;
}

// Resident memory of this process (VmRSS), bytes; -1 where unreadable.
int64_t ResidentBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      std::istringstream fields(line.substr(6));
      int64_t kib = 0;
      fields >> kib;
      return kib * 1024;
    }
  }
  return -1;
}

// What one token costs, from the config's tensor list (spec §1.2-§7).
struct ModelCost {
  int64_t params = 0;       // every tensor
  int64_t layer_gemm = 0;   // GEMM weights of the blocks (2D, no norms)
  int64_t lm_head = 0;      // vocab x D
  double core_flops = 0.0;  // chunkwise attention core, per token
  int64_t weight_bytes_per_step = 0;  // GEMM weights in the compute dtype
};

ModelCost CostOf(const ModelConfig& c, kernels::DType dtype) {
  ModelCost cost;
  for (const engine::ExpectedTensor& t : engine::ExpectedTensors(c)) {
    if (t.presence != engine::TensorPresence::kRequired) continue;
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    cost.params += n;
    const bool block_gemm = t.shape.size() == 2 &&
                            t.name.rfind("model.layers.", 0) == 0 &&
                            t.name.find("norm") == std::string::npos;
    if (block_gemm) cost.layer_gemm += n;
  }
  cost.lm_head = c.vocab_size * c.hidden_size;
  // Per head and token of the chunk form with C = 64 (as kernels_bench):
  // Q S, K^T V (4 K V), Q K^T and P V (2 C (K + V)); the delta rules add
  // the W S product and the triangular solve.
  const bool gdn = c.family == ModelFamily::kGatedDeltaNet;
  const double heads = gdn ? c.num_v_heads : c.num_heads;
  const double k = c.feature_dim > 0 ? c.feature_dim : c.head_k_dim;
  const double v = c.head_v_dim;
  const double chunk = kernels::kDefaultChunkSize;
  double per_head = 4 * k * v + 2 * chunk * (k + v);
  if (gdn || c.family == ModelFamily::kDeltaNet) {
    per_head += 2 * k * v + 2 * chunk * k + chunk * (k + v);
  }
  cost.core_flops = per_head * heads * c.num_hidden_layers;
  const int64_t bytes = dtype == kernels::DType::kBfloat16 ? 2 : 4;
  cost.weight_bytes_per_step = (cost.layer_gemm + cost.lm_head) * bytes;
  return cost;
}

std::vector<int32_t> RandomTokens(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0,
                                              static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> tokens(n);
  for (int32_t& t : tokens) t = dist(rng);
  return tokens;
}

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

void Check(const absl::Status& status) {
  if (!status.ok()) {
    std::fprintf(stderr, "engine_bench: %s\n", status.ToString().c_str());
    std::exit(1);
  }
}

// Median seconds of a fresh session's prefill of `tokens` (kLast): one
// untimed run first when it is short, then runs until g_min_seconds have
// passed (at least 1, at most 9).
double TimePrefill(Model& model, absl::Span<const int32_t> tokens,
                   float* logits) {
  auto run = [&] {
    auto session = model.NewSession();
    const auto start = std::chrono::steady_clock::now();
    Check(model.Prefill(*session, tokens, LogitsMode::kLast, logits));
    return Seconds(start);
  };
  if (tokens.size() <= 4096) run();
  std::vector<double> samples;
  double total = 0;
  while (samples.empty() || (total < g_min_seconds && samples.size() < 9)) {
    samples.push_back(run());
    total += samples.back();
  }
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

// --profile: runs `fn` once more with kernel timing on and prints where its
// wall-clock time went.
void PrintProfile(const std::function<void()>& fn) {
  kernels::ResetKernelTimes();
  kernels::SetKernelTimingEnabled(true);
  const auto start = std::chrono::steady_clock::now();
  fn();
  const double total = Seconds(start);
  kernels::SetKernelTimingEnabled(false);
  const kernels::KernelTimes t = kernels::KernelTimesSoFar();
  double rest = total;
  std::printf("           profile:");
  for (int i = 0; i < kernels::kNumKernelKinds; ++i) {
    const std::string name(
        kernels::KernelKindName(static_cast<kernels::KernelKind>(i)));
    std::printf(" %s %.1f%%", name.c_str(), 100 * t.seconds[i] / total);
    rest -= t.seconds[i];
  }
  std::printf(", other %.1f%% (of %.2f ms)\n", 100 * rest / total, total * 1e3);
}

int Main(int argc, char** argv) {
  absl::StatusOr<Flags> parsed = ParseFlags(argc, argv);
  if (!parsed.ok()) {
    std::fprintf(stderr,
                 "engine_bench: %s\nusage: engine_bench --model DIR "
                 "[--dtype bf16|f32] [--quick] [--rss-tokens N] "
                 "[--prefill-piece N] [--prefill-tokens LIST] "
                 "[--batches LIST] [--json FILE]\n",
                 std::string(parsed.status().message()).c_str());
    return 2;
  }
  const Flags& flags = *parsed;
  // Line by line, so that a run cut short (a time limit) keeps its tables.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (flags.quick) g_min_seconds = 0.02;

  engine::ModelOptions options;
  options.weight_type = flags.dtype;
  if (flags.prefill_piece > 0) {
    options.prefill_piece_tokens = flags.prefill_piece;
  }
  const auto load_start = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<Model>> loaded =
      Model::Load(flags.model_dir, options);
  Check(loaded.status());
  Model& model = **loaded;
  const double load_seconds = Seconds(load_start);
  const ModelConfig& c = model.config();
  const ModelCost cost = CostOf(c, flags.dtype);
  const int64_t state_bytes = model.StateBytes();
  const kernels::CpuFeatures& f = kernels::DetectedCpuFeatures();

  std::printf("linserve engine_bench\n");
  std::printf(
      "  model %s: %s, D=%lld, %lld layers, vocab %lld; %.1fM parameters, "
      "%.1fM in the blocks' GEMMs\n",
      flags.model_dir.c_str(), std::string(ModelFamilyName(c.family)).c_str(),
      static_cast<long long>(c.hidden_size),
      static_cast<long long>(c.num_hidden_layers),
      static_cast<long long>(c.vocab_size), cost.params / 1e6,
      cost.layer_gemm / 1e6);
  std::printf(
      "  GEMMs in %s, prefill pieces of %lld tokens, state %.2f MiB per "
      "session, loaded in %.1f s\n",
      std::string(kernels::DTypeName(flags.dtype)).c_str(),
      static_cast<long long>(model.options().prefill_piece_tokens),
      state_bytes / 1048576.0, load_seconds);
  std::printf(
      "  threads %d, kernel ISA %s, avx512_bf16 %d, amx_bf16 %d, oneDNN ISA "
      "cap %s\n",
      omp_get_max_threads(),
      std::string(kernels::KernelIsaName(kernels::ActiveKernelIsa())).c_str(),
      f.avx512_bf16, f.amx_bf16,
      std::getenv("ONEDNN_MAX_CPU_ISA") ? std::getenv("ONEDNN_MAX_CPU_ISA")
                                        : "none");

  // ---- Machine limits.
  std::printf("\n== Machine limits\n");
  const bool bf16 = flags.dtype == kernels::DType::kBfloat16;
  const double peak = GemmPeak(
      bf16 ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32,
      flags.quick ? 1024 : 2048);
  std::printf(
      "  %-44s %10.1f GFLOP/s\n",
      bf16 ? "oneDNN bf16 GEMM peak (n^3)" : "oneDNN f32 GEMM peak (n^3)",
      peak / 1e9);
  const int64_t weight_buffer = std::clamp<int64_t>(cost.weight_bytes_per_step,
                                                    1 << 20, int64_t{1} << 30);
  const double read_bw = ReadBandwidth(weight_buffer);
  std::printf("  %-44s %10.1f GB/s\n",
              absl::StrCat("read bandwidth (", weight_buffer >> 20,
                           " MiB, the GEMM weights)")
                  .c_str(),
              read_bw / 1e9);
  const std::vector<int64_t>& batches = flags.batches;
  const int64_t largest_batch = batches.empty() ? 1 : batches.back();
  const int64_t state_buffer = std::clamp<int64_t>(largest_batch * state_bytes,
                                                   1 << 20, int64_t{2} << 30);
  const double rw_bw = ReadWriteBandwidth(state_buffer);
  std::printf("  %-44s %10.1f GB/s\n",
              absl::StrCat("read+write bandwidth (", state_buffer >> 20,
                           " MiB, B=", largest_batch, " states)")
                  .c_str(),
              rw_bw / 1e9);

  // ---- Prefill.
  const std::vector<int64_t>& prefill_sizes = flags.prefill_tokens;
  const std::vector<int32_t> tokens = RandomTokens(
      prefill_sizes.empty()
          ? 1
          : *std::max_element(prefill_sizes.begin(), prefill_sizes.end()),
      c.vocab_size, 1);
  std::vector<float> logits(64 * c.vocab_size);
  std::printf(
      "\n== Prefill (one session, LogitsMode::kLast; GEMM FLOPs = 2 x %.1fM "
      "per token + lm_head once; core +%.1f MFLOP/token)\n",
      cost.layer_gemm / 1e6, cost.core_flops / 1e6);
  std::printf("  %-8s %11s %10s %10s %13s %14s\n", "tokens", "tokens/s", "s",
              "GFLOP/s", "of GEMM peak", "+core of peak");
  nlohmann::json report;
  double prefill_fraction_last = 0;
  for (int64_t t : prefill_sizes) {
    const double s = TimePrefill(model, absl::MakeConstSpan(tokens.data(), t),
                                 logits.data());
    const double gemm_flops = 2.0 * cost.layer_gemm * t + 2.0 * cost.lm_head;
    const double all_flops = gemm_flops + cost.core_flops * t;
    std::printf("  %-8lld %11.0f %10.3f %10.1f %12.1f%% %13.1f%%\n",
                static_cast<long long>(t), t / s, s, gemm_flops / s / 1e9,
                100 * gemm_flops / s / peak, 100 * all_flops / s / peak);
    prefill_fraction_last = gemm_flops / s / peak;
    if (flags.profile) {
      PrintProfile([&] {
        auto session = model.NewSession();
        Check(model.Prefill(*session, absl::MakeConstSpan(tokens.data(), t),
                            LogitsMode::kLast, logits.data()));
      });
    }
    report["prefill"].push_back({{"tokens", t},
                                 {"tokens_per_s", t / s},
                                 {"gemm_fraction", gemm_flops / s / peak},
                                 {"with_core_fraction", all_flops / s / peak}});
  }

  // ---- Decode.
  std::printf(
      "\n== Decode (B sessions, one token each per DecodeStep; %.1f MB of "
      "GEMM weights per step, %.2f MiB of state read+written per session)\n",
      cost.weight_bytes_per_step / 1e6, state_bytes / 1048576.0);
  std::printf("  %-4s %11s %10s %12s %9s %14s %10s %8s\n", "B", "tokens/s",
              "ms/step", "weight GB/s", "of read", "+state GB/s", "roofline",
              "vs B=1");
  double b1_tokens_per_s = 0, b1_fraction = 0, last_ratio = 0;
  for (const int64_t b : batches) {
    std::vector<std::unique_ptr<SessionState>> sessions;
    std::vector<SessionState*> pointers;
    const std::vector<int32_t> prompt = RandomTokens(16, c.vocab_size, 2);
    for (int64_t i = 0; i < b; ++i) {
      sessions.push_back(model.NewSession());
      pointers.push_back(sessions.back().get());
      Check(
          model.Prefill(*sessions.back(), prompt, LogitsMode::kNone, nullptr));
    }
    const std::vector<int32_t> step_tokens = RandomTokens(b, c.vocab_size, 3);
    std::vector<float> step_logits(static_cast<size_t>(b) * c.vocab_size);
    const double s = TimeIt([&] {
      Check(model.DecodeStep(pointers, step_tokens, step_logits.data()));
    });
    const double weight_bw = cost.weight_bytes_per_step / s;
    const double all_bw =
        (cost.weight_bytes_per_step + 2.0 * b * state_bytes) / s;
    // The step's memory floor: the weights at the read bandwidth plus the
    // B states read and written at the read+write bandwidth.
    const double floor_s =
        cost.weight_bytes_per_step / read_bw + 2.0 * b * state_bytes / rw_bw;
    if (b1_tokens_per_s == 0) {  // the first (smallest) batch
      b1_tokens_per_s = b / s;
      b1_fraction = weight_bw / read_bw;
    }
    last_ratio = b / s / b1_tokens_per_s;
    std::printf("  %-4lld %11.1f %10.3f %12.1f %8.1f%% %14.1f %9.1f%% %7.1fx\n",
                static_cast<long long>(b), b / s, s * 1e3, weight_bw / 1e9,
                100 * weight_bw / read_bw, all_bw / 1e9, 100 * floor_s / s,
                last_ratio);
    if (flags.profile) {
      PrintProfile([&] {
        for (int i = 0; i < 5; ++i) {
          Check(model.DecodeStep(pointers, step_tokens, step_logits.data()));
        }
      });
    }
    report["decode"].push_back({{"batch", b},
                                {"tokens_per_s", b / s},
                                {"weight_read_fraction", weight_bw / read_bw},
                                {"memory_roofline_fraction", floor_s / s}});
  }

  // ---- Resident memory against the context length.
  const int64_t rss_small = std::min<int64_t>(1000, flags.rss_tokens);
  auto session = model.NewSession();
  const std::vector<int32_t> piece =
      RandomTokens(std::min<int64_t>(65536, flags.rss_tokens), c.vocab_size, 4);
  Check(model.Prefill(*session, absl::MakeConstSpan(piece.data(), rss_small),
                      LogitsMode::kLast, logits.data()));
  const int64_t rss_at_small = ResidentBytes();
  const auto long_start = std::chrono::steady_clock::now();
  while (session->num_tokens() < flags.rss_tokens) {
    const int64_t n = std::min<int64_t>(
        piece.size(), flags.rss_tokens - session->num_tokens());
    Check(model.Prefill(*session, absl::MakeConstSpan(piece.data(), n),
                        LogitsMode::kLast, logits.data()));
  }
  const double long_seconds = Seconds(long_start);
  const int64_t rss_at_large = ResidentBytes();
  std::printf("\n== Resident memory (VmRSS) of the process, one session\n");
  std::printf("  after %8lld tokens %10.1f MiB\n",
              static_cast<long long>(rss_small), rss_at_small / 1048576.0);
  std::printf(
      "  after %8lld tokens %10.1f MiB  (difference %+.1f MiB; the %lld "
      "more tokens took %.1f s, %.0f tokens/s)\n",
      static_cast<long long>(session->num_tokens()), rss_at_large / 1048576.0,
      (rss_at_large - rss_at_small) / 1048576.0,
      static_cast<long long>(session->num_tokens() - rss_small), long_seconds,
      (session->num_tokens() - rss_small) / long_seconds);

  // ---- Summary against the goals of issue 3 §6.
  const double ratio_goal = 20;
  std::printf("\n== Summary\n");
  if (!prefill_sizes.empty()) {
    std::printf(
        "  prefill %lld tokens: %.1f%% of the GEMM roofline (goal >= 50%%)\n",
        static_cast<long long>(prefill_sizes.back()),
        100 * prefill_fraction_last);
  }
  if (!batches.empty()) {
    std::printf(
        "  decode B=%lld: %.1f tokens/s, %.1f%% of the weight-read "
        "roofline\n",
        static_cast<long long>(batches.front()), b1_tokens_per_s,
        100 * b1_fraction);
    std::printf("  decode B=%lld / B=%lld: %.1fx (goal B=64/B=1 >= %.0fx)\n",
                static_cast<long long>(largest_batch),
                static_cast<long long>(batches.front()), last_ratio,
                ratio_goal);
  }
  std::printf("  RSS after %lld vs %lld tokens: %+.1f MiB\n",
              static_cast<long long>(rss_small),
              static_cast<long long>(session->num_tokens()),
              (rss_at_large - rss_at_small) / 1048576.0);

  if (!flags.json_path.empty()) {
    report["model"] = flags.model_dir;
    report["family"] = std::string(ModelFamilyName(c.family));
    report["dtype"] = std::string(kernels::DTypeName(flags.dtype));
    report["threads"] = omp_get_max_threads();
    report["params"] = cost.params;
    report["gemm_peak_flops"] = peak;
    report["read_bandwidth"] = read_bw;
    report["read_write_bandwidth"] = rw_bw;
    report["state_bytes"] = state_bytes;
    report["rss_small"] = {{"tokens", rss_small}, {"bytes", rss_at_small}};
    report["rss_large"] = {{"tokens", session->num_tokens()},
                           {"bytes", rss_at_large}};
    std::ofstream out(flags.json_path);
    out << report.dump(2) << "\n";
    if (!out) {
      std::fprintf(stderr, "engine_bench: cannot write %s\n",
                   flags.json_path.c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace
}  // namespace linserve::bench

int main(int argc, char** argv) { return linserve::bench::Main(argc, argv); }
