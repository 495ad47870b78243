#ifndef SHUTTER_CONTROLLER_JOB_KIND_H_
#define SHUTTER_CONTROLLER_JOB_KIND_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "controller/job.h"
#include "controller/node_registry.h"
#include "controller/retry_policy.h"
#include "shutter/v1/admin.pb.h"
#include "shutter/v1/common.pb.h"

namespace shutter::controller {

class JobEngine;

// What one partition's task produced, as the engine records it.
struct TaskOutcome {
  // Applied index, bytes, files of what the node produced (for a snapshot:
  // the published partition manifest).
  shutter::v1::PartitionManifest manifest;
  // Where it is, relative to the repository root.
  std::string path;
  // A snapshot's publish: bytes uploaded, and bytes already stored.
  uint64_t uploaded_bytes = 0;
  uint64_t reused_bytes = 0;
  // A snapshot's publish: SHA-256 (hex) of the stored partition manifest,
  // for the cluster manifest (empty if the node did not report it).
  std::string manifest_sha256;
  // How long the task waited at its node for a slot before it started
  // (sent ahead: JobEngine::Options::queue_at_nodes); the engine records
  // its start and duration without it.
  absl::Duration waited_at_node;
};

// A job to submit (JobEngine::Submit), as a kind's front door planned it:
// the record (its type, label, allow_partial, source snapshot, and per
// task the partition id and the kind's fields; the engine assigns the id,
// times and states) and the node each task goes to first.
struct JobPlan {
  shutter::v1::Snapshot record;
  std::vector<std::pair<uint32_t, NodeRegistry::Leader>> placements;
};

// What a kind of job does; everything else -- the job's state and its
// durable records, dispatch through the scheduler with per-node limits,
// leader resolution, retry classification, cancel, resume after a restart
// -- is the engine's (JobEngine, job.h, group_commit.h), shared
// by every kind. The engine is given its kinds (one per job type, see
// StandardKinds in kinds.h) and never tests a job's type: whatever differs
// between kinds is asked of the kind through these methods.
//
// Implementations are thread-safe; no method is called with the engine's
// lock held, except PrepareCommit, DescribeCommit and the accessors (which
// must not block).
class JobKind {
 public:
  using TaskCallback = absl::AnyInvocable<void(absl::StatusOr<TaskOutcome>) &&>;

  virtual ~JobKind() = default;

  // Called once by the engine that runs this kind, before it loads any
  // job: a kind whose tasks or commits act on the engine's other jobs
  // keeps it (the engine outlives every call into its kinds).
  virtual void Bind(JobEngine* engine) {}

  // The job type this kind runs (one kind per type).
  virtual shutter::v1::JobType type() const = 0;
  // Its name in metrics labels and log lines ("snapshot", "restore").
  virtual const char* name() const = 0;
  // True if a committed job of this kind is a snapshot in the repository
  // (it can be restored, verified, pinned, deleted, kept by retention).
  virtual bool ProducesSnapshot() const { return false; }
  // True if a node that says it queues checkpoints
  // (HeartbeatRequest.queues_checkpoints) holds this kind's requests
  // beyond its capacity and starts them in order as its slots free. The
  // engine may then send such a node tasks ahead of a free slot
  // (JobEngine::Options::queue_at_nodes).
  virtual bool NodeQueuesTasks() const { return false; }

  // Where a task of this kind runs now: the node, incarnation, epoch and
  // address it goes to (it keeps that node's slot while it runs; the
  // scheduler's key is the node id). The default is the partition's
  // leader; a kind whose tasks run on the controller itself returns
  // ControllerPlacement(its name). An error means "not now" (the task waits and
  // asks again, until the job's deadline).
  virtual absl::StatusOr<NodeRegistry::Leader> Place(
      const NodeRegistry& registry, uint32_t partition_id) const {
    return registry.ResolveLeader(partition_id);
  }

  // Runs `task` of `job` (its header: the job's own fields, no tasks) on
  // the node at `address` (as Place() said: its current leader, at
  // task.leader_epoch(), incarnation task.node_instance_id()), and calls
  // `done` exactly once with what it produced, checked against what was
  // asked -- or the error, carrying an ErrorReason when it has one.
  // `job` lives only for the call.
  virtual void RunTask(const shutter::v1::Snapshot& job,
                       const shutter::v1::PartitionTask& task,
                       const std::string& address, TaskCallback done) = 0;

  // How a failed task is handled: retried, waited for, or failed
  // (retry_policy.h). The default reads the node's ErrorReason.
  virtual FailureClass Classify(const absl::Status& error) const {
    return ClassifyCheckpointFailure(error);
  }

  // Called (under the engine's lock, so it must only copy what it needs)
  // once every task is done and the job is to be committed; returns the
  // work that commits it, which the engine runs outside the lock. The job
  // is COMMITTED (or PARTIAL) if that returns OK.
  virtual absl::AnyInvocable<absl::Status() &&> PrepareCommit(
      const Job& job, absl::Time now) = 0;

  // Fills in what a committed job's record says beyond its state (called
  // under the engine's lock once the commit is written): for a PARTIAL
  // job, `failed` of `total` tasks failed, the first as `first_failed`.
  virtual void DescribeCommit(const std::string& job_id, bool partial,
                              int failed, int total,
                              const std::string& first_failed,
                              shutter::v1::Snapshot* header) const = 0;

  // Called (on an internal thread, no lock held) once a job's COMMITTED or
  // PARTIAL state is durable.
  virtual void AfterCommit(const std::string& job_id) {}

  // Undoes what a FAILED or CANCELLED job did. OK if there is nothing.
  virtual absl::Status Rollback(const std::string& job_id) = 0;

  // What cancelling a job of this kind means for a task whose outcome is
  // known (docs/fault-tolerance.md, "Cancel, per job kind"). false: the
  // job's rollback undoes what its tasks did, so every task ends CANCELLED
  // (a snapshot: its published partitions are removed). true: what a task
  // did stays done and the task keeps saying so -- PUBLISHED and FAILED
  // tasks are left as they are, and an answer arriving after the cancel
  // that says the work was done is recorded as PUBLISHED (a restore: a
  // swapped partition stays restored); only tasks that had not finished
  // end CANCELLED.
  virtual bool CancelKeepsOutcomes() const { return false; }

  // Tells the nodes at `address` to stop the job's work in flight (best
  // effort).
  virtual void CancelOnNode(const std::string& address,
                            const std::string& job_id) = 0;

  // Called by JobEngine::Shutdown (after it stopped dispatching): a kind
  // that runs tasks on threads of its own waits for them here, so that no
  // `done` is called after the engine is gone.
  virtual void Shutdown() {}
};

// The placement of a task that runs on the controller itself (Place()),
// in `lane` (the kind's name): the scheduler key "@controller:<lane>",
// which no node id can be (node ids are [A-Za-z0-9._-]), with the
// scheduler's default limit of one at a time per lane -- so one kind's
// long task (a garbage collection) never holds up another's (a delete).
NodeRegistry::Leader ControllerPlacement(absl::string_view lane);
inline constexpr char kControllerKeyPrefix[] = "@controller:";

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_JOB_KIND_H_
