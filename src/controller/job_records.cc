#include "controller/job_records.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace shutter::controller {
namespace {
namespace sv1 = shutter::store::v1;
using shutter::v1::PartitionTask;
using shutter::v1::PartitionTaskState;
using shutter::v1::Snapshot;
using shutter::v1::SnapshotState;

constexpr absl::string_view kTypePrefix = "JOB_TYPE_";

// Each API state and the record state it is stored as, one row per value:
// both directions read the same table, so a state added to one enum and
// not the other is one missing row (stored as UNKNOWN / read back as
// UNSPECIFIED), never two switches that disagree.
constexpr std::pair<SnapshotState, sv1::JobState> kJobStates[] = {
    {shutter::v1::SNAPSHOT_STATE_PENDING, sv1::JOB_STATE_PENDING},
    {shutter::v1::SNAPSHOT_STATE_RUNNING, sv1::JOB_STATE_RUNNING},
    {shutter::v1::SNAPSHOT_STATE_COMMITTED, sv1::JOB_STATE_COMMITTED},
    {shutter::v1::SNAPSHOT_STATE_FAILED, sv1::JOB_STATE_FAILED},
    {shutter::v1::SNAPSHOT_STATE_CANCELLED, sv1::JOB_STATE_CANCELLED},
    {shutter::v1::SNAPSHOT_STATE_PARTIAL, sv1::JOB_STATE_PARTIAL},
    {shutter::v1::SNAPSHOT_STATE_DELETED, sv1::JOB_STATE_DELETED},
};
constexpr std::pair<PartitionTaskState, sv1::TaskState> kTaskStates[] = {
    {shutter::v1::PARTITION_TASK_STATE_QUEUED, sv1::TASK_STATE_QUEUED},
    {shutter::v1::PARTITION_TASK_STATE_RUNNING, sv1::TASK_STATE_RUNNING},
    {shutter::v1::PARTITION_TASK_STATE_PUBLISHED, sv1::TASK_STATE_DONE},
    {shutter::v1::PARTITION_TASK_STATE_FAILED, sv1::TASK_STATE_FAILED},
    {shutter::v1::PARTITION_TASK_STATE_WAITING, sv1::TASK_STATE_WAITING},
    {shutter::v1::PARTITION_TASK_STATE_CANCELLED, sv1::TASK_STATE_CANCELLED},
};

// The record state of `api` in `table`; the enum's 0 if it has none.
template <typename Api, typename Record, size_t N>
Record ToRecord(const std::pair<Api, Record> (&table)[N], Api api) {
  for (const auto& [a, r] : table) {
    if (a == api) return r;
  }
  return Record{};
}

// The API state of `record` in `table`; the enum's 0 if it has none.
template <typename Api, typename Record, size_t N>
Api FromRecord(const std::pair<Api, Record> (&table)[N], Record record) {
  for (const auto& [a, r] : table) {
    if (r == record) return a;
  }
  return Api{};
}
// The API's and the store's PrunedTasks have the same fields.
template <typename From, typename To>
void CopyPrunedTasks(const From& from, To* to) {
  to->set_total(from.total());
  to->set_published(from.published());
  to->set_failed(from.failed());
  to->set_cancelled(from.cancelled());
  to->set_total_bytes(from.total_bytes());
  to->set_uploaded_bytes(from.uploaded_bytes());
  to->set_pruned_at_micros(from.pruned_at_micros());
}

}  // namespace

std::string KindName(shutter::v1::JobType type) {
  std::string name = shutter::v1::JobType_Name(type);
  if (!absl::StartsWith(name, kTypePrefix)) {
    return absl::StrCat("type-", static_cast<int>(type));
  }
  return absl::AsciiStrToLower(name.substr(kTypePrefix.size()));
}

bool ParseKindName(absl::string_view name, shutter::v1::JobType* type) {
  if (name.empty() || absl::AsciiStrToLower(name) != name) return false;
  return shutter::v1::JobType_Parse(
      absl::StrCat(kTypePrefix, absl::AsciiStrToUpper(name)), type);
}

