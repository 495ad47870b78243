#ifndef SHUTTER_COMMON_STATUS_MACROS_H_
#define SHUTTER_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                          \
  do {                                                 \
    ::absl::Status shutter_status_ = (expr);           \
    if (!shutter_status_.ok()) return shutter_status_; \
  } while (0)

#define SHUTTER_CONCAT_INNER_(a, b) a##b
#define SHUTTER_CONCAT_(a, b) SHUTTER_CONCAT_INNER_(a, b)

// ASSIGN_OR_RETURN(lhs, expr): evaluates `expr` (an absl::StatusOr<T>);
// returns its status on error, otherwise moves the value into `lhs`, which
// may be a declaration (`auto x`) or an existing variable.
#define ASSIGN_OR_RETURN(lhs, expr)                                            \
  SHUTTER_ASSIGN_OR_RETURN_IMPL_(SHUTTER_CONCAT_(shutter_sor_, __LINE__), lhs, \
                                 expr)

#define SHUTTER_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return tmp.status();                  \
  lhs = std::move(tmp).value()

#endif  // SHUTTER_COMMON_STATUS_MACROS_H_
