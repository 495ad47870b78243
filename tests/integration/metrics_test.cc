// Prometheus metrics of both daemons, read over HTTP as Prometheus would
// and checked by Prometheus' own promtool: after a snapshot and a restore
// the counters say so, and `promtool check metrics` accepts every
// endpoint.

#include <csignal>
#include <fstream>
#include <regex>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "gtest/gtest.h"
#include "testing/binaries.h"
#include "testing/http_client.h"
#include "testing/local_cluster.h"
#include "testing/process.h"
#include "testing/shutterctl.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace shutter {
namespace metrics_test {

using testing::PollUntil;
using testing::RunCommand;

// GET http://127.0.0.1:<port><path>: the body of a 200 answer, else an
// error naming the status.
absl::StatusOr<std::string> Scrape(int port,
                                   const std::string& path = "/metrics") {
  testing::HttpRequest req;
  req.url = absl::StrCat("http://127.0.0.1:", port, path);
  absl::StatusOr<testing::HttpResponse> r = testing::Http(req);
  if (!r.ok()) return r.status();
  if (r->status != 200) {
    return absl::InternalError(
        absl::StrCat("bad HTTP answer: status ", r->status, " ", r->body));
  }
  return r->body;
}

// The metrics port a daemon logged ("metrics on ... (port N)").
int MetricsPort(const std::string& log_path) {
  int port = 0;
  PollUntil(
      [&] {
        auto log = fs::ReadFile(log_path);
        if (!log.ok()) return false;
        std::smatch m;
        static const std::regex re("metrics on \\S+ \\(port ([0-9]+)\\)");
        if (!std::regex_search(*log, m, re)) return false;
        return absl::SimpleAtoi(m[1].str(), &port);
      },
      absl::Seconds(30));
  return port;
}

// The value of the sample `series` (exact name and labels), or -1.
double Sample(const std::string& text, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, series + " ")) {
      double v = -1;
      if (absl::SimpleAtod(line.substr(series.size() + 1), &v)) return v;
    }
  }
  return -1;
}

class MetricsTest : public ::testing::Test {
 protected:
  void TearDown() override {
    cluster_.CloseChannels();
    cluster_.StopAllNodes();
    cluster_.StopController(SIGTERM).IgnoreError();
  }

  int Ctl(std::vector<std::string> args) {
    std::string out, err;
    const int rc = testing::RunShutterctl(cluster_, std::move(args), &out, &err,
                                          absl::Seconds(60));
    EXPECT_EQ(rc, 0) << err;
    return rc;
  }

  // `promtool check metrics` on `text`: OK, or its complaint.
  std::string Promtool(const std::string& text, const std::string& name) {
    const std::string path = tmp_.Sub(name + ".prom");
    std::ofstream(path) << text;
    std::string out, err;
    auto rc = RunCommand({"/bin/sh", "-c", "promtool check metrics < " + path},
                         &out, &err, absl::Seconds(60));
    if (!rc.ok()) return rc.status().ToString();
    return *rc == 0 ? "OK" : absl::StrCat("exit ", *rc, ": ", out, err);
  }

  testing::TempDir tmp_;
  testing::LocalCluster cluster_{
      {SHUTTER_CONTROLLER_BIN, SHUTTER_NODE_BIN, tmp_.path(), 2, 2, 2}};
};

