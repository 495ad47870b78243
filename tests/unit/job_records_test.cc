// The job store's own record schema (job_records.proto): every kind's jobs
// round-trip through it exactly, older formats are migrated at load (also
// when a crash cut a migration short), a newer format is refused, and a
// newer controller's kinds are left alone. Real RocksDB stores.
#include "controller/job_records.h"

#include <map>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "controller/job_store.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace shutter::controller {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::shutter::testing::StatusIs;
using shutter::v1::PartitionTask;
using shutter::v1::Snapshot;
namespace sv1 = shutter::store::v1;

// A job of `type` with every field its kind uses set, and tasks in every
// recorded state.
Snapshot FullJob(const std::string& id, shutter::v1::JobType type) {
  Snapshot s;
  s.set_snapshot_id(id);
  s.set_type(type);
  s.set_label("nightly");
  s.set_state(shutter::v1::SNAPSHOT_STATE_RUNNING);
  s.set_created_at_micros(1'700'000'000'000'000);
  s.set_finished_at_micros(1'700'000'100'000'000);
  s.set_deadline_micros(1'700'003'600'000'000);
  s.set_error("UNAVAILABLE: node n2 is gone");
  s.set_schedule("hourly");
  s.set_allow_partial(true);
  s.set_rolled_back(true);
  std::string source;
  if (type == shutter::v1::JOB_TYPE_SNAPSHOT) {
    s.set_manifest_path("snapshots/" + id + "/cluster.json");
    s.set_pinned(true);
    s.set_delete_requested(true);
    s.set_deleted_at_micros(1'700'000'200'000'000);
  } else if (type == shutter::v1::JOB_TYPE_GC) {
    auto* g = s.mutable_gc();
    g->set_gc_id(id);
    g->set_grace_seconds(3600);
    g->set_objects_scanned(10);
    g->set_objects_referenced(6);
    g->set_objects_deleted(3);
    g->set_bytes_deleted(3 << 20);
    g->set_objects_too_young(1);
    g->set_manifests_read(4);
    g->set_publish_locks_released(2);
    g->set_uploads_aborted(1);
    g->set_uploads_too_young(1);
    g->set_sweep_incomplete(true);
  } else {
    source = "20261203T101010Z-00000001";
    s.set_source_snapshot_id(source);
    s.set_deep(type == shutter::v1::JOB_TYPE_VERIFY);
  }
  const shutter::v1::PartitionTaskState states[] = {
      shutter::v1::PARTITION_TASK_STATE_QUEUED,
      shutter::v1::PARTITION_TASK_STATE_RUNNING,
      shutter::v1::PARTITION_TASK_STATE_PUBLISHED,
      shutter::v1::PARTITION_TASK_STATE_FAILED,
      shutter::v1::PARTITION_TASK_STATE_WAITING,
      shutter::v1::PARTITION_TASK_STATE_CANCELLED};
  uint32_t p = 0;
  for (auto state : states) {
    PartitionTask* t = s.add_partitions();
    t->set_partition_id(p);
    t->set_state(state);
    t->set_node_id(absl::StrFormat("node-%d", p % 3));
    t->set_node_instance_id("inc-abc");
    t->set_leader_epoch(7 + p);
    t->set_attempts(p);
    t->set_unreachable(p / 2);
    t->set_last_error(p == 0 ? "" : "DEADLINE_EXCEEDED: slow");
    t->set_started_at_micros(1'700'000'000'500'000 + p);
    t->set_duration_millis(1234 + p);
    if (state == shutter::v1::PARTITION_TASK_STATE_PUBLISHED) {
      t->set_applied_index(99);
      t->set_total_bytes(1 << 20);
      t->set_file_count(12);
      t->set_manifest_path("snapshots/x/partitions/2.json");
    }
    t->set_source_snapshot_id(source);
    t->set_deep(s.deep());
    ++p;
  }
  return s;
}

// The raw records of a store: key -> value.
std::map<std::string, std::string> Dump(JobStore* store) {
  std::map<std::string, std::string> out;
  EXPECT_OK(store->Scan("", [&](absl::string_view k, absl::string_view v) {
    out.emplace(std::string(k), std::string(v));
    return absl::OkStatus();
  }));
  return out;
}

// Writes `job` as a format-1 store did: shutter.v1 messages at
// job/<id>/h and job/<id>/t/<partition>.
void PutFormat1(JobStore* store, const Snapshot& job, bool header = true) {
  JobStoreBatch b;
  for (const auto& t : job.partitions()) {
    b.puts.emplace_back(
        absl::StrFormat("job/%s/t/%010u", job.snapshot_id(), t.partition_id()),
        t.SerializeAsString());
  }
  if (header) {
    Snapshot h = job;
    h.clear_partitions();
    b.puts.emplace_back("job/" + job.snapshot_id() + "/h",
                        h.SerializeAsString());
  }
  ASSERT_OK(store->Write(b));
}

void ExpectSameJobs(const std::vector<Snapshot>& got,
                    const std::vector<Snapshot>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    std::string diff;
    MessageDifferencer d;
    d.ReportDifferencesToString(&diff);
    EXPECT_TRUE(d.Compare(want[i], got[i]))
        << want[i].snapshot_id() << ": " << diff;
  }
}

TEST(JobRecordsTest, KindNamesAreTheTypesInLowerCase) {
  EXPECT_EQ(KindName(shutter::v1::JOB_TYPE_SNAPSHOT), "snapshot");
  EXPECT_EQ(KindName(shutter::v1::JOB_TYPE_RESTORE), "restore");
  EXPECT_EQ(KindName(shutter::v1::JOB_TYPE_VERIFY), "verify");
  EXPECT_EQ(KindName(shutter::v1::JOB_TYPE_GC), "gc");
  EXPECT_EQ(KindName(shutter::v1::JOB_TYPE_DELETE), "delete");
  shutter::v1::JobType t;
  ASSERT_TRUE(ParseKindName("verify", &t));
  EXPECT_EQ(t, shutter::v1::JOB_TYPE_VERIFY);
  EXPECT_FALSE(ParseKindName("VERIFY", &t));
  EXPECT_FALSE(ParseKindName("compaction", &t));
  EXPECT_FALSE(ParseKindName("", &t));
}

TEST(JobRecordsTest, EveryKindRoundTripsExactly) {
  testing::TempDir tmp;
  auto store = RocksDbJobStore::Open(tmp.Sub("jobs"));
  ASSERT_OK(store);
  std::vector<Snapshot> want = {FullJob("j1", shutter::v1::JOB_TYPE_SNAPSHOT),
                                FullJob("j2", shutter::v1::JOB_TYPE_RESTORE),
                                FullJob("j3", shutter::v1::JOB_TYPE_VERIFY)};
  for (const auto& j : want) ASSERT_OK((*store)->PutJob(j));
  auto got = (*store)->LoadAll();
  ASSERT_OK(got);
  ExpectSameJobs(*got, want);

  // The values are the store's records, not API messages: each header
  // parses as a JobRecord with its kind's payload.
  auto raw = Dump(store->get());
  sv1::JobRecord r;
  ASSERT_TRUE(r.ParseFromString(raw.at(JobKeys::Header("j3"))));
  EXPECT_EQ(r.kind(), "verify");
  EXPECT_EQ(r.payload_case(), sv1::JobRecord::kVerify);
  EXPECT_TRUE(r.verify().deep());
  ASSERT_TRUE(r.ParseFromString(raw.at(JobKeys::Header("j1"))));
  EXPECT_EQ(r.payload_case(), sv1::JobRecord::kSnapshot);
  EXPECT_TRUE(r.snapshot().pinned());
  sv1::TaskRecord t;
  ASSERT_TRUE(t.ParseFromString(raw.at(JobKeys::Task("j2", 2))));
  EXPECT_EQ(t.job_id(), "j2");
  EXPECT_EQ(t.state(), sv1::TASK_STATE_DONE);
  EXPECT_EQ(t.outcome().applied_index(), 99u);
  EXPECT_EQ(raw.at("meta/job_format"), "2");
  // A restore task no longer repeats its source snapshot's id per
  // partition: smaller than the API message it replaces.
  EXPECT_LT(raw.at(JobKeys::Task("j2", 2)).size(),
            want[1].partitions(2).SerializeAsString().size());
}

TEST(JobRecordsTest, Format1StoresAreMigratedAtLoad) {
  testing::TempDir tmp;
  std::vector<Snapshot> want = {FullJob("j1", shutter::v1::JOB_TYPE_SNAPSHOT),
                                FullJob("j2", shutter::v1::JOB_TYPE_RESTORE),
                                FullJob("j3", shutter::v1::JOB_TYPE_VERIFY)};
  {
    auto store = RocksDbJobStore::Open(tmp.Sub("jobs"));
    ASSERT_OK(store);
    for (const auto& j : want) PutFormat1(store->get(), j);
    // A format-1 creation a crash cut short: tasks, no header.
    PutFormat1(store->get(), FullJob("j9", shutter::v1::JOB_TYPE_SNAPSHOT),
               /*header=*/false);
    // Records that are not jobs stay as they are.
    ASSERT_OK((*store)->PutRecord("schedule/hourly", "x"));
    auto format = (*store)->ReadFormat();
    ASSERT_OK(format);
    EXPECT_EQ(*format, -1);
  }
  auto store = RocksDbJobStore::Open(tmp.Sub("jobs"));
  ASSERT_OK(store);
  auto got = (*store)->LoadAll();
  ASSERT_OK(got);
  ExpectSameJobs(*got, want);
  auto raw = Dump(store->get());
  for (const auto& [k, v] : raw) {
    EXPECT_FALSE(absl::StartsWith(k, "job/")) << k << " left behind";
  }
  EXPECT_EQ(raw.at("meta/job_format"), "2");
  EXPECT_EQ(raw.count("schedule/hourly"), 1u);
  EXPECT_EQ(raw.count(JobKeys::Header("j9")), 0u);
  // Loading again reads the new records only, the same jobs.
  got = (*store)->LoadAll();
  ASSERT_OK(got);
  ExpectSameJobs(*got, want);
  EXPECT_EQ(Dump(store->get()), raw);
}

TEST(JobRecordsTest, AMigrationACrashCutShortIsFinished) {
  testing::TempDir tmp;
  auto store = RocksDbJobStore::Open(tmp.Sub("jobs"));
  ASSERT_OK(store);
  Snapshot a = FullJob("ja", shutter::v1::JOB_TYPE_SNAPSHOT);
  Snapshot b = FullJob("jb", shutter::v1::JOB_TYPE_RESTORE);
  Snapshot c = FullJob("jc", shutter::v1::JOB_TYPE_VERIFY);
  // ja: migrated (format 2 complete), old records not yet removed -- and
  // the format-2 copy moved on since (a task finished after a restart
  // would not happen before the format key, but the newer copy must win).
  PutFormat1(store->get(), a);
  Snapshot a2 = a;
  a2.set_state(shutter::v1::SNAPSHOT_STATE_COMMITTED);
  ASSERT_OK((*store)->PutJob(a2));
  // jb: format-2 tasks written, its header not yet.
  PutFormat1(store->get(), b);
  JobStoreBatch partial;
  for (const auto& t : b.partitions()) {
    partial.puts.emplace_back(JobKeys::Task("jb", t.partition_id()),
                              JobKeys::EncodeTask("jb", t));
  }
  ASSERT_OK((*store)->Write(partial));
  // jc: old header removed, its old tasks not yet (the job was migrated).
  ASSERT_OK((*store)->PutJob(c));
  PutFormat1(store->get(), c, /*header=*/false);

  auto got = (*store)->LoadAll();
  ASSERT_OK(got);
  ExpectSameJobs(*got, {a2, b, c});
  for (const auto& [k, v] : Dump(store->get())) {
    EXPECT_FALSE(absl::StartsWith(k, "job/")) << k << " left behind";
  }
}

TEST(JobRecordsTest, ANewerFormatIsRefusedAndLeftAsItIs) {
  testing::TempDir tmp;
  auto store = RocksDbJobStore::Open(tmp.Sub("jobs"));
  ASSERT_OK(store);
  ASSERT_OK((*store)->PutJob(FullJob("j1", shutter::v1::JOB_TYPE_SNAPSHOT)));
  ASSERT_OK((*store)->PutRecord("meta/job_format", "3"));
  auto before = Dump(store->get());
  EXPECT_THAT(
      (*store)->LoadAll().status(),
      StatusIs(absl::StatusCode::kFailedPrecondition, "format 3, newer"));
  EXPECT_EQ(Dump(store->get()), before);
  ASSERT_OK((*store)->PutRecord("meta/job_format", "two"));
  EXPECT_THAT((*store)->LoadAll().status(),
              StatusIs(absl::StatusCode::kDataLoss));
}

TEST(JobRecordsTest, ANewerControllersKindIsLeftAlone) {
  testing::TempDir tmp;
  auto store = RocksDbJobStore::Open(tmp.Sub("jobs"));
  ASSERT_OK(store);
  ASSERT_OK((*store)->PutJob(FullJob("j1", shutter::v1::JOB_TYPE_SNAPSHOT)));
  sv1::JobRecord r;
  r.set_job_id("j2");
  r.set_kind("compaction");
  sv1::TaskRecord t;
  t.set_job_id("j2");
  t.set_partition_id(4);
  JobStoreBatch b;
  b.puts.emplace_back(JobKeys::Task("j2", 4), t.SerializeAsString());
  b.puts.emplace_back(JobKeys::Header("j2"), r.SerializeAsString());
  ASSERT_OK((*store)->Write(b));
  auto got = (*store)->LoadAll();
  ASSERT_OK(got);
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].snapshot_id(), "j1");
  auto raw = Dump(store->get());
  EXPECT_EQ(raw.count(JobKeys::Header("j2")), 1u);
  EXPECT_EQ(raw.count(JobKeys::Task("j2", 4)), 1u);  // not an orphan
}

}  // namespace
}  // namespace shutter::controller
