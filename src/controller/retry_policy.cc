#include "controller/retry_policy.h"

#include "common/error_reason.h"

namespace shutter::controller {

FailureClass ClassifyByCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kDeadlineExceeded:
      return FailureClass::kTransient;
    default:
      return FailureClass::kPermanent;
  }
}

FailureClass ClassifyCheckpointFailure(const absl::Status& error) {
  switch (GetErrorReason(error)) {
    case ErrorReason::kStaleEpoch:
    case ErrorReason::kNotLeader:
    case ErrorReason::kNotHosted:
    case ErrorReason::kWrongIncarnation:
      return FailureClass::kLeadership;
    case ErrorReason::kNodeBusy:
      return FailureClass::kBusy;
    case ErrorReason::kNodeUnavailable:
    // This controller was deposed: it stops soon; until then the task
    // waits rather than fails (its successor finishes it).
    case ErrorReason::kStaleController:
      return FailureClass::kUnreachable;
    case ErrorReason::kMismatchedAnswer:
      return FailureClass::kTransient;
    case ErrorReason::kRepositoryBusy:
      return FailureClass::kRepositoryBusy;
    case ErrorReason::kCheckpointFailed:
      return ClassifyByCode(error.code());
    case ErrorReason::kCancelled:
    case ErrorReason::kInvalidRequest:
      return FailureClass::kPermanent;
    case ErrorReason::kUnspecified:
      break;
  }
  // No reason: no node answered; the transport speaks.
  switch (error.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kCancelled:
    // Every Shutter node serves CreateCheckpoint: UNIMPLEMENTED means the
    // node's old address now belongs to some other gRPC server (its port
    // was reused after a restart). The node is not there: wait for it.
    case absl::StatusCode::kUnimplemented:
      return FailureClass::kUnreachable;
    case absl::StatusCode::kDeadlineExceeded:
      return FailureClass::kDeadline;
    default:
      return FailureClass::kPermanent;
  }
}

absl::string_view FailureClassName(FailureClass c) {
  switch (c) {
    case FailureClass::kUnreachable:
      return "unreachable";
    case FailureClass::kLeadership:
      return "leadership";
    case FailureClass::kBusy:
      return "busy";
    case FailureClass::kDeadline:
      return "deadline";
    case FailureClass::kTransient:
      return "transient";
    case FailureClass::kRepositoryBusy:
      return "repository_busy";
    case FailureClass::kPermanent:
      return "permanent";
  }
  return "?";
}

}  // namespace shutter::controller
