// SessionStore (server/session_store.h): a map of entries under one mutex,
// each entry either in RAM (owning its Session) or on disk (its files in the
// spill directory), plus an LRU list of the idle entries in RAM, ordered by
// release. Work that touches a state or a file (allocation, copies,
// serialization, reads, writes, removals) happens outside the mutex, with
// the entry pinned (`leased` or `io`) so no one else touches it meanwhile.
//
// The I/O thread (started when there is a spill directory) waits on the
// same mutex for two kinds of work: loads queued by the async methods (the
// entry pinned as leased, its callback run after the read), and an eviction
// request (a flag set by whoever put RAM past the limit). It alternates
// between them so that neither starves the other.
#include "server/session_store.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/session_extras.h"
#include "engine/state_format.h"

namespace linserve::server {
namespace {

namespace fs = std::filesystem;

constexpr char kStateSuffix[] = ".lsvstate";
constexpr char kMetaSuffix[] = ".lsvmeta";
constexpr char kTmpSuffix[] = ".tmp";
constexpr char kCorruptSuffix[] = ".corrupt";
constexpr char kMetaMagic[] = "linserve-session-meta 1";
constexpr size_t kMaxIdBytes = 128;

std::string Quote(const std::string& id) { return absl::StrCat("'", id, "'"); }

absl::Status NotFound(const std::string& id) {
  return absl::NotFoundError(absl::StrCat(
      "session ", Quote(id),
      " not found: it never existed, was deleted, or expired after the idle "
      "TTL"));
}

absl::Status Busy(const std::string& id) {
  return absl::AbortedError(absl::StrCat(
      "session ", Quote(id),
      " is busy with another call; calls on one session must be sequential: "
      "retry when it finishes"));
}

absl::Status BeingWritten(const std::string& id) {
  return absl::AbortedError(absl::StrCat(
      "session ", Quote(id),
      " is being written to the spill directory (it was idle and RAM is "
      "full); retry in a moment"));
}

absl::Status StoreClosed(const std::string& id) {
  return absl::UnavailableError(absl::StrCat(
      "session ", Quote(id),
      " was not read back: the server is shutting down; retry on another "
      "replica or after the restart"));
}

absl::Status CheckClientId(const std::string& id) {
  if (id.empty() || id.size() > kMaxIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "session id must be 1-", kMaxIdBytes,
        " characters of [A-Za-z0-9._-]; got ", id.size(), " characters"));
  }
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "session id ", Quote(id.size() <= 64 ? id : id.substr(0, 64) + "..."),
          " has a character outside [A-Za-z0-9._-] (byte ",
          static_cast<int>(static_cast<unsigned char>(c)), ")"));
    }
  }
  if (id == "." || id == "..") {
    return absl::InvalidArgumentError(
        "session id may not be \".\" or \"..\" (ids name files)");
  }
  return absl::OkStatus();
}

// 128 bits straight from std::random_device (libstdc++ on Linux: the CPU's
// RDRAND/RDSEED or getrandom(2), a CSPRNG), as 32 lowercase hex digits. No
// seeded generator in between: ids are unguessable, not just distinct.
std::string RandomId() {
  std::random_device device;
  std::string id;
  id.reserve(32);
  static constexpr char kHex[] = "0123456789abcdef";
  for (int word = 0; word < 4; ++word) {
    uint32_t bits = device();
    for (int nibble = 0; nibble < 8; ++nibble) {
      id.push_back(kHex[bits & 0xf]);
      bits >>= 4;
    }
  }
  return id;
}

int64_t ToUnixNanos(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             t.time_since_epoch())
      .count();
}

Clock::time_point FromUnixNanos(int64_t ns) {
  return Clock::time_point(std::chrono::duration_cast<Clock::duration>(
      std::chrono::nanoseconds(ns)));
}

absl::StatusOr<std::string> ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot open ", path.string(), " for reading"));
  }
  std::string bytes((std::istreambuf_iterator<char>(in)),
                    std::istreambuf_iterator<char>());
  if (in.bad()) {
    return absl::DataLossError(absl::StrCat("read error on ", path.string()));
  }
  return bytes;
}

// Writes `bytes` to path + ".tmp" and renames it over `path`, so a reader
// (or a restart) sees the old file or the new one, never a partial one.
absl::Status WriteFileAtomically(const fs::path& path, std::string_view bytes) {
  const fs::path tmp = path.string() + kTmpSuffix;
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot create ", tmp.string(),
                                               " in the spill directory"));
  }
  const bool written =
      std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  const bool closed = std::fclose(f) == 0;
  if (!written || !closed) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    return absl::UnavailableError(absl::StrCat("cannot write ", bytes.size(),
                                               " bytes to ", tmp.string(),
                                               " (disk full?)"));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return absl::UnavailableError(absl::StrCat("cannot rename ", tmp.string(),
                                               " to ", path.string(), ": ",
                                               ec.message()));
  }
  return absl::OkStatus();
}

