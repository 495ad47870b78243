#ifndef SHUTTER_CONTROLLER_SNAPSHOT_KIND_H_
#define SHUTTER_CONTROLLER_SNAPSHOT_KIND_H_

#include <cstddef>
#include <functional>
#include <string>
#include <utility>

#include "controller/job_kind.h"
#include "controller/node_transport.h"
#include "snapshot/repository.h"

namespace shutter::controller {

// Snapshot jobs: a task asks the partition's leader for a checkpoint
// (NodeService.CreateCheckpoint) and checks the answer against what was
// asked and against the partition manifest actually in the repository;
// the commit writes the cluster manifest (the committer); the rollback
// removes what an uncommitted snapshot published. Thread-safe; the
// pointers must outlive it.
class SnapshotKind : public JobKind {
 public:
  // `on_commit` (may be empty) is called once a snapshot's COMMITTED or
  // PARTIAL state is durable (retention, schedules).
  SnapshotKind(NodeTransport* transport, snapshot::Repository* repo,
               absl::Duration rpc_timeout,
               std::function<void(const std::string&)> on_commit = nullptr)
      : transport_(transport),
        repo_(repo),
        rpc_timeout_(rpc_timeout),
        on_commit_(std::move(on_commit)) {}

  shutter::v1::JobType type() const override {
    return shutter::v1::JOB_TYPE_SNAPSHOT;
  }
  const char* name() const override { return "snapshot"; }
  bool ProducesSnapshot() const override { return true; }
  bool NodeQueuesTasks() const override { return true; }

  void RunTask(const shutter::v1::Snapshot& job,
               const shutter::v1::PartitionTask& task,
               const std::string& address, TaskCallback done) override;
  absl::AnyInvocable<absl::Status() &&> PrepareCommit(const Job& job,
                                                      absl::Time now) override;
  void DescribeCommit(const std::string& job_id, bool partial, int failed,
                      int total, const std::string& first_failed,
                      shutter::v1::Snapshot* header) const override;
  void AfterCommit(const std::string& job_id) override {
    if (on_commit_) on_commit_(job_id);
  }
  absl::Status Rollback(const std::string& job_id) override;
  void CancelOnNode(const std::string& address,
                    const std::string& job_id) override;

  // Checks a node's answer for `task` against the request and the
  // repository: MISMATCHED_ANSWER (retryable) if it does not match. An
  // answer with the stored manifest's digest and size is checked against
  // the stored object's size (a stat or HEAD); one without (an older node)
  // by reading the manifest back and comparing it.
  absl::Status VerifyPublished(
      const shutter::v1::PartitionTask& task, const std::string& job_id,
      const shutter::v1::CreateCheckpointResponse& response) const;

 private:
  NodeTransport* const transport_;
  snapshot::Repository* const repo_;
  const absl::Duration rpc_timeout_;
  const std::function<void(const std::string&)> on_commit_;
};

// A committed snapshot's cluster manifest from `repo`, for the jobs that
// use one (restore, verify); NOT_FOUND naming the repository if it is not
// there (not committed, deleted, or never taken).
absl::StatusOr<shutter::v1::ClusterManifest> ReadCommittedSnapshot(
    const snapshot::Repository& repo, const std::string& snapshot_id);

// The committer: writes a snapshot's cluster manifest, recognising one a
// crash left behind after writing it (ALREADY_EXISTS naming this snapshot
// is ours).
absl::Status CommitClusterManifest(snapshot::Repository& repo,
                                   const shutter::v1::ClusterManifest& cm);

class JobEngine;

// The longest label a snapshot (or a schedule, for its snapshots) may have.
inline constexpr size_t kMaxLabelBytes = 256;

// The front door of snapshot jobs (AdminService.CreateSnapshot, schedules):
// validates the request, resolves every partition's leader and submits the
// job to `engine`. Returns the new snapshot id. INVALID_ARGUMENT for
// unknown or repeated partition ids, or a label over kMaxLabelBytes or with
// control characters; FAILED_PRECONDITION if there are no partitions or
// some have no usable leader (the message lists every one). On error
// nothing is recorded or dispatched.
absl::StatusOr<std::string> StartSnapshot(
    JobEngine& engine, const shutter::v1::CreateSnapshotRequest& request);

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_SNAPSHOT_KIND_H_
