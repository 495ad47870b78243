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

TEST(ManifestTest, RejectsGarbageWrongTypesAndOtherVersions) {
  EXPECT_THAT(DecodePartitionManifest("{not json"),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(DecodePartitionManifest(R"({"format_version": "two"})"),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(
      DecodeClusterManifest(R"({"format_version": 2, "partitions": 7})"),
      StatusIs(absl::StatusCode::kDataLoss));
  // A foreign JSON file has no known format_version.
  EXPECT_THAT(DecodePartitionManifest(R"({"name": "not a manifest"})"),
              StatusIs(absl::StatusCode::kFailedPrecondition));
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

// What a later release adds to a manifest (top level or nested, any JSON
// type) is ignored by this one; what it knows reads as before.
TEST(ManifestTest, FieldsOfALaterReleaseAreIgnored) {
  const shutter::v1::PartitionManifest m = Sample();
  std::string json = EncodePartitionManifest(m);
  json.erase(json.find_last_of('}'));
  json += R"(, "added_later": {"a": [1, "x", null]}, "also_later": "s"})";
  const std::string file_key = "\"sha256\"";
  const size_t at = json.find(file_key);
  ASSERT_NE(at, std::string::npos) << json;
  json.insert(at, R"("per_file_later": true, )");
  auto back = DecodePartitionManifest(json);
  ASSERT_OK(back);
  EXPECT_EQ(back->SerializeAsString(), m.SerializeAsString());

  shutter::v1::ClusterManifest c;
  c.set_format_version(kManifestFormatVersion);
  c.set_snapshot_id("s1");
  auto* p = c.add_partitions();
  p->set_partition_id(3);
  p->set_manifest_sha256(std::string(64, 'a'));
  std::string cj = EncodeClusterManifest(c);
  cj.erase(cj.find_last_of('}'));
  cj += R"(, "retention_class_later": "gold"})";
  auto cback = DecodeClusterManifest(cj);
  ASSERT_OK(cback);
  EXPECT_EQ(cback->SerializeAsString(), c.SerializeAsString());
}

}  // namespace
}  // namespace shutter::snapshot
