#include "controller/job_engine.h"

#include <cctype>
#include <optional>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/daemon.h"
#include "common/error_reason.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "controller/job_states.h"
#include "controller/retry_policy.h"
#include "spdlog/spdlog.h"

namespace shutter::controller {

using shutter::v1::PartitionTask;
using shutter::v1::Snapshot;

namespace {}  // namespace

JobEngine::JobEngine(const Options& options,
                     std::vector<std::unique_ptr<JobKind>> kinds,
                     NodeRegistry* registry, JobStore* store,
                     snapshot::Repository* repo, Timer* timer, Clock* clock)
    : options_(options),
      registry_(registry),
      store_(store),
      repo_(repo),
      timer_(timer),
      clock_(clock),
      ids_(clock),
      scheduler_([&] {
        scheduler::Scheduler::Options o;
        o.num_workers = options.dispatch_threads;
        o.default_limit = 1;  // until the node's heartbeat says more
        o.global_limit = options.max_in_flight_total;
        o.thread_name = "dispatch";
        return o;
      }()),
      committer_(store),
      retry_{options.max_attempts, options.retry_base, options.retry_max,
             options.unreachable_poll, options.unreachable_poll_max} {
  for (auto& kind : kinds) {
    const shutter::v1::JobType type = kind->type();
    kind->Bind(this);
    kinds_[type] = std::move(kind);
  }
  if (metrics::Registry* m = options_.metrics; m != nullptr) {
    metrics::Histogram* write =
        m->GetHistogram("shutter_job_store_write_seconds",
                        "Latency of one durable (synced) job store write");
    metrics::Histogram* batch = m->GetHistogram(
        "shutter_job_store_batch_records",
        "Records per durable job store write (group commit)", {},
        {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000});
    committer_.SetObserver([write, batch](size_t records, double seconds) {
      write->Observe(seconds);
      batch->Observe(static_cast<double>(records));
    });
    auto per_node = [this](auto field) {
      return [this, field](const metrics::EmitFn& emit) {
        for (const auto& [node, st] : scheduler_.GetStats().keys) {
          emit({{"node", node}}, static_cast<double>(field(st)));
        }
      };
    };
    using KS = scheduler::Scheduler::KeyStats;
    m->AddGaugeCallback("shutter_node_tasks_in_flight",
                        "Partition tasks (checkpoints, restores) running on "
                        "each node now",
                        per_node([](const KS& k) { return k.in_flight; }),
                        this);
    m->AddGaugeCallback("shutter_node_tasks_queued",
                        "Partition tasks waiting for a slot on each node",
                        per_node([](const KS& k) { return k.queued; }), this);
    m->AddGaugeCallback("shutter_node_limit",
                        "Tasks each node is given at once (its current limit)",
                        per_node([](const KS& k) { return k.limit; }), this);
  }
}

namespace {
// The job metrics' families (one help text each, wherever they are used).
constexpr char kJobsTotal[] = "shutter_jobs_total";
constexpr char kJobsTotalHelp[] = "Snapshot and restore jobs by final state";
constexpr char kJobDuration[] = "shutter_job_duration_seconds";
constexpr char kJobDurationHelp[] = "From a job's creation to its final state";
constexpr char kLastSuccess[] = "shutter_last_success_timestamp_seconds";
constexpr char kLastSuccessHelp[] =
    "When the last job of this type committed (Unix time; for snapshots, "
    "the controller's start if none committed before it)";
constexpr char kTasksTotal[] = "shutter_partition_tasks_total";
constexpr char kTasksTotalHelp[] =
    "Answers to partition tasks, by outcome (published, retried, waiting "
    "for an unreachable node or a garbage collection, failed)";
constexpr char kRetries[] = "shutter_task_retries_total";
constexpr char kRetriesHelp[] = "Partition task retries by failure class";
constexpr char kQueueWait[] = "shutter_task_queue_wait_seconds";
constexpr char kQueueWaitHelp[] =
    "From a task's queueing for a node to its start (waiting for a slot)";

std::string StateLabel(shutter::v1::SnapshotState state) {
  std::string s = StateName(state);
  for (char& c : s) c = static_cast<char>(std::tolower(c));
  return s;
}
}  // namespace

void JobEngine::InitJobMetrics() {
  metrics::Registry* m = options_.metrics;
  if (m == nullptr) return;
  // Every label combination exists from the start at 0, so that
  // increase() sees the first failure (a series born at 1 has no
  // increase) and dashboards show zeros, not "no data".
  m->GetHistogram(kQueueWait, kQueueWaitHelp);
  for (const auto& [type, kind] : kinds_) {
    const std::string t = kind->name();
    for (auto state : {shutter::v1::SNAPSHOT_STATE_COMMITTED,
                       shutter::v1::SNAPSHOT_STATE_PARTIAL,
                       shutter::v1::SNAPSHOT_STATE_FAILED,
                       shutter::v1::SNAPSHOT_STATE_CANCELLED}) {
      m->GetCounter(kJobsTotal, kJobsTotalHelp,
                    {{"type", t}, {"state", StateLabel(state)}});
    }
    m->GetHistogram(kJobDuration, kJobDurationHelp, {{"type", t}});
    for (const char* outcome : {"published", "retried", "waiting", "failed"}) {
      m->GetCounter(kTasksTotal, kTasksTotalHelp,
                    {{"type", t}, {"outcome", outcome}});
    }
    for (FailureClass c : {FailureClass::kLeadership, FailureClass::kBusy,
                           FailureClass::kDeadline, FailureClass::kTransient}) {
      m->GetCounter(kRetries, kRetriesHelp,
                    {{"type", t}, {"class", std::string(FailureClassName(c))}});
    }
  }
}

void JobEngine::InitLastSuccess() {
  metrics::Registry* m = options_.metrics;
  if (m == nullptr) return;
  // From the jobs in the store, so a restart does not reset the age an
  // alert watches; a controller with no committed snapshot counts from
  // its own start (ShutterNoRecentSnapshot then fires if none commits).
  // (Kinds that produce snapshots count from the start; the others have
  // no series until one commits.)
  std::map<shutter::v1::JobType, int64_t> last;
  {
    absl::MutexLock l(&mu_);
    for (const auto& [id, job] : jobs_) {
      const Snapshot& h = job->header();
      if (!IsUsable(h.state())) continue;
      last[h.type()] = std::max(last[h.type()], h.finished_at_micros());
    }
  }
  for (const auto& [type, kind] : kinds_) {
    int64_t at = last[type];
    if (at == 0 && kind->ProducesSnapshot()) {
      at = absl::ToUnixMicros(clock_->Now());
    }
    if (at > 0) {
      m->GetGauge(kLastSuccess, kLastSuccessHelp, {{"type", kind->name()}})
          ->Set(at / 1e6);
    }
  }
}

void JobEngine::RecordFinished(const Snapshot& h) {
  metrics::Registry* m = options_.metrics;
  if (m == nullptr) return;
  const std::string type = KindOf(h.type())->name();
  m->GetCounter(kJobsTotal, kJobsTotalHelp,
                {{"type", type}, {"state", StateLabel(h.state())}})
      ->Inc();
  if (h.finished_at_micros() > 0) {
    m->GetHistogram(kJobDuration, kJobDurationHelp, {{"type", type}})
        ->Observe((h.finished_at_micros() - h.created_at_micros()) / 1e6);
  }
  if (IsUsable(h.state())) {
    m->GetGauge(kLastSuccess, kLastSuccessHelp, {{"type", type}})
        ->Set(h.finished_at_micros() / 1e6);
  }
}

void JobEngine::RecordTask(shutter::v1::JobType type, absl::string_view outcome,
                           absl::string_view retry_class) {
  metrics::Registry* m = options_.metrics;
  if (m == nullptr) return;
  const std::string t = KindOf(type)->name();
  m->GetCounter(kTasksTotal, kTasksTotalHelp,
                {{"type", t}, {"outcome", std::string(outcome)}})
      ->Inc();
  if (!retry_class.empty()) {
    m->GetCounter(kRetries, kRetriesHelp,
                  {{"type", t}, {"class", std::string(retry_class)}})
        ->Inc();
  }
}

JobEngine::~JobEngine() {
  // A scrape must not reach this engine once it is going (a controller
  // that loses leadership keeps its registry and destroys its engine).
  if (options_.metrics != nullptr) options_.metrics->RemoveCallbacks(this);
  Shutdown();
  committer_.Shutdown();  // writes what is still staged
}

absl::StatusOr<std::unique_ptr<JobEngine>> JobEngine::Create(
    const Options& options, std::vector<std::unique_ptr<JobKind>> kinds,
    NodeRegistry* registry, JobStore* store, snapshot::Repository* repo,
    Timer* timer, Clock* clock) {
  std::set<shutter::v1::JobType> types;
  for (const auto& kind : kinds) {
    if (!types.insert(kind->type()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("two job kinds for type ", kind->name()));
    }
  }
  std::unique_ptr<JobEngine> c(new JobEngine(
      options, std::move(kinds), registry, store, repo, timer, clock));
  c->InitJobMetrics();
  ASSIGN_OR_RETURN(auto resume, c->Recover());
  c->InitLastSuccess();
  for (const auto& [kind, snapshot_id, partition_id] : resume) {
    c->Dispatch(kind, snapshot_id, partition_id);
  }
  return c;
}

Job* JobEngine::FindLocked(const std::string& snapshot_id) {
  auto it = jobs_.find(snapshot_id);
  return it == jobs_.end() ? nullptr : it->second.get();
}

absl::StatusOr<Job*> JobEngine::FindSnapshotLocked(
    const std::string& snapshot_id) {
  Job* job = FindLocked(snapshot_id);
  if (job == nullptr) {
    return absl::NotFoundError(absl::StrCat("no snapshot ", snapshot_id));
  }
  RETURN_IF_ERROR(CheckIsSnapshot(*job));
  return job;
}

void JobEngine::StageTaskLocked(const Job& job, const PartitionTask& task) {
  committer_.Put(JobKeys::Task(job.id(), task.partition_id()),
                 JobKeys::EncodeTask(job.id(), task));
}

void JobEngine::StageHeaderLocked(const Job& job) {
  committer_.Put(JobKeys::Header(job.id()),
                 JobKeys::EncodeHeader(job.header()));
}

void JobEngine::AfterDurable(const std::string& snapshot_id,
                             absl::AnyInvocable<void() &&> fn) {
  committer_.AfterDurable(
      [this, snapshot_id, fn = std::move(fn)](absl::Status s) mutable {
        if (!s.ok()) {
          OnStoreError(snapshot_id, s);
          return;
        }
        std::move(fn)();
      });
}

void JobEngine::OnStoreError(const std::string& snapshot_id,
                             const absl::Status& s) {
  // The durable record is behind: fail the job in memory so nothing
  // commits on state the store does not have.
  spdlog::error("job store write for snapshot {} failed: {}", snapshot_id,
                s.ToString());
  absl::MutexLock l(&mu_);
  Job* job = FindLocked(snapshot_id);
  if (job != nullptr && !IsFinished(job->header().state())) {
    job->mutable_header().set_state(shutter::v1::SNAPSHOT_STATE_FAILED);
    job->mutable_header().set_error(
        absl::StrCat("job store write failed: ", StatusText(s)));
  }
}

absl::StatusOr<std::vector<JobEngine::ResumeTask>> JobEngine::Recover() {
  ASSIGN_OR_RETURN(std::vector<Snapshot> all, store_->LoadAll());
  std::vector<ResumeTask> resume;
  std::vector<std::string> finish, rollback;
  {
    absl::MutexLock l(&mu_);
    for (Snapshot& s : all) {
      ids_.ObserveExisting(s.snapshot_id());
      if (s.has_pruned_tasks()) {
        // Task records a crash left mid-prune (the header went first).
        for (const auto& t : s.partitions()) {
          committer_.Delete(JobKeys::Task(s.snapshot_id(), t.partition_id()));
        }
      }
      auto owned = std::make_unique<Job>(std::move(s));
      Job& job = *owned;
      const std::string id = job.id();
      if (KindOf(job.header().type()) == nullptr) {
        // A newer controller's kind: kept as it is, never resumed, and not
        // listed (no kind to describe it).
        spdlog::warn(
            "job {} has type {}, which this controller does not run; "
            "left as it is",
            id, static_cast<int>(job.header().type()));
        continue;
      }
      jobs_[id] = std::move(owned);
      if (job.header().state() == shutter::v1::SNAPSHOT_STATE_CANCELLED &&
          job.AnyRunning()) {
        // Their results were lost with the old process; the rollback
        // removes whatever they published.
        for (const auto& t : job.tasks()) {
          if (t.state() != shutter::v1::PARTITION_TASK_STATE_RUNNING) continue;
          PartitionTask& task = *job.Find(t.partition_id());
          job.SetState(task, shutter::v1::PARTITION_TASK_STATE_CANCELLED);
          StageTaskLocked(job, task);
        }
      }
      if (IsFinished(job.header().state())) {
        rollback.push_back(id);  // finishes a rollback a crash interrupted
        continue;
      }
      // Resume: keep what is published; ask again for the rest (a node
      // answers a repeated request with the already-published result, or
      // joins the one still in progress).
      int pending = 0;
      for (const auto& t : job.tasks()) {
        if (TaskDone(t)) continue;
        PartitionTask& task = *job.Find(t.partition_id());
        job.SetState(task, shutter::v1::PARTITION_TASK_STATE_WAITING);
        task.set_waiting_for("restart");
        task.set_last_error("resuming after a controller restart");
        StageTaskLocked(job, task);
        resume.push_back(
            {KindOf(job.header().type()), id, task.partition_id()});
        ++pending;
      }
      spdlog::warn(
          "snapshot {} was interrupted by a controller restart; resuming {} "
          "of {} partitions",
          id, pending, job.size());
      finish.push_back(id);  // all tasks may have finished before the crash
    }
  }
  RETURN_IF_ERROR(committer_.Flush());
  for (const auto& id : rollback) Rollback(id);
  for (const auto& id : finish) MaybeFinish(id);
  PruneHistory();
  return resume;
}

absl::StatusOr<std::vector<std::pair<uint32_t, NodeRegistry::Leader>>>
JobEngine::ResolveLeaders(const std::vector<uint32_t>& ids) const {
  std::vector<std::pair<uint32_t, NodeRegistry::Leader>> leaders;
  leaders.reserve(ids.size());
  std::vector<uint32_t> leaderless;
  absl::Status first_leaderless;
  for (uint32_t id : ids) {
    auto leader = registry_->ResolveLeader(id);
    if (!leader.ok()) {
      leaderless.push_back(id);
      if (first_leaderless.ok()) first_leaderless = leader.status();
      continue;
    }
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
  return leaders;
}

namespace {
constexpr size_t kMaxRequestIdBytes = 128;
}  // namespace

absl::StatusOr<std::optional<std::string>> JobEngine::FindRequest(
    const std::string& request_id, shutter::v1::JobType type) {
  if (request_id.empty()) return std::nullopt;
  if (request_id.size() > kMaxRequestIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("request_id is ", request_id.size(),
                     " bytes; the limit is ", kMaxRequestIdBytes));
  }
  RETURN_IF_ERROR(CheckPrintableText("request_id", request_id));
  std::string found;
  {
    absl::MutexLock l(&mu_);
    for (const auto& [id, job] : jobs_) {
      if (job->header().request_id() != request_id) continue;
      if (job->header().type() != type) {
        return absl::AlreadyExistsError(absl::StrCat(
            "request_id ", request_id, " was used for job ", id, " of type ",
            shutter::v1::JobType_Name(job->header().type())));
      }
      found = id;
      break;
    }
  }
  if (found.empty()) return std::nullopt;
  // Answer as the first call did: only once the job is durable.
  RETURN_IF_ERROR(WaitDurable());
  return found;
}

absl::StatusOr<std::string> JobEngine::Submit(JobPlan plan) {
  Snapshot& record = plan.record;
  {
    auto earlier = FindRequest(record.request_id(), record.type());
    if (!earlier.ok()) return earlier.status();
    if (earlier->has_value()) return **earlier;
  }
  std::vector<std::pair<uint32_t, NodeRegistry::Leader>>& leaders =
      plan.placements;
  record.set_snapshot_id(ids_.Next());
  record.set_state(shutter::v1::SNAPSHOT_STATE_RUNNING);
  const absl::Time now = clock_->Now();
  record.set_created_at_micros(absl::ToUnixMicros(now));
  record.set_deadline_micros(absl::ToUnixMicros(now + options_.job_timeout));
  // Tasks the caller prepared (restores: the expected applied index),
  // by partition id.
  std::map<uint32_t, PartitionTask> prepared;
  for (auto& t : *record.mutable_partitions()) {
    prepared[t.partition_id()] = std::move(t);
  }
  record.clear_partitions();
  record.mutable_partitions()->Reserve(static_cast<int>(leaders.size()));
  for (const auto& [id, leader] : leaders) {
    PartitionTask* t = record.add_partitions();
    if (auto it = prepared.find(id); it != prepared.end()) {
      *t = std::move(it->second);
    }
    t->set_partition_id(id);
    t->set_state(shutter::v1::PARTITION_TASK_STATE_QUEUED);
    t->set_node_id(leader.node_id);
    t->set_node_instance_id(leader.instance_id);
    t->set_leader_epoch(leader.epoch);
  }
  const std::string job_id_str = record.snapshot_id();
  if (KindOf(record.type()) == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("this controller runs no jobs of type ",
                     shutter::v1::JobType_Name(record.type())));
  }
  JobKind* kind = KindOf(record.type());
  uint64_t job_id;
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return absl::UnavailableError("controller is shutting down");
    if (!record.request_id().empty()) {
      // A concurrent call with the same key got here first.
      for (const auto& [id, other] : jobs_) {
        if (other->header().request_id() == record.request_id()) {
          return absl::AbortedError(
              absl::StrCat("a call with request_id ", record.request_id(),
                           " is creating job ", id, " now; retry to get it"));
        }
      }
    }
    auto owned = std::make_unique<Job>(std::move(record));
    Job& job = *owned;
    job.scheduler_job = job_id = next_job_.fetch_add(1);
    // Tasks first, the header last: a crash in between leaves no job.
    for (const auto& t : job.tasks()) StageTaskLocked(job, t);
    StageHeaderLocked(job);
    jobs_[job_id_str] = std::move(owned);
  }
  // Acknowledge (and dispatch) only once the job is durable.
  absl::Status written = WaitDurable();
  if (!written.ok()) {
    OnStoreError(job_id_str, written);
    return written;
  }
  std::vector<std::pair<scheduler::TaskOptions, scheduler::TaskFn>> batch;
  batch.reserve(leaders.size());
  for (auto& [id, leader] : leaders) {
    batch.push_back(MakeSchedulerTask(kind, job_id_str, id, job_id, leader));
  }
  // One batch: every node starts with its largest partitions.
  scheduler_.SubmitBatch(std::move(batch));
  return job_id_str;
}

