#include "client/cli/command_line.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/cli/cli_flags.h"
#include "client/cli/commands.h"

namespace linserve::cli {
namespace {

constexpr char kDefaultAddress[] = "127.0.0.1:50051";
const std::vector<std::string> kCommonFlags = {"address", "timeout"};

std::vector<std::string> WithSampling(std::vector<std::string> flags) {
  const std::vector<std::string>& sampling = SamplingFlagNames();
  flags.insert(flags.end(), sampling.begin(), sampling.end());
  return flags;
}

const Command* FindCommand(const std::string& name) {
  for (const Command& command : Commands()) {
    if (command.name == name) return &command;
  }
  return nullptr;
}

void PrintProgramHelp(std::ostream& out) {
  out << "linserve-cli: the command-line client of a linserve server.\n\n"
         "Usage: linserve-cli COMMAND [ARGS] [FLAGS]\n"
         "       linserve-cli COMMAND --help   (the command's flags)\n\n"
         "Commands:\n";
  for (const Command& command : Commands()) {
    std::string head = absl::StrCat("  ", command.name);
    if (head.size() < 12) head.resize(12, ' ');
    out << head << " " << command.description << "\n";
  }
  out << "\nCommon flags: --address host:port (or $LINSERVE_ADDRESS; default "
      << kDefaultAddress
      << "), --timeout SECONDS.\nFlag names take '_' or '-' "
         "(--max_tokens, --max-tokens).\n";
}

void PrintFlag(std::ostream& out, const std::string& name) {
  absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
  if (flag == nullptr) return;
  out << "  --" << name;
  if (!flag->IsOfType<bool>()) out << "=VALUE";
  out << "\n      " << flag->Help();
  const std::string default_value = flag->DefaultValue();
  if (!default_value.empty()) out << " (default: " << default_value << ")";
  out << "\n";
}

void PrintCommandHelp(std::ostream& out, const Command& command) {
  out << "Usage: linserve-cli " << command.name;
  if (!command.synopsis.empty()) out << " " << command.synopsis;
  out << " [FLAGS]\n\n" << command.description << "\n\nFlags:\n";
  for (const std::string& name : command.flags) PrintFlag(out, name);
  for (const std::string& name : kCommonFlags) PrintFlag(out, name);
}

// Parses the flags among `argv` for `command` into the Abseil flags;
// positional arguments go to invocation->args. Returns an error message
// for an unknown flag or a bad value.
std::string ParseFlags(const Command& command,
                       const std::vector<std::string>& argv,
                       Invocation* invocation, bool* help) {
  std::set<std::string> accepted(command.flags.begin(), command.flags.end());
  accepted.insert(kCommonFlags.begin(), kCommonFlags.end());
  bool flags_ended = false;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (flags_ended || arg.size() < 2 || arg[0] != '-' || arg == "-") {
      invocation->args.push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_ended = true;
      continue;
    }
    std::string body = arg.substr(arg[1] == '-' ? 2 : 1);
    std::string name = body;
    std::optional<std::string> value;
    if (const size_t eq = body.find('='); eq != std::string::npos) {
      name = body.substr(0, eq);
      value = body.substr(eq + 1);
    }
    std::replace(name.begin(), name.end(), '-', '_');
    if (name == "help" || name == "h") {
      *help = true;
      continue;
    }
    bool negated = false;
    if (!accepted.count(name) && name.rfind("no", 0) == 0 &&
        accepted.count(name.substr(2))) {
      negated = true;
      name = name.substr(2);
    }
    absl::CommandLineFlag* flag =
        accepted.count(name) ? absl::FindCommandLineFlag(name) : nullptr;
    if (flag == nullptr) {
      return absl::StrCat("unknown flag ", arg, " for '", command.name,
                          "' (see linserve-cli ", command.name, " --help)");
    }
    if (flag->IsOfType<bool>()) {
      if (negated && value.has_value()) {
        return absl::StrCat("flag ", arg, " takes no value");
      }
      if (!value.has_value()) value = negated ? "false" : "true";
    } else if (negated) {
      return absl::StrCat("unknown flag ", arg, " for '", command.name, "'");
    } else if (!value.has_value()) {
      if (i + 1 >= argv.size()) {
        return absl::StrCat("flag --", name, " needs a value");
      }
      value = argv[++i];
    }
    std::string error;
    if (!flag->ParseFrom(*value, &error)) {
      return absl::StrCat("bad value \"", *value, "\" for --", name, ": ",
                          error);
    }
    invocation->flags_set.insert(name);
  }
  return "";
}

}  // namespace

