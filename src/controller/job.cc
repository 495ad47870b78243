#include "controller/job.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/text.h"
#include "snapshot/manifest.h"

namespace shutter::controller {

using shutter::v1::PartitionTask;
using shutter::v1::PartitionTaskState;

bool TaskDone(const PartitionTask& t) {
  return t.state() == shutter::v1::PARTITION_TASK_STATE_PUBLISHED ||
         t.state() == shutter::v1::PARTITION_TASK_STATE_FAILED ||
         t.state() == shutter::v1::PARTITION_TASK_STATE_CANCELLED;
}

Job::Job(shutter::v1::Snapshot record) {
  tasks_.assign(std::make_move_iterator(record.mutable_partitions()->begin()),
                std::make_move_iterator(record.mutable_partitions()->end()));
  record.clear_partitions();
  header_ = std::move(record);
  // A pruned job's records left by a crash mid-prune: not its tasks.
  if (header_.has_pruned_tasks()) tasks_.clear();
  std::sort(tasks_.begin(), tasks_.end(),
            [](const PartitionTask& a, const PartitionTask& b) {
              return a.partition_id() < b.partition_id();
            });
  for (const auto& t : tasks_) {
    ++counts_[static_cast<size_t>(t.state()) % counts_.size()];
    if (t.state() == shutter::v1::PARTITION_TASK_STATE_PUBLISHED) {
      published_bytes_ += t.total_bytes();
      uploaded_bytes_ += t.uploaded_bytes();
    }
  }
}

PartitionTask* Job::Find(uint32_t partition_id) {
  // Tasks are sorted by partition id, and clusters usually number their
  // partitions 0..n-1: then the task is at its id's offset, and a large
  // job is not searched twice per answer. (An id below the first wraps to
  // an offset past the end.)
  if (!tasks_.empty()) {
    const uint64_t at =
        uint64_t{partition_id} - uint64_t{tasks_.front().partition_id()};
    if (at < tasks_.size() && tasks_[at].partition_id() == partition_id) {
      return &tasks_[at];
    }
  }
  auto it = std::lower_bound(tasks_.begin(), tasks_.end(), partition_id,
                             [](const PartitionTask& t, uint32_t id) {
                               return t.partition_id() < id;
                             });
  if (it == tasks_.end() || it->partition_id() != partition_id) return nullptr;
  return &*it;
}

void Job::SetState(PartitionTask& task, PartitionTaskState state) {
  if (task.state() == shutter::v1::PARTITION_TASK_STATE_PUBLISHED &&
      state != shutter::v1::PARTITION_TASK_STATE_PUBLISHED) {
    published_bytes_ -= task.total_bytes();
    uploaded_bytes_ -= task.uploaded_bytes();
  }
  if (state != shutter::v1::PARTITION_TASK_STATE_WAITING) {
    task.clear_waiting_for();
  }
  --counts_[static_cast<size_t>(task.state()) % counts_.size()];
  ++counts_[static_cast<size_t>(state) % counts_.size()];
  task.set_state(state);
}

void Job::Publish(PartitionTask& task,
                  const shutter::v1::PartitionManifest& manifest,
                  const std::string& manifest_path, int64_t duration_millis,
                  uint64_t uploaded_bytes, uint64_t reused_bytes,
                  const std::string& manifest_sha256) {
  SetState(task, shutter::v1::PARTITION_TASK_STATE_PUBLISHED);
  task.set_applied_index(manifest.applied_index());
  task.set_leader_epoch(manifest.leader_epoch());
  task.set_total_bytes(manifest.total_bytes());
  task.set_file_count(manifest.files_size());
  task.set_manifest_path(manifest_path);
  task.set_duration_millis(duration_millis);
  task.set_uploaded_bytes(uploaded_bytes);
  task.set_reused_bytes(reused_bytes);
  // A restore or verify task keeps the digest it was checked against.
  if (!manifest_sha256.empty()) task.set_manifest_sha256(manifest_sha256);
  published_bytes_ += manifest.total_bytes();
  uploaded_bytes_ += uploaded_bytes;
}

std::optional<absl::Duration> Job::ApplyFailure(PartitionTask& task,
                                                const absl::Status& error,
                                                FailureClass cls,
                                                const RetrySettings& settings,
                                                absl::Time now, double jitter) {
  const absl::Time deadline = absl::FromUnixMicros(header_.deadline_micros());
  if (cls == FailureClass::kRepositoryBusy) {
    // A garbage collection holds the repository: wait for it to end,
    // polling; not an attempt (nothing is wrong with the task).
    const absl::Duration delay = settings.unreachable_poll_max * jitter;
    if (now + delay >= deadline) {
      SetState(task, shutter::v1::PARTITION_TASK_STATE_FAILED);
      task.set_last_error(absl::StrCat(
          "the repository was being garbage-collected until the job "
          "deadline: ",
          StatusText(error)));
      return std::nullopt;
    }
    SetState(task, shutter::v1::PARTITION_TASK_STATE_WAITING);
    task.set_waiting_for("garbage collection");
    task.set_last_error(absl::StrCat(
        "waiting for a garbage collection of the repository to end (",
        StatusText(error), ")"));
    return delay;
  }
  if (!CountsAsAttempt(cls)) {
    // No answer: wait for the node (or a new leader); not an attempt.
    task.set_unreachable(task.unreachable() + 1);
    absl::Duration delay = settings.unreachable_poll;
    for (uint32_t i = 1;
         i < task.unreachable() && delay < settings.unreachable_poll_max; ++i) {
      delay *= 2;
    }
    delay = std::min(delay, settings.unreachable_poll_max) * jitter;
    if (now + delay >= deadline) {
      SetState(task, shutter::v1::PARTITION_TASK_STATE_FAILED);
      task.set_last_error(absl::StrCat(
          "node ", task.node_id(),
          " unreachable until the job deadline: ", StatusText(error)));
      return std::nullopt;
    }
    SetState(task, shutter::v1::PARTITION_TASK_STATE_WAITING);
    task.set_waiting_for("node");
    task.set_last_error(absl::StrCat(
        "node ", task.node_id(), " unreachable (", StatusText(error),
        "); waiting for it to come back or be declared dead"));
    return delay;
  }
  task.set_attempts(task.attempts() + 1);
  task.set_last_error(StatusText(error));
  const bool retryable = IsRetryable(cls);
  const int attempts = static_cast<int>(task.attempts());
  absl::Duration backoff = settings.retry_base;
  for (int i = 1; i < attempts && backoff < settings.retry_max; ++i) {
    backoff *= 2;
  }
  backoff = std::min(backoff, settings.retry_max) * jitter;
  if (!retryable || attempts >= settings.max_attempts ||
      now + backoff >= deadline) {
    SetState(task, shutter::v1::PARTITION_TASK_STATE_FAILED);
    if (retryable) {
      task.set_last_error(absl::StrCat(
          StatusText(error),
          attempts >= settings.max_attempts
              ? absl::StrCat(" (gave up after ", attempts, " attempts)")
              : std::string(" (job deadline reached)")));
    }
    return std::nullopt;
  }
  SetState(task, shutter::v1::PARTITION_TASK_STATE_WAITING);
  task.set_waiting_for("retry");
  return backoff;
}

std::vector<uint32_t> Job::PruneTasks(absl::Time now) {
  std::vector<uint32_t> ids;
  ids.reserve(tasks_.size());
  for (const auto& t : tasks_) ids.push_back(t.partition_id());
  if (!header_.has_pruned_tasks()) {
    shutter::v1::PrunedTasks& p = *mutable_header().mutable_pruned_tasks();
    p.set_total(static_cast<uint32_t>(tasks_.size()));
    p.set_published(Count(shutter::v1::PARTITION_TASK_STATE_PUBLISHED));
    p.set_failed(Count(shutter::v1::PARTITION_TASK_STATE_FAILED));
    p.set_cancelled(Count(shutter::v1::PARTITION_TASK_STATE_CANCELLED));
    p.set_total_bytes(published_bytes_);
    p.set_uploaded_bytes(uploaded_bytes_);
    p.set_pruned_at_micros(absl::ToUnixMicros(now));
  }
  std::vector<PartitionTask>().swap(tasks_);
  counts_.fill(0);
  published_bytes_ = 0;
  uploaded_bytes_ = 0;
  return ids;
}

bool Job::AllTasksDone() const {
  return Count(shutter::v1::PARTITION_TASK_STATE_PUBLISHED) +
             Count(shutter::v1::PARTITION_TASK_STATE_FAILED) +
             Count(shutter::v1::PARTITION_TASK_STATE_CANCELLED) ==
         static_cast<int>(tasks_.size());
}

shutter::v1::SnapshotSummary Job::Summary() const {
  shutter::v1::SnapshotSummary s;
  s.set_snapshot_id(header_.snapshot_id());
  s.set_label(header_.label());
  s.set_state(header_.state());
  s.set_created_at_micros(header_.created_at_micros());
  s.set_finished_at_micros(header_.finished_at_micros());
  if (header_.has_pruned_tasks()) {
    const shutter::v1::PrunedTasks& p = header_.pruned_tasks();
    s.set_partitions_total(p.total());
    s.set_partitions_published(p.published());
    s.set_partitions_failed(p.failed());
    s.set_partitions_cancelled(p.cancelled());
    s.set_total_bytes(p.total_bytes());
    s.set_uploaded_bytes(p.uploaded_bytes());
  } else {
    s.set_partitions_total(tasks_.size());
    s.set_partitions_published(
        Count(shutter::v1::PARTITION_TASK_STATE_PUBLISHED));
    s.set_partitions_failed(Count(shutter::v1::PARTITION_TASK_STATE_FAILED));
    s.set_partitions_running(Count(shutter::v1::PARTITION_TASK_STATE_RUNNING));
    s.set_partitions_waiting(Count(shutter::v1::PARTITION_TASK_STATE_WAITING));
    s.set_partitions_queued(Count(shutter::v1::PARTITION_TASK_STATE_QUEUED));
    s.set_partitions_cancelled(
        Count(shutter::v1::PARTITION_TASK_STATE_CANCELLED));
    s.set_total_bytes(published_bytes_);
    s.set_uploaded_bytes(uploaded_bytes_);
  }
  s.set_pinned(header_.pinned());
  s.set_schedule(header_.schedule());
  s.set_type(header_.type());
  s.set_source_snapshot_id(header_.source_snapshot_id());
  return s;
}

shutter::v1::Snapshot Job::ToRecord() const {
  shutter::v1::Snapshot out = header_;
  out.mutable_partitions()->Reserve(static_cast<int>(tasks_.size()));
  for (const auto& t : tasks_) *out.add_partitions() = t;
  return out;
}

absl::Status Job::Page(const shutter::v1::GetSnapshotRequest& request,
                       shutter::v1::GetSnapshotResponse* response) const {
  uint32_t start = 0;
  if (!request.page_token().empty() &&
      !absl::SimpleAtoi(request.page_token(), &start)) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token ", Quote(request.page_token()),
                     " is not one this server gave"));
  }
  *response->mutable_snapshot() = header_;
  *response->mutable_summary() = Summary();
  if (request.summary_only()) return absl::OkStatus();
  const uint32_t page =
      request.page_size() == 0
          ? kDefaultPageSize
          : std::min<uint32_t>(request.page_size(), kMaxPageSize);
  auto it = std::lower_bound(tasks_.begin(), tasks_.end(), start,
                             [](const PartitionTask& t, uint32_t id) {
                               return t.partition_id() < id;
                             });
  for (; it != tasks_.end(); ++it) {
    if (request.states_size() > 0 &&
        std::find(request.states().begin(), request.states().end(),
                  it->state()) == request.states().end()) {
      continue;
    }
    if (static_cast<uint32_t>(response->snapshot().partitions_size()) >= page) {
      response->set_next_page_token(absl::StrCat(it->partition_id()));
      break;
    }
    *response->mutable_snapshot()->add_partitions() = *it;
  }
  return absl::OkStatus();
}

shutter::v1::ClusterManifest Job::BuildManifest(absl::Time committed_at) const {
  shutter::v1::ClusterManifest cm;
  cm.set_format_version(snapshot::kManifestFormatVersion);
  cm.set_snapshot_id(header_.snapshot_id());
  cm.set_label(header_.label());
  cm.set_created_at_micros(header_.created_at_micros());
  cm.set_committed_at_micros(absl::ToUnixMicros(committed_at));
  for (const auto& t : tasks_) {
    if (t.state() != shutter::v1::PARTITION_TASK_STATE_PUBLISHED) {
      auto* m = cm.add_missing();
      m->set_partition_id(t.partition_id());
      m->set_reason(t.last_error());
      continue;
    }
    auto* p = cm.add_partitions();
    p->set_partition_id(t.partition_id());
    p->set_node_id(t.node_id());
    p->set_leader_epoch(t.leader_epoch());
    p->set_applied_index(t.applied_index());
    p->set_manifest_path(t.manifest_path());
    p->set_total_bytes(t.total_bytes());
    p->set_manifest_sha256(t.manifest_sha256());
  }
  return cm;
}

}  // namespace shutter::controller
