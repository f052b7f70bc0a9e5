// Where the threads of a process that runs OpenMP kernels may run, when
// OpenMP pins threads (OMP_PROC_BIND set, or OMP_PLACES).
//
// libgomp then binds the process's initial thread to the first place as it
// starts, before main(). Every thread created later inherits that one CPU:
// in the server, gRPC's threads, the signal and sweep threads and the engine
// thread would all share the CPU of the OpenMP team's first place, and queue
// behind each other and the engine's kernels. The server therefore lets its
// main thread run anywhere again before it starts any thread
// (UnpinCallingThread), and the engine thread, the primary thread of every
// OpenMP team, takes the first place back (PinCallingThreadToFirstPlace), so
// that the team is laid out exactly as libgomp would lay it out for the
// initial thread. Without OpenMP binding both do nothing.
#ifndef LINSERVE_KERNELS_THREAD_AFFINITY_H_
#define LINSERVE_KERNELS_THREAD_AFFINITY_H_

#include <string>

namespace linserve::kernels {

// Whether OpenMP binds threads to places (OMP_PROC_BIND / OMP_PLACES).
bool OpenMpBindsThreads();

// Lets the calling thread run on every CPU of every OpenMP place. Returns
// false (and changes nothing) when binding is off or the call fails.
bool UnpinCallingThread();

// Binds the calling thread to the CPUs of the first OpenMP place. Returns
// false (and changes nothing) when binding is off or the call fails.
bool PinCallingThreadToFirstPlace();

// The calling thread's CPUs, as "0-3,8" (for logs and tests).
std::string CallingThreadCpus();

}  // namespace linserve::kernels

#endif  // LINSERVE_KERNELS_THREAD_AFFINITY_H_
