#ifndef SHUTTER_SNAPSHOT_S3_XML_H_
#define SHUTTER_SNAPSHOT_S3_XML_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "snapshot/blob_store.h"

// The few S3 XML answers Shutter reads, parsed by plain string search
// (S3's answers are flat and machine-written; no XML library needed).
// These parse outside input: they never crash or read out of bounds on
// any bytes (fuzzed by tests/fuzz/s3_xml_fuzz.cc), and what they cannot
// parse they leave out.
namespace shutter::snapshot::s3xml {

// The text of the first <tag>...</tag> at or after `from` (empty if none);
// `*end`, if set, receives the offset just past the closing tag.
absl::string_view Field(absl::string_view xml, absl::string_view tag,
                        size_t from = 0, size_t* end = nullptr);

// Decodes the five predefined entities (&amp; &lt; &gt; &quot; &apos;).
std::string Unescape(absl::string_view s);

// One page of ListObjectsV2. Keys shorter than `strip` bytes are dropped;
// the others lose their first `strip` bytes (the repository prefix).
// Entries without a parsable size are dropped; an unparsable LastModified
// becomes `now` (treated as new, so never garbage-collected early).
struct ListPage {
  std::vector<BlobInfo> objects;
  bool truncated = false;
  std::string next_token;
};
ListPage ParseListObjectsV2(absl::string_view xml, size_t strip,
                            absl::Time now);

// One page of ListMultipartUploads: uploads started and neither completed
// nor aborted. Keys are stripped as for ListPage; an unparsable Initiated
// becomes `now` (treated as young, so never aborted early).
struct UploadsPage {
  std::vector<IncompleteUpload> uploads;
  bool truncated = false;
  std::string next_key_marker;
  std::string next_upload_id_marker;
};
UploadsPage ParseListMultipartUploads(absl::string_view xml, size_t strip,
                                      absl::Time now);

// "Code: Message" of an <Error> answer (either part may be empty).
struct Error {
  std::string code;
  std::string message;
};
Error ParseError(absl::string_view xml);

}  // namespace shutter::snapshot::s3xml

#endif  // SHUTTER_SNAPSHOT_S3_XML_H_
