// The snapshot repository and its blob stores, run against both
// implementations: a local directory and a real S3-protocol server
// (moto_server) on loopback.
#include "snapshot/repository.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "common/error_reason.h"
#include "common/fs.h"
#include "gtest/gtest.h"
#include "snapshot/blob_repository.h"
#include "snapshot/blob_store.h"
#include "snapshot/file_hash_cache.h"
#include "snapshot/fs_blob_store.h"
#include "snapshot/manifest.h"
#include "snapshot/s3_blob_store.h"
#include "testing/s3_server.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace shutter::snapshot {
namespace {

using ::shutter::testing::StatusIs;
namespace stdfs = std::filesystem;

constexpr char kHelloSha[] =
    "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

shutter::v1::PartitionManifest Header(const std::string& snapshot,
                                      uint32_t partition) {
  shutter::v1::PartitionManifest h;
  h.set_snapshot_id(snapshot);
  h.set_partition_id(partition);
  h.set_node_id("n1");
  h.set_leader_epoch(2);
  h.set_applied_index(10);
  return h;
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
}

class RepositoryTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "s3") {
      auto server = testing::S3TestServer::Start(tmp_.Sub("s3"));
      SHUTTER_S3_OR_SKIP(server);
      server_ = std::move(server).value();
      auto uri = server_->NewRepositoryUri();
      ASSERT_OK(uri);
      uri_ = *uri;
      options_ = server_->Options();
    } else {
      uri_ = tmp_.Sub("repo");
    }
    Reopen();
    src_ = tmp_.Sub("src");
    stdfs::create_directories(src_);
    WriteFile(src_ + "/000001.sst", "hello");
    WriteFile(src_ + "/CURRENT", "MANIFEST-000002\n");
  }

  void Reopen() {
    repo_.reset();
    auto r = OpenRepository(uri_, options_);
    ASSERT_OK(r);
    repo_ = std::move(r).value();
  }
  BlobStore* store() { return repo_->blob_store(); }
  std::vector<std::string> Keys(const std::string& prefix) {
    std::vector<std::string> out;
    auto l = store()->List(prefix);
    EXPECT_OK(l);
    if (l.ok()) {
      for (const auto& o : *l) out.push_back(o.key);
    }
    return out;
  }
  // Publishes src_ as (snapshot, partition) and commits the snapshot.
  void PublishAndCommit(const std::string& snapshot, uint32_t partition) {
    ASSERT_OK(repo_->PublishPartition(Header(snapshot, partition), src_));
    shutter::v1::ClusterManifest cm;
    cm.set_snapshot_id(snapshot);
    ASSERT_OK(repo_->CommitClusterManifest(cm));
  }

  testing::TempDir tmp_;
  std::unique_ptr<testing::S3TestServer> server_;
  std::string uri_;
  RepositoryOptions options_;
  std::unique_ptr<Repository> repo_;
  std::string src_;
};