const JobKind* JobEngine::KindOfJob(const std::string& job_id) const {
  absl::MutexLock l(&mu_);
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? nullptr : KindOf(it->second->header().type());
}

absl::Status JobEngine::CheckIsSnapshot(const Job& job) const {
  const JobKind* kind = KindOf(job.header().type());
  if (!kind->ProducesSnapshot()) {
    return absl::FailedPreconditionError(
        absl::StrCat(job.id(), " is a ", kind->name(), " job, not a snapshot"));
  }
  return absl::OkStatus();
}

void JobEngine::Dispatch(JobKind* kind, const std::string& snapshot_id,
                         uint32_t partition_id) {
  auto leader = kind->Place(*registry_, partition_id);
  uint64_t job_id = 0;
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;
    Job* job = FindLocked(snapshot_id);
    if (job == nullptr || IsFinished(job->header().state())) return;
    PartitionTask* t = job->Find(partition_id);
    if (t == nullptr || TaskDone(*t)) return;
    if (!leader.ok()) {
      // No usable leader (yet): look again soon, until the deadline.
      if (clock_->Now() >=
          absl::FromUnixMicros(job->header().deadline_micros())) {
        job->SetState(*t, shutter::v1::PARTITION_TASK_STATE_FAILED);
        t->set_last_error(absl::StrCat("no usable leader before the deadline: ",
                                       StatusText(leader.status())));
        StageTaskLocked(*job, *t);
        AfterDurable(snapshot_id,
                     [this, snapshot_id] { MaybeFinish(snapshot_id); });
        return;
      }
      // A soft state: kept in memory only (see the header).
      job->SetState(*t, shutter::v1::PARTITION_TASK_STATE_WAITING);
      t->set_waiting_for("leader");
      t->set_last_error(StatusText(leader.status()));
      timer_->RunAfter(options_.leader_poll,
                       [this, kind, snapshot_id, partition_id] {
                         Dispatch(kind, snapshot_id, partition_id);
                       });
      return;
    }
    // QUEUED is a soft state too: nothing to wait for.
    job->SetState(*t, shutter::v1::PARTITION_TASK_STATE_QUEUED);
    t->set_node_id(leader->node_id);
    t->set_node_instance_id(leader->instance_id);
    t->set_leader_epoch(leader->epoch);
    if (job->scheduler_job == 0) job->scheduler_job = next_job_.fetch_add(1);
    job_id = job->scheduler_job;
  }
  auto [options, fn] =
      MakeSchedulerTask(kind, snapshot_id, partition_id, job_id, *leader);
  scheduler_.Submit(std::move(options), std::move(fn));
}

