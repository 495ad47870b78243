#include "common/error_reason.h"

#include "absl/strings/cord.h"

namespace shutter {

namespace {
constexpr char kPayloadUrl[] = "type.shutter.dev/shutter.v1.ErrorReason";

struct Entry {
  ErrorReason reason;
  absl::string_view name;
};
constexpr Entry kNames[] = {
    {ErrorReason::kUnspecified, "UNSPECIFIED"},
    {ErrorReason::kStaleEpoch, "STALE_EPOCH"},
    {ErrorReason::kNotLeader, "NOT_LEADER"},
    {ErrorReason::kNotHosted, "NOT_HOSTED"},
    {ErrorReason::kNodeBusy, "NODE_BUSY"},
    {ErrorReason::kNodeUnavailable, "NODE_UNAVAILABLE"},
    {ErrorReason::kWrongIncarnation, "WRONG_INCARNATION"},
    {ErrorReason::kCancelled, "CANCELLED"},
    {ErrorReason::kInvalidRequest, "INVALID_REQUEST"},
    {ErrorReason::kCheckpointFailed, "CHECKPOINT_FAILED"},
    {ErrorReason::kMismatchedAnswer, "MISMATCHED_ANSWER"},
    {ErrorReason::kRepositoryBusy, "REPOSITORY_BUSY"},
    {ErrorReason::kStaleController, "STALE_CONTROLLER"},
};
}  // namespace

absl::string_view ErrorReasonName(ErrorReason r) {
  for (const Entry& e : kNames) {
    if (e.reason == r) return e.name;
  }
  return "UNSPECIFIED";
}

ErrorReason ErrorReasonFromName(absl::string_view name) {
  for (const Entry& e : kNames) {
    if (e.name == name) return e.reason;
  }
  return ErrorReason::kUnspecified;
}

absl::Status WithReason(absl::Status s, ErrorReason reason) {
  if (s.ok() || reason == ErrorReason::kUnspecified) return s;
  s.SetPayload(kPayloadUrl, absl::Cord(ErrorReasonName(reason)));
  return s;
}

ErrorReason GetErrorReason(const absl::Status& s) {
  auto p = s.GetPayload(kPayloadUrl);
  if (!p.has_value()) return ErrorReason::kUnspecified;
  return ErrorReasonFromName(std::string(*p));
}

}  // namespace shutter
