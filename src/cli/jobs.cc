#include "cli/jobs.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cli/common.h"
#include "cli/table.h"
#include "common/ids.h"
#include "common/text.h"
#include "controller/job_states.h"

namespace shutter::cli {

using namespace shutter::v1;  // NOLINT
using controller::StateName;

grpc::Status FetchSnapshot(Client& c, const std::string& id, bool all,
                           GetSnapshotResponse* out) {
  std::string token;
  bool first = true;
  for (;;) {
    GetSnapshotRequest req;
    req.set_snapshot_id(id);
    req.set_page_size(10000);
    req.set_page_token(token);
    if (!all) {
      for (auto st :
           {PARTITION_TASK_STATE_QUEUED, PARTITION_TASK_STATE_RUNNING,
            PARTITION_TASK_STATE_WAITING, PARTITION_TASK_STATE_FAILED}) {
        req.add_states(st);
      }
    }
    GetSnapshotResponse page;
    grpc::Status s = c.Call(&AdminService::Stub::GetSnapshot, req, &page);
    if (!s.ok()) return s;
    if (first) {
      *out = page;
      first = false;
    } else {
      for (auto& p : *page.mutable_snapshot()->mutable_partitions()) {
        *out->mutable_snapshot()->add_partitions() = std::move(p);
      }
    }
    token = page.next_page_token();
    if (token.empty()) break;
  }
  out->clear_next_page_token();
  return grpc::Status::OK;
}

bool IsRestore(const Snapshot& s) { return s.type() == JOB_TYPE_RESTORE; }

bool IsVerify(const Snapshot& s) { return s.type() == JOB_TYPE_VERIFY; }

bool IsGc(const Snapshot& s) { return s.type() == JOB_TYPE_GC; }

bool IsDelete(const Snapshot& s) { return s.type() == JOB_TYPE_DELETE; }

// What a job of each kind is called: its noun, the command that lists
// such jobs, and the word for a finished partition (for the progress line;
// upper-cased in tables).
struct KindWords {
  const char* noun;
  const char* command;
  const char* done;
};

const KindWords& WordsFor(const Snapshot& s) {
  static const KindWords kSnapshot{"snapshot", "snapshots", "published"};
  static const KindWords kRestore{"restore", "restores", "restored"};
  static const KindWords kVerify{"verify", "verifies", "verified"};
  static const KindWords kGc{"gc", "gcs", "done"};
  static const KindWords kDelete{"delete", "deletes", "done"};
  return IsRestore(s)  ? kRestore
         : IsVerify(s) ? kVerify
         : IsGc(s)     ? kGc
         : IsDelete(s) ? kDelete
                       : kSnapshot;
}

const char* Noun(const Snapshot& s) { return WordsFor(s).noun; }

// The command that lists a job's partitions ("snapshots", "restores", ...).
const char* JobsCommand(const Snapshot& s) { return WordsFor(s).command; }

const char* DoneWord(const Snapshot& s) { return WordsFor(s).done; }

// A task's state as a person reads it: a restore's or verify's finished
// partition is RESTORED or VERIFIED, not PUBLISHED (the JSON keeps the
// API's names).
std::string TaskStateWord(const Snapshot& s, PartitionTaskState state) {
  if (state == PARTITION_TASK_STATE_PUBLISHED) {
    return absl::AsciiStrToUpper(DoneWord(s));
  }
  return TaskStateName(state);
}

void PrintSnapshot(const Global& g, const GetSnapshotResponse& r, bool all) {
  if (g.output == "json") {
    std::cout << Json(r);
    return;
  }
  const Snapshot& s = r.snapshot();
  const SnapshotSummary& sum = r.summary();
  if (IsRestore(s)) {
    std::cout << "Restore:    " << s.snapshot_id() << "\n"
              << "Of:         snapshot " << s.source_snapshot_id() << "\n";
  } else if (IsVerify(s)) {
    std::cout << "Verify:     " << s.snapshot_id() << "\n"
              << "Of:         snapshot " << s.source_snapshot_id()
              << (s.deep() ? " (deep: opened and scanned)"
                           : " (sizes and SHA-256)")
              << "\n";
  } else if (IsDelete(s)) {
    std::cout << "Delete:     " << s.snapshot_id() << "\n"
              << "Of:         snapshot " << s.source_snapshot_id() << "\n";
  } else if (IsGc(s)) {
    std::cout << "GC:         " << s.snapshot_id() << "\n"
              << "Grace:      " << s.gc().grace_seconds() << "s\n";
  } else {
    std::cout << "Snapshot:   " << s.snapshot_id() << "\n";
  }
  std::cout << "Label:      "
            << (s.label().empty() ? "-" : EscapeForTerminal(s.label())) << "\n"
            << "State:      " << StateName(s.state()) << "\n"
            << "Created:    " << HumanTime(s.created_at_micros()) << " UTC\n"
            << "Finished:   " << HumanTime(s.finished_at_micros()) << "\n";
  if (s.finished_at_micros() > 0) {
    std::cout << "Duration:   "
              << absl::StrFormat(
                     "%.3fs",
                     (s.finished_at_micros() - s.created_at_micros()) / 1e6)
              << "\n";
  }
  std::cout << "Partitions: " << sum.partitions_published() << "/"
            << sum.partitions_total() << " " << DoneWord(s) << ", "
            << HumanBytes(sum.total_bytes()) << "\n";
  std::cout << absl::StrFormat(
      "            %d running, %d queued, %d waiting, %d failed, %d "
      "cancelled\n",
      sum.partitions_running(), sum.partitions_queued(),
      sum.partitions_waiting(), sum.partitions_failed(),
      sum.partitions_cancelled());
  if (!s.manifest_path().empty()) {
    std::cout << "Manifest:   " << s.manifest_path() << "\n";
  }
  if (IsGc(s) && s.state() == SNAPSHOT_STATE_COMMITTED) {
    const auto& r = s.gc();
    std::cout << absl::StrFormat(
        "Deleted:    %d of %d objects, %s (%d too young); %d incomplete "
        "uploads aborted%s\n",
        r.objects_deleted(), r.objects_scanned(), HumanBytes(r.bytes_deleted()),
        r.objects_too_young(), r.uploads_aborted(),
        r.sweep_incomplete() ? "; sweep stopped at its time bound" : "");
  }
  if (!s.error().empty()) {
    std::cout << "Error:      " << EscapeForTerminal(s.error()) << "\n";
  }
  // A restore that did not finish everything: which partitions now hold
  // the snapshot's data and which kept their own (needs every partition).
  if (IsRestore(s) && controller::IsFinished(s.state()) &&
      s.state() != SNAPSHOT_STATE_COMMITTED &&
      s.partitions_size() == static_cast<int>(sum.partitions_total())) {
    std::vector<uint32_t> restored, untouched;
    for (const auto& p : s.partitions()) {
      (p.state() == PARTITION_TASK_STATE_PUBLISHED ? restored : untouched)
          .push_back(p.partition_id());
    }
    std::cout << "Restored:   "
              << (restored.empty() ? "none" : FormatIdList(restored))
              << " (now hold the snapshot's data)\n"
              << "Untouched:  "
              << (untouched.empty() ? "none" : FormatIdList(untouched))
              << " (kept their own data)\n";
  }
  std::cout << "\n";
  if (s.partitions().empty()) {
    if (!all)
      std::cout << "(no partition needs attention; --all lists every one)\n";
    return;
  }
  Table t({"PARTITION", "STATE", "NODE", "EPOCH", "APPLIED", "FILES", "SIZE",
           "TIME", "ATTEMPTS", "ERROR"});
  for (const auto& p : s.partitions()) {
    // Fetched whole only for the lists above: the table keeps to what
    // needs attention unless --all.
    if (!all && p.state() == PARTITION_TASK_STATE_PUBLISHED) continue;
    t.Add({absl::StrCat(p.partition_id()), TaskStateWord(s, p.state()),
           p.node_id(), absl::StrCat(p.leader_epoch()),
           absl::StrCat(p.applied_index()), absl::StrCat(p.file_count()),
           HumanBytes(p.total_bytes()),
           absl::StrFormat("%dms", p.duration_millis()),
           p.unreachable() == 0
               ? absl::StrCat(p.attempts())
               : absl::StrCat(p.attempts(), " (", p.unreachable(),
                              " unreachable)"),
           p.last_error().empty() ? "-" : EscapeForTerminal(p.last_error())});
  }
  std::cout << t.Render();
  if (!all) {
    std::cout << "(partitions that need attention; --all lists every one)\n";
  }
}

void PrintTimeline(const Snapshot& s, int width) {
  struct Bar {
    int64_t start, end;
    uint32_t partition;
  };
  std::map<std::string, std::vector<Bar>> by_node;
  int64_t t0 = s.created_at_micros(), t1 = t0;
  for (const auto& t : s.partitions()) {
    if (t.started_at_micros() == 0 ||
        t.state() == shutter::v1::PARTITION_TASK_STATE_RUNNING) {
      continue;
    }
    Bar b{t.started_at_micros(),
          t.started_at_micros() + t.duration_millis() * 1000, t.partition_id()};
    t1 = std::max(t1, b.end);
    by_node[t.node_id()].push_back(b);
  }
  if (by_node.empty()) {
    std::cout << "(no partition has started yet)\n";
    return;
  }
  const double span = std::max<int64_t>(t1 - t0, 1);
  auto col = [&](int64_t t) {
    return std::clamp(static_cast<int>((t - t0) / span * width), 0, width - 1);
  };
  std::string last_node;
  int64_t last_end = 0;
  for (const auto& [node, bars] : by_node) {
    for (const Bar& b : bars) {
      if (b.end > last_end) {
        last_end = b.end;
        last_node = node;
      }
    }
  }
  std::cout << absl::StrFormat("%-12s 0s%*s%.2fs\n", "", width - 2, "",
                               span / 1e6);
  for (auto& [node, bars] : by_node) {
    std::sort(bars.begin(), bars.end(),
              [](const Bar& a, const Bar& b) { return a.start < b.start; });
    std::vector<std::pair<int64_t, std::string>> lanes;  // (free at, row)
    for (const Bar& b : bars) {
      size_t lane = 0;
      while (lane < lanes.size() && lanes[lane].first > b.start) ++lane;
      if (lane == lanes.size()) lanes.push_back({0, std::string(width, ' ')});
      lanes[lane].first = b.end;
      std::string& row = lanes[lane].second;
      const int from = col(b.start), to = std::max(col(b.end), from);
      const std::string label = absl::StrCat(b.partition);
      for (int i = from; i <= to; ++i) row[i] = '=';
      row[from] = '[';
      if (to > from) row[to] = ']';
      if (to - from - 1 >= static_cast<int>(label.size())) {
        row.replace(from + 1, label.size(), label);
      }
    }
    double busy_until = 0;
    for (const Bar& b : bars)
      busy_until = std::max(busy_until, (b.end - t0) / 1e6);
    for (size_t i = 0; i < lanes.size(); ++i) {
      std::cout << absl::StrFormat(
          "%-12s|%s|%s\n", i == 0 ? EscapeForTerminal(node) : "",
          lanes[i].second,
          i == 0 ? absl::StrFormat(
                       " %d tasks, done at %.2fs%s", bars.size(), busy_until,
                       node == last_node ? "  <- last to finish" : "")
                 : "");
    }
  }
}

int ShowSnapshot(const Global& g, const std::string& id, bool all,
                 bool timeline) {
  Client c(g);
  GetSnapshotResponse resp;
  all = all || timeline || g.output == "json";
  grpc::Status s = FetchSnapshot(c, id, all, &resp);
  if (!s.ok()) return FailRpc(s, "show snapshot");
  if (!all && IsRestore(resp.snapshot()) &&
      controller::IsFinished(resp.snapshot().state()) &&
      resp.snapshot().state() != SNAPSHOT_STATE_COMMITTED) {
    // Every partition, to say which were restored and which not.
    s = FetchSnapshot(c, id, true, &resp);
    if (!s.ok()) return FailRpc(s, "show snapshot");
  }
  if (timeline && g.output != "json") {
    PrintTimeline(resp.snapshot(), 60);
    return 0;
  }
  PrintSnapshot(g, resp, all);
  return 0;
}

int WaitForSnapshot(const Global& g, Client& c, const std::string& id) {
  const bool tty = isatty(fileno(stderr));
  std::string last_line;
  // The job is durable: a controller that restarts (or a group that
  // elects another leader) resumes it, so a wait rides out a controller
  // that does not answer for up to kRideOut instead of reporting a
  // failure that did not happen.
  constexpr absl::Duration kRideOut = absl::Minutes(5);
  absl::Time unreachable_since = absl::InfiniteFuture();
  const absl::Duration patience = absl::Seconds(g.wait_timeout_s);
  const absl::Time give_up =
      g.wait_timeout_s > 0 ? absl::Now() + patience : absl::InfiniteFuture();
  // --wait-timeout ran out: says where the job stands; it is not touched.
  auto gave_up = [&](absl::string_view where) {
    if (tty && !last_line.empty()) std::fputc('\n', stderr);
    return Fail(absl::StrCat("gave up waiting after ",
                             absl::FormatDuration(patience), ": ", where),
                4);
  };
  for (;;) {
    GetSnapshotRequest req;
    req.set_snapshot_id(id);
    req.set_summary_only(true);
    GetSnapshotResponse resp;
    grpc::Status s = c.Call(&AdminService::Stub::GetSnapshot, req, &resp);
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
        s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      const absl::Time now = absl::Now();
      if (unreachable_since == absl::InfiniteFuture()) {
        unreachable_since = now;
        if (tty) std::fputc('\n', stderr);
        std::fprintf(
            stderr, "%s\n",
            absl::StrCat(
                "shutterctl: the controller does not answer (",
                absl::StatusCodeToString(
                    static_cast<absl::StatusCode>(s.error_code())),
                "); still waiting: the job resumes when a controller serves "
                "again (giving up after ",
                absl::FormatDuration(kRideOut), ")")
                .c_str());
        last_line.clear();
      }
      if (now >= give_up) {
        return gave_up(absl::StrCat("the controller does not answer; job ", id,
                                    " goes on when a controller serves again"));
      }
      if (now - unreachable_since < kRideOut) {
        absl::SleepFor(absl::Seconds(1));  // polling a controller that is down
        continue;
      }
    }
    if (!s.ok()) return FailRpc(s, "wait for snapshot");
    if (unreachable_since != absl::InfiniteFuture()) {
      std::fprintf(stderr, "shutterctl: the controller answers again\n");
      unreachable_since = absl::InfiniteFuture();
    }
    const Snapshot& snap = resp.snapshot();
    const SnapshotSummary& sum = resp.summary();
    const int done = sum.partitions_published();
    const int failed = sum.partitions_failed();
    bool terminal = controller::IsFinished(snap.state());
    // Partitions WAITING (for a node that stopped answering, for a leader,
    // or backing off) are counted, so that a wait that does not move says
    // why; `snapshots show` gives each one's last error.
    std::string waiting;
    if (sum.partitions_waiting() > 0) {
      waiting =
          absl::StrFormat(", %d waiting (shutterctl %s show %s says why)",
                          sum.partitions_waiting(), JobsCommand(snap), id);
    }
    std::string line = absl::StrFormat(
        "%s %s: %d/%d partitions %s, %d running%s, %d failed [%s]", Noun(snap),
        id, done, sum.partitions_total(), DoneWord(snap),
        sum.partitions_running(), waiting, failed, StateName(snap.state()));
    if (line != last_line || terminal) {
      std::fprintf(stderr, tty ? "\r%s\033[K" : "%s\n", line.c_str());
      last_line = line;
    }
    if (terminal) {
      if (tty) std::fputc('\n', stderr);
      GetSnapshotResponse full;
      const bool all = g.output == "json" || sum.partitions_total() <= 100;
      s = FetchSnapshot(c, id, all, &full);
      if (!s.ok()) return FailRpc(s, "show snapshot");
      PrintSnapshot(g, full, all);
      if (snap.state() == SNAPSHOT_STATE_PARTIAL) {
        Fail(absl::StrCat(Noun(snap), " ", id, " PARTIAL: ", snap.error()));
        return 3;
      }
      if (snap.state() != SNAPSHOT_STATE_COMMITTED) {
        return Fail(absl::StrCat(Noun(snap), " ", id, " ",
                                 StateName(snap.state()), ": ", snap.error()));
      }
      return 0;
    }
    if (absl::Now() >= give_up) {
      return gave_up(absl::StrCat(
          Noun(snap), " ", id, " is still ", StateName(snap.state()),
          " and goes on (shutterctl ", JobsCommand(snap), " show ", id, ")"));
    }
    // A person is watching: poll a few times a second.
    absl::SleepFor(absl::Milliseconds(200));
  }
}

