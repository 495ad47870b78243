#include "controller/snapshot_coordinator.h"

#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/error_reason.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "controller/job_states.h"
#include "controller/retry_policy.h"
#include "spdlog/spdlog.h"

namespace shutter::controller {

using shutter::v1::CreateCheckpointResponse;
using shutter::v1::PartitionTask;
using shutter::v1::Snapshot;

namespace {
constexpr size_t kMaxLabelBytes = 256;

bool TaskDone(const PartitionTask& t) {
  return t.state() == shutter::v1::PARTITION_TASK_STATE_PUBLISHED ||
         t.state() == shutter::v1::PARTITION_TASK_STATE_FAILED ||
         t.state() == shutter::v1::PARTITION_TASK_STATE_CANCELLED;
}

bool AnyRunning(const Snapshot& s) {
  for (const auto& t : s.partitions()) {
    if (t.state() == shutter::v1::PARTITION_TASK_STATE_RUNNING) return true;
  }
  return false;
}

PartitionTask* FindTask(Snapshot& s, uint32_t partition_id) {
  for (auto& t : *s.mutable_partitions()) {
    if (t.partition_id() == partition_id) return &t;
  }
  return nullptr;
}

std::string StatusText(const absl::Status& s) {
  return absl::StrCat(absl::StatusCodeToString(s.code()), ": ", s.message());
}
}  // namespace

SnapshotCoordinator::SnapshotCoordinator(const Options& options,
                                         NodeRegistry* registry,
                                         JobStore* store,
                                         snapshot::Repository* repo,
                                         NodeTransport* transport, Timer* timer,
                                         Clock* clock)
    : options_(options),
      registry_(registry),
      store_(store),
      repo_(repo),
      transport_(transport),
      timer_(timer),
      clock_(clock),
      ids_(clock),
      scheduler_([&] {
        scheduler::Scheduler::Options o;
        o.num_workers = options.dispatch_threads;
        o.default_limit = 1;  // until the node's heartbeat says more
        o.global_limit = options.max_in_flight_total;
        return o;
      }()) {}

SnapshotCoordinator::~SnapshotCoordinator() { Shutdown(); }

absl::StatusOr<std::unique_ptr<SnapshotCoordinator>>
SnapshotCoordinator::Create(const Options& options, NodeRegistry* registry,
                            JobStore* store, snapshot::Repository* repo,
                            NodeTransport* transport, Timer* timer,
                            Clock* clock) {
  std::unique_ptr<SnapshotCoordinator> c(new SnapshotCoordinator(
      options, registry, store, repo, transport, timer, clock));
  ASSIGN_OR_RETURN(auto resume, c->Recover());
  for (const auto& [snapshot_id, partition_id] : resume) {
    c->Dispatch(snapshot_id, partition_id);
  }
  return c;
}

absl::StatusOr<std::vector<std::pair<std::string, uint32_t>>>
SnapshotCoordinator::Recover() {
  ASSIGN_OR_RETURN(std::vector<Snapshot> all, store_->LoadAll());
  std::vector<std::pair<std::string, uint32_t>> resume;
  absl::MutexLock l(&mu_);
  for (Snapshot& s : all) {
    ids_.ObserveExisting(s.snapshot_id());
    std::string id = s.snapshot_id();
    jobs_[id] = s;
    if (s.state() == shutter::v1::SNAPSHOT_STATE_CANCELLED && AnyRunning(s)) {
      // Their results were lost with the old process; the rollback
      // removes whatever they published.
      Snapshot updated = s;
      for (auto& t : *updated.mutable_partitions()) {
        if (t.state() == shutter::v1::PARTITION_TASK_STATE_RUNNING) {
          t.set_state(shutter::v1::PARTITION_TASK_STATE_CANCELLED);
        }
      }
      RETURN_IF_ERROR(CommitLocked(std::move(updated)));
    }
    if (IsFinished(s.state())) {
      RollbackLocked(id);  // finishes a rollback a crash interrupted
      continue;
    }
    // Resume: keep what is published; ask again for the rest (a node
    // answers a repeated request with the already-published result, or
    // joins the one still in progress).
    Snapshot updated = s;
    int pending = 0;
    for (auto& t : *updated.mutable_partitions()) {
      if (TaskDone(t)) continue;
      t.set_state(shutter::v1::PARTITION_TASK_STATE_WAITING);
      t.set_last_error("resuming after a controller restart");
      resume.emplace_back(id, t.partition_id());
      ++pending;
    }
    spdlog::warn(
        "snapshot {} was interrupted by a controller restart; resuming {} of "
        "{} partitions",
        id, pending, s.partitions_size());
    RETURN_IF_ERROR(CommitLocked(std::move(updated)));
    // All tasks may have finished just before the crash.
    MaybeFinishLocked(id);
  }
  return resume;
}

uint64_t SnapshotCoordinator::JobIdLocked(const std::string& snapshot_id) {
  auto [it, inserted] = job_ids_.emplace(snapshot_id, 0);
  if (inserted) it->second = next_job_.fetch_add(1);
  return it->second;
}

absl::StatusOr<std::string> SnapshotCoordinator::CreateSnapshot(
    const shutter::v1::CreateSnapshotRequest& request) {
  if (request.label().size() > kMaxLabelBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("label is ", request.label().size(),
                     " bytes; the limit is ", kMaxLabelBytes));
  }
  RETURN_IF_ERROR(CheckPrintableText("label", request.label()));
  std::vector<uint32_t> ids;
  std::vector<shutter::v1::PartitionInfo> known = registry_->ListPartitions();
  if (request.partition_ids().empty()) {
    for (const auto& p : known) ids.push_back(p.partition_id());
    if (ids.empty()) {
      return absl::FailedPreconditionError(
          "no partitions are known: no node has reported any yet");
    }
  } else {
    std::set<uint32_t> seen;
    std::set<uint32_t> known_ids;
    for (const auto& p : known) known_ids.insert(p.partition_id());
    for (uint32_t id : request.partition_ids()) {
      if (!seen.insert(id).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("partition ", id, " is listed twice"));
      }
      if (known_ids.count(id) == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "unknown partition ", id, ": no node reports hosting it"));
      }
      ids.push_back(id);
    }
    std::sort(ids.begin(), ids.end());
  }

  Snapshot job;
  job.set_snapshot_id(ids_.Next());
  job.set_label(request.label());
  job.set_allow_partial(request.allow_partial());
  job.set_state(shutter::v1::SNAPSHOT_STATE_RUNNING);
  const absl::Time now = clock_->Now();
  job.set_created_at_micros(absl::ToUnixMicros(now));
  job.set_deadline_micros(absl::ToUnixMicros(now + options_.job_timeout));
  std::vector<std::pair<uint32_t, NodeRegistry::Leader>> leaders;
  std::vector<uint32_t> leaderless;
  absl::Status first_leaderless;
  for (uint32_t id : ids) {
    auto leader = registry_->ResolveLeader(id);
    if (!leader.ok()) {
      leaderless.push_back(id);
      if (first_leaderless.ok()) first_leaderless = leader.status();
      continue;
    }
    PartitionTask* t = job.add_partitions();
    t->set_partition_id(id);
    t->set_state(shutter::v1::PARTITION_TASK_STATE_QUEUED);
    t->set_node_id(leader->node_id);
    t->set_node_instance_id(leader->instance_id);
    t->set_leader_epoch(leader->epoch);
    leaders.emplace_back(id, std::move(leader).value());
  }
  if (!leaderless.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        leaderless.size(), " of ", ids.size(),
        " partitions have no usable leader: ", FormatIdList(leaderless),
        " (first: ", first_leaderless.message(),
        "). Wait for their nodes, or remove nodes that left for good "
        "(shutterctl nodes remove)"));
  }
  const std::string snapshot_id = job.snapshot_id();
  uint64_t job_id;
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return absl::UnavailableError("controller is shutting down");
    RETURN_IF_ERROR(CommitLocked(std::move(job)));
    job_id = JobIdLocked(snapshot_id);
  }
  spdlog::info("snapshot {} created: {} partitions, label {}", snapshot_id,
               ids.size(), Quote(request.label(), kMaxLabelBytes));
  std::vector<std::pair<scheduler::TaskOptions, scheduler::TaskFn>> batch;
  for (auto& [id, leader] : leaders) {
    batch.push_back(MakeSchedulerTask(snapshot_id, id, job_id, leader));
  }
  // One batch: every node starts with its largest partitions.
  scheduler_.SubmitBatch(std::move(batch));
  return snapshot_id;
}

