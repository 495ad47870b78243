#include "controller/snapshot_coordinator.h"

#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"

namespace shutter::controller {

using shutter::v1::CreateCheckpointResponse;
using shutter::v1::PartitionTask;
using shutter::v1::Snapshot;

namespace {
constexpr size_t kMaxLabelBytes = 256;

bool IsTerminal(shutter::v1::SnapshotState s) {
  return s == shutter::v1::SNAPSHOT_STATE_COMMITTED ||
         s == shutter::v1::SNAPSHOT_STATE_FAILED;
}

bool TaskDone(const PartitionTask& t) {
  return t.state() == shutter::v1::PARTITION_TASK_STATE_PUBLISHED ||
         t.state() == shutter::v1::PARTITION_TASK_STATE_FAILED;
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
                                         NodeTransport* transport, Clock* clock)
    : options_(options),
      registry_(registry),
      store_(store),
      repo_(repo),
      transport_(transport),
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
                            NodeTransport* transport, Clock* clock) {
  std::unique_ptr<SnapshotCoordinator> c(new SnapshotCoordinator(
      options, registry, store, repo, transport, clock));
  RETURN_IF_ERROR(c->Recover());
  return c;
}

absl::Status SnapshotCoordinator::Recover() {
  ASSIGN_OR_RETURN(std::vector<Snapshot> all, store_->LoadAll());
  absl::MutexLock l(&mu_);
  for (Snapshot& s : all) {
    ids_.ObserveExisting(s.snapshot_id());
    std::string id = s.snapshot_id();
    jobs_[id] = s;
    if (IsTerminal(s.state())) continue;
    // Resuming unfinished jobs is not implemented yet: fail them honestly
    // rather than leave them RUNNING forever. No cluster manifest exists
    // for them (it is written only at commit).
    Snapshot updated = s;
    updated.set_state(shutter::v1::SNAPSHOT_STATE_FAILED);
    updated.set_error(
        "the controller restarted while this snapshot was running; "
        "resuming interrupted snapshots is not supported yet");
    updated.set_finished_at_micros(absl::ToUnixMicros(clock_->Now()));
    for (auto& t : *updated.mutable_partitions()) {
      if (!TaskDone(t)) {
        t.set_state(shutter::v1::PARTITION_TASK_STATE_FAILED);
        t.set_last_error("ABORTED: interrupted by controller restart");
      }
    }
    spdlog::warn(
        "snapshot {} was interrupted by a controller restart; "
        "marking it FAILED",
        id);
    RETURN_IF_ERROR(CommitLocked(std::move(updated)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> SnapshotCoordinator::CreateSnapshot(
    const shutter::v1::CreateSnapshotRequest& request) {
  if (request.label().size() > kMaxLabelBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("label is ", request.label().size(),
                     " bytes; the limit is ", kMaxLabelBytes));
  }
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
  job.set_state(shutter::v1::SNAPSHOT_STATE_RUNNING);
  job.set_created_at_micros(absl::ToUnixMicros(clock_->Now()));
  std::vector<std::pair<uint32_t, NodeRegistry::Leader>> leaders;
  for (uint32_t id : ids) {
    ASSIGN_OR_RETURN(NodeRegistry::Leader leader, registry_->ResolveLeader(id));
    PartitionTask* t = job.add_partitions();
    t->set_partition_id(id);
    t->set_state(shutter::v1::PARTITION_TASK_STATE_QUEUED);
    t->set_node_id(leader.node_id);
    t->set_leader_epoch(leader.epoch);
    leaders.emplace_back(id, std::move(leader));
  }
  const std::string snapshot_id = job.snapshot_id();
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return absl::UnavailableError("controller is shutting down");
    RETURN_IF_ERROR(CommitLocked(std::move(job)));
  }
  spdlog::info("snapshot {} created: {} partitions, label \"{}\"", snapshot_id,
               ids.size(), request.label());
  const uint64_t job_id = next_job_.fetch_add(1);
  std::vector<std::pair<scheduler::TaskOptions, scheduler::TaskFn>> batch;
  for (auto& [id, leader] : leaders) {
    auto cap = registry_->Capacity(leader.node_id);
    if (cap.ok()) scheduler_.SetLimit(leader.node_id, static_cast<int>(*cap));
    batch.emplace_back(
        scheduler::TaskOptions{
            leader.node_id, job_id,
            static_cast<int64_t>(leader.approximate_size_bytes), nullptr},
        [this, snapshot_id, id = id](scheduler::SlotToken token) {
          StartTask(snapshot_id, id, std::move(token));
        });
  }
  // One batch: every node starts with its largest partitions.
  scheduler_.SubmitBatch(std::move(batch));
  return snapshot_id;
}

void SnapshotCoordinator::StartTask(const std::string& snapshot_id,
                                    uint32_t partition_id,
                                    scheduler::SlotToken token) {
  shutter::v1::CreateCheckpointRequest req;
  std::string address;
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;  // the token goes back as it is destroyed
    auto it = jobs_.find(snapshot_id);
    if (it == jobs_.end() || IsTerminal(it->second.state())) return;
    Snapshot updated = it->second;
    PartitionTask* t = FindTask(updated, partition_id);
    auto addr = registry_->Address(t->node_id());
    t->set_attempts(t->attempts() + 1);
    if (!addr.ok()) {
      t->set_state(shutter::v1::PARTITION_TASK_STATE_FAILED);
      t->set_last_error(StatusText(addr.status()));
      if (CommitLocked(std::move(updated)).ok()) MaybeFinishLocked(snapshot_id);
      return;
    }
    address = *addr;
    t->set_state(shutter::v1::PARTITION_TASK_STATE_RUNNING);
    req.set_snapshot_id(snapshot_id);
    req.set_partition_id(partition_id);
    req.set_expected_leader_epoch(t->leader_epoch());
    if (!CommitLocked(std::move(updated)).ok()) return;
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

absl::Status SnapshotCoordinator::VerifyPublished(
    const PartitionTask& task, const std::string& snapshot_id,
    const CreateCheckpointResponse& response) const {
  const auto& m = response.manifest();
  if (m.snapshot_id() != snapshot_id ||
      m.partition_id() != task.partition_id()) {
    return absl::InternalError(absl::StrCat("node answered for snapshot ",
                                            m.snapshot_id(), " partition ",
                                            m.partition_id()));
  }
  if (m.leader_epoch() != task.leader_epoch()) {
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint has leader epoch ", m.leader_epoch(),
                     ", expected ", task.leader_epoch()));
  }
  ASSIGN_OR_RETURN(auto stored, repo_->ReadPartitionManifest(
                                    snapshot_id, task.partition_id()));
  if (stored.leader_epoch() != m.leader_epoch() ||
      stored.applied_index() != m.applied_index() ||
      stored.files_size() != m.files_size() ||
      stored.total_bytes() != m.total_bytes() ||
      stored.node_id() != task.node_id()) {
    return absl::DataLossError(absl::StrCat(
        "repository manifest of partition ", task.partition_id(),
        " does not match the node's answer (epoch ", stored.leader_epoch(),
        " vs ", m.leader_epoch(), ", applied index ", stored.applied_index(),
        " vs ", m.applied_index(), ")"));
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
  if (it == jobs_.end() || IsTerminal(it->second.state())) return;
  Snapshot updated = it->second;
  PartitionTask* t = FindTask(updated, partition_id);
  t->set_duration_millis(absl::ToInt64Milliseconds(clock_->Now() - started));
  if (verified.ok()) {
    const auto& m = result->manifest();
    t->set_state(shutter::v1::PARTITION_TASK_STATE_PUBLISHED);
    t->set_applied_index(m.applied_index());
    t->set_total_bytes(m.total_bytes());
    t->set_file_count(m.files_size());
    t->set_manifest_path(result->manifest_path());
  } else {
    t->set_state(shutter::v1::PARTITION_TASK_STATE_FAILED);
    t->set_last_error(StatusText(verified));
    spdlog::warn("snapshot {} partition {} on node {} failed: {}", snapshot_id,
                 partition_id, t->node_id(), verified.ToString());
  }
  if (CommitLocked(std::move(updated)).ok()) MaybeFinishLocked(snapshot_id);
}

void SnapshotCoordinator::MaybeFinishLocked(const std::string& snapshot_id) {
  const Snapshot& job = jobs_.at(snapshot_id);
  if (IsTerminal(job.state())) return;
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
  if (failed > 0) {
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
      auto* p = cm.add_partitions();
      p->set_partition_id(t.partition_id());
      p->set_node_id(t.node_id());
      p->set_leader_epoch(t.leader_epoch());
      p->set_applied_index(t.applied_index());
      p->set_manifest_path(t.manifest_path());
      p->set_total_bytes(t.total_bytes());
    }
    absl::Status s = repo_->CommitClusterManifest(cm);
    if (s.ok()) {
      updated.set_state(shutter::v1::SNAPSHOT_STATE_COMMITTED);
      updated.set_manifest_path(
          snapshot::Repository::ClusterManifestPath(snapshot_id));
    } else {
      updated.set_state(shutter::v1::SNAPSHOT_STATE_FAILED);
      updated.set_error(
          absl::StrCat("writing the cluster manifest failed: ", StatusText(s)));
    }
  }
  spdlog::info(
      "snapshot {} {} in {} ms{}{}", snapshot_id,
      updated.state() == shutter::v1::SNAPSHOT_STATE_COMMITTED ? "COMMITTED"
                                                               : "FAILED",
      (updated.finished_at_micros() - updated.created_at_micros()) / 1000,
      updated.error().empty() ? "" : ": ", updated.error());
  CommitLocked(std::move(updated)).IgnoreError();
}

absl::Status SnapshotCoordinator::CommitLocked(Snapshot updated) {
  absl::Status s = store_->Put(updated);
  if (!s.ok()) {
    // The durable record is behind; fail the job in memory so nothing
    // commits on state the store does not have.
    spdlog::error("job store write for snapshot {} failed: {}",
                  updated.snapshot_id(), s.ToString());
    auto it = jobs_.find(updated.snapshot_id());
    if (it != jobs_.end() && !IsTerminal(it->second.state())) {
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
