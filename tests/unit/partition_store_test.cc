#include "partition/partition_store.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "partition/write_stall_listener.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace shutter::partition {
namespace {

using ::shutter::testing::StatusIs;

std::vector<Mutation> Puts(int from, int to) {
  std::vector<Mutation> m;
  for (int i = from; i < to; ++i) {
    m.push_back(
        {Mutation::Op::kPut, "k" + std::to_string(i), "v" + std::to_string(i)});
  }
  return m;
}

TEST(PartitionStoreTest, EpochIncreasesDurablyOnEveryLeadershipTake) {
  testing::TempDir tmp;
  {
    auto s = PartitionStore::Open({tmp.Sub("p"), 1});
    ASSERT_OK(s);
    EXPECT_EQ((*s)->meta().leader_epoch, 0u);
    EXPECT_EQ(*(*s)->TakeLeadership(), 1u);
  }
  {
    auto s = PartitionStore::Open({tmp.Sub("p"), 1});
    ASSERT_OK(s);
    EXPECT_EQ((*s)->meta().leader_epoch, 1u);
    EXPECT_FALSE((*s)->is_leader());
    EXPECT_EQ(*(*s)->TakeLeadership(), 2u);
  }
}

// A store another process has open (its RocksDB LOCK held) is refused
// with a message that says so, not RocksDB's "While lock file".
TEST(PartitionStoreTest, AStoreOpenInAnotherProcessIsRefusedSayingSo) {
  testing::TempDir tmp;
  ASSERT_OK(PartitionStore::Open({tmp.Sub("p"), 3}).status());
  int locked[2], release[2];
  ASSERT_EQ(pipe(locked), 0);
  ASSERT_EQ(pipe(release), 0);
  const std::string lock_file = tmp.Sub("p/LOCK");
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Only system calls after fork: take the lock as RocksDB does (a
    // write lock with fcntl), say so, hold it until told.
    const int fd = open(lock_file.c_str(), O_RDWR);
    struct flock fl = {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    char c = (fd >= 0 && fcntl(fd, F_SETLK, &fl) == 0) ? 'y' : 'n';
    (void)!write(locked[1], &c, 1);
    (void)!read(release[0], &c, 1);
    _exit(0);
  }
  char c = 0;
  ASSERT_EQ(read(locked[0], &c, 1), 1);
  ASSERT_EQ(c, 'y');
  auto refused = PartitionStore::Open({tmp.Sub("p"), 3});
  EXPECT_THAT(refused.status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_TRUE(absl::StrContains(refused.status().message(),
                                "another process has it open"))
      << refused.status();
  ASSERT_EQ(write(release[1], "x", 1), 1);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  for (int fd : {locked[0], locked[1], release[0], release[1]}) close(fd);
  EXPECT_OK(PartitionStore::Open({tmp.Sub("p"), 3}).status());
}

TEST(PartitionStoreTest, LeadershipCanJumpToAMinimumEpoch) {
  testing::TempDir tmp;
  auto s = PartitionStore::Open({tmp.Sub("p"), 1});
  ASSERT_OK(s);
  EXPECT_EQ(*(*s)->TakeLeadership(/*min_epoch=*/5), 5u);
  EXPECT_EQ(*(*s)->TakeLeadership(/*min_epoch=*/2), 6u);  // never goes back
  (*s)->StepDown();
  EXPECT_FALSE((*s)->is_leader());
  EXPECT_EQ((*s)->meta().leader_epoch, 6u);
}

TEST(PartitionStoreTest, WritesNeedLeadershipAndCountBatches) {
  testing::TempDir tmp;
  auto s = PartitionStore::Open({tmp.Sub("p"), 1});
  ASSERT_OK(s);
  PartitionStore& store = **s;
  EXPECT_THAT(store.Write(Puts(0, 1), false),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(store.TakeLeadership());
  EXPECT_THAT(store.Write({}, false),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(*store.Write(Puts(0, 10), false), 1u);
  EXPECT_EQ(*store.Write({{Mutation::Op::kDelete, "k3", ""}}, true), 2u);
  EXPECT_EQ(store.meta().applied_index, 2u);
  EXPECT_EQ(*store.Get("k4"), "v4");
  EXPECT_THAT(store.Get("k3"), StatusIs(absl::StatusCode::kNotFound));
  std::vector<std::pair<std::string, std::string>> out;
  std::string next;
  ASSERT_OK(store.Scan("k0", "", 3, 1 << 20, &out, &next));
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].first, "k0");
  EXPECT_EQ(out[2].first, "k2");
  EXPECT_EQ(next, "k4");
  // The applied index survives a reopen.
  s->reset();
  auto again = PartitionStore::Open({tmp.Sub("p"), 1});
  ASSERT_OK(again);
  EXPECT_EQ((*again)->meta().applied_index, 2u);
}

TEST(PartitionStoreTest, SizeLimitsAreEnforcedAndScanPagesAreBoundedByBytes) {
  testing::TempDir tmp;
  auto s = PartitionStore::Open({tmp.Sub("p"), 1});
  ASSERT_OK(s);
  PartitionStore& store = **s;
  ASSERT_OK(store.TakeLeadership());
  const std::string big_value(kMaxValueBytes + 1, 'v');
  EXPECT_THAT(store.Write({{Mutation::Op::kPut, "k", big_value}}, false),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store.Write({{Mutation::Op::kPut,
                            std::string(kMaxKeyBytes + 1, 'k'), "v"}},
                          false),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store.Write({{Mutation::Op::kPut, "", "v"}}, false),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // Five values of 1 MiB: more than one batch may carry in all.
  std::vector<Mutation> five;
  for (int i = 0; i < 5; ++i) {
    five.push_back({Mutation::Op::kPut, absl::StrCat("k", i),
                    std::string(kMaxValueBytes, 'x')});
  }
  EXPECT_THAT(store.Write(five, false),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(store.meta().applied_index, 0u);  // nothing was applied
  // Ten values of 512 KiB, written in batches that fit.
  for (int i = 0; i < 10; i += 2) {
    std::vector<Mutation> two;
    for (int j = i; j < i + 2; ++j) {
      two.push_back({Mutation::Op::kPut, absl::StrCat("k", j),
                     std::string(512 << 10, 'a' + j)});
    }
    ASSERT_OK(store.Write(two, false));
  }
  std::vector<std::pair<std::string, std::string>> out;
  std::string next;
  ASSERT_OK(store.Scan("", "", 1000, kMaxScanPageBytes, &out, &next));
  EXPECT_EQ(out.size(), 3u);  // 3 x 512 KiB + keys fit 2 MiB, 4 do not
  EXPECT_EQ(next, "k3");
  // A page holds at least one entry even if it alone is over max_bytes.
  out.clear();
  ASSERT_OK(store.Scan("", "", 1000, 1, &out, &next));
  EXPECT_EQ(out.size(), 1u);
  EXPECT_EQ(next, "k1");
}

TEST(PartitionStoreTest, CheckpointIsAStandaloneDatabaseWithItsOwnMeta) {
  testing::TempDir tmp;
  auto s = PartitionStore::Open({tmp.Sub("p"), 1});
  ASSERT_OK(s);
  PartitionStore& store = **s;
  ASSERT_OK(store.TakeLeadership());
  ASSERT_OK(store.Write(Puts(0, 100), false));
  ASSERT_OK(store.Write(Puts(100, 200), false));
  ASSERT_OK(store.CreateCheckpoint(tmp.Sub("cp")));
  ASSERT_OK(store.Write(Puts(200, 300), false));  // after the checkpoint
  auto ro = ReadOnlyPartition::Open(tmp.Sub("cp"));
  ASSERT_OK(ro);
  EXPECT_EQ((*ro)->meta().applied_index, 2u);
  EXPECT_EQ((*ro)->meta().leader_epoch, 1u);
  EXPECT_EQ(*(*ro)->CountKeys(), 200u);
  EXPECT_EQ(*(*ro)->Get("k150"), "v150");
  EXPECT_THAT((*ro)->Get("k250"), StatusIs(absl::StatusCode::kNotFound));
  // Opening read-only wrote nothing (no LOG file) into the checkpoint.
  for (const auto& e : std::filesystem::directory_iterator(tmp.Sub("cp"))) {
    EXPECT_NE(e.path().filename().string().rfind("LOG", 0), 0u) << e.path();
  }
  EXPECT_FALSE(store.CreateCheckpoint(tmp.Sub("cp")).ok());  // must not exist
}

TEST(PartitionStoreTest, TableOpeningThreadsGrowWithTheTableFiles) {
  testing::TempDir tmp;
  // Nothing to list yet (a new store): the opening thread alone.
  EXPECT_EQ(TableOpeningThreads(tmp.Sub("missing")), 1);
  // A real checkpoint of a small store: a few table files, no extra thread.
  auto s = PartitionStore::Open({tmp.Sub("p"), 1});
  ASSERT_OK(s);
  ASSERT_OK((*s)->TakeLeadership());
  ASSERT_OK((*s)->Write(Puts(0, 100), false));
  ASSERT_OK((*s)->CreateCheckpoint(tmp.Sub("cp")));
  EXPECT_EQ(TableOpeningThreads(tmp.Sub("cp")), 1);
  // One thread per 8 table files, at most 16; other files do not count.
  const std::string dir = tmp.Sub("many");
  std::filesystem::create_directories(dir);
  auto add_files = [&](int from, int to, const char* suffix) {
    for (int i = from; i < to; ++i) {
      std::ofstream(absl::StrCat(dir, "/", 100000 + i, suffix)).put('x');
    }
  };
  add_files(0, 7, ".sst");
  add_files(0, 50, ".log");
  EXPECT_EQ(TableOpeningThreads(dir), 1);
  add_files(7, 24, ".sst");
  EXPECT_EQ(TableOpeningThreads(dir), 3);
  add_files(24, 1000, ".sst");
  EXPECT_EQ(TableOpeningThreads(dir), 16);
}

}  // namespace
}  // namespace shutter::partition

namespace shutter::partition {
namespace {

TEST(WriteStallListenerTest, CountsStallsAndTheirTime) {
  WriteStallStats stats;
  absl::Time now = absl::FromUnixSeconds(1000);
  WriteStallListener listener(&stats, [&] { return now; });
  using C = rocksdb::WriteStallCondition;
  auto change = [&](const std::string& cf, C prev, C cur) {
    rocksdb::WriteStallInfo info;
    info.cf_name = cf;
    info.condition.prev = prev;
    info.condition.cur = cur;
    listener.OnStallConditionsChanged(info);
  };
  change("default", C::kNormal, C::kDelayed);
  now += absl::Milliseconds(30);
  change("default", C::kDelayed, C::kStopped);  // still the same stall
  change("meta", C::kNormal, C::kStopped);      // another column family
  now += absl::Milliseconds(20);
  change("default", C::kStopped, C::kNormal);
  EXPECT_EQ(stats.stalls.load(), 2u);
  EXPECT_EQ(stats.stalled_micros.load(), 50'000u);
  now += absl::Milliseconds(10);
  change("meta", C::kStopped, C::kNormal);
  EXPECT_EQ(stats.stalled_micros.load(), 50'000u + 30'000u);
  // An end without a start (listener attached mid-stall) adds nothing.
  change("other", C::kDelayed, C::kNormal);
  EXPECT_EQ(stats.stalled_micros.load(), 80'000u);
}

}  // namespace
}  // namespace shutter::partition
