// linserve-cli: the command-line client of a linserve server (chat,
// generate, ingest, score, sessions, models, health, bench). See
// client/README.md and `linserve-cli --help`.
#include "client/cli/command_line.h"

int main(int argc, char** argv) { return linserve::cli::Main(argc, argv); }
