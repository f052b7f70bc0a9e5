// linserve-cli generate, ingest and score.
#include <google/protobuf/util/json_util.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cli/cli_flags.h"
#include "client/cli/commands.h"
#include "client/cli/json_output.h"

namespace linserve::cli {
namespace {

using SteadyClock = std::chrono::steady_clock;

double SecondsSince(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

std::string FormatBytes(double bytes) {
  char buffer[32];
  if (bytes >= 1 << 30) {
    std::snprintf(buffer, sizeof(buffer), "%.2f GiB", bytes / (1 << 30));
  } else if (bytes >= 1 << 20) {
    std::snprintf(buffer, sizeof(buffer), "%.1f MiB", bytes / (1 << 20));
  } else if (bytes >= 1 << 10) {
    std::snprintf(buffer, sizeof(buffer), "%.1f KiB", bytes / (1 << 10));
  } else {
    std::snprintf(buffer, sizeof(buffer), "%.0f B", bytes);
  }
  return buffer;
}

// The ingest progress bar: done / total of bytes (text) or tokens, the
// rate, and the time left. Redraws in place on a terminal, else prints a
// line per 10%.
class ProgressBar {
 public:
  ProgressBar(int64_t total, bool tokens)
      : total_(total),
        tokens_(tokens),
        start_(SteadyClock::now()),
        tty_(isatty(STDERR_FILENO)) {}

  void Update(int64_t done) {
    const double elapsed = SecondsSince(start_);
    const double fraction =
        total_ > 0 ? std::min(1.0, static_cast<double>(done) / total_) : 0;
    if (tty_) {
      if (elapsed - last_draw_ < 0.1 && done < total_) return;
    } else {
      const int decile = static_cast<int>(fraction * 10);
      if (decile == last_decile_) return;
      last_decile_ = decile;
    }
    last_draw_ = elapsed;
    const double rate = elapsed > 0 ? done / elapsed : 0;
    std::string bar(30, ' ');
    std::fill(bar.begin(), bar.begin() + static_cast<int>(fraction * 30), '#');
    const std::string rate_text =
        tokens_ ? absl::StrCat(static_cast<int64_t>(rate), " tok/s")
                : absl::StrCat(FormatBytes(rate), "/s");
    const std::string done_text =
        tokens_ ? absl::StrCat(done, " tok") : FormatBytes(done);
    std::string eta = "?";
    if (rate > 0 && total_ > 0) {
      eta = absl::StrCat(static_cast<int64_t>((total_ - done) / rate), " s");
    }
    char percent[16];
    std::snprintf(percent, sizeof(percent), "%5.1f%%", fraction * 100);
    std::cerr << (tty_ ? "\r" : "") << "[" << bar << "] " << percent << " "
              << done_text << "  " << rate_text << "  ETA " << eta
              << (tty_ ? "   " : "\n") << std::flush;
    if (total_ > 0 && done >= total_ && !all_sent_) {
      // gRPC buffers up to its flow-control window: the server may still
      // be working through the last megabytes.
      all_sent_ = true;
      std::cerr << (tty_ ? "\n" : "")
                << "all sent; waiting for the server to finish\n"
                << std::flush;
    }
  }

  void Finish() {
    if (tty_ && !all_sent_) std::cerr << "\n";
  }

 private:
  int64_t total_;
  bool tokens_;
  SteadyClock::time_point start_;
  bool tty_;
  double last_draw_ = -1;
  int last_decile_ = -1;
  bool all_sent_ = false;
};

absl::StatusOr<v1::Input> InputFromArgsOrStdin(const Invocation& invocation) {
  std::string text;
  if (invocation.args.empty() ||
      (invocation.args.size() == 1 && invocation.args[0] == "-")) {
    auto read = ReadInput("-");
    if (!read.ok()) return read.status();
    text = *std::move(read);
  } else {
    text = absl::StrJoin(invocation.args, " ");
  }
  v1::Input input;
  input.set_add_bos(absl::GetFlag(FLAGS_add_bos));
  if (absl::GetFlag(FLAGS_tokens)) {
    auto ids = ParseTokenIds(text);
    if (!ids.ok()) return ids.status();
    input.mutable_tokens()->mutable_ids()->Add(ids->begin(), ids->end());
  } else {
    input.set_text(text);
  }
  return input;
}

}  // namespace

int RunGenerate(const Invocation& invocation) {
  auto input = InputFromArgsOrStdin(invocation);
  if (!input.ok()) return UsageError(invocation, input.status().ToString());
  auto sampling = SamplingFromFlags(invocation);
  if (!sampling.ok()) {
    return UsageError(invocation, std::string(sampling.status().message()));
  }
  auto client = MakeClient(invocation);
  if (!client.ok()) return ReportFailure(invocation, "client", client.status());

  v1::GenerateRequest request;
  request.set_session_id(absl::GetFlag(FLAGS_session));
  *request.mutable_prompt() = *std::move(input);
  *request.mutable_sampling() = *std::move(sampling);
  const bool json = absl::GetFlag(FLAGS_json);
  const bool tokens = absl::GetFlag(FLAGS_tokens);

  v1::GenerateChunk all;
  bool first_token = true;
  auto result =
      (*client)->Generate(request, [&](const v1::GenerateChunk& chunk) {
        // MergeFrom appends the repeated fields but replaces the text.
        std::string text = all.text() + chunk.text();
        all.MergeFrom(chunk);
        all.set_text(std::move(text));
        if (json) return;
        if (tokens) {
          for (int32_t id : chunk.token_ids()) {
            std::cout << (first_token ? "" : " ") << id;
            first_token = false;
          }
        } else {
          std::cout << chunk.text();
        }
        std::cout << std::flush;
      });
  if (!result.ok()) {
    if (!json) std::cout << std::endl;
    return ReportFailure(invocation, "Generate", result.status());
  }
  if (json) {
    std::cout << "{\"output\":" << MessageToJson(all)
              << ",\"result\":" << MessageToJson(*result) << "}\n";
  } else {
    std::cout << "\n";
    if (request.sampling().logprobs() || request.sampling().top_logprobs()) {
      std::cerr << "logprobs: " << MessageToJson(all) << "\n";
    }
  }
  return kExitOk;
}

int RunIngest(const Invocation& invocation) {
  if (invocation.args.size() != 1) {
    return UsageError(invocation, "give exactly one FILE ('-' for stdin)");
  }
  const std::string& path = invocation.args[0];
  const bool tokens = absl::GetFlag(FLAGS_tokens);
  const bool quiet = absl::GetFlag(FLAGS_quiet);
  auto client = MakeClient(invocation);
  if (!client.ok()) return ReportFailure(invocation, "client", client.status());

  client::IngestOptions options;
  options.session_id = absl::GetFlag(FLAGS_session);
  options.add_bos = absl::GetFlag(FLAGS_add_bos);
  options.chunk_bytes = absl::GetFlag(FLAGS_chunk_bytes);
  options.chunk_tokens = absl::GetFlag(FLAGS_chunk_tokens);

  const auto start = SteadyClock::now();
  absl::StatusOr<v1::IngestResponse> response;
  if (tokens) {
    auto content = ReadInput(path);
    if (!content.ok()) {
      return ReportFailure(invocation, "reading", content.status());
    }
    auto ids = ParseTokenIds(*content);
    if (!ids.ok()) return ReportFailure(invocation, path, ids.status());
    ProgressBar bar(static_cast<int64_t>(ids->size()), /*tokens=*/true);
    if (!quiet) {
      options.on_progress = [&bar](const client::IngestProgress& progress) {
        bar.Update(progress.tokens_sent);
      };
    }
    response =
        (*client)->IngestTokens(*ids, options, ExplicitTimeout(invocation));
    if (!quiet) bar.Finish();
  } else {
    int64_t total = 0;
    std::error_code error;
    if (path != "-") {
      total = static_cast<int64_t>(std::filesystem::file_size(path, error));
      if (error) {
        return ReportFailure(invocation, path,
                             absl::NotFoundError(absl::StrCat(
                                 "cannot read: ", error.message())));
      }
    }
    ProgressBar bar(total, /*tokens=*/false);
    if (!quiet) {
      options.on_progress = [&bar](const client::IngestProgress& progress) {
        bar.Update(progress.bytes_sent);
      };
    }
    if (path == "-") {
      response =
          (*client)->IngestText(std::cin, options, ExplicitTimeout(invocation));
    } else {
      response =
          (*client)->IngestFile(path, options, ExplicitTimeout(invocation));
    }
    if (!quiet) bar.Finish();
  }
  if (!response.ok()) {
    return ReportFailure(invocation, "Ingest", response.status());
  }
  const double seconds = SecondsSince(start);
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << MessageToJson(*response) << "\n";
  } else {
    char rate[32];
    std::snprintf(rate, sizeof(rate), "%.0f",
                  seconds > 0 ? response->tokens_ingested() / seconds : 0.0);
    std::cout << "session " << response->session_id() << "\nposition "
              << response->session_position() << "\ningested "
              << response->tokens_ingested() << " tokens in " << seconds
              << " s (" << rate << " tok/s)\n";
  }
  return kExitOk;
}

int RunScore(const Invocation& invocation) {
  if (invocation.args.size() != 1) {
    return UsageError(invocation, "give exactly one FILE ('-' for stdin)");
  }
  auto content = ReadInput(invocation.args[0]);
  if (!content.ok()) {
    return ReportFailure(invocation, "reading", content.status());
  }
  v1::ScoreRequest request;
  request.set_session_id(absl::GetFlag(FLAGS_session));
  request.set_append_to_session(absl::GetFlag(FLAGS_append));
  request.set_per_token(absl::GetFlag(FLAGS_per_token));
  request.mutable_input()->set_add_bos(absl::GetFlag(FLAGS_add_bos));
  if (absl::GetFlag(FLAGS_tokens)) {
    auto ids = ParseTokenIds(*content);
    if (!ids.ok()) {
      return ReportFailure(invocation, invocation.args[0], ids.status());
    }
    request.mutable_input()->mutable_tokens()->mutable_ids()->Add(ids->begin(),
                                                                  ids->end());
  } else {
    request.mutable_input()->set_text(*std::move(content));
  }
  auto client = MakeClient(invocation);
  if (!client.ok()) return ReportFailure(invocation, "client", client.status());
  auto response = (*client)->Score(request);
  if (!response.ok()) {
    return ReportFailure(invocation, "Score", response.status());
  }
  if (absl::GetFlag(FLAGS_json) || request.per_token()) {
    std::cout << MessageToJson(*response) << "\n";
  } else {
    std::cout << "perplexity " << response->perplexity() << "\ntokens "
              << response->count() << "\ntotal_logprob "
              << response->total_logprob() << "\n";
  }
  return kExitOk;
}

}  // namespace linserve::cli
