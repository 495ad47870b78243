// shutterctl: the operator CLI over the controller's admin API.
//
// Exit codes: 0 success; 1 the operation failed (RPC error, snapshot
// FAILED or CANCELLED); 2 bad usage; 3 snapshot PARTIAL (with --wait). Errors
// are one line on stderr: "shutterctl: <reason>".
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "cli/table.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/rpc.h"
#include "common/security.h"
#include "common/text.h"
#include "controller/job_states.h"
#include "google/protobuf/util/json_util.h"
#include "shutter/v1/admin.grpc.pb.h"
#include "shutter/v1/partition_data.grpc.pb.h"

namespace shutter::cli {
namespace {

using namespace shutter::v1;  // NOLINT
using controller::StateName;

struct Global {
  std::string controller = "127.0.0.1:7000";
  std::string output = "table";
  int timeout_ms = 30000;
  // TLS when a CA is given (common/security.h); the bearer token, if any,
  // goes with every admin call.
  TlsOptions tls;
  std::string token_file;
  std::string token;
};

bool g_tls_used = false;  // for the hint on connection failures

// Everything printed that came from the server or a user is passed
// through EscapeForTerminal: a label or an error message cannot move the
// cursor, change colours or break a table row.
int Fail(absl::string_view msg, int code = 1) {
  std::fprintf(stderr, "shutterctl: %s\n", EscapeForTerminal(msg).c_str());
  return code;
}

int FailRpc(const grpc::Status& s, absl::string_view what) {
  std::string hint;
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
    hint = g_tls_used ? " (check --tls-ca/--tls-cert: the controller's "
                        "certificate must chain to the CA and name the "
                        "address dialled)"
                      : " (if the controller uses TLS, pass --tls-ca)";
  }
  return Fail(absl::StrCat(
      what, ": ",
      absl::StatusCodeToString(static_cast<absl::StatusCode>(s.error_code())),
      ": ", s.error_message(), hint));
}

// A token file holds the token on its first line that is not blank or a
// comment, alone or after a role ("operator <token>", the controller's
// own format).
absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  auto text = fs::ReadFile(path);
  if (!text.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--token-file: cannot read ", path));
  }
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> parts =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    return std::string(parts.back());
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--token-file: ", path, " holds no token"));
}

std::string Json(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.always_print_primitive_fields = true;
  o.preserve_proto_field_names = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

std::string TaskStateName(PartitionTaskState s) {
  std::string n = PartitionTaskState_Name(s);
  return n.substr(std::string("PARTITION_TASK_STATE_").size());
}

class Client {
 public:
  explicit Client(const Global& g)
      : g_(g), stub_(AdminService::NewStub(MakeChannel(g.controller))) {}

  template <typename Req, typename Resp, typename Fn>
  grpc::Status Call(Fn fn, const Req& req, Resp* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(g_.timeout_ms));
    if (!g_.token.empty()) {
      ctx.AddMetadata("authorization", "Bearer " + g_.token);
    }
    return ((*stub_).*fn)(&ctx, req, resp);
  }
  AdminService::Stub* stub() { return stub_.get(); }

 private:
  const Global& g_;
  std::unique_ptr<AdminService::Stub> stub_;
};

std::string Percent(double fraction) {
  if (fraction < 0) return "-";
  return absl::StrFormat("%.0f%%", fraction * 100);
}

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
           absl::StrCat(n.checkpoints_in_flight()),
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

// Fetches a snapshot: its fields, summary and partitions (every one with
// `all`, else those that need attention: queued, running, waiting,
// failed), paging through GetSnapshot.
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
// "snapshot" or "restore"; what a done task is ("published", "restored").
const char* Noun(const Snapshot& s) {
  return IsRestore(s) ? "restore" : "snapshot";
}
const char* DoneWord(const Snapshot& s) {
  return IsRestore(s) ? "restored" : "published";
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
    t.Add(
        {absl::StrCat(p.partition_id()), TaskStateName(p.state()), p.node_id(),
         absl::StrCat(p.leader_epoch()), absl::StrCat(p.applied_index()),
         absl::StrCat(p.file_count()), HumanBytes(p.total_bytes()),
         absl::StrFormat("%dms", p.duration_millis()),
         p.unreachable() == 0 ? absl::StrCat(p.attempts())
                              : absl::StrCat(p.attempts(), " (",
                                             p.unreachable(), " unreachable)"),
         p.last_error().empty() ? "-" : EscapeForTerminal(p.last_error())});
  }
  std::cout << t.Render();
  if (!all) {
    std::cout << "(partitions that need attention; --all lists every one)\n";
  }
}

