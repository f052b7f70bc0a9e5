// The subcommands of linserve-cli, one function each (see Commands() in
// command_line.cc for their synopses and flags). Each returns the process's
// exit code.
#ifndef LINSERVE_CLIENT_CLI_COMMANDS_H_
#define LINSERVE_CLIENT_CLI_COMMANDS_H_

#include "client/cli/command_line.h"

namespace linserve::cli {

int RunChat(const Invocation& invocation);      // chat_command.cc
int RunGenerate(const Invocation& invocation);  // inference_commands.cc
int RunIngest(const Invocation& invocation);    // inference_commands.cc
int RunScore(const Invocation& invocation);     // inference_commands.cc
int RunSessions(const Invocation& invocation);  // admin_commands.cc
int RunModels(const Invocation& invocation);    // admin_commands.cc
int RunHealth(const Invocation& invocation);    // admin_commands.cc
int RunBench(const Invocation& invocation);     // bench_command.cc

}  // namespace linserve::cli

#endif  // LINSERVE_CLIENT_CLI_COMMANDS_H_
