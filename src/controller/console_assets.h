#ifndef SHUTTER_CONTROLLER_CONSOLE_ASSETS_H_
#define SHUTTER_CONTROLLER_CONSOLE_ASSETS_H_

#include <cstddef>

#include "absl/strings/string_view.h"

namespace shutter::controller {

// A file of the console's front end (src/controller/console/), compiled
// into the binary (cmake/EmbedFiles.cmake): nothing is fetched at run time.
struct ConsoleAsset {
  const char* name;          // e.g. "console.js"
  const char* content_type;  // e.g. "text/javascript; charset=utf-8"
  const char* data;
  size_t size;
};

// The asset called `name`, or nullptr.
const ConsoleAsset* FindConsoleAsset(absl::string_view name);

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_CONSOLE_ASSETS_H_
