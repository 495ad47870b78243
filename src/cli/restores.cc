// shutterctl restores: list, show, cancel; and `snapshots restore`.
// shutterctl verifies: list, show, cancel (`snapshots verify` starts one).
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

}  // namespace

// `snapshots restore` (registered with the snapshots' commands).
int RestoreSnapshot(const Global& g, const std::string& id,
                    const std::string& partitions, bool wait, bool dry_run) {
  RestoreSnapshotRequest req;
  // Safe to retry on another controller (a new leader): one job.
  req.set_request_id(NewRequestId());
  req.set_snapshot_id(id);
  req.set_dry_run(dry_run);
  if (!partitions.empty()) {
    auto ids = ParseIdList(partitions);
    if (!ids.ok()) {
      return Fail(absl::StrCat("--partitions: ", ids.status().message()), 2);
    }
    for (uint32_t p : *ids) req.add_partition_ids(p);
  }
  Client c(g);
  RestoreSnapshotResponse resp;
  grpc::Status s = c.Call(&AdminService::Stub::RestoreSnapshot, req, &resp);
  if (!s.ok()) return FailRpc(s, "restore snapshot");
  if (g.output == "json" && (dry_run || !wait)) {
    std::cout << Json(resp);
    return 0;
  }
  const RestorePlan& plan = resp.plan();
  if (dry_run || wait) {
    // The plan goes where a person reads it; stdout stays the job's.
    std::ostream& out = dry_run ? std::cout : std::cerr;
    out << absl::StrFormat("%s snapshot %s: %d partitions, %s, on %d nodes\n",
                           dry_run ? "Would restore" : "Restoring",
                           plan.snapshot_id(), plan.partitions(),
                           HumanBytes(plan.total_bytes()), plan.nodes_size());
    Table t({"NODE", "ADDRESS", "PARTITIONS", "COUNT", "BYTES", "AT ONCE"});
    for (const auto& n : plan.nodes()) {
      std::vector<uint32_t> ids(n.partition_ids().begin(),
                                n.partition_ids().end());
      t.Add({n.node_id(), n.address(), FormatIdList(ids),
             absl::StrCat(n.partition_ids_size()), HumanBytes(n.bytes()),
             absl::StrCat(n.concurrency())});
    }
    out << t.Render();
  }
  if (dry_run) return 0;
  if (!wait) {
    std::cout << resp.restore_id() << "\n";
    return 0;
  }
  return WaitForSnapshot(g, c, resp.restore_id());
}

void AddRestoresCommands(CLI::App& app, Commands& cmds) {
  AddJobCommands(app, cmds,
                 {"restores", "Restore jobs", "restore", JOB_TYPE_RESTORE,
                  "the partitions that need attention",
                  "partitions not yet swapped keep their data"});
}

void AddVerifiesCommands(CLI::App& app, Commands& cmds) {
  AddJobCommands(
      app, cmds,
      {"verifies", "Verify jobs (snapshots verify)", "verify", JOB_TYPE_VERIFY,
       "the partitions with problems", "verdicts already known are kept"});
}

void AddGcsCommands(CLI::App& app, Commands& cmds) {
  AddJobCommands(app, cmds,
                 {"gcs", "Garbage collection jobs (repository gc)", "gc",
                  JOB_TYPE_GC, "its task if it needs attention",
                  "a collection in progress finishes its sweep"});
}

void AddDeletesCommands(CLI::App& app, Commands& cmds) {
  AddJobCommands(app, cmds,
                 {"deletes",
                  "Snapshot deletion jobs (snapshots delete, "
                  "retention)",
                  "delete", JOB_TYPE_DELETE, "its task if it needs attention",
                  "what was deleted stays deleted"});
}

}  // namespace shutter::cli
