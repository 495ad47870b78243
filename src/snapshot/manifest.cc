#include "snapshot/manifest.h"

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"

namespace shutter::snapshot {
namespace {

std::string Encode(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.always_print_primitive_fields = true;
  o.preserve_proto_field_names = true;
  std::string out;
  // Printing a well-formed message cannot fail.
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

template <typename T>
absl::StatusOr<T> Decode(absl::string_view json, const char* what) {
  T m;
  google::protobuf::util::JsonParseOptions o;
  o.ignore_unknown_fields = true;  // see the header: later releases add fields
  auto s = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &m, o);
  if (!s.ok()) {
    return absl::DataLossError(
        absl::StrCat("malformed ", what, ": ", s.message().ToString()));
  }
  if (m.format_version() < kOldestManifestFormatVersion ||
      m.format_version() > kManifestFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, " has format_version ", m.format_version(),
        "; this build reads versions ", kOldestManifestFormatVersion, " to ",
        kManifestFormatVersion,
        m.format_version() > kManifestFormatVersion
            ? " (written by a newer Shutter: upgrade this one)"
            : ""));
  }
  return m;
}

}  // namespace

std::string EncodePartitionManifest(const shutter::v1::PartitionManifest& m) {
  return Encode(m);
}

absl::StatusOr<shutter::v1::PartitionManifest> DecodePartitionManifest(
    absl::string_view json) {
  return Decode<shutter::v1::PartitionManifest>(json, "partition manifest");
}

std::string EncodeClusterManifest(const shutter::v1::ClusterManifest& m) {
  return Encode(m);
}

absl::StatusOr<shutter::v1::ClusterManifest> DecodeClusterManifest(
    absl::string_view json) {
  return Decode<shutter::v1::ClusterManifest>(json, "cluster manifest");
}

}  // namespace shutter::snapshot