void SnapshotCoordinator::Dispatch(const std::string& snapshot_id,
                                   uint32_t partition_id) {
  auto leader = registry_->ResolveLeader(partition_id);
  uint64_t job_id = 0;
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;
    auto it = jobs_.find(snapshot_id);
    if (it == jobs_.end() || IsFinished(it->second.state())) return;
    Snapshot updated = it->second;
    PartitionTask* t = FindTask(updated, partition_id);
    if (t == nullptr || TaskDone(*t)) return;
    if (!leader.ok()) {
      // No usable leader (yet): look again soon, until the deadline.
      const bool changed =
          t->state() != shutter::v1::PARTITION_TASK_STATE_WAITING ||
          t->last_error() != StatusText(leader.status());
      if (clock_->Now() >= absl::FromUnixMicros(updated.deadline_micros())) {
        t->set_state(shutter::v1::PARTITION_TASK_STATE_FAILED);
        t->set_last_error(absl::StrCat("no usable leader before the deadline: ",
                                       StatusText(leader.status())));
        if (CommitLocked(std::move(updated)).ok()) {
          MaybeFinishLocked(snapshot_id);
        }
        return;
      }
      t->set_state(shutter::v1::PARTITION_TASK_STATE_WAITING);
      t->set_last_error(StatusText(leader.status()));
      // Persist changes only, not every poll.
      if (changed && !CommitLocked(std::move(updated)).ok()) return;
      timer_->RunAfter(options_.leader_poll, [this, snapshot_id, partition_id] {
        Dispatch(snapshot_id, partition_id);
      });
      return;
    }
    t->set_state(shutter::v1::PARTITION_TASK_STATE_QUEUED);
    t->set_node_id(leader->node_id);
    t->set_node_instance_id(leader->instance_id);
    t->set_leader_epoch(leader->epoch);
    if (!CommitLocked(std::move(updated)).ok()) return;
    job_id = JobIdLocked(snapshot_id);
  }
  auto [options, fn] =
      MakeSchedulerTask(snapshot_id, partition_id, job_id, *leader);
  scheduler_.Submit(std::move(options), std::move(fn));
}

