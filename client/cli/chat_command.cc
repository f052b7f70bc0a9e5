// linserve-cli chat: an interactive chat on one server-kept session.
//
// Ctrl-C: a SIGINT handler only sets an atomic flag; a watcher thread turns
// it into a ChatCancel while a reply streams (the session keeps the reply
// up to there), or quits when no reply is running or on a second Ctrl-C
// before the reply ended.
//
// Session-level commands (/fork, /save, /load) close the Chat stream first,
// because a session serves one call at a time, and reopen it afterwards.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "client/chat_session.h"
#include "client/cli/cli_flags.h"
#include "client/cli/commands.h"
#include "common/status_macros.h"

namespace linserve::cli {
namespace {

std::atomic<int> g_interrupts{0};

extern "C" void OnSigint(int) {
  g_interrupts.fetch_add(1, std::memory_order_relaxed);
}

class Chat {
 public:
  Chat(const Invocation& invocation, client::Client& client,
       v1::SamplingParams sampling)
      : invocation_(invocation), client_(client), sampling_(sampling) {}

  ~Chat() { StopWatcher(); }

  // Opens the chat on `session_id` (empty: a new session).
  absl::Status Open(const std::string& session_id) {
    RETURN_IF_ERROR(CloseStream());
    v1::ChatStart start;
    start.set_session_id(session_id);
    *start.mutable_sampling() = sampling_;
    start.set_system_prompt(absl::GetFlag(FLAGS_system_prompt));
    auto chat = client::ChatSession::Start(client_, start,
                                           ExplicitTimeout(invocation_));
    if (!chat.ok()) return chat.status();
    std::lock_guard<std::mutex> lock(chat_mu_);
    chat_ = *std::move(chat);
    return absl::OkStatus();
  }

  const std::string& session_id() const { return chat_->session_id(); }

  absl::Status CloseStream() {
    if (chat_ == nullptr) return absl::OkStatus();
    const absl::Status status = chat_->Close();
    std::lock_guard<std::mutex> lock(chat_mu_);
    chat_.reset();
    return status;
  }

  // One turn, streamed to stdout.
  absl::Status Turn(const std::string& text) {
    cancel_sent_.store(false);
    replying_.store(true);
    auto end = chat_->SendTurn(text, [](const v1::GenerateChunk& chunk) {
      std::cout << chunk.text() << std::flush;
    });
    replying_.store(false);
    std::cout << "\n";
    if (!end.ok()) return end.status();
    if (end->finish_reason() == v1::FINISH_REASON_CANCELLED) {
      std::cerr << "[reply stopped; the session keeps it up to here]\n";
    }
    return absl::OkStatus();
  }

  void StartWatcher() {
    watcher_ = std::thread([this] {
      while (!stop_watcher_.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        if (g_interrupts.exchange(0) == 0) continue;
        if (!replying_.load() || cancel_sent_.exchange(true)) {
          // Nothing of the session is lost: the server holds it.
          std::cerr << "\n";
          std::_Exit(130);
        }
        std::lock_guard<std::mutex> lock(chat_mu_);
        if (chat_ != nullptr) chat_->Cancel().IgnoreError();
      }
    });
  }

 private:
  void StopWatcher() {
    stop_watcher_.store(true);
    if (watcher_.joinable()) watcher_.join();
  }