std::pair<scheduler::TaskOptions, scheduler::TaskFn>
JobEngine::MakeSchedulerTask(JobKind* kind, const std::string& snapshot_id,
                             uint32_t partition_id, uint64_t job_id,
                             const NodeRegistry::Leader& leader) {
  // Keep the node's limit in step with its capacity, pin or adaptive
  // limit (heartbeats move it between dispatches).
  // (One registry lookup for both: this runs once per task.)
  bool queues = false;
  if (auto cap = registry_->Capacity(leader.node_id, &queues); cap.ok()) {
    const int limit = LimitGiven(leader.node_id, *cap);
    scheduler_.SetLimit(leader.node_id, limit,
                        AheadGiven(leader.node_id, limit, *cap, queues));
  }
  scheduler::TaskOptions task_options{
      leader.node_id, job_id,
      static_cast<int64_t>(leader.approximate_size_bytes), nullptr};
  task_options.waits_at_key =
      options_.queue_at_nodes && kind->NodeQueuesTasks();
  return {std::move(task_options),
          [this, kind, snapshot_id, partition_id,
           queued = clock_->Now()](scheduler::SlotToken token) {
            if (options_.metrics != nullptr) {
              options_.metrics->GetHistogram(kQueueWait, kQueueWaitHelp)
                  ->Observe(absl::ToDoubleSeconds(clock_->Now() - queued));
            }
            StartTask(kind, snapshot_id, partition_id, std::move(token));
          }};
}

