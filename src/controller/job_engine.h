#ifndef SHUTTER_CONTROLLER_JOB_ENGINE_H_
#define SHUTTER_CONTROLLER_JOB_ENGINE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/ids.h"
#include "common/metrics.h"
#include "common/timer.h"
#include "controller/group_commit.h"
#include "controller/job.h"
#include "controller/job_kind.h"
#include "controller/job_store.h"
#include "controller/node_limits.h"
#include "controller/node_registry.h"
#include "controller/node_transport.h"
#include "scheduler/scheduler.h"
#include "shutter/v1/admin.pb.h"
#include "snapshot/repository.h"

namespace shutter::controller {

// Runs jobs of every kind it is given (JobKind: snapshots, restores,
// verifies, garbage collections, deletions): runs a job's tasks where its
// kind places them (a partition's leader, or the controller itself) in
// parallel across nodes while keeping each node within its limit, records every
// state change in the JobStore before acting on it, and commits the job through
// its kind only when every task is done (a snapshot: the cluster manifest, once
// every partition is published and verified against the repository).
//
// State and persistence: each job is a Job (job.h: header + tasks, counts
// kept up to date). A transition changes one task in memory under the
// coordinator's lock. Hard states -- the job's creation and its own state,
// a node's answer (PUBLISHED, FAILED, or WAITING with the attempt
// counted), CANCELLED -- are staged as that task's record with the
// GroupCommitter, and whatever they lead to (scheduling the retry, writing
// the cluster manifest, answering the caller, rolling back) happens only
// once the record is durable (AfterDurable); concurrent transitions share
// one synced write. Soft states -- QUEUED, RUNNING, WAITING for a leader
// or an unreachable node -- are kept in memory only: recovery treats every
// task that is not PUBLISHED, FAILED or CANCELLED alike (dispatched again;
// nodes answer repeats idempotently), so persisting them would buy
// nothing but a write on the path to every RPC. Nothing slow runs under the
// lock: RPCs, repository reads and writes, and manifest encoding happen outside
// it; reads of a large job answer from its counts plus a page of tasks.
//
// A partition's leader is resolved when its task is dispatched, not when
// the job was created. A failed call is classified by ClassifyCheckpoint-
// Failure (retry_policy.h): when the node could not be reached at all
// (restarting, connection refused) the task waits for it without spending
// an attempt, re-resolving the leader each time (the node is back, or the
// registry has declared it dead); an answer that is retryable (stale epoch,
// not leader, busy, deadline, transient) is retried with exponential
// backoff and jitter, re-resolving the leader each time, up to
// `max_attempts` answers and the job's deadline; while no usable leader
// exists the task waits, polling the registry.
// One partition's trouble does not fail the others. The job is FAILED (no
// cluster manifest is written, and what it published is removed) if any
// partition finally fails. A cancelled job is rolled back the same way once
// its in-flight checkpoints end.
//
// Jobs left unfinished by a controller stop or crash resume at the next
// start: published partitions are kept, the others are dispatched again
// (a node answers a repeated request with the already-published result).
//
// Thread-safe. All pointers passed to Create() must outlive the
// coordinator. Order at exit: Shutdown(), then the transport's and the
// timer's Shutdown() (so no callback is left), then destroy the coordinator
// (which writes what is still staged).
class JobEngine {
 public:
  struct Options {
    // Deadline of one CreateCheckpoint call.
    absl::Duration rpc_timeout = absl::Minutes(10);
    // Threads that start tasks (task bodies only start an RPC).
    int dispatch_threads = 2;
    // Pipelining: a node that queues checkpoints
    // (HeartbeatRequest.queues_checkpoints) and whose limit equals its
    // capacity may have up to twice its limit of a kind's tasks in flight
    // when the kind's node queues them (JobKind::NodeQueuesTasks): the
    // node runs its capacity and starts the rest as its slots free, so a
    // slot does not wait for an answer's round trip to the controller.
    // Never while a task of another kind is in flight on the node, and
    // never with a lower limit (a pin, the adaptive rule), which the node
    // could not enforce at once, nor to a node whose load the adaptive rule
    // does not read as healthy (NodeLimits::HasHeadroom). The node hears a
    // lowered limit with its next heartbeat's answer and starts what it holds
    // under it.
    bool queue_at_nodes = true;
    // Checkpoints in flight over the whole cluster; 0 = no cap beyond the
    // per-node limits. 1 gives a serial controller (for comparison).
    int max_in_flight_total = 0;
    // CreateCheckpoint calls per partition before it fails.
    int max_attempts = 5;
    // Retry backoff: base * 2^(attempt-1), capped, times a jitter in
    // [0.5, 1].
    absl::Duration retry_base = absl::Milliseconds(200);
    absl::Duration retry_max = absl::Seconds(10);
    // How often a task without a usable leader looks again.
    absl::Duration leader_poll = absl::Milliseconds(200);
    // How soon a task whose node could not be reached tries again: this,
    // doubling after each miss up to unreachable_poll_max.
    absl::Duration unreachable_poll = absl::Milliseconds(250);
    absl::Duration unreachable_poll_max = absl::Seconds(2);
    // A job's deadline, from its creation: no attempt starts after it.
    absl::Duration job_timeout = absl::Hours(1);
    // If set, jobs, tasks, retries, queue waits, per-node slots and job
    // store writes are measured here (docs/operations.md lists the
    // metrics). Must outlive the coordinator, and stop serving first.
    metrics::Registry* metrics = nullptr;
    // If set, each node's concurrency limit comes from here (pins and the
    // adaptive rule); otherwise it is the capacity the node reports. Must
    // outlive the coordinator.
    NodeLimits* limits = nullptr;
    // With controllers on etcd: whether this controller still leads (its
    // term's lease is surely alive). A kind's commit (a snapshot's cluster
    // manifest) and a rollback start only while it does; otherwise the
    // job is left as it is, for the next leader. Null: always.
    std::function<bool()> leads;
    // Finished jobs whose per-partition task records are kept (in memory
    // and in the job store), newest first; older finished jobs keep their
    // header with what their tasks summed to (Snapshot.pruned_tasks). This
    // bounds the store (etcd's quota) and memory: about 230 bytes per
    // partition per kept job. 0: keep every job's tasks.
    int task_history_jobs = 50;
  };

