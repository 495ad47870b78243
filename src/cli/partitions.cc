// shutterctl partitions: list.
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

int PartitionsList(const Global& g) {
  Client c(g);
  ListPartitionsResponse resp;
  grpc::Status s = c.Call(&AdminService::Stub::ListPartitions,
                          ListPartitionsRequest(), &resp);
  if (!s.ok()) return FailRpc(s, "list partitions");
  if (g.output == "json") {
    std::cout << Json(resp);
    return 0;
  }
  Table t({"PARTITION", "LEADER", "EPOCH", "APPLIED", "SIZE", "REPLICAS",
           "STATUS"});
  for (const auto& p : resp.partitions()) {
    std::string status = p.conflict()                 ? "CONFLICT"
                         : p.leader_node_id().empty() ? "NO LEADER"
                                                      : "ok";
    t.Add({absl::StrCat(p.partition_id()),
           p.leader_node_id().empty() ? "-" : p.leader_node_id(),
           absl::StrCat(p.leader_epoch()), absl::StrCat(p.applied_index()),
           HumanBytes(p.approximate_size_bytes()),
           absl::StrCat(p.replicas_size()), status});
  }
  std::cout << t.Render();
  return 0;
}

}  // namespace

void AddPartitionsCommands(CLI::App& app, Commands& cmds) {
  Global& g = cmds.g;
  int& rc = cmds.rc;
  auto* parts =
      app.add_subcommand("partitions", "Partitions")->require_subcommand(1);
  parts->add_subcommand("list", "List partitions and their leaders")
      ->callback([&] { rc = PartitionsList(g); });
}

}  // namespace shutter::cli
