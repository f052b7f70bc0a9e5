// linserve-cli end to end: the built binary (LINSERVE_CLI_PATH) run against
// a server started in the test, checking exit codes and output. Token-id
// commands use the tiny gated_deltanet fixture; chat and text use the
// bundled default model.
#ifdef LINSERVE_CLI_PATH

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "client/cli/json_output.h"
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

std::unique_ptr<server::Server> StartServer(
    const std::string& model_dir,
    const server::SchedulerOptions& scheduler = {}) {
  server::ServerOptions options;
  options.model_dir = model_dir;
  options.listen = "127.0.0.1:0";
  options.scheduler = scheduler;
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

// --- Output of every subcommand, human and --json.

// The figures of one line of ingest's progress bar when it shows the
// server's progress: "[###   ]  41.0% 141568/~345226 tok fed  24500 tok/s
// ETA 8 s".
struct ProgressLine {
  double percent = 0;
  int64_t fed = 0;
  bool estimated = false;  // the total is an estimate ("~")
  int64_t total = -1;      // -1: "?"
  int64_t rate = 0;
  int64_t eta = -1;  // seconds; -1: "?"
};

std::vector<ProgressLine> ServerProgressLines(const std::string& out) {
  static const std::regex kLine(
      R"(\[[# ]{30}\] +([0-9.]+)% (\d+)/(~?)(\d+|\?) tok fed  (\d+) tok/s  )"
      R"(ETA (\d+ s|\?))");
  std::vector<ProgressLine> lines;
  for (std::sregex_iterator it(out.begin(), out.end(), kLine), end; it != end;
       ++it) {
    const std::smatch& m = *it;
    ProgressLine line;
    line.percent = std::stod(m[1]);
    line.fed = std::stoll(m[2]);
    line.estimated = m[3] == "~";
    line.total = m[4] == "?" ? -1 : std::stoll(m[4]);
    line.rate = std::stoll(m[5]);
    line.eta = m[6] == "?" ? -1 : std::stoll(m[6]);
    lines.push_back(line);
  }
  return lines;
}

// The lines of ingest's progress bar that show what was sent (no server
// figures): "[###   ]  43.7% 256.0 KiB sent  67.3 MiB/s  ETA 0 s".
int SentProgressLines(const std::string& out) {
  static const std::regex kLine(R"(\[[# ]{30}\] +[0-9.]+% [^\n]* sent  )");
  return static_cast<int>(
      std::distance(std::sregex_iterator(out.begin(), out.end(), kLine),
                    std::sregex_iterator()));
}

// A file of `count` token ids of the tiny fixture (3..63).
std::filesystem::path TokenDocument(const std::string& name, int count) {
  const std::filesystem::path path = TempPath(name);
  std::ofstream file(path);
  for (int i = 0; i < count; ++i) {
    file << (3 + (i * 7) % 61) << (i % 20 == 19 ? "\n" : " ");
  }
  return path;
}

// A scheduler that feeds one token per step: long enough ingests to watch.
server::SchedulerOptions OneTokenPerStep() {
  server::SchedulerOptions options;
  options.prefill_chunk = 1;
  options.step_token_budget = 1;
  return options;
}

int64_t Occurrences(const std::string& text, const std::string& needle) {
  int64_t count = 0;
  for (size_t at = text.find(needle); at != std::string::npos;
       at = text.find(needle, at + needle.size())) {
    ++count;
  }
  return count;
}

// The number after `key` in `text` (e.g. "ingested " -> 200000), or -1.
int64_t NumberAfter(const std::string& text, const std::string& key) {
  const size_t at = text.find(key);
  if (at == std::string::npos) return -1;
  return std::stoll(text.substr(at + key.size()));
}

TEST_CASE(
    "linserve-cli ingest shows the server's tokens fed, tokens/s and ETA "
    "while token ids stream") {
  auto server = StartServer(kTinyModel, OneTokenPerStep());
  const std::string address = Address(*server);
  constexpr int kTokens = 200000;
  const std::filesystem::path document = TokenDocument("ids.txt", kTokens);

  const CliResult ingested =
      RunCli(address +
             " ingest --tokens --chunk_tokens 5000 --progress_interval 0.01 " +
             document.string());
  INFO(ingested.out);
  REQUIRE(ingested.exit_code == 0);
  CHECK(NumberAfter(ingested.out, "\ningested ") == kTokens);
  CHECK(NumberAfter(ingested.out, "\nposition ") == kTokens);
  const std::vector<ProgressLine> lines = ServerProgressLines(ingested.out);
  // Not a terminal: a line per tenth, from the server's figures only.
  CHECK(SentProgressLines(ingested.out) == 0);
  int midway = 0;
  for (const ProgressLine& line : lines) {
    CHECK(line.total == kTokens);  // token ids: the total is known
    CHECK_FALSE(line.estimated);
    if (line.fed > 0 && line.fed < kTokens) {
      ++midway;
      CHECK(line.rate > 0);
      CHECK(line.eta >= 0);
      CHECK(line.percent == Approx(100.0 * line.fed / kTokens).margin(0.051));
    }
  }
  CHECK(midway >= 2);
  for (size_t i = 1; i < lines.size(); ++i) {
    CHECK(lines[i].fed > lines[i - 1].fed);
  }

  // --json: the IngestResponse on stdout, the bar still on stderr.
  const CliResult json = RunCli(address +
                                " ingest --tokens --json --chunk_tokens 5000 "
                                "--progress_interval 0.01 " +
                                document.string());
  INFO(json.out);
  CHECK(json.exit_code == 0);
  CHECK(std::regex_search(
      json.out,
      std::regex(R"(\{"session_id":"[0-9a-f]{32}","tokens_ingested":"200000",)"
                 R"("session_position":"200000","timings":\{)")));
  CHECK_FALSE(ServerProgressLines(json.out).empty());

  // --quiet: the result only; --progress_interval 0: what was sent.
  const std::filesystem::path small = TokenDocument("small.txt", 3000);
  const CliResult quiet = RunCli(
      address + " ingest --tokens --quiet --session q " + small.string());
  CHECK(quiet.exit_code == 1);  // no session "q" yet
  CHECK(quiet.out.find("NOT_FOUND") != std::string::npos);
  CHECK(RunCli(address + " sessions create q").exit_code == 0);
  const CliResult quiet_ok = RunCli(
      address + " ingest --tokens --quiet --session q " + small.string());
  INFO(quiet_ok.out);
  CHECK(quiet_ok.exit_code == 0);
  CHECK(std::regex_match(
      quiet_ok.out, std::regex("session q\nposition 3000\ningested 3000 "
                               "tokens in [0-9.e-]+ s \\([0-9]+ tok/s\\)\n")));
  const CliResult unpolled = RunCli(
      address + " ingest --tokens --progress_interval 0 " + small.string());
  INFO(unpolled.out);
  CHECK(unpolled.exit_code == 0);
  CHECK(ServerProgressLines(unpolled.out).empty());
  CHECK(SentProgressLines(unpolled.out) > 0);
  CHECK(unpolled.out.find("3000 tok sent") != std::string::npos);
  const CliResult help = RunCli("ingest --help");
  CHECK(help.exit_code == 0);
  CHECK(help.out.find("--progress_interval=VALUE") != std::string::npos);
  CHECK(help.out.find("tokens/s") != std::string::npos);
  CHECK(RunCli(address + " ingest --tokens --progress_interval -1 " +
               small.string())
            .exit_code == 2);
  std::filesystem::remove(document);
  std::filesystem::remove(small);
}

// Text of plain words, the same mix all along (so tokens per byte are
// steady and the ETA's estimate of the total can be checked).
std::string Words(int count) {
  static const char* kWords[] = {
      "And",      "the",  "earth", "was", "without", "form",   "and", "void",
      "darkness", "upon", "face",  "of",  "deep",    "Spirit", "God", "moved"};
  std::string text;
  for (int i = 0; i < count; ++i) {
    text += kWords[(i * 5 + i / 16) % 16];
    text += i % 14 == 13 ? ".\n" : " ";
  }
  return text;
}

TEST_CASE(
    "linserve-cli ingest of text estimates the document's tokens from the "
    "server's tokens per byte and shows tokens/s and ETA") {
  // Small steps: the ingest lasts long enough for several polls.
  server::SchedulerOptions small_steps;
  small_steps.prefill_chunk = 32;
  small_steps.step_token_budget = 32;
  auto server = StartServer(kDefaultModel, small_steps);
  const std::string address = Address(*server);
  const std::filesystem::path document = TempPath("words.txt");
  {
    std::ofstream file(document);
    file << Words(6000);
  }
  const CliResult ingested =
      RunCli(address + " ingest --chunk_bytes 4096 --progress_interval 0.01 " +
             document.string());
  INFO(ingested.out);
  REQUIRE(ingested.exit_code == 0);
  const int64_t tokens = NumberAfter(ingested.out, "\ningested ");
  REQUIRE(tokens > 1000);
  const std::vector<ProgressLine> lines = ServerProgressLines(ingested.out);
  int midway = 0;
  for (const ProgressLine& line : lines) {
    if (line.fed == 0 || line.fed >= tokens) continue;
    ++midway;
    CHECK(line.estimated);
    CHECK(line.rate > 0);
    CHECK(line.eta >= 0);
    // Tokens per byte so far x the file's bytes: the total within 5%.
    CHECK(static_cast<double>(line.total) ==
          Approx(static_cast<double>(tokens)).epsilon(0.05));
  }
  CHECK(midway >= 2);

  // From stdin the size is unknown until everything is sent.
  std::ifstream file(document);
  std::stringstream text;
  text << file.rdbuf();
  const CliResult piped =
      RunCli(address + " ingest --chunk_bytes 4096 --progress_interval 0.01 -",
             text.str());
  INFO(piped.out);
  CHECK(piped.exit_code == 0);
  CHECK(NumberAfter(piped.out, "\ningested ") == tokens);
  CHECK_FALSE(ServerProgressLines(piped.out).empty());
  std::filesystem::remove(document);
}

TEST_CASE(
    "linserve-cli sessions: every action prints what it did, human and "
    "--json, busy sessions with their call's progress") {
  auto server = StartServer(kTinyModel);
  const std::string address = Address(*server);
  auto client = client::Client::Connect(
      "127.0.0.1:" + std::to_string(server->port()), {});
  REQUIRE(client.ok());
  const auto row = [](const std::string& id, int64_t position) {
    return std::regex(id + " +position " + std::to_string(position) +
                      " +state [0-9]+ B  SESSION_LOCATION_RAM\n");
  };

  const CliResult created = RunCli(address + " sessions create s1");
  INFO(created.out);
  CHECK(created.exit_code == 0);
  CHECK(std::regex_match(created.out, row("s1", 0)));
  const CliResult created_json = RunCli(address + " sessions create --json");
  INFO(created_json.out);
  CHECK(created_json.exit_code == 0);
  CHECK(std::regex_match(
      created_json.out,
      std::regex(R"(\{"session_id":"[0-9a-f]{32}","position":"0",)"
                 R"("state_bytes":"[0-9]+","created_unix_seconds":[0-9.e+]+,)"
                 R"("last_used_unix_seconds":[0-9.e+]+,"model":)"
                 R"("gated_deltanet","location":"SESSION_LOCATION_RAM",)"
                 R"("busy":false\}\n)")));

  client::IngestOptions ingest;
  ingest.session_id = "s1";
  std::vector<int32_t> ids;
  for (int i = 0; i < 500; ++i) ids.push_back(3 + i % 61);
  REQUIRE((*client)->IngestTokens(ids, ingest).ok());

  CHECK(std::regex_match(RunCli(address + " sessions get s1").out,
                         row("s1", 500)));
  CHECK(RunCli(address + " sessions get s1 --json")
            .out.find("\"session_id\":\"s1\",\"position\":\"500\"") !=
        std::string::npos);
  CHECK(std::regex_match(RunCli(address + " sessions fork s1 s2").out,
                         row("s2", 500)));
  CHECK(RunCli(address + " sessions fork s1 s3 --json")
            .out.find("\"session_id\":\"s3\",\"position\":\"500\"") !=
        std::string::npos);

  const std::filesystem::path state = TempPath("s1.state");
  const CliResult exported =
      RunCli(address + " sessions export s1 " + state.string());
  INFO(exported.out);
  CHECK(exported.exit_code == 0);
  REQUIRE(std::filesystem::exists(state));
  const uintmax_t state_size = std::filesystem::file_size(state);
  CHECK(exported.out == "exported s1 to " + state.string() + " (" +
                            std::to_string(state_size) + " bytes)\n");
  const CliResult exported_json =
      RunCli(address + " sessions export s1 " + state.string() + " --json");
  CHECK(exported_json.out ==
        "{\"session_id\":\"s1\",\"file\":\"" + state.string() +
            "\",\"bytes\":" + std::to_string(state_size) + "}\n");
  CHECK(std::regex_match(
      RunCli(address + " sessions import " + state.string() + " s4").out,
      row("s4", 500)));
  CHECK(RunCli(address + " sessions import " + state.string() + " s5 --json")
            .out.find("\"session_id\":\"s5\",\"position\":\"500\"") !=
        std::string::npos);

  const CliResult listed = RunCli(address + " sessions list");
  INFO(listed.out);
  CHECK(listed.exit_code == 0);
  for (const char* id : {"s1", "s2", "s3", "s4", "s5"}) {
    CHECK(std::regex_search(listed.out, row(id, 500)));
  }
  CHECK(listed.out.find("\n6 sessions\n") != std::string::npos);
  const CliResult listed_json = RunCli(address + " sessions list --json");
  CHECK(listed_json.out.front() == '[');
  CHECK(Occurrences(listed_json.out, "\"session_id\":") == 6);

  CHECK(RunCli(address + " sessions delete s2").out == "deleted s2\n");
  CHECK(RunCli(address + " sessions delete s3 --json").out ==
        "{\"deleted\":\"s3\"}\n");
  CHECK(RunCli(address + " sessions get s3").exit_code == 1);

  // A session busy with an Ingest: get and list show the call's progress.
  grpc::ClientContext context;
  v1::IngestResponse response;
  auto writer = (*client)->inference_stub().Ingest(&context, &response);
  v1::IngestRequest chunk;
  chunk.set_session_id("s1");
  for (int i = 0; i < 100; ++i) chunk.mutable_tokens()->add_ids(3 + i % 61);
  REQUIRE(writer->Write(chunk));
  for (int i = 0; i < 1000; ++i) {
    auto info = (*client)->GetSession("s1");
    if (info.ok() && info->in_flight().tokens_fed() == 100) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const CliResult busy = RunCli(address + " sessions get s1");
  INFO(busy.out);
  CHECK(std::regex_match(
      busy.out,
      std::regex("s1 +position 500 +state [0-9]+ B  SESSION_LOCATION_RAM  "
                 "busy \\(call so far: 100 tokens fed\\)\n")));
  CHECK(RunCli(address + " sessions get s1 --json")
            .out.find("\"busy\":true,\"in_flight\":{\"tokens_fed\":\"100\","
                      "\"tokens_queued\":\"0\",\"bytes_received\":\"0\"}}") !=
        std::string::npos);
  CHECK(RunCli(address + " sessions list")
            .out.find("busy (call so far: 100 tokens fed)") !=
        std::string::npos);
  writer->WritesDone();
  REQUIRE(writer->Finish().ok());
  CHECK(std::regex_match(RunCli(address + " sessions get s1").out,
                         row("s1", 600)));
  std::filesystem::remove(state);
}

TEST_CASE("linserve-cli models prints the model, human and --json") {
  auto server = StartServer(kTinyModel);
  const std::string address = Address(*server);
  auto client = client::Client::Connect(
      "127.0.0.1:" + std::to_string(server->port()), {});
  REQUIRE(client.ok());
  const auto models = (*client)->ListModels();
  REQUIRE(models.ok());
  REQUIRE(models->size() == 1);
  const v1::ModelInfo& model = (*models)[0];
  const std::string expected =
      model.name() + ": gated_deltanet, " + std::to_string(model.num_layers()) +
      " layers, hidden " + std::to_string(model.hidden_size()) + ", " +
      std::to_string(model.num_heads()) + " heads, vocab " +
      std::to_string(model.vocab_size()) + ", " +
      std::to_string(model.parameters()) + " parameters (" +
      model.weight_dtype() + "), state " + std::to_string(model.state_bytes()) +
      " B/session, no tokenizer, " + "fingerprint " + model.fingerprint() +
      "\n";
  const CliResult listed = RunCli(address + " models");
  CHECK(listed.exit_code == 0);
  CHECK(listed.out == expected);
  CHECK(RunCli(address + " models list").out == expected);
  CHECK(RunCli(address + " models get " + model.name()).out == expected);
  const CliResult json =
      RunCli(address + " models get " + model.name() + " --json");
  CHECK(json.exit_code == 0);
  CHECK(json.out.find("\"name\":\"" + model.name() + "\"") !=
        std::string::npos);
  CHECK(json.out.find("\"fingerprint\":\"" + model.fingerprint() + "\"") !=
        std::string::npos);
  CHECK(json.out.front() == '{');
  CHECK(RunCli(address + " models --json").out.front() == '[');
  const CliResult missing = RunCli(address + " models get no-such-model");
  CHECK(missing.exit_code == 1);
  CHECK(missing.out.find("NOT_FOUND") != std::string::npos);
  CHECK(RunCli(address + " models frobnicate").exit_code == 2);
}

TEST_CASE(
    "linserve-cli generate and score print text, token ids and figures "
    "that match the client library's") {
  auto server = StartServer(kDefaultModel);
  const std::string address = Address(*server);
  auto client = client::Client::Connect(
      "127.0.0.1:" + std::to_string(server->port()), {});
  REQUIRE(client.ok());

  v1::GenerateRequest request;
  request.mutable_prompt()->set_text("In the beginning");
  request.mutable_sampling()->set_temperature(0);
  request.mutable_sampling()->set_max_tokens(12);
  request.mutable_sampling()->set_ignore_eos(true);
  const auto expected = (*client)->GenerateAll(request);
  REQUIRE(expected.ok());
  REQUIRE_FALSE(expected->text.empty());
  const CliResult text =
      RunCli(address +
             " generate --temperature 0 --max_tokens 12 --ignore_eos In the "
             "beginning");
  INFO(text.out);
  CHECK(text.exit_code == 0);
  CHECK(text.out == expected->text + "\n");
  const CliResult json =
      RunCli(address +
             " generate --json --temperature 0 --max_tokens 12 --ignore_eos In "
             "the beginning");
  INFO(json.out);
  CHECK(json.exit_code == 0);
  CHECK(json.out.find("\"text\":" + cli::JsonString(expected->text)) !=
        std::string::npos);
  CHECK(json.out.find("\"generated_tokens\":\"12\"") != std::string::npos);

  const std::filesystem::path document = TempPath("score.txt");
  {
    std::ofstream file(document);
    file << Words(40);
  }
  v1::ScoreRequest score;
  score.mutable_input()->set_text(Words(40));
  const auto scored = (*client)->Score(score);
  REQUIRE(scored.ok());
  const CliResult human = RunCli(address + " score " + document.string());
  INFO(human.out);
  CHECK(human.exit_code == 0);
  std::ostringstream figures;
  figures << "perplexity " << scored->perplexity() << "\ntokens "
          << scored->count() << "\ntotal_logprob " << scored->total_logprob()
          << "\n";
  CHECK(human.out == figures.str());
  const CliResult per_token =
      RunCli(address + " score --per_token " + document.string());
  CHECK(per_token.exit_code == 0);
  CHECK(Occurrences(per_token.out, "\"logprob\":") == scored->count());
  std::filesystem::remove(document);
}

TEST_CASE("linserve-cli bench prints a table of throughput and latencies") {
  auto server = StartServer(kTinyModel);
  const CliResult bench =
      RunCli(Address(*server) +
             " bench --concurrency 3 --requests 12 --mix generate=2,ingest=1 "
             "--max_tokens 8 --prompt_tokens 4 --ingest_tokens 100");
  INFO(bench.out);
  CHECK(bench.exit_code == 0);
  CHECK(std::regex_search(
      bench.out, std::regex("^3 streams for [0-9.]+ s against 127\\.0\\.0\\.1:"
                            "[0-9]+ \\(model gated_deltanet\\)\n")));
  for (const char* table : {"generate x2", "ingest x1", "total"}) {
    CHECK(std::regex_search(
        bench.out,
        std::regex(std::string("\n") + table +
                   " +[0-9]+ req +0 err +[0-9.]+ req/s +[0-9.]+ gen tok/s "
                   "+[0-9.]+ ingest tok/s\n")));
  }
  for (const char* series : {"ttft", "inter-token", "end-to-end"}) {
    CHECK(std::regex_search(
        bench.out, std::regex(std::string("\n  ") + series +
                              " +p50 +[0-9.]+ ms  p90 +[0-9.]+ ms  p99 +"
                              "[0-9.]+ ms  \\(n=[0-9]+\\)\n")));
  }
  CHECK(NumberAfter(bench.out, "\ntotal ") == 12);
}

}  // namespace
}  // namespace linserve

#endif  // LINSERVE_CLI_PATH
