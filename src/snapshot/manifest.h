#ifndef SHUTTER_SNAPSHOT_MANIFEST_H_
#define SHUTTER_SNAPSHOT_MANIFEST_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "shutter/v1/common.pb.h"

// JSON encoding of the manifests stored in the repository. The JSON follows
// the protobuf JSON mapping of shutter.v1.PartitionManifest and
// shutter.v1.ClusterManifest with the .proto field names (snake_case);
// 64-bit integers are strings, as that mapping prescribes.
//
// Compatibility: a reader ignores fields it does not know, so a field added
// by a later release does not stop an earlier one from reading the
// manifest (a node bootstrapping from a snapshot a newer controller took).
// A change an earlier reader must not ignore raises format_version
// instead, and a version outside this build's range is refused. A file
// that is not JSON, or whose known fields have the wrong types, is
// DATA_LOSS; one without a known format_version (a foreign file) is
// refused; corrupt bytes of a stored manifest are caught by its SHA-256,
// which the cluster manifest records.
namespace shutter::snapshot {

// Written: 2. Read: 1 and 2 (format 1 partition manifests have no
// FileEntry.object_key; the repository fills it in).
inline constexpr uint32_t kManifestFormatVersion = 2;
inline constexpr uint32_t kOldestManifestFormatVersion = 1;

std::string EncodePartitionManifest(const shutter::v1::PartitionManifest& m);
absl::StatusOr<shutter::v1::PartitionManifest> DecodePartitionManifest(
    absl::string_view json);

std::string EncodeClusterManifest(const shutter::v1::ClusterManifest& m);
absl::StatusOr<shutter::v1::ClusterManifest> DecodeClusterManifest(
    absl::string_view json);

namespace internal {
// Encoding writes the JSON itself, byte for byte what protobuf's JSON
// printer writes with the options above, for the field types the
// manifests use, and falls back to the printer for anything else (a field
// type it does not write, a string with a byte outside ASCII). The
// printer writes ~50 MB of JSON a second here (0.7 s for a
// 100,000-partition cluster manifest, on the commit's path); this, about
// 0.1x of its time for a cluster manifest (manifest_encode_bench).
//
// True and `*out` set if the fast path wrote `m` (exposed for tests).
bool EncodeManifestFast(const google::protobuf::Message& m, std::string* out);
// protobuf's printer with the manifests' options (for tests and the
// benchmark).
std::string PrintManifestJson(const google::protobuf::Message& m);
}  // namespace internal

}  // namespace shutter::snapshot

#endif  // SHUTTER_SNAPSHOT_MANIFEST_H_