std::pair<scheduler::TaskOptions, scheduler::TaskFn>
SnapshotCoordinator::MakeSchedulerTask(const std::string& snapshot_id,
                                       uint32_t partition_id, uint64_t job_id,
                                       const NodeRegistry::Leader& leader) {
  // Keep the node's limit in step with the capacity it last reported.
  auto cap = registry_->Capacity(leader.node_id);
  if (cap.ok()) scheduler_.SetLimit(leader.node_id, static_cast<int>(*cap));
  return {scheduler::TaskOptions{
              leader.node_id, job_id,
              static_cast<int64_t>(leader.approximate_size_bytes), nullptr},
          [this, snapshot_id, partition_id](scheduler::SlotToken token) {
            StartTask(snapshot_id, partition_id, std::move(token));
          }};
}

void SnapshotCoordinator::StartTask(const std::string& snapshot_id,
                                    uint32_t partition_id,
                                    scheduler::SlotToken token) {
  shutter::v1::CreateCheckpointRequest req;
  std::string address;
  bool redispatch = false;
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;  // the token goes back as it is destroyed
    auto it = jobs_.find(snapshot_id);
    if (it == jobs_.end() || IsFinished(it->second.state())) return;
    Snapshot updated = it->second;
    PartitionTask* t = FindTask(updated, partition_id);
    if (t == nullptr || TaskDone(*t)) return;
    // The leader is resolved when the task starts, not when it was queued:
    // if it moved meanwhile, queue the task for the new leader instead.
    auto leader = registry_->ResolveLeader(partition_id);
    if (!leader.ok() || leader->node_id != t->node_id() ||
        leader->instance_id != t->node_instance_id() ||
        leader->epoch != t->leader_epoch()) {
      redispatch = true;
    } else {
      address = leader->address;
      // Attempts are counted when an answer arrives (OnTaskDone).
      t->set_state(shutter::v1::PARTITION_TASK_STATE_RUNNING);
      req.set_snapshot_id(snapshot_id);
      req.set_partition_id(partition_id);
      req.set_expected_leader_epoch(t->leader_epoch());
      req.set_expected_instance_id(t->node_instance_id());
      if (!CommitLocked(std::move(updated)).ok()) return;
    }
  }
  if (redispatch) {
    token.Release();
    Dispatch(snapshot_id, partition_id);
    return;
  }
  absl::Time started = clock_->Now();
  transport_->CreateCheckpoint(
      address, req, options_.rpc_timeout,
      [this, snapshot_id, partition_id, started, token = std::move(token)](
          absl::StatusOr<CreateCheckpointResponse> result) mutable {
        // The node is done with this checkpoint: free its slot first.
        token.Release();
        OnTaskDone(snapshot_id, partition_id, started, std::move(result));
      });
}

