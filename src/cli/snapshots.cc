// shutterctl snapshots: create, list, show, cancel, verify, restore, delete,
// pin, unpin, prune.
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

int CreateSnapshot(const Global& g, const std::string& partitions,
                   const std::string& label, bool wait, bool allow_partial) {
  CreateSnapshotRequest req;
  // Safe to retry on another controller (a new leader): one job.
  req.set_request_id(NewRequestId());
  req.set_allow_partial(allow_partial);
  if (!partitions.empty()) {
    auto ids = ParseIdList(partitions);
    if (!ids.ok()) {
      return Fail(absl::StrCat("--partitions: ", ids.status().message()), 2);
    }
    for (uint32_t id : *ids) req.add_partition_ids(id);
  }
  req.set_label(label);
  Client c(g);
  CreateSnapshotResponse resp;
  grpc::Status s = c.Call(&AdminService::Stub::CreateSnapshot, req, &resp);
  if (!s.ok()) return FailRpc(s, "create snapshot");
  if (!wait) {
    if (g.output == "json") {
      std::cout << Json(resp);
    } else {
      std::cout << resp.snapshot_id() << "\n";
    }
    return 0;
  }
  return WaitForSnapshot(g, c, resp.snapshot_id());
}

int VerifySnapshot(const Global& g, const std::string& id, bool deep,
                   bool wait) {
  Client c(g);
  VerifySnapshotRequest req;
  // Safe to retry on another controller (a new leader): one job.
  req.set_request_id(NewRequestId());
  req.set_snapshot_id(id);
  req.set_deep(deep);
  VerifySnapshotResponse resp;
  grpc::Status s = c.Call(&AdminService::Stub::VerifySnapshot, req, &resp);
  if (!s.ok()) return FailRpc(s, "verify snapshot");
  if (!wait) {
    if (g.output == "json") {
      std::cout << Json(resp);
    } else {
      std::cout << resp.verify_id() << "\n";
    }
    return 0;
  }
  return WaitForSnapshot(g, c, resp.verify_id());
}

int DeleteSnapshot(const Global& g, const std::string& id, bool force) {
  Global slow = g;
  slow.timeout_ms = std::max(g.timeout_ms, 600 * 1000);  // many deletes
  Client c(slow);
  DeleteSnapshotRequest req;
  // Safe to retry on another controller (a new leader): one job.
  req.set_request_id(NewRequestId());
  req.set_snapshot_id(id);
  req.set_force(force);
  DeleteSnapshotResponse resp;
  grpc::Status s = c.Call(&AdminService::Stub::DeleteSnapshot, req, &resp);
  if (!s.ok()) return FailRpc(s, "delete snapshot");
  if (g.output == "json") {
    std::cout << Json(resp);
  } else {
    std::cout << "snapshot " << id
              << " deleted (run `shutterctl repository gc` to free the "
                 "files it shared)\n";
  }
  return 0;
}

int PinSnapshot(const Global& g, const std::string& id, bool pinned) {
  Client c(g);
  PinSnapshotRequest req;
  req.set_snapshot_id(id);
  req.set_pinned(pinned);
  PinSnapshotResponse resp;
  grpc::Status s = c.Call(&AdminService::Stub::PinSnapshot, req, &resp);
  if (!s.ok()) return FailRpc(s, pinned ? "pin snapshot" : "unpin snapshot");
  if (g.output == "json") {
    std::cout << Json(resp);
  } else {
    std::cout << "snapshot " << id << (pinned ? " pinned" : " unpinned")
              << "\n";
  }
  return 0;
}

struct PruneFlags {
  bool dry_run = false;
  uint32_t keep_last = 0;
  std::string keep_within;
  std::vector<std::string> keep_labels;
};

int Prune(const Global& g, const PruneFlags& f) {
  ApplyRetentionRequest req;
  req.set_dry_run(f.dry_run);
  if (f.keep_last > 0 || !f.keep_within.empty() || !f.keep_labels.empty()) {
    RetentionPolicy* p = req.mutable_policy();
    p->set_keep_last(f.keep_last);
    if (!f.keep_within.empty()) {
      auto d = ParseDurationFlag("--keep-within", f.keep_within);
      if (!d.ok()) return Fail(d.status().message(), 2);
      p->set_keep_within_seconds(absl::ToInt64Seconds(*d));
    }
    for (const auto& l : f.keep_labels) p->add_keep_labels(l);
  }
  Global slow = g;
  slow.timeout_ms = std::max(g.timeout_ms, 3600 * 1000);
  Client c(slow);
  ApplyRetentionResponse resp;
  grpc::Status s = c.Call(&AdminService::Stub::ApplyRetention, req, &resp);
  if (!s.ok()) return FailRpc(s, "apply retention");
  if (g.output == "json") {
    std::cout << Json(resp);
    return 0;
  }
  Table t({"SNAPSHOT", "DECISION"});
  for (const auto& id : resp.deleted()) {
    t.Add({id, f.dry_run ? "would delete" : "deleted"});
  }
  for (const auto& k : resp.kept()) {
    t.Add({k.snapshot_id(), "keep (" + k.reason() + ")"});
  }
  std::cout << t.Render();
  return 0;
}

}  // namespace

