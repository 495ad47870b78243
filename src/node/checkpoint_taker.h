#ifndef SHUTTER_NODE_CHECKPOINT_TAKER_H_
#define SHUTTER_NODE_CHECKPOINT_TAKER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/io_priority.h"
#include "common/latency_recorder.h"
#include "node/node_host.h"
#include "node/node_lifecycle.h"
#include "node/work_runner.h"
#include "scheduler/scheduler.h"
#include "shutter/v1/node.pb.h"
#include "snapshot/repository.h"

namespace shutter::node {

// Takes partition checkpoints and publishes them to the repository, several
// at once up to the node's capacity. This is the embeddable node-side core
// of CreateCheckpoint: a service that hosts its own RocksDB partitions can
// use it with its own NodeHost-like store set.
//
// For one request: check the partition is led here at the expected epoch
// (FAILED_PRECONDITION otherwise, naming both epochs, nothing written);
// join the checkpoint if the same (snapshot, partition) is already being
// taken; return the published manifest if the partition is already in the
// repository; otherwise write a RocksDB checkpoint into
// "<staging_dir>/<snapshot>.<partition>", read the applied index and epoch
// from the checkpoint itself, publish it, and remove the staging directory
// whatever the outcome.
//
// Every error carries an ErrorReason (common/error_reason.h) saying what
// kind of refusal or failure it is, for the controller's retry policy.
//
// A taker refuses work (NODE_UNAVAILABLE, "starting") until its
// NodeLifecycle serves: a daemon sets it serving once it is registered and
// leads its partitions; Drain() makes it refuse again ("shutting down").
// The lifecycle is the node's, shared with its other kinds of work
// (Options::lifecycle), or the taker's own. Runs go through a WorkRunner
// (pool of `capacity`, single flight, cancelled snapshots).
//
// Thread-safe. `host`, `repo` and `clock` must outlive the taker.
class CheckpointTaker {
 public:
  struct Options {
    std::string node_id;
    // This incarnation's id (NodeInstance.instance_id). A request naming
    // another one is refused (WRONG_INCARNATION). Empty: no check.
    std::string instance_id;
    // Directory for checkpoints before publishing (same filesystem as the
    // partitions, so checkpoints are hard links).
    std::string staging_dir;
    // Checkpoints written at once; further requests wait in order.
    int capacity = 2;
    // A checkpoint is refused (RESOURCE_EXHAUSTED, with the numbers) while
    // the filesystem of the data or staging directory has less free.
    uint64_t min_free_bytes = 0;
    // The node's data directory (checked against min_free_bytes).
    std::string data_dir;
    // I/O class of the threads taking and publishing checkpoints (their
    // reads of the checkpoint and local writes), so the partitions' own
    // I/O goes first.
    IoClass io_class = IoClass::kBestEffortLow;
    // CPU nice value of the same threads (0: unchanged).
    int nice = 0;
    // The node's lifecycle (not owned; must outlive the taker). Null: the
    // taker has its own (embedders, tests).
    NodeLifecycle* lifecycle = nullptr;
    // Tests only: called on the worker right before a checkpoint is taken.
    std::function<void(const shutter::v1::CreateCheckpointRequest&)>
        test_before_checkpoint;
  };

  struct Stats {
    // Requests waiting for a slot or running; of those, running.
    uint32_t in_flight = 0;
    uint32_t peak_in_flight = 0;
    uint32_t running = 0;
    uint32_t peak_running = 0;
    uint64_t published = 0;          // newly written
    uint64_t already_published = 0;  // answered from the repository
    uint64_t failed = 0;
    // Repeated requests that joined a checkpoint already in progress.
    uint64_t joined = 0;
    // Bytes read from checkpoint files by publishes.
    uint64_t publish_bytes_read = 0;
    // Time newly written checkpoints spent in each phase, summed
    // (CreateCheckpointResponse.checkpoint_millis, publish_millis).
    int64_t checkpoint_phase_millis = 0;
    int64_t publish_phase_millis = 0;
    // Checkpoints this node starts at once now: the controller's limit
    // (SetLimit), clamped to the capacity; the capacity until one came.
    uint32_t limit = 0;
  };