void JobEngine::StartTask(JobKind* kind, const std::string& snapshot_id,
                          uint32_t partition_id, scheduler::SlotToken token) {
  auto leader = kind->Place(*registry_, partition_id);
  PartitionTask task;
  std::string address;
  std::shared_ptr<const Snapshot> header;
  // The slot is held from here until the task ends.
  const absl::Time started = clock_->Now();
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;  // the token goes back as it is destroyed
    Job* job = FindLocked(snapshot_id);
    if (job == nullptr || IsFinished(job->header().state())) return;
    PartitionTask* t = job->Find(partition_id);
    if (t == nullptr || TaskDone(*t)) return;
    // The leader is resolved when the task starts, not when it was queued:
    // if it moved meanwhile, queue the task for the new leader instead.
    if (leader.ok() && leader->node_id == t->node_id() &&
        leader->instance_id == t->node_instance_id() &&
        leader->epoch == t->leader_epoch()) {
      address = leader->address;
      // Attempts are counted when an answer arrives (OnTaskDone). RUNNING
      // is a soft state: not persisted (see the header).
      job->SetState(*t, shutter::v1::PARTITION_TASK_STATE_RUNNING);
      // Shown while it runs (the console's timeline); recorded with the
      // outcome.
      t->set_started_at_micros(absl::ToUnixMicros(started));
      task = *t;
      header = job->SharedHeader();
    }
  }
  if (address.empty()) {
    token.Release();
    Dispatch(kind, snapshot_id, partition_id);
    return;
  }
  kind->RunTask(
      *header, task, address,
      [this, snapshot_id, partition_id, started,
       token = std::move(token)](absl::StatusOr<TaskOutcome> result) mutable {
        // The node is done with this task: free its slot first, and start
        // the node's next task from this thread (no hand-off to a worker).
        token.ReleaseAndRun();
        OnTaskDone(snapshot_id, partition_id, started, std::move(result));
      });
}

double JobEngine::JitterLocked() {
  // xorshift64 jitter in [0.5, 1], so retries of many tasks spread out.
  rng_state_ ^= rng_state_ << 13;
  rng_state_ ^= rng_state_ >> 7;
  rng_state_ ^= rng_state_ << 17;
  return 0.5 + 0.5 * static_cast<double>(rng_state_ % 1001) / 1000.0;
}

