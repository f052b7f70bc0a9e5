// The server's sessions: id -> Session, with exclusive leases (one call at a
// time per session), a limit on sessions held in RAM beyond which the least
// recently used idle sessions are written to a spill directory (and read
// back transparently when next leased), an idle TTL after which a session is
// deleted, and a total limit. Spilled files are the engine's state format
// (engine/state_format.h, extras = engine/session_extras.h), one file per
// session, written atomically (temp file + rename), so a restarted server
// with the same directory finds every session it had (SpillAll on drain).
//
// Thread-safe: every method may be called from any thread (gRPC reactions
// and the engine thread). Disk I/O happens on a store-owned I/O thread, not
// on the caller's, except in the methods marked "may block on disk" (for
// tests and the drain, never for a gRPC reaction or the engine thread) and
// the unlinks of Delete and Sweep (no data read or written):
//   - Eviction: a release or addition that puts RAM past
//     max_sessions_in_ram only marks the need and wakes the I/O thread, which
//     writes the least recently released idle sessions out. Until it has,
//     RAM holds more than max_sessions_in_ram sessions (briefly: one file
//     write per excess session; longer if writes fail, e.g. disk full, when
//     the sessions stay in RAM rather than being lost).
//   - Loading: AcquireAsync / ForkAsync / ExportAsync of a spilled session
//     read its file on the I/O thread and call back there; a session already
//     in RAM (and every error found without the disk) calls back inline.
// Methods never hold the store's mutex while doing disk I/O or copying a
// state, so a lease or lookup of one session is never stuck behind another's
// spill, and nothing ever waits for a session: a session that is leased
// (also while it is being read back), or that the store is writing to disk
// (a spill, at most one file write long), answers Aborted at once and the
// caller retries.
//
// Spill directory: `<id>.lsvstate` is the session's state exactly as Export
// gives it (a valid import for another replica), `<id>.lsvmeta` a small text
// sidecar with its created and last-used times (a state file without one
// takes both from its mtime). Both are written to `.tmp` and renamed. A
// session read back into RAM has its files removed, so the directory only
// ever holds sessions whose newest state is there (after a crash, a session
// that was in RAM is lost rather than resurrected with an older state).
// Files are not fsynced: they outlive the process, not a machine crash (a
// file torn by one reads back as DataLoss).
//
//   ASSIGN_OR_RETURN(SessionLease lease, store.Acquire(id));  // or Create
//   Session& s = lease.session();  // exclusive until the lease is dropped
//   ... s.state, s.extras ...
//   lease.Commit();   // marks it used now; dropping the lease releases it
//
//   // From a gRPC reaction: never blocks; `done` runs inline or on the I/O
//   // thread (the caller must stay alive until it has run).
//   store.AcquireAsync(id, [this](absl::StatusOr<SessionLease> lease) {...});
//
// Errors (absl codes; server/ maps them to gRPC once):
//   NotFound          unknown (or expired) id: "session 'x' not found ..."
//   AlreadyExists     Create with a client id that is taken
//   InvalidArgument   a client id that is not 1-128 of [A-Za-z0-9._-]
//   Aborted           the session is leased by another call: "session 'x'
//                     is busy with another call; calls on one session must
//                     be sequential: retry when it finishes"
//   ResourceExhausted max_sessions reached (naming the limit and the flag)
//   DataLoss          a spilled file that cannot be read back (the session
//                     is then dropped and the file kept as <id>.corrupt)
//   Unavailable       (async calls) the store was destroyed before the
//                     session could be read back
#ifndef LINSERVE_SERVER_SESSION_STORE_H_
#define LINSERVE_SERVER_SESSION_STORE_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model.h"
#include "server/session.h"

