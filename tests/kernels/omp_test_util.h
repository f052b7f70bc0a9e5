// The OpenMP team size for the length of a test, whatever the machine's
// core count, and back afterwards:
//
//   const ScopedTeamSize six(6);  // regions from here on run on 6 threads
#ifndef LINSERVE_TESTS_KERNELS_OMP_TEST_UTIL_H_
#define LINSERVE_TESTS_KERNELS_OMP_TEST_UTIL_H_

#include <omp.h>

namespace linserve::testing {

class ScopedTeamSize {
 public:
  explicit ScopedTeamSize(int threads) : previous_(omp_get_max_threads()) {
    omp_set_num_threads(threads);
  }
  ~ScopedTeamSize() { omp_set_num_threads(previous_); }
  ScopedTeamSize(const ScopedTeamSize&) = delete;
  ScopedTeamSize& operator=(const ScopedTeamSize&) = delete;

 private:
  int previous_;
};

}  // namespace linserve::testing

#endif  // LINSERVE_TESTS_KERNELS_OMP_TEST_UTIL_H_