  // Loads the job store and resumes unfinished jobs, running each through
  // its kind (one per job type: StandardKinds in kinds.h; INVALID_ARGUMENT
  // for two of one type). Jobs of a type with no kind are left as they
  // are.
  static absl::StatusOr<std::unique_ptr<JobEngine>> Create(
      const Options& options, std::vector<std::unique_ptr<JobKind>> kinds,
      NodeRegistry* registry, JobStore* store, snapshot::Repository* repo,
      Timer* timer, Clock* clock);
  ~JobEngine();

  // Assigns the job an id, durably records it (every task QUEUED on its
  // placement's node), then queues its tasks; returns the id. A kind's
  // front door (StartSnapshot, StartRestore) validates its request and
  // plans the job first. FAILED_PRECONDITION if no kind runs the record's
  // type; UNAVAILABLE while shutting down. On error nothing is dispatched.
  //
  // Idempotent by the record's request_id (AdminService's idempotency
  // key): if a job with the same non-empty request_id exists, its id is
  // returned (once it is durable) and nothing is created; ALREADY_EXISTS
  // if that job is of another type.
  absl::StatusOr<std::string> Submit(JobPlan plan) ABSL_LOCKS_EXCLUDED(mu_);

  // The job an earlier call with `request_id` created, once durable, for
  // front doors to answer a repeated call before planning anything;
  // nullopt if there is none or request_id is empty. INVALID_ARGUMENT for
  // a malformed key (over 128 characters, not printable); ALREADY_EXISTS
  // if the job is of another type than `type`.
  absl::StatusOr<std::optional<std::string>> FindRequest(
      const std::string& request_id, shutter::v1::JobType type)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Each partition's leader now; FAILED_PRECONDITION listing every
  // partition without a usable one.
  absl::StatusOr<std::vector<std::pair<uint32_t, NodeRegistry::Leader>>>
  ResolveLeaders(const std::vector<uint32_t>& ids) const;
  // The node's concurrency limit now (see Options::limits); 0 if the
  // registry does not know the node.
  int LimitFor(const std::string& node_id) const;
  // How many tasks beyond `limit` the node may hold (queue_at_nodes).
  int AheadFor(const std::string& node_id, int limit) const;
  // AheadFor with the node's capacity and whether it queues checkpoints
  // (HeartbeatRequest.queues_checkpoints) as the caller has them, e.g.
  // from a heartbeat the registry has just recorded.
  int AheadGiven(const std::string& node_id, int limit, uint32_t capacity,
                 bool queues) const;
  // The kind of a job this engine has; null if unknown.
  const JobKind* KindOfJob(const std::string& job_id) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // The registry the engine resolves leaders from, and the repository.
  NodeRegistry* registry() const { return registry_; }
  snapshot::Repository* repository() const { return repo_; }

