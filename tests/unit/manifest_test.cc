#include "snapshot/manifest.h"

#include <array>
#include <limits>
#include <string>
#include <vector>

#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
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

// Every ASCII byte is escaped by the fast encoder exactly as protobuf's
// printer escapes it.
TEST(ManifestTest, AsciiIsEscapedExactlyAsTheProtobufPrinterDoes) {
  for (int c = 0; c < 0x80; ++c) {
    SCOPED_TRACE(c);
    shutter::v1::MissingPartition m;
    m.set_partition_id(static_cast<uint32_t>(c));
    m.set_reason(std::string("a") + static_cast<char>(c) + "b");
    std::string fast;
    ASSERT_TRUE(internal::EncodeManifestFast(m, &fast));
    EXPECT_EQ(fast, internal::PrintManifestJson(m));
  }
}

const std::vector<std::string>& TrickyStrings() {
  static const auto* v = new std::vector<std::string>{
      "",
      "snapshots/20261205T170000.000Z-1a2b3c4d/partitions/00042/MANIFEST.json",
      "quote\" and back\\slash",
      "<tag> & 'single' / = ?",
      "\t\n\r\b\f",
      std::string("nul\0inside", 11),
      "\x7f\x1f\x01",
      std::string(64, 'f'),
  };
  return *v;
}

// Sets every field of `m` by reflection: repeated fields get `variant % 3`
// elements (0, 1 or 2... as 0, 1, 3), integers their extremes, strings
// the tricky ones. Fails on a field type the fast encoder does not write.
void FillEveryField(google::protobuf::Message* m, int variant) {
  using FD = google::protobuf::FieldDescriptor;
  const google::protobuf::Descriptor* d = m->GetDescriptor();
  const google::protobuf::Reflection* r = m->GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const FD* f = d->field(i);
    const int n =
        !f->is_repeated() ? 1 : std::array<int, 3>{0, 1, 3}[variant % 3];
    for (int j = 0; j < n; ++j) {
      const int k = variant + i + j;
      const bool rep = f->is_repeated();
      switch (f->cpp_type()) {
        case FD::CPPTYPE_INT32: {
          const int32_t v = k % 2 ? std::numeric_limits<int32_t>::min() : k;
          rep ? r->AddInt32(m, f, v) : r->SetInt32(m, f, v);
          break;
        }
        case FD::CPPTYPE_UINT32: {
          const uint32_t v = k % 2 ? std::numeric_limits<uint32_t>::max() : k;
          rep ? r->AddUInt32(m, f, v) : r->SetUInt32(m, f, v);
          break;
        }
        case FD::CPPTYPE_INT64: {
          const int64_t v = k % 2 ? std::numeric_limits<int64_t>::min() : -k;
          rep ? r->AddInt64(m, f, v) : r->SetInt64(m, f, v);
          break;
        }
        case FD::CPPTYPE_UINT64: {
          const uint64_t v = k % 2 ? std::numeric_limits<uint64_t>::max() : k;
          rep ? r->AddUInt64(m, f, v) : r->SetUInt64(m, f, v);
          break;
        }
        case FD::CPPTYPE_BOOL:
          rep ? r->AddBool(m, f, k % 2) : r->SetBool(m, f, k % 2);
          break;
        case FD::CPPTYPE_STRING: {
          const std::string& v = TrickyStrings()[k % TrickyStrings().size()];
          rep ? r->AddString(m, f, v) : r->SetString(m, f, v);
          break;
        }
        case FD::CPPTYPE_MESSAGE:
          ASSERT_TRUE(rep) << f->full_name()
                           << ": a singular message field, which the fast "
                              "encoder leaves to the printer";
          FillEveryField(r->AddMessage(m, f), k + 1);
          break;
        default:
          FAIL() << f->full_name()
                 << ": a field type the fast encoder leaves to the printer; "
                    "teach AppendValue (manifest.cc) to write it";
      }
    }
  }
}

// The manifests as the fast encoder writes them, with every field set in
// several ways, are byte for byte what protobuf's printer writes; and
// the fast path is taken (a new field of a type it does not write fails
// FillEveryField).
TEST(ManifestTest, TheFastEncoderWritesWhatTheProtobufPrinterWrites) {
  for (int variant = 0; variant < 9; ++variant) {
    SCOPED_TRACE(variant);
    shutter::v1::ClusterManifest c;
    FillEveryField(&c, variant);
    std::string fast;
    ASSERT_TRUE(internal::EncodeManifestFast(c, &fast));
    EXPECT_EQ(fast, internal::PrintManifestJson(c));
    EXPECT_EQ(EncodeClusterManifest(c), fast);

    shutter::v1::PartitionManifest p;
    FillEveryField(&p, variant);
    ASSERT_TRUE(internal::EncodeManifestFast(p, &fast));
    EXPECT_EQ(fast, internal::PrintManifestJson(p));
    EXPECT_EQ(EncodePartitionManifest(p), fast);
  }
  // All defaults: zeros, empty strings, empty lists.
  std::string fast;
  ASSERT_TRUE(
      internal::EncodeManifestFast(shutter::v1::ClusterManifest(), &fast));
  EXPECT_EQ(fast, internal::PrintManifestJson(shutter::v1::ClusterManifest()));
}

// A string with a byte outside ASCII (an operator's label, a node's error
// message) is left to protobuf's printer, whose escaping of non-ASCII
// code points and handling of invalid UTF-8 the fast path does not copy.
TEST(ManifestTest, NonAsciiIsLeftToTheProtobufPrinter) {
  for (const std::string label :
       {"caf\xc3\xa9", "\xe2\x80\xa8", "\xef\xbb\xbf", "\xf0\x9f\x98\x80"}) {
    shutter::v1::ClusterManifest c;
    c.set_format_version(kManifestFormatVersion);
    c.set_label(label);
    c.add_partitions()->set_partition_id(1);
    std::string fast;
    EXPECT_FALSE(internal::EncodeManifestFast(c, &fast));
    const std::string json = EncodeClusterManifest(c);
    EXPECT_EQ(json, internal::PrintManifestJson(c));
    auto back = DecodeClusterManifest(json);
    ASSERT_OK(back);
    EXPECT_EQ(back->label(), label);
  }
}

}  // namespace
}  // namespace shutter::snapshot
