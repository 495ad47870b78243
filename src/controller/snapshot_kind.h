#ifndef SHUTTER_CONTROLLER_SNAPSHOT_KIND_H_
#define SHUTTER_CONTROLLER_SNAPSHOT_KIND_H_

#include <string>

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
  SnapshotKind(NodeTransport* transport, snapshot::Repository* repo,
               absl::Duration rpc_timeout)
      : transport_(transport), repo_(repo), rpc_timeout_(rpc_timeout) {}

  void RunTask(const std::string& job_id,
               const shutter::v1::PartitionTask& task,
               const std::string& address, TaskCallback done) override;
  absl::AnyInvocable<absl::Status() &&> PrepareCommit(const Job& job,
                                                      absl::Time now) override;
  absl::Status Rollback(const std::string& job_id) override;
  void CancelOnNode(const std::string& address,
                    const std::string& job_id) override;

  // Checks a node's answer for `task` against the request and the
  // repository: MISMATCHED_ANSWER (retryable) if it does not match.
  absl::Status VerifyPublished(
      const shutter::v1::PartitionTask& task, const std::string& job_id,
      const shutter::v1::CreateCheckpointResponse& response) const;

 private:
  NodeTransport* const transport_;
  snapshot::Repository* const repo_;
  const absl::Duration rpc_timeout_;
};

// The committer: writes a snapshot's cluster manifest, recognising one a
// crash left behind after writing it (ALREADY_EXISTS naming this snapshot
// is ours).
absl::Status CommitClusterManifest(snapshot::Repository& repo,
                                   const shutter::v1::ClusterManifest& cm);

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_SNAPSHOT_KIND_H_
