// shutterctl controllers: list (the controller group, its leader, etcd).
#include <iostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/common.h"
#include "cli/table.h"
#include "common/text.h"

namespace shutter::cli {
namespace {

using namespace shutter::v1;  // NOLINT

std::string RoleName(ControllerRole r) {
  switch (r) {
    case CONTROLLER_ROLE_LEADER:
      return "leader";
    case CONTROLLER_ROLE_FOLLOWER:
      return "follower";
    default:
      return "-";
  }
}

int ControllersList(const Global& g) {
  Client c(g);
  ListControllersResponse resp;
  grpc::Status s = c.Call(&AdminService::Stub::ListControllers,
                          ListControllersRequest(), &resp);
  if (!s.ok()) return FailRpc(s, "list controllers");
  if (g.output == "json") {
    std::cout << Json(resp);
    return 0;
  }
  std::cout << "Job store: " << EscapeForTerminal(resp.job_store())
            << "  (answered by " << EscapeForTerminal(resp.answered_by())
            << ")\n";
  Table t({"ID", "ADDRESS", "ROLE", "TERM", "LEASE LEFT", "VERSION", "STARTED",
           "CONSOLE"});
  for (const auto& ctl : resp.controllers()) {
    t.Add(
        {EscapeForTerminal(ctl.id()), EscapeForTerminal(ctl.address()),
         RoleName(ctl.role()),
         ctl.role() == CONTROLLER_ROLE_LEADER ? absl::StrCat(ctl.term()) : "-",
         ctl.lease_left_ms() < 0
             ? "-"
             : absl::StrFormat("%.1fs", ctl.lease_left_ms() / 1000.0),
         EscapeForTerminal(ctl.version()),
         HumanTime(ctl.started_unix_ms() * 1000),
         ctl.console_url().empty() ? "-"
                                   : EscapeForTerminal(ctl.console_url())});
  }
  std::cout << t.Render();
  if (resp.etcd_size() > 0) {
    Table e({"ETCD ENDPOINT", "HEALTH", "ETCD LEADER", "VERSION", "DB SIZE",
             "ERROR"});
    for (const auto& h : resp.etcd()) {
      e.Add({EscapeForTerminal(h.endpoint()),
             h.healthy() ? "healthy" : "UNHEALTHY",
             h.is_etcd_leader() ? "yes" : "-",
             h.version().empty() ? "-" : EscapeForTerminal(h.version()),
             h.db_size_bytes() > 0 ? HumanBytes(h.db_size_bytes()) : "-",
             h.error().empty() ? "-" : EscapeForTerminal(h.error())});
    }
    std::cout << "\n" << e.Render();
  }
  return 0;
}

}  // namespace

void AddControllersCommands(CLI::App& app, Commands& cmds) {
  Global& g = cmds.g;
  int& rc = cmds.rc;
  auto* ctl = app.add_subcommand("controllers", "The controller group")
                  ->require_subcommand(1);
  ctl->add_subcommand("list",
                      "Every controller, its role and term, and etcd's health")
      ->callback([&] { rc = ControllersList(g); });
}

}  // namespace shutter::cli