int RestoreSnapshot(const Global& g, const std::string& id,
                    const std::string& partitions, bool wait, bool dry_run);

void AddSnapshotsCommands(CLI::App& app, Commands& cmds) {
  Global& g = cmds.g;
  int& rc = cmds.rc;
  auto* snaps = app.add_subcommand("snapshots", "Cluster snapshots")
                    ->require_subcommand(1);
  struct Flags {
    std::string partitions, label, id;
    bool wait = false, allow_partial = false, show_all = false,
         timeline = false, dry_run_restore = false, force = false, deep = false;
    uint32_t limit = 0;
    PruneFlags prune;
  };
  Flags& f = cmds.Keep<Flags>();
  auto* create = snaps->add_subcommand("create", "Start a cluster snapshot");
  create->add_option("--partitions", f.partitions,
                     "Partitions to include, e.g. 0,3,5-9 (default: all)");
  create->add_option("--label", f.label, "Free-text label");
  create->add_flag("--wait", f.wait,
                   "Show progress and wait; exit 1 if the snapshot fails, "
                   "3 if it is PARTIAL");
  create->add_flag("--allow-partial", f.allow_partial,
                   "If some partitions fail, commit the others (PARTIAL)");
  create->callback([&] {
    rc = CreateSnapshot(g, f.partitions, f.label, f.wait, f.allow_partial);
  });
  auto* list = snaps->add_subcommand("list", "List snapshots, newest first");
  list->add_option("--limit", f.limit, "At most this many (0: all)");
  list->callback([&] { rc = ListSnapshots(g, f.limit); });
  auto* show = snaps->add_subcommand(
      "show",
      "Show a snapshot: summary and the partitions that need attention");
  show->add_option("id", f.id, "Snapshot id")->required();
  show->add_flag("--all", f.show_all, "List every partition");
  show->add_flag("--timeline", f.timeline,
                 "Draw each node's tasks over time (where the time went, "
                 "which node was the straggler)");
  show->callback([&] { rc = ShowSnapshot(g, f.id, f.show_all, f.timeline); });
  auto* cancel = snaps->add_subcommand(
      "cancel", "Cancel a running snapshot and remove what it published");
  cancel->add_option("id", f.id, "Snapshot id")->required();
  cancel->callback([&] { rc = CancelSnapshot(g, f.id); });
  auto* verify = snaps->add_subcommand(
      "verify",
      "Check a committed snapshot on the nodes, in parallel: every file's "
      "size and SHA-256 (a verify job; prints its id)");
  verify->add_option("id", f.id, "Snapshot id")->required();
  verify->add_flag("--deep", f.deep,
                   "Also download each checkpoint, open it with RocksDB and "
                   "read every key");
  verify->add_flag("--wait", f.wait,
                   "Show progress and wait; exit 1 if a problem is found");
  verify->callback([&] { rc = VerifySnapshot(g, f.id, f.deep, f.wait); });

  auto* restore = snaps->add_subcommand(
      "restore",
      "Restore a snapshot's partitions onto their current leaders (the "
      "partitions' current data is replaced)");
  restore->add_option("id", f.id, "Snapshot id")->required();
  restore->add_option("--partitions", f.partitions,
                      "Partitions to restore, e.g. 0,3,5-9 (default: every "
                      "one the snapshot contains)");
  restore->add_flag("--wait", f.wait,
                    "Show progress and wait; exit 1 if the restore fails, 3 "
                    "if only some partitions were restored");
  restore->add_flag("--dry-run", f.dry_run_restore,
                    "Show the plan (per node: partitions, bytes, "
                    "concurrency); change nothing");
  restore->callback([&] {
    rc = RestoreSnapshot(g, f.id, f.partitions, f.wait, f.dry_run_restore);
  });

  auto* del = snaps->add_subcommand(
      "delete", "Delete a finished snapshot from the repository");
  del->add_option("id", f.id, "Snapshot id")->required();
  del->add_flag("--force", f.force,
                "Also delete a pinned snapshot or the newest committed one");
  del->callback([&] { rc = DeleteSnapshot(g, f.id, f.force); });
  auto* pin = snaps->add_subcommand("pin", "Keep a snapshot from retention");
  pin->add_option("id", f.id, "Snapshot id")->required();
  pin->callback([&] { rc = PinSnapshot(g, f.id, true); });
  auto* unpin = snaps->add_subcommand("unpin", "Undo pin");
  unpin->add_option("id", f.id, "Snapshot id")->required();
  unpin->callback([&] { rc = PinSnapshot(g, f.id, false); });
  auto* prune = snaps->add_subcommand(
      "prune",
      "Apply retention now: the controller's policy, or the one given here");
  prune->add_flag("--dry-run", f.prune.dry_run,
                  "Only show what would be deleted");
  prune->add_option("--keep-last", f.prune.keep_last,
                    "Keep the newest N committed snapshots");
  prune->add_option("--keep-within", f.prune.keep_within,
                    "Keep snapshots younger than this (e.g. 7d, 36h)");
  prune->add_option("--keep-label", f.prune.keep_labels,
                    "Keep snapshots with this label (repeatable)");
  prune->callback([&] { rc = Prune(g, f.prune); });
}

}  // namespace shutter::cli