TEST_P(RepositoryTest, BlobStoreContract) {
  BlobStore::PutOptions plain;
  BlobStore::PutOptions if_absent;
  if_absent.if_absent = true;
  EXPECT_THAT(store()->Head("a/b"), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK(store()->Put("a/b", "0123456789", plain));
  auto head = store()->Head("a/b");
  ASSERT_OK(head);
  EXPECT_EQ(head->size, 10u);
  EXPECT_LT(absl::AbsDuration(head->modified - absl::Now()), absl::Minutes(5));
  EXPECT_EQ(*store()->Get("a/b"), "0123456789");
  EXPECT_EQ(*store()->Get("a/b", 3, 4), "3456");
  EXPECT_EQ(*store()->Get("a/b", 8), "89");
  EXPECT_THAT(store()->Put("a/b", "other", if_absent),
              StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_EQ(*store()->Get("a/b"), "0123456789");
  ASSERT_OK(store()->Put("a/b", "replaced", plain));
  EXPECT_EQ(*store()->Get("a/b"), "replaced");
  ASSERT_OK(store()->Put("a/c", "", if_absent));
  EXPECT_EQ(*store()->Get("a/c"), "");
  ASSERT_OK(store()->Put("ab", "x", plain));
  EXPECT_EQ(Keys("a/"), (std::vector<std::string>{"a/b", "a/c"}));
  EXPECT_EQ(Keys("a"), (std::vector<std::string>{"a/b", "a/c", "ab"}));
  ASSERT_OK(store()->Delete("a/b"));
  ASSERT_OK(store()->Delete("a/b"));  // absent: still OK
  EXPECT_THAT(store()->Get("a/b"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(Keys("a/"), (std::vector<std::string>{"a/c"}));
  for (const char* bad : {"", "/a", "a//b", "a/../b", ".hidden", "a b"}) {
    EXPECT_THAT(store()->Put(bad, "x", plain),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
  // A file larger than an S3 part (8 MiB): a multipart upload with
  // parallel parts there; the SHA-256 is of the whole file.
  std::string big(20 << 20, '\0');
  std::mt19937_64 rng(7);
  for (size_t i = 0; i < big.size(); i += 8) {
    uint64_t v = rng();
    memcpy(&big[i], &v, 8);
  }
  WriteFile(tmp_.Sub("big"), big);
  auto put = store()->PutFile("big/one", tmp_.Sub("big"), if_absent);
  ASSERT_OK(put);
  EXPECT_EQ(put->size, big.size());
  auto sha = fs::Sha256File(tmp_.Sub("big"));
  ASSERT_OK(sha);
  EXPECT_EQ(put->sha256, *sha);
  auto got = store()->GetToFile("big/one", tmp_.Sub("big.back"));
  ASSERT_OK(got);
  EXPECT_EQ(got->sha256, *sha);
  EXPECT_EQ(*store()->Get("big/one", (9 << 20) - 3, 6),
            big.substr((9 << 20) - 3, 6));
  // A wrong expected hash is refused, and nothing is stored.
  BlobStore::PutOptions wrong;
  wrong.sha256 = kHelloSha;
  EXPECT_THAT(store()->PutFile("big/two", tmp_.Sub("big"), wrong),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(store()->Head("big/two"), StatusIs(absl::StatusCode::kNotFound));
  // Move: the object under its new key, the old one gone (a 20 MiB object:
  // server-side on S3); onto an existing key with if_absent: refused, the
  // existing one kept, the moved one gone.
  ASSERT_OK(store()->Move("big/one", "moved/one", /*if_absent=*/true));
  EXPECT_THAT(store()->Head("big/one"), StatusIs(absl::StatusCode::kNotFound));
  auto moved = store()->GetToFile("moved/one", tmp_.Sub("big.moved"));
  ASSERT_OK(moved);
  EXPECT_EQ(moved->sha256, *sha);
  ASSERT_OK(store()->Put("m/x", "first", plain));
  ASSERT_OK(store()->Put("m/y", "second", plain));
  EXPECT_THAT(store()->Move("m/y", "m/x", /*if_absent=*/true),
              StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_EQ(*store()->Get("m/x"), "first");
  EXPECT_THAT(store()->Head("m/y"), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK(store()->Put("m/y", "third", plain));
  ASSERT_OK(store()->Move("m/y", "m/x", /*if_absent=*/false));
  EXPECT_EQ(*store()->Get("m/x"), "third");
  EXPECT_THAT(store()->Move("m/none", "m/z", true),
              StatusIs(absl::StatusCode::kNotFound));
  // A directory store keeps no directory a move or a delete emptied (as an
  // object store has none): a cancelled snapshot's attempt directories
  // stayed behind forever.
  if (GetParam() == "fs") {
    ASSERT_OK(store()->Put("s/1/attempts/a/incoming/f", "x", plain));
    ASSERT_OK(store()->Put("s/1/manifest", "m", plain));
    ASSERT_OK(store()->Move("s/1/attempts/a/incoming/f", "b/f", true));
    const std::string root = store()->LocalPath("s");
    EXPECT_FALSE(fs::Exists(root + "/1/attempts")) << "left behind";
    EXPECT_TRUE(fs::Exists(root + "/1/manifest"));
    ASSERT_OK(store()->Delete("s/1/manifest"));
    EXPECT_FALSE(fs::Exists(root)) << "left behind";
    EXPECT_TRUE(fs::Exists(store()->LocalPath("b/f")));
  }
}

TEST_P(RepositoryTest, PublishStoresSstsByContentAndTheRestPerAttempt) {
  PublishStats stats;
  auto m = repo_->PublishPartition(Header("snap-1", 3), src_, nullptr, &stats);
  ASSERT_OK(m);
  EXPECT_EQ(m->format_version(), kManifestFormatVersion);
  ASSERT_EQ(m->files_size(), 2);
  EXPECT_EQ(m->files(0).name(), "000001.sst");
  EXPECT_EQ(m->files(0).size_bytes(), 5u);
  EXPECT_EQ(m->files(0).sha256(), kHelloSha);
  EXPECT_EQ(m->files(0).object_key(),
            absl::StrCat("blobs/sha256/2c/", kHelloSha));
  EXPECT_EQ(m->files(1).name(), "CURRENT");
  EXPECT_TRUE(absl::StartsWith(m->files(1).object_key(),
                               "snapshots/snap-1/partitions/00003/attempts/"))
      << m->files(1).object_key();
  EXPECT_EQ(m->total_bytes(), 5u + 16u);
  EXPECT_EQ(stats.uploaded_bytes, 21u);
  EXPECT_EQ(stats.reused_bytes, 0u);
  // Exactly the manifest and the two files; no lock, nothing temporary.
  EXPECT_EQ(Keys("snapshots/"),
            (std::vector<std::string>{
                "snapshots/snap-1/partitions/00003/MANIFEST.json",
                m->files(1).object_key()}));
  EXPECT_EQ(Keys("blobs/"),
            (std::vector<std::string>{m->files(0).object_key()}));
  EXPECT_TRUE(Keys("locks/").empty());
  auto read = repo_->ReadPartitionManifest("snap-1", 3);
  ASSERT_OK(read);
  EXPECT_EQ(read->SerializeAsString(), m->SerializeAsString());
  EXPECT_OK(repo_->VerifyPartition(*read));
  ASSERT_OK(repo_->DownloadPartition(*read, tmp_.Sub("down")));
  EXPECT_EQ(*fs::ReadFile(tmp_.Sub("down/000001.sst")), "hello");
  EXPECT_EQ(*fs::ReadFile(tmp_.Sub("down/CURRENT")), "MANIFEST-000002\n");
}

TEST_P(RepositoryTest, UnchangedFilesAreNeitherReadNorUploadedAgain) {
  auto cache = FileHashCache::Open(tmp_.Sub("hashes"));
  ASSERT_OK(cache);
  options_.hash_cache = cache->get();
  Reopen();
  PublishStats first, second;
  ASSERT_OK(repo_->PublishPartition(Header("s1", 0), src_, nullptr, &first));
  EXPECT_EQ(first.files_hash_cached, 0u);
  EXPECT_EQ(first.uploaded_bytes, 21u);
  ASSERT_OK(repo_->PublishPartition(Header("s2", 0), src_, nullptr, &second));
  EXPECT_EQ(second.files_hash_cached, 1u);  // the SST, not re-read
  EXPECT_EQ(second.files_reused, 1u);
  EXPECT_EQ(second.reused_bytes, 5u);
  EXPECT_EQ(second.uploaded_bytes, 16u);  // CURRENT only
  // The cache survives a restart (it is a file).
  cache->reset();
  auto again = FileHashCache::Open(tmp_.Sub("hashes"));
  ASSERT_OK(again);
  EXPECT_EQ((*again)->Lookup(src_ + "/000001.sst"), kHelloSha);
  // A changed file is a different file: not taken from the cache.
  WriteFile(src_ + "/000001.sst", "jello");
  EXPECT_FALSE((*again)->Lookup(src_ + "/000001.sst").has_value());
  // Even a cache that lies only costs a re-upload, never a bad snapshot:
  // the object was collected, so the HEAD misses and it is uploaded again.
  WriteFile(src_ + "/000001.sst", "hello");
  (*again)->Insert(src_ + "/000001.sst", kHelloSha);
  options_.hash_cache = again->get();
  Reopen();
  ASSERT_OK(repo_->DeleteSnapshot("s1"));
  ASSERT_OK(repo_->DeleteSnapshot("s2"));
  GcOptions gc;
  gc.grace = absl::ZeroDuration();
  ASSERT_OK(repo_->CollectGarbage(gc));
  EXPECT_TRUE(Keys("blobs/").empty());
  PublishStats third;
  auto m = repo_->PublishPartition(Header("s3", 0), src_, nullptr, &third);
  ASSERT_OK(m);
  EXPECT_EQ(third.files_hash_cached, 1u);
  EXPECT_EQ(third.uploaded_bytes, 21u);
  EXPECT_OK(repo_->VerifyPartition(*m));
}

// One read per byte: with a hash cache, a new file is read once (hashed
// while uploaded, then moved under its content key); a known one not at
// all; a new-to-this-host file the repository already has is uploaded and
// dropped, never left behind. Without a cache, hash then upload (two reads).
TEST_P(RepositoryTest, NewFilesAreReadOnceAndNothingIncomingIsLeft) {
  auto cache = FileHashCache::Open(tmp_.Sub("hashes"));
  ASSERT_OK(cache);
  options_.hash_cache = cache->get();
  Reopen();
  PublishStats first, second;
  auto m1 = repo_->PublishPartition(Header("s1", 0), src_, nullptr, &first);
  ASSERT_OK(m1);
  EXPECT_EQ(first.local_bytes_read, 21u);  // 5 + 16: each byte once
  EXPECT_EQ(first.uploaded_bytes, 21u);
  EXPECT_EQ(first.files_uploaded, 2u);
  EXPECT_EQ(m1->files(0).sha256(), kHelloSha);
  EXPECT_EQ(*store()->Get(m1->files(0).object_key()), "hello");
  ASSERT_OK(repo_->PublishPartition(Header("s2", 0), src_, nullptr, &second));
  EXPECT_EQ(second.local_bytes_read, 16u);  // CURRENT only; the SST: a HEAD
  // A new cache (another host, or a lost cache file): the SST is uploaded
  // and dropped, counted as reused.
  auto fresh = FileHashCache::Open(tmp_.Sub("hashes2"));
  ASSERT_OK(fresh);
  options_.hash_cache = fresh->get();
  Reopen();
  PublishStats third;
  auto m3 = repo_->PublishPartition(Header("s3", 0), src_, nullptr, &third);
  ASSERT_OK(m3);
  EXPECT_EQ(third.files_reused, 1u);
  EXPECT_EQ(third.reused_bytes, 5u);
  EXPECT_EQ(third.local_bytes_read, 21u);
  EXPECT_OK(repo_->VerifyPartition(*m3));
  for (const std::string& k : Keys("")) {
    EXPECT_EQ(k.find("/incoming/"), std::string::npos) << k;
  }
  // No cache: hashed first, then uploaded only if needed.
  options_.hash_cache = nullptr;
  Reopen();
  WriteFile(src_ + "/000001.sst", "brand new");
  PublishStats fourth;
  auto m4 = repo_->PublishPartition(Header("s4", 0), src_, nullptr, &fourth);
  ASSERT_OK(m4);
  EXPECT_EQ(fourth.local_bytes_read, 2 * 9u + 16u);
  EXPECT_EQ(*store()->Get(m4->files(0).object_key()), "brand new");
}

TEST_P(RepositoryTest, SecondPublishIsRejectedAndKeepsTheFirst) {
  ASSERT_OK(repo_->PublishPartition(Header("snap-1", 3), src_));
  WriteFile(src_ + "/000001.sst", "different");
  EXPECT_THAT(repo_->PublishPartition(Header("snap-1", 3), src_),
              StatusIs(absl::StatusCode::kAlreadyExists));
  auto read = repo_->ReadPartitionManifest("snap-1", 3);
  ASSERT_OK(read);
  EXPECT_OK(repo_->VerifyPartition(*read));
  EXPECT_EQ(read->files(0).sha256(), kHelloSha);
}

// Two publishers of one partition (a deposed leader and the new one) race
// past the early check: the manifest is written only-if-absent, so exactly
// one wins, the other gets ALREADY_EXISTS, and the loser's files go.
TEST_P(RepositoryTest, RacingPublishersOneWinsAndTheLoserLeavesNothing) {
  std::string src2 = tmp_.Sub("src2");
  stdfs::create_directories(src2);
  WriteFile(src2 + "/000009.sst", "other leader's data");
  WriteFile(src2 + "/CURRENT", "MANIFEST-000009\n");
  absl::Notification both_ready;
  std::atomic<int> ready{0};
  auto gate = [&]() -> absl::Status {
    if (++ready == 2) both_ready.Notify();
    both_ready.WaitForNotification();
    return absl::OkStatus();
  };
  absl::StatusOr<shutter::v1::PartitionManifest> a, b;
  std::thread ta(
      [&] { a = repo_->PublishPartition(Header("s", 1), src_, gate); });
  std::thread tb(
      [&] { b = repo_->PublishPartition(Header("s", 1), src2, gate); });
  ta.join();
  tb.join();
  ASSERT_NE(a.ok(), b.ok()) << a.status() << " / " << b.status();
  const auto& loser = a.ok() ? b : a;
  const auto& winner = a.ok() ? a : b;
  EXPECT_THAT(loser, StatusIs(absl::StatusCode::kAlreadyExists));
  auto read = repo_->ReadPartitionManifest("s", 1);
  ASSERT_OK(read);
  EXPECT_EQ(read->SerializeAsString(), winner->SerializeAsString());
  EXPECT_OK(repo_->VerifyPartition(*read));
  // Only the winner's per-attempt file is left (the loser's SST blob is
  // unreferenced: GC's business).
  std::vector<std::string> attempts;
  for (const auto& k : Keys("snapshots/s/partitions/00001/attempts/")) {
    attempts.push_back(k);
  }
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0], read->files(read->files_size() - 1).object_key());
}

TEST_P(RepositoryTest, FailedPublishLeavesNothingVisible) {
  EXPECT_FALSE(
      repo_->PublishPartition(Header("snap-1", 4), tmp_.Sub("missing")).ok());
  auto refuse = []() { return absl::FailedPreconditionError("deposed"); };
  EXPECT_THAT(repo_->PublishPartition(Header("snap-1", 4), src_, refuse),
              StatusIs(absl::StatusCode::kFailedPrecondition, "deposed"));
  EXPECT_THAT(repo_->ReadPartitionManifest("snap-1", 4),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_TRUE(Keys("snapshots/").empty());
  EXPECT_TRUE(Keys("locks/").empty());
}

TEST_P(RepositoryTest, RejectsUnsafeIdsAndManifestsThatPointOutside) {
  EXPECT_THAT(repo_->PublishPartition(Header("../escape", 1), src_),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_FALSE(stdfs::exists(tmp_.Sub("escape")));
  // A manifest naming a file "../x" is refused, not followed.
  auto m = repo_->PublishPartition(Header("s", 2), src_);
  ASSERT_OK(m);
  shutter::v1::PartitionManifest evil = *m;
  evil.mutable_files(0)->set_name("../../x");
  BlobStore::PutOptions plain;
  ASSERT_OK(store()->Put(Repository::PartitionManifestPath("s", 3),
                         EncodePartitionManifest([&] {
                           evil.set_partition_id(3);
                           return evil;
                         }()),
                         plain));
  EXPECT_THAT(repo_->ReadPartitionManifest("s", 3),
              StatusIs(absl::StatusCode::kDataLoss, "../../x"));
  EXPECT_THAT(repo_->DownloadPartition(evil, tmp_.Sub("d")),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_P(RepositoryTest, VerifyNamesTheCorruptFile) {
  auto m = repo_->PublishPartition(Header("snap-1", 5), src_);
  ASSERT_OK(m);
  BlobStore::PutOptions plain;
  ASSERT_OK(store()->Put(m->files(1).object_key(), "MANIFEST-000003\n", plain));
  EXPECT_THAT(repo_->VerifyPartition(*m),
              StatusIs(absl::StatusCode::kDataLoss,
                       "snapshots/snap-1/partitions/00005/CURRENT: sha256"));
  ASSERT_OK(store()->Delete(m->files(0).object_key()));
  EXPECT_THAT(repo_->VerifyPartition(*m),
              StatusIs(absl::StatusCode::kDataLoss, "000001.sst: missing"));
  EXPECT_THAT(repo_->DownloadPartition(*m, tmp_.Sub("d")),
              StatusIs(absl::StatusCode::kDataLoss));
}

TEST_P(RepositoryTest, ClusterManifestIsWrittenOnce) {
  shutter::v1::ClusterManifest cm;
  cm.set_snapshot_id("snap-1");
  cm.set_label("x");
  EXPECT_THAT(repo_->ReadClusterManifest("snap-1"),
              StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK(repo_->CommitClusterManifest(cm));
  cm.set_label("y");
  EXPECT_THAT(repo_->CommitClusterManifest(cm),
              StatusIs(absl::StatusCode::kAlreadyExists));
  auto back = repo_->ReadClusterManifest("snap-1");
  ASSERT_OK(back);
  EXPECT_EQ(back->label(), "x");
  EXPECT_EQ(back->format_version(), kManifestFormatVersion);
  EXPECT_THAT(repo_->DeleteUncommittedSnapshot("snap-1"),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_P(RepositoryTest, DeleteThenGcFreesOnlyWhatNoSnapshotUses) {
  PublishAndCommit("a", 0);
  PublishAndCommit("b", 0);  // shares the SST with a
  WriteFile(src_ + "/000002.sst", "only in c");
  PublishAndCommit("c", 0);
  auto stats = repo_->GetStats();
  ASSERT_OK(stats);
  EXPECT_EQ(stats->snapshots, 3u);
  EXPECT_EQ(stats->logical_bytes, 21u + 21u + 30u);
  EXPECT_EQ(stats->bytes_shared, 5u);  // "hello", in all three
  auto listing = repo_->ListSnapshots();
  ASSERT_OK(listing);
  ASSERT_EQ(listing->size(), 3u);
  EXPECT_TRUE((*listing)[0].committed);
  EXPECT_EQ((*listing)[0].partitions, 1u);

  ASSERT_OK(repo_->DeleteSnapshot("a"));
  ASSERT_OK(repo_->DeleteSnapshot("c"));
  ASSERT_OK(repo_->DeleteSnapshot("c"));  // idempotent
  EXPECT_THAT(repo_->ReadClusterManifest("a"),
              StatusIs(absl::StatusCode::kNotFound));
  GcOptions gc;
  gc.grace = absl::ZeroDuration();
  gc.dry_run = true;
  auto dry = repo_->CollectGarbage(gc);
  ASSERT_OK(dry);
  EXPECT_EQ(dry->objects_deleted, 1u);  // "only in c"
  EXPECT_EQ(dry->bytes_deleted, 9u);
  EXPECT_EQ(Keys("blobs/").size(), 2u);  // a dry run deletes nothing
  // Within the grace period nothing is collected.
  gc.dry_run = false;
  gc.grace = absl::Hours(1);
  auto young = repo_->CollectGarbage(gc);
  ASSERT_OK(young);
  EXPECT_EQ(young->objects_deleted, 0u);
  EXPECT_EQ(young->objects_too_young, 1u);
  gc.grace = absl::ZeroDuration();
  auto real = repo_->CollectGarbage(gc);
  ASSERT_OK(real);
  EXPECT_EQ(real->objects_deleted, 1u);
  EXPECT_EQ(Keys("blobs/").size(), 1u);
  auto b = repo_->ReadPartitionManifest("b", 0);
  ASSERT_OK(b);
  EXPECT_OK(repo_->VerifyPartition(*b));
  EXPECT_TRUE(Keys("locks/").empty());
}

TEST_P(RepositoryTest, GcAndPublishersExcludeEachOther) {
  // A publisher in flight (its lock) keeps GC from sweeping.
  BlobStore::PutOptions plain;
  ASSERT_OK(store()->Put("locks/publish/s.0.abc", "{}", plain));
  GcOptions gc;
  gc.grace = absl::ZeroDuration();
  gc.wait_for_publishes = absl::Milliseconds(300);
  EXPECT_THAT(repo_->CollectGarbage(gc),
              StatusIs(absl::StatusCode::kUnavailable, "still in flight"));
  EXPECT_TRUE(store()->Head("locks/gc").status().code() ==
              absl::StatusCode::kNotFound);
  ASSERT_OK(store()->Delete("locks/publish/s.0.abc"));
  // A GC sweeping makes publishers back off (ABORTED: retry later).
  ASSERT_OK(store()->Put("locks/gc", "someone\n", plain));
  EXPECT_THAT(repo_->PublishPartition(Header("s", 0), src_),
              StatusIs(absl::StatusCode::kAborted, "garbage-collected"));
  EXPECT_TRUE(Keys("locks/publish/").empty());
  EXPECT_THAT(repo_->CollectGarbage(gc),
              StatusIs(absl::StatusCode::kFailedPrecondition, "someone"));
  // The same owner (a resumed GC job) takes its lock over.
  gc.owner = "someone";
  ASSERT_OK(repo_->CollectGarbage(gc));
  EXPECT_TRUE(Keys("locks/").empty());
  ASSERT_OK(repo_->PublishPartition(Header("s", 0), src_));
}

// A publish lock whose attempt is known to be over (the caller says so) is
// removed instead of waited for; one the caller knows nothing of is still
// waited for. A publisher finding the GC lock says REPOSITORY_BUSY (the
// controller waits for it without spending an attempt). A restarted
// node's start removes only its own predecessors' locks.
TEST_P(RepositoryTest, DeadPublishLocksAreReleasedAndGcWaitIsNamed) {
  BlobStore::PutOptions plain;
  ASSERT_OK(store()->Put(
      "locks/publish/dead.0.a",
      "{\"node_id\": \"n1\", \"instance\": \"i1/3\", \"snapshot_id\": "
      "\"dead\", \"partition_id\": 7}\n",
      plain));
  GcOptions gc;
  gc.grace = absl::ZeroDuration();
  gc.wait_for_publishes = absl::Milliseconds(300);
  std::vector<PublishLock> seen;
  gc.publish_lock_dead = [&](const PublishLock& l) {
    seen.push_back(l);
    return l.snapshot_id == "dead";
  };
  auto report = repo_->CollectGarbage(gc);
  ASSERT_OK(report);
  EXPECT_EQ(report->publish_locks_released, 1u);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].node_id, "n1");
  EXPECT_EQ(seen[0].instance, "i1/3");
  EXPECT_EQ(seen[0].partition_id, 7u);
  EXPECT_TRUE(Keys("locks/").empty());
  // Not known to be over: waited for, as before.
  ASSERT_OK(store()->Put("locks/publish/live.0.b",
                         "{\"node_id\": \"n2\", \"instance\": \"i2/1\", "
                         "\"snapshot_id\": \"live\", \"partition_id\": 0}\n",
                         plain));
  EXPECT_THAT(repo_->CollectGarbage(gc),
              StatusIs(absl::StatusCode::kUnavailable, "still in flight"));
  // A node's restart: only locks of earlier starts of its own directory.
  ASSERT_OK(store()->Put(
      "locks/publish/x.1.c",
      "{\"node_id\": \"n2\", \"instance\": \"i2/0\", \"snapshot_id\": "
      "\"x\", \"partition_id\": 1}\n",
      plain));
  auto released = repo_->ReleasePublishLocks([](const PublishLock& l) {
    return l.node_id == "n2" && l.instance == "i2/0";
  });
  ASSERT_OK(released);
  EXPECT_EQ(*released, 1);
  EXPECT_EQ(Keys("locks/publish/"),
            std::vector<std::string>{"locks/publish/live.0.b"});
  ASSERT_OK(store()->Delete("locks/publish/live.0.b"));
  // The publisher's refusal while a GC holds the repository carries the
  // reason the controller waits on.
  ASSERT_OK(store()->Put("locks/gc", "someone\n", plain));
  auto refused = repo_->PublishPartition(Header("s", 0), src_);
  EXPECT_EQ(GetErrorReason(refused.status()), ErrorReason::kRepositoryBusy)
      << refused.status();
  ASSERT_OK(store()->Delete("locks/gc"));
}

// The sweep holds the GC lock for a bounded time: past max_sweep it stops,
// releases the lock (publishers go on) and says the rest is for next time.
TEST_P(RepositoryTest, GcSweepIsBoundedAndReleasesTheLock) {
  for (int i = 0; i < 4; ++i) {
    WriteFile(absl::StrFormat("%s/%06d.sst", src_, 20 + i),
              absl::StrCat("garbage ", i));
  }
  PublishAndCommit("doomed", 0);
  ASSERT_OK(repo_->DeleteSnapshot("doomed"));
  const size_t before = Keys("blobs/").size();
  ASSERT_GE(before, 4u);
  GcOptions gc;
  gc.grace = absl::ZeroDuration();
  gc.max_sweep = absl::ZeroDuration();
  auto report = repo_->CollectGarbage(gc);
  ASSERT_OK(report);
  EXPECT_TRUE(report->sweep_incomplete);
  EXPECT_EQ(report->objects_deleted, 0u);
  EXPECT_TRUE(Keys("locks/").empty());
  gc.max_sweep = absl::Minutes(5);
  report = repo_->CollectGarbage(gc);
  ASSERT_OK(report);
  EXPECT_FALSE(report->sweep_incomplete);
  EXPECT_GE(report->objects_deleted, before);
  EXPECT_TRUE(Keys("blobs/").empty());
}

// The safety property of GC, over random interleavings of publishes,
// commits, deletes and collections, with a publisher running concurrently
// with each collection: no object a committed snapshot references is ever
// deleted, and garbage does not pile up.
TEST_P(RepositoryTest, GcNeverDeletesWhatACommittedSnapshotReferences) {
  std::mt19937 rng(GetParam() == "s3" ? 11 : 7);
  // A pool of SSTs: snapshots pick random subsets, so they share objects.
  std::vector<std::string> pool;
  for (int i = 0; i < 12; ++i) pool.push_back(absl::StrCat("content-", i));
  std::set<std::string> committed;
  int next = 0;
  auto publish_random = [&](const std::string& id, int partition,
                            std::mt19937& r) -> absl::Status {
    std::string dir = tmp_.Sub(absl::StrCat("gen-", id, "-", partition));
    stdfs::create_directories(dir);
    for (size_t i = 0; i < pool.size(); ++i) {
      if (r() % 3 == 0) {
        WriteFile(absl::StrFormat("%s/%06d.sst", dir, i), pool[i]);
      }
    }
    WriteFile(dir + "/CURRENT", id);
    return repo_->PublishPartition(Header(id, partition), dir).status();
  };
  auto check_all = [&] {
    for (const std::string& id : committed) {
      for (int p = 0; p < 2; ++p) {
        auto m = repo_->ReadPartitionManifest(id, p);
        ASSERT_OK(m) << id;
        ASSERT_OK(repo_->VerifyPartition(*m)) << id;
      }
    }
  };
  for (int step = 0; step < 24; ++step) {
    const int op = rng() % 4;
    if (op <= 1 || committed.empty()) {
      const std::string id = absl::StrCat("snap", next++);
      ASSERT_OK(publish_random(id, 0, rng));
      ASSERT_OK(publish_random(id, 1, rng));
      if (rng() % 4 != 0) {  // some stay uncommitted, as if running
        shutter::v1::ClusterManifest cm;
        cm.set_snapshot_id(id);
        ASSERT_OK(repo_->CommitClusterManifest(cm));
        committed.insert(id);
      }
    } else if (op == 2) {
      auto it = committed.begin();
      std::advance(it, rng() % committed.size());
      ASSERT_OK(repo_->DeleteSnapshot(*it));
      committed.erase(it);
    } else {
      // GC with a publish racing it: whichever way they interleave, the
      // publish either completes (and its objects survive) or backs off.
      const std::string id = absl::StrCat("snap", next++);
      std::mt19937 r2(rng());
      absl::Status racing;
      std::thread t([&] {
        racing = publish_random(id, 0, r2);
        if (racing.ok()) racing = publish_random(id, 1, r2);
      });
      GcOptions gc;
      gc.grace = absl::ZeroDuration();
      auto report = repo_->CollectGarbage(gc);
      t.join();
      EXPECT_TRUE(report.ok() || absl::IsUnavailable(report.status()))
          << report.status();
      if (racing.ok()) {
        shutter::v1::ClusterManifest cm;
        cm.set_snapshot_id(id);
        ASSERT_OK(repo_->CommitClusterManifest(cm));
        committed.insert(id);
      } else {
        EXPECT_THAT(racing, StatusIs(absl::StatusCode::kAborted));
      }
    }
    check_all();
  }
  // Finally nothing but live objects remains after a full collection.
  GcOptions gc;
  gc.grace = absl::ZeroDuration();
  ASSERT_OK(repo_->CollectGarbage(gc));
  auto again = repo_->CollectGarbage(gc);
  ASSERT_OK(again);
  EXPECT_EQ(again->objects_deleted, 0u);
  check_all();
}

// GC killed (SIGKILL) in the middle of its sweep, then run again: what it
// left is only garbage, committed snapshots are intact, and the rerun (the
// same owner, as a resumed GC job) finishes the work.
TEST_P(RepositoryTest, GcKilledMidwayIsSafeAndARerunFinishes) {
  PublishAndCommit("keep", 0);
  for (int i = 0; i < 6; ++i) {
    WriteFile(absl::StrFormat("%s/%06d.sst", src_, 10 + i),
              absl::StrCat("garbage ", i));
  }
  PublishAndCommit("doomed", 0);
  for (int i = 0; i < 6; ++i) {
    stdfs::remove(absl::StrFormat("%s/%06d.sst", src_, 10 + i));
  }
  ASSERT_OK(repo_->DeleteSnapshot("doomed"));
  ASSERT_EQ(Keys("blobs/").size(), 7u);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto repo = OpenRepository(uri_, options_);
    if (!repo.ok()) _exit(3);
    GcOptions gc;
    gc.grace = absl::ZeroDuration();
    gc.owner = "gc-job-1";
    gc.test_after_delete = [](uint64_t n) {
      if (n == 3) kill(getpid(), SIGKILL);
    };
    (void)(*repo)->CollectGarbage(gc);
    _exit(4);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  EXPECT_EQ(Keys("blobs/").size(), 4u);
  auto keep = repo_->ReadPartitionManifest("keep", 0);
  ASSERT_OK(keep);
  EXPECT_OK(repo_->VerifyPartition(*keep));
  // The dead GC's lock holds off other collectors and publishers...
  GcOptions other;
  other.grace = absl::ZeroDuration();
  EXPECT_THAT(repo_->CollectGarbage(other),
              StatusIs(absl::StatusCode::kFailedPrecondition, "gc-job-1"));
  // ...until its job resumes and finishes.
  GcOptions resumed = other;
  resumed.owner = "gc-job-1";
  auto report = repo_->CollectGarbage(resumed);
  ASSERT_OK(report);
  EXPECT_EQ(Keys("blobs/").size(), 1u);
  EXPECT_OK(repo_->VerifyPartition(*keep));
  EXPECT_TRUE(Keys("locks/").empty());
}

TEST_P(RepositoryTest, Format1RepositoriesAreReadAndUpgradedInPlace) {
  // A format 1 repository as the previous release wrote it: identity, files
  // next to a format 1 manifest, no format marker.
  testing::TempDir old;
  BlobStore::PutOptions plain;
  repo_.reset();
  std::string uri = uri_ + "-v1";
  {
    auto r = OpenRepository(uri, options_);
    ASSERT_OK(r);
    BlobStore* s = (*r)->blob_store();
    ASSERT_OK(s->Delete("REPOSITORY_FORMAT"));
    const std::string dir = Repository::PartitionDir("old", 0);
    ASSERT_OK(s->Put(dir + "/000001.sst", "hello", plain));
    shutter::v1::PartitionManifest m = Header("old", 0);
    m.set_format_version(1);
    auto* f = m.add_files();
    f->set_name("000001.sst");
    f->set_size_bytes(5);
    f->set_sha256(kHelloSha);
    m.set_total_bytes(5);
    ASSERT_OK(
        s->Put(dir + "/MANIFEST.json", EncodePartitionManifest(m), plain));
  }
  auto r = OpenRepository(uri, options_);
  ASSERT_OK(r);
  EXPECT_EQ(*(*r)->blob_store()->Get("REPOSITORY_FORMAT"), "2\n");
  auto m = (*r)->ReadPartitionManifest("old", 0);
  ASSERT_OK(m);
  EXPECT_EQ(m->files(0).object_key(),
            "snapshots/old/partitions/00000/000001.sst");
  EXPECT_OK((*r)->VerifyPartition(*m));
  GcOptions gc;
  gc.grace = absl::ZeroDuration();
  ASSERT_OK((*r)->CollectGarbage(gc));
  EXPECT_OK((*r)->VerifyPartition(*m));  // format 1 files are live too
  // A newer format is refused with a message saying what to do.
  ASSERT_OK((*r)->blob_store()->Put("REPOSITORY_FORMAT", "3\n", plain));
  EXPECT_THAT(OpenRepository(uri, options_),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "format 3; this build reads formats 1 to 2: upgrade"));
}

INSTANTIATE_TEST_SUITE_P(Stores, RepositoryTest, ::testing::Values("fs", "s3"),
                         [](const auto& info) { return info.param; });

// A store that overwrites where it should refuse (as some S3-compatible
// servers do with If-None-Match) is refused at open, before any commit.
class IgnoresConditionsStore : public BlobStore {
 public:
  static std::unique_ptr<BlobStore> Open(const std::string& root) {
    auto fs = FsBlobStore::Open(root, true);
    EXPECT_OK(fs);
    return std::make_unique<IgnoresConditionsStore>(std::move(fs).value());
  }
  explicit IgnoresConditionsStore(std::unique_ptr<BlobStore> inner)
      : inner_(std::move(inner)) {}
  absl::StatusOr<PutResult> PutFile(const std::string& key,
                                    const std::string& path,
                                    const PutOptions& options) override {
    PutOptions o = options;
    o.if_absent = false;
    return inner_->PutFile(key, path, o);
  }
  absl::Status Put(const std::string& key, absl::string_view data,
                   const PutOptions& options) override {
    PutOptions o = options;
    o.if_absent = false;
    return inner_->Put(key, data, o);
  }
  absl::Status Read(const std::string& key, uint64_t offset, uint64_t length,
                    const std::function<absl::Status(absl::string_view)>& sink)
      const override {
    return inner_->Read(key, offset, length, sink);
  }
  absl::StatusOr<BlobInfo> Head(const std::string& key) const override {
    return inner_->Head(key);
  }
  absl::StatusOr<std::vector<BlobInfo>> List(
      const std::string& prefix) const override {
    return inner_->List(prefix);
  }
  absl::Status Delete(const std::string& key) override {
    return inner_->Delete(key);
  }
  std::string Describe() const override { return inner_->Describe(); }

 protected:
  BlobStore* Inner() { return inner_.get(); }

 private:
  std::unique_ptr<BlobStore> inner_;
};

// A directory store that also reports incomplete multipart uploads, as an
// S3 bucket would after a publisher was killed mid-upload.
class UploadsStore : public IgnoresConditionsStore {
 public:
  explicit UploadsStore(std::unique_ptr<BlobStore> inner)
      : IgnoresConditionsStore(std::move(inner)) {}
  absl::StatusOr<PutResult> PutFile(const std::string& key,
                                    const std::string& path,
                                    const PutOptions& options) override {
    return IgnoresConditionsStore::Inner()->PutFile(key, path, options);
  }
  absl::Status Put(const std::string& key, absl::string_view data,
                   const PutOptions& options) override {
    return IgnoresConditionsStore::Inner()->Put(key, data, options);
  }
  absl::StatusOr<std::vector<IncompleteUpload>> ListIncompleteUploads(
      const std::string& prefix) const override {
    return uploads;
  }
  absl::Status AbortIncompleteUpload(const IncompleteUpload& u) override {
    aborted.push_back(u.upload_id);
    uploads.erase(std::remove_if(uploads.begin(), uploads.end(),
                                 [&](const IncompleteUpload& x) {
                                   return x.upload_id == u.upload_id;
                                 }),
                  uploads.end());
    return absl::OkStatus();
  }
  std::vector<IncompleteUpload> uploads;
  std::vector<std::string> aborted;
};

TEST(OpenRepositoryTest, GcAbortsOnlyIncompleteUploadsOlderThanTheGrace) {
  testing::TempDir tmp;
  auto fs = FsBlobStore::Open(tmp.Sub("r"), true);
  ASSERT_OK(fs);
  auto owned = std::make_unique<UploadsStore>(std::move(fs).value());
  UploadsStore* store = owned.get();
  const std::string blob = "blobs/sha256/ab/ab" + std::string(62, '0');
  store->uploads = {{blob, "old", absl::Now() - absl::Hours(2)},
                    {blob, "young", absl::Now() - absl::Minutes(5)}};
  auto repo = OpenRepositoryOn(std::move(owned));
  ASSERT_OK(repo);
  auto stats = (*repo)->GetStats();
  ASSERT_OK(stats);
  EXPECT_EQ(stats->incomplete_uploads, 2u);
  GcOptions dry;
  dry.dry_run = true;
  auto report = (*repo)->CollectGarbage(dry);  // grace 1 h
  ASSERT_OK(report);
  EXPECT_EQ(report->uploads_aborted, 1u);  // would abort
  EXPECT_TRUE(store->aborted.empty());
  GcOptions gc;
  report = (*repo)->CollectGarbage(gc);
  ASSERT_OK(report);
  EXPECT_EQ(report->uploads_aborted, 1u);
  EXPECT_EQ(report->uploads_too_young, 1u);
  EXPECT_EQ(store->aborted, std::vector<std::string>{"old"});
  EXPECT_EQ((*repo)->GetStats()->incomplete_uploads, 1u);
}

TEST(OpenRepositoryTest, StoresThatIgnoreConditionalWritesAreRefused) {
  testing::TempDir tmp;
  EXPECT_THAT(OpenRepositoryOn(IgnoresConditionsStore::Open(tmp.Sub("r"))),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "ignores conditional writes"));
  // Refused before anything was written to it: no REPOSITORY_FORMAT, no
  // identity, no probe left behind.
  auto raw = FsBlobStore::Open(tmp.Sub("r"), false);
  ASSERT_OK(raw);
  auto left = (*raw)->List("");
  ASSERT_OK(left);
  EXPECT_TRUE(left->empty()) << (*left)[0].key;
  auto ok = OpenRepositoryOn(*FsBlobStore::Open(tmp.Sub("ok"), true));
  ASSERT_OK(ok);
  EXPECT_TRUE((*ok)->blob_store()->List("locks/")->empty());  // probe gone
}

TEST(OpenRepositoryTest, AcceptsPathsFileAndS3UrisAndRejectsTheRest) {
  testing::TempDir tmp;
  ASSERT_OK(OpenRepository(tmp.Sub("a")));
  ASSERT_OK(OpenRepository("file://" + tmp.Sub("b")));
  EXPECT_THAT(
      OpenRepository("gs://bucket/x"),
      StatusIs(absl::StatusCode::kInvalidArgument, "unsupported scheme"));
  EXPECT_THAT(OpenRepository("file://relative"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  RepositoryOptions o;
  o.s3_credentials_file = tmp.Sub("none");
  EXPECT_THAT(OpenRepository("s3://Bad_Bucket/x", o),
              StatusIs(absl::StatusCode::kInvalidArgument, "bucket name"));
  EXPECT_THAT(OpenRepository("s3://bucket/a/../b", o),
              StatusIs(absl::StatusCode::kInvalidArgument, "prefix"));
  EXPECT_THAT(OpenRepository("s3://bucket/x", o),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "credentials file " + tmp.Sub("none")));
}

// Many threads putting and deleting keys in the same directories: every
// delete succeeds (even when another one removed the emptied directory),
// every put lands, nothing is left.
TEST_P(RepositoryTest, ConcurrentPutsAndDeletesInOneDirectory) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) {
        const std::string key = absl::StrFormat("locks/publish/t%d-%d", t, i);
        if (!store()->Put(key, "x", {}).ok()) ++failures;
        if (!store()->Delete(key).ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_TRUE(Keys("locks/").empty());
}

// Listings longer than a page follow S3's continuation tokens.
TEST(S3BlobStoreTest, ListingsFollowContinuationTokens) {
  testing::TempDir tmp;
  auto server = testing::S3TestServer::Start(tmp.Sub("s3"));
  SHUTTER_S3_OR_SKIP(server);
  auto uri = (*server)->NewRepositoryUri("p");
  ASSERT_OK(uri);
  auto config = S3ConfigFromUri(*uri, (*server)->Options());
  ASSERT_OK(config);
  config->list_page_size = 3;
  auto store = S3BlobStore::Open(*config);
  ASSERT_OK(store);
  std::vector<std::string> want;
  for (int i = 0; i < 10; ++i) {
    want.push_back(absl::StrFormat("k/%02d", i));
    ASSERT_OK((*store)->Put(want.back(), "v", {}));
  }
  ASSERT_OK((*store)->Put("other", "v", {}));
  auto got = (*store)->List("k/");
  ASSERT_OK(got);
  std::vector<std::string> keys;
  for (const auto& o : *got) keys.push_back(o.key);
  EXPECT_EQ(keys, want);
  EXPECT_GE((*store)->counters().requests, 4u + 11u);
}

// Nothing listens: the client retries (with backoff) and then reports
// UNAVAILABLE naming the endpoint, within its attempt budget.
TEST(S3BlobStoreTest, UnreachableEndpointIsUnavailableAfterRetries) {
  S3Config c;
  c.bucket = "bucket";
  c.endpoint = "http://127.0.0.1:1";
  c.credentials = {"k", "s", ""};
  c.max_attempts = 3;
  c.base_backoff = absl::Milliseconds(1);
  auto store = S3BlobStore::OpenUnchecked(c);
  absl::Time start = absl::Now();
  EXPECT_THAT(store->Head("x"),
              StatusIs(absl::StatusCode::kUnavailable, "127.0.0.1:1"));
  EXPECT_EQ(store->counters().retries, 2u);
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
}

}  // namespace
}  // namespace shutter::snapshot
