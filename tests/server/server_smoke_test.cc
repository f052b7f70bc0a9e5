// Smoke tests of the server binary's assembly (server/server.h) through the
// generated stubs alone: health and reflection are registered, Generate
// streams, errors carry their codes, Drain refuses new calls. The full
// integration suite (through the client library) is client_test.cc.
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <catch2/catch.hpp>

#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "linserve/v1/inference.grpc.pb.h"
#include "linserve/v1/models.grpc.pb.h"
#include "linserve/v1/sessions.grpc.pb.h"
#include "server/server.h"

namespace linserve {
namespace {

namespace v1 = ::linserve::v1;
using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

std::unique_ptr<server::Server> StartDefaultServer(
    int min_tokens_per_message = 1) {
  server::ServerOptions options;
  options.model_dir = LINSERVE_DEFAULT_MODEL_DIR_FOR_TESTS;
  options.listen = "127.0.0.1:0";
  options.min_tokens_per_message = min_tokens_per_message;
  auto server = server::Server::Start(options);
  INFO(server.status().ToString());
  REQUIRE(server.ok());
  REQUIRE((*server)->port() > 0);
  return *std::move(server);
}

std::shared_ptr<grpc::Channel> Connect(const server::Server& server) {
  return grpc::CreateChannel("127.0.0.1:" + std::to_string(server.port()),
                             grpc::InsecureChannelCredentials());
}

HealthCheckResponse::ServingStatus HealthOf(Health::Stub& health,
                                            const std::string& service) {
  grpc::ClientContext context;
  HealthCheckRequest request;
  request.set_service(service);
  HealthCheckResponse response;
  const grpc::Status status = health.Check(&context, request, &response);
  INFO(service << ": " << status.error_message());
  REQUIRE(status.ok());
  return response.status();
}

struct GenerateCall {
  grpc::Status status;
  std::vector<int32_t> tokens;
  std::string text;
  int chunks = 0;
  std::vector<int> chunk_tokens;  // tokens of each chunk, in order
  bool has_result = false;
  v1::GenerateResult result;
};

GenerateCall RunGenerate(v1::Inference::Stub& stub,
                         const v1::GenerateRequest& request) {
  GenerateCall call;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(60));
  auto reader = stub.Generate(&context, request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    if (response.has_chunk()) {
      ++call.chunks;
      call.chunk_tokens.push_back(response.chunk().token_ids_size());
      call.tokens.insert(call.tokens.end(),
                         response.chunk().token_ids().begin(),
                         response.chunk().token_ids().end());
      call.text += response.chunk().text();
    } else if (response.has_result()) {
      call.has_result = true;
      call.result = response.result();
    }
  }
  call.status = reader->Finish();
  return call;
}

v1::GenerateRequest GreedyRequest(const std::string& prompt, int max_tokens) {
  v1::GenerateRequest request;
  request.mutable_prompt()->set_text(prompt);
  request.mutable_prompt()->set_add_bos(true);
  request.mutable_sampling()->set_temperature(0.0f);
  request.mutable_sampling()->set_max_tokens(max_tokens);
  request.mutable_sampling()->set_ignore_eos(true);
  return request;
}

TEST_CASE(
    "the server reports SERVING for itself and every service, and "
    "reflection lists the services") {
  auto server = StartDefaultServer();
  auto channel = Connect(*server);
  Health::Stub health(channel);
  for (const char* service : {"", "linserve.v1.Inference",
                              "linserve.v1.Sessions", "linserve.v1.Models"}) {
    CHECK(HealthOf(health, service) == HealthCheckResponse::SERVING);
  }

  namespace reflection = grpc::reflection::v1alpha;
  reflection::ServerReflection::Stub reflect(channel);
  grpc::ClientContext context;
  auto stream = reflect.ServerReflectionInfo(&context);
  reflection::ServerReflectionRequest request;
  request.set_list_services("*");
  REQUIRE(stream->Write(request));
  reflection::ServerReflectionResponse response;
  REQUIRE(stream->Read(&response));
  std::vector<std::string> names;
  for (const auto& service : response.list_services_response().service()) {
    names.push_back(service.name());
  }
  CHECK_THAT(names, Catch::Matchers::VectorContains(
                        std::string("linserve.v1.Inference")));
  CHECK_THAT(names, Catch::Matchers::VectorContains(std::string(
                        "grpc.reflection.v1alpha.ServerReflection")));

  // The schema of a service comes back with its imports.
  request.set_file_containing_symbol("linserve.v1.Inference");
  REQUIRE(stream->Write(request));
  REQUIRE(stream->Read(&response));
  CHECK(response.file_descriptor_response().file_descriptor_proto_size() >= 2);
  request.set_file_containing_symbol("linserve.v1.NoSuchThing");
  REQUIRE(stream->Write(request));
  REQUIRE(stream->Read(&response));
  CHECK(response.error_response().error_code() == grpc::StatusCode::NOT_FOUND);
  stream->WritesDone();
  CHECK(stream->Finish().ok());
}

TEST_CASE(
    "with min_tokens_per_message a Generate streams the same tokens and text "
    "in messages of at least that many tokens, the last one excepted") {
  auto plain_server = StartDefaultServer();
  v1::Inference::Stub plain(Connect(*plain_server));
  const GenerateCall expected =
      RunGenerate(plain, GreedyRequest("And God said", 30));
  REQUIRE(expected.status.ok());

  auto server = StartDefaultServer(/*min_tokens_per_message=*/4);
  v1::Inference::Stub stub(Connect(*server));
  const GenerateCall call =
      RunGenerate(stub, GreedyRequest("And God said", 30));
  INFO(call.status.error_message());
  REQUIRE(call.status.ok());
  CHECK(call.tokens == expected.tokens);
  CHECK(call.text == expected.text);
  REQUIRE(call.has_result);
  CHECK(call.result.usage().generated_tokens() == 30);
  REQUIRE_FALSE(call.chunk_tokens.empty());
  for (size_t i = 0; i + 1 < call.chunk_tokens.size(); ++i) {
    INFO("chunk " << i);
    CHECK(call.chunk_tokens[i] >= 4);
  }

  server::ServerOptions bad;
  bad.model_dir = LINSERVE_DEFAULT_MODEL_DIR_FOR_TESTS;
  bad.min_tokens_per_message = 0;
  const auto refused = server::Server::Start(bad);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(refused.status().message()),
             Catch::Matchers::Contains("--min_tokens_per_message"));
}