double SnapshotCoordinator::JitterLocked() {
  // xorshift64 jitter in [0.5, 1], so retries of many tasks spread out.
  rng_state_ ^= rng_state_ << 13;
  rng_state_ ^= rng_state_ >> 7;
  rng_state_ ^= rng_state_ << 17;
  return 0.5 + 0.5 * static_cast<double>(rng_state_ % 1001) / 1000.0;
}

bool SnapshotCoordinator::WaitForNodeLocked(Snapshot& job, PartitionTask& task,
                                            const absl::Status& error) {
  task.set_unreachable(task.unreachable() + 1);
  absl::Duration delay = options_.unreachable_poll;
  for (uint32_t i = 1;
       i < task.unreachable() && delay < options_.unreachable_poll_max; ++i) {
    delay *= 2;
  }
  delay = std::min(delay, options_.unreachable_poll_max) * JitterLocked();
  const absl::Time deadline = absl::FromUnixMicros(job.deadline_micros());
  if (clock_->Now() + delay >= deadline) {
    task.set_state(shutter::v1::PARTITION_TASK_STATE_FAILED);
    task.set_last_error(absl::StrCat(
        "node ", task.node_id(),
        " unreachable until the job deadline: ", StatusText(error)));
    return false;
  }
  task.set_state(shutter::v1::PARTITION_TASK_STATE_WAITING);
  task.set_last_error(
      absl::StrCat("node ", task.node_id(), " unreachable (", StatusText(error),
                   "); waiting for it to come back or be declared dead"));
  const std::string snapshot_id = job.snapshot_id();
  const uint32_t partition_id = task.partition_id();
  timer_->RunAfter(delay, [this, snapshot_id, partition_id] {
    Dispatch(snapshot_id, partition_id);
  });
  return true;
}

bool SnapshotCoordinator::RetryOrFailLocked(Snapshot& job, PartitionTask& task,
                                            const absl::Status& error,
                                            bool retryable) {
  task.set_last_error(StatusText(error));
  const int attempts = static_cast<int>(task.attempts());
  absl::Duration backoff = options_.retry_base;
  for (int i = 1; i < attempts && backoff < options_.retry_max; ++i) {
    backoff *= 2;
  }
  backoff = std::min(backoff, options_.retry_max) * JitterLocked();
  const absl::Time deadline = absl::FromUnixMicros(job.deadline_micros());
  if (!retryable || attempts >= options_.max_attempts ||
      clock_->Now() + backoff >= deadline) {
    task.set_state(shutter::v1::PARTITION_TASK_STATE_FAILED);
    if (retryable) {
      task.set_last_error(absl::StrCat(
          StatusText(error),
          attempts >= options_.max_attempts
              ? absl::StrCat(" (gave up after ", attempts, " attempts)")
              : std::string(" (job deadline reached)")));
    }
    return false;
  }
  task.set_state(shutter::v1::PARTITION_TASK_STATE_WAITING);
  const std::string snapshot_id = job.snapshot_id();
  const uint32_t partition_id = task.partition_id();
  timer_->RunAfter(backoff, [this, snapshot_id, partition_id] {
    Dispatch(snapshot_id, partition_id);
  });
  return true;
}

