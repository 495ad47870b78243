// The job engine's parts without threads or RPCs: the Job bookkeeping, the
// job store's record schema, and group commit with an in-memory store that
// can fail or "crash" between groups.
#include <algorithm>
#include <atomic>
#include <map>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "controller/group_commit.h"
#include "controller/job.h"
#include "controller/job_store.h"
#include "gtest/gtest.h"
#include "snapshot/manifest.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace shutter::controller {
namespace {

using ::shutter::testing::StatusIs;
using shutter::v1::PartitionTask;
using shutter::v1::Snapshot;

Snapshot MakeRecord(const std::string& id, int tasks) {
  Snapshot s;
  s.set_snapshot_id(id);
  s.set_label("l");
  s.set_state(shutter::v1::SNAPSHOT_STATE_RUNNING);
  for (int i = tasks - 1; i >= 0; --i) {  // out of order on purpose
    auto* t = s.add_partitions();
    t->set_partition_id(i * 2);
    t->set_state(shutter::v1::PARTITION_TASK_STATE_QUEUED);
    t->set_node_id("n1");
  }
  return s;
}

TEST(JobTest, FindsEveryTaskWhateverItsPartitionIds) {
  // Dense ids from 0 (found at their offset), from elsewhere, with gaps,
  // and at the ends of the range.
  const std::vector<std::vector<uint32_t>> id_sets = {
      {0, 1, 2, 3, 4}, {5, 6, 7}, {0, 1, 2, 10, 11},
      {3, 4, 9},       {7},       {0, 4294967294u, 4294967295u},
  };
  for (const auto& ids : id_sets) {
    Snapshot s;
    s.set_snapshot_id("j");
    for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
      s.add_partitions()->set_partition_id(*it);
    }
    Job job(std::move(s));
    for (uint32_t id : ids) {
      PartitionTask* t = job.Find(id);
      ASSERT_NE(t, nullptr) << id;
      EXPECT_EQ(t->partition_id(), id);
    }
    for (uint32_t absent : {8u, 12u, 100u, 4294967293u}) {
      if (std::find(ids.begin(), ids.end(), absent) != ids.end()) continue;
      EXPECT_EQ(job.Find(absent), nullptr) << absent;
    }
  }
}

TEST(JobTest, KeepsTasksSortedAndCountsCurrent) {
  Job job(MakeRecord("j1", 5));
  ASSERT_EQ(job.size(), 5u);
  EXPECT_TRUE(job.header().partitions().empty());
  EXPECT_EQ(job.tasks()[0].partition_id(), 0u);
  EXPECT_EQ(job.tasks()[4].partition_id(), 8u);
  EXPECT_EQ(job.Find(3), nullptr);
  ASSERT_NE(job.Find(6), nullptr);
  EXPECT_EQ(job.Count(shutter::v1::PARTITION_TASK_STATE_QUEUED), 5);
  PartitionTask& t = *job.Find(6);
  job.SetState(t, shutter::v1::PARTITION_TASK_STATE_RUNNING);
  EXPECT_TRUE(job.AnyRunning());
  shutter::v1::PartitionManifest m;
  m.set_applied_index(7);
  m.set_total_bytes(100);
  m.add_files();
  job.Publish(t, m, "path", 12);
  EXPECT_FALSE(job.AnyRunning());
  EXPECT_EQ(job.published_bytes(), 100u);
  EXPECT_EQ(t.applied_index(), 7u);
  EXPECT_EQ(t.file_count(), 1u);
  EXPECT_FALSE(job.AllTasksDone());
  for (const auto& task : job.tasks()) {
    PartitionTask& x = *job.Find(task.partition_id());
    if (x.state() == shutter::v1::PARTITION_TASK_STATE_QUEUED) {
      job.SetState(x, x.partition_id() == 0
                          ? shutter::v1::PARTITION_TASK_STATE_FAILED
                          : shutter::v1::PARTITION_TASK_STATE_CANCELLED);
    }
  }
  EXPECT_TRUE(job.AllTasksDone());
  auto sum = job.Summary();
  EXPECT_EQ(sum.partitions_total(), 5u);
  EXPECT_EQ(sum.partitions_published(), 1u);
  EXPECT_EQ(sum.partitions_failed(), 1u);
  EXPECT_EQ(sum.partitions_cancelled(), 3u);
  EXPECT_EQ(sum.total_bytes(), 100u);
  // Cancelling a published task takes its bytes out of the total.
  job.SetState(t, shutter::v1::PARTITION_TASK_STATE_CANCELLED);
  EXPECT_EQ(job.published_bytes(), 0u);
  // The record round-trips through a new Job with the same counts.
  Job again(job.ToRecord());
  EXPECT_EQ(again.Count(shutter::v1::PARTITION_TASK_STATE_CANCELLED), 4);
  EXPECT_EQ(again.Count(shutter::v1::PARTITION_TASK_STATE_FAILED), 1);
}

