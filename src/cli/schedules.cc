// shutterctl schedules: create, list, pause, resume, delete.
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

struct ScheduleFlags {
  std::string name, every, cron, label, partitions, keep_within;
  uint32_t keep_last = 0;
  std::vector<std::string> keep_labels;
  bool allow_partial = false, paused = false, verify = false, deep = false;
};

int CreateSchedule(const Global& g, const ScheduleFlags& f) {
  CreateScheduleRequest req;
  Schedule* s = req.mutable_schedule();
  s->set_name(f.name);
  s->set_every(f.every);
  s->set_cron(f.cron);
  s->set_label(f.label);
  s->set_allow_partial(f.allow_partial);
  s->set_paused(f.paused);
  if (f.verify) s->set_job(JOB_TYPE_VERIFY);
  s->set_deep(f.deep);
  if (!f.partitions.empty()) {
    auto ids = ParseIdList(f.partitions);
    if (!ids.ok()) {
      return Fail(absl::StrCat("--partitions: ", ids.status().message()), 2);
    }
    for (uint32_t id : *ids) s->add_partition_ids(id);
  }
  s->mutable_retention()->set_keep_last(f.keep_last);
  if (!f.keep_within.empty()) {
    auto d = ParseDurationFlag("--keep-within", f.keep_within);
    if (!d.ok()) return Fail(d.status().message(), 2);
    s->mutable_retention()->set_keep_within_seconds(absl::ToInt64Seconds(*d));
  }
  for (const auto& l : f.keep_labels)
    s->mutable_retention()->add_keep_labels(l);
  Client c(g);
  CreateScheduleResponse resp;
  grpc::Status st = c.Call(&AdminService::Stub::CreateSchedule, req, &resp);
  if (!st.ok()) return FailRpc(st, "create schedule");
  if (g.output == "json") {
    std::cout << Json(resp);
  } else {
    std::cout << "schedule " << f.name << " created; first run at "
              << HumanTime(resp.schedule().next_run_at_micros()) << " UTC\n";
  }
  return 0;
}

int ListSchedules(const Global& g) {
  Client c(g);
  ListSchedulesRequest req;
  ListSchedulesResponse resp;
  grpc::Status st = c.Call(&AdminService::Stub::ListSchedules, req, &resp);
  if (!st.ok()) return FailRpc(st, "list schedules");
  if (g.output == "json") {
    std::cout << Json(resp);
    return 0;
  }
  auto when = [](int64_t micros) {
    return micros == 0 ? std::string("-") : HumanTime(micros);
  };
  Table t({"SCHEDULE", "RUNS A", "WHEN", "STATE", "NEXT RUN (UTC)",
           "LAST SUCCESS (UTC)", "RUNS", "SKIPPED", "LAST SKIP"});
  for (const auto& s : resp.schedules()) {
    t.Add({s.name(),
           s.job() != JOB_TYPE_VERIFY ? "snapshot"
           : s.deep()                 ? "deep verify"
                                      : "verify",
           s.every().empty() ? "cron " + EscapeForTerminal(s.cron())
                             : "every " + EscapeForTerminal(s.every()),
           s.paused() ? "paused" : "active", when(s.next_run_at_micros()),
           when(s.last_success_at_micros()), absl::StrCat(s.runs()),
           absl::StrCat(s.skipped()),
           s.last_skip_reason().empty()
               ? "-"
               : EscapeForTerminal(s.last_skip_reason())});
  }
  std::cout << t.Render();
  return 0;
}

int PauseSchedule(const Global& g, const std::string& name, bool paused) {
  Client c(g);
  SetSchedulePausedRequest req;
  req.set_name(name);
  req.set_paused(paused);
  SetSchedulePausedResponse resp;
  grpc::Status st = c.Call(&AdminService::Stub::SetSchedulePaused, req, &resp);
  if (!st.ok())
    return FailRpc(st, paused ? "pause schedule" : "resume schedule");
  if (g.output == "json") {
    std::cout << Json(resp);
  } else {
    std::cout << "schedule " << name << (paused ? " paused" : " resumed")
              << "\n";
  }
  return 0;
}

int DeleteSchedule(const Global& g, const std::string& name) {
  Client c(g);
  DeleteScheduleRequest req;
  req.set_name(name);
  DeleteScheduleResponse resp;
  grpc::Status st = c.Call(&AdminService::Stub::DeleteSchedule, req, &resp);
  if (!st.ok()) return FailRpc(st, "delete schedule");
  if (g.output == "json") {
    std::cout << Json(resp);
  } else {
    std::cout << "schedule " << name << " deleted (its snapshots stay)\n";
  }
  return 0;
}

}  // namespace

void AddSchedulesCommands(CLI::App& app, Commands& cmds) {
  Global& g = cmds.g;
  int& rc = cmds.rc;
  auto* scheds = app.add_subcommand("schedules", "Snapshot schedules")
                     ->require_subcommand(1);
  ScheduleFlags& sf = cmds.Keep<ScheduleFlags>();
  auto* screate = scheds->add_subcommand(
      "create", "Create a schedule (--every or --cron, UTC)");
  screate->add_option("name", sf.name, "Schedule name")->required();
  auto* every = screate->add_option("--every", sf.every,
                                    "Interval, e.g. 30m, 6h, 1d (min 1m)");
  auto* cron = screate->add_option(
      "--cron", sf.cron, "Cron expression in UTC, e.g. \"0 */6 * * *\"");
  every->excludes(cron);
  screate->add_option("--label", sf.label, "Label of its snapshots");
  screate->add_option("--partitions", sf.partitions,
                      "Partitions, e.g. 0,3,5-9 (default: all)");
  screate->add_flag("--allow-partial", sf.allow_partial,
                    "Commit what succeeded if some partitions fail");
  screate->add_flag("--paused", sf.paused, "Create it paused");
  screate->add_flag("--verify", sf.verify,
                    "Each run verifies the newest committed snapshot "
                    "instead of taking one");
  screate->add_flag("--deep", sf.deep,
                    "With --verify: deep verifies (checkpoints opened and "
                    "read)");
  screate->add_option("--keep-last", sf.keep_last,
                      "Retention: keep its newest N snapshots");
  screate->add_option("--keep-within", sf.keep_within,
                      "Retention: keep its snapshots younger than this");
  screate->add_option("--keep-label", sf.keep_labels,
                      "Retention: keep its snapshots with this label");
  screate->callback([&] {
    if (sf.every.empty() == sf.cron.empty()) {
      rc = Fail("schedules create: give exactly one of --every and --cron", 2);
      return;
    }
    rc = CreateSchedule(g, sf);
  });
  scheds->add_subcommand("list", "Schedules, their next run, last success")
      ->callback([&] { rc = ListSchedules(g); });
  std::string& sched_name = cmds.Keep<std::string>();
  auto* spause = scheds->add_subcommand("pause", "Pause a schedule");
  spause->add_option("name", sched_name, "Schedule name")->required();
  spause->callback([&] { rc = PauseSchedule(g, sched_name, true); });
  auto* sresume = scheds->add_subcommand("resume", "Resume a schedule");
  sresume->add_option("name", sched_name, "Schedule name")->required();
  sresume->callback([&] { rc = PauseSchedule(g, sched_name, false); });
  auto* sdelete =
      scheds->add_subcommand("delete", "Delete a schedule (not its snapshots)");
  sdelete->add_option("name", sched_name, "Schedule name")->required();
  sdelete->callback([&] { rc = DeleteSchedule(g, sched_name); });
}

}  // namespace shutter::cli