// Offsets of docs/state-format.md (header) and engine/session_extras.h.
constexpr size_t kNumTokensOffset = 72;
constexpr size_t kExtrasFlagsOffset = 8;
constexpr uint32_t kExtrasFlagPending = 1;

// The position of the session in state file `file` if it is a state of the
// model whose empty session serializes to `empty_state` (same size, same
// header but num_tokens; extras of `extras_bytes`), read from its header
// and its extras' flags only: the checksum and the contents are checked
// when it is read back. nullopt otherwise.
std::optional<int64_t> PeekPosition(const fs::path& file,
                                    std::string_view empty_state,
                                    int64_t extras_bytes) {
  std::error_code ec;
  const uintmax_t size = fs::file_size(file, ec);
  if (ec || size != empty_state.size()) return std::nullopt;
  std::ifstream in(file, std::ios::binary);
  std::string header(static_cast<size_t>(engine::kStateHeaderBytes), '\0');
  if (!in.read(header.data(), engine::kStateHeaderBytes)) return std::nullopt;
  const std::string_view want = empty_state.substr(0, header.size());
  const size_t after_num_tokens = kNumTokensOffset + sizeof(int64_t);
  if (std::string_view(header).substr(0, kNumTokensOffset) !=
          want.substr(0, kNumTokensOffset) ||
      std::string_view(header).substr(after_num_tokens) !=
          want.substr(after_num_tokens)) {
    return std::nullopt;
  }
  int64_t num_tokens = 0;
  std::memcpy(&num_tokens, header.data() + kNumTokensOffset,
              sizeof(num_tokens));
  const size_t extras_offset = empty_state.size() -
                               engine::kStateChecksumBytes -
                               static_cast<size_t>(extras_bytes);
  uint32_t flags = 0;
  in.seekg(static_cast<std::streamoff>(extras_offset + kExtrasFlagsOffset));
  if (num_tokens < 0 ||
      !in.read(reinterpret_cast<char*>(&flags), sizeof(flags))) {
    return std::nullopt;
  }
  return num_tokens + ((flags & kExtrasFlagPending) ? 1 : 0);
}

struct Meta {
  Clock::time_point created, last_used;
};

std::string FormatMeta(const Meta& meta) {
  return absl::StrCat(kMetaMagic, "\ncreated_unix_ns ",
                      ToUnixNanos(meta.created), "\nlast_used_unix_ns ",
                      ToUnixNanos(meta.last_used), "\n");
}

std::optional<Meta> ParseMeta(const std::string& text) {
  std::istringstream in(text);
  std::string magic, created_key, last_used_key;
  int64_t created = 0, last_used = 0;
  if (!std::getline(in, magic) || magic != kMetaMagic) return std::nullopt;
  if (!(in >> created_key >> created >> last_used_key >> last_used) ||
      created_key != "created_unix_ns" ||
      last_used_key != "last_used_unix_ns") {
    return std::nullopt;
  }
  return Meta{FromUnixNanos(created), FromUnixNanos(last_used)};
}

}  // namespace

struct SessionStore::Impl {
  struct Entry {
    // Non-null while the session is in RAM (also while a spill writes it).
    std::unique_ptr<Session> session;
    bool leased = false;  // a caller holds it (or it is being read back)
    bool io = false;      // the store is writing or removing its files
    Clock::time_point created, last_used;
    int64_t position = 0;  // as of the last release (Get, List)
    // Its place in `lru` while it is in RAM, idle and not pinned.
    std::list<std::string>::iterator lru_position;
    bool in_lru = false;
  };

  Impl(const engine::Model& model, SessionStoreOptions options)
      : model(model), options(std::move(options)) {}

  // What Get and List report of entry `e` (under mu).
  SessionSummary SummaryOf(const std::string& id, const Entry& e) const {
    SessionSummary summary{id,          e.position,           e.created,
                           e.last_used, e.session != nullptr, e.leased};
    // A leased session in RAM cannot be dropped while mu is held (Release
    // and Delete take it), so reading its atomics here is safe.
    if (e.leased && e.session != nullptr) {
      const InFlightProgress& progress = e.session->progress;
      summary.in_flight_tokens_fed =
          progress.tokens_fed.load(std::memory_order_relaxed);
      summary.in_flight_tokens_queued =
          progress.tokens_queued.load(std::memory_order_relaxed);
      summary.in_flight_bytes_received =
          progress.bytes_received.load(std::memory_order_relaxed);
    }
    return summary;
  }