  // The job's fields, its summary and a page of its partitions (see
  // GetSnapshotRequest). NOT_FOUND for an unknown id; INVALID_ARGUMENT for
  // a malformed id or page token (as for CancelSnapshot and
  // VerifySnapshot).
  absl::StatusOr<shutter::v1::GetSnapshotResponse> GetSnapshotPage(
      const shutter::v1::GetSnapshotRequest& request) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // The whole job with every partition (tests, small jobs).
  absl::StatusOr<shutter::v1::Snapshot> GetSnapshot(
      const std::string& snapshot_id) const ABSL_LOCKS_EXCLUDED(mu_);

  // Jobs of `type`, newest first; `limit` 0 means all. O(jobs), from the
  // jobs' counts.
  std::vector<shutter::v1::SnapshotSummary> ListSnapshots(
      uint32_t limit,
      shutter::v1::JobType type = shutter::v1::JOB_TYPE_SNAPSHOT) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Cancels a running snapshot: queued partitions are dropped, in-flight
  // ones finish on their nodes, then everything it published is removed.
  // FAILED_PRECONDITION if already finished; NOT_FOUND if unknown. Returns
  // the job's fields and summary (no partitions).
  absl::StatusOr<shutter::v1::GetSnapshotResponse> CancelSnapshot(
      const std::string& snapshot_id) ABSL_LOCKS_EXCLUDED(mu_);

  // For operations on a committed snapshot (verify): OK if `job_id` is a
  // COMMITTED or PARTIAL job of a kind that produces snapshots;
  // FAILED_PRECONDITION saying what it is otherwise; NOT_FOUND if the
  // engine has no such job.
  absl::Status CheckCommittedSnapshot(const std::string& job_id) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // The engine's part of deleting a finished snapshot (the delete kind's
  // front door, DeleteSnapshotJob, does the rest): checks that it may be
  // deleted (finished and rolled back; unless `force`, neither pinned nor
  // the newest committed snapshot), then records delete_requested durably
  // and returns the job's fields. A snapshot already DELETED, or whose
  // deletion was asked before, is returned as it is. NOT_FOUND, INVALID_-
  // ARGUMENT (a malformed id), FAILED_PRECONDITION (why not).
  absl::StatusOr<shutter::v1::Snapshot> RequestDelete(
      const std::string& snapshot_id, bool force) ABSL_LOCKS_EXCLUDED(mu_);
  // Records the snapshot DELETED (staged: durable with whatever is staged
  // after it; it does not wait, so a kind's commit may call it). OK if it
  // already is.
  absl::Status MarkDeleted(const std::string& snapshot_id)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Sets the job's pinned flag, durably. Returns the job's fields.
  absl::StatusOr<shutter::v1::Snapshot> PinSnapshot(
      const std::string& snapshot_id, bool pinned) ABSL_LOCKS_EXCLUDED(mu_);

