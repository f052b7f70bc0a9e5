// linserve-cli generate, ingest and score.
#include <google/protobuf/util/json_util.h>
#include <unistd.h>

#include <algorithm>
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

// The ingest progress bar, on stderr. Once the server has reported the
// call's progress (IngestProgress::server_reported, from the GetSession
// poll): tokens fed / the total in tokens, tokens/s and the ETA. The total
// is the document's length for token ids; for text it is estimated as the
// document's bytes x the tokens per byte so far (the tokens the server has
// of the bytes it has received), which is exact up to the last partial
// word once every byte has arrived. Before that (or with
// --progress_interval 0): what was sent, in bytes or tokens, and its rate.
// Redraws in place on a terminal (at most ten times a second), else prints
// a line each time another tenth is done (of the server's figures only, when
// it is polled: what was sent is in the gRPC buffers within moments).
class ProgressBar {
 public:
  // `total`: the document's bytes (text) or tokens (token ids); 0 unknown.
  // `polled`: the server's figures will come (--progress_interval > 0).
  ProgressBar(int64_t total, bool tokens, bool polled)
      : total_(total),
        tokens_(tokens),
        polled_(polled),
        start_(SteadyClock::now()),
        tty_(isatty(STDERR_FILENO)) {}

  void Update(const client::IngestProgress& progress) {
    const double elapsed = SecondsSince(start_);
    const Line line = progress.server_reported ? ServerLine(progress, elapsed)
                                               : SentLine(progress, elapsed);
    if (tty_) {
      if (elapsed - last_draw_ < 0.1 && line.fraction < 1) return;
    } else if (polled_ && !progress.server_reported) {
      return;
    } else {
      // A new series of lines when the server's figures take over; an
      // estimate that moves back does not print the same tenth again.
      const int decile = static_cast<int>(line.fraction * 10) +
                         (progress.server_reported ? 100 : 0);
      if (decile <= last_decile_ && (decile >= 100) == (last_decile_ >= 100)) {
        return;
      }
      last_decile_ = decile;
    }
    last_draw_ = elapsed;
    std::string bar(30, ' ');
    std::fill(bar.begin(),
              bar.begin() + static_cast<int>(std::min(line.fraction, 1.0) * 30),
              '#');
    char percent[16];
    std::snprintf(percent, sizeof(percent), "%5.1f%%", line.fraction * 100);
    std::cerr << (tty_ ? "\r\x1b[K" : "") << "[" << bar << "] " << percent
              << " " << line.text << (tty_ ? "" : "\n") << std::flush;
    const int64_t sent = tokens_ ? progress.tokens_sent : progress.bytes_sent;
    if (!polled_ && total_ > 0 && sent >= total_ && !all_sent_noted_) {
      // gRPC buffers up to its flow-control window: the server may still
      // be working through the last megabytes.
      all_sent_noted_ = true;
      std::cerr << (tty_ ? "\n" : "")
                << "all sent; waiting for the server to finish\n"
                << std::flush;
    }
  }

  void Finish() {
    if (tty_ && last_draw_ >= 0) std::cerr << "\n";
  }

 private:
  struct Line {
    double fraction = 0;
    std::string text;
  };

  static std::string Eta(double left, double rate) {
    if (rate <= 0 || left < 0) return "?";
    return absl::StrCat(static_cast<int64_t>(left / rate + 0.5), " s");
  }

  Line ServerLine(const client::IngestProgress& progress,
                  double elapsed) const {
    const double fed = static_cast<double>(progress.tokens_fed);
    const double have = fed + static_cast<double>(progress.tokens_queued);
    const double sent = static_cast<double>(tokens_ ? progress.tokens_sent
                                                    : progress.bytes_sent);
    double total = 0;  // tokens; 0: unknown
    bool estimated = false;
    if (tokens_) {
      total = static_cast<double>(total_);
    } else {
      // stdin: everything sent is all there is, once it is all sent.
      const double document_bytes = total_ > 0
                                        ? static_cast<double>(total_)
                                        : (progress.all_sent ? sent : 0.0);
      const double received = static_cast<double>(progress.bytes_received);
      if (document_bytes > 0 && received > 0 && have > 0) {
        total = std::max(have, have / received * document_bytes);
        estimated = true;
      }
    }
    const double rate = elapsed > 0 ? fed / elapsed : 0;
    Line line;
    line.fraction = total > 0 ? std::min(1.0, fed / total) : 0;
    line.text =
        absl::StrCat(progress.tokens_fed, "/",
                     total > 0 ? absl::StrCat(estimated ? "~" : "",
                                              static_cast<int64_t>(total + 0.5))
                               : "?",
                     " tok fed  ", static_cast<int64_t>(rate + 0.5),
                     " tok/s  ETA ", total > 0 ? Eta(total - fed, rate) : "?");
    return line;
  }

  Line SentLine(const client::IngestProgress& progress, double elapsed) const {
    const int64_t done = tokens_ ? progress.tokens_sent : progress.bytes_sent;
    const double rate = elapsed > 0 ? done / elapsed : 0;
    Line line;
    line.fraction =
        total_ > 0 ? std::min(1.0, static_cast<double>(done) / total_) : 0;
    line.text = absl::StrCat(
        tokens_ ? absl::StrCat(done, " tok") : FormatBytes(done), " sent  ",
        tokens_ ? absl::StrCat(static_cast<int64_t>(rate), " tok/s")
                : absl::StrCat(FormatBytes(rate), "/s"),
        "  ETA ",
        total_ > 0 ? Eta(static_cast<double>(total_ - done), rate) : "?");
    return line;
  }

  int64_t total_;
  bool tokens_;
  bool polled_;
  SteadyClock::time_point start_;
  bool tty_;
  double last_draw_ = -1;
  int last_decile_ = -1;
  bool all_sent_noted_ = false;
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
  const double poll_seconds = absl::GetFlag(FLAGS_progress_interval);
  if (poll_seconds < 0) {
    return UsageError(invocation,
                      absl::StrCat("--progress_interval must be >= 0 seconds, "
                                   "got ",
                                   poll_seconds));
  }
  // Nothing to show with --quiet: no polling either.
  if (!quiet) options.progress_poll_interval = absl::Seconds(poll_seconds);

  const auto start = SteadyClock::now();
  absl::StatusOr<v1::IngestResponse> response;
  if (tokens) {
    auto content = ReadInput(path);
    if (!content.ok()) {
      return ReportFailure(invocation, "reading", content.status());
    }
    auto ids = ParseTokenIds(*content);
    if (!ids.ok()) return ReportFailure(invocation, path, ids.status());
    ProgressBar bar(static_cast<int64_t>(ids->size()), /*tokens=*/true,
                    /*polled=*/poll_seconds > 0);
    if (!quiet) {
      options.on_progress = [&bar](const client::IngestProgress& progress) {
        bar.Update(progress);
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
    ProgressBar bar(total, /*tokens=*/false, /*polled=*/poll_seconds > 0);
    if (!quiet) {
      options.on_progress = [&bar](const client::IngestProgress& progress) {
        bar.Update(progress);
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