  fs::path StatePath(const std::string& id) const {
    return fs::path(options.spill_dir) / (id + kStateSuffix);
  }
  fs::path MetaPath(const std::string& id) const {
    return fs::path(options.spill_dir) / (id + kMetaSuffix);
  }
  bool spilling_enabled() const { return !options.spill_dir.empty(); }
  int64_t session_limit() const {
    return spilling_enabled()
               ? options.max_sessions
               : std::min(options.max_sessions, options.max_sessions_in_ram);
  }

  void RemoveFromLru(Entry& e) {
    if (e.in_lru) {
      lru.erase(e.lru_position);
      e.in_lru = false;
    }
  }
  void AppendToLru(const std::string& id, Entry& e) {
    RemoveFromLru(e);
    e.lru_position = lru.insert(lru.end(), id);
    e.in_lru = true;
  }

  // Checks that `id` may be added now (not taken, under the limit).
  absl::Status CheckCanAdd(const std::string& id) const {
    if (!id.empty() && entries.count(id) != 0) {
      return absl::AlreadyExistsError(
          absl::StrCat("session ", Quote(id),
                       " already exists; choose another id or leave it empty "
                       "for a server-assigned one"));
    }
    if (static_cast<int64_t>(entries.size()) >= session_limit()) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the server holds its limit of ", session_limit(), " sessions (",
          spilling_enabled() ? "--max_sessions"
                             : "--max_sessions_in_ram, as there is no "
                               "--spill_dir",
          "); delete sessions or wait for idle ones to expire"));
    }
    return absl::OkStatus();
  }

  // Adds `session` (in RAM, leased) under its id, or a fresh random id when
  // it is empty. Errors of CheckCanAdd.
  absl::StatusOr<Session*> Insert(std::unique_ptr<Session> session) {
    const bool random_id = session->id.empty();
    // Drawn outside the mutex; a collision (2^-128 per pair) draws again.
    std::string id = random_id ? RandomId() : session->id;
    std::lock_guard<std::mutex> lock(mu);
    while (random_id && entries.count(id) != 0) id = RandomId();
    RETURN_IF_ERROR(CheckCanAdd(id));
    session->id = id;
    Entry& e = entries[id];
    e.leased = true;
    e.created = session->created;
    e.last_used = session->last_used;
    e.position = session->position();
    e.session = std::move(session);
    ++in_ram;
    return e.session.get();
  }

  // The spill file's bytes: the state with its extras (what Export gives).
  absl::StatusOr<std::string> Serialize(const Session& session) const {
    const std::string extras = engine::SerializeSessionExtras(session.extras);
    std::string bytes(static_cast<size_t>(engine::SerializedStateBytes(
                          model, static_cast<int64_t>(extras.size()))),
                      '\0');
    RETURN_IF_ERROR(engine::SerializeSessionStateTo(
        model, *session.state, extras, absl::MakeSpan(bytes)));
    return bytes;
  }

  // A session from serialized bytes (state + extras); nothing on error.
  absl::StatusOr<std::unique_ptr<Session>> Deserialize(
      std::string_view bytes) const {
    auto session = std::make_unique<Session>();
    session->state = model.NewSession();
    std::string extras;
    RETURN_IF_ERROR(engine::DeserializeSessionState(
        model, bytes, session->state.get(), &extras));
    ASSIGN_OR_RETURN(session->extras,
                     engine::ParseSessionExtras(extras, model.vocab_size()));
    return session;
  }

  // Writes the session's files: the sidecar first, so a state file always
  // has the times of its own spill (or of an older one: never none).
  absl::Status WriteSpillFiles(const Session& session) const {
    ASSIGN_OR_RETURN(const std::string bytes, Serialize(session));
    RETURN_IF_ERROR(
        WriteFileAtomically(MetaPath(session.id),
                            FormatMeta({session.created, session.last_used})));
    return WriteFileAtomically(StatePath(session.id), bytes);
  }

  void RemoveSpillFiles(const std::string& id) const {
    std::error_code ignored;
    fs::remove(StatePath(id), ignored);
    fs::remove(MetaPath(id), ignored);
  }

  // Writes one pinned (io) entry's session to disk and, on success, drops
  // it from RAM. Called without the mutex.
  absl::Status SpillPinned(const std::string& id, Session* session) {
    absl::Status written = WriteSpillFiles(*session);
    // A half-done spill (sidecar written, state not) leaves nothing behind.
    if (!written.ok()) RemoveSpillFiles(id);
    std::unique_ptr<Session> dropped;
    {
      std::lock_guard<std::mutex> lock(mu);
      Entry& e = entries.at(id);
      e.io = false;
      --pinned_for_spill;
      if (written.ok()) {
        dropped = std::move(e.session);
        --in_ram;
      } else {
        // Stays in RAM; it goes to the LRU's end so the next spill tries
        // another session first.
        AppendToLru(id, e);
      }
    }
    return written;
  }

  // Whether an idle session should spill: RAM (less what is being written)
  // holds more than max_sessions_in_ram.
  bool OverRamLimitLocked() const {
    return in_ram - pinned_for_spill > options.max_sessions_in_ram &&
           !lru.empty();
  }

  // Wakes the I/O thread if RAM is over the limit. Never touches the disk:
  // called on the thread whose release or addition may have gone past it.
  void RequestEvictionIfNeeded() {
    if (!spilling_enabled()) return;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!OverRamLimitLocked()) return;
      eviction_requested = true;
    }
    io_wake.notify_one();
  }

  // On the I/O thread, with `evicting` set: spills least recently released
  // idle sessions until at most max_sessions_in_ram are in RAM (or none is
  // idle, or the store stops). A failed write (disk full) keeps the session
  // in RAM, over the limit rather than lost, and ends the pass until the
  // next request.
  void EvictPass(const std::function<void()>& on_evicted) {
    while (true) {
      std::string id;
      Session* session = nullptr;
      {
        std::lock_guard<std::mutex> lock(mu);
        if (stopping || !OverRamLimitLocked()) break;
        id = lru.front();
        Entry& e = entries.at(id);
        RemoveFromLru(e);
        e.io = true;
        ++pinned_for_spill;
        session = e.session.get();
      }
      if (!SpillPinned(id, session).ok()) break;
      if (on_evicted) on_evicted();
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      evicting = false;
    }
    evictions_done.notify_all();
  }

  const engine::Model& model;
  const SessionStoreOptions options;
  std::vector<std::string> startup_warnings;  // written by Open only

  mutable std::mutex
      mu;  // std::mutex: TSan sees it (Debian's Abseil is not instrumented)
  std::map<std::string, Entry> entries;
  std::list<std::string> lru;  // front: least recent
  int64_t in_ram = 0;
  int64_t pinned_for_spill = 0;  // in RAM, being written

  // The I/O thread's work, guarded by mu.
  struct Load {
    std::string id;  // pinned as leased, on disk
    LeaseCallback done;
  };
  std::deque<Load> loads;
  bool eviction_requested = false;
  bool evicting = false;  // a pass taken from the request is running
  bool stopping = false;
  std::condition_variable io_wake;         // the I/O thread waits on it
  std::condition_variable evictions_done;  // `evicting` went false
  std::thread io_thread;
};

