// Status propagation macros for absl::Status / absl::StatusOr.
//
// Abseil 20220623 (Debian bookworm) ships no status macros, so linserve
// defines its own:
//
//   absl::Status Load(...) {
//     RETURN_IF_ERROR(CheckHeader(file));
//     ASSIGN_OR_RETURN(Tensor t, ReadTensor(file, "lm_head.weight"));
//     ...
//   }
#ifndef LINSERVE_COMMON_STATUS_MACROS_H_
#define LINSERVE_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define LINSERVE_STATUS_CONCAT_INNER(a, b) a##b
#define LINSERVE_STATUS_CONCAT(a, b) LINSERVE_STATUS_CONCAT_INNER(a, b)

// Evaluates `expr` (an absl::Status); returns it from the enclosing function
// if it is not OK.
#define RETURN_IF_ERROR(expr)                            \
  do {                                                   \
    ::absl::Status linserve_status_ = (expr);            \
    if (!linserve_status_.ok()) return linserve_status_; \
  } while (false)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status,
// otherwise moves the value into `lhs` (a declaration or an lvalue).
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  LINSERVE_ASSIGN_OR_RETURN_IMPL(    \
      LINSERVE_STATUS_CONCAT(linserve_statusor_, __LINE__), lhs, rexpr)

#define LINSERVE_ASSIGN_OR_RETURN_IMPL(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                   \
  if (!statusor.ok()) return std::move(statusor).status();   \
  lhs = std::move(statusor).value()

#endif  // LINSERVE_COMMON_STATUS_MACROS_H_
