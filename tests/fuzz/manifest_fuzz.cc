// libFuzzer target: the repository's JSON manifests, which a node or
// controller reads from storage anyone with bucket access can write.
// Decoding must never crash; what decodes must encode and decode again to
// the same message.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "snapshot/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view in(reinterpret_cast<const char*>(data), size);
  auto pm = shutter::snapshot::DecodePartitionManifest(in);
  if (pm.ok()) {
    auto again = shutter::snapshot::DecodePartitionManifest(
        shutter::snapshot::EncodePartitionManifest(*pm));
    if (!again.ok() || again->SerializeAsString() != pm->SerializeAsString()) {
      std::abort();
    }
  }
  auto cm = shutter::snapshot::DecodeClusterManifest(in);
  if (cm.ok()) {
    auto again = shutter::snapshot::DecodeClusterManifest(
        shutter::snapshot::EncodeClusterManifest(*cm));
    if (!again.ok() || again->SerializeAsString() != cm->SerializeAsString()) {
      std::abort();
    }
  }
  return 0;
}
