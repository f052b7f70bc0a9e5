// Thread affinity around OpenMP binding (kernels/thread_affinity.h), from
// the places libgomp parsed at startup (omp_get_place_proc_ids).
#include "kernels/thread_affinity.h"

#include <omp.h>
#include <pthread.h>
#include <sched.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace linserve::kernels {
namespace {

// Adds the CPUs of OpenMP place `place` to `set`.
void AddPlace(int place, cpu_set_t* set) {
  const int count = omp_get_place_num_procs(place);
  if (count <= 0) return;
  std::vector<int> ids(count);
  omp_get_place_proc_ids(place, ids.data());
  for (int id : ids) {
    if (id >= 0 && id < CPU_SETSIZE) CPU_SET(id, set);
  }
}

bool SetCallingThreadCpus(const cpu_set_t& set) {
  if (CPU_COUNT(&set) == 0) return false;
  return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
}

}  // namespace

bool OpenMpBindsThreads() {
  return omp_get_proc_bind() != omp_proc_bind_false && omp_get_num_places() > 0;
}

bool UnpinCallingThread() {
  if (!OpenMpBindsThreads()) return false;
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int p = 0; p < omp_get_num_places(); ++p) AddPlace(p, &set);
  return SetCallingThreadCpus(set);
}

bool PinCallingThreadToFirstPlace() {
  if (!OpenMpBindsThreads()) return false;
  cpu_set_t set;
  CPU_ZERO(&set);
  AddPlace(0, &set);
  return SetCallingThreadCpus(set);
}

std::string CallingThreadCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (pthread_getaffinity_np(pthread_self(), sizeof(set), &set) != 0) {
    return "?";
  }
  std::string out;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &set)) continue;
    int last = cpu;
    while (last + 1 < CPU_SETSIZE && CPU_ISSET(last + 1, &set)) ++last;
    absl::StrAppend(&out, out.empty() ? "" : ",", cpu);
    if (last > cpu) absl::StrAppend(&out, "-", last);
    cpu = last;
  }
  return out;
}

}  // namespace linserve::kernels
