// Specification of SessionStore (server/session_store.h): leases, ids and
// errors, Fork, Export/Import, LRU spill to disk and back bit for bit, a
// restart from the spill directory, the idle TTL, the session limit, damaged
// spill files, leases under concurrency, and the I/O thread: evictions and
// the async calls' loads happen there, never on the caller's thread. Runs
// the real tiny gated_deltanet fixture; spill directories are fresh
// temporary folders. Named pipes (FIFOs) in place of a spill file hold a
// write or a read midway, so a test can see who waits for it.
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/model.h"
#include "engine/session_extras.h"
#include "engine/state_format.h"
#include "server/session_store.h"

namespace linserve::server {
namespace {

namespace fs = std::filesystem;
using absl::StatusCode;

const std::string kDataDir = LINSERVE_TEST_DATA_DIR;

std::unique_ptr<engine::Model> LoadModel(const std::string& fixture) {
  auto model = engine::Model::Load(kDataDir + "/" + fixture);
  INFO(fixture << ": " << model.status().ToString());
  REQUIRE(model.ok());
  return std::move(*model);
}

// A fresh directory under the system's temp folder, removed at scope exit.
class TempDir {
 public:
  TempDir() {
    std::random_device device;
    path_ = fs::temp_directory_path() /
            ("linserve-session-store-test-" + std::to_string(device()) +
             std::to_string(device()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

std::unique_ptr<SessionStore> OpenOk(const engine::Model& model,
                                     const SessionStoreOptions& options) {
  auto store = SessionStore::Open(model, options);
  INFO(store.status().ToString());
  REQUIRE(store.ok());
  return std::move(*store);
}

template <typename T>
T ValueOk(absl::StatusOr<T> result) {
  INFO(result.status().ToString());
  REQUIRE(result.ok());
  return *std::move(result);
}

// Runs `tokens` through the session as a server call would: all but the last
// fed, the last kept pending, every one marked seen.
void Feed(engine::Model& model, Session& s, std::vector<int32_t> tokens) {
  if (s.extras.pending_token.has_value()) {
    tokens.insert(tokens.begin(), *s.extras.pending_token);
    s.extras.pending_token.reset();
  }
  const int32_t last = tokens.back();
  tokens.pop_back();
  if (!tokens.empty()) {
    REQUIRE(model.Prefill(*s.state, tokens, engine::LogitsMode::kNone, nullptr)
                .ok());
  }
  s.extras.pending_token = last;
  s.extras.MarkSeen(tokens);
  s.extras.MarkSeen({last});
}

// A copy of what a session holds, to compare later bit for bit.
struct Snapshot {
  std::vector<float> data;
  int64_t num_tokens = 0;
  engine::SessionExtras extras;
};

Snapshot Snap(const Session& s) {
  return {std::vector<float>(s.state->data().begin(), s.state->data().end()),
          s.state->num_tokens(), s.extras};
}

bool SameBits(const Snapshot& a, const Snapshot& b) {
  return a.num_tokens == b.num_tokens && a.extras == b.extras &&
         a.data.size() == b.data.size() &&
         std::memcmp(a.data.data(), b.data.data(),
                     a.data.size() * sizeof(float)) == 0;
}

// Distinct content for session number i.
std::vector<int32_t> TokensFor(int i) {
  return {1 + i, 7 + 3 * i, 20 + i, 5, 40 + 2 * i};
}

TEST_CASE(
    "Create leases a session with a 32-hex-digit random id, a second lease "
    "while it is held is Aborted at once, after release it can be leased "
    "again",
    "[server][session_store]") {
  auto model = LoadModel("gated_deltanet");
  auto store = OpenOk(*model, {});
  SessionLease a = ValueOk(store->Create());
  const std::string id = a.session().id;
  CHECK(id.size() == 32);
  CHECK(std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  }));
  CHECK(a.session().position() == 0);
  CHECK(a.session().extras.seen.size() ==
        static_cast<size_t>((model->vocab_size() + 63) / 64));
  {
    SessionLease b = ValueOk(store->Create());
    CHECK(b.session().id != id);
  }
  CHECK(store->size() == 2);

  const auto busy = store->Acquire(id);
  CHECK(busy.status().code() == StatusCode::kAborted);
  CHECK(std::string(busy.status().message()).find("busy") != std::string::npos);
  CHECK(store->Delete(id).code() == StatusCode::kAborted);
  CHECK(store->Export(id).status().code() == StatusCode::kAborted);
  CHECK(store->Get(id)->busy);

  Feed(*model, a.session(), {3, 4, 5});
  a.Commit();
  a = SessionLease();  // released
  CHECK(!store->Get(id)->busy);
  CHECK(store->Get(id)->position == 3);
  SessionLease again = ValueOk(store->Acquire(id));
  CHECK(again.session().position() == 3);
  CHECK(again.session().state->num_tokens() == 2);
}

TEST_CASE(
    "a taken client id is AlreadyExists, an id outside 1-128 of "
    "[A-Za-z0-9._-] (or . and ..) is InvalidArgument, an unknown id is "
    "NotFound",
    "[server][session_store]") {
  auto model = LoadModel("gated_deltanet");
  auto store = OpenOk(*model, {});
  const std::string longest(128, 'x');
  for (const std::string& good : {std::string("chat-1_A.b"), longest}) {
    SessionLease lease = ValueOk(store->Create(good));
    CHECK(lease.session().id == good);
  }
  CHECK(store->Create("chat-1_A.b").status().code() ==
        StatusCode::kAlreadyExists);
  CHECK(store->Fork(longest, "chat-1_A.b").status().code() ==
        StatusCode::kAlreadyExists);
  for (const std::string& bad :
       {std::string(129, 'x'), std::string("a/b"), std::string("."),
        std::string(".."), std::string("a b"), std::string("caf\xc3\xa9"),
        std::string("x\n")}) {
    INFO(bad);
    CHECK(store->Create(bad).status().code() == StatusCode::kInvalidArgument);
    CHECK(store->Fork(longest, bad).status().code() ==
          StatusCode::kInvalidArgument);
  }
  CHECK(store->size() == 2);
  for (auto status :
       {store->Acquire("nope").status(), store->Get("nope").status(),
        store->Delete("nope"), store->Export("nope").status(),
        store->Fork("nope").status()}) {
    CHECK(status.code() == StatusCode::kNotFound);
  }
  CHECK(store->size() == 2);
}

TEST_CASE(
    "Fork copies state and extras, the two sessions then continue "
    "independently, each exactly as a session that never forked",
    "[server][session_store]") {
  auto model = LoadModel("gated_deltanet");
  auto store = OpenOk(*model, {});
  SessionLease source = ValueOk(store->Create("source"));
  Feed(*model, source.session(), {1, 2, 3, 4});
  source.session().extras.SeedStream(42);
  source = SessionLease();

  SessionLease fork = ValueOk(store->Fork("source", "fork"));
  source = ValueOk(store->Acquire("source"));
  CHECK(SameBits(Snap(fork.session()), Snap(source.session())));
  CHECK(fork.session().state.get() != source.session().state.get());

  Feed(*model, source.session(), {10, 11});
  Feed(*model, fork.session(), {20, 21});
  auto reference = [&](std::vector<int32_t> more) {
    Session s;
    s.state = model->NewSession();
    s.extras = engine::NewSessionExtras(model->vocab_size());
    s.extras.SeedStream(42);
    Feed(*model, s, {1, 2, 3, 4});
    Feed(*model, s, more);
    return Snap(s);
  };
  CHECK(SameBits(Snap(source.session()), reference({10, 11})));
  CHECK(SameBits(Snap(fork.session()), reference({20, 21})));
  CHECK(!SameBits(Snap(source.session()), Snap(fork.session())));
}

TEST_CASE(
    "Export then Import gives a session with the same state, extras and "
    "position bit for bit",
    "[server][session_store]") {
  auto model = LoadModel("gated_deltanet");
  auto store = OpenOk(*model, {});
  Snapshot original;
  {
    SessionLease s = ValueOk(store->Create("original"));
    Feed(*model, s.session(), {9, 8, 7, 6, 5});
    s.session().extras.rng_seeded = true;
    s.session().extras.rng = engine::Xoshiro256::FromSeed(7);
    original = Snap(s.session());
  }
  const std::string bytes = ValueOk(store->Export("original"));
  CHECK(static_cast<int64_t>(bytes.size()) ==
        engine::SerializedStateBytes(
            *model, engine::SessionExtrasBytes(model->vocab_size())));
  SessionLease imported = ValueOk(store->Import(bytes, "copy"));
  CHECK(imported.session().id == "copy");
  CHECK(SameBits(Snap(imported.session()), original));
  CHECK(imported.session().position() == 5);
  SessionLease random_id = ValueOk(store->Import(bytes));
  CHECK(random_id.session().id.size() == 32);
  CHECK(store->Import(bytes, "original").status().code() ==
        StatusCode::kAlreadyExists);
}

TEST_CASE(
    "Import refuses damaged bytes (DataLoss), another model's state "
    "(FailedPrecondition), bad extras and bad ids (InvalidArgument), and "
    "then creates nothing",
    "[server][session_store]") {
  auto model = LoadModel("gated_deltanet");
  auto other = LoadModel("gla");
  auto store = OpenOk(*model, {});
  { SessionLease s = ValueOk(store->Create("a")); }
  std::string bytes = ValueOk(store->Export("a"));

  std::string damaged = bytes;
  damaged[damaged.size() / 2] ^= 0x10;
  CHECK(store->Import(damaged, "x").status().code() == StatusCode::kDataLoss);
  CHECK(store->Import(std::string_view(bytes).substr(0, bytes.size() - 1), "x")
            .status()
            .code() == StatusCode::kDataLoss);

  auto other_state = other->NewSession();
  const std::string other_bytes = ValueOk(engine::SerializeSessionState(
      *other, *other_state,
      engine::SerializeSessionExtras(
          engine::NewSessionExtras(other->vocab_size()))));
  const auto foreign = store->Import(other_bytes, "x");
  CHECK(foreign.status().code() == StatusCode::kFailedPrecondition);

  auto own_state = model->NewSession();
  const std::string bad_extras =
      ValueOk(engine::SerializeSessionState(*model, *own_state, "junk"));
  CHECK(store->Import(bad_extras, "x").status().code() ==
        StatusCode::kInvalidArgument);
  CHECK(store->Import(bytes, "../x").status().code() ==
        StatusCode::kInvalidArgument);

  CHECK(store->size() == 1);
  CHECK(store->Get("x").status().code() == StatusCode::kNotFound);
}

TEST_CASE(
    "with max_sessions_in_ram 2, five sessions: at most two stay in RAM, the "
    "least recently released spills, and every one comes back bit for bit",
    "[server][session_store]") {
  auto model = LoadModel("gated_deltanet");
  TempDir dir;
  SessionStoreOptions options;
  options.max_sessions_in_ram = 2;
  options.spill_dir = dir.str();
  auto store = OpenOk(*model, options);
  int evictions = 0;
  store->on_evicted = [&evictions] { ++evictions; };

  std::vector<std::string> ids;
  std::vector<Snapshot> want;
  for (int i = 0; i < 5; ++i) {
    SessionLease s = ValueOk(store->Create());
    Feed(*model, s.session(), TokensFor(i));
    ids.push_back(s.session().id);
    want.push_back(Snap(s.session()));
    s = SessionLease();
    store->WaitForEvictions();  // they are written on the I/O thread
    CHECK(store->size_in_ram() <= 2);
  }
  CHECK(store->size() == 5);
  CHECK(store->size_in_ram() == 2);
  CHECK(store->state_bytes_in_ram() == 2 * model->StateBytes());
  CHECK(evictions == 3);
  auto in_ram = [&](int i) { return ValueOk(store->Get(ids[i])).in_ram; };
  auto file = [&](int i) { return dir.path() / (ids[i] + ".lsvstate"); };
  // Released in order 0..4: 3 and 4 are the most recent.
  for (int i = 0; i < 5; ++i) {
    INFO("session " << i);
    CHECK(in_ram(i) == (i >= 3));
    CHECK(fs::exists(file(i)) == (i < 3));
  }

  // Using 1 makes 3 the least recently released: it is the one to go.
  { SessionLease s = ValueOk(store->Acquire(ids[1])); }
  store->WaitForEvictions();
  CHECK(store->size_in_ram() == 2);
  CHECK(in_ram(1));
  CHECK(in_ram(4));
  CHECK(!in_ram(3));
  CHECK(!fs::exists(file(1)));  // back in RAM: its file is gone
  CHECK(fs::exists(file(3)));

  for (int i : {0, 3, 2, 4, 1, 0}) {
    INFO("session " << i);
    // A session the I/O thread is writing would answer Aborted (retry).
    store->WaitForEvictions();
    SessionLease s = ValueOk(store->Acquire(ids[i]));
    CHECK(s.session().id == ids[i]);
    CHECK(SameBits(Snap(s.session()), want[i]));
    store->WaitForEvictions();
    CHECK(store->size_in_ram() <= 2);
  }
  store->WaitForEvictions();
  CHECK(store->size_in_ram() <= 2);
  CHECK(store->size() == 5);
}

TEST_CASE(
    "after SpillAll a new store on the same directory has every session with "
    "the same state, extras, position and times",
    "[server][session_store]") {
  auto model = LoadModel("gated_deltanet");
  TempDir dir;
  SessionStoreOptions options;
  options.max_sessions_in_ram = 2;
  options.spill_dir = dir.str();
  std::vector<std::string> ids;
  std::vector<Snapshot> want;
  std::vector<SessionSummary> summaries;
  {
    auto store = OpenOk(*model, options);
    for (int i = 0; i < 4; ++i) {
      SessionLease s = ValueOk(store->Create(i == 0 ? "client-chosen" : ""));
      Feed(*model, s.session(), TokensFor(i));
      if (i % 2 == 0) s.Commit();
      ids.push_back(s.session().id);
      want.push_back(Snap(s.session()));
    }
    for (const std::string& id : ids) summaries.push_back(*store->Get(id));
    REQUIRE(store->SpillAll().ok());
    CHECK(store->size_in_ram() == 0);
    CHECK(store->size() == 4);
  }
  auto store = OpenOk(*model, options);
  CHECK(store->startup_warnings().empty());
  CHECK(store->size() == 4);
  CHECK(store->size_in_ram() == 0);
  for (size_t i = 0; i < ids.size(); ++i) {
    INFO("session " << ids[i]);
    const SessionSummary got = ValueOk(store->Get(ids[i]));
    CHECK(!got.in_ram);
    CHECK(got.position == summaries[i].position);
    CHECK(got.created == summaries[i].created);
    CHECK(got.last_used == summaries[i].last_used);
    SessionLease s = ValueOk(store->Acquire(ids[i]));
    CHECK(SameBits(Snap(s.session()), want[i]));
    CHECK(s.session().created == summaries[i].created);
    CHECK(s.session().last_used == summaries[i].last_used);
  }
}

TEST_CASE(
    "Open leaves another model's state files alone, renames damaged ones to "
    "<id>.corrupt, removes unfinished writes, and reports each, a damaged "
    "body behind an intact header is DataLoss when read back",
    "[server][session_store]") {
  auto model = LoadModel("gated_deltanet");
  auto other = LoadModel("gla");
  TempDir dir;
  SessionStoreOptions options;
  options.spill_dir = dir.str();
  {
    auto store = OpenOk(*model, options);
    {
      SessionLease s = ValueOk(store->Create("good"));
      Feed(*model, s.session(), {3, 1, 4});
    }
    REQUIRE(store->SpillAll().ok());
  }
  // Intact header, damaged body: Open only reads headers, so this one is
  // registered and found damaged when it is read back.
  fs::copy_file(dir.path() / "good.lsvstate", dir.path() / "late.lsvstate");
  fs::copy_file(dir.path() / "good.lsvmeta", dir.path() / "late.lsvmeta");
  // No sidecar: the times come from the file's mtime.
  fs::copy_file(dir.path() / "good.lsvstate", dir.path() / "bare.lsvstate");
  {
    std::fstream f(dir.path() / "late.lsvstate",
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(150);
    f.put('\x33');
  }
  auto other_state = other->NewSession();
  std::ofstream(dir.path() / "foreign.lsvstate", std::ios::binary)
      << ValueOk(engine::SerializeSessionState(
             *other, *other_state,
             engine::SerializeSessionExtras(
                 engine::NewSessionExtras(other->vocab_size()))));
  std::ofstream(dir.path() / "junk.lsvstate", std::ios::binary)
      << "not a state";
  std::ofstream(dir.path() / "torn.lsvstate.tmp", std::ios::binary) << "LSV";

  auto store = OpenOk(*model, options);
  CHECK(store->size() == 3);
  const SessionSummary bare = ValueOk(store->Get("bare"));
  CHECK(bare.created == bare.last_used);
  CHECK(bare.created > Clock::now() - std::chrono::minutes(1));
  CHECK(bare.created <= Clock::now());
  CHECK(ValueOk(store->Get("good")).position == 3);
  CHECK(ValueOk(store->Get("late")).position == 3);
  CHECK(store->Acquire("good").ok());
  CHECK(store->Acquire("late").status().code() == StatusCode::kDataLoss);
  CHECK(fs::exists(dir.path() / "late.corrupt"));
  CHECK(store->size() == 2);
  CHECK(store->Get("foreign").status().code() == StatusCode::kNotFound);
  CHECK(fs::exists(dir.path() / "foreign.lsvstate"));
  CHECK(fs::exists(dir.path() / "junk.corrupt"));
  CHECK(!fs::exists(dir.path() / "junk.lsvstate"));
  CHECK(!fs::exists(dir.path() / "torn.lsvstate.tmp"));
  const std::vector<std::string>& warnings = store->startup_warnings();
  REQUIRE(warnings.size() == 4);
  auto warned = [&](const std::string& file, const std::string& what) {
    return std::any_of(warnings.begin(), warnings.end(), [&](auto& w) {
      return w.rfind(file, 0) == 0 && w.find(what) != std::string::npos;
    });
  };
  CHECK(warned("foreign.lsvstate", "belongs to model"));
  CHECK(warned("junk.lsvstate", "junk.corrupt"));
  CHECK(warned("torn.lsvstate.tmp", "removed"));
  CHECK(warned("bare.lsvstate", "mtime"));
}

TEST_CASE(
    "Sweep deletes sessions idle past the TTL, in RAM or spilled, never a "
    "leased one, Commit marks a session used now",
    "[server][session_store]") {
  auto model = LoadModel("gated_deltanet");
  TempDir dir;
  SessionStoreOptions options;
  options.idle_ttl = std::chrono::hours(1);
  options.spill_dir = dir.str();
  auto store = OpenOk(*model, options);
  int expired = 0;
  store->on_expired = [&expired] { ++expired; };
  const Clock::time_point long_ago = Clock::now() - std::chrono::hours(2);
  // A session's last_used is what its last lease left (Commit sets it to
  // now); setting it through the lease stands in for two idle hours.
  for (const std::string id : {"old-ram", "old-disk", "old-leased"}) {
    SessionLease s = ValueOk(store->Create(id));
    s.session().last_used = long_ago;
  }
  REQUIRE(store->SpillAll().ok());
  for (const std::string id : {"old-ram", "old-leased"}) {
    SessionLease s = ValueOk(store->Acquire(id));  // back into RAM
  }
  {
    SessionLease s = ValueOk(store->Create("fresh"));
    s.session().last_used = long_ago;
    const Clock::time_point before = Clock::now();
    s.Commit();
    CHECK(s.session().last_used >= before);
  }
  CHECK(ValueOk(store->Get("old-ram")).in_ram);
  CHECK(!ValueOk(store->Get("old-disk")).in_ram);
  CHECK(fs::exists(dir.path() / "old-disk.lsvstate"));

  SessionLease held = ValueOk(store->Acquire("old-leased"));
  CHECK(store->Sweep() == 2);
  CHECK(expired == 2);
  CHECK(store->Get("old-ram").status().code() == StatusCode::kNotFound);
  CHECK(store->Get("old-disk").status().code() == StatusCode::kNotFound);
  CHECK(!fs::exists(dir.path() / "old-disk.lsvstate"));
  CHECK(!fs::exists(dir.path() / "old-disk.lsvmeta"));
  CHECK(store->Get("old-leased").ok());
  CHECK(store->Get("fresh").ok());
  held = SessionLease();
  CHECK(store->Sweep() == 1);  // old-leased, now that it is idle
  CHECK(store->size() == 1);

  options.idle_ttl = std::chrono::seconds(0);  // zero: never expire
  auto forever = OpenOk(*model, options);
  {
    SessionLease s = ValueOk(forever->Create());
    s.session().last_used = long_ago;
  }
  CHECK(forever->Sweep() == 0);
}

TEST_CASE(
    "past max_sessions (RAM and disk together) Create, Fork and Import are "
    "ResourceExhausted, without a spill directory max_sessions_in_ram bounds "
    "them",
    "[server][session_store]") {
  auto model = LoadModel("gated_deltanet");
  TempDir dir;
  SessionStoreOptions options;
  options.max_sessions_in_ram = 1;
  options.max_sessions = 3;
  options.spill_dir = dir.str();
  auto store = OpenOk(*model, options);
  for (int i = 0; i < 3; ++i) SessionLease s = ValueOk(store->Create());
  store->WaitForEvictions();
  CHECK(store->size_in_ram() == 1);
  const std::string id = store->List("", 1)[0].id;
  const std::string bytes = ValueOk(store->Export(id));
  const auto full = store->Create();
  CHECK(full.status().code() == StatusCode::kResourceExhausted);
  CHECK(std::string(full.status().message()).find("--max_sessions") !=
        std::string::npos);
  CHECK(store->Fork(id).status().code() == StatusCode::kResourceExhausted);
  CHECK(store->Import(bytes).status().code() == StatusCode::kResourceExhausted);
  CHECK(store->size() == 3);
  REQUIRE(store->Delete(id).ok());
  CHECK(store->Create().ok());

  SessionStoreOptions ram_only;
  ram_only.max_sessions_in_ram = 2;
  ram_only.max_sessions = 10;
  auto small = OpenOk(*model, ram_only);
  for (int i = 0; i < 2; ++i) SessionLease s = ValueOk(small->Create());
  const auto refused = small->Create();
  CHECK(refused.status().code() == StatusCode::kResourceExhausted);
  CHECK(std::string(refused.status().message()).find("max_sessions_in_ram") !=
        std::string::npos);
  CHECK(small->SpillAll().code() == StatusCode::kFailedPrecondition);

  options.max_sessions = 0;
  CHECK(SessionStore::Open(*model, options).status().code() ==
        StatusCode::kInvalidArgument);
}

TEST_CASE(
    "a spill file that cannot be read back is DataLoss once, the session is "
    "then gone and its file kept as <id>.corrupt",
    "[server][session_store]") {
  auto model = LoadModel("gated_deltanet");
  TempDir dir;
  SessionStoreOptions options;
  options.spill_dir = dir.str();
  auto store = OpenOk(*model, options);
  {
    SessionLease s = ValueOk(store->Create("victim"));
    Feed(*model, s.session(), {1, 2, 3});
  }
  REQUIRE(store->SpillAll().ok());
  const fs::path file = dir.path() / "victim.lsvstate";
  REQUIRE(fs::exists(file));
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200);
    f.put('\x5a');
  }
  const auto lost = store->Acquire("victim");
  CHECK(lost.status().code() == StatusCode::kDataLoss);
  CHECK(std::string(lost.status().message()).find("victim.corrupt") !=
        std::string::npos);
  CHECK(store->Get("victim").status().code() == StatusCode::kNotFound);
  CHECK(store->Acquire("victim").status().code() == StatusCode::kNotFound);
  CHECK(store->size() == 0);
  CHECK(fs::exists(dir.path() / "victim.corrupt"));
  CHECK(!fs::exists(file));
}

TEST_CASE(
    "Delete removes a session in RAM or on disk (with its files), "
    "DeleteOnRelease deletes when the lease drops, List pages by id",
    "[server][session_store]") {
  auto model = LoadModel("gated_deltanet");
  TempDir dir;
  SessionStoreOptions options;
  options.spill_dir = dir.str();
  auto store = OpenOk(*model, options);
  for (const std::string id : {"c", "a", "d", "b"}) {
    SessionLease s = ValueOk(store->Create(id));
  }
  std::vector<std::string> page;
  for (const auto& s : store->List("a", 2)) page.push_back(s.id);
  CHECK(page == std::vector<std::string>{"b", "c"});
  CHECK(store->List("", 0).size() == 4);
  CHECK(store->List("d", 10).empty());

  REQUIRE(store->SpillAll().ok());
  REQUIRE(store->Delete("a").ok());
  CHECK(!fs::exists(dir.path() / "a.lsvstate"));
  CHECK(!fs::exists(dir.path() / "a.lsvmeta"));
  { SessionLease s = ValueOk(store->Acquire("b")); }
  REQUIRE(store->Delete("b").ok());
  {
    SessionLease s = ValueOk(store->Acquire("c"));
    s.DeleteOnRelease();
  }
  CHECK(store->size() == 1);
  CHECK(store->size_in_ram() == 0);
  CHECK(store->Get("c").status().code() == StatusCode::kNotFound);
  // A deleted id is free again.
  CHECK(store->Create("a").ok());
}

TEST_CASE(
    "a session being spilled answers Aborted (retry) at once and stays in "
    "RAM until its file is written, other sessions are served meanwhile",
    "[server][session_store]") {
  auto model = LoadModel("gated_deltanet");
  TempDir dir;
  SessionStoreOptions options;
  options.spill_dir = dir.str();
  auto store = OpenOk(*model, options);
  Snapshot want;
  {
    SessionLease s = ValueOk(store->Create("slow"));
    Feed(*model, s.session(), {4, 5, 6});
    want = Snap(s.session());
  }
  { SessionLease s = ValueOk(store->Create("other")); }
  // The spill of "slow" opens its sidecar's temporary file first: as a FIFO
  // that write blocks until the test reads it, holding the spill midway.
  const fs::path fifo = dir.path() / "slow.lsvmeta.tmp";
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  absl::Status spilled;
  std::thread spiller([&] { spilled = store->SpillAll(); });
  // "other" < "slow": SpillAll writes it first, then blocks on the FIFO.
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (ValueOk(store->Get("other")).in_ram &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  CHECK(!ValueOk(store->Get("other")).in_ram);

  const auto busy = store->Acquire("slow");
  CHECK(busy.status().code() == StatusCode::kAborted);
  CHECK(std::string(busy.status().message()).find("retry") !=
        std::string::npos);
  CHECK(store->Delete("slow").code() == StatusCode::kAborted);
  CHECK(ValueOk(store->Get("slow")).in_ram);
  CHECK(store->size_in_ram() == 1);
  // The store's mutex is free: others are leased, created, listed.
  CHECK(store->Acquire("other").ok());
  CHECK(store->Create("new").ok());
  CHECK(store->List("", 0).size() == 3);

  {
    std::ifstream drain(fifo, std::ios::binary);
    std::string meta((std::istreambuf_iterator<char>(drain)),
                     std::istreambuf_iterator<char>());
    CHECK(meta.find("created_unix_ns") != std::string::npos);
  }
  spiller.join();
  CHECK(spilled.ok());
  CHECK(!ValueOk(store->Get("slow")).in_ram);
  SessionLease back = ValueOk(store->Acquire("slow"));
  CHECK(SameBits(Snap(back.session()), want));
}

TEST_CASE(
    "8 threads leasing random sessions (with spills going on) never share a "
    "lease and lose no update",
    "[server][session_store]") {
  auto model = LoadModel("gated_deltanet");
  TempDir dir;
  SessionStoreOptions options;
  options.max_sessions_in_ram = 4;
  options.spill_dir = dir.str();
  auto store = OpenOk(*model, options);
  constexpr int kSessions = 12;
  constexpr int kThreads = 8;
  constexpr int kIterations = 300;
  std::vector<std::string> ids;
  for (int i = 0; i < kSessions; ++i) {
    ids.push_back(ValueOk(store->Create()).session().id);
  }
  std::vector<std::atomic<int>> holders(kSessions);
  std::atomic<int> double_leases{0}, unexpected_errors{0}, leases{0},
      aborted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int n = 0; n < kIterations; ++n) {
        const int i = static_cast<int>(rng() % kSessions);
        absl::StatusOr<SessionLease> lease = store->Acquire(ids[i]);
        if (!lease.ok()) {
          if (lease.status().code() == StatusCode::kAborted) {
            ++aborted;
          } else {
            ++unexpected_errors;
          }
          continue;
        }
        if (holders[i].fetch_add(1) != 0) ++double_leases;
        lease->session().state->data()[0] += 1.0f;  // exact up to 2^24
        lease->session().state->AdvanceTokens(1);
        std::this_thread::yield();
        holders[i].fetch_sub(1);
        lease->Commit();
        ++leases;
        if (n % 50 == 0) (void)store->Get(ids[(i + 1) % kSessions]);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  CHECK(double_leases == 0);
  CHECK(unexpected_errors == 0);
  CHECK(leases + aborted == kThreads * kIterations);
  store->WaitForEvictions();
  CHECK(store->size_in_ram() <= 4);
  int64_t total = 0;
  for (const std::string& id : ids) {
    store->WaitForEvictions();  // none of them is being written
    SessionLease s = ValueOk(store->Acquire(id));
    CHECK(s.session().state->data()[0] ==
          static_cast<float>(s.session().state->num_tokens()));
    total += s.session().state->num_tokens();
  }
  CHECK(total == leases);
}

// Everything a FIFO's writer sends until it closes (the open blocks until a
// writer opens it).
std::string ReadFifo(const fs::path& fifo) {
  std::ifstream in(fifo, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
}

// Whether `result` is ready within `seconds`.
template <typename T>
bool ReadyWithin(const std::future<T>& result, int seconds) {
  return result.wait_for(std::chrono::seconds(seconds)) ==
         std::future_status::ready;
}

TEST_CASE(
    "eviction runs on the store's I/O thread: a release that puts RAM past "
    "the limit returns while the victim's write is held, RAM stays over the "
    "limit and the victim answers Aborted until the write ends, and SpillAll "
    "waits for that write",
    "[server][session_store]") {
  auto model = LoadModel("gated_deltanet");
  TempDir dir;
  SessionStoreOptions options;
  options.max_sessions_in_ram = 1;
  options.spill_dir = dir.str();
  auto store = OpenOk(*model, options);
  std::atomic<int> evictions{0};
  store->on_evicted = [&evictions] { ++evictions; };
  SessionLease victim = ValueOk(store->Create("victim"));
  Feed(*model, victim.session(), {4, 5, 6});
  const Snapshot want = Snap(victim.session());
  // Held until the victim is written, so the LRU holds the victim only.
  SessionLease other = ValueOk(store->Create("other"));
  CHECK(store->size_in_ram() == 2);  // both leased: nothing can spill yet
  // The victim's spill opens its sidecar's temporary file first: as a FIFO
  // that open blocks until the test reads it, holding the write midway.
  const fs::path fifo = dir.path() / "victim.lsvmeta.tmp";
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);

  auto released = std::async(std::launch::async, [&] {
    victim = SessionLease();  // RAM: 2 sessions, 1 idle, limit 1
  });
  const bool release_returned = ReadyWithin(released, 10);
  CHECK(release_returned);
  if (!release_returned) {
    ReadFifo(fifo);
    released.wait();
    FAIL("the release waited for the victim's write");
  }

  // Once the I/O thread has pinned the victim for its write, leasing it is
  // Aborted; before that a lease succeeds (and is dropped at once, which
  // asks for the eviction again).
  absl::Status probe;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  do {
    absl::StatusOr<SessionLease> lease = store->Acquire("victim");
    probe = lease.status();
    if (lease.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  } while (probe.ok() && std::chrono::steady_clock::now() < deadline);
  CHECK(probe.code() == StatusCode::kAborted);
  CHECK(std::string(probe.message()).find("being written") !=
        std::string::npos);
  // Over max_sessions_in_ram while the write is held.
  CHECK(store->size_in_ram() == 2);
  CHECK(evictions == 0);
  CHECK(ValueOk(store->Get("victim")).in_ram);
  CHECK(store->Delete("victim").code() == StatusCode::kAborted);
  CHECK(store->List("", 0).size() == 2);

  // SpillAll (the drain) waits for the write in flight, then spills the
  // rest.
  other = SessionLease();
  auto spilled =
      std::async(std::launch::async, [&] { return store->SpillAll(); });
  CHECK(spilled.wait_for(std::chrono::milliseconds(200)) ==
        std::future_status::timeout);
  CHECK(ReadFifo(fifo).find("created_unix_ns") != std::string::npos);
  REQUIRE(ReadyWithin(spilled, 10));
  CHECK(spilled.get().ok());
  CHECK(evictions == 1);  // the eviction; SpillAll is not one
  CHECK(store->size_in_ram() == 0);
  CHECK(fs::exists(dir.path() / "victim.lsvstate"));
  CHECK(fs::exists(dir.path() / "other.lsvstate"));
  SessionLease back = ValueOk(store->Acquire("victim"));
  CHECK(SameBits(Snap(back.session()), want));
}

TEST_CASE(
    "AcquireAsync of a spilled session returns at once and calls back on the "
    "I/O thread with the session read back bit for bit (leased while it "
    "loads), of a session in RAM, or with an error, it calls back inline",
    "[server][session_store]") {
  auto model = LoadModel("gated_deltanet");
  TempDir dir;
  SessionStoreOptions options;
  options.spill_dir = dir.str();
  auto store = OpenOk(*model, options);
  Snapshot want;
  {
    SessionLease s = ValueOk(store->Create("a"));
    Feed(*model, s.session(), {7, 8, 9, 10});
    want = Snap(s.session());
  }
  REQUIRE(store->SpillAll().ok());
  // The state file becomes a FIFO: the load's read blocks until the test
  // writes the file's bytes into it.
  const fs::path file = dir.path() / "a.lsvstate";
  std::string bytes;
  {
    std::ifstream in(file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in),
                 std::istreambuf_iterator<char>());
  }
  REQUIRE(!bytes.empty());
  fs::remove(file);
  REQUIRE(mkfifo(file.c_str(), 0600) == 0);

  std::mutex mu;
  std::condition_variable cv;
  std::optional<absl::StatusOr<SessionLease>> loaded;
  std::thread::id callback_thread;
  std::thread::id calling_thread;
  auto called = std::async(std::launch::async, [&] {
    calling_thread = std::this_thread::get_id();
    store->AcquireAsync("a", [&](absl::StatusOr<SessionLease> lease) {
      std::lock_guard<std::mutex> lock(mu);
      loaded = std::move(lease);
      callback_thread = std::this_thread::get_id();
      cv.notify_all();
    });
  });
  const bool returned = ReadyWithin(called, 10);
  CHECK(returned);
  if (!returned) {
    std::ofstream(file, std::ios::binary) << bytes;
    called.wait();
    FAIL("AcquireAsync waited for the read");
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    CHECK(!loaded.has_value());  // its read is held by the FIFO
  }
  CHECK(store->Acquire("a").status().code() == StatusCode::kAborted);
  CHECK(ValueOk(store->Get("a")).busy);

  std::ofstream(file, std::ios::binary) << bytes;  // the read completes
  SessionLease lease;
  {
    std::unique_lock<std::mutex> lock(mu);
    REQUIRE(cv.wait_for(lock, std::chrono::seconds(10),
                        [&] { return loaded.has_value(); }));
    CHECK(callback_thread != calling_thread);
    CHECK(callback_thread != std::this_thread::get_id());
    lease = ValueOk(*std::move(loaded));
  }
  CHECK(lease.session().id == "a");
  CHECK(SameBits(Snap(lease.session()), want));
  CHECK(ValueOk(store->Get("a")).in_ram);
  CHECK(!fs::exists(file));  // RAM holds the newest state now

  // Errors need no disk: inline.
  std::optional<absl::Status> error;
  store->AcquireAsync(
      "a", [&](absl::StatusOr<SessionLease> got) { error = got.status(); });
  REQUIRE(error.has_value());
  CHECK(error->code() == StatusCode::kAborted);
  error.reset();
  store->AcquireAsync(
      "nope", [&](absl::StatusOr<SessionLease> got) { error = got.status(); });
  REQUIRE(error.has_value());
  CHECK(error->code() == StatusCode::kNotFound);

  // In RAM: inline, on the calling thread.
  lease = SessionLease();
  std::optional<absl::StatusOr<SessionLease>> in_ram;
  std::thread::id in_ram_thread;
  store->AcquireAsync("a", [&](absl::StatusOr<SessionLease> got) {
    in_ram = std::move(got);
    in_ram_thread = std::this_thread::get_id();
  });
  REQUIRE(in_ram.has_value());
  CHECK(in_ram_thread == std::this_thread::get_id());
  CHECK(SameBits(Snap(ValueOk(*std::move(in_ram)).session()), want));
}

TEST_CASE(
    "ExportAsync and ForkAsync of a spilled session call back on the I/O "
    "thread with what Export and Fork give, the source released unchanged, "
    "their errors come inline",
    "[server][session_store]") {
  auto model = LoadModel("gated_deltanet");
  TempDir dir;
  SessionStoreOptions options;
  options.spill_dir = dir.str();
  auto store = OpenOk(*model, options);
  Snapshot want;
  {
    SessionLease s = ValueOk(store->Create("src"));
    Feed(*model, s.session(), {2, 7, 1, 8});
    want = Snap(s.session());
  }
  const std::string exported = ValueOk(store->Export("src"));
  const Clock::time_point last_used = ValueOk(store->Get("src")).last_used;

  REQUIRE(store->SpillAll().ok());
  std::promise<std::pair<absl::StatusOr<std::string>, std::thread::id>>
      export_promise;
  auto export_result = export_promise.get_future();
  store->ExportAsync("src", [&](absl::StatusOr<std::string> got) {
    export_promise.set_value({std::move(got), std::this_thread::get_id()});
  });
  REQUIRE(ReadyWithin(export_result, 10));
  auto [export_bytes, export_thread] = export_result.get();
  CHECK(export_thread != std::this_thread::get_id());
  CHECK(ValueOk(std::move(export_bytes)) == exported);
  CHECK(ValueOk(store->Get("src")).in_ram);
  CHECK(!ValueOk(store->Get("src")).busy);

  REQUIRE(store->SpillAll().ok());
  std::promise<std::pair<absl::StatusOr<SessionLease>, std::thread::id>>
      fork_promise;
  auto fork_result = fork_promise.get_future();
  store->ForkAsync("src", "copy", [&](absl::StatusOr<SessionLease> got) {
    fork_promise.set_value({std::move(got), std::this_thread::get_id()});
  });
  REQUIRE(ReadyWithin(fork_result, 10));
  auto [forked, fork_thread] = fork_result.get();
  CHECK(fork_thread != std::this_thread::get_id());
  SessionLease copy = ValueOk(std::move(forked));
  CHECK(copy.session().id == "copy");
  CHECK(SameBits(Snap(copy.session()), want));
  const SessionSummary source = ValueOk(store->Get("src"));
  CHECK(source.in_ram);
  CHECK(!source.busy);
  CHECK(source.last_used == last_used);

  std::optional<absl::Status> error;
  store->ForkAsync("src", "copy", [&](absl::StatusOr<SessionLease> got) {
    error = got.status();
  });
  REQUIRE(error.has_value());
  CHECK(error->code() == StatusCode::kAlreadyExists);
  error.reset();
  store->ForkAsync("copy", "", [&](absl::StatusOr<SessionLease> got) {
    error = got.status();
  });
  REQUIRE(error.has_value());
  CHECK(error->code() == StatusCode::kAborted);  // "copy" is leased
  error.reset();
  store->ExportAsync(
      "nope", [&](absl::StatusOr<std::string> got) { error = got.status(); });
  REQUIRE(error.has_value());
  CHECK(error->code() == StatusCode::kNotFound);
}

}  // namespace
}  // namespace linserve::server
