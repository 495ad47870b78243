#ifndef SHUTTER_CONTROLLER_VERIFY_KIND_H_
#define SHUTTER_CONTROLLER_VERIFY_KIND_H_

#include <functional>
#include <string>
#include <utility>

#include "controller/job_kind.h"
#include "controller/node_transport.h"
#include "snapshot/repository.h"

namespace shutter::controller {

// Verify jobs: a task asks the partition's leader to check its checkpoint
// of task.source_snapshot_id() in the repository
// (NodeService.VerifyPartition; shallow or, with task.deep(), opened and
// scanned), so a snapshot is verified in parallel across nodes within
// their limits instead of by the controller alone. A partition whose
// checkpoint has a problem fails its task (permanently: the answer is
// DATA_LOSS naming the file), so the job ends COMMITTED (every partition
// verified) or FAILED (the first problem in its error, every problem in
// its FAILED tasks). Nothing to commit or roll back: verifying reads only.
// Cancel keeps the verdicts already known. Thread-safe; the transport
// must outlive it.
class VerifyKind : public JobKind {
 public:
  // `on_commit` (may be empty) is called once a verify's COMMITTED state
  // is durable (schedules).
  VerifyKind(NodeTransport* transport, absl::Duration rpc_timeout,
             std::function<void(const std::string&)> on_commit = nullptr)
      : transport_(transport),
        rpc_timeout_(rpc_timeout),
        on_commit_(std::move(on_commit)) {}

  shutter::v1::JobType type() const override {
    return shutter::v1::JOB_TYPE_VERIFY;
  }
  const char* name() const override { return "verify"; }

  void RunTask(const shutter::v1::Snapshot& job,
               const shutter::v1::PartitionTask& task,
               const std::string& address, TaskCallback done) override;
  absl::AnyInvocable<absl::Status() &&> PrepareCommit(const Job& job,
                                                      absl::Time now) override {
    return [] { return absl::OkStatus(); };
  }
  void DescribeCommit(const std::string& job_id, bool partial, int failed,
                      int total, const std::string& first_failed,
                      shutter::v1::Snapshot* header) const override {}
  void AfterCommit(const std::string& job_id) override {
    if (on_commit_) on_commit_(job_id);
  }
  absl::Status Rollback(const std::string& job_id) override {
    return absl::OkStatus();
  }
  bool CancelKeepsOutcomes() const override { return true; }
  void CancelOnNode(const std::string& address,
                    const std::string& job_id) override {
    transport_->CancelVerifies(address, job_id);
  }

 private:
  NodeTransport* const transport_;
  const absl::Duration rpc_timeout_;
  const std::function<void(const std::string&)> on_commit_;
};

class JobEngine;

// The front door of verify jobs (AdminService.VerifySnapshot): the
// snapshot must be in `repo` (COMMITTED or PARTIAL if it is one of the
// engine's jobs; FAILED_PRECONDITION otherwise, or if the job is not a
// snapshot); one task per partition its cluster manifest lists, each to
// be checked against the applied index listed there. Returns the verify
// job's id. NOT_FOUND if the snapshot is not in the repository;
// FAILED_PRECONDITION if a partition has no usable leader. On error
// nothing is recorded or dispatched.
absl::StatusOr<std::string> StartVerify(
    JobEngine& engine, snapshot::Repository& repo,
    const shutter::v1::VerifySnapshotRequest& request);

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_VERIFY_KIND_H_