TEST_F(MetricsTest, BothDaemonsExposeMetricsThatPromtoolAccepts) {
  std::string out, err;
  auto have = RunCommand({"/bin/sh", "-c", "command -v promtool"}, &out, &err,
                         absl::Seconds(10));
  ASSERT_OK(have);
  if (*have != 0 && getenv("SHUTTER_REQUIRE_PROMTOOL") == nullptr) {
    GTEST_SKIP() << "promtool not installed (Debian package prometheus)";
  }
  ASSERT_EQ(*have, 0) << "promtool is required (SHUTTER_REQUIRE_PROMTOOL)";
  const std::vector<std::string> metrics = {"--metrics-listen", "127.0.0.1:0"};
  ASSERT_OK(cluster_.StartController(metrics));
  ASSERT_OK(cluster_.StartAllNodes(metrics));
  ASSERT_OK(cluster_.WaitForLeaders(absl::Seconds(30)));
  for (uint32_t p = 0; p < 4; ++p) {
    ASSERT_OK(cluster_.Write(p, {{"k", "v"}}));
  }
  ASSERT_EQ(Ctl({"snapshots", "create", "--wait"}), 0);
  std::string snap_out, snap_err;
  auto rc = RunCommand({SHUTTERCTL_BIN, "snapshots", "list", "--limit", "1"},
                       &snap_out, &snap_err, absl::Seconds(30),
                       {"SHUTTER_CONTROLLER=" + cluster_.controller_address()});
  ASSERT_OK(rc);
  std::vector<std::string> lines = absl::StrSplit(snap_out, '\n');
  ASSERT_GE(lines.size(), 2u);
  const std::string id = lines[1].substr(0, lines[1].find(' '));
  ASSERT_EQ(Ctl({"snapshots", "restore", id, "--wait"}), 0);
  // The timeline: a row (or more) per node, the straggler marked.
  rc = RunCommand({SHUTTERCTL_BIN, "snapshots", "show", id, "--timeline"},
                  &snap_out, &snap_err, absl::Seconds(30),
                  {"SHUTTER_CONTROLLER=" + cluster_.controller_address()});
  ASSERT_OK(rc);
  ASSERT_EQ(*rc, 0) << snap_err;
  EXPECT_TRUE(absl::StrContains(snap_out, "n1 ")) << snap_out;
  EXPECT_TRUE(absl::StrContains(snap_out, "n2 ")) << snap_out;
  EXPECT_TRUE(absl::StrContains(snap_out, "2 tasks, done at")) << snap_out;
  EXPECT_TRUE(absl::StrContains(snap_out, "<- last to finish")) << snap_out;

  const int controller_port = MetricsPort(tmp_.Sub("controller.log"));
  ASSERT_GT(controller_port, 0);
  auto c = Scrape(controller_port);
  ASSERT_OK(c);
  EXPECT_EQ(Promtool(*c, "controller"), "OK");
  EXPECT_EQ(
      Sample(*c, R"(shutter_jobs_total{state="committed",type="snapshot"})"),
      1);
  EXPECT_EQ(
      Sample(*c, R"(shutter_jobs_total{state="committed",type="restore"})"), 1);
  EXPECT_EQ(
      Sample(
          *c,
          R"(shutter_partition_tasks_total{outcome="published",type="snapshot"})"),
      4);
  EXPECT_EQ(Sample(*c, R"(shutter_registry_nodes{state="alive"})"), 2);
  EXPECT_EQ(Sample(*c, "shutter_registry_partitions"), 4);
  EXPECT_GT(
      Sample(*c, R"(shutter_last_success_timestamp_seconds{type="snapshot"})"),
      1.7e9);
  EXPECT_GE(Sample(*c, "shutter_job_store_write_seconds_count"), 2);
  EXPECT_GE(Sample(*c, "shutter_task_queue_wait_seconds_count"), 8);
  EXPECT_EQ(Sample(*c, R"(shutter_node_limit{node="n1"})"), 2);
  EXPECT_GE(
      Sample(
          *c,
          R"(shutter_rpc_duration_seconds_count{code="OK",method="CreateSnapshot",service="AdminService"})"),
      1);
  // Both nodes heartbeat over a stream each (not unary calls).
  EXPECT_EQ(Sample(*c, "shutter_controller_heartbeat_streams"), 2);
  EXPECT_EQ(Sample(*c, "shutter_auth_denials_total"), 0);

  for (int i = 0; i < 2; ++i) {
    SCOPED_TRACE(absl::StrCat("node ", i));
    const int port = MetricsPort(tmp_.Sub(absl::StrCat("node", i, ".log")));
    ASSERT_GT(port, 0);
    auto n = Scrape(port);
    ASSERT_OK(n);
    EXPECT_EQ(Promtool(*n, absl::StrCat("node", i)), "OK");
    EXPECT_EQ(
        Sample(*n, R"(shutter_node_checkpoints_total{outcome="published"})"),
        2);
    EXPECT_EQ(Sample(*n, R"(shutter_node_restores_total{outcome="restored"})"),
              2);
    EXPECT_EQ(
        Sample(
            *n,
            R"(shutter_node_checkpoint_phase_seconds_count{phase="publish"})"),
        2);
    EXPECT_GT(Sample(*n, "shutter_node_published_bytes_total"), 0);
    EXPECT_GT(Sample(*n, "shutter_node_restored_bytes_total"), 0);
    EXPECT_EQ(Sample(*n, "shutter_node_write_seconds_count"), 2);
    EXPECT_GT(Sample(*n, "shutter_node_filesystem_free_bytes"), 0);
    EXPECT_EQ(Sample(*n, "shutter_node_checkpoint_capacity"), 2);
  }
}