// SessionLease -------------------------------------------------------------

SessionLease::SessionLease(SessionLease&& other) noexcept
    : store_(std::exchange(other.store_, nullptr)),
      session_(std::exchange(other.session_, nullptr)),
      delete_on_release_(std::exchange(other.delete_on_release_, false)) {}

SessionLease& SessionLease::operator=(SessionLease&& other) noexcept {
  if (this != &other) {
    if (store_ != nullptr && session_ != nullptr) {
      store_->Release(session_, delete_on_release_);
    }
    store_ = std::exchange(other.store_, nullptr);
    session_ = std::exchange(other.session_, nullptr);
    delete_on_release_ = std::exchange(other.delete_on_release_, false);
  }
  return *this;
}

SessionLease::~SessionLease() {
  if (store_ != nullptr && session_ != nullptr) {
    store_->Release(session_, delete_on_release_);
  }
}

void SessionLease::Commit() { session_->last_used = Clock::now(); }

// SessionStore -------------------------------------------------------------

SessionStore::SessionStore(const engine::Model& model,
                           SessionStoreOptions options)
    : impl_(std::make_unique<Impl>(model, std::move(options))) {
  if (impl_->spilling_enabled()) {
    impl_->io_thread = std::thread([this] { RunIoThread(); });
  }
}

SessionStore::~SessionStore() {
  Impl& impl = *impl_;
  if (!impl.io_thread.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(impl.mu);
    impl.stopping = true;
  }
  impl.io_wake.notify_all();
  impl.io_thread.join();
}

