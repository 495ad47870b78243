// shutterctl nodes: list, remove, set-limit.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cli/common.h"
#include "cli/jobs.h"
#include "cli/table.h"
#include "common/ids.h"
#include "common/text.h"
#include "controller/job_states.h"

namespace shutter::cli {
namespace {

using namespace shutter::v1;  // NOLINT
using controller::StateName;

std::string LimitCell(const NodeInfo& n) {
  if (n.effective_limit() == 0) return "-";
  return n.pinned_limit() > 0 ? absl::StrCat(n.effective_limit(), " pinned")
                              : absl::StrCat(n.effective_limit());
}

int NodesList(const Global& g) {
  Client c(g);
  ListNodesResponse resp;
  grpc::Status s =
      c.Call(&AdminService::Stub::ListNodes, ListNodesRequest(), &resp);
  if (!s.ok()) return FailRpc(s, "list nodes");
  if (g.output == "json") {
    std::cout << Json(resp);
    return 0;
  }
  Table t({"NODE", "ADDRESS", "STATE", "LAST SEEN", "CAPACITY", "LIMIT",
           "IN FLIGHT", "QUEUED", "HOSTED", "LEADS", "CPU", "DISK", "WRITE P99",
           "INCARNATION", "LIMIT REASON"});
  for (const auto& n : resp.nodes()) {
    t.Add({n.node_id(), EscapeForTerminal(n.address()),
           n.alive() ? "alive" : "DEAD",
           absl::StrFormat("%.1fs ago", n.millis_since_heartbeat() / 1000.0),
           absl::StrCat(n.checkpoint_capacity()), LimitCell(n),
           n.checkpoints_sent_ahead() > 0
               ? absl::StrCat(n.checkpoints_in_flight(), " (",
                              n.checkpoints_sent_ahead(), " ahead)")
               : absl::StrCat(n.checkpoints_in_flight()),
           absl::StrCat(n.checkpoints_queued()),
           absl::StrCat(n.partitions_hosted()),
           absl::StrCat(n.partitions_led()),
           n.has_load() ? Percent(n.load().cpu_busy()) : "-",
           n.has_load() ? Percent(n.load().disk_busy()) : "-",
           n.has_load() && n.load().foreground_writes() > 0
               ? absl::StrFormat(
                     "%.1fms", n.load().foreground_write_p99_micros() / 1000.0)
               : "-",
           absl::StrCat(n.instance_id().substr(0, 8), " #", n.start_count()),
           EscapeForTerminal(n.limit_reason())});
  }
  std::cout << t.Render();
  return 0;
}

int NodesSetLimit(const Global& g, const std::string& node_id,
                  const std::string& limit) {
  SetNodeLimitRequest req;
  req.set_node_id(node_id);
  uint32_t n = 0;
  if (limit != "auto") {
    if (!absl::SimpleAtoi(limit, &n) || n == 0) {
      std::cerr << "shutterctl: limit must be a number >= 1 or 'auto', not '"
                << EscapeForTerminal(limit) << "'\n";
      return 2;
    }
  }
  req.set_limit(n);
  Client c(g);
  SetNodeLimitResponse resp;
  grpc::Status s = c.Call(&AdminService::Stub::SetNodeLimit, req, &resp);
  if (!s.ok()) return FailRpc(s, "set node limit");
  if (g.output == "json") {
    std::cout << Json(resp);
  } else {
    std::cout << "node " << node_id << ": limit "
              << resp.node().effective_limit() << " of capacity "
              << resp.node().checkpoint_capacity() << " ("
              << resp.node().limit_reason() << ")\n";
  }
  return 0;
}

int NodesRemove(const Global& g, const std::string& node_id) {
  Client c(g);
  RemoveNodeRequest req;
  req.set_node_id(node_id);
  RemoveNodeResponse resp;
  grpc::Status s = c.Call(&AdminService::Stub::RemoveNode, req, &resp);
  if (!s.ok()) return FailRpc(s, "remove node");
  if (g.output == "json") {
    std::cout << Json(resp);
  } else {
    std::cout << "node " << node_id << " removed (it reported "
              << resp.node().partitions_hosted() << " partitions)\n";
  }
  return 0;
}

}  // namespace

void AddNodesCommands(CLI::App& app, Commands& cmds) {
  Global& g = cmds.g;
  int& rc = cmds.rc;
  auto* nodes =
      app.add_subcommand("nodes", "Cluster nodes")->require_subcommand(1);
  nodes->add_subcommand("list", "List nodes with liveness")->callback([&] {
    rc = NodesList(g);
  });
  std::string& node_id = cmds.Keep<std::string>();
  auto* remove = nodes->add_subcommand(
      "remove", "Forget a dead node that left the cluster (refused if alive)");
  remove->add_option("id", node_id, "Node id")->required();
  remove->callback([&] { rc = NodesRemove(g, node_id); });
  std::string& node_limit = cmds.Keep<std::string>();
  auto* set_limit = nodes->add_subcommand(
      "set-limit",
      "Pin a node's concurrency limit (1..capacity), or 'auto' to let the "
      "adaptive rule decide again");
  set_limit->add_option("id", node_id, "Node id")->required();
  set_limit->add_option("limit", node_limit, "N or auto")->required();
  set_limit->callback([&] { rc = NodesSetLimit(g, node_id, node_limit); });
}

}  // namespace shutter::cli