// A text Gantt chart of where a job's time went: per node, its tasks in
// lanes (one lane per slot in use), each bar from the task's start to its
// end on a common time axis; the node that finished last is marked.
void PrintTimeline(const Snapshot& s, int width) {
  struct Bar {
    int64_t start, end;
    uint32_t partition;
  };
  std::map<std::string, std::vector<Bar>> by_node;
  int64_t t0 = s.created_at_micros(), t1 = t0;
  for (const auto& t : s.partitions()) {
    if (t.started_at_micros() == 0) continue;
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
                 bool timeline = false) {
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
  int last_done = -1;
  for (;;) {
    GetSnapshotRequest req;
    req.set_snapshot_id(id);
    req.set_summary_only(true);
    GetSnapshotResponse resp;
    grpc::Status s = c.Call(&AdminService::Stub::GetSnapshot, req, &resp);
    if (!s.ok()) return FailRpc(s, "wait for snapshot");
    const Snapshot& snap = resp.snapshot();
    const SnapshotSummary& sum = resp.summary();
    const int done = sum.partitions_published();
    const int failed = sum.partitions_failed();
    bool terminal = controller::IsFinished(snap.state());
    if (done + failed != last_done || terminal) {
      std::string line = absl::StrFormat(
          "%s %s: %d/%d partitions %s, %d running, %d failed [%s]", Noun(snap),
          id, done, sum.partitions_total(), DoneWord(snap),
          sum.partitions_running(), failed, StateName(snap.state()));
      std::fprintf(stderr, tty ? "\r%s\033[K" : "%s\n", line.c_str());
      last_done = done + failed;
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
    // A person is watching: poll a few times a second.
    absl::SleepFor(absl::Milliseconds(200));
  }
}

int CreateSnapshot(const Global& g, const std::string& partitions,
                   const std::string& label, bool wait, bool allow_partial) {
  CreateSnapshotRequest req;
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

int RestoreSnapshot(const Global& g, const std::string& id,
                    const std::string& partitions, bool wait, bool dry_run) {
  RestoreSnapshotRequest req;
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

int VerifySnapshot(Global g, const std::string& id) {
  g.timeout_ms = std::max(g.timeout_ms, 3600 * 1000);  // hashes every file
  Client c(g);
  VerifySnapshotRequest req;
  req.set_snapshot_id(id);
  VerifySnapshotResponse resp;
  grpc::Status s = c.Call(&AdminService::Stub::VerifySnapshot, req, &resp);
  if (!s.ok()) return FailRpc(s, "verify snapshot");
  if (g.output == "json") {
    std::cout << Json(resp);
  } else {
    std::cout << absl::StrFormat(
        "snapshot %s: %d partitions, %d files, %s checked: %s\n", id,
        resp.partitions_checked(), resp.files_checked(),
        HumanBytes(resp.bytes_checked()),
        resp.ok() ? "OK" : absl::StrCat(resp.problems_size(), " problem(s)"));
    for (const auto& p : resp.problems()) {
      std::cout << "  partition " << p.partition_id() << ": "
                << EscapeForTerminal(p.error()) << "\n";
    }
  }
  if (!resp.ok()) {
    return Fail(absl::StrCat(
        "snapshot ", id, " failed verification: ", resp.problems(0).error()));
  }
  return 0;
}

int ListSnapshots(const Global& g, uint32_t limit,
                  JobType type = JOB_TYPE_SNAPSHOT) {
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
  const bool restores = type == JOB_TYPE_RESTORE;
  Table t({restores ? "RESTORE" : "SNAPSHOT", "STATE",
           restores ? "OF SNAPSHOT" : "LABEL", "CREATED (UTC)", "DURATION",
           "PARTITIONS", "SIZE"});
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

int DeleteSnapshot(const Global& g, const std::string& id, bool force) {
  Global slow = g;
  slow.timeout_ms = std::max(g.timeout_ms, 600 * 1000);  // many deletes
  Client c(slow);
  DeleteSnapshotRequest req;
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

int RepositoryGc(const Global& g, bool dry_run, const std::string& grace) {
  CollectGarbageRequest req;
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

struct ScheduleFlags {
  std::string name, every, cron, label, partitions, keep_within;
  uint32_t keep_last = 0;
  std::vector<std::string> keep_labels;
  bool allow_partial = false, paused = false;
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
  Table t({"SCHEDULE", "WHEN", "STATE", "NEXT RUN (UTC)", "LAST SUCCESS (UTC)",
           "RUNS", "SKIPPED", "LAST SKIP"});
  for (const auto& s : resp.schedules()) {
    t.Add({s.name(),
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

// Writes deterministic sample data into every (or the listed) partition's
// leader: keys "key-%08d", values of `value_size` pseudo-random bytes.
int LoadData(const Global& g, const std::string& partitions, int keys,
             int value_size, int batch) {
  Client c(g);
  ListPartitionsResponse parts;
  grpc::Status s = c.Call(&AdminService::Stub::ListPartitions,
                          ListPartitionsRequest(), &parts);
  if (!s.ok()) return FailRpc(s, "list partitions");
  std::set<uint32_t> wanted;
  if (!partitions.empty()) {
    auto ids = ParseIdList(partitions);
    if (!ids.ok()) {
      return Fail(absl::StrCat("--partitions: ", ids.status().message()), 2);
    }
    wanted.insert(ids->begin(), ids->end());
  }
  std::vector<PartitionInfo> targets;
  for (const auto& p : parts.partitions()) {
    if (!wanted.empty() && wanted.count(p.partition_id()) == 0) continue;
    if (p.leader_address().empty()) {
      return Fail(
          absl::StrCat("partition ", p.partition_id(), " has no live leader"));
    }
    targets.push_back(p);
  }
  if (targets.empty()) return Fail("no partitions to load");
  absl::Time start = absl::Now();
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::string first_error;
  absl::Mutex err_mu;
  auto worker = [&] {
    for (size_t i = next++; i < targets.size() && !failed; i = next++) {
      const PartitionInfo& p = targets[i];
      auto stub = PartitionData::NewStub(MakeChannel(p.leader_address()));
      std::mt19937_64 rng(p.partition_id() * 7919 + 1);
      for (int k = 0; k < keys && !failed; k += batch) {
        WriteRequest req;
        req.set_partition_id(p.partition_id());
        for (int j = k; j < std::min(keys, k + batch); ++j) {
          auto* put = req.add_mutations()->mutable_put();
          put->set_key(absl::StrFormat("key-%08d", j));
          std::string v(value_size, '\0');
          for (int b = 0; b + 8 <= value_size; b += 8) {
            uint64_t r = rng();
            memcpy(&v[b], &r, 8);
          }
          put->set_value(std::move(v));
        }
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(g.timeout_ms));
        WriteResponse resp;
        grpc::Status ws = stub->Write(&ctx, req, &resp);
        if (!ws.ok()) {
          absl::MutexLock l(&err_mu);
          if (!failed.exchange(true)) {
            first_error = absl::StrCat("write to partition ", p.partition_id(),
                                       ": ", ws.error_message());
          }
        }
      }
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  if (failed) return Fail(first_error);
  double secs = absl::ToDoubleSeconds(absl::Now() - start);
  uint64_t bytes = static_cast<uint64_t>(keys) * value_size * targets.size();
  std::printf(
      "loaded %zu partitions x %d keys x %d B = %s in %.2fs (%.1f MiB/s)\n",
      targets.size(), keys, value_size, HumanBytes(bytes).c_str(), secs,
      bytes / 1048576.0 / std::max(secs, 1e-9));
  return 0;
}

int Main(int argc, char** argv) {
  SilenceGrpcLogs();
  Global g;
  if (const char* env = std::getenv("SHUTTER_CONTROLLER"); env && *env) {
    g.controller = env;
  }
  CLI::App app{"shutterctl: operate a Shutter cluster"};
  app.require_subcommand(1);
  app.add_option("--controller", g.controller,
                 "Controller host:port (env SHUTTER_CONTROLLER)")
      ->capture_default_str();
  app.add_option("-o,--output", g.output, "table or json")
      ->capture_default_str()
      ->check(CLI::IsMember({"table", "json"}));
  app.add_option("--timeout-ms", g.timeout_ms, "Deadline of each call")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600000));
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
  auto* nodes =
      app.add_subcommand("nodes", "Cluster nodes")->require_subcommand(1);
  nodes->add_subcommand("list", "List nodes with liveness")->callback([&] {
    rc = NodesList(g);
  });
  std::string node_id;
  auto* remove = nodes->add_subcommand(
      "remove", "Forget a dead node that left the cluster (refused if alive)");
  remove->add_option("id", node_id, "Node id")->required();
  remove->callback([&] { rc = NodesRemove(g, node_id); });
  std::string node_limit;
  auto* set_limit = nodes->add_subcommand(
      "set-limit",
      "Pin a node's concurrency limit (1..capacity), or 'auto' to let the "
      "adaptive rule decide again");
  set_limit->add_option("id", node_id, "Node id")->required();
  set_limit->add_option("limit", node_limit, "N or auto")->required();
  set_limit->callback([&] { rc = NodesSetLimit(g, node_id, node_limit); });
  auto* parts =
      app.add_subcommand("partitions", "Partitions")->require_subcommand(1);
  parts->add_subcommand("list", "List partitions and their leaders")
      ->callback([&] { rc = PartitionsList(g); });

  auto* snaps = app.add_subcommand("snapshots", "Cluster snapshots")
                    ->require_subcommand(1);
  std::string partitions, label;
  bool wait = false;
  auto* create = snaps->add_subcommand("create", "Start a cluster snapshot");
  create->add_option("--partitions", partitions,
                     "Partitions to include, e.g. 0,3,5-9 (default: all)");
  create->add_option("--label", label, "Free-text label");
  bool allow_partial = false;
  create->add_flag("--wait", wait,
                   "Show progress and wait; exit 1 if the snapshot fails, "
                   "3 if it is PARTIAL");
  create->add_flag("--allow-partial", allow_partial,
                   "If some partitions fail, commit the others (PARTIAL)");
  create->callback(
      [&] { rc = CreateSnapshot(g, partitions, label, wait, allow_partial); });
  uint32_t limit = 0;
  auto* list = snaps->add_subcommand("list", "List snapshots, newest first");
  list->add_option("--limit", limit, "At most this many (0: all)");
  list->callback([&] { rc = ListSnapshots(g, limit); });
  std::string id;
  auto* show = snaps->add_subcommand(
      "show",
      "Show a snapshot: summary and the partitions that need attention");
  show->add_option("id", id, "Snapshot id")->required();
  bool show_all = false;
  show->add_flag("--all", show_all, "List every partition");
  bool timeline = false;
  show->add_flag("--timeline", timeline,
                 "Draw each node's tasks over time (where the time went, "
                 "which node was the straggler)");
  show->callback([&] { rc = ShowSnapshot(g, id, show_all, timeline); });
  auto* cancel = snaps->add_subcommand(
      "cancel", "Cancel a running snapshot and remove what it published");
  cancel->add_option("id", id, "Snapshot id")->required();
  cancel->callback([&] { rc = CancelSnapshot(g, id); });
  auto* verify = snaps->add_subcommand(
      "verify", "Re-read a committed snapshot and check every file's SHA-256");
  verify->add_option("id", id, "Snapshot id")->required();
  verify->callback([&] { rc = VerifySnapshot(g, id); });

  bool dry_run_restore = false;
  auto* restore = snaps->add_subcommand(
      "restore",
      "Restore a snapshot's partitions onto their current leaders (the "
      "partitions' current data is replaced)");
  restore->add_option("id", id, "Snapshot id")->required();
  restore->add_option("--partitions", partitions,
                      "Partitions to restore, e.g. 0,3,5-9 (default: every "
                      "one the snapshot contains)");
  restore->add_flag("--wait", wait,
                    "Show progress and wait; exit 1 if the restore fails, 3 "
                    "if only some partitions were restored");
  restore->add_flag("--dry-run", dry_run_restore,
                    "Show the plan (per node: partitions, bytes, "
                    "concurrency); change nothing");
  restore->callback(
      [&] { rc = RestoreSnapshot(g, id, partitions, wait, dry_run_restore); });

  auto* restores =
      app.add_subcommand("restores", "Restore jobs")->require_subcommand(1);
  auto* rlist = restores->add_subcommand("list", "List restores, newest first");
  rlist->add_option("--limit", limit, "At most this many (0: all)");
  rlist->callback([&] { rc = ListSnapshots(g, limit, JOB_TYPE_RESTORE); });
  auto* rshow = restores->add_subcommand(
      "show", "Show a restore: summary and the partitions that need attention");
  rshow->add_option("id", id, "Restore id")->required();
  rshow->add_flag("--all", show_all, "List every partition");
  rshow->add_flag("--timeline", timeline, "Draw each node's tasks over time");
  rshow->callback([&] { rc = ShowSnapshot(g, id, show_all, timeline); });
  auto* rcancel = restores->add_subcommand(
      "cancel",
      "Cancel a running restore (partitions not yet swapped keep their data)");
  rcancel->add_option("id", id, "Restore id")->required();
  rcancel->callback([&] { rc = CancelSnapshot(g, id); });

  bool force = false;
  auto* del = snaps->add_subcommand(
      "delete", "Delete a finished snapshot from the repository");
  del->add_option("id", id, "Snapshot id")->required();
  del->add_flag("--force", force,
                "Also delete a pinned snapshot or the newest committed one");
  del->callback([&] { rc = DeleteSnapshot(g, id, force); });
  auto* pin = snaps->add_subcommand("pin", "Keep a snapshot from retention");
  pin->add_option("id", id, "Snapshot id")->required();
  pin->callback([&] { rc = PinSnapshot(g, id, true); });
  auto* unpin = snaps->add_subcommand("unpin", "Undo pin");
  unpin->add_option("id", id, "Snapshot id")->required();
  unpin->callback([&] { rc = PinSnapshot(g, id, false); });
  PruneFlags prune_flags;
  auto* prune = snaps->add_subcommand(
      "prune",
      "Apply retention now: the controller's policy, or the one given here");
  prune->add_flag("--dry-run", prune_flags.dry_run,
                  "Only show what would be deleted");
  prune->add_option("--keep-last", prune_flags.keep_last,
                    "Keep the newest N committed snapshots");
  prune->add_option("--keep-within", prune_flags.keep_within,
                    "Keep snapshots younger than this (e.g. 7d, 36h)");
  prune->add_option("--keep-label", prune_flags.keep_labels,
                    "Keep snapshots with this label (repeatable)");
  prune->callback([&] { rc = Prune(g, prune_flags); });

  auto* repo = app.add_subcommand("repository", "The snapshot repository")
                   ->require_subcommand(1);
  bool gc_dry_run = false;
  std::string gc_grace;
  auto* gc = repo->add_subcommand(
      "gc", "Delete objects no snapshot references (older than the grace)");
  gc->add_flag("--dry-run", gc_dry_run, "Only report what would be freed");
  gc->add_option("--grace", gc_grace,
                 "Keep objects younger than this (default: the controller's "
                 "--gc-grace)");
  gc->callback([&] { rc = RepositoryGc(g, gc_dry_run, gc_grace); });
  repo->add_subcommand("stats", "Snapshots, objects and bytes stored")
      ->callback([&] { rc = RepositoryStats(g); });

  auto* scheds = app.add_subcommand("schedules", "Snapshot schedules")
                     ->require_subcommand(1);
  ScheduleFlags sf;
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
  std::string sched_name;
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

  auto* data = app.add_subcommand("data", "Sample data (reference nodes)")
                   ->require_subcommand(1);
  int keys = 10000, value_size = 1024, batch = 500;
  std::string load_parts;
  auto* load = data->add_subcommand(
      "load", "Write sample keys to partition leaders via PartitionData");
  load->add_option("--keys-per-partition", keys)
      ->capture_default_str()
      ->check(CLI::Range(1, 100000000));
  load->add_option("--value-size", value_size)
      ->capture_default_str()
      ->check(CLI::Range(8, 16 << 20));
  load->add_option("--batch", batch, "Keys per write batch")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  load->add_option("--partitions", load_parts, "Default: all");
  load->callback(
      [&] { rc = LoadData(g, load_parts, keys, value_size, batch); });

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
    const std::vector<std::string> rest = at->remaining();
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