const std::vector<Command>& Commands() {
  static const auto* commands = new std::vector<Command>{
      {"chat", "",
       "Interactive chat: reads lines from stdin and streams each reply. "
       "Ctrl-C stops a reply (twice, or at the prompt: quits). Commands: "
       "/fork, /save FILE, /load FILE, /reset, /id, /help, /quit.",
       WithSampling({"session", "system_prompt", "quiet"}), RunChat},
      {"generate", "[PROMPT...]",
       "Generates from PROMPT (the arguments, or stdin when none) and "
       "streams the text; with --tokens the prompt and the output are "
       "token ids.",
       WithSampling({"session", "tokens", "add_bos", "json"}), RunGenerate},
      {"ingest",
       "FILE",
       "Streams FILE ('-': stdin) into a session (new unless --session; "
       "created before the upload, deleted again if the ingest fails), with "
       "a progress bar on stderr: the tokens the server has fed so far, "
       "tokens/s and the ETA (polled with GetSession every "
       "--progress_interval; for text, the total in tokens is estimated "
       "from the tokens per byte so far). Prints the session id, position "
       "and rate.",
       {"session", "tokens", "add_bos", "chunk_bytes", "chunk_tokens",
        "progress_interval", "quiet", "json"},
       RunIngest},
      {"score",
       "FILE",
       "Perplexity of FILE ('-': stdin), from an empty context or in the "
       "context of --session.",
       {"session", "tokens", "add_bos", "append", "per_token", "json"},
       RunScore},
      {"sessions",
       "list | get ID | fork ID [NEW_ID] | export ID FILE | import FILE "
       "[NEW_ID] | delete ID | create [ID]",
       "Manages server-kept sessions.",
       {"json"},
       RunSessions},
      {"models",
       "[list | get NAME]",
       "Shows the model the server runs.",
       {"json"},
       RunModels},
      {"health",
       "",
       "Exits 0 if the server (or --service) is SERVING, else 1.",
       {"service", "quiet"},
       RunHealth},
      {"bench",
       "",
       "Load generator: --concurrency streams of the --mix kinds for "
       "--duration seconds (or --requests in all); prints throughput and "
       "TTFT, inter-token and end-to-end latency percentiles.",
       {"concurrency", "duration", "requests", "mix", "max_tokens",
        "prompt_tokens", "ingest_tokens", "chat_turns", "seed", "json"},
       RunBench},
  };
  return *commands;
}

namespace {

// Splits argv into the command name and the rest, so that flags may come
// before the command too ("linserve-cli --address X health").
std::string FindCommandName(const std::vector<std::string>& argv,
                            std::vector<std::string>* rest) {
  std::string name;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (!name.empty() || arg.size() < 2 || arg[0] != '-') {
      if (name.empty()) {
        name = arg;
      } else {
        rest->push_back(arg);
      }
      continue;
    }
    rest->push_back(arg);
    // A leading "--flag value": keep the value with its flag.
    std::string flag_name = arg.substr(arg[1] == '-' ? 2 : 1);
    if (flag_name.find('=') != std::string::npos) continue;
    std::replace(flag_name.begin(), flag_name.end(), '-', '_');
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(flag_name);
    if (flag != nullptr && !flag->IsOfType<bool>() && i + 1 < argv.size()) {
      rest->push_back(argv[++i]);
    }
  }
  return name;
}

}  // namespace

