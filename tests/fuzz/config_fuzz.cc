// libFuzzer target: the daemons' TOML config files (CLI11's parser plus our
// validation). Whatever the file holds, parsing ends in options or an
// INVALID_ARGUMENT, never a crash or an escaped exception.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "controller/controller_options.h"
#include "node/node_options.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = [] {
    char tmpl[] = "/tmp/shutter-config-fuzz-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd >= 0) close(fd);
    return std::string(tmpl);
  }();
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  bool help = false;
  std::string help_text;
  const char* node_argv[] = {"shutter-node", "--config", path.c_str()};
  auto n = shutter::node::ParseNodeOptions(3, node_argv, &help, &help_text);
  if (!n.ok() && n.status().code() != absl::StatusCode::kInvalidArgument) {
    std::abort();
  }
  const char* ctl_argv[] = {"shutter-controller", "--config", path.c_str()};
  auto c = shutter::controller::ParseControllerOptions(3, ctl_argv, &help,
                                                       &help_text);
  if (!c.ok() && c.status().code() != absl::StatusCode::kInvalidArgument) {
    std::abort();
  }
  return 0;
}
