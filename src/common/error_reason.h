#ifndef SHUTTER_COMMON_ERROR_REASON_H_
#define SHUTTER_COMMON_ERROR_REASON_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace shutter {

// Why a node refused or failed a request, in a form the controller can act
// on without parsing messages or guessing from the status code. A node
// attaches the reason to the error it returns; on the wire it travels as
// the trailing metadata entry "shutter-error-reason: <name>" (see
// proto/shutter/v1/node.proto), inside a process as an absl::Status
// payload. An error without one is classified by the controller from its
// code alone, conservatively (docs/fault-tolerance.md).
enum class ErrorReason {
  kUnspecified,
  // The request's expected epoch is not the node's current one.
  kStaleEpoch,
  // The node hosts the partition but does not lead it.
  kNotLeader,
  // The node does not host the partition.
  kNotHosted,
  // The node refuses new work for now (free-space floor, out of slots).
  kNodeBusy,
  // The node is starting or stopping and takes no checkpoints.
  kNodeUnavailable,
  // The request named another incarnation of the node (it restarted with
  // another data directory, or another process took over its address).
  kWrongIncarnation,
  // The snapshot was cancelled on the node.
  kCancelled,
  // The request itself is invalid; retrying cannot help.
  kInvalidRequest,
  // The checkpoint or publish failed on the node (I/O error, full
  // repository, ...).
  kCheckpointFailed,
  // Controller-side only: a node's answer did not match the request or
  // what the repository holds.
  kMismatchedAnswer,
  // The repository is being garbage-collected: nothing went wrong, the
  // publish may start again once the collection ends (the controller waits
  // for it without spending an attempt).
  kRepositoryBusy,
  // The request came from a controller whose term is older than the
  // newest this node has seen: a deposed leader (controller high
  // availability). Its successor does the work.
  kStaleController,
};

// "STALE_EPOCH", "NOT_LEADER", ...; "UNSPECIFIED" for kUnspecified.
absl::string_view ErrorReasonName(ErrorReason r);
// Inverse of ErrorReasonName; kUnspecified for unknown names.
ErrorReason ErrorReasonFromName(absl::string_view name);

// Returns `s` with `reason` attached (no-op for OK).
absl::Status WithReason(absl::Status s, ErrorReason reason);
// The reason attached to `s`, or kUnspecified.
ErrorReason GetErrorReason(const absl::Status& s);

}  // namespace shutter

#endif  // SHUTTER_COMMON_ERROR_REASON_H_
