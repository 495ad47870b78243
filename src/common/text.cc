#include "common/text.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace shutter {

namespace {

// Length of the valid UTF-8 sequence starting at s[i], or 0 if invalid.
size_t Utf8SequenceLength(absl::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  return n;
}

// Code point of a valid sequence of length n at s[i].
uint32_t CodePoint(absl::string_view s, size_t i, size_t n) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  if (n == 1) return b(i);
  uint32_t cp = b(i) & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (b(i + k) & 0x3F);
  return cp;
}

bool IsControl(uint32_t cp) { return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F); }

void AppendEscapedByte(unsigned char c, std::string* out) {
  switch (c) {
    case '\n':
      out->append("\\n");
      break;
    case '\r':
      out->append("\\r");
      break;
    case '\t':
      out->append("\\t");
      break;
    default:
      absl::StrAppendFormat(out, "\\x%02x", c);
  }
}

}  // namespace

std::string Quote(absl::string_view s, size_t max_bytes) {
  std::string out = "\"";
  const absl::string_view shown = s.substr(0, max_bytes);
  for (unsigned char c : shown) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20 || c >= 0x7F) {
      AppendEscapedByte(c, &out);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
  if (shown.size() < s.size()) {
    absl::StrAppend(&out, "... (", s.size(), " bytes)");
  }
  return out;
}

std::string EscapeForTerminal(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t n = Utf8SequenceLength(s, i);
    if (n == 0) {
      AppendEscapedByte(static_cast<unsigned char>(s[i]), &out);
      ++i;
      continue;
    }
    uint32_t cp = CodePoint(s, i, n);
    if (IsControl(cp)) {
      if (n == 1) {
        AppendEscapedByte(static_cast<unsigned char>(s[i]), &out);
      } else {
        absl::StrAppendFormat(&out, "\\u%04x", cp);
      }
    } else {
      out.append(s.data() + i, n);
    }
    i += n;
  }
  return out;
}

bool IsValidUtf8(absl::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = Utf8SequenceLength(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

absl::Status CheckPrintableText(absl::string_view what, absl::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = Utf8SequenceLength(s, i);
    if (n == 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s is not valid UTF-8 (byte 0x%02x at offset %d)",
                          what, static_cast<unsigned char>(s[i]), i));
    }
    uint32_t cp = CodePoint(s, i, n);
    if (IsControl(cp)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s contains a control character (U+%04X at offset %d); it must "
          "be one line of printable text",
          what, cp, i));
    }
    i += n;
  }
  return absl::OkStatus();
}

std::string StatusText(const absl::Status& s) {
  return absl::StrCat(absl::StatusCodeToString(s.code()), ": ", s.message());
}

absl::StatusOr<HostPort> ParseHostPort(absl::string_view flag,
                                       absl::string_view value,
                                       bool allow_port_zero) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", Quote(value), " ", why));
  };
  size_t colon = value.rfind(':');
  if (colon == absl::string_view::npos) {
    return bad("is not host:port");
  }
  absl::string_view host = value.substr(0, colon);
  absl::string_view port = value.substr(colon + 1);
  if (host.empty()) return bad("has no host (e.g. 127.0.0.1:7000)");
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') {
      return bad("has a malformed IPv6 host (expected [addr]:port)");
    }
  } else if (host.find(':') != absl::string_view::npos) {
    return bad("has an IPv6 host without brackets (expected [addr]:port)");
  }
  for (char c : host) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c)) ||
        absl::ascii_iscntrl(static_cast<unsigned char>(c))) {
      return bad("has white space or control characters in its host");
    }
  }
  if (port.empty() || port.size() > 5) {
    return bad("needs a port from 0 to 65535");
  }
  for (char c : port) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      return bad("needs a port from 0 to 65535");
    }
  }
  int p = 0;
  if (!absl::SimpleAtoi(port, &p) || p < 0 || p > 65535) {
    return bad("needs a port from 0 to 65535");
  }
  if (p == 0 && !allow_port_zero) {
    return bad("needs a non-zero port");
  }
  return HostPort{std::string(host), p};
}

absl::StatusOr<absl::Duration> ParseDurationFlag(absl::string_view flag,
                                                 absl::string_view text) {
  absl::Duration d;
  bool ok = false;
  if (!text.empty() && text.back() == 'd') {
    int64_t days = 0;
    ok = absl::SimpleAtoi(text.substr(0, text.size() - 1), &days) &&
         days >= 0 && days < 1000000;
    // Only a checked count is multiplied (SimpleAtoi leaves the clamped
    // value behind when it fails: found by text_fuzz).
    if (ok) d = absl::Hours(24 * days);
  } else {
    ok = absl::ParseDuration(text, &d) && d != absl::InfiniteDuration();
  }
  if (!ok || d < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", Quote(text),
                     " is not a duration (e.g. 90s, 30m, 36h, 7d)"));
  }
  return d;
}

}  // namespace shutter
