#ifndef SHUTTER_CONTROLLER_JOB_RECORDS_H_
#define SHUTTER_CONTROLLER_JOB_RECORDS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "shutter/store/v1/job_records.pb.h"
#include "shutter/v1/admin.pb.h"

namespace shutter::controller {

// The format of the job store's records this controller writes and reads
// (proto/shutter/store/v1/job_records.proto); older formats are migrated
// at load, newer ones refused.
inline constexpr int kJobFormat = 2;

// Translation between the engine's jobs in memory (a shutter.v1.Snapshot
// header and its shutter.v1.PartitionTask tasks) and the job store's own
// records. The only place that knows both schemas. Pure functions.

// A job's header as its record. Its kind-specific fields go to the
// payload of its type; fields a type does not use are not recorded.
shutter::store::v1::JobRecord ToJobRecord(const shutter::v1::Snapshot& header);
// A task as its record (fields its job's header holds -- the source
// snapshot, deep -- are not repeated per task).
shutter::store::v1::TaskRecord ToTaskRecord(
    absl::string_view job_id, const shutter::v1::PartitionTask& task);

// The header a record describes (no partitions). NOT_FOUND if its kind is
// not one this controller knows (a newer controller's: left alone);
// DATA_LOSS for a record that is not a job header.
absl::StatusOr<shutter::v1::Snapshot> FromJobRecord(
    const shutter::store::v1::JobRecord& record);
// The task a record describes, with what its job's `header` holds for
// every task filled in.
shutter::v1::PartitionTask FromTaskRecord(
    const shutter::store::v1::TaskRecord& record,
    const shutter::v1::Snapshot& header);

// A job type's name in records, metrics and logs: JOB_TYPE_SNAPSHOT ->
// "snapshot". ParseKindName is its inverse (false for an unknown name).
std::string KindName(shutter::v1::JobType type);
bool ParseKindName(absl::string_view name, shutter::v1::JobType* type);

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_JOB_RECORDS_H_