namespace linserve::server {

struct SessionStoreOptions {
  // Sessions kept in RAM; past it, idle sessions spill, least recently
  // released first. >= 1.
  int64_t max_sessions_in_ram = 1024;
  // Sessions in all (RAM + spill); Create/Fork/Import past it:
  // ResourceExhausted. >= max_sessions_in_ram.
  int64_t max_sessions = 100000;
  // Idle time after which a session is deleted (by Sweep). Zero: never.
  std::chrono::seconds idle_ttl{24 * 3600};
  // Directory for spilled sessions; created if missing. Empty: no spilling
  // (then max_sessions_in_ram bounds max_sessions as well).
  std::string spill_dir;
};

// What GetSession / ListSessions report.
struct SessionSummary {
  std::string id;
  int64_t position = 0;
  Clock::time_point created, last_used;
  bool in_ram = true;
  bool busy = false;
  // While busy: the running call's progress (Session::progress, as the
  // engine thread last published it); 0 otherwise.
  int64_t in_flight_tokens_fed = 0;
  int64_t in_flight_tokens_queued = 0;
  int64_t in_flight_bytes_received = 0;
};

class SessionStore;

// Exclusive use of one session. Move-only; dropping it releases the session
// and, if RAM holds more than max_sessions_in_ram, wakes the store's I/O
// thread to spill the least recently released idle sessions (the dropping
// thread never writes). The holder must not change session().id.
class SessionLease {
 public:
  SessionLease() = default;
  SessionLease(SessionLease&&) noexcept;
  SessionLease& operator=(SessionLease&&) noexcept;
  ~SessionLease();

  bool valid() const { return session_ != nullptr; }
  Session& session() { return *session_; }
  const Session& session() const { return *session_; }
  // Marks the session as used now (last_used = now); call when a call on it
  // succeeds. A lease dropped without Commit leaves last_used as it was.
  void Commit();
  // Deletes the session when the lease is dropped (DeleteSession on a
  // session leased by the caller itself; a fresh session a failed call
  // created).
  void DeleteOnRelease() { delete_on_release_ = true; }

 private:
  friend class SessionStore;
  SessionStore* store_ = nullptr;
  Session* session_ = nullptr;
  bool delete_on_release_ = false;
};

class SessionStore {
 public:
  // `model` must outlive the store. Reads spill_dir and registers every
  // session file found there (as spilled: they load on first use). Only
  // each file's size, 128-byte header and extras flags are read here (this
  // model? position?); the checksum and contents are checked when the
  // session is read back (DataLoss then, as for any spill file). Files that
  // are not states of this model do not fail startup: another model's are
  // left alone, damaged ones renamed to <id>.corrupt, and each is reported
  // in startup_warnings(). InvalidArgument for inconsistent options; an
  // error if spill_dir cannot be created or listed.
  static absl::StatusOr<std::unique_ptr<SessionStore>> Open(
      const engine::Model& model, const SessionStoreOptions& options);
  // Every lease must have been dropped. Does not spill: call SpillAll.
  // Stops the I/O thread after the write or load in progress: evictions
  // not yet written are abandoned (the sessions are dropped with the store),
  // and async calls still queued are answered Unavailable.
  ~SessionStore();

  // What the async methods call back with.
  using LeaseCallback = std::function<void(absl::StatusOr<SessionLease>)>;
  using BytesCallback = std::function<void(absl::StatusOr<std::string>)>;

  // A new, empty session (id empty: 128 random bits as 32 hex digits),
  // leased to the caller.
  absl::StatusOr<SessionLease> Create(const std::string& id = "");
  // Leases an existing session, loading it from the spill directory if
  // needed. Aborted if it is leased. May block on disk (a spilled session is
  // read on the calling thread): reactions use AcquireAsync.
  absl::StatusOr<SessionLease> Acquire(const std::string& id);
  // Acquire without blocking: `done` gets the lease (or Acquire's error)
  // inline when the session is in RAM or the answer needs no disk, else on
  // the store's I/O thread once the file is read. The session counts as
  // leased while it loads (a second Acquire is Aborted). `done` must not
  // block: on the I/O thread it holds up every other load and eviction, and
  // SpillAll or WaitForEvictions there would wait for themselves.
  void AcquireAsync(const std::string& id, LeaseCallback done);
  // A new session holding a copy of `id`'s state and extras, leased to the
  // caller (the source is leased only while it is copied, so Aborted if it
  // is leased; its last_used is unchanged). May block on disk (a spilled
  // source is read on the calling thread): reactions use ForkAsync.
  absl::StatusOr<SessionLease> Fork(const std::string& id,
                                    const std::string& new_id = "");
  // Fork without blocking: as AcquireAsync (a spilled source is read and
  // copied on the I/O thread, which then calls `done`).
  void ForkAsync(const std::string& id, const std::string& new_id,
                 LeaseCallback done);
  // The session's state in the engine's state format with its extras
  // (what ExportSession streams and spill files hold). Aborted if leased.
  // May block on disk: reactions use ExportAsync.
  absl::StatusOr<std::string> Export(const std::string& id);
  // Export without blocking: as AcquireAsync (a spilled session is read and
  // serialized on the I/O thread, which then calls `done`).
  void ExportAsync(const std::string& id, BytesCallback done);
  // A new session from exported bytes, leased to the caller. Errors of
  // engine::DeserializeSessionState (FailedPrecondition: another model;
  // DataLoss: damaged) or of ParseSessionExtras (InvalidArgument); nothing
  // is created on error.
  absl::StatusOr<SessionLease> Import(std::string_view bytes,
                                      const std::string& id = "");
  // Deletes a session (and its spill file). Aborted if leased. A spilled
  // session's two files are unlinked on the calling thread (no data is read
  // or written).
  absl::Status Delete(const std::string& id);