int Main(int argc, char** argv) {
  std::vector<std::string> rest;
  const std::string name =
      FindCommandName(std::vector<std::string>(argv + 1, argv + argc), &rest);
  const bool help_asked =
      std::any_of(rest.begin(), rest.end(), [](const std::string& arg) {
        return arg == "--help" || arg == "-help" || arg == "-h";
      });
  if (name.empty() || name == "help") {
    if (name == "help" && !rest.empty()) {
      if (const Command* command = FindCommand(rest[0])) {
        PrintCommandHelp(std::cout, *command);
        return kExitOk;
      }
    }
    if (name.empty() && !help_asked) {
      PrintProgramHelp(std::cerr);
      return kExitUsage;
    }
    PrintProgramHelp(std::cout);
    return kExitOk;
  }
  const Command* command = FindCommand(name);
  if (command == nullptr) {
    std::cerr << "linserve-cli: unknown command \"" << name
              << "\" (see linserve-cli --help)\n";
    return kExitUsage;
  }
  Invocation invocation;
  invocation.command = command->name;
  bool help = false;
  const std::string error = ParseFlags(*command, rest, &invocation, &help);
  if (help) {
    PrintCommandHelp(std::cout, *command);
    return kExitOk;
  }
  if (!error.empty()) return UsageError(invocation, error);
  return command->run(invocation);
}

std::string ServerAddress(const Invocation& invocation) {
  if (invocation.IsSet("address")) return absl::GetFlag(FLAGS_address);
  if (const char* env = std::getenv("LINSERVE_ADDRESS");
      env != nullptr && *env != '\0') {
    return env;
  }
  return kDefaultAddress;
}

absl::StatusOr<std::unique_ptr<client::Client>> MakeClient(
    const Invocation& invocation) {
  client::ClientOptions options;
  const double timeout = absl::GetFlag(FLAGS_timeout);
  if (timeout < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--timeout must be >= 0 seconds, got ", timeout));
  }
  options.default_timeout =
      timeout == 0 ? absl::InfiniteDuration() : absl::Seconds(timeout);
  return client::Client::Connect(ServerAddress(invocation), options);
}

client::CallOptions ExplicitTimeout(const Invocation& invocation) {
  client::CallOptions call;
  if (invocation.IsSet("timeout") && absl::GetFlag(FLAGS_timeout) > 0) {
    call.timeout = absl::Seconds(absl::GetFlag(FLAGS_timeout));
  }
  return call;
}

int ReportFailure(const Invocation& invocation, const std::string& what,
                  const absl::Status& status) {
  std::cerr << "linserve-cli " << invocation.command << ": " << what << ": "
            << absl::StatusCodeToString(status.code()) << ": "
            << status.message() << "\n";
  if (status.code() == absl::StatusCode::kUnavailable) {
    std::cerr << "  (is a server listening at " << ServerAddress(invocation)
              << "? set --address or $LINSERVE_ADDRESS)\n";
  }
  return kExitFailure;
}

int UsageError(const Invocation& invocation, const std::string& message) {
  std::cerr << "linserve-cli " << invocation.command << ": " << message << "\n";
  if (const Command* command = FindCommand(invocation.command)) {
    std::cerr << "Usage: linserve-cli " << command->name << " "
              << command->synopsis << " [FLAGS]  (--help for the flags)\n";
  }
  return kExitUsage;
}

absl::StatusOr<std::string> ReadInput(const std::string& path) {
  if (path == "-") {
    return std::string(std::istreambuf_iterator<char>(std::cin),
                       std::istreambuf_iterator<char>());
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream content;
  content << file.rdbuf();
  return std::move(content).str();
}

absl::StatusOr<std::vector<int32_t>> ParseTokenIds(const std::string& text) {
  std::vector<int32_t> ids;
  for (absl::string_view piece :
       absl::StrSplit(text, absl::ByAnyChar(" ,\t\r\n"), absl::SkipEmpty())) {
    int32_t id;
    if (!absl::SimpleAtoi(piece, &id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", piece,
                       "\" is not a token id (expected integers separated by "
                       "spaces or commas)"));
    }
    ids.push_back(id);
  }
  return ids;
}

}  // namespace linserve::cli
