#ifndef SHUTTER_COMMON_TEXT_H_
#define SHUTTER_COMMON_TEXT_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

// Handling of untrusted text: user- or peer-supplied strings that end up in
// error messages, log lines and terminal tables. Thread-safe (no state).
namespace shutter {

// How much of an untrusted string an error message or log line repeats.
inline constexpr size_t kMaxEchoBytes = 64;

// Renders untrusted input for a message or a log line: in double quotes,
// at most `max_bytes` bytes of it, with '"', '\\', control characters and
// bytes >= 0x80 escaped (\n, \t, \x1b, ...), so it can neither forge a log
// line nor drive a terminal; a longer input ends in "..." and states its
// full size. Example: Quote("a\nb") == "\"a\\nb\"".
std::string Quote(absl::string_view s, size_t max_bytes = kMaxEchoBytes);

// Like Quote() without the quotes, for table cells: keeps valid UTF-8
// (non-ASCII text prints as itself) and escapes control characters and
// invalid bytes. No length cap.
std::string EscapeForTerminal(absl::string_view s);

// True if `s` is well-formed UTF-8 (no overlongs, surrogates or code
// points above U+10FFFF).
bool IsValidUtf8(absl::string_view s);

// OK if `s` is one line of printable UTF-8 text: valid UTF-8 without
// control characters (U+0000-U+001F, U+007F-U+009F). Otherwise
// INVALID_ARGUMENT naming `what`, the offending byte and its offset.
absl::Status CheckPrintableText(absl::string_view what, absl::string_view s);

// "CODE: message" for a status, as task errors and logs show it.
std::string StatusText(const absl::Status& s);

// A validated "host:port" ("[v6addr]:port" for IPv6): non-empty host, port
// a decimal number in 0..65535.
struct HostPort {
  std::string host;
  int port = 0;
};

// Parses `value` given for `flag` (e.g. "--listen"). INVALID_ARGUMENT naming
// the flag for anything else, including ports over 65535 (gRPC would take
// them modulo 65536). Port 0 is refused unless `allow_port_zero`.
absl::StatusOr<HostPort> ParseHostPort(absl::string_view flag,
                                       absl::string_view value,
                                       bool allow_port_zero);

// Parses a duration such as "90s", "30m", "36h", "1h30m" (Abseil's
// syntax) or "7d" (days). INVALID_ARGUMENT naming `flag` for anything
// else, or a negative duration.
absl::StatusOr<absl::Duration> ParseDurationFlag(absl::string_view flag,
                                                 absl::string_view text);

}  // namespace shutter

#endif  // SHUTTER_COMMON_TEXT_H_
