// Specification of the server's Prometheus metrics (server/metrics.h,
// server/metrics_interceptor.h): after a known workload against a real
// server, /metrics (fetched over HTTP from its own port) holds every series
// the operations issue names, with the model label, counts that match the
// workload, refusals by reason, and no session id anywhere.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <regex>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "server/server.h"

namespace linserve {
namespace {

using client::Client;

// GET http://127.0.0.1:port/metrics with a plain socket.
std::string HttpGetMetrics(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  const std::string request =
      "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  REQUIRE(write(fd, request.data(), request.size()) ==
          static_cast<ssize_t>(request.size()));
  std::string response;
  char buffer[65536];
  for (ssize_t n; (n = read(fd, buffer, sizeof(buffer))) > 0;) {
    response.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  REQUIRE(absl::StartsWith(response, "HTTP/1."));
  const size_t body = response.find("\r\n\r\n");
  REQUIRE(body != std::string::npos);
  return response.substr(body + 4);
}

// The value of the one sample whose line starts with `series` (name and
// labels, as exposed), or -1.
double Sample(const std::string& text, const std::string& series) {
  size_t at = 0;
  while ((at = text.find(series, at)) != std::string::npos) {
    if (at == 0 || text[at - 1] == '\n') {
      const size_t space = at + series.size();
      if (space < text.size() && text[space] == ' ') {
        return std::stod(text.substr(space + 1));
      }
    }
    at += series.size();
  }
  return -1;
}

TEST_CASE(
    "after a known workload /metrics serves every series with the model "
    "label, counts matching the workload and refusals by reason") {
  server::ServerOptions options;
  options.model_dir = LINSERVE_DEFAULT_MODEL_DIR_FOR_TESTS;
  options.listen = "127.0.0.1:0";
  options.metrics_listen = "127.0.0.1:0";
  options.sessions.max_sessions_in_ram = 1;
  char spill_template[] = "/tmp/linserve_metrics_test_XXXXXX";
  REQUIRE(mkdtemp(spill_template) != nullptr);
  options.sessions.spill_dir = spill_template;
  auto started = server::Server::Start(options);
  REQUIRE(started.ok());
  server::Server& server = **started;
  REQUIRE(server.metrics_port() > 0);
  auto connected =
      Client::Connect(absl::StrCat("127.0.0.1:", server.port()), {});
  REQUIRE(connected.ok());
  Client& client = **connected;

  // Two sessions with max_sessions_in_ram = 1: the second evicts the first.
  auto a = client.CreateSession("");
  REQUIRE(a.ok());
  v1::GenerateRequest request;
  request.set_session_id(a->session_id());
  request.mutable_prompt()->set_text("In the beginning");
  request.mutable_sampling()->set_temperature(0.0f);
  request.mutable_sampling()->set_max_tokens(5);
  request.mutable_sampling()->set_ignore_eos(true);
  auto generated = client.GenerateAll(request);
  REQUIRE(generated.ok());
  auto b = client.ForkSession(a->session_id(), "");
  REQUIRE(b.ok());
  REQUIRE(client.ExportSessionToString(b->session_id()).ok());
  CHECK(client.GetSession("no-such-session").status().code() ==
        absl::StatusCode::kNotFound);
  v1::ScoreRequest score;
  score.mutable_input()->set_text("And God said, Let there be light");
  REQUIRE(client.Score(score).ok());

  // Evictions run on the store's I/O thread: let them finish first.
  server.store().WaitForEvictions();
  const std::string text = HttpGetMetrics(server.metrics_port());
  INFO(text);
  const std::string model = "model=\"default\"";
  for (const char* name : {"linserve_requests_total",
                           "linserve_e2e_request_latency_seconds",
                           "linserve_request_queue_time_seconds",
                           "linserve_time_to_first_token_seconds",
                           "linserve_inter_token_latency_seconds",
                           "linserve_prompt_tokens_total",
                           "linserve_generation_tokens_total",
                           "linserve_ingest_tokens_total",
                           "linserve_num_requests_running",
                           "linserve_num_requests_waiting",
                           "linserve_batch_size",
                           "linserve_step_tokens",
                           "linserve_step_duration_seconds",
                           "linserve_rejected_total",
                           "linserve_sessions",
                           "linserve_session_state_bytes",
                           "linserve_session_evictions_total",
                           "linserve_session_expired_total",
                           "linserve_session_exports_total",
                           "linserve_session_imports_total",
                           "linserve_session_forks_total",
                           "linserve_build_info",
                           "linserve_model_state_bytes_per_session",
                           "linserve_model_parameters"}) {
    INFO(name);
    CHECK(absl::StrContains(text, absl::StrCat("# TYPE ", name, " ")));
  }
  // Every sample carries the model label.
  std::regex sample_line("^linserve_[a-z_]+(\\{[^}]*\\})? .*$");
  size_t begin = 0;
  int samples = 0;
  while (begin < text.size()) {
    const size_t end = text.find('\n', begin);
    const std::string line = text.substr(begin, end - begin);
    begin = end == std::string::npos ? text.size() : end + 1;
    // prometheus-cpp's exposer adds exposer_* series of its own (scrape
    // counts), without labels; every linserve_ series has the model label.
    if (line.empty() || line[0] == '#' || !absl::StartsWith(line, "linserve_"))
      continue;
    ++samples;
    INFO(line);
    CHECK(absl::StrContains(line, model));
    // No session id in any label value.
    CHECK_FALSE(absl::StrContains(line, a->session_id()));
    CHECK_FALSE(absl::StrContains(line, b->session_id()));
  }
  CHECK(samples > 50);

  CHECK(Sample(text, "linserve_generation_tokens_total{" + model + "}") == 5);
  // Constant labels (model) come first, then the series' own.
  CHECK(Sample(text, "linserve_requests_total{" + model +
                         ",code=\"OK\",method=\"Generate\"}") == 1);
  CHECK(Sample(text, "linserve_requests_total{" + model +
                         ",code=\"NOT_FOUND\",method=\"GetSession\"}") == 1);
  CHECK(Sample(text, "linserve_session_forks_total{" + model + "}") == 1);
  CHECK(Sample(text, "linserve_session_exports_total{" + model + "}") == 1);
  CHECK(Sample(text, "linserve_session_evictions_total{" + model + "}") >= 1);
  CHECK(Sample(text, "linserve_sessions{" + model + ",where=\"ram\"}") == 1);
  CHECK(Sample(text, "linserve_sessions{" + model + ",where=\"spill\"}") == 1);
  CHECK(Sample(text, "linserve_session_state_bytes{" + model + "}") ==
        static_cast<double>(server.model().StateBytes()));
  CHECK(Sample(text, "linserve_time_to_first_token_seconds_count{" + model +
                         "}") == 1);
  CHECK(Sample(text, "linserve_inter_token_latency_seconds_count{" + model +
                         "}") == 4);
  CHECK(Sample(text, "linserve_ingest_tokens_total{" + model + "}") > 5);

  // A refusal, counted by reason: calls while draining are UNAVAILABLE.
  REQUIRE(server.Drain(std::chrono::milliseconds(0)).ok());
  CHECK(client.GenerateAll(request).status().code() ==
        absl::StatusCode::kUnavailable);
  const std::string after = HttpGetMetrics(server.metrics_port());
  CHECK(Sample(after, "linserve_rejected_total{" + model +
                          ",reason=\"draining\"}") == 1);
  CHECK(Sample(after, "linserve_sessions{" + model + ",where=\"ram\"}") == 0);
  CHECK(Sample(after, "linserve_sessions{" + model + ",where=\"spill\"}") == 2);
  server.Shutdown();
  std::filesystem::remove_all(spill_template);
}

}  // namespace
}  // namespace linserve