void JobEngine::OnTaskDone(const std::string& snapshot_id,
                           uint32_t partition_id, absl::Time started,
                           absl::StatusOr<TaskOutcome> result) {
  // The kind checked the answer (outside the lock).
  const absl::Status verified = result.status();
  absl::MutexLock l(&mu_);
  if (stopping_ && !verified.ok()) return;  // likely our own cancellation
  Job* job = FindLocked(snapshot_id);
  if (job == nullptr) return;
  PartitionTask* t = job->Find(partition_id);
  if (t == nullptr) return;
  const shutter::v1::JobType type = job->header().type();
  const bool cancelled =
      job->header().state() == shutter::v1::SNAPSHOT_STATE_CANCELLED;
  if (cancelled) {
    // A task that was in flight when the job was cancelled: now that it is
    // over, the rollback can run (once none is left running). A kind whose
    // outcomes survive a cancel keeps a successful answer (the partition
    // was restored before the cancel reached the node): it is recorded
    // below like any other.
    if (TaskDone(*t)) return;
    if (!verified.ok() || !KindOf(type)->CancelKeepsOutcomes()) {
      job->SetState(*t, shutter::v1::PARTITION_TASK_STATE_CANCELLED);
      StageTaskLocked(*job, *t);
      AfterDurable(snapshot_id, [this, snapshot_id] { Rollback(snapshot_id); });
      return;
    }
  } else if (IsFinished(job->header().state())) {
    return;
  }
  // A task sent ahead of a free slot started when the node gave it one.
  if (verified.ok() && result->waited_at_node > absl::ZeroDuration()) {
    started = std::min(clock_->Now(), started + result->waited_at_node);
  }
  const int64_t millis = absl::ToInt64Milliseconds(clock_->Now() - started);
  t->set_started_at_micros(absl::ToUnixMicros(started));
  const FailureClass cls = verified.ok() ? FailureClass::kPermanent
                                         : KindOf(type)->Classify(verified);
  if (verified.ok()) {
    RecordTask(type, "published");
    t->set_attempts(t->attempts() + 1);
    job->Publish(*t, result->manifest, result->path, millis,
                 result->uploaded_bytes, result->reused_bytes,
                 result->manifest_sha256);
    StageTaskLocked(*job, *t);
    AfterDurable(snapshot_id, [this, snapshot_id, cancelled] {
      if (cancelled) {
        Rollback(snapshot_id);  // records rolled_back once none runs
      } else {
        MaybeFinish(snapshot_id);
      }
    });
    return;
  }
  t->set_duration_millis(millis);
  const std::optional<absl::Duration> again = job->ApplyFailure(
      *t, verified, cls, retry_, clock_->Now(), JitterLocked());
  if (!again) {
    RecordTask(type, "failed");
  } else if (!CountsAsAttempt(cls)) {
    RecordTask(type, "waiting");
  } else {
    RecordTask(type, "retried", FailureClassName(cls));
  }
  const char* kind_name = KindOf(type)->name();
  if (cls == FailureClass::kRepositoryBusy) {
    spdlog::info(
        "{} {} partition {}: {}{}", kind_name, snapshot_id, partition_id,
        StatusText(verified),
        again ? "; waiting for the garbage collection to end" : "; giving up");
  } else if (!CountsAsAttempt(cls)) {
    if (t->unreachable() == 1 || !again) {
      spdlog::warn("{} {} partition {}: node {} unreachable ({}){}", kind_name,
                   snapshot_id, partition_id, t->node_id(),
                   StatusText(verified),
                   again ? "; waiting for it" : "; giving up");
    }
  } else {
    spdlog::warn("{} {} partition {} on node {} attempt {}: {} ({}){}",
                 kind_name, snapshot_id, partition_id, t->node_id(),
                 t->attempts(), StatusText(verified),
                 std::string(FailureClassName(cls)),
                 again ? "; will retry" : "; giving up");
  }
  auto redispatch = [this, kind = KindOf(type), snapshot_id,
                     partition_id](absl::Duration delay) {
    timer_->RunAfter(delay, [this, kind, snapshot_id, partition_id] {
      Dispatch(kind, snapshot_id, partition_id);
    });
  };
  if (again && !CountsAsAttempt(cls)) {
    // Waiting for an unreachable node or a garbage collection is a soft
    // state (see the header):
    // nothing to persist, nothing to wait for.
    redispatch(*again);
    return;
  }
  // An answer (its attempt counted) or a final failure: durable first.
  StageTaskLocked(*job, *t);
  AfterDurable(snapshot_id, [this, snapshot_id, again, redispatch] {
    if (again) {
      redispatch(*again);
    } else {
      MaybeFinish(snapshot_id);
    }
  });
}

void JobEngine::MaybeFinish(const std::string& snapshot_id) {
  absl::AnyInvocable<absl::Status() &&> commit_fn;
  bool partial = false;
  int failed = 0, total = 0;
  std::string first_failed;
  bool decide = false;  // record the decision first, then come back
  {
    absl::MutexLock l(&mu_);
    Job* job = FindLocked(snapshot_id);
    if (job == nullptr || IsFinished(job->header().state()) || job->finishing ||
        !job->AllTasksDone()) {
      return;
    }
    total = static_cast<int>(job->size());
    failed = job->Count(shutter::v1::PARTITION_TASK_STATE_FAILED);
    for (const auto& t : job->tasks()) {
      if (t.state() == shutter::v1::PARTITION_TASK_STATE_FAILED) {
        first_failed =
            absl::StrCat("partition ", t.partition_id(), ": ", t.last_error());
        break;
      }
    }
    const int published = total - failed;
    partial = failed > 0 && job->header().allow_partial() && published > 0;
    if (failed == 0 || partial) {
      job->finishing = true;
      if (!job->header().commit_decided()) {
        // Decided once: the decision is durable (and, on etcd, fenced by
        // this leader's term) before anything outside the store changes, so
        // a later leader finishes this commit and never rolls it back.
        job->mutable_header().set_commit_decided(true);
        StageHeaderLocked(*job);
        decide = true;
      } else {
        commit_fn =
            KindOf(job->header().type())->PrepareCommit(*job, clock_->Now());
      }
    }
  }
  if (decide) {
    AfterDurable(snapshot_id, [this, snapshot_id] {
      {
        absl::MutexLock l(&mu_);
        Job* job = FindLocked(snapshot_id);
        if (job == nullptr) return;
        job->finishing = false;
      }
      MaybeFinish(snapshot_id);
    });
    return;
  }
  absl::Status written = absl::OkStatus();
  const bool commit = failed == 0 || partial;
  if (options_.leads && !options_.leads()) {
    // Deposed: the outcome is the next leader's to decide and write.
    absl::MutexLock l(&mu_);
    if (Job* job = FindLocked(snapshot_id); job != nullptr) {
      job->finishing = false;
    }
    return;
  }
  if (commit) {
    // The kind's commit (a snapshot's cluster manifest): outside the lock.
    written = std::move(commit_fn)();
  }
  absl::MutexLock l(&mu_);
  Job* job = FindLocked(snapshot_id);
  if (job == nullptr || IsFinished(job->header().state())) return;
  job->finishing = false;
  JobKind* kind = KindOf(job->header().type());
  Snapshot& h = job->mutable_header();
  if (commit && !written.ok()) {
    // Decided: the commit is only ever finished, so it is tried again
    // (backing off to a minute); the job stays RUNNING and says why.
    const int n = std::min(++job->commit_attempts, 7);
    const absl::Duration again =
        std::min(absl::Seconds(1) * (1 << (n - 1)), absl::Minutes(1));
    h.set_error(absl::StrCat(StatusText(written), "; the commit is decided, ",
                             "trying again in ", absl::FormatDuration(again)));
    spdlog::warn("{} {}: {}", kind->name(), snapshot_id, h.error());
    timer_->RunAfter(again, [this, snapshot_id] { MaybeFinish(snapshot_id); });
    return;
  }
  h.set_finished_at_micros(absl::ToUnixMicros(clock_->Now()));
  if (!commit) {
    h.set_state(shutter::v1::SNAPSHOT_STATE_FAILED);
    h.set_error(absl::StrCat(failed, " of ", total,
                             " partitions failed; first: ", first_failed));
  } else {
    h.set_state(partial ? shutter::v1::SNAPSHOT_STATE_PARTIAL
                        : shutter::v1::SNAPSHOT_STATE_COMMITTED);
    h.clear_error();
    kind->DescribeCommit(snapshot_id, partial, failed, total, first_failed, &h);
  }
  spdlog::info("{} {} {} in {} ms{}{}", kind->name(), snapshot_id,
               StateName(h.state()),
               (h.finished_at_micros() - h.created_at_micros()) / 1000,
               h.error().empty() ? "" : ": ", h.error());
  StageHeaderLocked(*job);
  RecordFinished(h);
  // A large job leaves much freed memory behind (its calls' buffers, over
  // gRPC's threads' arenas): give it back once it is done. On the
  // committer's thread, once per large job (~0.1 s per GiB): later
  // durable-write callbacks wait that long once.
  const bool large = job->size() >= kReleaseMemoryAfterTasks;
  if (h.state() == shutter::v1::SNAPSHOT_STATE_FAILED) {
    AfterDurable(snapshot_id, [this, snapshot_id, large] {
      Rollback(snapshot_id);
      if (large) daemon::ReleaseFreedMemory();
    });
  } else {
    AfterDurable(snapshot_id, [this, kind, snapshot_id, large] {
      kind->AfterCommit(snapshot_id);
      PruneHistory();
      if (large) daemon::ReleaseFreedMemory();
    });
  }
}