// Every metric the alert rules and the dashboard use is in a fresh scrape
// of the daemons (one schedule created, no job run yet), and the counters
// an alert takes increase() of are there at 0: a series born at 1 would
// hide the first failure (deploy/prometheus/shutter-alerts.test.yml).
TEST_F(MetricsTest, AFreshScrapeHasEveryMetricTheAlertsAndDashboardUse) {
  const std::vector<std::string> metrics = {"--metrics-listen", "127.0.0.1:0"};
  ASSERT_OK(cluster_.StartController(metrics));
  ASSERT_OK(cluster_.StartAllNodes(metrics));
  ASSERT_OK(cluster_.WaitForLeaders(absl::Seconds(30)));
  ASSERT_EQ(Ctl({"schedules", "create", "nightly", "--cron", "0 3 * * *"}), 0);
  for (uint32_t p = 0; p < 4; ++p) {
    ASSERT_OK(cluster_.Write(p, {{"k", "v"}}));
  }
  // The names the rules and the dashboard query.
  std::set<std::string> wanted;
  for (const char* file : {"deploy/prometheus/shutter-alerts.yml",
                           "deploy/grafana/shutter-dashboard.json"}) {
    auto text = fs::ReadFile(absl::StrCat(SHUTTER_SOURCE_DIR, "/", file));
    ASSERT_OK(text);
    static const std::regex name_re("shutter_[a-z0-9_]+");
    for (auto it = std::sregex_iterator(text->begin(), text->end(), name_re);
         it != std::sregex_iterator(); ++it) {
      wanted.insert(it->str());
    }
  }
  ASSERT_GE(wanted.size(), 20u);
  const int controller_port = MetricsPort(tmp_.Sub("controller.log"));
  const int node_port = MetricsPort(tmp_.Sub("node0.log"));
  ASSERT_GT(controller_port, 0);
  ASSERT_GT(node_port, 0);
  // Per-node load arrives with the nodes' heartbeats: poll (bounded).
  std::string c, n;
  std::set<std::string> missing;
  PollUntil(
      [&] {
        // Foreground write latency is reported for intervals with writes.
        for (uint32_t p = 0; p < 4; ++p) {
          cluster_.Write(p, {{"k", "v"}}).IgnoreError();
        }
        auto cs = Scrape(controller_port);
        auto ns = Scrape(node_port);
        if (!cs.ok() || !ns.ok()) return false;
        c = *cs;
        n = *ns;
        missing.clear();
        for (const std::string& name : wanted) {
          const std::string line = "\n" + name;
          if (!absl::StrContains("\n" + c, line + "{") &&
              !absl::StrContains("\n" + c, line + " ") &&
              !absl::StrContains("\n" + n, line + "{") &&
              !absl::StrContains("\n" + n, line + " ")) {
            missing.insert(name);
          }
        }
        return missing.empty();
      },
      absl::Seconds(30));
  EXPECT_TRUE(missing.empty())
      << "not in a fresh scrape: " << absl::StrJoin(missing, ", ");
  // The counters the paging alerts and the retry panel watch, at 0.
  for (const char* type : {"snapshot", "restore"}) {
    for (const char* state : {"committed", "partial", "failed", "cancelled"}) {
      EXPECT_EQ(Sample(c, absl::StrCat(R"(shutter_jobs_total{state=")", state,
                                       R"(",type=")", type, R"("})")),
                0)
          << type << " " << state;
    }
    for (const char* cls : {"leadership", "busy", "deadline", "transient"}) {
      EXPECT_EQ(Sample(c, absl::StrCat(R"(shutter_task_retries_total{class=")",
                                       cls, R"(",type=")", type, R"("})")),
                0)
          << type << " " << cls;
    }
    for (const char* o : {"published", "retried", "waiting", "failed"}) {
      EXPECT_EQ(
          Sample(c, absl::StrCat(R"(shutter_partition_tasks_total{outcome=")",
                                 o, R"(",type=")", type, R"("})")),
          0)
          << type << " " << o;
    }
  }
  EXPECT_EQ(Sample(n, R"(shutter_node_checkpoints_total{outcome="failed"})"),
            0);
  EXPECT_EQ(Sample(n, R"(shutter_node_restores_total{outcome="failed"})"), 0);
  // No snapshot yet: the age the alert watches counts from the start.
  EXPECT_GT(
      Sample(c, R"(shutter_last_success_timestamp_seconds{type="snapshot"})"),
      1.7e9);
}

// The metrics server answers its exact paths only.
TEST_F(MetricsTest, OnlyTheExactMetricsPathIsServed) {
  ASSERT_OK(cluster_.StartController({"--metrics-listen", "127.0.0.1:0"}));
  const int port = MetricsPort(tmp_.Sub("controller.log"));
  ASSERT_GT(port, 0);
  EXPECT_OK(Scrape(port, "/metrics"));
  for (const char* path : {"/metricsx", "/metrics/x", "/", "/metrics.txt"}) {
    auto r = Scrape(port, path);
    ASSERT_FALSE(r.ok()) << path;
    EXPECT_TRUE(absl::StrContains(r.status().message(), " 404 "))
        << path << ": " << r.status();
  }
}

}  // namespace metrics_test
}  // namespace shutter
