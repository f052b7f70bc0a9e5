// linserve: the gRPC inference server binary. Parses the flags (--help
// lists them), loads the model, serves until SIGTERM or SIGINT, then drains
// (health NOT_SERVING, new calls refused, running calls get --drain_grace,
// every session written to --spill_dir) and exits 0.
//
// Signals are blocked in every thread (the mask is set before any thread
// starts, and threads inherit it) and taken by one thread with sigwait, so
// no work ever runs in a signal handler.
#include <omp.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/model_config.h"
#include "kernels/thread_affinity.h"
#include "server/server.h"

namespace {

// The default model: $LINSERVE_MODEL, else the bundled one.
std::string DefaultModelDir() {
  const char* env = std::getenv("LINSERVE_MODEL");
  if (env != nullptr && env[0] != '\0') return env;
  return LINSERVE_DEFAULT_MODEL_DIR;
}

}  // namespace

ABSL_FLAG(std::string, model, DefaultModelDir(),
          "Model directory (config.json, model.safetensors, optionally "
          "tokenizer.model and chat_template.txt). Default: $LINSERVE_MODEL, "
          "else the bundled model (models/default).");
ABSL_FLAG(std::string, listen, "0.0.0.0:50051",
          "host:port to serve gRPC on; port 0 picks a free port.");
ABSL_FLAG(int32_t, metrics_port, 0,
          "Port for Prometheus /metrics (text format), served on the host of "
          "--listen; 0: metrics are not served.");
ABSL_FLAG(std::string, spill_dir, "",
          "Directory for sessions beyond --max_sessions_in_ram and for every "
          "session on shutdown (SIGTERM); a server started again with the same "
          "directory continues them. Empty: sessions live in RAM only and are "
          "lost on exit.");
ABSL_FLAG(std::string, dtype, "bf16",
          "Dtype of the projections' GEMMs: bf16 (fast on AMX / AVX512-BF16 "
          "CPUs) or f32 (exact fp32 math).");
ABSL_FLAG(int32_t, threads, 0,
          "OpenMP threads of the engine (0: OMP_NUM_THREADS, else every "
          "core).");
ABSL_FLAG(int32_t, max_batch, 64,
          "Most generating calls decoded together in one batched step; more "
          "wait in the admission queue.");
ABSL_FLAG(int64_t, step_token_budget, 1024,
          "Most tokens of one engine step (decode rows plus prefill chunks).");
ABSL_FLAG(int64_t, prefill_chunk, 256,
          "Most prompt / ingest tokens of one call in one step (a long prefill "
          "advances chunk by chunk while other streams keep decoding).");
ABSL_FLAG(int64_t, max_queued, 1024,
          "Calls admitted but not yet running; past it new calls get "
          "RESOURCE_EXHAUSTED at once.");
ABSL_FLAG(int64_t, max_sessions_in_ram, 1024,
          "Sessions kept in RAM; idle ones beyond it move (LRU) to "
          "--spill_dir.");
ABSL_FLAG(int64_t, max_sessions, 100000,
          "Sessions in all (RAM and spilled); past it creating one gets "
          "RESOURCE_EXHAUSTED.");
ABSL_FLAG(absl::Duration, session_ttl, absl::Hours(24),
          "Idle time after which a session is deleted (0: never), e.g. 30m, "
          "24h.");
ABSL_FLAG(int32_t, max_tokens, 4096, "Most tokens one call may generate.");
ABSL_FLAG(int64_t, max_input_tokens, 1 << 20,
          "Most tokens of one Generate / Score input or Chat turn (longer "
          "documents go through Ingest, which has no limit).");
ABSL_FLAG(int32_t, min_tokens_per_message, 1,
          "Tokens a Generate / Chat stream gathers before it sends a message "
          "(1 to 64). 1: every token is sent as soon as it is sampled. More: "
          "less CPU per token for gRPC on the server and the client (tens of "
          "microseconds a message), at the price of latency: a token waits "
          "for the next ones, one engine step each.");
ABSL_FLAG(int64_t, max_message_bytes, 16 << 20,
          "Largest gRPC message received or sent, in bytes.");