int CancelSnapshot(const Global& g, const std::string& id) {
  Client c(g);
  CancelSnapshotRequest req;
  req.set_snapshot_id(id);
  CancelSnapshotResponse resp;
  grpc::Status s = c.Call(&AdminService::Stub::CancelSnapshot, req, &resp);
  if (!s.ok()) return FailRpc(s, "cancel snapshot");
  if (g.output == "json") {
    std::cout << Json(resp);
  } else {
    if (IsVerify(resp.snapshot())) {
      std::cout << "verify " << id
                << " cancelled; partitions already checked keep their "
                   "verdict\n";
      return 0;
    }
    if (IsRestore(resp.snapshot())) {
      std::cout << "restore " << id
                << " cancelled; partitions already restored stay restored "
                   "(`restores show "
                << id << "` lists them once in-flight ones end)\n";
      return 0;
    }
    std::cout << "snapshot " << id << " cancelled"
              << (resp.snapshot().rolled_back()
                      ? "; what it published is removed"
                      : "; removing what it published once in-flight "
                        "checkpoints end")
              << "\n";
  }
  return 0;
}

int ListSnapshots(const Global& g, uint32_t limit, JobType type) {
  Client c(g);
  ListSnapshotsRequest req;
  req.set_limit(limit);
  req.set_type(type);
  ListSnapshotsResponse resp;
  grpc::Status s = c.Call(&AdminService::Stub::ListSnapshots, req, &resp);
  if (!s.ok()) return FailRpc(s, "list snapshots");
  if (g.output == "json") {
    std::cout << Json(resp);
    return 0;
  }
  const bool restores = type != JOB_TYPE_SNAPSHOT;  // restores, verifies
  Table t({type == JOB_TYPE_RESTORE  ? "RESTORE"
           : type == JOB_TYPE_VERIFY ? "VERIFY"
           : type == JOB_TYPE_GC     ? "GC"
           : type == JOB_TYPE_DELETE ? "DELETE"
                                     : "SNAPSHOT",
           "STATE", restores ? "OF SNAPSHOT" : "LABEL", "CREATED (UTC)",
           "DURATION", "PARTITIONS", "SIZE"});
  for (const auto& x : resp.snapshots()) {
    std::string dur =
        x.finished_at_micros() == 0
            ? "-"
            : absl::StrFormat(
                  "%.2fs",
                  (x.finished_at_micros() - x.created_at_micros()) / 1e6);
    t.Add({x.snapshot_id(), StateName(x.state()),
           restores            ? x.source_snapshot_id()
           : x.label().empty() ? "-"
                               : EscapeForTerminal(x.label()),
           HumanTime(x.created_at_micros()), dur,
           absl::StrFormat(
               "%d/%d%s", x.partitions_published(), x.partitions_total(),
               x.partitions_failed()
                   ? absl::StrCat(" (", x.partitions_failed(), " failed)")
                   : ""),
           HumanBytes(x.total_bytes())});
  }
  std::cout << t.Render();
  return 0;
}

