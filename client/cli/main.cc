// linserve-cli: the command-line client of a linserve server (chat,
// generate, ingest, score, sessions, models, health, bench). See
// client/README.md and `linserve-cli --help`.
#include "absl/synchronization/mutex.h"
#include "client/cli/command_line.h"

int main(int argc, char** argv) {
  // Debian's Abseil is built without NDEBUG, so every absl::Mutex lock
  // (gRPC takes several for each message) would also update a process-wide
  // lock-order graph under a global spin lock: off, as in the server.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return linserve::cli::Main(argc, argv);
}