void SessionStore::RunIoThread() {
  Impl& impl = *impl_;
  std::unique_lock<std::mutex> lock(impl.mu);
  while (true) {
    impl.io_wake.wait(lock, [&impl] {
      return impl.stopping || !impl.loads.empty() || impl.eviction_requested;
    });
    if (impl.stopping) break;
    // One load (a client waits for it), then the evictions requested so far
    // (loads add to RAM), in turn.
    std::optional<Impl::Load> load;
    if (!impl.loads.empty()) {
      load = std::move(impl.loads.front());
      impl.loads.pop_front();
    }
    const bool evict = std::exchange(impl.eviction_requested, false);
    if (evict) impl.evicting = true;
    lock.unlock();
    if (load.has_value()) load->done(LoadPinned(load->id));
    load.reset();  // its callback's captures go before the lock is taken
    if (evict) impl.EvictPass(on_evicted);
    lock.lock();
  }
  std::deque<Impl::Load> abandoned = std::move(impl.loads);
  impl.loads.clear();
  lock.unlock();
  for (Impl::Load& load : abandoned) load.done(StoreClosed(load.id));
}

SessionLease SessionStore::LeaseOf(Session* session) {
  SessionLease lease;
  lease.store_ = this;
  lease.session_ = session;
  return lease;
}

absl::StatusOr<std::unique_ptr<SessionStore>> SessionStore::Open(
    const engine::Model& model, const SessionStoreOptions& options) {
  if (options.max_sessions_in_ram < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_sessions_in_ram must be at least 1, got ",
                     options.max_sessions_in_ram));
  }
  if (options.max_sessions < options.max_sessions_in_ram) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_sessions (", options.max_sessions,
                     ") must be at least --max_sessions_in_ram (",
                     options.max_sessions_in_ram, ")"));
  }
  if (options.idle_ttl.count() < 0) {
    return absl::InvalidArgumentError("the idle TTL must not be negative");
  }
  std::unique_ptr<SessionStore> store(new SessionStore(model, options));
  if (options.spill_dir.empty()) return store;

  Impl& impl = *store->impl_;
  const fs::path dir(options.spill_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot create the spill directory ", dir.string(), ": ",
                     ec.message()));
  }
  std::vector<fs::path> files;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->is_regular_file()) files.push_back(it->path());
  }
  if (ec) {
    return absl::UnavailableError(absl::StrCat(
        "cannot list the spill directory ", dir.string(), ": ", ec.message()));
  }
  std::sort(files.begin(), files.end());
  auto warn = [&impl](const fs::path& file, const std::string& what) {
    impl.startup_warnings.push_back(
        absl::StrCat(file.filename().string(), ": ", what));
  };
  // Every file of this model carries the header of an empty session of it
  // except for num_tokens.
  ASSIGN_OR_RETURN(
      const std::string empty_state,
      impl.Serialize(Session{"",
                             model.NewSession(),
                             engine::NewSessionExtras(model.vocab_size()),
                             {},
                             {}}));
  std::lock_guard<std::mutex> lock(
      impl.mu);  // uncontended: the store is not shared yet
  for (const fs::path& file : files) {
    const std::string name = file.filename().string();
    if (name.size() > 4 && name.rfind(kTmpSuffix) == name.size() - 4) {
      // A write that a crash interrupted: its rename never happened.
      fs::remove(file, ec);
      warn(file, "an unfinished spill write; removed");
      continue;
    }
    if (file.extension() != kStateSuffix) continue;  // sidecars, .corrupt
    const std::string id = file.stem().string();
    if (!CheckClientId(id).ok()) {
      warn(file, "not a session file name; ignored");
      continue;
    }
    std::optional<int64_t> position = PeekPosition(
        file, empty_state, engine::SessionExtrasBytes(model.vocab_size()));
    if (!position.has_value()) {
      // Not a state of this model with this server's extras: read it whole
      // to say why (rare: files of another model, or damaged ones).
      absl::StatusOr<std::string> bytes = ReadFile(file);
      absl::StatusOr<std::unique_ptr<Session>> session =
          bytes.ok() ? impl.Deserialize(*bytes)
                     : absl::StatusOr<std::unique_ptr<Session>>(bytes.status());
      if (session.ok()) {
        position = (*session)->position();
      } else if (session.status().code() ==
                 absl::StatusCode::kFailedPrecondition) {
        warn(file, absl::StrCat(session.status().message(),
                                "; left in place, not loaded"));
        continue;
      } else {
        fs::rename(file, dir / (id + kCorruptSuffix), ec);
        fs::remove(impl.MetaPath(id), ec);
        warn(file, absl::StrCat(session.status().message(), "; renamed to ", id,
                                kCorruptSuffix));
        continue;
      }
    }
    Impl::Entry& e = impl.entries[id];
    e.position = *position;
    absl::StatusOr<std::string> meta_text = ReadFile(impl.MetaPath(id));
    std::optional<Meta> meta =
        meta_text.ok() ? ParseMeta(*meta_text) : std::nullopt;
    if (meta.has_value()) {
      e.created = meta->created;
      e.last_used = meta->last_used;
    } else {
      // No readable sidecar: the state file's mtime is the best guess.
      const auto mtime = fs::last_write_time(file, ec);
      const Clock::time_point t =
          ec ? Clock::now()
             : std::chrono::time_point_cast<Clock::duration>(
                   std::chrono::file_clock::to_sys(mtime));
      e.created = e.last_used = t;
      warn(file,
           "no readable .lsvmeta sidecar; created and last-used times "
           "taken from the file's mtime");
    }
  }
  if (static_cast<int64_t>(impl.entries.size()) > options.max_sessions) {
    impl.startup_warnings.push_back(absl::StrCat(
        "the spill directory holds ", impl.entries.size(),
        " sessions, more than --max_sessions (", options.max_sessions,
        "): all are kept, new ones are refused until some are deleted"));
  }
  return store;
}

