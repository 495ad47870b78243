// The etcd client, the etcd job store and the leader election against a
// real etcd (Debian's etcd-server) on loopback: fenced writes, consistent
// paged scans, one leader with growing terms, failover on resignation and
// on a lost lease, and etcd going away and coming back.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/queue_thread.h"
#include "controller/etcd_client.h"
#include "controller/etcd_job_store.h"
#include "controller/job_store_import.h"
#include "controller/leader_election.h"
#include "gtest/gtest.h"
#include "testing/etcd_server.h"
#include "testing/process.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace shutter::controller {
namespace {

using ::shutter::testing::EtcdTestServer;
using ::shutter::testing::PollUntil;
using ::shutter::testing::StatusIs;
using ::shutter::testing::TempDir;
namespace ep = etcdserverpb;

TEST(EtcdUrlTest, ParsesEndpointsAndPrefix) {
  auto u = ParseEtcdUrl("etcd://10.0.0.1:2379,etcd-b:2379/shutter/prod");
  ASSERT_OK(u.status());
  EXPECT_EQ(u->endpoints,
            (std::vector<std::string>{"10.0.0.1:2379", "etcd-b:2379"}));
  EXPECT_EQ(u->prefix, "/shutter/prod/");
  u = ParseEtcdUrl("etcd://127.0.0.1:2379");
  ASSERT_OK(u.status());
  EXPECT_EQ(u->prefix, "/shutter/");
  EXPECT_THAT(ParseEtcdUrl("http://127.0.0.1:2379/x").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "not an etcd URL"));
  EXPECT_THAT(ParseEtcdUrl("etcd://127.0.0.1/x").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "not HOST:PORT"));
  EXPECT_THAT(ParseEtcdUrl("etcd:///x").status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseEtcdUrl("etcd://a:1,,b:2/x").status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(EtcdUrlTest, PrefixRangeEnd) {
  EXPECT_EQ(PrefixRangeEnd("/a/"), "/a0");
  EXPECT_EQ(PrefixRangeEnd(std::string("a\xff", 2)), "b");
  EXPECT_EQ(PrefixRangeEnd(""), std::string(1, '\0'));
}

EtcdJobStore::Options Opts(const std::string& prefix, bool fenced = true) {
  EtcdJobStore::Options o;
  o.prefix = prefix;
  o.fenced = fenced;
  return o;
}

class EtcdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = EtcdTestServer::Start(dir_.Sub("etcd"));
    SHUTTER_ETCD_OR_SKIP(server_);
    client_ = NewClient();
  }

  std::unique_ptr<EtcdClient> NewClient(
      absl::Duration timeout = absl::Seconds(2)) {
    EtcdClient::Options o;
    o.endpoints = (*server_)->Endpoints();
    o.request_timeout = timeout;
    auto c = EtcdClient::Create(o);
    EXPECT_OK(c.status());
    return *std::move(c);
  }

  // The value at `key` (raw etcd key), or "" if absent.
  std::string Get(const std::string& key) {
    ep::RangeRequest r;
    r.set_key(key);
    auto got = client_->Range(r);
    EXPECT_OK(got.status());
    if (!got.ok() || got->kvs().empty()) return "";
    return got->kvs(0).value();
  }

  TempDir dir_;
  absl::StatusOr<std::unique_ptr<EtcdTestServer>> server_;
  std::unique_ptr<EtcdClient> client_;
};