void JobEngine::PruneHistory() {
  absl::MutexLock l(&mu_);
  PruneHistoryLocked();
}

void JobEngine::PruneHistoryLocked() {
  if (options_.task_history_jobs <= 0) return;
  int kept = 0;
  for (auto it = jobs_.rbegin(); it != jobs_.rend(); ++it) {
    Job& job = *it->second;
    const Snapshot& h = job.header();
    // Settled: finished, nothing in flight, nothing left to undo or delete.
    const bool settled =
        IsFinished(h.state()) && !job.finishing && !job.rolling_back &&
        !job.AnyRunning() &&
        !((h.state() == shutter::v1::SNAPSHOT_STATE_FAILED ||
           h.state() == shutter::v1::SNAPSHOT_STATE_CANCELLED) &&
          !h.rolled_back()) &&
        !(h.delete_requested() &&
          h.state() != shutter::v1::SNAPSHOT_STATE_DELETED);
    if (!settled) continue;
    if (++kept <= options_.task_history_jobs || h.has_pruned_tasks()) {
      continue;
    }
    // The header (with what the tasks summed to) before the task records
    // go: a crash in between leaves records the next load removes.
    const std::vector<uint32_t> ids = job.PruneTasks(clock_->Now());
    StageHeaderLocked(job);
    for (uint32_t id : ids) committer_.Delete(JobKeys::Task(job.id(), id));
    spdlog::info(
        "{} {}: pruned its {} task records (kept: the newest {} "
        "finished jobs')",
        KindOf(h.type())->name(), job.id(), ids.size(),
        options_.task_history_jobs);
  }
}

absl::Status JobEngine::WaitDurable() {
  absl::Notification done;
  absl::Status result;
  committer_.AfterDurable([&](absl::Status s) {
    result = s;
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}

absl::StatusOr<Snapshot> JobEngine::RequestDelete(
    const std::string& snapshot_id, bool force) {
  RETURN_IF_ERROR(CheckSafeId("snapshot id", snapshot_id));
  {
    absl::MutexLock l(&mu_);
    ASSIGN_OR_RETURN(Job * job, FindSnapshotLocked(snapshot_id));
    const Snapshot& h = job->header();
    if (h.state() == shutter::v1::SNAPSHOT_STATE_DELETED) return h;
    if (!IsFinished(h.state()) || job->finishing) {
      return absl::FailedPreconditionError(
          absl::StrCat("snapshot ", snapshot_id, " is ", StateName(h.state()),
                       "; cancel it first"));
    }
    if (job->rolling_back || job->AnyRunning()) {
      return absl::FailedPreconditionError(
          absl::StrCat("snapshot ", snapshot_id,
                       " is still being rolled back; try again shortly"));
    }
    if (!force && !h.delete_requested()) {
      if (h.pinned()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "snapshot ", snapshot_id, " is pinned (unpin it, or force)"));
      }
      if (h.state() == shutter::v1::SNAPSHOT_STATE_COMMITTED) {
        bool newer_committed = false;
        for (auto it = jobs_.upper_bound(snapshot_id); it != jobs_.end();
             ++it) {
          if (KindOf(it->second->header().type())->ProducesSnapshot() &&
              it->second->header().state() ==
                  shutter::v1::SNAPSHOT_STATE_COMMITTED) {
            newer_committed = true;
            break;
          }
        }
        if (!newer_committed) {
          return absl::FailedPreconditionError(absl::StrCat(
              "snapshot ", snapshot_id,
              " is the newest committed snapshot (force to delete it)"));
        }
      }
    }
    if (h.delete_requested()) return h;  // asked before
    job->mutable_header().set_delete_requested(true);
    StageHeaderLocked(*job);
  }
  RETURN_IF_ERROR(WaitDurable());
  absl::MutexLock l(&mu_);
  return FindLocked(snapshot_id)->header();
}