  // True if no attempt at the partition's task can still be publishing
  // legitimately: the job is finished, or the task is (PUBLISHED, FAILED,
  // CANCELLED). False for unknown jobs (another controller's, say).
  bool AttemptIsOver(const std::string& snapshot_id,
                     uint32_t partition_id) const ABSL_LOCKS_EXCLUDED(mu_);

  // Snapshots whose deletion was asked for but not finished (a crash
  // interrupted it, or its delete job failed): finish them with
  // DeleteSnapshotJob(engine, id, true, ...).
  std::vector<std::string> InterruptedDeletes() const ABSL_LOCKS_EXCLUDED(mu_);

  // Applies a node's concurrency limit to the scheduler (at once, for
  // queued work too), with AheadFor(node_id, limit) or, if the caller has
  // computed it, `ahead` tasks beyond it.
  void SetNodeLimit(const std::string& node_id, int limit);
  void SetNodeLimit(const std::string& node_id, int limit, int ahead);

  // Options::limits (may be null).
  NodeLimits* limits() const { return options_.limits; }

  // Tasks in flight and queued on one node now.
  scheduler::Scheduler::KeyStats NodeKeyStats(const std::string& node_id) const;

  // Per node: tasks in flight now and the most ever in flight at once.
  std::map<std::string, scheduler::Scheduler::KeyStats> NodeStats() const;

  // The job store's group commit figures.
  GroupCommitter::Stats StoreStats() const { return committer_.GetStats(); }

  // Stops dispatching, then waits for tasks the kinds run themselves
  // (JobKind::Shutdown). Jobs still running stay RUNNING in the store;
  // results arriving afterwards are recorded only if successful.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

  // Blocks until the job is finished (its state final and durable, its
  // commit or rollback no longer in progress) and returns its fields;
  // NOT_FOUND for an unknown job, DEADLINE_EXCEEDED after `timeout`,
  // UNAVAILABLE if the engine shuts down first. Not on the job store's
  // own thread (a kind's commit or AfterCommit).
  absl::StatusOr<shutter::v1::Snapshot> AwaitJob(const std::string& job_id,
                                                 absl::Duration timeout)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Tests: waits until every transition staged so far is durable and
  // acted upon (the actions may stage more: waits for those too).
  void WaitForQuiescenceForTesting() { committer_.WaitIdle(); }

 private:
  // A finished job of at least this many tasks returns freed memory to
  // the operating system (daemon::ReleaseFreedMemory).
  static constexpr size_t kReleaseMemoryAfterTasks = 1000;

  JobEngine(const Options& options, std::vector<std::unique_ptr<JobKind>> kinds,
            NodeRegistry* registry, JobStore* store, snapshot::Repository* repo,
            Timer* timer, Clock* clock);

  // What a job of this type does; null if no kind runs it (such jobs are
  // never loaded).
  JobKind* KindOf(shutter::v1::JobType type) const {
    auto it = kinds_.find(type);
    return it == kinds_.end() ? nullptr : it->second.get();
  }
  // FAILED_PRECONDITION for a job whose kind produces no snapshot (a
  // restore): for the operations on snapshots.
  absl::Status CheckIsSnapshot(const Job& job) const;