TEST_CASE(
    "a greedy Generate streams its tokens and ends with a result, the "
    "same request gives the same tokens") {
  auto server = StartDefaultServer();
  v1::Inference::Stub stub(Connect(*server));
  const GenerateCall first =
      RunGenerate(stub, GreedyRequest("And God said", 12));
  INFO(first.status.error_message());
  REQUIRE(first.status.ok());
  CHECK(first.chunks >= 1);
  CHECK(first.tokens.size() == 12);
  CHECK_FALSE(first.text.empty());
  REQUIRE(first.has_result);
  CHECK(first.result.finish_reason() == v1::FINISH_REASON_LENGTH);
  CHECK(first.result.usage().generated_tokens() == 12);
  CHECK(first.result.usage().prompt_tokens() >= 4);  // BOS + 3 words
  CHECK(first.result.timings().total_seconds() > 0);

  const GenerateCall second =
      RunGenerate(stub, GreedyRequest("And God said", 12));
  REQUIRE(second.status.ok());
  CHECK(second.tokens == first.tokens);
  CHECK(second.text == first.text);
}

TEST_CASE(
    "a Generate on a session continues it, and the session's position "
    "counts prompt and reply") {
  auto server = StartDefaultServer();
  auto channel = Connect(*server);
  v1::Inference::Stub inference(channel);
  v1::Sessions::Stub sessions(channel);
  grpc::ClientContext create_context;
  v1::SessionInfo created;
  REQUIRE(
      sessions
          .CreateSession(&create_context, v1::CreateSessionRequest(), &created)
          .ok());
  CHECK(created.session_id().size() == 32);
  CHECK(created.position() == 0);

  v1::GenerateRequest request = GreedyRequest("In the beginning", 5);
  request.set_session_id(created.session_id());
  const GenerateCall call = RunGenerate(inference, request);
  REQUIRE(call.status.ok());
  const int64_t expected = call.result.usage().prompt_tokens() + 5;
  CHECK(call.result.usage().session_position() == expected);

  grpc::ClientContext get_context;
  v1::GetSessionRequest get;
  get.set_session_id(created.session_id());
  v1::SessionInfo info;
  REQUIRE(sessions.GetSession(&get_context, get, &info).ok());
  CHECK(info.position() == expected);
  CHECK(info.model() == "default");

  // An empty prompt continues from the session's last token.
  v1::GenerateRequest more;
  more.set_session_id(created.session_id());
  more.mutable_sampling()->set_temperature(0.0f);
  more.mutable_sampling()->set_max_tokens(3);
  const GenerateCall continued = RunGenerate(inference, more);
  INFO(continued.status.error_message());
  REQUIRE(continued.status.ok());
  CHECK(continued.result.usage().session_position() == expected + 3);
}