  const Invocation& invocation_;
  client::Client& client_;
  v1::SamplingParams sampling_;
  std::mutex chat_mu_;  // the watcher's Cancel vs replacing chat_
  std::unique_ptr<client::ChatSession> chat_;
  std::atomic<bool> replying_{false};
  std::atomic<bool> cancel_sent_{false};
  std::atomic<bool> stop_watcher_{false};
  std::thread watcher_;
};

constexpr char kChatHelp[] =
    "/fork        fork the session and continue on the copy\n"
    "/save FILE   export the session to FILE\n"
    "/load FILE   import a session from FILE and continue on it\n"
    "/reset       start a new, empty session\n"
    "/id          print the session id\n"
    "/quit        leave (the server keeps the session)\n";

}  // namespace

int RunChat(const Invocation& invocation) {
  if (!invocation.args.empty()) {
    return UsageError(invocation,
                      "chat takes no arguments (type at the "
                      "prompt)");
  }
  auto sampling = SamplingFromFlags(invocation);
  if (!sampling.ok()) {
    return UsageError(invocation, std::string(sampling.status().message()));
  }
  auto made = MakeClient(invocation);
  if (!made.ok()) return ReportFailure(invocation, "client", made.status());
  client::Client& client = **made;
  const bool quiet = absl::GetFlag(FLAGS_quiet);

  std::string session_id = absl::GetFlag(FLAGS_session);
  if (!session_id.empty()) {
    auto info = client.GetSession(session_id);
    if (info.status().code() == absl::StatusCode::kNotFound) {
      auto created = client.CreateSession(session_id);
      if (!created.ok()) {
        return ReportFailure(invocation, "CreateSession", created.status());
      }
      std::cerr << "note: no session " << session_id
                << " on the server; created it\n";
    } else if (!info.ok()) {
      return ReportFailure(invocation, "GetSession", info.status());
    }
  }
  Chat chat(invocation, client, *sampling);
  if (absl::Status opened = chat.Open(session_id); !opened.ok()) {
    return ReportFailure(invocation, "Chat", opened);
  }
  if (!quiet) {
    std::cerr << "session " << chat.session_id()
              << " (continue later with --session " << chat.session_id()
              << "; /help for commands)\n";
  }

  struct sigaction action = {};
  action.sa_handler = OnSigint;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  chat.StartWatcher();

  const bool interactive = isatty(STDIN_FILENO);
  std::string line;
  while (true) {
    if (interactive) std::cerr << "> " << std::flush;
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    absl::Status status;
    if (line[0] != '/') {
      status = chat.Turn(line);
      if (!status.ok()) return ReportFailure(invocation, "Chat turn", status);
      continue;
    }
    const absl::string_view command_line = line;
    absl::string_view argument = command_line;
    std::string command(command_line.substr(0, command_line.find(' ')));
    argument.remove_prefix(std::min(argument.size(), command.size()));
    const std::string arg(absl::StripAsciiWhitespace(argument));
    const std::string current = chat.session_id();
    if (command == "/quit" || command == "/exit") break;
    if (command == "/help") {
      std::cerr << kChatHelp;
    } else if (command == "/id") {
      std::cout << current << "\n";
    } else if (command == "/fork" || command == "/save" || command == "/load" ||
               command == "/reset") {
      if ((command == "/save" || command == "/load") && arg.empty()) {
        std::cerr << command << " needs a FILE\n";
        continue;
      }
      status = chat.CloseStream();
      if (!status.ok()) return ReportFailure(invocation, "Chat", status);
      std::string next = current;
      if (command == "/fork") {
        auto forked = client.ForkSession(current);
        if (forked.ok()) {
          next = forked->session_id();
          std::cout << "forked " << current << " -> " << next << "\n";
        } else {
          ReportFailure(invocation, "ForkSession", forked.status());
        }
      } else if (command == "/save") {
        auto bytes = client.ExportSessionToFile(current, arg);
        if (bytes.ok()) {
          std::cout << "saved " << current << " to " << arg << " (" << *bytes
                    << " bytes)\n";
        } else {
          ReportFailure(invocation, "ExportSession", bytes.status());
        }
      } else if (command == "/load") {
        auto imported = client.ImportSessionFromFile(arg);
        if (imported.ok()) {
          next = imported->session_id();
          std::cout << "loaded " << arg << " as " << next << "\n";
        } else {
          ReportFailure(invocation, "ImportSession", imported.status());
        }
      } else {  // /reset
        next.clear();
      }
      status = chat.Open(next);
      if (!status.ok()) return ReportFailure(invocation, "Chat", status);
      if (command == "/reset") {
        std::cout << "new session " << chat.session_id() << "\n";
      }
    } else {
      std::cerr << "unknown command " << command << " (/help lists them)\n";
    }
  }
  const absl::Status closed = chat.CloseStream();
  if (!closed.ok()) return ReportFailure(invocation, "Chat", closed);
  return kExitOk;
}

}  // namespace linserve::cli