sv1::JobRecord ToJobRecord(const Snapshot& h) {
  sv1::JobRecord r;
  r.set_job_id(h.snapshot_id());
  r.set_kind(KindName(h.type()));
  r.set_state(ToRecord(kJobStates, h.state()));
  r.set_label(h.label());
  r.set_created_at_micros(h.created_at_micros());
  r.set_finished_at_micros(h.finished_at_micros());
  r.set_deadline_micros(h.deadline_micros());
  r.set_error(h.error());
  r.set_schedule(h.schedule());
  r.set_allow_partial(h.allow_partial());
  r.set_rolled_back(h.rolled_back());
  r.set_commit_decided(h.commit_decided());
  if (h.has_pruned_tasks()) {
    CopyPrunedTasks(h.pruned_tasks(), r.mutable_pruned_tasks());
  }
  r.set_request_id(h.request_id());
  switch (h.type()) {
    case shutter::v1::JOB_TYPE_SNAPSHOT: {
      auto* p = r.mutable_snapshot();
      p->set_manifest_path(h.manifest_path());
      p->set_pinned(h.pinned());
      p->set_delete_requested(h.delete_requested());
      p->set_deleted_at_micros(h.deleted_at_micros());
      break;
    }
    case shutter::v1::JOB_TYPE_RESTORE:
      r.mutable_restore()->set_source_snapshot_id(h.source_snapshot_id());
      break;
    case shutter::v1::JOB_TYPE_VERIFY: {
      auto* p = r.mutable_verify();
      p->set_source_snapshot_id(h.source_snapshot_id());
      p->set_deep(h.deep());
      break;
    }
    case shutter::v1::JOB_TYPE_DELETE:
      r.mutable_deletion()->set_source_snapshot_id(h.source_snapshot_id());
      break;
    case shutter::v1::JOB_TYPE_GC: {
      const shutter::v1::CollectGarbageResponse& g = h.gc();
      auto* p = r.mutable_gc();
      p->set_grace_seconds(g.grace_seconds());
      p->set_objects_scanned(g.objects_scanned());
      p->set_objects_referenced(g.objects_referenced());
      p->set_objects_deleted(g.objects_deleted());
      p->set_bytes_deleted(g.bytes_deleted());
      p->set_objects_too_young(g.objects_too_young());
      p->set_manifests_read(g.manifests_read());
      p->set_publish_locks_released(g.publish_locks_released());
      p->set_uploads_aborted(g.uploads_aborted());
      p->set_uploads_too_young(g.uploads_too_young());
      p->set_sweep_incomplete(g.sweep_incomplete());
      break;
    }
    default:
      break;
  }
  return r;
}

sv1::TaskRecord ToTaskRecord(absl::string_view job_id, const PartitionTask& t) {
  sv1::TaskRecord r;
  r.set_job_id(std::string(job_id));
  r.set_partition_id(t.partition_id());
  r.set_state(ToRecord(kTaskStates, t.state()));
  r.set_node_id(t.node_id());
  r.set_node_instance_id(t.node_instance_id());
  r.set_leader_epoch(t.leader_epoch());
  r.set_attempts(t.attempts());
  r.set_unreachable(t.unreachable());
  r.set_last_error(t.last_error());
  r.set_started_at_micros(t.started_at_micros());
  r.set_duration_millis(t.duration_millis());
  if (t.applied_index() != 0 || t.total_bytes() != 0 || t.file_count() != 0 ||
      !t.manifest_path().empty() || t.uploaded_bytes() != 0 ||
      t.reused_bytes() != 0 || !t.manifest_sha256().empty()) {
    auto* o = r.mutable_outcome();
    o->set_applied_index(t.applied_index());
    o->set_total_bytes(t.total_bytes());
    o->set_file_count(t.file_count());
    o->set_manifest_path(t.manifest_path());
    o->set_uploaded_bytes(t.uploaded_bytes());
    o->set_reused_bytes(t.reused_bytes());
    o->set_manifest_sha256(t.manifest_sha256());
  }
  return r;
}

