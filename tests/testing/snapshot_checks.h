#ifndef SHUTTER_TESTS_TESTING_SNAPSHOT_CHECKS_H_
#define SHUTTER_TESTS_TESTING_SNAPSHOT_CHECKS_H_

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "partition/partition_store.h"
#include "snapshot/fs_repository.h"
#include "testing/status_matchers.h"

namespace shutter::testing {

// A published partition, as read back from the repository.
struct PublishedPartition {
  shutter::v1::PartitionManifest manifest;
  // Null if any check below failed.
  std::unique_ptr<partition::ReadOnlyPartition> checkpoint;
};

// Checks one published partition: its manifest reads, every file has the
// size and SHA-256 the manifest names, and the checkpoint opens read-only
// with the manifest's applied index and leader epoch. Failures are
// reported as gtest failures; the checkpoint is returned open for further
// checks (keys, values).
inline PublishedPartition CheckPublishedPartition(
    const snapshot::FsRepository& repo, const std::string& snapshot_id,
    uint32_t partition_id) {
  PublishedPartition out;
  auto pm = repo.ReadPartitionManifest(snapshot_id, partition_id);
  EXPECT_OK(pm);
  if (!pm.ok()) return out;
  out.manifest = *pm;
  EXPECT_OK(repo.VerifyPartition(*pm));
  auto ro = partition::ReadOnlyPartition::Open(
      repo.Abs(snapshot::Repository::PartitionDir(snapshot_id, partition_id)));
  EXPECT_OK(ro);
  if (!ro.ok()) return out;
  EXPECT_EQ((*ro)->meta().applied_index, pm->applied_index());
  EXPECT_EQ((*ro)->meta().leader_epoch, pm->leader_epoch());
  out.checkpoint = std::move(ro).value();
  return out;
}

}  // namespace shutter::testing

#endif  // SHUTTER_TESTS_TESTING_SNAPSHOT_CHECKS_H_
