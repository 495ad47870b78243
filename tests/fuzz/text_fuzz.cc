// libFuzzer target: the small parsers and checks every surface applies to
// operator input: partition ranges ("0,3,5-9"), ids, labels, durations,
// host:port, quoting and terminal escaping.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>

#include "common/ids.h"
#include "common/text.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view in(reinterpret_cast<const char*>(data), size);
  auto ids = shutter::ParseIdList(in);
  if (ids.ok()) {
    // Sorted? Not promised; but never more ids than the syntax allows.
    std::set<uint32_t> unique(ids->begin(), ids->end());
    if (unique.size() != ids->size()) std::abort();
  }
  (void)shutter::CheckSafeId("id", in);
  if (shutter::IsSafePathComponent(in) &&
      (in.empty() || in[0] == '.' || in.find('/') != absl::string_view::npos)) {
    std::abort();
  }
  (void)shutter::CheckPrintableText("label", in);
  (void)shutter::ParseDurationFlag("--d", in);
  (void)shutter::ParseHostPort("--listen", in, true);
  const std::string quoted = shutter::Quote(in);
  const std::string escaped = shutter::EscapeForTerminal(in);
  for (char c : escaped) {
    if (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t') {
      std::abort();  // no raw control characters reach a terminal
    }
  }
  (void)quoted;
  (void)shutter::IsValidUtf8(in);
  return 0;
}