absl::Status JobEngine::MarkDeleted(const std::string& snapshot_id) {
  absl::MutexLock l(&mu_);
  ASSIGN_OR_RETURN(Job * job, FindSnapshotLocked(snapshot_id));
  if (job->header().state() == shutter::v1::SNAPSHOT_STATE_DELETED) {
    return absl::OkStatus();
  }
  Snapshot& h = job->mutable_header();
  h.set_state(shutter::v1::SNAPSHOT_STATE_DELETED);
  h.set_deleted_at_micros(absl::ToUnixMicros(clock_->Now()));
  StageHeaderLocked(*job);
  spdlog::info("snapshot {} deleted", snapshot_id);
  return absl::OkStatus();
}

absl::StatusOr<Snapshot> JobEngine::PinSnapshot(const std::string& snapshot_id,
                                                bool pinned) {
  RETURN_IF_ERROR(CheckSafeId("snapshot id", snapshot_id));
  Snapshot out;
  {
    absl::MutexLock l(&mu_);
    ASSIGN_OR_RETURN(Job * job, FindSnapshotLocked(snapshot_id));
    if (job->header().state() == shutter::v1::SNAPSHOT_STATE_DELETED) {
      return absl::FailedPreconditionError(
          absl::StrCat("snapshot ", snapshot_id, " is deleted"));
    }
    job->mutable_header().set_pinned(pinned);
    StageHeaderLocked(*job);
    out = job->header();
  }
  RETURN_IF_ERROR(WaitDurable());
  return out;
}

std::vector<std::string> JobEngine::InterruptedDeletes() const {
  absl::MutexLock l(&mu_);
  std::vector<std::string> out;
  for (const auto& [id, job] : jobs_) {
    if (job->header().delete_requested() &&
        job->header().state() != shutter::v1::SNAPSHOT_STATE_DELETED) {
      out.push_back(id);
    }
  }
  return out;
}

bool JobEngine::AttemptIsOver(const std::string& snapshot_id,
                              uint32_t partition_id) const {
  absl::MutexLock l(&mu_);
  auto it = jobs_.find(snapshot_id);
  if (it == jobs_.end()) return false;
  Job& job = *it->second;
  if (IsFinished(job.header().state())) return !job.AnyRunning();
  const PartitionTask* t = job.Find(partition_id);
  return t != nullptr && TaskDone(*t);
}

void JobEngine::Rollback(const std::string& snapshot_id) {
  // Deposed: the next leader rolls back (after it has read the outcome).
  if (options_.leads && !options_.leads()) return;
  JobKind* kind = nullptr;
  {
    absl::MutexLock l(&mu_);
    Job* job = FindLocked(snapshot_id);
    if (job == nullptr || job->header().rolled_back() || job->AnyRunning() ||
        job->rolling_back) {
      return;
    }
    if (job->header().state() != shutter::v1::SNAPSHOT_STATE_FAILED &&
        job->header().state() != shutter::v1::SNAPSHOT_STATE_CANCELLED) {
      return;
    }
    job->rolling_back = true;
    kind = KindOf(job->header().type());
  }
  absl::Status s = kind->Rollback(snapshot_id);
  absl::MutexLock l(&mu_);
  Job* job = FindLocked(snapshot_id);
  job->rolling_back = false;
  if (!s.ok()) {
    spdlog::error("rollback of snapshot {} failed (will retry at restart): {}",
                  snapshot_id, s.ToString());
    return;
  }
  job->mutable_header().set_rolled_back(true);
  StageHeaderLocked(*job);
  if (kind->CancelKeepsOutcomes()) {
    spdlog::info("{} {} ended {}: {} of {} partitions done (kept), {} failed",
                 KindOf(job->header().type())->name(), snapshot_id,
                 StateName(job->header().state()),
                 job->Count(shutter::v1::PARTITION_TASK_STATE_PUBLISHED),
                 job->size(),
                 job->Count(shutter::v1::PARTITION_TASK_STATE_FAILED));
  } else {
    spdlog::info("{} {}: removed what it had published",
                 KindOf(job->header().type())->name(), snapshot_id);
  }
  PruneHistoryLocked();
}

absl::StatusOr<shutter::v1::GetSnapshotResponse> JobEngine::CancelSnapshot(
    const std::string& snapshot_id) {
  RETURN_IF_ERROR(CheckSafeId("snapshot id", snapshot_id));
  uint64_t job_id = 0;
  JobKind* kind = nullptr;
  std::set<std::string> running_on;  // addresses of nodes with checkpoints
  std::string noun;                  // "snapshot", "restore"
  shutter::v1::GetSnapshotResponse answer;
  {
    absl::MutexLock l(&mu_);
    Job* job = FindLocked(snapshot_id);
    if (job == nullptr) {
      return absl::NotFoundError(absl::StrCat("no snapshot ", snapshot_id));
    }
    if (job->header().state() == shutter::v1::SNAPSHOT_STATE_CANCELLED) {
      *answer.mutable_snapshot() = job->header();
      *answer.mutable_summary() = job->Summary();
      return answer;
    }
    if (IsFinished(job->header().state())) {
      return absl::FailedPreconditionError(
          absl::StrCat("snapshot ", snapshot_id, " is already ",
                       StateName(job->header().state())));
    }
    if (job->header().commit_decided()) {
      return absl::FailedPreconditionError(
          absl::StrCat(KindOf(job->header().type())->name(), " ", snapshot_id,
                       " is committing (its commit is decided); it can no "
                       "longer be cancelled"));
    }
    kind = KindOf(job->header().type());
    const bool keep_outcomes = kind->CancelKeepsOutcomes();
    Snapshot& h = job->mutable_header();
    h.set_state(shutter::v1::SNAPSHOT_STATE_CANCELLED);
    h.set_error(keep_outcomes ? "cancelled by an operator; partitions whose "
                                "tasks finished keep their outcome"
                              : "cancelled by an operator");
    h.set_finished_at_micros(absl::ToUnixMicros(clock_->Now()));
    for (const auto& task : job->tasks()) {
      PartitionTask& t = *job->Find(task.partition_id());
      // A known outcome is never relabelled where the kind keeps it (see
      // JobKind::CancelKeepsOutcomes).
      if (keep_outcomes && TaskDone(t)) continue;
      if (t.state() == shutter::v1::PARTITION_TASK_STATE_RUNNING) {
        // Checkpoints in flight finish on their nodes; the rollback waits
        // for them.
        auto addr = registry_->Address(t.node_id());
        if (addr.ok()) running_on.insert(*addr);
        continue;
      }
      // Everything else stops here; what was published is rolled back.
      if (t.state() == shutter::v1::PARTITION_TASK_STATE_CANCELLED) continue;
      job->SetState(t, shutter::v1::PARTITION_TASK_STATE_CANCELLED);
      StageTaskLocked(*job, t);
    }
    StageHeaderLocked(*job);
    RecordFinished(h);
    job_id = job->scheduler_job;
    noun = KindOf(h.type())->name();
  }
  RETURN_IF_ERROR(committer_.Flush());
  spdlog::info("{} {} cancelled", noun, snapshot_id);
  if (job_id != 0) scheduler_.CancelJob(job_id);
  // In-flight checkpoints stop on their nodes before publishing; their
  // calls then end and the rollback runs.
  for (const std::string& address : running_on) {
    kind->CancelOnNode(address, snapshot_id);
  }
  Rollback(snapshot_id);
  absl::MutexLock l(&mu_);
  Job* job = FindLocked(snapshot_id);
  *answer.mutable_snapshot() = job->header();
  *answer.mutable_summary() = job->Summary();
  return answer;
}