TEST_F(EtcdTest, UnfencedStoreRoundTripsRecordsInKeyOrderAcrossPages) {
  EtcdJobStore store(client_.get(), Opts("/t1/", false));
  EXPECT_EQ(store.MaxBatchRecords(), 128u);
  // 1,300 records: more than one scan page (1,000), written in batches of
  // the transaction limit.
  std::map<std::string, std::string> want;
  JobStoreBatch batch;
  for (int i = 0; i < 1300; ++i) {
    std::string k = absl::StrFormat("v2/job/j%05d/h", 1299 - i);
    std::string v = absl::StrCat("value-", i);
    want[k] = v;
    batch.puts.emplace_back(k, v);
    if (batch.size() == store.MaxBatchRecords()) {
      ASSERT_OK(store.Write(batch));
      batch = JobStoreBatch();
    }
  }
  ASSERT_OK(store.Write(batch));
  ASSERT_OK(store.PutRecord("schedule/hourly", "s"));
  std::vector<std::pair<std::string, std::string>> got;
  ASSERT_OK(store.Scan("v2/", [&](absl::string_view k, absl::string_view v) {
    got.emplace_back(std::string(k), std::string(v));
    return absl::OkStatus();
  }));
  ASSERT_EQ(got.size(), want.size());
  auto it = want.begin();
  for (const auto& [k, v] : got) {
    EXPECT_EQ(k, it->first);
    EXPECT_EQ(v, it->second);
    ++it;
  }
  EXPECT_EQ(Get("/t1/store/schedule/hourly"), "s");
  ASSERT_OK(store.DeleteRecord("schedule/hourly"));
  EXPECT_EQ(Get("/t1/store/schedule/hourly"), "");

  // Over the transaction limit: refused whole, nothing written.
  JobStoreBatch big;
  for (int i = 0; i < 129; ++i)
    big.puts.emplace_back(absl::StrCat("x/", i), "");
  EXPECT_THAT(store.Write(big),
              StatusIs(absl::StatusCode::kInvalidArgument, "at most 128"));
  EXPECT_EQ(Get("/t1/store/x/0"), "");
}

TEST_F(EtcdTest, JobsRoundTripThroughTheSchema) {
  EtcdJobStore store(client_.get(), Opts("/t2/", false));
  shutter::v1::Snapshot job;
  job.set_snapshot_id("20261204T000000Z-abcd");
  job.set_type(shutter::v1::JOB_TYPE_SNAPSHOT);
  job.set_state(shutter::v1::SNAPSHOT_STATE_RUNNING);
  for (int p = 0; p < 300; ++p) {  // tasks over several transactions
    auto* t = job.add_partitions();
    t->set_partition_id(p);
    t->set_state(shutter::v1::PARTITION_TASK_STATE_QUEUED);
  }
  ASSERT_OK(store.PutJob(job));
  auto all = store.LoadAll();
  ASSERT_OK(all.status());
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].snapshot_id(), job.snapshot_id());
  EXPECT_EQ((*all)[0].partitions_size(), 300);
  auto format = store.ReadFormat();
  ASSERT_OK(format.status());
}

TEST_F(EtcdTest, FencedWritesApplyOnlyUnderTheirLeaderKey) {
  EtcdJobStore store(client_.get(), Opts("/t3/"));
  // No fence yet: refused, nothing written.
  EXPECT_THAT(store.PutRecord("a", "1"),
              StatusIs(absl::StatusCode::kUnavailable, "not the leader"));
  ep::PutRequest put;
  put.set_key("/t3/leader");
  put.set_value("me");
  auto created = client_->Put(put);
  ASSERT_OK(created.status());
  const int64_t term = created->header().revision();
  std::atomic<int> lost{0};
  store.SetOnFenceLost([&] { ++lost; });
  store.SetFence({"/t3/leader", term, "me term 1"});
  ASSERT_OK(store.PutRecord("a", "1"));
  EXPECT_EQ(Get("/t3/store/a"), "1");
  EXPECT_EQ(Get("/t3/writer"), "me term 1");  // stamped in the same txn
  // The key is recreated (another leader): same name, new create revision.
  ep::DeleteRangeRequest del;
  del.set_key("/t3/leader");
  ASSERT_OK(client_->DeleteRange(del).status());
  ASSERT_OK(client_->Put(put).status());
  EXPECT_THAT(store.PutRecord("a", "2"),
              StatusIs(absl::StatusCode::kAborted, "no longer the leader"));
  EXPECT_EQ(lost.load(), 1);
  EXPECT_EQ(Get("/t3/store/a"), "1");
}

