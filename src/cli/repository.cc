// shutterctl repository: gc, stats.
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

int RepositoryGc(const Global& g, bool dry_run, const std::string& grace) {
  CollectGarbageRequest req;
  // Safe to retry on another controller (a new leader): one job.
  req.set_request_id(NewRequestId());
  req.set_dry_run(dry_run);
  if (!grace.empty()) {
    auto d = ParseDurationFlag("--grace", grace);
    if (!d.ok()) return Fail(d.status().message(), 2);
    req.set_grace_seconds(absl::ToInt64Seconds(*d));
  }
  Global slow = g;
  slow.timeout_ms = std::max(g.timeout_ms, 3600 * 1000);
  Client c(slow);
  CollectGarbageResponse resp;
  grpc::Status s = c.Call(&AdminService::Stub::CollectGarbage, req, &resp);
  if (!s.ok()) return FailRpc(s, "garbage collection");
  if (g.output == "json") {
    std::cout << Json(resp);
    return 0;
  }
  std::cout << absl::StrFormat(
      "%s%s: %d objects scanned, %d referenced; %s %d objects (%s); %d "
      "unreferenced but younger than %ds kept\n",
      dry_run ? "dry run" : "garbage collection ", resp.gc_id(),
      resp.objects_scanned(), resp.objects_referenced(),
      dry_run ? "would delete" : "deleted", resp.objects_deleted(),
      HumanBytes(resp.bytes_deleted()), resp.objects_too_young(),
      resp.grace_seconds());
  if (resp.uploads_aborted() + resp.uploads_too_young() > 0) {
    std::cout << absl::StrFormat(
        "incomplete multipart uploads: %s %d, %d younger than the grace "
        "kept\n",
        dry_run ? "would abort" : "aborted", resp.uploads_aborted(),
        resp.uploads_too_young());
  }
  if (resp.publish_locks_released() > 0) {
    std::cout << resp.publish_locks_released()
              << " publish lock(s) of attempts that were over removed "
                 "(not waited for)\n";
  }
  if (resp.sweep_incomplete()) {
    std::cout << "the sweep stopped at its time bound (publishers were "
                 "waiting); run it again for the rest\n";
  }
  return 0;
}

int RepositoryStats(const Global& g) {
  Global slow = g;
  slow.timeout_ms = std::max(g.timeout_ms, 600 * 1000);
  Client c(slow);
  GetRepositoryStatsRequest req;
  GetRepositoryStatsResponse resp;
  grpc::Status s = c.Call(&AdminService::Stub::GetRepositoryStats, req, &resp);
  if (!s.ok()) return FailRpc(s, "repository stats");
  if (g.output == "json") {
    std::cout << Json(resp);
    return 0;
  }
  Table t({"REPOSITORY", "SNAPSHOTS", "UNCOMMITTED", "OBJECTS", "STORED",
           "AS FULL COPIES", "SHARED", "INCOMPLETE UPLOADS"});
  t.Add({EscapeForTerminal(resp.repository()), absl::StrCat(resp.snapshots()),
         absl::StrCat(resp.uncommitted_snapshots()),
         absl::StrCat(resp.objects()), HumanBytes(resp.bytes_stored()),
         HumanBytes(resp.logical_bytes()), HumanBytes(resp.bytes_shared()),
         absl::StrCat(resp.incomplete_uploads())});
  std::cout << t.Render();
  return 0;
}

}  // namespace

void AddRepositoryCommands(CLI::App& app, Commands& cmds) {
  Global& g = cmds.g;
  int& rc = cmds.rc;
  struct Flags {
    bool gc_dry_run = false;
    std::string gc_grace;
  };
  Flags& f = cmds.Keep<Flags>();
  auto* repo = app.add_subcommand("repository", "The snapshot repository")
                   ->require_subcommand(1);
  auto* gc = repo->add_subcommand(
      "gc", "Delete objects no snapshot references (older than the grace)");
  gc->add_flag("--dry-run", f.gc_dry_run, "Only report what would be freed");
  gc->add_option("--grace", f.gc_grace,
                 "Keep objects younger than this (default: the controller's "
                 "--gc-grace)");
  gc->callback([&] { rc = RepositoryGc(g, f.gc_dry_run, f.gc_grace); });
  repo->add_subcommand("stats", "Snapshots, objects and bytes stored")
      ->callback([&] { rc = RepositoryStats(g); });
}

}  // namespace shutter::cli
