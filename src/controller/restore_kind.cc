#include "controller/restore_kind.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/error_reason.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "controller/job_engine.h"
#include "controller/snapshot_kind.h"
#include "snapshot/repository.h"
#include "spdlog/spdlog.h"

namespace shutter::controller {

using shutter::v1::PartitionTask;
using shutter::v1::RestorePartitionResponse;

void RestoreKind::RunTask(const shutter::v1::Snapshot& job,
                          const PartitionTask& task, const std::string& address,
                          TaskCallback done) {
  const std::string& job_id = job.snapshot_id();
  shutter::v1::RestorePartitionRequest req;
  req.set_restore_id(job_id);
  req.set_snapshot_id(task.source_snapshot_id());
  req.set_partition_id(task.partition_id());
  req.set_expected_leader_epoch(task.leader_epoch());
  req.set_expected_instance_id(task.node_instance_id());
  req.set_expected_manifest_sha256(task.manifest_sha256());
  transport_->RestorePartition(
      address, req, rpc_timeout_,
      [task, registry = registry_, done = std::move(done)](
          absl::StatusOr<RestorePartitionResponse> result) mutable {
        if (!result.ok()) {
          std::move(done)(result.status());
          return;
        }
        const auto& m = result->manifest();
        if (m.snapshot_id() != task.source_snapshot_id() ||
            m.partition_id() != task.partition_id() ||
            m.applied_index() != task.applied_index()) {
          std::move(done)(WithReason(
              absl::InternalError(absl::StrCat(
                  "node restored snapshot ", Quote(m.snapshot_id()),
                  " partition ", m.partition_id(), " at applied index ",
                  m.applied_index(), "; expected ",
                  Quote(task.source_snapshot_id()), " partition ",
                  task.partition_id(), " at ", task.applied_index())),
              ErrorReason::kMismatchedAnswer));
          return;
        }
        if (result->leader_epoch() <= task.leader_epoch() &&
            !result->already_restored()) {
          std::move(done)(WithReason(
              absl::InternalError(absl::StrCat(
                  "the restored partition is at epoch ", result->leader_epoch(),
                  ", not above ", task.leader_epoch())),
              ErrorReason::kMismatchedAnswer));
          return;
        }
        if (registry != nullptr) {
          // The node leads the partition at the new epoch with the
          // snapshot's data: the registry knows it before the job can be
          // COMMITTED (not a heartbeat later).
          registry->ObservePartition(task.node_id(), task.node_instance_id(),
                                     task.partition_id(),
                                     result->leader_epoch(), m.applied_index());
        }
        TaskOutcome outcome;
        outcome.path = snapshot::Repository::PartitionManifestPath(
            m.snapshot_id(), m.partition_id());
        outcome.manifest = std::move(*result->mutable_manifest());
        // What the partition now leads with.
        outcome.manifest.set_leader_epoch(result->leader_epoch());
        std::move(done)(std::move(outcome));
      });
}

absl::AnyInvocable<absl::Status() &&> RestoreKind::PrepareCommit(
    const Job& job, absl::Time now) {
  return [] { return absl::OkStatus(); };
}

void RestoreKind::DescribeCommit(const std::string& job_id, bool partial,
                                 int failed, int total,
                                 const std::string& first_failed,
                                 shutter::v1::Snapshot* header) const {
  if (partial) {
    header->set_error(absl::StrCat(
        failed, " of ", total,
        " partitions not restored (the others are); first: ", first_failed));
  }
}

absl::Status RestoreKind::Rollback(const std::string& job_id) {
  return absl::OkStatus();
}

void RestoreKind::CancelOnNode(const std::string& address,
                               const std::string& job_id) {
  transport_->CancelRestores(address, job_id);
}

absl::StatusOr<shutter::v1::RestoreSnapshotResponse> StartRestore(
    JobEngine& engine, snapshot::Repository& repo,
    const shutter::v1::RestoreSnapshotRequest& request) {
  const std::string& source = request.snapshot_id();
  RETURN_IF_ERROR(CheckSafeId("snapshot id", source));
  if (!request.dry_run()) {
    // A repeated call (e.g. retried on a new leader): the first one's job.
    ASSIGN_OR_RETURN(std::optional<std::string> earlier,
                     engine.FindRequest(request.request_id(),
                                        shutter::v1::JOB_TYPE_RESTORE));
    if (earlier) {
      shutter::v1::RestoreSnapshotResponse resp;
      resp.set_restore_id(*earlier);
      return resp;
    }
  }
  if (const JobKind* kind = engine.KindOfJob(source);
      kind != nullptr && !kind->ProducesSnapshot()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, " is a ", kind->name(), " job, not a snapshot"));
  }
  ASSIGN_OR_RETURN(const shutter::v1::ClusterManifest cm,
                   ReadCommittedSnapshot(repo, source));
  std::map<uint32_t, const shutter::v1::ClusterManifestPartition*> contained;
  for (const auto& p : cm.partitions()) contained[p.partition_id()] = &p;
  std::vector<uint32_t> ids;
  if (request.partition_ids().empty()) {
    for (const auto& [id, p] : contained) ids.push_back(id);
  } else {
    std::set<uint32_t> seen;
    std::vector<uint32_t> absent;
    for (uint32_t id : request.partition_ids()) {
      if (!seen.insert(id).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("partition ", id, " is listed twice"));
      }
      if (contained.count(id) == 0) absent.push_back(id);
      ids.push_back(id);
    }
    if (!absent.empty()) {
      std::sort(absent.begin(), absent.end());
      return absl::InvalidArgumentError(absl::StrCat(
          "snapshot ", source, " does not contain partition(s) ",
          FormatIdList(absent), "; it has ",
          contained.empty() ? std::string("none") : FormatIdList([&] {
            std::vector<uint32_t> v;
            for (const auto& [id, p] : contained) {
              v.push_back(id);
            }
            return v;
          }())));
    }
    std::sort(ids.begin(), ids.end());
  }
  if (ids.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("snapshot ", source, " contains no partition"));
  }
  ASSIGN_OR_RETURN(auto leaders, engine.ResolveLeaders(ids));

  shutter::v1::RestoreSnapshotResponse resp;
  shutter::v1::RestorePlan* plan = resp.mutable_plan();
  plan->set_snapshot_id(source);
  std::map<std::string, shutter::v1::RestorePlanNode> by_node;
  for (const auto& [id, leader] : leaders) {
    shutter::v1::RestorePlanNode& n = by_node[leader.node_id];
    n.set_node_id(leader.node_id);
    n.set_address(leader.address);
    n.add_partition_ids(id);
    n.set_bytes(n.bytes() + contained[id]->total_bytes());
    plan->set_total_bytes(plan->total_bytes() + contained[id]->total_bytes());
  }
  plan->set_partitions(static_cast<uint32_t>(leaders.size()));
  for (auto& [node, n] : by_node) {
    n.set_concurrency(std::min<uint32_t>(std::max(1, engine.LimitFor(node)),
                                         n.partition_ids_size()));
    *plan->add_nodes() = std::move(n);
  }
  if (request.dry_run()) return resp;

  shutter::v1::Snapshot record;
  record.set_type(shutter::v1::JOB_TYPE_RESTORE);
  record.set_request_id(request.request_id());
  record.set_source_snapshot_id(source);
  record.set_label(cm.label());
  // Partitions restored stay restored: the job is PARTIAL, not FAILED,
  // when only some fail.
  record.set_allow_partial(true);
  for (uint32_t id : ids) {
    shutter::v1::PartitionTask* t = record.add_partitions();
    t->set_partition_id(id);
    t->set_source_snapshot_id(source);
    t->set_applied_index(contained[id]->applied_index());
    t->set_manifest_sha256(contained[id]->manifest_sha256());
  }
  ASSIGN_OR_RETURN(std::string restore_id,
                   engine.Submit({std::move(record), std::move(leaders)}));
  spdlog::info(
      "restore {} created: snapshot {}, {} partitions on {} nodes, "
      "{} bytes",
      restore_id, source, ids.size(), plan->nodes_size(), plan->total_bytes());
  resp.set_restore_id(restore_id);
  return resp;
}

}  // namespace shutter::controller
