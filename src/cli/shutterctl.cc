// shutterctl: the operator CLI over the controller's admin API.
//
// Exit codes: 0 success; 1 the operation failed (RPC error, snapshot
// FAILED or CANCELLED); 2 bad usage; 3 snapshot PARTIAL (with --wait); 4
// --wait gave up after --wait-timeout (the job goes on). Errors are one
// line on stderr: "shutterctl: <reason>".
//
// This file holds the global flags and the parsing; each noun's commands
// are in a file of its own (nodes.cc, partitions.cc, snapshots.cc,
// restores.cc, repository.cc, schedules.cc, data.cc) over one client and
// output layer (common.h, jobs.h).
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/common.h"
#include "common/rpc.h"
#include "common/security.h"
#include "common/text.h"

namespace shutter::cli {
namespace {

int Main(int argc, char** argv) {
  SilenceGrpcLogs();
  Global g;
  if (const char* env = std::getenv("SHUTTER_CONTROLLER"); env && *env) {
    g.controller = env;
  }
  CLI::App app{"shutterctl: operate a Shutter cluster"};
  app.require_subcommand(1);
  // The global options below are understood after the command as well
  // ("shutterctl snapshots list -o json"): the commands, which inherit
  // this, hand the options they do not know up to their parent.
  app.fallthrough();
  // Inherited by every command, whose own help lists only its options.
  app.footer(
      "Global options (--controller, -o/--output, --timeout-ms, "
      "--wait-timeout, --tls-ca, --tls-cert, --tls-key, --token-file, "
      "--insecure) go before or after the command; shutterctl --help "
      "describes them. Exit codes: 0 done, 1 failed, 2 bad usage, 3 "
      "PARTIAL, 4 --wait gave up (the job goes on).");
  app.add_option("--controller", g.controller,
                 "Controller host:port, or host:port,host:port,... of a "
                 "controller group (the leader is found; env "
                 "SHUTTER_CONTROLLER)")
      ->capture_default_str();
  app.add_option("-o,--output", g.output, "table or json")
      ->capture_default_str()
      ->check(CLI::IsMember({"table", "json"}));
  app.add_option("--timeout-ms", g.timeout_ms, "Deadline of each call")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600000));
  app.add_option("--wait-timeout", g.wait_timeout_s,
                 "With --wait: stop waiting after this many seconds, exit 4 "
                 "(the job goes on; 0: wait for its end)")
      ->capture_default_str()
      ->check(CLI::Range(0, 30 * 24 * 3600));
  for (auto [var, field] :
       {std::pair<const char*, std::string*>{"SHUTTER_TLS_CA", &g.tls.ca},
        {"SHUTTER_TLS_CERT", &g.tls.cert},
        {"SHUTTER_TLS_KEY", &g.tls.key},
        {"SHUTTER_TOKEN_FILE", &g.token_file}}) {
    if (const char* env = std::getenv(var); env && *env) *field = env;
  }
  app.add_option("--tls-ca", g.tls.ca,
                 "CA bundle of the controller's certificate: use TLS (env "
                 "SHUTTER_TLS_CA)");
  app.add_option("--tls-cert", g.tls.cert,
                 "Client certificate, for mutual TLS (env SHUTTER_TLS_CERT)");
  app.add_option("--tls-key", g.tls.key,
                 "Key of --tls-cert (env SHUTTER_TLS_KEY)");
  app.add_option("--token-file", g.token_file,
                 "File with the admin API bearer token (env "
                 "SHUTTER_TOKEN_FILE)");
  app.add_flag("--insecure", g.tls.insecure,
               "Plaintext even if a CA is set in the environment");
  app.parse_complete_callback([&] {
    if (absl::Status s = CheckClientTls(g.tls); !s.ok()) {
      throw CLI::ValidationError(std::string(s.message()));
    }
    if (!g.token_file.empty()) {
      auto t = ReadTokenFile(g.token_file);
      if (!t.ok())
        throw CLI::ValidationError(std::string(t.status().message()));
      g.token = *std::move(t);
    }
    g_tls_used = !g.tls.insecure && !g.tls.ca.empty();
    SetTransportSecurity(nullptr, MakeChannelCredentials(g.tls), nullptr);
  });

  int rc = 0;
  Commands cmds{g, rc, {}};
  AddNodesCommands(app, cmds);
  AddPartitionsCommands(app, cmds);
  AddSnapshotsCommands(app, cmds);
  AddRestoresCommands(app, cmds);
  AddVerifiesCommands(app, cmds);
  AddGcsCommands(app, cmds);
  AddDeletesCommands(app, cmds);
  AddRepositoryCommands(app, cmds);
  AddSchedulesCommands(app, cmds);
  AddDataCommands(app, cmds);
  AddControllersCommands(app, cmds);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::RequiredError& e) {
    // "A subcommand is required": say which word was not understood, and
    // what would have been.
    CLI::App* at = &app;
    std::string path = "shutterctl";
    for (;;) {
      auto parsed = at->get_subcommands();
      if (parsed.empty()) break;
      at = parsed.front();
      path += " " + at->get_name();
    }
    std::vector<std::string> choices;
    for (const CLI::App* sub : at->get_subcommands({})) {
      choices.push_back(sub->get_name());
    }
    // (The word the command did not take fell through to a parent.)
    const std::vector<std::string> rest = app.remaining(/*recurse=*/true);
    if (choices.empty()) return Fail(e.what(), 2);
    if (!rest.empty()) {
      return Fail(absl::StrCat("unknown command ", Quote(rest.front()),
                               " for \"", path, "\" (expected one of: ",
                               absl::StrJoin(choices, ", "), ")"),
                  2);
    }
    return Fail(absl::StrCat("\"", path, "\" needs a command: ",
                             absl::StrJoin(choices, ", ")),
                2);
  } catch (const CLI::ParseError& e) {
    std::string msg = e.what();
    if (msg.empty()) msg = "bad usage (see --help)";
    return Fail(msg, 2);
  }
  return rc;
}

}  // namespace
}  // namespace shutter::cli

int main(int argc, char** argv) { return shutter::cli::Main(argc, argv); }
