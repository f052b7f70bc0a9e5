// linserve-cli sessions, models and health.
#include <cstdio>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "client/cli/cli_flags.h"
#include "client/cli/commands.h"
#include "client/cli/json_output.h"

namespace linserve::cli {
namespace {

void PrintSession(const v1::SessionInfo& info, bool json) {
  if (json) {
    std::cout << MessageToJson(info) << "\n";
    return;
  }
  std::string busy;
  if (info.busy()) {
    busy = "  busy";
    if (info.has_in_flight()) {
      // The running call's progress (sessions.proto, InFlightCall).
      absl::StrAppend(&busy, " (call so far: ", info.in_flight().tokens_fed(),
                      " tokens fed");
      if (info.in_flight().tokens_queued() > 0) {
        absl::StrAppend(&busy, ", ", info.in_flight().tokens_queued(),
                        " queued");
      }
      absl::StrAppend(&busy, ")");
    }
  }
  std::printf("%-34s position %-10lld state %lld B  %s%s\n",
              info.session_id().c_str(),
              static_cast<long long>(info.position()),
              static_cast<long long>(info.state_bytes()),
              v1::SessionLocation_Name(info.location()).c_str(), busy.c_str());
}

bool ArgCountIn(const Invocation& invocation, size_t low, size_t high) {
  // args[0] is the action.
  return invocation.args.size() >= low + 1 &&
         invocation.args.size() <= high + 1;
}

}  // namespace

int RunSessions(const Invocation& invocation) {
  if (invocation.args.empty()) {
    return UsageError(invocation,
                      "give an action: list, get, fork, export, "
                      "import, delete or create");
  }
  const std::string& action = invocation.args[0];
  const bool json = absl::GetFlag(FLAGS_json);
  auto made = MakeClient(invocation);
  if (!made.ok()) return ReportFailure(invocation, "client", made.status());
  client::Client& client = **made;
  const auto arg = [&](size_t i) -> const std::string& {
    return invocation.args[i + 1];
  };

  if (action == "list") {
    if (!ArgCountIn(invocation, 0, 0)) {
      return UsageError(invocation, "list takes no arguments");
    }
    auto sessions = client.ListAllSessions();
    if (!sessions.ok()) {
      return ReportFailure(invocation, "ListSessions", sessions.status());
    }
    if (json) {
      std::cout << "[";
      for (size_t i = 0; i < sessions->size(); ++i) {
        std::cout << (i ? "," : "") << MessageToJson((*sessions)[i]);
      }
      std::cout << "]\n";
    } else {
      for (const v1::SessionInfo& info : *sessions) PrintSession(info, false);
      std::cout << sessions->size() << " sessions\n";
    }
    return kExitOk;
  }
  if (action == "get" || action == "delete") {
    if (!ArgCountIn(invocation, 1, 1)) {
      return UsageError(invocation, absl::StrCat(action, " takes one ID"));
    }
    if (action == "delete") {
      const absl::Status status = client.DeleteSession(arg(0));
      if (!status.ok()) {
        return ReportFailure(invocation, "DeleteSession", status);
      }
      if (json) {
        std::cout << "{\"deleted\":" << JsonString(arg(0)) << "}\n";
      } else {
        std::cout << "deleted " << arg(0) << "\n";
      }
      return kExitOk;
    }
    auto info = client.GetSession(arg(0));
    if (!info.ok())
      return ReportFailure(invocation, "GetSession", info.status());
    PrintSession(*info, json);
    return kExitOk;
  }
  if (action == "create") {
    if (!ArgCountIn(invocation, 0, 1)) {
      return UsageError(invocation, "create takes at most one ID");
    }
    auto info = client.CreateSession(invocation.args.size() > 1 ? arg(0) : "");
    if (!info.ok()) {
      return ReportFailure(invocation, "CreateSession", info.status());
    }
    PrintSession(*info, json);
    return kExitOk;
  }
  if (action == "fork") {
    if (!ArgCountIn(invocation, 1, 2)) {
      return UsageError(invocation, "fork takes ID [NEW_ID]");
    }
    auto info =
        client.ForkSession(arg(0), invocation.args.size() > 2 ? arg(1) : "");
    if (!info.ok()) {
      return ReportFailure(invocation, "ForkSession", info.status());
    }
    PrintSession(*info, json);
    return kExitOk;
  }
  if (action == "export") {
    if (!ArgCountIn(invocation, 2, 2)) {
      return UsageError(invocation, "export takes ID FILE");
    }
    auto bytes = client.ExportSessionToFile(arg(0), arg(1));
    if (!bytes.ok()) {
      return ReportFailure(invocation, "ExportSession", bytes.status());
    }
    if (json) {
      std::cout << "{\"session_id\":" << JsonString(arg(0))
                << ",\"file\":" << JsonString(arg(1)) << ",\"bytes\":" << *bytes
                << "}\n";
    } else {
      std::cout << "exported " << arg(0) << " to " << arg(1) << " (" << *bytes
                << " bytes)\n";
    }
    return kExitOk;
  }
  if (action == "import") {
    if (!ArgCountIn(invocation, 1, 2)) {
      return UsageError(invocation, "import takes FILE [NEW_ID]");
    }
    auto info = client.ImportSessionFromFile(
        arg(0), invocation.args.size() > 2 ? arg(1) : "");
    if (!info.ok()) {
      return ReportFailure(invocation, "ImportSession", info.status());
    }
    PrintSession(*info, json);
    return kExitOk;
  }
  return UsageError(invocation,
                    absl::StrCat("unknown action \"", action, "\""));
}

int RunModels(const Invocation& invocation) {
  const std::string action =
      invocation.args.empty() ? "list" : invocation.args[0];
  const bool json = absl::GetFlag(FLAGS_json);
  std::vector<v1::ModelInfo> models;
  auto made = MakeClient(invocation);
  if (!made.ok()) return ReportFailure(invocation, "client", made.status());
  if (action == "list" && invocation.args.size() <= 1) {
    auto listed = (*made)->ListModels();
    if (!listed.ok()) {
      return ReportFailure(invocation, "ListModels", listed.status());
    }
    models = *std::move(listed);
  } else if (action == "get" && invocation.args.size() == 2) {
    auto model = (*made)->GetModel(invocation.args[1]);
    if (!model.ok())
      return ReportFailure(invocation, "GetModel", model.status());
    models.push_back(*std::move(model));
  } else {
    return UsageError(invocation, "expected 'list' or 'get NAME'");
  }
  if (json) {
    if (action == "get") {
      std::cout << MessageToJson(models[0]) << "\n";
    } else {
      std::cout << "[";
      for (size_t i = 0; i < models.size(); ++i) {
        std::cout << (i ? "," : "") << MessageToJson(models[i]);
      }
      std::cout << "]\n";
    }
    return kExitOk;
  }
  for (const v1::ModelInfo& model : models) {
    std::cout << model.name() << ": " << model.family() << ", "
              << model.num_layers() << " layers, hidden " << model.hidden_size()
              << ", " << model.num_heads() << " heads, vocab "
              << model.vocab_size() << ", " << model.parameters()
              << " parameters (" << model.weight_dtype() << "), state "
              << model.state_bytes() << " B/session, "
              << (model.has_tokenizer() ? "tokenizer" : "no tokenizer")
              << ", fingerprint " << model.fingerprint() << "\n";
  }
  return kExitOk;
}

int RunHealth(const Invocation& invocation) {
  const bool quiet = absl::GetFlag(FLAGS_quiet);
  if (!invocation.args.empty()) {
    return UsageError(invocation, "health takes no arguments");
  }
  auto made = MakeClient(invocation);
  if (!made.ok()) return ReportFailure(invocation, "client", made.status());
  client::CallOptions call;
  // Quick by default (a Docker HEALTHCHECK): 3 s unless --timeout says.
  call.timeout = absl::Seconds(3);
  if (invocation.IsSet("timeout")) {
    const double timeout = absl::GetFlag(FLAGS_timeout);
    call.timeout =
        timeout > 0 ? absl::Seconds(timeout) : absl::InfiniteDuration();
  }
  auto status = (*made)->CheckHealth(absl::GetFlag(FLAGS_service), call);
  if (!status.ok()) {
    if (quiet) return kExitFailure;
    return ReportFailure(invocation, "Health.Check", status.status());
  }
  const bool serving =
      *status == grpc::health::v1::HealthCheckResponse::SERVING;
  if (!quiet) {
    std::cout << grpc::health::v1::HealthCheckResponse::ServingStatus_Name(
                     *status)
              << "\n";
  }
  return serving ? kExitOk : kExitFailure;
}

}  // namespace linserve::cli
