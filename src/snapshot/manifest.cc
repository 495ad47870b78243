#include "snapshot/manifest.h"

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/util/json_util.h"

namespace shutter::snapshot {
namespace {

// protobuf's JSON printer, with the options every manifest is written
// with.
std::string PrintJson(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.always_print_primitive_fields = true;
  o.preserve_proto_field_names = true;
  std::string out;
  // Printing a well-formed message cannot fail.
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

// Appends `s` as a JSON string escaped exactly as protobuf's printer
// escapes ASCII (checked byte by byte in manifest_test); false at the
// first byte outside ASCII, whose escaping (some code points are, most
// are not; invalid UTF-8 is dropped) is left to the printer.
bool AppendAsciiString(absl::string_view s, std::string* out) {
  out->push_back('"');
  size_t run = 0;  // start of the bytes not yet appended that need no escape
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) return false;
    if (c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' &&
        c != 0x7f) {
      continue;
    }
    out->append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default: {  // other control bytes, '<', '>', DEL
        static constexpr char kHex[] = "0123456789abcdef";
        const char escaped[] = {'\\', 'u',          '0',
                                '0',  kHex[c >> 4], kHex[c & 0xf]};
        out->append(escaped, sizeof(escaped));
      }
    }
  }
  out->append(s.data() + run, s.size() - run);
  out->push_back('"');
  return true;
}

bool AppendObject(const google::protobuf::Message& m, int depth,
                  std::string* out);

// Appends one value of field `f` of `m` (element `index` of a repeated
// field; -1 for a singular one); `depth` is the indentation of the line
// the value starts on.
bool AppendValue(const google::protobuf::Message& m,
                 const google::protobuf::FieldDescriptor* f, int index,
                 int depth, std::string* out) {
  using FD = google::protobuf::FieldDescriptor;
  const google::protobuf::Reflection* r = m.GetReflection();
  const bool rep = index >= 0;
  switch (f->cpp_type()) {
    case FD::CPPTYPE_INT32:
      absl::StrAppend(
          out, rep ? r->GetRepeatedInt32(m, f, index) : r->GetInt32(m, f));
      return true;
    case FD::CPPTYPE_UINT32:
      absl::StrAppend(
          out, rep ? r->GetRepeatedUInt32(m, f, index) : r->GetUInt32(m, f));
      return true;
    case FD::CPPTYPE_INT64:  // 64-bit integers are strings in proto3 JSON
      absl::StrAppend(
          out, "\"", rep ? r->GetRepeatedInt64(m, f, index) : r->GetInt64(m, f),
          "\"");
      return true;
    case FD::CPPTYPE_UINT64:
      absl::StrAppend(
          out, "\"",
          rep ? r->GetRepeatedUInt64(m, f, index) : r->GetUInt64(m, f), "\"");
      return true;
    case FD::CPPTYPE_BOOL:
      out->append((rep ? r->GetRepeatedBool(m, f, index) : r->GetBool(m, f))
                      ? "true"
                      : "false");
      return true;
    case FD::CPPTYPE_STRING: {
      if (f->type() == FD::TYPE_BYTES) return false;  // base64: the printer's
      std::string scratch;
      const std::string& v =
          rep ? r->GetRepeatedStringReference(m, f, index, &scratch)
              : r->GetStringReference(m, f, &scratch);
      return AppendAsciiString(v, out);
    }
    case FD::CPPTYPE_MESSAGE:
      if (!rep) return false;  // presence rules: the printer's
      return AppendObject(r->GetRepeatedMessage(m, f, index), depth, out);
    default:  // enums, floating point: the printer's
      return false;
  }
}

// Appends `m` as an object whose lines are indented `depth` spaces (its
// fields one more), as protobuf's printer does with add_whitespace and
// always_print_primitive_fields: every field in declaration order, empty
// repeated fields as []. False for what it does not write the same way:
// maps, oneofs and fields with presence (singular messages, proto3
// optional), the value types AppendValue refuses, a message without
// fields.
bool AppendObject(const google::protobuf::Message& m, int depth,
                  std::string* out) {
  const google::protobuf::Descriptor* d = m.GetDescriptor();
  const google::protobuf::Reflection* r = m.GetReflection();
  if (d->field_count() == 0) return false;
  out->push_back('{');
  for (int i = 0; i < d->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* f = d->field(i);
    if (f->is_map() || f->real_containing_oneof() != nullptr ||
        (!f->is_repeated() && f->has_presence())) {
      return false;
    }
    out->append(i == 0 ? "\n" : ",\n");
    out->append(depth + 1, ' ');
    absl::StrAppend(out, "\"", f->name(), "\": ");
    if (!f->is_repeated()) {
      if (!AppendValue(m, f, -1, depth + 1, out)) return false;
      continue;
    }
    const int n = r->FieldSize(m, f);
    if (n == 0) {
      out->append("[]");
      continue;
    }
    out->push_back('[');
    for (int j = 0; j < n; ++j) {
      out->append(j == 0 ? "\n" : ",\n");
      out->append(depth + 2, ' ');
      if (!AppendValue(m, f, j, depth + 2, out)) return false;
    }
    out->push_back('\n');
    out->append(depth + 1, ' ');
    out->push_back(']');
  }
  out->push_back('\n');
  out->append(depth, ' ');
  out->push_back('}');
  return true;
}

std::string Encode(const google::protobuf::Message& m) {
  std::string out;
  if (internal::EncodeManifestFast(m, &out)) return out;
  return PrintJson(m);
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

namespace internal {

bool EncodeManifestFast(const google::protobuf::Message& m, std::string* out) {
  out->clear();
  // The JSON of a manifest is about twice its binary size: reserved at
  // once, a 33 MB cluster manifest is not copied and faulted in again at
  // every doubling.
  out->reserve(2 * m.ByteSizeLong() + 4096);
  if (!AppendObject(m, 0, out)) return false;
  out->push_back('\n');
  return true;
}

std::string PrintManifestJson(const google::protobuf::Message& m) {
  return PrintJson(m);
}

}  // namespace internal

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
