#ifndef SHUTTER_CONTROLLER_RETRY_POLICY_H_
#define SHUTTER_CONTROLLER_RETRY_POLICY_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace shutter::controller {

// What a failed CreateCheckpoint call means for its task. Decided from the
// error's ErrorReason (common/error_reason.h), which nodes attach to every
// error they return; the gRPC code alone decides only for errors no node
// answered (the transport's own). The table is in docs/fault-tolerance.md.
enum class FailureClass {
  // No answer from the node: connection refused or reset, the call
  // cancelled by a node going down, or the node starting or shutting down
  // (NODE_UNAVAILABLE). The task waits for the node (or, once the registry
  // declares it dead, for a new leader). Not an attempt.
  kUnreachable,
  // The node answered that it is not the leader the controller expected:
  // STALE_EPOCH, NOT_LEADER, NOT_HOSTED, WRONG_INCARNATION. The leader is
  // re-resolved and the task retried. An attempt.
  kLeadership,
  // The node is busy (NODE_BUSY: free-space floor). Retried after a
  // backoff. An attempt.
  kBusy,
  // The node took longer than the RPC deadline (no answer, but it was
  // reached or is frozen). Retried after a backoff. An attempt.
  kDeadline,
  // A failure that may pass: the publish hit a full or unavailable
  // repository (CHECKPOINT_FAILED with RESOURCE_EXHAUSTED, UNAVAILABLE or
  // ABORTED), or the node's answer did not match the request or the
  // repository (MISMATCHED_ANSWER). Retried after a backoff. An attempt.
  kTransient,
  // The repository is being garbage-collected (REPOSITORY_BUSY): the task
  // waits for the collection to end, polling, like a wait for an
  // unreachable node. Not an attempt.
  kRepositoryBusy,
  // Retrying cannot help: the snapshot was cancelled on the node
  // (CANCELLED), the request is invalid (INVALID_REQUEST), the checkpoint
  // failed for another reason, or an error with an unknown reason, or with
  // none and a code other than UNAVAILABLE / CANCELLED / DEADLINE_EXCEEDED
  // (e.g. a repository manifest in another format). The task fails.
  kPermanent,
};

// The class of a failure that says no more than its code (a node's
// CHECKPOINT_FAILED; work the controller does itself): RESOURCE_EXHAUSTED,
// UNAVAILABLE, ABORTED and DEADLINE_EXCEEDED may pass (transient), anything
// else is permanent.
FailureClass ClassifyByCode(absl::StatusCode code);
FailureClass ClassifyCheckpointFailure(const absl::Status& error);

// "unreachable", "leadership", "busy", "deadline", "transient",
// "repository_busy", "permanent".
absl::string_view FailureClassName(FailureClass c);

// True for the classes that count against the task's max_attempts.
inline bool CountsAsAttempt(FailureClass c) {
  return c != FailureClass::kUnreachable && c != FailureClass::kRepositoryBusy;
}

// True for the classes that are retried.
inline bool IsRetryable(FailureClass c) {
  return c != FailureClass::kPermanent;
}

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_RETRY_POLICY_H_
