#include "snapshot/manifest.h"

#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace shutter::snapshot {
namespace {

using ::shutter::testing::StatusIs;

shutter::v1::PartitionManifest Sample() {
  shutter::v1::PartitionManifest m;
  m.set_format_version(kManifestFormatVersion);
  m.set_snapshot_id("20261127T094634.123Z-1a2b3c4d");
  m.set_partition_id(7);
  m.set_node_id("n1");
  m.set_leader_epoch(3);
  m.set_applied_index(18446744073709551615ull);  // max uint64 survives JSON
  m.set_created_at_micros(1'800'000'000'000'000);
  auto* f = m.add_files();
  f->set_name("000012.sst");
  f->set_size_bytes(4096);
  f->set_sha256(std::string(64, 'a'));
  m.set_total_bytes(4096);
  return m;
}

TEST(ManifestTest, PartitionManifestRoundTrips) {
  auto m = Sample();
  std::string json = EncodePartitionManifest(m);
  EXPECT_NE(json.find("\"applied_index\": \"18446744073709551615\""),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"snapshot_id\""), std::string::npos);
  auto back = DecodePartitionManifest(json);
  ASSERT_OK(back);
  EXPECT_EQ(back->SerializeAsString(), m.SerializeAsString());
}

TEST(ManifestTest, ClusterManifestRoundTrips) {
  shutter::v1::ClusterManifest m;
  m.set_format_version(kManifestFormatVersion);
  m.set_snapshot_id("s1");
  m.set_label("nightly");
  auto* p = m.add_partitions();
  p->set_partition_id(0);
  p->set_manifest_path("snapshots/s1/partitions/00000/MANIFEST.json");
  auto back = DecodeClusterManifest(EncodeClusterManifest(m));
  ASSERT_OK(back);
  EXPECT_EQ(back->SerializeAsString(), m.SerializeAsString());
}

TEST(ManifestTest, RejectsGarbageUnknownFieldsAndOtherVersions) {
  EXPECT_THAT(DecodePartitionManifest("{not json"),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(DecodePartitionManifest(R"({"format_version": 1, "bogus": 2})"),
              StatusIs(absl::StatusCode::kDataLoss));
  auto m = Sample();
  m.set_format_version(3);
  EXPECT_THAT(DecodePartitionManifest(EncodePartitionManifest(m)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "format_version 3; this build reads versions 1 to 2 "
                       "(written by a newer Shutter: upgrade this one)"));
  m.set_format_version(0);
  EXPECT_THAT(DecodePartitionManifest(EncodePartitionManifest(m)),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  m.set_format_version(1);  // format 1 is still read
  EXPECT_OK(DecodePartitionManifest(EncodePartitionManifest(m)));
}

}  // namespace
}  // namespace shutter::snapshot