absl::Status SnapshotCoordinator::VerifyPublished(
    const PartitionTask& task, const std::string& snapshot_id,
    const CreateCheckpointResponse& response) const {
  const auto& m = response.manifest();
  if (m.snapshot_id() != snapshot_id ||
      m.partition_id() != task.partition_id()) {
    return WithReason(absl::InternalError(absl::StrCat(
                          "node answered for snapshot ", Quote(m.snapshot_id()),
                          " partition ", m.partition_id())),
                      ErrorReason::kMismatchedAnswer);
  }
  if (m.leader_epoch() != task.leader_epoch()) {
    return WithReason(absl::FailedPreconditionError(absl::StrCat(
                          "checkpoint has leader epoch ", m.leader_epoch(),
                          ", expected ", task.leader_epoch())),
                      ErrorReason::kMismatchedAnswer);
  }
  auto read = repo_->ReadPartitionManifest(snapshot_id, task.partition_id());
  if (absl::IsNotFound(read.status())) {
    // The node says published, the repository has nothing.
    return WithReason(read.status(), ErrorReason::kMismatchedAnswer);
  }
  if (!read.ok()) return read.status();  // e.g. another manifest format
  const shutter::v1::PartitionManifest& stored = *read;
  if (stored.leader_epoch() != m.leader_epoch() ||
      stored.applied_index() != m.applied_index() ||
      stored.files_size() != m.files_size() ||
      stored.total_bytes() != m.total_bytes() ||
      stored.node_id() != task.node_id()) {
    return WithReason(
        absl::DataLossError(absl::StrCat(
            "repository manifest of partition ", task.partition_id(),
            " does not match the node's answer (epoch ", stored.leader_epoch(),
            " vs ", m.leader_epoch(), ", applied index ",
            stored.applied_index(), " vs ", m.applied_index(), ")")),
        ErrorReason::kMismatchedAnswer);
  }
  return absl::OkStatus();
}

void SnapshotCoordinator::OnTaskDone(
    const std::string& snapshot_id, uint32_t partition_id, absl::Time started,
    absl::StatusOr<CreateCheckpointResponse> result) {
  absl::Status verified = result.status();
  if (result.ok()) {
    PartitionTask task;
    {
      absl::MutexLock l(&mu_);
      auto it = jobs_.find(snapshot_id);
      if (it == jobs_.end()) return;
      task = *FindTask(it->second, partition_id);
    }
    verified = VerifyPublished(task, snapshot_id, *result);
  }
  absl::MutexLock l(&mu_);
  if (stopping_ && !verified.ok()) return;  // likely our own cancellation
  auto it = jobs_.find(snapshot_id);
  if (it == jobs_.end()) return;
  if (it->second.state() == shutter::v1::SNAPSHOT_STATE_CANCELLED) {
    // A checkpoint that was in flight when the snapshot was cancelled: now
    // that it is over, the rollback can run (once none is left running).
    Snapshot updated = it->second;
    FindTask(updated, partition_id)
        ->set_state(shutter::v1::PARTITION_TASK_STATE_CANCELLED);
    if (CommitLocked(std::move(updated)).ok()) RollbackLocked(snapshot_id);
    return;
  }
  if (IsFinished(it->second.state())) return;
  Snapshot updated = it->second;
  PartitionTask* t = FindTask(updated, partition_id);
  t->set_duration_millis(absl::ToInt64Milliseconds(clock_->Now() - started));
  const FailureClass cls = verified.ok() ? FailureClass::kPermanent
                                         : ClassifyCheckpointFailure(verified);
  if (verified.ok() || CountsAsAttempt(cls)) {
    t->set_attempts(t->attempts() + 1);
  }
  if (verified.ok()) {
    const auto& m = result->manifest();
    t->set_state(shutter::v1::PARTITION_TASK_STATE_PUBLISHED);
    t->set_applied_index(m.applied_index());
    t->set_total_bytes(m.total_bytes());
    t->set_file_count(m.files_size());
    t->set_manifest_path(result->manifest_path());
  } else if (cls == FailureClass::kUnreachable) {
    bool retry = WaitForNodeLocked(updated, *t, verified);
    if (t->unreachable() == 1 || !retry) {
      spdlog::warn("snapshot {} partition {}: node {} unreachable ({}){}",
                   snapshot_id, partition_id, t->node_id(),
                   StatusText(verified),
                   retry ? "; waiting for it" : "; giving up");
    }
  } else {
    bool retry = RetryOrFailLocked(updated, *t, verified, IsRetryable(cls));
    spdlog::warn("snapshot {} partition {} on node {} attempt {}: {} ({}){}",
                 snapshot_id, partition_id, t->node_id(), t->attempts(),
                 StatusText(verified), std::string(FailureClassName(cls)),
                 retry ? "; will retry" : "; giving up");
  }
  if (CommitLocked(std::move(updated)).ok()) MaybeFinishLocked(snapshot_id);
}