TEST_CASE(
    "unknown sessions are NOT_FOUND and bad requests INVALID_ARGUMENT "
    "naming the problem, the server keeps serving") {
  auto server = StartDefaultServer();
  auto channel = Connect(*server);
  v1::Inference::Stub inference(channel);

  v1::GenerateRequest unknown = GreedyRequest("And", 2);
  unknown.set_session_id("no-such-session");
  GenerateCall call = RunGenerate(inference, unknown);
  CHECK(call.status.error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK_THAT(call.status.error_message(),
             Catch::Matchers::Contains("no-such-session"));

  v1::GenerateRequest hot = GreedyRequest("And", 2);
  hot.mutable_sampling()->set_temperature(-1.0f);
  call = RunGenerate(inference, hot);
  CHECK(call.status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK_THAT(call.status.error_message(),
             Catch::Matchers::Contains("temperature"));

  v1::GenerateRequest bad_id;
  bad_id.mutable_prompt()->mutable_tokens()->add_ids(5000);
  call = RunGenerate(inference, bad_id);
  CHECK(call.status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK_THAT(call.status.error_message(), Catch::Matchers::Contains("5000"));

  v1::GenerateRequest empty;
  call = RunGenerate(inference, empty);
  CHECK(call.status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);

  v1::GenerateRequest too_long = GreedyRequest("And", 2);
  too_long.mutable_sampling()->set_max_tokens(1 << 30);
  call = RunGenerate(inference, too_long);
  CHECK(call.status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK_THAT(call.status.error_message(),
             Catch::Matchers::Contains("--max_tokens"));

  v1::Models::Stub models(channel);
  grpc::ClientContext model_context;
  v1::GetModelRequest get_model;
  get_model.set_name("other");
  v1::ModelInfo info;
  CHECK(models.GetModel(&model_context, get_model, &info).error_code() ==
        grpc::StatusCode::NOT_FOUND);

  call = RunGenerate(inference, GreedyRequest("And God", 2));
  CHECK(call.status.ok());
}

TEST_CASE(
    "Drain turns health to NOT_SERVING and refuses new calls with "
    "UNAVAILABLE") {
  auto server = StartDefaultServer();
  auto channel = Connect(*server);
  Health::Stub health(channel);
  v1::Inference::Stub inference(channel);
  v1::Sessions::Stub sessions(channel);
  REQUIRE(HealthOf(health, "") == HealthCheckResponse::SERVING);

  REQUIRE(server->Drain(std::chrono::milliseconds(100)).ok());
  CHECK(HealthOf(health, "") == HealthCheckResponse::NOT_SERVING);
  CHECK(HealthOf(health, "linserve.v1.Inference") ==
        HealthCheckResponse::NOT_SERVING);

  const GenerateCall call = RunGenerate(inference, GreedyRequest("And", 2));
  CHECK(call.status.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK_THAT(call.status.error_message(),
             Catch::Matchers::Contains("draining"));

  grpc::ClientContext context;
  v1::SessionInfo info;
  CHECK(sessions.CreateSession(&context, v1::CreateSessionRequest(), &info)
            .error_code() == grpc::StatusCode::UNAVAILABLE);
  server->Shutdown();
}

}  // namespace
}  // namespace linserve

namespace linserve {
namespace {

TEST_CASE(
    "sessions drained to the spill directory continue exactly after a "
    "restart") {
  const std::string spill_dir =
      (std::filesystem::temp_directory_path() /
       ("linserve_smoke_spill_" + std::to_string(::getpid())))
          .string();
  std::filesystem::remove_all(spill_dir);
  server::ServerOptions options;
  options.model_dir = LINSERVE_DEFAULT_MODEL_DIR_FOR_TESTS;
  options.listen = "127.0.0.1:0";
  options.sessions.spill_dir = spill_dir;

  v1::GenerateRequest continuation;
  continuation.mutable_prompt()->set_text(" and the earth");
  continuation.mutable_sampling()->set_temperature(0.0f);
  continuation.mutable_sampling()->set_max_tokens(8);
  continuation.mutable_sampling()->set_ignore_eos(true);

  GenerateCall expected;
  int64_t position = 0;
  {
    auto started = server::Server::Start(options);
    REQUIRE(started.ok());
    auto channel = Connect(**started);
    v1::Inference::Stub inference(channel);
    v1::Sessions::Stub sessions(channel);
    grpc::ClientContext create_context;
    v1::CreateSessionRequest create;
    create.set_session_id("kept");
    v1::SessionInfo info;
    REQUIRE(sessions.CreateSession(&create_context, create, &info).ok());
    v1::GenerateRequest first = GreedyRequest("In the beginning", 6);
    first.set_session_id("kept");
    const GenerateCall call = RunGenerate(inference, first);
    REQUIRE(call.status.ok());
    position = call.result.usage().session_position();

    // What the session gives next, on a fork (the original stays as is).
    grpc::ClientContext fork_context;
    v1::ForkSessionRequest fork;
    fork.set_session_id("kept");
    fork.set_new_session_id("probe");
    REQUIRE(sessions.ForkSession(&fork_context, fork, &info).ok());
    continuation.set_session_id("probe");
    expected = RunGenerate(inference, continuation);
    REQUIRE(expected.status.ok());

    REQUIRE((*started)->Drain(std::chrono::seconds(5)).ok());
    (*started)->Shutdown();
  }
  CHECK_FALSE(std::filesystem::is_empty(spill_dir));

  auto restarted = server::Server::Start(options);
  REQUIRE(restarted.ok());
  auto channel = Connect(**restarted);
  v1::Inference::Stub inference(channel);
  v1::Sessions::Stub sessions(channel);
  grpc::ClientContext get_context;
  v1::GetSessionRequest get;
  get.set_session_id("kept");
  v1::SessionInfo info;
  REQUIRE(sessions.GetSession(&get_context, get, &info).ok());
  CHECK(info.position() == position);
  continuation.set_session_id("kept");
  const GenerateCall after = RunGenerate(inference, continuation);
  REQUIRE(after.status.ok());
  CHECK(after.tokens == expected.tokens);
  CHECK(after.text == expected.text);
  restarted->reset();
  std::filesystem::remove_all(spill_dir);
}

}  // namespace
}  // namespace linserve

namespace linserve {
namespace {

// Reads a Generate stream on its own thread until its first chunk.
struct BackgroundGenerate {
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader;
  std::thread thread;
  std::promise<void> first_chunk;
  grpc::Status status;

  void Start(v1::Inference::Stub& stub, const v1::GenerateRequest& request) {
    reader = stub.Generate(&context, request);
    thread = std::thread([this] {
      v1::GenerateResponse response;
      bool first = true;
      while (reader->Read(&response)) {
        if (first && response.has_chunk()) {
          first_chunk.set_value();
          first = false;
        }
      }
      if (first) first_chunk.set_value();
      status = reader->Finish();
    });
  }
};

TEST_CASE(
    "past the admission queue a call is refused at once with "
    "RESOURCE_EXHAUSTED naming --max_queued") {
  server::ServerOptions options;
  options.model_dir = LINSERVE_DEFAULT_MODEL_DIR_FOR_TESTS;
  options.listen = "127.0.0.1:0";
  options.scheduler.max_batch = 1;
  options.scheduler.max_queued = 1;
  auto server = server::Server::Start(options);
  REQUIRE(server.ok());
  auto channel = Connect(**server);
  v1::Inference::Stub inference(channel);

  // One call generating (the batch is full), one waiting (the queue is full).
  BackgroundGenerate running, waiting;
  running.Start(inference, GreedyRequest("And God said", 4000));
  running.first_chunk.get_future().wait();
  waiting.Start(inference, GreedyRequest("And God said", 2));
  while ((*server)->scheduler().num_waiting() < 1) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  const GenerateCall refused =
      RunGenerate(inference, GreedyRequest("And God said", 2));
  CHECK(refused.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  CHECK_THAT(refused.status.error_message(),
             Catch::Matchers::Contains("--max_queued"));

  running.context.TryCancel();
  running.thread.join();
  CHECK(running.status.error_code() == grpc::StatusCode::CANCELLED);
  waiting.thread.join();
  CHECK(waiting.status.ok());
  // The server keeps serving.
  CHECK(RunGenerate(inference, GreedyRequest("And", 2)).status.ok());
}

TEST_CASE(
    "a ChatTurn sent while a reply streams ends the chat with "
    "FAILED_PRECONDITION, earlier turns stay in the session") {
  auto server = StartDefaultServer();
  auto channel = Connect(*server);
  v1::Inference::Stub inference(channel);
  v1::Sessions::Stub sessions(channel);

  grpc::ClientContext context;
  auto stream = inference.Chat(&context);
  v1::ChatRequest request;
  request.mutable_start()->mutable_sampling()->set_temperature(0.0f);
  REQUIRE(stream->Write(request));
  v1::ChatResponse response;
  REQUIRE(stream->Read(&response));
  REQUIRE(response.has_started());
  const std::string id = response.started().session_id();
  CHECK(response.started().session_position() == 0);

  request.mutable_turn()->set_text("Who made the light?");
  request.mutable_turn()->mutable_sampling()->set_max_tokens(3);
  REQUIRE(stream->Write(request));
  int64_t position_after_first = -1;
  while (stream->Read(&response)) {
    if (response.has_turn_end()) {
      position_after_first = response.turn_end().usage().session_position();
      break;
    }
  }
  REQUIRE(position_after_first > 3);

  // A long reply, and a second turn before it ends.
  request.mutable_turn()->set_text("And then?");
  request.mutable_turn()->mutable_sampling()->set_max_tokens(4000);
  request.mutable_turn()->mutable_sampling()->set_ignore_eos(true);
  REQUIRE(stream->Write(request));
  REQUIRE(stream->Read(&response));
  CHECK(response.has_chunk());
  stream->Write(request);
  while (stream->Read(&response)) {
  }
  const grpc::Status status = stream->Finish();
  CHECK(status.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
  CHECK_THAT(status.error_message(), Catch::Matchers::Contains("ChatCancel"));

  grpc::ClientContext get_context;
  v1::GetSessionRequest get;
  get.set_session_id(id);
  v1::SessionInfo info;
  REQUIRE(sessions.GetSession(&get_context, get, &info).ok());
  CHECK(info.position() == position_after_first);
  CHECK_FALSE(info.busy());
}

TEST_CASE(
    "a Chat must open with ChatStart, and text needs a tokenizer "
    "(FAILED_PRECONDITION on a model without one)") {
  {
    auto server = StartDefaultServer();
    v1::Inference::Stub inference(Connect(*server));
    grpc::ClientContext context;
    auto stream = inference.Chat(&context);
    v1::ChatRequest request;
    request.mutable_turn()->set_text("Hello");
    stream->Write(request);
    v1::ChatResponse response;
    while (stream->Read(&response)) {
    }
    const grpc::Status status = stream->Finish();
    CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK_THAT(status.error_message(), Catch::Matchers::Contains("ChatStart"));
  }
  server::ServerOptions options;
  options.model_dir = LINSERVE_TEST_DATA_DIR "/gated_deltanet";
  options.listen = "127.0.0.1:0";
  auto server = server::Server::Start(options);
  INFO(server.status().ToString());
  REQUIRE(server.ok());
  v1::Inference::Stub inference(Connect(**server));
  v1::GenerateRequest request;
  request.mutable_prompt()->set_text("hello");
  const GenerateCall call = RunGenerate(inference, request);
  CHECK(call.status.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
  CHECK_THAT(call.status.error_message(),
             Catch::Matchers::Contains("token ids"));
  v1::GenerateRequest ids;
  ids.mutable_prompt()->mutable_tokens()->add_ids(1);
  ids.mutable_sampling()->set_max_tokens(3);
  const GenerateCall by_ids = RunGenerate(inference, ids);
  CHECK(by_ids.status.ok());
  CHECK(by_ids.text.empty());
}

}  // namespace
}  // namespace linserve
