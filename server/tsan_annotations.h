// The happens-before edges that gRPC's callback API guarantees to a reactor,
// told to ThreadSanitizer. Debian's gRPC and Abseil are not built with TSan:
// the locks, atomics and completion queues through which gRPC orders a
// reactor's operations and the reactions that follow run in uninstrumented
// code, so TSan would see the reactor's own fields race between the thread
// that started an operation and the gRPC thread that runs its reaction.
//
// TsanHappensBefore(object) / TsanHappensAfter(object): what one thread did
// before the first happens before what another does after the second (on
// the same object), for orderings gRPC makes in uninstrumented code.
//
// GrpcOrderedReactor<Base> is the gRPC reactor base `Base` with these edges:
// every StartRead, StartWrite and Finish (from any thread) releases, and
// every reaction acquires as its first statement, on the reactor; so does
// handing the new reactor to gRPC. This models gRPC's documented guarantees
// only (a reaction follows the operation that caused it, and OnDone follows
// them all): races between linserve's own threads (the engine thread, the
// callback executor, the store's I/O thread) stay visible, ordered only by
// linserve's own mutexes. Without TSan every function here is empty.
//
//   class GenerateReactor final
//       : public GrpcOrderedReactor<grpc::ServerWriteReactor<Response>> {
//     void OnWriteDone(bool ok) override {
//       AcquireGrpcOrder();
//       ...
//     }
//   };
//   return HandedToGrpc(new GenerateReactor(...));
#ifndef LINSERVE_SERVER_TSAN_ANNOTATIONS_H_
#define LINSERVE_SERVER_TSAN_ANNOTATIONS_H_

#include <grpcpp/grpcpp.h>

#include <utility>

#if defined(__SANITIZE_THREAD__)
#define LINSERVE_TSAN_ANNOTATIONS 1
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace linserve::server {

inline void TsanHappensBefore(const void* object) {
#if defined(LINSERVE_TSAN_ANNOTATIONS)
  __tsan_release(const_cast<void*>(object));
#else
  (void)object;
#endif
}

inline void TsanHappensAfter(const void* object) {
#if defined(LINSERVE_TSAN_ANNOTATIONS)
  __tsan_acquire(const_cast<void*>(object));
#else
  (void)object;
#endif
}

template <typename Base>
class GrpcOrderedReactor : public Base {
 public:
  // Hide Base's operations: each releases first.
  template <typename... Args>
  void StartRead(Args&&... args) {
    ReleaseGrpcOrder();
    Base::StartRead(std::forward<Args>(args)...);
  }
  template <typename... Args>
  void StartWrite(Args&&... args) {
    ReleaseGrpcOrder();
    Base::StartWrite(std::forward<Args>(args)...);
  }
  void Finish(grpc::Status status) {
    ReleaseGrpcOrder();
    Base::Finish(std::move(status));
  }

  // Everything this thread did so far happens before the reactions to come.
  void ReleaseGrpcOrder() {
    TsanHappensBefore(static_cast<GrpcOrderedReactor*>(this));
  }

 protected:
  // The first statement of every reaction (OnReadDone, OnWriteDone,
  // OnCancel, OnDone).
  void AcquireGrpcOrder() {
    TsanHappensAfter(static_cast<GrpcOrderedReactor*>(this));
  }
};

// What a service method returns: the new reactor, its construction released
// to the reactions gRPC will run.
template <typename Reactor>
Reactor* HandedToGrpc(Reactor* reactor) {
  reactor->ReleaseGrpcOrder();
  return reactor;
}

}  // namespace linserve::server

#endif  // LINSERVE_SERVER_TSAN_ANNOTATIONS_H_