absl::StatusOr<Snapshot> FromJobRecord(const sv1::JobRecord& r) {
  if (r.job_id().empty()) {
    return absl::DataLossError("job record without a job id");
  }
  shutter::v1::JobType type;
  if (!ParseKindName(r.kind(), &type)) {
    return absl::NotFoundError(absl::StrCat("job ", r.job_id(),
                                            " is of kind \"", r.kind(),
                                            "\", which this controller does "
                                            "not know"));
  }
  Snapshot h;
  h.set_snapshot_id(r.job_id());
  h.set_type(type);
  h.set_state(FromRecord(kJobStates, r.state()));
  h.set_label(r.label());
  h.set_created_at_micros(r.created_at_micros());
  h.set_finished_at_micros(r.finished_at_micros());
  h.set_deadline_micros(r.deadline_micros());
  h.set_error(r.error());
  h.set_schedule(r.schedule());
  h.set_allow_partial(r.allow_partial());
  h.set_rolled_back(r.rolled_back());
  h.set_commit_decided(r.commit_decided());
  if (r.has_pruned_tasks()) {
    CopyPrunedTasks(r.pruned_tasks(), h.mutable_pruned_tasks());
  }
  h.set_request_id(r.request_id());
  switch (r.payload_case()) {
    case sv1::JobRecord::kSnapshot:
      h.set_manifest_path(r.snapshot().manifest_path());
      h.set_pinned(r.snapshot().pinned());
      h.set_delete_requested(r.snapshot().delete_requested());
      h.set_deleted_at_micros(r.snapshot().deleted_at_micros());
      break;
    case sv1::JobRecord::kRestore:
      h.set_source_snapshot_id(r.restore().source_snapshot_id());
      break;
    case sv1::JobRecord::kVerify:
      h.set_source_snapshot_id(r.verify().source_snapshot_id());
      h.set_deep(r.verify().deep());
      break;
    case sv1::JobRecord::kDeletion:
      h.set_source_snapshot_id(r.deletion().source_snapshot_id());
      break;
    case sv1::JobRecord::kGc: {
      const sv1::GcPayload& p = r.gc();
      auto* g = h.mutable_gc();
      g->set_gc_id(r.job_id());
      g->set_grace_seconds(p.grace_seconds());
      g->set_objects_scanned(p.objects_scanned());
      g->set_objects_referenced(p.objects_referenced());
      g->set_objects_deleted(p.objects_deleted());
      g->set_bytes_deleted(p.bytes_deleted());
      g->set_objects_too_young(p.objects_too_young());
      g->set_manifests_read(p.manifests_read());
      g->set_publish_locks_released(p.publish_locks_released());
      g->set_uploads_aborted(p.uploads_aborted());
      g->set_uploads_too_young(p.uploads_too_young());
      g->set_sweep_incomplete(p.sweep_incomplete());
      break;
    }
    case sv1::JobRecord::PAYLOAD_NOT_SET:
      break;
  }
  return h;
}

PartitionTask FromTaskRecord(const sv1::TaskRecord& r, const Snapshot& h) {
  PartitionTask t;
  t.set_partition_id(r.partition_id());
  t.set_state(FromRecord(kTaskStates, r.state()));
  t.set_node_id(r.node_id());
  t.set_node_instance_id(r.node_instance_id());
  t.set_leader_epoch(r.leader_epoch());
  t.set_attempts(r.attempts());
  t.set_unreachable(r.unreachable());
  t.set_last_error(r.last_error());
  t.set_started_at_micros(r.started_at_micros());
  t.set_duration_millis(r.duration_millis());
  t.set_applied_index(r.outcome().applied_index());
  t.set_total_bytes(r.outcome().total_bytes());
  t.set_file_count(r.outcome().file_count());
  t.set_manifest_path(r.outcome().manifest_path());
  t.set_uploaded_bytes(r.outcome().uploaded_bytes());
  t.set_reused_bytes(r.outcome().reused_bytes());
  t.set_manifest_sha256(r.outcome().manifest_sha256());
  t.set_source_snapshot_id(h.source_snapshot_id());
  t.set_deep(h.deep());
  return t;
}

}  // namespace shutter::controller
