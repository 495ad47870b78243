#include "snapshot/s3_xml.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace shutter::snapshot::s3xml {

absl::string_view Field(absl::string_view xml, absl::string_view tag,
                        size_t from, size_t* end) {
  const std::string open = absl::StrCat("<", tag, ">");
  const std::string close = absl::StrCat("</", tag, ">");
  if (from > xml.size()) return {};
  size_t a = xml.find(open, from);
  if (a == absl::string_view::npos) return {};
  a += open.size();
  size_t b = xml.find(close, a);
  if (b == absl::string_view::npos) return {};
  if (end != nullptr) *end = b + close.size();
  return xml.substr(a, b - a);
}

std::string Unescape(absl::string_view s) {
  return absl::StrReplaceAll(s, {{"&amp;", "&"},
                                 {"&lt;", "<"},
                                 {"&gt;", ">"},
                                 {"&quot;", "\""},
                                 {"&apos;", "'"}});
}

ListPage ParseListObjectsV2(absl::string_view xml, size_t strip,
                            absl::Time now) {
  ListPage page;
  size_t pos = 0;
  for (;;) {
    size_t end = 0;
    absl::string_view item = Field(xml, "Contents", pos, &end);
    if (end == 0) break;  // no further element (an empty one still counts)
    pos = end;
    std::string key = Unescape(Field(item, "Key"));
    if (key.empty() || key.size() < strip) continue;
    BlobInfo info;
    info.key = key.substr(strip);
    if (info.key.empty()) continue;
    if (!absl::SimpleAtoi(Field(item, "Size"), &info.size)) continue;
    std::string err;
    if (!absl::ParseTime("%Y-%m-%dT%H:%M:%E*SZ",
                         std::string(Field(item, "LastModified")),
                         &info.modified, &err)) {
      info.modified = now;
    }
    page.objects.push_back(std::move(info));
  }
  page.truncated = Field(xml, "IsTruncated") == "true";
  page.next_token = Unescape(Field(xml, "NextContinuationToken"));
  return page;
}

UploadsPage ParseListMultipartUploads(absl::string_view xml, size_t strip,
                                      absl::Time now) {
  UploadsPage page;
  size_t pos = 0;
  for (;;) {
    size_t end = 0;
    absl::string_view item = Field(xml, "Upload", pos, &end);
    if (end == 0) break;
    pos = end;
    std::string key = Unescape(Field(item, "Key"));
    IncompleteUpload u;
    u.upload_id = Unescape(Field(item, "UploadId"));
    if (key.size() <= strip || u.upload_id.empty()) continue;
    u.key = key.substr(strip);
    std::string err;
    if (!absl::ParseTime("%Y-%m-%dT%H:%M:%E*SZ",
                         std::string(Field(item, "Initiated")), &u.initiated,
                         &err)) {
      u.initiated = now;
    }
    page.uploads.push_back(std::move(u));
  }
  page.truncated = Field(xml, "IsTruncated") == "true";
  page.next_key_marker = Unescape(Field(xml, "NextKeyMarker"));
  page.next_upload_id_marker = Unescape(Field(xml, "NextUploadIdMarker"));
  return page;
}

Error ParseError(absl::string_view xml) {
  return Error{Unescape(Field(xml, "Code")), Unescape(Field(xml, "Message"))};
}

}  // namespace shutter::snapshot::s3xml