const std::vector<std::string>& SessionStore::startup_warnings() const {
  return impl_->startup_warnings;
}

absl::StatusOr<SessionLease> SessionStore::Create(const std::string& id) {
  if (!id.empty()) RETURN_IF_ERROR(CheckClientId(id));
  {
    std::lock_guard<std::mutex> lock(
        impl_->mu);  // fail fast, before allocating
    RETURN_IF_ERROR(impl_->CheckCanAdd(id));
  }
  auto session = std::make_unique<Session>();
  session->id = id;
  session->state = impl_->model.NewSession();
  session->extras = engine::NewSessionExtras(impl_->model.vocab_size());
  // A random seed now rather than at the first unseeded call, so that an
  // exported session continues identically wherever it is imported.
  session->extras.SeedStream(engine::NewSamplerState({}, {}).seed);
  session->created = session->last_used = Clock::now();
  ASSIGN_OR_RETURN(Session * added, impl_->Insert(std::move(session)));
  SessionLease lease = LeaseOf(added);
  impl_->RequestEvictionIfNeeded();
  return lease;
}

absl::StatusOr<SessionLease> SessionStore::LeaseIfInRam(const std::string& id,
                                                        bool* on_disk) {
  Impl& impl = *impl_;
  *on_disk = false;
  std::lock_guard<std::mutex> lock(impl.mu);
  auto it = impl.entries.find(id);
  if (it == impl.entries.end()) return NotFound(id);
  Impl::Entry& e = it->second;
  if (e.leased) return Busy(id);
  if (e.io) return BeingWritten(id);
  e.leased = true;  // on disk: pinned while it is read back
  if (e.session == nullptr) {
    *on_disk = true;
    return SessionLease();
  }
  impl.RemoveFromLru(e);
  return LeaseOf(e.session.get());
}

absl::StatusOr<SessionLease> SessionStore::LoadPinned(const std::string& id) {
  Impl& impl = *impl_;
  const fs::path path = impl.StatePath(id);
  absl::StatusOr<std::string> bytes = ReadFile(path);
  absl::StatusOr<std::unique_ptr<Session>> loaded =
      bytes.ok() ? impl.Deserialize(*bytes)
                 : absl::StatusOr<std::unique_ptr<Session>>(bytes.status());
  if (!loaded.ok()) {
    std::error_code ec;
    const fs::path corrupt =
        fs::path(impl.options.spill_dir) / (id + kCorruptSuffix);
    fs::rename(path, corrupt, ec);
    fs::remove(impl.MetaPath(id), ec);
    {
      std::lock_guard<std::mutex> lock(impl.mu);
      impl.entries.erase(id);
    }
    return absl::DataLossError(
        absl::StrCat("session ", Quote(id),
                     " could not be read back from the spill "
                     "directory (",
                     loaded.status().message(),
                     "); the session is "
                     "dropped and its file kept as ",
                     corrupt.string()));
  }
  impl.RemoveSpillFiles(id);  // RAM now holds the newest state
  Session* session = nullptr;
  {
    std::lock_guard<std::mutex> lock(impl.mu);
    Impl::Entry& e = impl.entries.at(id);
    (*loaded)->id = id;
    (*loaded)->created = e.created;
    (*loaded)->last_used = e.last_used;
    e.session = *std::move(loaded);
    ++impl.in_ram;
    session = e.session.get();
  }
  SessionLease lease = LeaseOf(session);
  impl.RequestEvictionIfNeeded();
  return lease;
}

absl::StatusOr<SessionLease> SessionStore::Acquire(const std::string& id) {
  bool on_disk = false;
  ASSIGN_OR_RETURN(SessionLease lease, LeaseIfInRam(id, &on_disk));
  if (!on_disk) return lease;
  return LoadPinned(id);
}

