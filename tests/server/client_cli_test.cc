// linserve-cli end to end: the built binary (LINSERVE_CLI_PATH) run against
// a server started in the test, checking exit codes and output. Token-id
// commands use the tiny gated_deltanet fixture; chat and text use the
// bundled default model.
#ifdef LINSERVE_CLI_PATH

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "client/client.h"
#include "server/server.h"

namespace linserve {
namespace {

const std::string kDefaultModel = LINSERVE_DEFAULT_MODEL_DIR_FOR_TESTS;
const std::string kTinyModel = LINSERVE_TEST_DATA_DIR "/gated_deltanet";

struct CliResult {
  int exit_code = -1;
  std::string out;  // stdout and stderr together
};

// Runs linserve-cli with `args` (shell words) and `stdin_text` on stdin.
CliResult RunCli(const std::string& args, const std::string& stdin_text = "") {
  const std::filesystem::path input =
      std::filesystem::temp_directory_path() /
      ("linserve-cli-test-stdin-" + std::to_string(::getpid()));
  {
    std::ofstream file(input);
    file << stdin_text;
  }
  const std::string command = std::string(LINSERVE_CLI_PATH) + " " + args +
                              " < " + input.string() + " 2>&1";
  CliResult result;
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buffer[4096];
  size_t got;
  while ((got = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) {
    result.out.append(buffer, got);
  }
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::filesystem::remove(input);
  return result;
}

std::unique_ptr<server::Server> StartServer(const std::string& model_dir) {
  server::ServerOptions options;
  options.model_dir = model_dir;
  options.listen = "127.0.0.1:0";
  auto server = server::Server::Start(options);
  INFO(server.status().ToString());
  REQUIRE(server.ok());
  return *std::move(server);
}

// A session's position, or -1 (with the error logged) when GetSession fails.
int64_t Position(client::Client& client, const std::string& id) {
  auto info = client.GetSession(id);
  if (!info.ok()) {
    WARN("GetSession " << id << ": " << info.status().ToString());
    return -1;
  }
  return info->position();
}

std::string Address(const server::Server& server) {
  return "--address 127.0.0.1:" + std::to_string(server.port());
}

std::filesystem::path TempPath(const std::string& name) {
  return std::filesystem::temp_directory_path() /
         ("linserve-cli-test-" + std::to_string(::getpid()) + "-" + name);
}

TEST_CASE("linserve-cli: help, usage errors and health exit codes") {
  CliResult help = RunCli("--help");
  CHECK(help.exit_code == 0);
  CHECK(help.out.find("bench") != std::string::npos);
  CliResult generate_help = RunCli("generate --help");
  CHECK(generate_help.exit_code == 0);
  CHECK(generate_help.out.find("--temperature") != std::string::npos);
  CHECK(generate_help.out.find("--address") != std::string::npos);
  CHECK(RunCli("no-such-command").exit_code == 2);
  CHECK(RunCli("generate --no-such-flag 1").exit_code == 2);
  CHECK(RunCli("generate --temperature=warm x").exit_code == 2);
  CHECK(RunCli("health --json").exit_code == 2);  // not a health flag

  // Nothing listens on a port just freed: UNAVAILABLE, exit 1, quietly.
  int free_port;
  {
    auto server = StartServer(kTinyModel);
    free_port = server->port();
    const CliResult healthy = RunCli(Address(*server) + " health --quiet");
    CHECK(healthy.exit_code == 0);
    CHECK(healthy.out.empty());
    const CliResult named =
        RunCli(Address(*server) + " health --service linserve.v1.Inference");
    CHECK(named.exit_code == 0);
    CHECK(named.out == "SERVING\n");
  }
  const CliResult down =
      RunCli("health --quiet --address 127.0.0.1:" + std::to_string(free_port));
  CHECK(down.exit_code == 1);
  CHECK(down.out.empty());
}

TEST_CASE("linserve-cli: generate, ingest, score and sessions on token ids") {
  auto server = StartServer(kTinyModel);
  const std::string address = Address(*server);
  auto client = client::Client::Connect(
      "127.0.0.1:" + std::to_string(server->port()), {});
  REQUIRE(client.ok());

  const CliResult generated =
      RunCli(address +
             " generate --tokens --temperature 0 --max-tokens 6 "
             "--ignore_eos 5 6 7 8");
  INFO(generated.out);
  CHECK(generated.exit_code == 0);
  v1::GenerateRequest request;
  for (int id : {5, 6, 7, 8})
    request.mutable_prompt()->mutable_tokens()->add_ids(id);
  request.mutable_sampling()->set_temperature(0);
  request.mutable_sampling()->set_max_tokens(6);
  request.mutable_sampling()->set_ignore_eos(true);
  const auto expected = (*client)->GenerateAll(request);
  REQUIRE(expected.ok());
  std::string expected_ids;
  for (int32_t id : expected->token_ids) {
    expected_ids += (expected_ids.empty() ? "" : " ") + std::to_string(id);
  }
  CHECK(generated.out == expected_ids + "\n");

  const CliResult json = RunCli(address +
                                " generate --tokens --json --temperature 0 "
                                "--max_tokens 3 --ignore_eos 5 6 7");
  CHECK(json.exit_code == 0);
  CHECK(json.out.find("\"finish_reason\":\"FINISH_REASON_LENGTH\"") !=
        std::string::npos);
  CHECK(json.out.find("\"token_ids\":[") != std::string::npos);

  const std::filesystem::path document = TempPath("document.txt");
  {
    std::ofstream file(document);
    for (int i = 0; i < 500; ++i) file << (3 + i % 60) << (i % 10 ? " " : "\n");
  }
  CHECK(RunCli(address + " sessions create doc").exit_code == 0);
  const CliResult ingested =
      RunCli(address + " ingest --tokens --session doc --chunk_tokens 64 " +
             document.string());
  INFO(ingested.out);
  CHECK(ingested.exit_code == 0);
  CHECK(ingested.out.find("session doc") != std::string::npos);
  CHECK(ingested.out.find("position 500") != std::string::npos);
  CHECK(Position(**client, "doc") == 500);

  const CliResult scored =
      RunCli(address + " score --tokens --json " + document.string());
  INFO(scored.out);
  CHECK(scored.exit_code == 0);
  CHECK(scored.out.find("\"count\":\"499\"") != std::string::npos);
  CHECK(RunCli(address + " score --tokens --session doc " + document.string())
            .out.find("tokens 500") != std::string::npos);

  const std::filesystem::path state = TempPath("doc.state");
  CHECK(RunCli(address + " sessions fork doc doc-copy").exit_code == 0);
  CHECK(RunCli(address + " sessions export doc " + state.string()).exit_code ==
        0);
  CHECK(RunCli(address + " sessions import " + state.string() + " doc-import")
            .exit_code == 0);
  CHECK(Position(**client, "doc-import") == 500);
  const CliResult listed = RunCli(address + " sessions list --json");
  CHECK(listed.exit_code == 0);
  for (const char* id : {"\"doc\"", "\"doc-copy\"", "\"doc-import\""}) {
    CHECK(listed.out.find(id) != std::string::npos);
  }
  CHECK(RunCli(address + " sessions delete doc-copy").exit_code == 0);
  const CliResult missing = RunCli(address + " sessions get doc-copy");
  CHECK(missing.exit_code == 1);
  CHECK(missing.out.find("NOT_FOUND") != std::string::npos);
  CHECK(RunCli(address + " sessions frobnicate").exit_code == 2);

  const CliResult models = RunCli(address + " models --json");
  CHECK(models.exit_code == 0);
  CHECK(models.out.find("\"family\":\"gated_deltanet\"") != std::string::npos);

  std::filesystem::remove(document);
  std::filesystem::remove(state);
}

TEST_CASE(
    "linserve-cli: bench reports throughput and latency percentiles as "
    "JSON") {
  auto server = StartServer(kTinyModel);
  const CliResult bench = RunCli(
      Address(*server) +
      " bench --json --concurrency 3 --requests 12 --mix generate=2,ingest=1 "
      "--max_tokens 8 --prompt_tokens 4 --ingest_tokens 100");
  INFO(bench.out);
  CHECK(bench.exit_code == 0);
  for (const char* key :
       {"\"streams\":{\"generate\":2,\"ingest\":1}", "\"requests\":12",
        "\"errors\":0", "\"ttft_ms\":{\"p50\":", "\"inter_token_ms\":",
        "\"e2e_ms\":", "\"generated_tokens_per_s\":", "\"kinds\":"}) {
    CHECK(bench.out.find(key) != std::string::npos);
  }
}

TEST_CASE(
    "linserve-cli: chat streams replies, keeps its session across runs "
    "and forks") {
  auto server = StartServer(kDefaultModel);
  const std::string address = Address(*server);
  auto client = client::Client::Connect(
      "127.0.0.1:" + std::to_string(server->port()), {});
  REQUIRE(client.ok());

  const CliResult first =
      RunCli(address + " chat --session talk --temperature 0 --max_tokens 5",
             "Who begat Enos?\n/id\n/quit\n");
  INFO(first.out);
  CHECK(first.exit_code == 0);
  CHECK(first.out.find("created it") != std::string::npos);
  CHECK(first.out.find("talk\n") != std::string::npos);
  const int64_t after_first = Position(**client, "talk");
  CHECK(after_first > 5);

  const std::filesystem::path saved = TempPath("talk.state");
  const CliResult second =
      RunCli(address + " chat --session talk --temperature 0 --max_tokens 5",
             "And then?\n/save " + saved.string() + "\n/fork\nMore.\n/quit\n");
  INFO(second.out);
  CHECK(second.exit_code == 0);
  CHECK(second.out.find("created it") == std::string::npos);
  CHECK(second.out.find("saved talk") != std::string::npos);
  CHECK(second.out.find("forked talk -> ") != std::string::npos);
  // The fork took the last turn; the original kept what it had.
  const int64_t after_second = Position(**client, "talk");
  CHECK(after_second > after_first);
  CHECK(std::filesystem::file_size(saved) > 0);
  auto sessions = (*client)->ListAllSessions();
  REQUIRE(sessions.ok());
  CHECK(sessions->size() == 2);
  std::filesystem::remove(saved);
}

// linserve-cli started with pipes on stdin and stdout/stderr, so the test
// can talk to it, signal it and wait for it.
class CliProcess {
 public:
  explicit CliProcess(const std::vector<std::string>& args) {
    int in[2], out[2];
    REQUIRE(::pipe(in) == 0);
    REQUIRE(::pipe(out) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::dup2(in[0], STDIN_FILENO);
      ::dup2(out[1], STDOUT_FILENO);
      ::dup2(out[1], STDERR_FILENO);
      ::close(in[1]);
      ::close(out[0]);
      std::vector<char*> argv = {const_cast<char*>(LINSERVE_CLI_PATH)};
      for (const std::string& arg : args) {
        argv.push_back(const_cast<char*>(arg.c_str()));
      }
      argv.push_back(nullptr);
      ::execv(LINSERVE_CLI_PATH, argv.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    stdin_ = in[1];
    stdout_ = out[0];
  }

  ~CliProcess() {
    if (stdin_ >= 0) ::close(stdin_);
    if (pid_ > 0 && !waited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(stdout_);
  }

  void Send(const std::string& text) {
    REQUIRE(::write(stdin_, text.data(), text.size()) ==
            static_cast<ssize_t>(text.size()));
  }

  // Reads until the output past its first `from` bytes contains `needle`
  // (true) or EOF (false).
  bool ReadUntil(const std::string& needle, size_t from = 0) {
    char buffer[4096];
    while (output_.find(needle, from) == std::string::npos) {
      const ssize_t got = ::read(stdout_, buffer, sizeof(buffer));
      if (got <= 0) return false;
      output_.append(buffer, got);
    }
    return true;
  }

  void Interrupt() { ::kill(pid_, SIGINT); }

  // Closes stdin, reads the rest of the output, returns the exit code.
  int Wait() {
    ::close(stdin_);
    stdin_ = -1;
    ReadUntil("\x01never\x01");
    int status = 0;
    ::waitpid(pid_, &status, 0);
    waited_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  const std::string& output() const { return output_; }

 private:
  pid_t pid_ = -1;
  int stdin_ = -1;
  int stdout_ = -1;
  bool waited_ = false;
  std::string output_;
};

TEST_CASE(
    "linserve-cli: Ctrl-C during a chat reply stops the reply, not the "
    "program") {
  auto server = StartServer(kDefaultModel);
  auto client = client::Client::Connect(
      "127.0.0.1:" + std::to_string(server->port()), {});
  REQUIRE(client.ok());
  CliProcess chat({"chat", "--address",
                   "127.0.0.1:" + std::to_string(server->port()), "--session",
                   "interrupted", "--temperature", "0", "--max_tokens", "4000",
                   "--ignore_eos"});
  REQUIRE(chat.ReadUntil("/help for commands"));
  const size_t before_reply = chat.output().size();
  chat.Send("Tell me everything.\n");
  // Wait for some of the reply, then interrupt it.
  REQUIRE(chat.ReadUntil(" ", before_reply));
  chat.Interrupt();
  REQUIRE(chat.ReadUntil("[reply stopped"));
  chat.Send("/id\n/quit\n");
  CHECK(chat.Wait() == 0);
  INFO(chat.output());
  CHECK(chat.output().find("interrupted\n") != std::string::npos);
  // The session kept the turn and the reply up to the interrupt.
  const int64_t position = Position(**client, "interrupted");
  CHECK(position > 8);
  CHECK(position < 4000);
}

}  // namespace
}  // namespace linserve

#endif  // LINSERVE_CLI_PATH
