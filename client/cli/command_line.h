// linserve-cli's command line: the table of subcommands, the parsing of
// their flags (Abseil flags, each subcommand accepting only its own), help
// text, and what every subcommand shares (the address, the deadline, the
// client, printing errors).
//
// Exit codes of every subcommand: 0 success, 1 the server or a file
// refused (the message says why), 2 a usage error (unknown subcommand or
// flag, bad value, missing argument).
#ifndef LINSERVE_CLIENT_CLI_COMMAND_LINE_H_
#define LINSERVE_CLIENT_CLI_COMMAND_LINE_H_

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/client.h"

namespace linserve::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// What a subcommand gets: its positional arguments and the flags that were
// given explicitly (the others hold their defaults).
struct Invocation {
  std::string command;
  std::vector<std::string> args;
  std::set<std::string> flags_set;

  bool IsSet(const std::string& flag) const { return flags_set.count(flag); }
};

struct Command {
  std::string name;
  // Positional syntax, e.g. "FILE" or "list|get ID|...".
  std::string synopsis;
  std::string description;
  // Flags it accepts besides the common ones (--address, --timeout).
  std::vector<std::string> flags;
  int (*run)(const Invocation&);
};

// Every subcommand, in the order --help lists them.
const std::vector<Command>& Commands();

// Parses argv, prints help or usage errors, and runs the subcommand.
int Main(int argc, char** argv);

// --address, else $LINSERVE_ADDRESS, else 127.0.0.1:50051.
std::string ServerAddress(const Invocation& invocation);

// A client for ServerAddress() with --timeout as its default deadline.
absl::StatusOr<std::unique_ptr<client::Client>> MakeClient(
    const Invocation& invocation);

// --timeout for calls that have no deadline by default (Chat, Ingest):
// unset unless the flag was given.
client::CallOptions ExplicitTimeout(const Invocation& invocation);

// Prints "linserve-cli <command>: <what>: <status>" to stderr, returns 1.
int ReportFailure(const Invocation& invocation, const std::string& what,
                  const absl::Status& status);

// Prints a usage error and the subcommand's synopsis to stderr, returns 2.
int UsageError(const Invocation& invocation, const std::string& message);

// Reads a whole file ("-": stdin).
absl::StatusOr<std::string> ReadInput(const std::string& path);

// Parses whitespace- or comma-separated token ids.
absl::StatusOr<std::vector<int32_t>> ParseTokenIds(const std::string& text);

}  // namespace linserve::cli

#endif  // LINSERVE_CLIENT_CLI_COMMAND_LINE_H_