void SessionStore::AcquireAsync(const std::string& id, LeaseCallback done) {
  bool on_disk = false;
  absl::StatusOr<SessionLease> lease = LeaseIfInRam(id, &on_disk);
  if (lease.ok() && on_disk) {
    Impl& impl = *impl_;
    {
      std::lock_guard<std::mutex> lock(impl.mu);
      impl.loads.push_back(Impl::Load{id, std::move(done)});
    }
    impl.io_wake.notify_one();
    return;
  }
  done(std::move(lease));
}

absl::Status SessionStore::CheckForkTarget(const std::string& new_id) {
  if (!new_id.empty()) RETURN_IF_ERROR(CheckClientId(new_id));
  std::lock_guard<std::mutex> lock(impl_->mu);  // fail fast, before copying
  return impl_->CheckCanAdd(new_id);
}

absl::StatusOr<SessionLease> SessionStore::ForkFrom(SessionLease source,
                                                    const std::string& new_id) {
  auto copy = std::make_unique<Session>();
  copy->state = source.session().state->Fork();
  copy->extras = source.session().extras;
  source = SessionLease();  // released unchanged (last_used as it was)
  copy->id = new_id;
  copy->created = copy->last_used = Clock::now();
  ASSIGN_OR_RETURN(Session * added, impl_->Insert(std::move(copy)));
  SessionLease lease = LeaseOf(added);
  impl_->RequestEvictionIfNeeded();
  return lease;
}

absl::StatusOr<SessionLease> SessionStore::Fork(const std::string& id,
                                                const std::string& new_id) {
  RETURN_IF_ERROR(CheckForkTarget(new_id));
  ASSIGN_OR_RETURN(SessionLease source, Acquire(id));
  return ForkFrom(std::move(source), new_id);
}

void SessionStore::ForkAsync(const std::string& id, const std::string& new_id,
                             LeaseCallback done) {
  absl::Status target = CheckForkTarget(new_id);
  if (!target.ok()) {
    done(target);
    return;
  }
  AcquireAsync(id, [this, new_id, done = std::move(done)](
                       absl::StatusOr<SessionLease> source) {
    if (!source.ok()) {
      done(source.status());
      return;
    }
    done(ForkFrom(*std::move(source), new_id));
  });
}

absl::StatusOr<std::string> SessionStore::Export(const std::string& id) {
  ASSIGN_OR_RETURN(SessionLease lease, Acquire(id));
  return impl_->Serialize(lease.session());
}

void SessionStore::ExportAsync(const std::string& id, BytesCallback done) {
  AcquireAsync(
      id, [this, done = std::move(done)](absl::StatusOr<SessionLease> lease) {
        if (!lease.ok()) {
          done(lease.status());
          return;
        }
        absl::StatusOr<std::string> bytes;
        {
          SessionLease held = *std::move(lease);
          bytes = impl_->Serialize(held.session());
        }  // released before `done`: the caller may lease it again at once
        done(std::move(bytes));
      });
}

absl::StatusOr<SessionLease> SessionStore::Import(std::string_view bytes,
                                                  const std::string& id) {
  if (!id.empty()) RETURN_IF_ERROR(CheckClientId(id));
  {
    std::lock_guard<std::mutex> lock(impl_->mu);  // fail fast, before parsing
    RETURN_IF_ERROR(impl_->CheckCanAdd(id));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Session> session, impl_->Deserialize(bytes));
  session->id = id;
  session->created = session->last_used = Clock::now();
  ASSIGN_OR_RETURN(Session * added, impl_->Insert(std::move(session)));
  SessionLease lease = LeaseOf(added);
  impl_->RequestEvictionIfNeeded();
  return lease;
}

absl::Status SessionStore::Delete(const std::string& id) {
  Impl& impl = *impl_;
  std::unique_ptr<Session> dropped;
  {
    std::lock_guard<std::mutex> lock(impl.mu);
    auto it = impl.entries.find(id);
    if (it == impl.entries.end()) return NotFound(id);
    Impl::Entry& e = it->second;
    if (e.leased) return Busy(id);
    if (e.io) return BeingWritten(id);
    if (e.session != nullptr) {
      dropped = std::move(e.session);
      impl.RemoveFromLru(e);
      --impl.in_ram;
      impl.entries.erase(it);
      return absl::OkStatus();  // `dropped` is freed after the unlock
    }
    e.io = true;  // on disk: pinned while its files go
  }
  impl.RemoveSpillFiles(id);
  std::lock_guard<std::mutex> lock(impl.mu);
  impl.entries.erase(id);
  return absl::OkStatus();
}

