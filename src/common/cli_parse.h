#ifndef SHUTTER_COMMON_CLI_PARSE_H_
#define SHUTTER_COMMON_CLI_PARSE_H_

#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"

namespace shutter {

// Runs CLI11 over argv and turns its exceptions into a status: OK (with
// *help set when --help was asked and the text in *help_text), or
// INVALID_ARGUMENT with CLI11's one-line reason, which names the option.
// Include only from option-parsing .cc files: CLI11 is a large header.
inline absl::Status ParseCli(CLI::App& app, int argc, const char* const* argv,
                             bool* help, std::string* help_text) {
  *help = false;
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    *help = true;
    *help_text = app.help();
  } catch (const CLI::CallForAllHelp&) {
    *help = true;
    *help_text = app.help("", CLI::AppFormatMode::All);
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(e.what());
  }
  return absl::OkStatus();
}

}  // namespace shutter

#endif  // SHUTTER_COMMON_CLI_PARSE_H_