  using Callback = absl::AnyInvocable<
      void(absl::StatusOr<shutter::v1::CreateCheckpointResponse>) &&>;

  // Removes anything left in staging_dir by an earlier crash.
  static absl::StatusOr<std::unique_ptr<CheckpointTaker>> Create(
      const Options& options, NodeHost* host, snapshot::Repository* repo,
      Clock* clock);
  ~CheckpointTaker();

  // Starts the work; `done` is called exactly once, on a worker thread (or
  // inline if the request is rejected up front or the taker is stopping).
  void CreateCheckpoint(const shutter::v1::CreateCheckpointRequest& request,
                        Callback done) ABSL_LOCKS_EXCLUDED(mu_);

  // Synchronous form, for tests and embedding.
  absl::StatusOr<shutter::v1::CreateCheckpointResponse> CreateCheckpointSync(
      const shutter::v1::CreateCheckpointRequest& request);

  // Cancels every checkpoint of `snapshot_id` on this node: those not yet
  // started fail with CANCELLED when their turn comes, running ones fail
  // with CANCELLED right before their publication would become visible
  // (nothing is published), and later requests are refused. Idempotent.
  void CancelSnapshot(const std::string& snapshot_id) ABSL_LOCKS_EXCLUDED(mu_);
  // The controller's limit for this node (HeartbeatResponse): at most that
  // many checkpoints run at once from now on (clamped to 1..capacity);
  // held requests wait for it, running ones finish.
  void SetLimit(uint32_t limit);

  // The lifecycle's (see NodeLifecycle): starts (true) or stops (false)
  // accepting requests (queued and running checkpoints are not affected);
  // stops for good; OK while serving, else the refusal.
  void SetServing(bool serving) { lifecycle_->SetServing(serving); }
  void Drain() { lifecycle_->Drain(); }
  absl::Status CheckServing() const { return lifecycle_->CheckServing(); }
  NodeLifecycle* lifecycle() const { return lifecycle_; }

  // Stops taking work: queued requests fail with UNAVAILABLE, running ones
  // finish. Idempotent.
  void Shutdown();

  Stats GetStats() const ABSL_LOCKS_EXCLUDED(mu_);
  // Duration (checkpoint + publish) of every checkpoint published.
  LatencyRecorder* durations() { return &durations_; }
  const Options& options() const { return options_; }

 private:
  CheckpointTaker(const Options& options, NodeHost* host,
                  snapshot::Repository* repo, Clock* clock);

  // Checks done before queueing; OK means the request may proceed.
  absl::Status Admit(const shutter::v1::CreateCheckpointRequest& request) const;
  // Takes and publishes the checkpoint once a slot is free; `arrived` is
  // when the request came (its wait goes into waited_millis).
  absl::StatusOr<shutter::v1::CreateCheckpointResponse> Run(
      const shutter::v1::CreateCheckpointRequest& request, absl::Time arrived);
  // Statistics of a checkpoint's outcome (the runner's finished hook).
  void Finished(
      const absl::StatusOr<shutter::v1::CreateCheckpointResponse>& result)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status CheckNotCancelled(const std::string& snapshot_id) const {
    return runner_.CheckNotCancelled(snapshot_id);
  }

  const Options options_;
  NodeLifecycle own_lifecycle_;
  NodeLifecycle* const lifecycle_;
  NodeHost* const host_;
  snapshot::Repository* const repo_;
  Clock* const clock_;

  mutable absl::Mutex mu_;
  uint64_t published_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t already_published_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t publish_bytes_read_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t checkpoint_phase_millis_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t publish_phase_millis_ ABSL_GUARDED_BY(mu_) = 0;
  LatencyRecorder durations_;
  // Declared last: its runs use the members above until it is shut down.
  WorkRunner<shutter::v1::CreateCheckpointResponse> runner_;
};

}  // namespace shutter::node

#endif  // SHUTTER_NODE_CHECKPOINT_TAKER_H_
