#ifndef SHUTTER_CONTROLLER_JOB_H_
#define SHUTTER_CONTROLLER_JOB_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "controller/retry_policy.h"
#include "shutter/v1/admin.pb.h"
#include "shutter/v1/common.pb.h"

namespace shutter::controller {

// How failed answers are retried (the engine's Options hold the values).
struct RetrySettings {
  // Answers per task before it fails.
  int max_attempts = 5;
  // Backoff after an answer: base * 2^(attempts-1), capped; times jitter.
  absl::Duration retry_base = absl::Milliseconds(200);
  absl::Duration retry_max = absl::Seconds(10);
  // Wait after an unreachable node: this, doubling per miss, capped.
  absl::Duration unreachable_poll = absl::Milliseconds(250);
  absl::Duration unreachable_poll_max = absl::Seconds(2);
};

// One job (a cluster snapshot) in memory: its own fields (the header, a
// shutter.v1.Snapshot without partitions) and its tasks sorted by
// partition id, with per-state counts and published bytes kept current, so
// that summaries, "is every task done" and listing cost O(1) per job and a
// task is found in O(log n). Pure bookkeeping: no threads, no I/O, no
// clock. Not thread-safe (the coordinator's lock guards it).
class Job {
 public:
  // From a full record (header plus partitions, in any order).
  explicit Job(shutter::v1::Snapshot record);

  const std::string& id() const { return header_.snapshot_id(); }
  const shutter::v1::Snapshot& header() const { return header_; }
  // The reference is valid until the next mutable_header() or
  // SharedHeader() call.
  shutter::v1::Snapshot& mutable_header() {
    shared_header_.reset();
    return header_;
  }
  // An immutable copy of the header to hand out beyond the lock (a task's
  // body): made once per change of the header, not per task.
  std::shared_ptr<const shutter::v1::Snapshot> SharedHeader() {
    if (shared_header_ == nullptr) {
      shared_header_ = std::make_shared<const shutter::v1::Snapshot>(header_);
    }
    return shared_header_;
  }
  size_t size() const { return tasks_.size(); }
  const std::vector<shutter::v1::PartitionTask>& tasks() const {
    return tasks_;
  }

  // The task of `partition_id`, or nullptr.
  shutter::v1::PartitionTask* Find(uint32_t partition_id);

  // Every change of a task's state goes through here (keeps the counts).
  void SetState(shutter::v1::PartitionTask& task,
                shutter::v1::PartitionTaskState state);
  // The state machine's step for a failed task (pure: time and jitter are
  // given). Counts the attempt (or, for kUnreachable, the wait), sets the
  // task WAITING with its last error and returns the delay before it is
  // dispatched again; or sets it FAILED (permanent class, attempts used
  // up, or the job's deadline would pass) and returns nullopt.
  std::optional<absl::Duration> ApplyFailure(shutter::v1::PartitionTask& task,
                                             const absl::Status& error,
                                             FailureClass cls,
                                             const RetrySettings& settings,
                                             absl::Time now, double jitter);

  // Marks a task PUBLISHED with what the node published (and, for a
  // snapshot, what its publish uploaded and found already stored, and the
  // digest of the manifest it stored).
  void Publish(shutter::v1::PartitionTask& task,
               const shutter::v1::PartitionManifest& manifest,
               const std::string& manifest_path, int64_t duration_millis,
               uint64_t uploaded_bytes = 0, uint64_t reused_bytes = 0,
               const std::string& manifest_sha256 = "");

  int Count(shutter::v1::PartitionTaskState state) const {
    return counts_[static_cast<size_t>(state) % counts_.size()];
  }
  // Every task PUBLISHED, FAILED or CANCELLED.
  bool AllTasksDone() const;
  bool AnyRunning() const {
    return Count(shutter::v1::PARTITION_TASK_STATE_RUNNING) > 0;
  }
  uint64_t published_bytes() const { return published_bytes_; }
  uint64_t uploaded_bytes() const { return uploaded_bytes_; }

  // Drops the tasks of a finished job, keeping what they summed to in the
  // header (pruned_tasks); returns the partition ids they had, whose
  // records the caller deletes. The summary is unchanged by it.
  std::vector<uint32_t> PruneTasks(absl::Time now);

  shutter::v1::SnapshotSummary Summary() const;
  // Header plus every task (O(n)).
  shutter::v1::Snapshot ToRecord() const;
  // The header, the summary and one page of tasks as asked.
  // INVALID_ARGUMENT for a malformed page token.
  absl::Status Page(const shutter::v1::GetSnapshotRequest& request,
                    shutter::v1::GetSnapshotResponse* response) const;
  // The cluster manifest of a finished job: its PUBLISHED tasks, and the
  // others listed as missing with their last error.
  shutter::v1::ClusterManifest BuildManifest(absl::Time committed_at) const;

  // Not persisted: where the job is in this process.
  uint64_t scheduler_job = 0;  // 0: not yet given one
  bool finishing = false;      // the cluster manifest is being written
  bool rolling_back = false;   // the rollback is removing files
  int commit_attempts = 0;     // failed commits since the decision

  // Largest page GetSnapshot answers with, and the default.
  static constexpr uint32_t kDefaultPageSize = 1000;
  static constexpr uint32_t kMaxPageSize = 10000;

 private:
  shutter::v1::Snapshot header_;
  std::shared_ptr<const shutter::v1::Snapshot> shared_header_;
  std::vector<shutter::v1::PartitionTask> tasks_;
  std::array<int, 8> counts_{};
  uint64_t published_bytes_ = 0;
  uint64_t uploaded_bytes_ = 0;  // of the PUBLISHED tasks
};

// True once a task will not change any more.
bool TaskDone(const shutter::v1::PartitionTask& t);

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_JOB_H_
