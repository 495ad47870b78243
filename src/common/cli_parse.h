#ifndef SHUTTER_COMMON_CLI_PARSE_H_
#define SHUTTER_COMMON_CLI_PARSE_H_

#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "common/s3_flags.h"
#include "common/security.h"

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

// TLS flags of a daemon (see common/security.h; checked with
// CheckDaemonTls in main).
inline void AddDaemonTlsFlags(CLI::App& app, TlsOptions* t) {
  app.add_option("--tls-cert", t->cert,
                 "PEM certificate (chain) this daemon presents");
  app.add_option("--tls-key", t->key, "PEM private key of --tls-cert");
  app.add_option("--tls-ca", t->ca,
                 "PEM CA bundle peers' certificates must chain to");
  app.add_option("--tls-reload-seconds", t->reload_seconds,
                 "How often the TLS files are checked for rotation")
      ->capture_default_str()
      ->check(CLI::Range(1, 86400));
  app.add_flag("--insecure", t->insecure,
               "Plaintext gRPC, no authentication or authorization (local "
               "demos and tests only)");
}

inline void AddS3Flags(CLI::App& app, S3Flags* f) {
  app.add_option("--s3-endpoint", f->endpoint,
                 "For s3:// repositories: endpoint URL, e.g. "
                 "http://127.0.0.1:9000 (default: AWS_ENDPOINT_URL, else AWS)");
  app.add_option("--s3-region", f->region,
                 "For s3:// repositories: region (default: AWS_REGION, "
                 "AWS_DEFAULT_REGION, us-east-1)");
  app.add_option("--s3-credentials-file", f->credentials_file,
                 "For s3:// repositories: AWS-style credentials file "
                 "(default: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, then "
                 "~/.aws/credentials)");
  app.add_option("--s3-addressing", f->addressing,
                 "For s3:// repositories: path (endpoint/bucket/key), virtual "
                 "(bucket.endpoint/key), or auto (path with --s3-endpoint)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "path", "virtual"}));
}

}  // namespace shutter

#endif  // SHUTTER_COMMON_CLI_PARSE_H_