TEST_F(EtcdTest, UnreachableEtcdFailsPromptlyWithUnavailable) {
  auto client = NewClient(absl::Milliseconds(800));
  EtcdJobStore store(client.get(), Opts("/t4/", false));
  ASSERT_OK(store.PutRecord("a", "1"));
  ASSERT_OK((*server_)->Pause(0));  // reachable, never answers
  absl::Time start = absl::Now();
  EXPECT_THAT(store.PutRecord("a", "2"),
              StatusIs(absl::StatusCode::kUnavailable,
                       "etcd unreachable or without quorum"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  ASSERT_OK((*server_)->Resume(0));
  ASSERT_OK((*server_)->Kill(0));  // refused connections
  start = absl::Now();
  EXPECT_THAT(store.PutRecord("a", "3"),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  // Back, with its data: the same client works again by itself.
  ASSERT_OK((*server_)->Restart(0));
  EXPECT_TRUE(PollUntil([&] { return store.PutRecord("a", "4").ok(); },
                        absl::Seconds(20)));
  EXPECT_EQ(Get("/t4/store/a"), "4");
}

TEST_F(EtcdTest, AnEmbeddedStoreIsImportedOnceHeadersLast) {
  auto embedded = RocksDbJobStore::Open(dir_.Sub("jobs"));
  ASSERT_OK(embedded.status());
  for (int j = 0; j < 3; ++j) {
    shutter::v1::Snapshot job;
    job.set_snapshot_id(absl::StrFormat("20261204T00000%dZ-abcd", j));
    job.set_type(shutter::v1::JOB_TYPE_SNAPSHOT);
    job.set_state(shutter::v1::SNAPSHOT_STATE_COMMITTED);
    for (int p = 0; p < 200; ++p) {
      auto* t = job.add_partitions();
      t->set_partition_id(p);
      t->set_state(shutter::v1::PARTITION_TASK_STATE_PUBLISHED);
    }
    ASSERT_OK((*embedded)->PutJob(job));
  }
  ASSERT_OK((*embedded)->PutRecord("schedule/hourly", "s"));

  // An earlier import cut short: a marker and an orphan task record.
  EtcdJobStore target(client_.get(), Opts("/imp/", false));
  ASSERT_OK(target.PutRecord("meta/import_in_progress", "1"));
  ASSERT_OK(target.PutRecord("v2/job/x/t/0000000001", "orphan"));
  auto report = ImportJobStore(**embedded, target);
  ASSERT_OK(report.status());
  EXPECT_EQ(report->jobs, 3u);
  auto all = target.LoadAll();
  ASSERT_OK(all.status());
  ASSERT_EQ(all->size(), 3u);
  for (const auto& j : *all) EXPECT_EQ(j.partitions_size(), 200);
  EXPECT_EQ(Get("/imp/store/schedule/hourly"), "s");
  EXPECT_EQ(Get("/imp/store/meta/import_in_progress"), "");
  // Done once: a second import is refused and changes nothing.
  EXPECT_THAT(ImportJobStore(**embedded, target).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "already holds a job store"));
}

// One controller's election, with what its callbacks saw.
struct Elector {
  Elector(EtcdClient* client, const std::string& prefix, const std::string& id,
          absl::Duration lease = absl::Seconds(2))
      : store(client, Opts(prefix)) {
    LeaderElection::Options o;
    o.prefix = prefix;
    o.id = id;
    o.address = id + ":1";
    o.lease = lease;
    LeaderElection::Callbacks cb;
    cb.on_elected = [this](int64_t term) {
      absl::MutexLock l(&mu);
      terms.push_back(term);
      leading = term;
      return absl::OkStatus();
    };
    cb.on_deposed = [this] {
      absl::MutexLock l(&mu);
      leading = 0;
      ++deposed;
    };
    election = std::make_unique<LeaderElection>(o, client, &store, cb);
    store.SetOnFenceLost([this] { election->Depose(); });
  }
  // The election's thread calls back into this object: stop it first.
  ~Elector() { election->Shutdown(); }
  int64_t Leading() {
    absl::MutexLock l(&mu);
    return leading;
  }
  EtcdJobStore store;
  std::unique_ptr<LeaderElection> election;
  absl::Mutex mu;
  std::vector<int64_t> terms ABSL_GUARDED_BY(mu);
  int64_t leading ABSL_GUARDED_BY(mu) = 0;
  int deposed ABSL_GUARDED_BY(mu) = 0;
};

// How many of this process' threads are named `name`.
int ThreadsNamed(const std::string& name) {
  const std::vector<std::string> threads = testing::ThreadNames(getpid());
  return static_cast<int>(std::count(threads.begin(), threads.end(), name));
}

TEST_F(EtcdTest, StreamsRunOnTheQueueGivenAndLeaveNothingOnIt) {
  QueueThread queue("test-queue");
  auto c = NewClient();
  c->UseQueue(queue.queue());
  auto lease = c->LeaseGrant(absl::Seconds(10));
  ASSERT_OK(lease.status());
  {
    auto keeper = c->KeepAlive(lease->id());
    auto ttl = keeper->Renew(absl::Now() + absl::Seconds(5));
    ASSERT_OK(ttl.status());
    EXPECT_GT(*ttl, 0);
    ep::WatchCreateRequest create;
    create.set_key("/q/k");
    auto watch = c->Watch(create);
    auto created = watch->Next(absl::Now() + absl::Seconds(5));
    ASSERT_OK(created.status());
    EXPECT_TRUE(created->created());
    ep::PutRequest put;
    put.set_key("/q/k");
    put.set_value("v");
    ASSERT_OK(c->Put(put).status());
    auto events = watch->Next(absl::Now() + absl::Seconds(5));
    ASSERT_OK(events.status());
    ASSERT_EQ(events->events_size(), 1);
    EXPECT_EQ(events->events(0).kv().value(), "v");
    // Nothing more comes: the wait ends at its deadline, the watch usable.
    EXPECT_THAT(watch->Next(absl::Now() + absl::Milliseconds(100)).status(),
                StatusIs(absl::StatusCode::kDeadlineExceeded));
    // Cancelled while a read is outstanding: the stream ends.
    watch->Cancel();
    EXPECT_THAT(watch->Next(absl::Now() + absl::Seconds(5)).status(),
                StatusIs(absl::StatusCode::kUnavailable));
    // The keeper's stream is still open when it goes: closed with it.
    ASSERT_OK(keeper->Renew(absl::Now() + absl::Seconds(5)).status());
    // No queue of the client's own was made.
    EXPECT_EQ(ThreadsNamed("etcd-queue"), 0);
  }
  // Without a queue given, the client makes its own on the first stream.
  c->UseQueue(nullptr);
  ep::WatchCreateRequest create;
  create.set_key("/q/other");
  auto watch = c->Watch(create);
  ASSERT_OK(watch->Next(absl::Now() + absl::Seconds(5)).status());
  EXPECT_EQ(ThreadsNamed("etcd-queue"), 1);
  // Leaving the scope closes the watch, then the client stops its queue,
  // then `queue` is shut down and drained: a stream that left an operation
  // on either would hang here until ctest's timeout.
}

TEST_F(EtcdTest, OneLeaderAndAFollowerTakesOverWhenItResigns) {
  // b's streams run on a queue it is given (as in the controller), a's on
  // the client's own.
  QueueThread queue("test-queue");
  auto c1 = NewClient();
  auto c2 = NewClient();
  c2->UseQueue(queue.queue());
  Elector a(c1.get(), "/e1/", "a");
  Elector b(c2.get(), "/e1/", "b");
  a.election->Start();
  ASSERT_TRUE(PollUntil([&] { return a.Leading() != 0; }, absl::Seconds(10)));
  b.election->Start();
  // b follows and knows who leads.
  ASSERT_TRUE(PollUntil([&] { return b.election->Current().leader_id == "a"; },
                        absl::Seconds(10)));
  const int64_t term1 = a.Leading();
  EXPECT_EQ(b.Leading(), 0);
  EXPECT_TRUE(a.election->Leads(term1));
  EXPECT_EQ(b.election->Current().term, term1);
  EXPECT_EQ(b.election->Current().leader_address, "a:1");
  ASSERT_OK(a.store.PutRecord("k", "from-a"));
  EXPECT_THAT(b.store.PutRecord("k", "from-b"),
              StatusIs(absl::StatusCode::kUnavailable));
  // Both registered under controllers/.
  EXPECT_NE(Get("/e1/controllers/a"), "");
  EXPECT_NE(Get("/e1/controllers/b"), "");

  // a resigns (shutdown revokes its lease): b leads at once, not after
  // the TTL, with a higher term.
  const absl::Time start = absl::Now();
  a.election->Shutdown();
  ASSERT_TRUE(PollUntil([&] { return b.Leading() != 0; }, absl::Seconds(10)));
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  const int64_t term2 = b.Leading();
  EXPECT_GT(term2, term1);
  {
    absl::MutexLock l(&a.mu);
    EXPECT_EQ(a.deposed, 1);
  }
  EXPECT_FALSE(a.election->Leads(term1));
  // a's store lost its fence; b writes.
  EXPECT_THAT(a.store.PutRecord("k", "late-a"),
              StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_OK(b.store.PutRecord("k", "from-b"));
  EXPECT_EQ(Get("/e1/store/k"), "from-b");
  EXPECT_EQ(Get("/e1/controllers/a"), "");
}

TEST_F(EtcdTest, ALeaderWhoseLeaseIsRevokedStepsDownAndItsFenceFails) {
  auto c1 = NewClient();
  auto c2 = NewClient();
  Elector a(c1.get(), "/e2/", "a");
  a.election->Start();
  ASSERT_TRUE(PollUntil([&] { return a.Leading() != 0; }, absl::Seconds(10)));
  const int64_t term1 = a.Leading();
  // Keep a's fence as it was, to write as a deposed leader would.
  EtcdJobStore stale(c1.get(), Opts("/e2/"));
  stale.SetFence({"/e2/leader", term1, ""});
  ASSERT_OK(stale.PutRecord("k", "1"));

  Elector b(c2.get(), "/e2/", "b");
  b.election->Start();
  ASSERT_TRUE(PollUntil([&] { return b.election->Current().leader_id == "a"; },
                        absl::Seconds(10)));
  // The lease behind a's key ends (as when etcd expires it).
  ep::RangeRequest r;
  r.set_key("/e2/leader");
  auto got = client_->Range(r);
  ASSERT_OK(got.status());
  ASSERT_EQ(got->kvs_size(), 1);
  ASSERT_OK(client_->LeaseRevoke(got->kvs(0).lease()));
  ASSERT_TRUE(PollUntil([&] { return b.Leading() != 0; }, absl::Seconds(10)));
  ASSERT_TRUE(PollUntil([&] { return a.Leading() == 0; }, absl::Seconds(10)));
  EXPECT_GT(b.Leading(), term1);
  EXPECT_FALSE(a.election->Leads(term1));
  EXPECT_THAT(stale.PutRecord("k", "2"),
              StatusIs(absl::StatusCode::kAborted, "no longer the leader"));
  EXPECT_EQ(Get("/e2/store/k"), "1");
  // a stays in the group as a follower of b.
  ASSERT_TRUE(PollUntil([&] { return a.election->Current().leader_id == "b"; },
                        absl::Seconds(10)));
}

TEST_F(EtcdTest, TheLeaderStepsDownWithinItsLeaseWhenEtcdGoesAndLeadsAgain) {
  auto c1 = NewClient(absl::Milliseconds(500));
  Elector a(c1.get(), "/e3/", "a", absl::Seconds(2));
  a.election->Start();
  ASSERT_TRUE(PollUntil([&] { return a.Leading() != 0; }, absl::Seconds(10)));
  const int64_t term1 = a.Leading();
  ASSERT_OK((*server_)->Pause(0));
  const absl::Time start = absl::Now();
  ASSERT_TRUE(PollUntil([&] { return a.Leading() == 0; }, absl::Seconds(10)));
  // Within its lease (2 s) and the poll, from the last renewal.
  EXPECT_LT(absl::Now() - start, absl::Seconds(2) + absl::Milliseconds(500));
  EXPECT_FALSE(a.election->Leads(term1));
  ASSERT_OK((*server_)->Resume(0));
  // No restart: it campaigns again by itself (after etcd expires the old
  // lease, or at once if etcd restarted its count).
  ASSERT_TRUE(PollUntil([&] { return a.Leading() != 0; }, absl::Seconds(20)));
  EXPECT_GT(a.Leading(), term1);
}

}  // namespace
}  // namespace shutter::controller