void AddJobCommands(CLI::App& app, Commands& cmds, const JobNoun& noun) {
  Global& g = cmds.g;
  int& rc = cmds.rc;
  struct Flags {
    std::string id;
    uint32_t limit = 0;
    bool show_all = false, timeline = false;
  };
  Flags& f = cmds.Keep<Flags>();
  const std::string one = noun.one;
  const JobType type = noun.type;
  auto* cmd = app.add_subcommand(noun.name, noun.help)->require_subcommand(1);
  auto* list = cmd->add_subcommand(
      "list", absl::StrCat("List ", noun.name, ", newest first"));
  list->add_option("--limit", f.limit, "At most this many (0: all)");
  list->callback([&g, &rc, &f, type] { rc = ListSnapshots(g, f.limit, type); });
  auto* show = cmd->add_subcommand(
      "show", absl::StrCat("Show a ", one, ": summary and ", noun.show_lists));
  show->add_option("id", f.id, absl::StrCat(noun.one, " id"))->required();
  show->add_flag("--all", f.show_all, "List every partition");
  show->add_flag("--timeline", f.timeline, "Draw each node's tasks over time");
  show->callback(
      [&g, &rc, &f] { rc = ShowSnapshot(g, f.id, f.show_all, f.timeline); });
  auto* cancel = cmd->add_subcommand(
      "cancel",
      absl::StrCat("Cancel a running ", one, " (", noun.cancel_note, ")"));
  cancel->add_option("id", f.id, absl::StrCat(noun.one, " id"))->required();
  cancel->callback([&g, &rc, &f] { rc = CancelSnapshot(g, f.id); });
}

}  // namespace shutter::cli
