#ifndef SHUTTER_TESTS_TESTING_SNAPSHOT_CHECKS_H_
#define SHUTTER_TESTS_TESTING_SNAPSHOT_CHECKS_H_

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "partition/partition_store.h"
#include "snapshot/blob_store.h"
#include "snapshot/repository.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace shutter::testing {

// A published partition, as read back from the repository.
struct PublishedPartition {
  shutter::v1::PartitionManifest manifest;
  // Where the checkpoint was downloaded to (removed with this object).
  std::unique_ptr<TempDir> dir;
  // Null if any check below failed.
  std::unique_ptr<partition::ReadOnlyPartition> checkpoint;
};

// Checks one published partition: its manifest reads, every file has the
// size and SHA-256 the manifest names, it downloads (from any repository:
// directory or S3) into a fresh directory, and the checkpoint opens
// read-only
// with the manifest's applied index and leader epoch. Failures are
// reported as gtest failures; the checkpoint is returned open for further
// checks (keys, values).
inline PublishedPartition CheckPublishedPartition(
    const snapshot::Repository& repo, const std::string& snapshot_id,
    uint32_t partition_id) {
  PublishedPartition out;
  auto pm = repo.ReadPartitionManifest(snapshot_id, partition_id);
  EXPECT_OK(pm);
  if (!pm.ok()) return out;
  out.manifest = *pm;
  EXPECT_OK(repo.VerifyPartition(*pm));
  out.dir = std::make_unique<TempDir>();
  const std::string local = out.dir->Sub("checkpoint");
  EXPECT_OK(repo.DownloadPartition(*pm, local));
  auto ro = partition::ReadOnlyPartition::Open(local);
  EXPECT_OK(ro);
  if (!ro.ok()) return out;
  EXPECT_EQ((*ro)->meta().applied_index, pm->applied_index());
  EXPECT_EQ((*ro)->meta().leader_epoch, pm->leader_epoch());
  out.checkpoint = std::move(ro).value();
  return out;
}

// Keys of every object under "snapshots/<snapshot_id>/" (all snapshots if
// `snapshot_id` is empty). Fails the test if the listing fails.
inline std::vector<std::string> SnapshotObjects(
    const snapshot::Repository& repo, const std::string& snapshot_id = "") {
  std::vector<std::string> keys;
  auto objects = repo.blob_store()->List(
      snapshot_id.empty() ? "snapshots/" : "snapshots/" + snapshot_id + "/");
  EXPECT_OK(objects);
  if (!objects.ok()) return keys;
  for (const auto& o : *objects) keys.push_back(o.key);
  return keys;
}

// Objects of a snapshot that are neither manifests nor referenced by one of
// its partition manifests: debris of failed or abandoned publishes.
inline std::vector<std::string> UnreferencedSnapshotObjects(
    const snapshot::Repository& repo, const std::string& snapshot_id) {
  std::set<std::string> referenced;
  std::vector<std::string> keys = SnapshotObjects(repo, snapshot_id);
  for (const std::string& k : keys) {
    if (k.find("/attempts/") != std::string::npos || k.size() < 14 ||
        k.substr(k.size() - 14) != "/MANIFEST.json") {
      continue;
    }
    const size_t p = k.find("/partitions/");
    if (p == std::string::npos) continue;
    auto m = repo.ReadPartitionManifest(
        snapshot_id, static_cast<uint32_t>(std::stoul(k.substr(p + 12, 5))));
    EXPECT_OK(m);
    if (!m.ok()) continue;
    for (const auto& f : m->files()) referenced.insert(f.object_key());
  }
  std::vector<std::string> out;
  for (const std::string& k : keys) {
    const bool manifest = k.find("/attempts/") == std::string::npos &&
                          (k.find("MANIFEST.json") != std::string::npos);
    if (!manifest && referenced.count(k) == 0) out.push_back(k);
  }
  return out;
}

}  // namespace shutter::testing

#endif  // SHUTTER_TESTS_TESTING_SNAPSHOT_CHECKS_H_