void SnapshotCoordinator::MaybeFinishLocked(const std::string& snapshot_id) {
  const Snapshot& job = jobs_.at(snapshot_id);
  if (IsFinished(job.state())) return;
  int failed = 0;
  const PartitionTask* first_failed = nullptr;
  for (const auto& t : job.partitions()) {
    if (!TaskDone(t)) return;
    if (t.state() == shutter::v1::PARTITION_TASK_STATE_FAILED) {
      if (first_failed == nullptr) first_failed = &t;
      ++failed;
    }
  }
  Snapshot updated = job;
  absl::Time now = clock_->Now();
  updated.set_finished_at_micros(absl::ToUnixMicros(now));
  const int published = job.partitions_size() - failed;
  const bool partial = failed > 0 && job.allow_partial() && published > 0;
  if (failed > 0 && !partial) {
    updated.set_state(shutter::v1::SNAPSHOT_STATE_FAILED);
    updated.set_error(absl::StrCat(failed, " of ", job.partitions_size(),
                                   " partitions failed; first: partition ",
                                   first_failed->partition_id(), ": ",
                                   first_failed->last_error()));
  } else {
    shutter::v1::ClusterManifest cm;
    cm.set_snapshot_id(snapshot_id);
    cm.set_label(job.label());
    cm.set_created_at_micros(job.created_at_micros());
    cm.set_committed_at_micros(absl::ToUnixMicros(now));
    for (const auto& t : job.partitions()) {
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
    }
    absl::Status s = repo_->CommitClusterManifest(cm);
    if (absl::IsAlreadyExists(s)) {
      // A crash after writing the manifest but before recording the state:
      // the manifest there is ours if it names this snapshot.
      auto existing = repo_->ReadClusterManifest(snapshot_id);
      s = existing.ok() && existing->snapshot_id() == snapshot_id
              ? absl::OkStatus()
              : s;
    }
    if (s.ok()) {
      updated.set_state(partial ? shutter::v1::SNAPSHOT_STATE_PARTIAL
                                : shutter::v1::SNAPSHOT_STATE_COMMITTED);
      updated.set_manifest_path(
          snapshot::Repository::ClusterManifestPath(snapshot_id));
      if (partial) {
        updated.set_error(absl::StrCat(
            failed, " of ", job.partitions_size(),
            " partitions missing (listed in the manifest); first: partition ",
            first_failed->partition_id(), ": ", first_failed->last_error()));
      }
    } else {
      updated.set_state(shutter::v1::SNAPSHOT_STATE_FAILED);
      updated.set_error(
          absl::StrCat("writing the cluster manifest failed: ", StatusText(s)));
    }
  }
  spdlog::info(
      "snapshot {} {} in {} ms{}{}", snapshot_id, StateName(updated.state()),
      (updated.finished_at_micros() - updated.created_at_micros()) / 1000,
      updated.error().empty() ? "" : ": ", updated.error());
  const bool failed_job = updated.state() == shutter::v1::SNAPSHOT_STATE_FAILED;
  if (CommitLocked(std::move(updated)).ok() && failed_job) {
    RollbackLocked(snapshot_id);
  }
}