void SessionStore::Release(Session* session, bool delete_it) {
  Impl& impl = *impl_;
  std::unique_ptr<Session> dropped;
  {
    std::lock_guard<std::mutex> lock(impl.mu);
    auto it = impl.entries.find(session->id);
    Impl::Entry& e = it->second;
    // Under the mutex, with `leased`: Get never sees an idle session with a
    // call's progress, nor a busy one whose progress is already gone.
    session->progress.Reset();
    e.leased = false;
    if (delete_it) {
      dropped = std::move(e.session);
      --impl.in_ram;
      impl.entries.erase(it);
    } else {
      e.last_used = session->last_used;
      e.position = session->position();
      impl.AppendToLru(session->id, e);
    }
  }
  dropped.reset();
  impl.RequestEvictionIfNeeded();
}

absl::StatusOr<SessionSummary> SessionStore::Get(const std::string& id) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto it = impl_->entries.find(id);
  if (it == impl_->entries.end()) return NotFound(id);
  return impl_->SummaryOf(id, it->second);
}

std::vector<SessionSummary> SessionStore::List(const std::string& after,
                                               int64_t limit) const {
  std::vector<SessionSummary> out;
  std::lock_guard<std::mutex> lock(impl_->mu);
  for (auto it = impl_->entries.upper_bound(after);
       it != impl_->entries.end() &&
       (limit <= 0 || static_cast<int64_t>(out.size()) < limit);
       ++it) {
    out.push_back(impl_->SummaryOf(it->first, it->second));
  }
  return out;
}

int64_t SessionStore::size() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return static_cast<int64_t>(impl_->entries.size());
}

int64_t SessionStore::size_in_ram() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->in_ram;
}

int64_t SessionStore::state_bytes_in_ram() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->in_ram * impl_->model.StateBytes();
}

int64_t SessionStore::Sweep() {
  Impl& impl = *impl_;
  if (impl.options.idle_ttl.count() == 0) return 0;
  const Clock::time_point cutoff = Clock::now() - impl.options.idle_ttl;
  std::vector<std::unique_ptr<Session>> dropped;
  std::vector<std::string> on_disk;
  {
    std::lock_guard<std::mutex> lock(impl.mu);
    for (auto it = impl.entries.begin(); it != impl.entries.end();) {
      Impl::Entry& e = it->second;
      if (e.leased || e.io || e.last_used >= cutoff) {
        ++it;
      } else if (e.session != nullptr) {
        dropped.push_back(std::move(e.session));
        impl.RemoveFromLru(e);
        --impl.in_ram;
        it = impl.entries.erase(it);
      } else {
        e.io = true;
        on_disk.push_back(it->first);
        ++it;
      }
    }
  }
  const int64_t expired = static_cast<int64_t>(dropped.size() + on_disk.size());
  dropped.clear();
  for (const std::string& id : on_disk) impl.RemoveSpillFiles(id);
  if (!on_disk.empty()) {
    std::lock_guard<std::mutex> lock(impl.mu);
    for (const std::string& id : on_disk) impl.entries.erase(id);
  }
  if (on_expired) {
    for (int64_t i = 0; i < expired; ++i) on_expired();
  }
  return expired;
}

void SessionStore::WaitForEvictions() {
  Impl& impl = *impl_;
  std::unique_lock<std::mutex> lock(impl.mu);
  impl.evictions_done.wait(
      lock, [&impl] { return !impl.eviction_requested && !impl.evicting; });
}

absl::Status SessionStore::SpillAll() {
  Impl& impl = *impl_;
  if (!impl.spilling_enabled()) {
    return absl::FailedPreconditionError(
        "sessions cannot be saved: the server runs without --spill_dir");
  }
  std::vector<std::pair<std::string, Session*>> pinned;
  {
    // The I/O thread's eviction pass first: the session it writes is pinned
    // (skipped below), and one whose write fails goes back to the LRU.
    std::unique_lock<std::mutex> lock(impl.mu);
    impl.evictions_done.wait(lock, [&impl] { return !impl.evicting; });
    for (auto& [id, e] : impl.entries) {
      if (e.session == nullptr || e.leased || e.io) continue;
      impl.RemoveFromLru(e);
      e.io = true;
      ++impl.pinned_for_spill;
      pinned.emplace_back(id, e.session.get());
    }
  }
  absl::Status first_error;
  int64_t failed = 0;
  for (const auto& [id, session] : pinned) {
    absl::Status s = impl.SpillPinned(id, session);
    if (!s.ok() && ++failed == 1) first_error = s;
  }
  if (failed == 0) return absl::OkStatus();
  return absl::Status(
      first_error.code(),
      absl::StrCat(failed, " of ", pinned.size(),
                   " sessions could not be saved (they stay in RAM); first: ",
                   first_error.message()));
}

}  // namespace linserve::server