  // A leased session reports the position and times of its last release,
  // and the progress its lease holder's call has published so far
  // (Session::progress; zeroed when the lease is released).
  absl::StatusOr<SessionSummary> Get(const std::string& id) const;
  // Sessions ordered by id, starting after `after` (exclusive), at most
  // `limit` (limit <= 0: all).
  std::vector<SessionSummary> List(const std::string& after,
                                   int64_t limit) const;

  int64_t size() const;         // all sessions
  int64_t size_in_ram() const;  // sessions whose state is in RAM
  // Bytes of the recurrent states in RAM (size_in_ram x the model's
  // StateBytes; the extras, a vocabulary bitmap each, not counted).
  int64_t state_bytes_in_ram() const;

  // What Open found in spill_dir and did not register, one line each
  // (file, reason, what was done with it).
  const std::vector<std::string>& startup_warnings() const;

  // Deletes sessions idle past the TTL (not leased ones). Returns how many.
  // The server calls it periodically (from its own thread: spilled sessions'
  // files are unlinked on the calling thread).
  int64_t Sweep();
  // Writes every session in RAM that is not leased to the spill directory
  // and drops it from RAM (drain, shutdown), on the calling thread, after
  // waiting for the eviction the I/O thread is running (so on return no
  // idle session is left in RAM but those whose write failed). May block on
  // disk. FailedPrecondition if there is no spill directory; the first write
  // error if a write fails (the others are still attempted, and a session
  // that failed stays in RAM).
  absl::Status SpillAll();
  // Blocks until the evictions requested so far are done: RAM is back
  // within max_sessions_in_ram, or no idle session is left to spill, or a
  // write failed (each eviction's on_evicted has been called). For tests;
  // may block on disk.
  void WaitForEvictions();

  // Observers for metrics (issue 5): called after an eviction to spill (on
  // the I/O thread), an expiry (on the thread of Sweep), outside the store's
  // mutex. May be empty. Set them before the store is shared between
  // threads.
  std::function<void()> on_evicted;
  std::function<void()> on_expired;

 private:
  friend class SessionLease;
  SessionStore(const engine::Model& model, SessionStoreOptions options);
  void Release(Session* session, bool delete_it);
  SessionLease LeaseOf(Session* session);
  // The part of Acquire that needs no disk: an error, the lease of a
  // session in RAM, or (*on_disk set, the lease empty) a spilled session
  // now pinned as leased for LoadPinned.
  absl::StatusOr<SessionLease> LeaseIfInRam(const std::string& id,
                                            bool* on_disk);
  // Reads pinned spilled session `id` back into RAM (on the calling thread).
  absl::StatusOr<SessionLease> LoadPinned(const std::string& id);
  // Fork's checks of the new id, before anything is copied.
  absl::Status CheckForkTarget(const std::string& new_id);
  // Fork's second half: copies the leased source into a new session.
  absl::StatusOr<SessionLease> ForkFrom(SessionLease source,
                                        const std::string& new_id);
  // The I/O thread: loads queued by the async methods, and evictions.
  void RunIoThread();

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace linserve::server

#endif  // LINSERVE_SERVER_SESSION_STORE_H_