void SnapshotCoordinator::RollbackLocked(const std::string& snapshot_id) {
  const Snapshot& job = jobs_.at(snapshot_id);
  if (job.rolled_back() || AnyRunning(job)) return;
  if (job.state() != shutter::v1::SNAPSHOT_STATE_FAILED &&
      job.state() != shutter::v1::SNAPSHOT_STATE_CANCELLED) {
    return;
  }
  absl::Status s = repo_->DeleteUncommittedSnapshot(snapshot_id);
  if (!s.ok()) {
    spdlog::error("rollback of snapshot {} failed (will retry at restart): {}",
                  snapshot_id, s.ToString());
    return;
  }
  Snapshot updated = job;
  updated.set_rolled_back(true);
  if (CommitLocked(std::move(updated)).ok()) {
    spdlog::info("snapshot {}: removed what it had published", snapshot_id);
  }
}

absl::StatusOr<Snapshot> SnapshotCoordinator::CancelSnapshot(
    const std::string& snapshot_id) {
  uint64_t job_id = 0;
  std::set<std::string> running_on;  // addresses of nodes with checkpoints
  {
    RETURN_IF_ERROR(CheckSafeId("snapshot id", snapshot_id));
    absl::MutexLock l(&mu_);
    auto it = jobs_.find(snapshot_id);
    if (it == jobs_.end()) {
      return absl::NotFoundError(absl::StrCat("no snapshot ", snapshot_id));
    }
    const Snapshot& job = it->second;
    if (job.state() == shutter::v1::SNAPSHOT_STATE_CANCELLED) return job;
    if (IsFinished(job.state())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "snapshot ", snapshot_id, " is already ", StateName(job.state())));
    }
    for (const auto& t : job.partitions()) {
      if (t.state() == shutter::v1::PARTITION_TASK_STATE_RUNNING) {
        auto addr = registry_->Address(t.node_id());
        if (addr.ok()) running_on.insert(*addr);
      }
    }
    Snapshot updated = job;
    updated.set_state(shutter::v1::SNAPSHOT_STATE_CANCELLED);
    updated.set_error("cancelled by an operator");
    updated.set_finished_at_micros(absl::ToUnixMicros(clock_->Now()));
    for (auto& t : *updated.mutable_partitions()) {
      // Checkpoints in flight finish on their nodes; the rollback waits
      // for them. Everything else stops here.
      if (t.state() != shutter::v1::PARTITION_TASK_STATE_RUNNING) {
        t.set_state(shutter::v1::PARTITION_TASK_STATE_CANCELLED);
      }
    }
    RETURN_IF_ERROR(CommitLocked(std::move(updated)));
    job_id = JobIdLocked(snapshot_id);
    spdlog::info("snapshot {} cancelled", snapshot_id);
  }
  scheduler_.CancelJob(job_id);
  // In-flight checkpoints stop on their nodes before publishing; their
  // calls then end and the rollback runs.
  for (const std::string& address : running_on) {
    transport_->CancelCheckpoints(address, snapshot_id);
  }
  absl::MutexLock l(&mu_);
  RollbackLocked(snapshot_id);
  return jobs_.at(snapshot_id);
}