TEST(JobTest, PagesFilterAndSummarize) {
  Job job(MakeRecord("j1", 25));  // partitions 0, 2, ..., 48
  for (uint32_t p : {4u, 10u, 40u}) {
    job.SetState(*job.Find(p), shutter::v1::PARTITION_TASK_STATE_FAILED);
  }
  shutter::v1::GetSnapshotRequest req;
  req.set_page_size(10);
  shutter::v1::GetSnapshotResponse resp;
  ASSERT_OK(job.Page(req, &resp));
  EXPECT_EQ(resp.snapshot().partitions_size(), 10);
  EXPECT_EQ(resp.summary().partitions_total(), 25u);
  EXPECT_EQ(resp.next_page_token(), "20");
  int seen = resp.snapshot().partitions_size();
  std::string token = resp.next_page_token();
  while (!token.empty()) {
    req.set_page_token(token);
    resp.Clear();
    ASSERT_OK(job.Page(req, &resp));
    seen += resp.snapshot().partitions_size();
    token = resp.next_page_token();
  }
  EXPECT_EQ(seen, 25);
  // Only failed ones.
  req.clear_page_token();
  req.add_states(shutter::v1::PARTITION_TASK_STATE_FAILED);
  resp.Clear();
  ASSERT_OK(job.Page(req, &resp));
  ASSERT_EQ(resp.snapshot().partitions_size(), 3);
  EXPECT_EQ(resp.snapshot().partitions(2).partition_id(), 40u);
  EXPECT_TRUE(resp.next_page_token().empty());
  req.set_summary_only(true);
  resp.Clear();
  ASSERT_OK(job.Page(req, &resp));
  EXPECT_EQ(resp.snapshot().partitions_size(), 0);
  EXPECT_EQ(resp.summary().partitions_failed(), 3u);
  req.set_page_token("x");
  EXPECT_THAT(job.Page(req, &resp),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(JobTest, FailedAnswersFollowTheRetryPolicy) {
  Snapshot rec = MakeRecord("j1", 1);
  rec.set_deadline_micros(absl::ToUnixMicros(absl::FromUnixSeconds(1000)));
  Job job(rec);
  PartitionTask& t = *job.Find(0);
  RetrySettings s;
  s.max_attempts = 3;
  s.retry_base = absl::Seconds(1);
  s.retry_max = absl::Seconds(3);
  s.unreachable_poll = absl::Milliseconds(250);
  s.unreachable_poll_max = absl::Seconds(2);
  const absl::Time now = absl::FromUnixSeconds(100);
  const absl::Status refused = absl::UnavailableError("connection refused");
  // Unreachable: waits 0.25, 0.5, 1, 2, 2 s; never an attempt.
  std::vector<double> waits;
  for (int i = 0; i < 5; ++i) {
    auto d =
        job.ApplyFailure(t, refused, FailureClass::kUnreachable, s, now, 1.0);
    ASSERT_TRUE(d.has_value());
    waits.push_back(absl::ToDoubleSeconds(*d));
  }
  EXPECT_EQ(waits, (std::vector<double>{0.25, 0.5, 1, 2, 2}));
  EXPECT_EQ(t.attempts(), 0u);
  EXPECT_EQ(t.unreachable(), 5u);
  EXPECT_EQ(t.state(), shutter::v1::PARTITION_TASK_STATE_WAITING);
  // Answers: backoff 1 s, then 2 s (jitter 0.5 halves it); the third
  // attempt is the last.
  const absl::Status stale = absl::FailedPreconditionError("stale epoch");
  EXPECT_EQ(*job.ApplyFailure(t, stale, FailureClass::kLeadership, s, now, 1),
            absl::Seconds(1));
  EXPECT_EQ(*job.ApplyFailure(t, stale, FailureClass::kBusy, s, now, 0.5),
            absl::Seconds(1));
  EXPECT_FALSE(
      job.ApplyFailure(t, stale, FailureClass::kLeadership, s, now, 1));
  EXPECT_EQ(t.state(), shutter::v1::PARTITION_TASK_STATE_FAILED);
  EXPECT_NE(t.last_error().find("gave up after 3 attempts"), std::string::npos);
  EXPECT_EQ(job.Count(shutter::v1::PARTITION_TASK_STATE_FAILED), 1);
  // Permanent: fails at once. Near the deadline: fails rather than wait
  // past it.
  Job j2(rec);
  EXPECT_FALSE(j2.ApplyFailure(*j2.Find(0), absl::InternalError("io"),
                               FailureClass::kPermanent, s, now, 1));
  EXPECT_EQ(j2.Find(0)->attempts(), 1u);
  Job j3(rec);
  EXPECT_FALSE(j3.ApplyFailure(
      *j3.Find(0), refused, FailureClass::kUnreachable, s,
      absl::FromUnixSeconds(1000) - absl::Milliseconds(100), 1));
  EXPECT_NE(j3.Find(0)->last_error().find("until the job deadline"),
            std::string::npos);
}

TEST(JobTest, ManifestListsPublishedAndMissing) {
  Job job(MakeRecord("j1", 3));
  shutter::v1::PartitionManifest m;
  m.set_applied_index(4);
  job.Publish(*job.Find(0), m, "a", 1);
  job.Publish(*job.Find(4), m, "b", 1);
  job.SetState(*job.Find(2), shutter::v1::PARTITION_TASK_STATE_FAILED);
  job.Find(2)->set_last_error("disk on fire");
  auto cm = job.BuildManifest(absl::FromUnixSeconds(100));
  ASSERT_EQ(cm.partitions_size(), 2);
  EXPECT_EQ(cm.partitions(1).manifest_path(), "b");
  ASSERT_EQ(cm.missing_size(), 1);
  EXPECT_EQ(cm.missing(0).reason(), "disk on fire");
  EXPECT_EQ(cm.committed_at_micros(), 100000000);
  // Built at the version the repository writes, so it is not copied to
  // set it.
  EXPECT_EQ(cm.format_version(), snapshot::kManifestFormatVersion);
}

// An in-memory JobStore whose writes can be made to fail.
class MemStore : public JobStore {
 public:
  absl::Status Write(const JobStoreBatch& batch) override {
    absl::MutexLock l(&mu_);
    if (batch.size() > kMaxBatchRecords) {
      return absl::InvalidArgumentError("too big");
    }
    ++writes_;
    if (fail_) return absl::InternalError("disk gone");
    for (const auto& [k, v] : batch.puts) data_[k] = v;
    for (const auto& k : batch.deletes) data_.erase(k);
    return absl::OkStatus();
  }
  absl::Status Scan(
      absl::string_view prefix,
      const std::function<absl::Status(absl::string_view, absl::string_view)>&
          fn) override {
    std::map<std::string, std::string> copy;
    {
      absl::MutexLock l(&mu_);
      copy = data_;
    }
    for (const auto& [k, v] : copy) {
      if (absl::StartsWith(k, prefix)) {
        absl::Status s = fn(k, v);
        if (!s.ok()) return s;
      }
    }
    return absl::OkStatus();
  }
  void set_fail(bool f) {
    absl::MutexLock l(&mu_);
    fail_ = f;
  }
  bool Has(const std::string& key) {
    absl::MutexLock l(&mu_);
    return data_.count(key) > 0;
  }
  int writes() {
    absl::MutexLock l(&mu_);
    return writes_;
  }
  std::map<std::string, std::string> data() {
    absl::MutexLock l(&mu_);
    return data_;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, std::string> data_ ABSL_GUARDED_BY(mu_);
  bool fail_ ABSL_GUARDED_BY(mu_) = false;
  int writes_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST(JobStoreTest, JobsRoundTripAsHeaderAndTaskRecords) {
  MemStore store;
  ASSERT_OK(store.PutJob(MakeRecord("j1", 2500)));
  ASSERT_OK(store.PutJob(MakeRecord("j0", 3)));
  // 2,500 tasks + header in batches of at most 1,000 records.
  EXPECT_EQ(store.writes(), 3 + 1);
  auto data = store.data();
  EXPECT_EQ(data.size(), 2500u + 1 + 3 + 1);
  EXPECT_EQ(data.count(JobKeys::Header("j1")), 1u);
  EXPECT_EQ(data.count(JobKeys::Task("j1", 4998)), 1u);
  // A task record without a header (a creation cut short) is dropped.
  JobStoreBatch orphan;
  orphan.puts.emplace_back(JobKeys::Task("j9", 1), "x");
  ASSERT_OK(store.Write(orphan));
  auto all = store.LoadAll();
  ASSERT_OK(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].snapshot_id(), "j0");  // id order
  EXPECT_EQ((*all)[1].partitions_size(), 2500);
  EXPECT_EQ(store.data().count(JobKeys::Task("j9", 1)), 0u);
}

TEST(JobStoreTest, OldOneRecordPerJobLayoutIsMigrated) {
  testing::TempDir tmp;
  {
    auto store = RocksDbJobStore::Open(tmp.Sub("jobs"));
    ASSERT_OK(store);
    JobStoreBatch old;
    old.puts.emplace_back("snapshot/j1",
                          MakeRecord("j1", 4).SerializeAsString());
    ASSERT_OK((*store)->Write(old));
  }
  auto store = RocksDbJobStore::Open(tmp.Sub("jobs"));
  ASSERT_OK(store);
  auto all = (*store)->LoadAll();
  ASSERT_OK(all);
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].partitions_size(), 4);
  int old_records = 0;
  ASSERT_OK(
      (*store)->Scan("snapshot/", [&](absl::string_view, absl::string_view) {
        ++old_records;
        return absl::OkStatus();
      }));
  EXPECT_EQ(old_records, 0);
  all = (*store)->LoadAll();  // and again, from the new layout
  ASSERT_OK(all);
  EXPECT_EQ((*all)[0].partitions_size(), 4);
}

TEST(GroupCommitTest, ConcurrentStagesShareWritesAndActAfterDurable) {
  MemStore store;
  GroupCommitter committer(&store);
  constexpr int kThreads = 8, kPerThread = 500;
  std::atomic<int> acked{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string key = absl::StrCat("k", t, "-", i);
        committer.Put(key, "v");
        committer.AfterDurable([&, key](absl::Status s) {
          // Acted upon only once durable: the record is in the store.
          EXPECT_OK(s);
          EXPECT_TRUE(store.Has(key)) << key;
          ++acked;
        });
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_OK(committer.Flush());
  EXPECT_EQ(acked.load(), kThreads * kPerThread);
  auto stats = committer.GetStats();
  EXPECT_EQ(stats.records, static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_LT(stats.groups, stats.records);  // shared writes
  EXPECT_EQ(store.data().size(), static_cast<size_t>(kThreads * kPerThread));
}

TEST(GroupCommitTest, AFailedWriteIsReportedAndNothingAfterItIsAcknowledged) {
  MemStore store;
  GroupCommitter committer(&store);
  committer.Put("a", "1");
  ASSERT_OK(committer.Flush());
  // The store fails (a crash, as far as this process can tell): the
  // callbacks waiting on that group see the error, and nothing they would
  // have acted on is acknowledged.
  store.set_fail(true);
  committer.Put("b", "2");
  absl::Notification done;
  absl::Status seen;
  committer.AfterDurable([&](absl::Status s) {
    seen = s;
    done.Notify();
  });
  done.WaitForNotification();
  EXPECT_THAT(seen, StatusIs(absl::StatusCode::kInternal));
  EXPECT_THAT(committer.Flush(), StatusIs(absl::StatusCode::kInternal));
  auto data = store.data();
  EXPECT_EQ(data.count("a"), 1u);  // acknowledged before: kept
  EXPECT_EQ(data.count("b"), 0u);
  // The store recovers: "b" is written after all, with what came since.
  store.set_fail(false);
  committer.Put("c", "3");
  EXPECT_OK(committer.Flush());
  EXPECT_EQ(store.data().count("b"), 1u);
  EXPECT_EQ(store.data().count("c"), 1u);
}

TEST(GroupCommitTest, LaterPutOfAKeyWinsAndStagingOrderIsKept) {
  MemStore store;
  GroupCommitter committer(&store);
  // Hold the committer busy so these land in one group.
  absl::Notification release, entered;
  committer.AfterDurable([&](absl::Status) {
    entered.Notify();
    release.WaitForNotification();
  });
  entered.WaitForNotification();
  committer.Put("x", "1");
  committer.Put("y", "1");
  committer.Put("x", "2");
  committer.Delete("y");
  release.Notify();
  ASSERT_OK(committer.Flush());
  auto data = store.data();
  EXPECT_EQ(data["x"], "2");
  EXPECT_EQ(data.count("y"), 0u);
  committer.Shutdown();
  // After shutdown, callbacks run at once with UNAVAILABLE.
  absl::Status s;
  committer.AfterDurable([&](absl::Status st) { s = st; });
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnavailable));
}

}  // namespace
}  // namespace shutter::controller