ABSL_FLAG(absl::Duration, keepalive_time, absl::Seconds(60),
          "Interval of HTTP/2 keepalive pings to idle clients.");
ABSL_FLAG(absl::Duration, keepalive_timeout, absl::Seconds(20),
          "How long a keepalive ping may go unanswered before the connection "
          "is closed.");
ABSL_FLAG(absl::Duration, drain_grace, absl::Seconds(30),
          "On SIGTERM / SIGINT: how long running calls get to finish before "
          "they are cancelled.");
ABSL_FLAG(std::string, chat_template, "",
          "Chat template file (format: docs/api.md). Empty: the model "
          "directory's chat_template.txt, else the built-in default.");

namespace {

std::chrono::milliseconds ToMillis(absl::Duration d) {
  return std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "linserve: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "gRPC inference server for linear-attention language models "
      "on CPUs.\nUsage: linserve [--model DIR] [--listen HOST:PORT] "
      "[flags]\nAPI and errors: docs/api.md.");
  // --help lists this file's flags (absl's default looks for a file named
  // after the binary).
  absl::FlagsUsageConfig usage_config;
  usage_config.contains_helpshort_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "server/main.cc");
  };
  usage_config.contains_help_flags = usage_config.contains_helpshort_flags;
  absl::SetFlagsUsageConfig(usage_config);
  absl::ParseCommandLine(argc, argv);
  // Debian's Abseil is built without NDEBUG, so every absl::Mutex lock
  // (gRPC takes several for each message it sends or receives) would also
  // update a process-wide lock-order graph under a global spin lock, and
  // take a stack trace on nested locks: about a microsecond of each
  // streamed message in a perf profile, for a check meant for debugging.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // With OMP_PROC_BIND set, libgomp pinned this thread to one CPU before
  // main(), and every thread started from here (gRPC's, the engine's) would
  // inherit it: let them run anywhere; the engine thread takes OpenMP's
  // first place back itself (kernels/thread_affinity.h).
  linserve::kernels::UnpinCallingThread();

  // Before any thread exists, so that every thread inherits the mask and
  // only the signal thread below receives SIGTERM / SIGINT.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const int32_t threads = absl::GetFlag(FLAGS_threads);
  if (threads < 0) return Fail("--threads must be >= 0");
  if (threads > 0) {
    // omp_set_num_threads sets only the calling thread's value; the engine
    // thread takes OpenMP's global default, which libgomp reads from
    // OMP_NUM_THREADS when the process starts. So the process starts again
    // (once, in milliseconds) with the variable set.
    const std::string wanted = std::to_string(threads);
    const char* current = std::getenv("OMP_NUM_THREADS");
    if (current == nullptr || wanted != current) {
      setenv("OMP_NUM_THREADS", wanted.c_str(), 1);
      // The resolved path rather than /proc/self/exe, so that the process
      // keeps its name ("linserve") for ps and pkill.
      std::error_code error;
      const std::string self =
          std::filesystem::read_symlink("/proc/self/exe", error).string();
      execv(error ? "/proc/self/exe" : self.c_str(), argv);
      return Fail(
          "cannot restart with OMP_NUM_THREADS set (execv of "
          "/proc/self/exe failed); set OMP_NUM_THREADS instead of "
          "--threads");
    }
    omp_set_num_threads(threads);
  }

  linserve::server::ServerOptions options;
  options.model_dir = absl::GetFlag(FLAGS_model);
  if (!std::filesystem::is_directory(options.model_dir)) {
    return Fail(absl::StrCat("model directory '", options.model_dir,
                             "' does not exist (--model, $LINSERVE_MODEL)"));
  }
  options.listen = absl::GetFlag(FLAGS_listen);
  const std::string dtype = absl::GetFlag(FLAGS_dtype);
  if (dtype == "bf16") {
    options.weight_type = linserve::kernels::DType::kBfloat16;
  } else if (dtype == "f32") {
    options.weight_type = linserve::kernels::DType::kFloat32;
  } else {
    return Fail(absl::StrCat("--dtype must be bf16 or f32, got '", dtype, "'"));
  }
  options.scheduler.max_batch = absl::GetFlag(FLAGS_max_batch);
  options.scheduler.step_token_budget = absl::GetFlag(FLAGS_step_token_budget);
  options.scheduler.prefill_chunk = absl::GetFlag(FLAGS_prefill_chunk);
  options.scheduler.max_queued = absl::GetFlag(FLAGS_max_queued);
  if (options.scheduler.max_batch < 1 ||
      options.scheduler.step_token_budget < options.scheduler.max_batch ||
      options.scheduler.prefill_chunk < 1 || options.scheduler.max_queued < 1) {
    return Fail(
        "need --max_batch >= 1, --step_token_budget >= --max_batch, "
        "--prefill_chunk >= 1, --max_queued >= 1");
  }
  options.sessions.max_sessions_in_ram =
      absl::GetFlag(FLAGS_max_sessions_in_ram);
  options.sessions.max_sessions = absl::GetFlag(FLAGS_max_sessions);
  options.sessions.idle_ttl = std::chrono::seconds(
      absl::ToInt64Seconds(absl::GetFlag(FLAGS_session_ttl)));
  options.sessions.spill_dir = absl::GetFlag(FLAGS_spill_dir);
  options.max_tokens = absl::GetFlag(FLAGS_max_tokens);
  options.max_input_tokens = absl::GetFlag(FLAGS_max_input_tokens);
  options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  options.min_tokens_per_message = absl::GetFlag(FLAGS_min_tokens_per_message);
  options.keepalive_time = ToMillis(absl::GetFlag(FLAGS_keepalive_time));
  options.keepalive_timeout = ToMillis(absl::GetFlag(FLAGS_keepalive_timeout));
  options.drain_grace = ToMillis(absl::GetFlag(FLAGS_drain_grace));
  options.chat_template = absl::GetFlag(FLAGS_chat_template);
  const int32_t metrics_port = absl::GetFlag(FLAGS_metrics_port);
  if (metrics_port < 0 || metrics_port > 65535) {
    return Fail(absl::StrCat("--metrics_port must be in [0, 65535], got ",
                             metrics_port));
  }
  if (metrics_port > 0) {
    const size_t colon = options.listen.rfind(':');
    options.metrics_listen = absl::StrCat(colon == std::string::npos
                                              ? std::string("0.0.0.0")
                                              : options.listen.substr(0, colon),
                                          ":", metrics_port);
  }

  absl::StatusOr<std::unique_ptr<linserve::server::Server>> started =
      linserve::server::Server::Start(options);
  if (!started.ok()) return Fail(started.status().ToString());
  linserve::server::Server& server = **started;

  const auto& config = server.model().config();
  std::printf(
      "linserve %s: serving on %s, model %s (%s, %lld layers, hidden %lld, "
      "vocab %lld, %s), state %lld bytes per session, %d engine threads, "
      "started in %.3f s\n",
      LINSERVE_VERSION, server.address().c_str(),
      server.context().model_name.c_str(),
      std::string(linserve::engine::ModelFamilyName(config.family)).c_str(),
      static_cast<long long>(config.num_hidden_layers),
      static_cast<long long>(config.hidden_size),
      static_cast<long long>(config.vocab_size), dtype.c_str(),
      static_cast<long long>(server.model().StateBytes()),
      omp_get_max_threads(), server.startup_seconds());
  if (server.metrics_port() != 0) {
    std::printf("linserve: metrics on port %d at /metrics\n",
                server.metrics_port());
  }
  std::fflush(stdout);

  std::thread signal_thread([&server, &signals, &options] {
    int signal_number = 0;
    sigwait(&signals, &signal_number);
    std::printf("linserve: %s: draining (grace %lld ms)\n",
                signal_number == SIGTERM ? "SIGTERM" : "SIGINT",
                static_cast<long long>(options.drain_grace.count()));
    std::fflush(stdout);
    absl::Status drained = server.Drain(options.drain_grace);
    if (!drained.ok()) {
      std::fprintf(stderr, "linserve: drain: %s\n", drained.ToString().c_str());
    }
    server.Shutdown();
  });
  server.Wait();
  signal_thread.join();
  started->reset();
  std::printf("linserve: stopped\n");
  return 0;
}