absl::StatusOr<shutter::v1::VerifySnapshotResponse>
SnapshotCoordinator::VerifySnapshot(const std::string& snapshot_id) const {
  {
    RETURN_IF_ERROR(CheckSafeId("snapshot id", snapshot_id));
    absl::MutexLock l(&mu_);
    auto it = jobs_.find(snapshot_id);
    if (it == jobs_.end()) {
      return absl::NotFoundError(absl::StrCat("no snapshot ", snapshot_id));
    }
    if (it->second.state() != shutter::v1::SNAPSHOT_STATE_COMMITTED &&
        it->second.state() != shutter::v1::SNAPSHOT_STATE_PARTIAL) {
      return absl::FailedPreconditionError(absl::StrCat(
          "snapshot ", snapshot_id, " is not COMMITTED or PARTIAL"));
    }
  }
  // Reads the repository only: no lock held while hashing.
  shutter::v1::VerifySnapshotResponse resp;
  ASSIGN_OR_RETURN(auto cm, repo_->ReadClusterManifest(snapshot_id));
  for (const auto& entry : cm.partitions()) {
    resp.set_partitions_checked(resp.partitions_checked() + 1);
    auto pm = repo_->ReadPartitionManifest(snapshot_id, entry.partition_id());
    absl::Status s = pm.status();
    if (pm.ok()) {
      if (pm->applied_index() != entry.applied_index() ||
          pm->leader_epoch() != entry.leader_epoch()) {
        s = absl::DataLossError(absl::StrCat(
            "partition manifest (applied index ", pm->applied_index(),
            ", epoch ", pm->leader_epoch(),
            ") disagrees with the cluster "
            "manifest (",
            entry.applied_index(), ", ", entry.leader_epoch(), ")"));
      } else {
        s = repo_->VerifyPartition(*pm);
        resp.set_files_checked(resp.files_checked() + pm->files_size());
        resp.set_bytes_checked(resp.bytes_checked() + pm->total_bytes());
      }
    }
    if (!s.ok()) {
      auto* p = resp.add_problems();
      p->set_partition_id(entry.partition_id());
      p->set_error(StatusText(s));
    }
  }
  resp.set_ok(resp.problems_size() == 0);
  return resp;
}

absl::Status SnapshotCoordinator::CommitLocked(Snapshot updated) {
  absl::Status s = store_->Put(updated);
  if (!s.ok()) {
    // The durable record is behind; fail the job in memory so nothing
    // commits on state the store does not have.
    spdlog::error("job store write for snapshot {} failed: {}",
                  updated.snapshot_id(), s.ToString());
    auto it = jobs_.find(updated.snapshot_id());
    if (it != jobs_.end() && !IsFinished(it->second.state())) {
      it->second.set_state(shutter::v1::SNAPSHOT_STATE_FAILED);
      it->second.set_error(
          absl::StrCat("job store write failed: ", StatusText(s)));
    }
    return s;
  }
  std::string id = updated.snapshot_id();
  jobs_[id] = std::move(updated);
  return absl::OkStatus();
}

absl::StatusOr<Snapshot> SnapshotCoordinator::GetSnapshot(
    const std::string& snapshot_id) const {
  RETURN_IF_ERROR(CheckSafeId("snapshot id", snapshot_id));
  absl::MutexLock l(&mu_);
  auto it = jobs_.find(snapshot_id);
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("no snapshot ", snapshot_id));
  }
  return it->second;
}

std::vector<shutter::v1::SnapshotSummary> SnapshotCoordinator::ListSnapshots(
    uint32_t limit) const {
  absl::MutexLock l(&mu_);
  std::vector<shutter::v1::SnapshotSummary> out;
  for (auto it = jobs_.rbegin(); it != jobs_.rend(); ++it) {
    if (limit > 0 && out.size() >= limit) break;
    const Snapshot& s = it->second;
    shutter::v1::SnapshotSummary sum;
    sum.set_snapshot_id(s.snapshot_id());
    sum.set_label(s.label());
    sum.set_state(s.state());
    sum.set_created_at_micros(s.created_at_micros());
    sum.set_finished_at_micros(s.finished_at_micros());
    sum.set_partitions_total(s.partitions_size());
    uint64_t bytes = 0;
    uint32_t published = 0, failed = 0;
    for (const auto& t : s.partitions()) {
      if (t.state() == shutter::v1::PARTITION_TASK_STATE_PUBLISHED) ++published;
      if (t.state() == shutter::v1::PARTITION_TASK_STATE_FAILED) ++failed;
      bytes += t.total_bytes();
    }
    sum.set_partitions_published(published);
    sum.set_partitions_failed(failed);
    sum.set_total_bytes(bytes);
    out.push_back(std::move(sum));
  }
  return out;
}

void SnapshotCoordinator::SetNodeCapacity(const std::string& node_id,
                                          uint32_t capacity) {
  scheduler_.SetLimit(node_id, static_cast<int>(capacity));
}

std::map<std::string, scheduler::Scheduler::KeyStats>
SnapshotCoordinator::NodeStats() const {
  return scheduler_.GetStats().keys;
}

void SnapshotCoordinator::Shutdown() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  scheduler_.Shutdown();
}

}  // namespace shutter::controller