absl::Status JobEngine::CheckCommittedSnapshot(
    const std::string& job_id) const {
  RETURN_IF_ERROR(CheckSafeId("snapshot id", job_id));
  absl::MutexLock l(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("no snapshot ", job_id));
  }
  RETURN_IF_ERROR(CheckIsSnapshot(*it->second));
  const auto state = it->second->header().state();
  if (state != shutter::v1::SNAPSHOT_STATE_COMMITTED &&
      state != shutter::v1::SNAPSHOT_STATE_PARTIAL) {
    return absl::FailedPreconditionError(
        absl::StrCat("snapshot ", job_id, " is not COMMITTED or PARTIAL"));
  }
  return absl::OkStatus();
}

absl::StatusOr<shutter::v1::GetSnapshotResponse> JobEngine::GetSnapshotPage(
    const shutter::v1::GetSnapshotRequest& request) const {
  RETURN_IF_ERROR(CheckSafeId("snapshot id", request.snapshot_id()));
  shutter::v1::GetSnapshotResponse resp;
  absl::MutexLock l(&mu_);
  auto it = jobs_.find(request.snapshot_id());
  if (it == jobs_.end()) {
    return absl::NotFoundError(
        absl::StrCat("no snapshot ", request.snapshot_id()));
  }
  RETURN_IF_ERROR(it->second->Page(request, &resp));
  return resp;
}

absl::StatusOr<Snapshot> JobEngine::GetSnapshot(
    const std::string& snapshot_id) const {
  RETURN_IF_ERROR(CheckSafeId("snapshot id", snapshot_id));
  absl::MutexLock l(&mu_);
  auto it = jobs_.find(snapshot_id);
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("no snapshot ", snapshot_id));
  }
  return it->second->ToRecord();
}

std::vector<shutter::v1::SnapshotSummary> JobEngine::ListSnapshots(
    uint32_t limit, shutter::v1::JobType type) const {
  absl::MutexLock l(&mu_);
  std::vector<shutter::v1::SnapshotSummary> out;
  for (auto it = jobs_.rbegin(); it != jobs_.rend(); ++it) {
    if (limit > 0 && out.size() >= limit) break;
    if (it->second->header().type() != type) continue;
    out.push_back(it->second->Summary());
  }
  return out;
}

void JobEngine::SetNodeLimit(const std::string& node_id, int limit) {
  SetNodeLimit(node_id, limit, AheadFor(node_id, limit));
}

void JobEngine::SetNodeLimit(const std::string& node_id, int limit, int ahead) {
  scheduler_.SetLimit(node_id, limit, ahead);
}

int JobEngine::AheadFor(const std::string& node_id, int limit) const {
  if (!options_.queue_at_nodes || limit <= 0) return 0;
  bool queues = false;
  auto cap = registry_->Capacity(node_id, &queues);
  return cap.ok() ? AheadGiven(node_id, limit, *cap, queues) : 0;
}

int JobEngine::AheadGiven(const std::string& node_id, int limit,
                          uint32_t capacity, bool queues) const {
  if (!options_.queue_at_nodes || limit <= 0) return 0;
  // Only the node's own capacity bounds what it runs at once: under a
  // lower limit it would run what was sent ahead.
  if (!queues || static_cast<int>(capacity) != limit) return 0;
  // A node whose load the adaptive rule does not read as healthy gets one
  // request per slot: what waits there would start the moment a slot
  // frees, leaving its foreground traffic no gap.
  if (options_.limits != nullptr && !options_.limits->HasHeadroom(node_id)) {
    return 0;
  }
  return limit;
}

scheduler::Scheduler::KeyStats JobEngine::NodeKeyStats(
    const std::string& node_id) const {
  return scheduler_.GetKeyStats(node_id);
}

int JobEngine::LimitFor(const std::string& node_id) const {
  auto cap = registry_->Capacity(node_id);
  return cap.ok() ? LimitGiven(node_id, *cap) : 0;
}

int JobEngine::LimitGiven(const std::string& node_id, uint32_t capacity) const {
  if (options_.limits == nullptr) return static_cast<int>(capacity);
  return options_.limits->Effective(node_id, capacity);
}

std::map<std::string, scheduler::Scheduler::KeyStats> JobEngine::NodeStats()
    const {
  return scheduler_.GetStats().keys;
}

void JobEngine::Shutdown() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  scheduler_.Shutdown();
  for (auto& [type, kind] : kinds_) kind->Shutdown();
}

absl::StatusOr<Snapshot> JobEngine::AwaitJob(const std::string& job_id,
                                             absl::Duration timeout) {
  Snapshot header;
  {
    absl::MutexLock l(&mu_);
    auto finished = [this, &job_id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (stopping_) return true;
      auto it = jobs_.find(job_id);
      return it == jobs_.end() ||
             (IsFinished(it->second->header().state()) &&
              !it->second->finishing && !it->second->rolling_back &&
              !it->second->AnyRunning());
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&finished), timeout)) {
      return absl::DeadlineExceededError(
          absl::StrCat("job ", job_id, " has not finished after ",
                       absl::FormatDuration(timeout)));
    }
    auto it = jobs_.find(job_id);
    if (it == jobs_.end()) {
      return absl::NotFoundError(absl::StrCat("no job ", job_id));
    }
    if (!IsFinished(it->second->header().state())) {
      return absl::UnavailableError("controller is shutting down");
    }
    header = it->second->header();
  }
  // What the caller is told is durable (the final state was staged).
  RETURN_IF_ERROR(WaitDurable());
  return header;
}

NodeRegistry::Leader ControllerPlacement(absl::string_view lane) {
  NodeRegistry::Leader l;
  l.node_id = absl::StrCat(kControllerKeyPrefix, lane);
  l.address = l.node_id;
  return l;
}

}  // namespace shutter::controller
