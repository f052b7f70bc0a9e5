// A real linserve server on a free loopback port (127.0.0.1:0) with a client
// library connected to it: how the gRPC-level tests start what they test.
//
//   server::ServerOptions options;
//   options.model_dir = linserve::testing::kTinyModelDir;
//   LiveServer s = StartLiveServer(options);
//   v1::SessionInfo info = Unwrap(s.client->CreateSession({}));
#ifndef LINSERVE_TESTS_SERVER_LIVE_SERVER_H_
#define LINSERVE_TESTS_SERVER_LIVE_SERVER_H_

#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "client/client.h"
#include "server/server.h"

namespace linserve::testing {

// The tiny gated_deltanet fixture (token ids only, vocabulary 64, BOS 1,
// EOS 2) and the bundled default model (with its tokenizer).
inline const std::string kTinyModelDir =
    LINSERVE_TEST_DATA_DIR "/gated_deltanet";
inline const std::string kDefaultModelDir =
    LINSERVE_DEFAULT_MODEL_DIR_FOR_TESTS;
inline constexpr int kTinyVocab = 64;

struct LiveServer {
  std::unique_ptr<server::Server> server;
  std::unique_ptr<client::Client> client;
};

// Starts a server with `options` (its listen address replaced by
// 127.0.0.1:0) and connects a client to the port it got.
inline LiveServer StartLiveServer(
    server::ServerOptions options,
    const client::ClientOptions& client_options = {}) {
  options.listen = "127.0.0.1:0";
  auto server = server::Server::Start(options);
  INFO(server.status().ToString());
  REQUIRE(server.ok());
  auto connected = client::Client::Connect(
      "127.0.0.1:" + std::to_string((*server)->port()), client_options);
  INFO(connected.status().ToString());
  REQUIRE(connected.ok());
  return {*std::move(server), *std::move(connected)};
}

// The value, after REQUIRE-ing that there is one (the status is printed
// when there is not).
template <typename T>
T Unwrap(absl::StatusOr<T> value) {
  INFO(value.status().ToString());
  REQUIRE(value.ok());
  return *std::move(value);
}

}  // namespace linserve::testing

#endif  // LINSERVE_TESTS_SERVER_LIVE_SERVER_H_