  // A task to dispatch after a restart, with its job's kind.
  struct ResumeTask {
    JobKind* kind;
    std::string job_id;
    uint32_t partition_id;
  };
  // Loads every job; returns the tasks to dispatch.
  absl::StatusOr<std::vector<ResumeTask>> Recover() ABSL_LOCKS_EXCLUDED(mu_);
  // Places the task now (kind->Place: the partition's leader, or the
  // controller) and queues it there, or waits (timer) while there is no
  // place, or fails it past the deadline. `kind` is the job's kind.
  void Dispatch(JobKind* kind, const std::string& snapshot_id,
                uint32_t partition_id) ABSL_LOCKS_EXCLUDED(mu_);
  // LimitFor with the node's capacity already looked up.
  int LimitGiven(const std::string& node_id, uint32_t capacity) const;
  // The scheduler task that runs a partition on `leader` (key = node, job,
  // weight = the partition's reported size); applies the node's limit.
  std::pair<scheduler::TaskOptions, scheduler::TaskFn> MakeSchedulerTask(
      JobKind* kind, const std::string& snapshot_id, uint32_t partition_id,
      uint64_t job_id, const NodeRegistry::Leader& leader)
      ABSL_LOCKS_EXCLUDED(mu_);
  void StartTask(JobKind* kind, const std::string& snapshot_id,
                 uint32_t partition_id, scheduler::SlotToken token)
      ABSL_LOCKS_EXCLUDED(mu_);
  void OnTaskDone(const std::string& snapshot_id, uint32_t partition_id,
                  absl::Time started, absl::StatusOr<TaskOutcome> result)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Creates every job and task metric's label combination at 0.
  void InitJobMetrics();
  // shutter_last_success_timestamp_seconds from the recovered jobs.
  void InitLastSuccess() ABSL_LOCKS_EXCLUDED(mu_);
  // Metrics of a job that just finished (state, duration).
  void RecordFinished(const shutter::v1::Snapshot& h);
  // Metrics of a task's answer: "published", "retried", "waiting", "failed".
  void RecordTask(shutter::v1::JobType type, absl::string_view outcome,
                  absl::string_view retry_class = {});

  // The next retry jitter, in [0.5, 1].
  double JitterLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Stages a record of `job` (a task, or its header).
  void StageTaskLocked(const Job& job, const shutter::v1::PartitionTask& task)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StageHeaderLocked(const Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs `fn` once what is staged is durable; if the write failed, fails
  // the job `snapshot_id` instead (in memory: the store is behind).
  void AfterDurable(const std::string& snapshot_id,
                    absl::AnyInvocable<void() &&> fn);
  void OnStoreError(const std::string& snapshot_id, const absl::Status& s)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Finishes the job if every task is terminal: writes the cluster
  // manifest (outside the lock), then records COMMITTED / PARTIAL /
  // FAILED.
  void MaybeFinish(const std::string& snapshot_id) ABSL_LOCKS_EXCLUDED(mu_);
  // Removes what a FAILED or CANCELLED job published, once none of its
  // checkpoints is still running; records rolled_back.
  void Rollback(const std::string& snapshot_id) ABSL_LOCKS_EXCLUDED(mu_);
  // Prunes the task records of finished jobs beyond the newest
  // Options::task_history_jobs (see there).
  void PruneHistoryLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PruneHistory() ABSL_LOCKS_EXCLUDED(mu_);

  Job* FindLocked(const std::string& snapshot_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The job if it is one of a kind that produces snapshots; NOT_FOUND, or
  // FAILED_PRECONDITION saying what it is.
  absl::StatusOr<Job*> FindSnapshotLocked(const std::string& snapshot_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Blocks until everything staged so far is durable.
  absl::Status WaitDurable() ABSL_LOCKS_EXCLUDED(mu_);

  const Options options_;
  NodeRegistry* const registry_;
  JobStore* const store_;
  snapshot::Repository* const repo_;
  Timer* const timer_;
  Clock* const clock_;
  SnapshotIdGenerator ids_;
  scheduler::Scheduler scheduler_;
  GroupCommitter committer_;
  const RetrySettings retry_;
  // What this engine's jobs do (task body, commit, rollback, cancel), by
  // type; fixed at construction.
  std::map<shutter::v1::JobType, std::unique_ptr<JobKind>> kinds_;
  std::atomic<uint64_t> next_job_{1};  // scheduler job ids

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Every job, by id (ids sort by creation time).
  std::map<std::string, std::unique_ptr<Job>> jobs_ ABSL_GUARDED_BY(mu_);
  uint64_t rng_state_ ABSL_GUARDED_BY(mu_) = 0x9e3779b97f4a7c15ull;
};

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_JOB_ENGINE_H_
