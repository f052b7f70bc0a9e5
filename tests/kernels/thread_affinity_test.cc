// kernels/thread_affinity.h. Without OpenMP binding (the normal test run)
// nothing changes; with it (the "[.affinity_bound]" cases, which ctest runs
// with OMP_PROC_BIND=close) the initial thread starts pinned to the first
// place, UnpinCallingThread lets it and the threads it creates run on every
// place's CPUs, and PinCallingThreadToFirstPlace takes the first place back.
#include "kernels/thread_affinity.h"

#include <omp.h>

#include <catch2/catch.hpp>

#include <string>
#include <thread>

namespace linserve::kernels {
namespace {

std::string CpusOfNewThread() {
  std::string cpus;
  std::thread([&] { cpus = CallingThreadCpus(); }).join();
  return cpus;
}

TEST_CASE("without OpenMP binding the affinity helpers change nothing",
          "[thread_affinity]") {
  if (OpenMpBindsThreads()) {
    WARN("OMP_PROC_BIND or OMP_PLACES is set: checked by [affinity_bound]");
    return;
  }
  const std::string before = CallingThreadCpus();
  CHECK(!UnpinCallingThread());
  CHECK(!PinCallingThreadToFirstPlace());
  CHECK(CallingThreadCpus() == before);
  CHECK(CpusOfNewThread() == before);
}

TEST_CASE(
    "with OpenMP binding, unpinning frees the threads created after it and "
    "pinning takes the first place back",
    "[.affinity_bound]") {
  REQUIRE(OpenMpBindsThreads());
  REQUIRE(omp_get_num_places() >= 1);
  // libgomp pinned this (initial) thread to the first place at startup.
  const std::string first_place = CallingThreadCpus();
  CHECK(CpusOfNewThread() == first_place);

  REQUIRE(UnpinCallingThread());
  const std::string all = CallingThreadCpus();
  CHECK(CpusOfNewThread() == all);
  if (omp_get_num_places() > 1) CHECK(all != first_place);

  REQUIRE(PinCallingThreadToFirstPlace());
  CHECK(CallingThreadCpus() == first_place);
  // An OpenMP team started from here is laid out from the first place.
  int team = 0;
#pragma omp parallel
  {
#pragma omp single
    team = omp_get_num_threads();
  }
  CHECK(team == omp_get_max_threads());
}

}  // namespace
}  // namespace linserve::kernels
