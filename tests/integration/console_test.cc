// The operator console (--console-listen) against a real cluster: its JSON
// views say what the admin API says while a snapshot runs and after it
// commits; actions need the CSRF header; with TLS, nothing but the login
// form is served without a session, a viewer reads but cannot act, an
// operator can, and logging out ends the session.

#include "controller/console.h"

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/rpc.h"
#include "common/security.h"
#include "gtest/gtest.h"
#include "testing/binaries.h"
#include "testing/certs.h"
#include "testing/etcd_server.h"
#include "testing/http_client.h"
#include "testing/local_cluster.h"
#include "testing/process.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace shutter {
namespace console_test {

using namespace shutter::v1;  // NOLINT
using testing::Http;
using testing::HttpRequest;
using testing::HttpResponse;
using testing::PollUntil;

constexpr int kNodes = 3;
constexpr int kPerNode = 4;

// Counts occurrences of `needle` in `s`.
int Count(const std::string& s, const std::string& needle) {
  int n = 0;
  for (size_t at = s.find(needle); at != std::string::npos;
       at = s.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

// The string value of a top-level "key":"value" in a flat JSON answer.
std::string JsonField(const std::string& json, const std::string& key) {
  const std::string k = "\"" + key + "\":\"";
  const size_t at = json.find(k);
  if (at == std::string::npos) return "";
  const size_t end = json.find('"', at + k.size());
  return json.substr(at + k.size(), end - at - k.size());
}

// Runs tests/browser/console_browser.py (headless Chromium over the
// DevTools protocol) with `args`; its failed checks in the failure message.
// Skips when Chromium or python3-websocket is missing, unless
// SHUTTER_REQUIRE_BROWSER=1 (scripts/test.sh) makes that a failure.
// Screenshots go to $SHUTTER_SCREENSHOT_DIR/<name> when set (CI keeps
// them), else below `tmp`.
void RunBrowser(const std::string& name, const testing::TempDir& tmp,
                std::vector<std::string> args) {
  const bool required = getenv("SHUTTER_REQUIRE_BROWSER") != nullptr &&
                        std::string(getenv("SHUTTER_REQUIRE_BROWSER")) == "1";
  std::string out, err;
  auto probe = testing::RunCommand(
      {"/bin/sh", "-c",
       "command -v chromium && /usr/bin/python3 -c 'import websocket'"},
      &out, &err, absl::Seconds(30));
  if (!probe.ok() || *probe != 0) {
    if (required) {
      FAIL() << "chromium or python3-websocket missing (scripts/"
                "install-deps.sh installs them)";
    }
    GTEST_SKIP() << "chromium or python3-websocket missing";
  }
  const char* dir = getenv("SHUTTER_SCREENSHOT_DIR");
  const std::string shots = dir != nullptr && *dir != '\0'
                                ? absl::StrCat(dir, "/", name)
                                : tmp.Sub("screenshots");
  std::vector<std::string> argv = {
      "/usr/bin/python3",
      absl::StrCat(SHUTTER_SOURCE_DIR, "/tests/browser/console_browser.py"),
      "--out", shots};
  argv.insert(argv.end(), args.begin(), args.end());
  auto rc = testing::RunCommand(argv, &out, &err, absl::Seconds(300));
  ASSERT_OK(rc);
  EXPECT_EQ(*rc, 0) << "browser checks failed:\n" << err << out;
  std::cerr << "console screenshots: " << shots << "\n";
}

class ConsoleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto port = testing::PickFreePort();
    ASSERT_OK(port);
    base_ = absl::StrCat("http://127.0.0.1:", *port);
    ASSERT_OK(cluster_.StartController(
        {"--console-listen", absl::StrCat("127.0.0.1:", *port)}));
    // Slow publishing, so the snapshot is seen running.
    ASSERT_OK(cluster_.StartAllNodes({"--publish-stream-mibps", "1"}));
    ASSERT_OK(cluster_.WaitForLeaders(absl::Seconds(30)));
    ASSERT_OK(cluster_.LoadRandom(/*keys=*/384, /*value_size=*/1024,
                                  /*batch=*/128));
  }
  void TearDown() override {
    cluster_.CloseChannels();
    cluster_.StopAllNodes();
    cluster_.StopController(SIGTERM).IgnoreError();
  }

  HttpResponse Get(const std::string& path) {
    HttpRequest req;
    req.url = base_ + path;
    auto r = Http(req);
    EXPECT_OK(r);
    return r.ok() ? *r : HttpResponse{};
  }
  HttpResponse Post(const std::string& path, const std::string& body,
                    const std::string& csrf) {
    HttpRequest req;
    req.method = "POST";
    req.url = base_ + path;
    req.body = body;
    if (!csrf.empty()) req.headers.push_back("X-Shutter-CSRF: " + csrf);
    auto r = Http(req);
    EXPECT_OK(r);
    return r.ok() ? *r : HttpResponse{};
  }
  int Jobs() {
    ListSnapshotsResponse list;
    grpc::ClientContext ctx;
    EXPECT_TRUE(cluster_.admin()->ListSnapshots(&ctx, {}, &list).ok());
    return list.snapshots_size();
  }

  testing::TempDir tmp_;
  std::string base_;
  testing::LocalCluster cluster_{{SHUTTER_CONTROLLER_BIN, SHUTTER_NODE_BIN,
                                  tmp_.path(), kNodes, kPerNode,
                                  /*capacity=*/1}};
};

TEST_F(ConsoleTest, ViewsFollowASnapshotAsItRunsAndActionsNeedCsrf) {
  // The pages and assets, with their security headers.
  HttpResponse page = Get("/");
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.body.find("Shutter console"), std::string::npos);
  EXPECT_NE(page.Header("Content-Security-Policy").find("default-src 'self'"),
            std::string::npos);
  EXPECT_EQ(page.Header("X-Frame-Options"), "DENY");
  HttpResponse js = Get("/console.js");
  EXPECT_EQ(js.status, 200);
  EXPECT_TRUE(absl::StartsWith(js.Header("Content-Type"), "text/javascript"));
  EXPECT_EQ(Get("/nope").status, 404);

  // No authorization (--insecure): one implicit operator session.
  HttpResponse session = Get("/api/v1/session");
  ASSERT_EQ(session.status, 200) << session.body;
  EXPECT_NE(session.body.find("\"auth\":false"), std::string::npos);
  const std::string csrf = JsonField(session.body, "csrf");
  ASSERT_EQ(csrf.size(), 32u) << session.body;

  auto id = cluster_.CreateSnapshot();
  ASSERT_OK(id);
  // Live: the timeline shows tasks running on their nodes, and the
  // overview lists the job as running.
  HttpResponse tl;
  ASSERT_TRUE(PollUntil(
      [&] {
        tl = Get("/api/v1/jobs/" + *id + "/timeline");
        return tl.status == 200 && absl::StrContains(tl.body, ",\"r\",");
      },
      absl::Seconds(60)))
      << tl.body;
  HttpResponse overview = Get("/api/v1/overview");
  ASSERT_EQ(overview.status, 200) << overview.body;
  EXPECT_NE(overview.body.find(*id), std::string::npos) << overview.body;
  EXPECT_NE(overview.body.find("\"nodes\":{\"total\":3,\"alive\":3}"),
            std::string::npos)
      << overview.body;
  EXPECT_NE(overview.body.find("\"leaderless\":0"), std::string::npos);

  auto snap = cluster_.WaitForSnapshot(*id, absl::Seconds(120));
  ASSERT_OK(snap);
  ASSERT_EQ(snap->state(), SNAPSHOT_STATE_COMMITTED);
  // After the commit: every partition once, published, on the node the
  // admin API names, with its attempts.
  tl = Get("/api/v1/jobs/" + *id + "/timeline");
  ASSERT_EQ(tl.status, 200);
  EXPECT_NE(tl.body.find("\"state\":\"SNAPSHOT_STATE_COMMITTED\""),
            std::string::npos);
  EXPECT_EQ(Count(tl.body, ",\"p\","), kNodes * kPerNode) << tl.body;
  for (int i = 0; i < kNodes; ++i) {
    EXPECT_NE(tl.body.find("\"" + testing::LocalCluster::NodeId(i) + "\""),
              std::string::npos);
  }
  const size_t names = tl.body.find("\"nodes\":[");
  ASSERT_NE(names, std::string::npos);
  std::vector<std::string> node_order;
  {
    size_t at = names + 9;
    while (tl.body[at] == '"') {
      const size_t end = tl.body.find('"', at + 1);
      node_order.push_back(tl.body.substr(at + 1, end - at - 1));
      at = end + 2;
    }
  }
  ASSERT_EQ(node_order.size(), static_cast<size_t>(kNodes));
  for (const auto& t : snap->partitions()) {
    int ni = -1;
    for (int i = 0; i < kNodes; ++i) {
      if (node_order[i] == t.node_id()) ni = i;
    }
    ASSERT_GE(ni, 0) << t.node_id();
    EXPECT_NE(tl.body.find(absl::StrCat("[", t.partition_id(), ",", ni, ",")),
              std::string::npos)
        << "partition " << t.partition_id();
  }

  // The job list with its filters, and one page of the job.
  HttpResponse list = Get("/api/v1/jobs?type=snapshot&state=committed");
  ASSERT_EQ(list.status, 200);
  EXPECT_NE(list.body.find(*id), std::string::npos);
  EXPECT_EQ(Get("/api/v1/jobs?state=failed").body.find(*id), std::string::npos);
  HttpResponse bad = Get("/api/v1/jobs?type=bogus");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("INVALID_ARGUMENT"), std::string::npos);
  HttpResponse one = Get("/api/v1/jobs/" + *id + "?page_size=5");
  ASSERT_EQ(one.status, 200);
  EXPECT_EQ(Count(one.body, "\"partition_id\""), 5) << one.body;
  EXPECT_NE(JsonField(one.body, "next_page_token"), "");
  HttpResponse missing = Get("/api/v1/jobs/20990101T000000.000Z-00000000");
  EXPECT_EQ(missing.status, 404) << missing.body;
  EXPECT_NE(missing.body.find("NOT_FOUND"), std::string::npos);

  HttpResponse nodes = Get("/api/v1/nodes");
  EXPECT_EQ(Count(nodes.body, "\"alive\":true"), kNodes) << nodes.body;
  EXPECT_NE(Get("/api/v1/controllers").body.find("CONTROLLER_ROLE_LEADER"),
            std::string::npos);
  EXPECT_NE(Get("/api/v1/repository").body.find("\"snapshots\":\"1\""),
            std::string::npos);

  // Actions: refused without the CSRF header (nothing created), done with
  // it.
  const int before = Jobs();
  HttpResponse refused = Post("/api/v1/snapshots", "{\"label\":\"x\"}", "");
  EXPECT_EQ(refused.status, 403);
  EXPECT_EQ(Post("/api/v1/snapshots", "{}", "wrong").status, 403);
  EXPECT_EQ(Jobs(), before);
  HttpResponse created =
      Post("/api/v1/snapshots", "{\"label\":\"from-console\"}", csrf);
  ASSERT_EQ(created.status, 200) << created.body;
  const std::string second = JsonField(created.body, "snapshot_id");
  ASSERT_FALSE(second.empty());
  EXPECT_EQ(Jobs(), before + 1);
  EXPECT_EQ(Post("/api/v1/snapshots", "not json", csrf).status, 400);
  HttpResponse cancel = Post("/api/v1/jobs/" + second + "/cancel", "", csrf);
  ASSERT_EQ(cancel.status, 200) << cancel.body;
  auto cancelled = cluster_.WaitForSnapshot(second, absl::Seconds(60));
  ASSERT_OK(cancelled);
  EXPECT_EQ(cancelled->state(), SNAPSHOT_STATE_CANCELLED);
  EXPECT_EQ(cancelled->label(), "from-console");
}

// What an operator decides with: bytes uploaded against reused per
// partition and per snapshot, the repository's growth and its GC runs, and
// a restore whose plan (a dry run, nothing recorded) comes first; the
// controllers list names this console's URL.
TEST_F(ConsoleTest, RestorePlanFirstBytesUploadedVsReusedAndRepository) {
  const std::string csrf = JsonField(Get("/api/v1/session").body, "csrf");
  std::vector<std::string> ids;
  for (int i = 0; i < 2; ++i) {
    auto id = cluster_.CreateSnapshot();
    ASSERT_OK(id);
    auto snap = cluster_.WaitForSnapshot(*id, absl::Seconds(120));
    ASSERT_OK(snap);
    ASSERT_EQ(snap->state(), SNAPSHOT_STATE_COMMITTED);
    // Each partition's publish: uploaded + reused = what it holds.
    uint64_t uploaded = 0, total = 0;
    for (const auto& t : snap->partitions()) {
      EXPECT_EQ(t.uploaded_bytes() + t.reused_bytes(), t.total_bytes())
          << "partition " << t.partition_id();
      uploaded += t.uploaded_bytes();
      total += t.total_bytes();
    }
    HttpResponse job = Get("/api/v1/jobs/" + *id + "?page_size=1");
    ASSERT_EQ(job.status, 200);
    const size_t summary = job.body.find("\"summary\":");
    ASSERT_NE(summary, std::string::npos) << job.body;
    EXPECT_NE(
        job.body.find(absl::StrCat("\"uploaded_bytes\":\"", uploaded, "\""),
                      summary),
        std::string::npos)
        << job.body;
    EXPECT_NE(job.body.find("\"reused_bytes\""), std::string::npos);
    if (i == 0) {
      EXPECT_EQ(uploaded, total);
    } else {
      // Nothing written in between: the second uploads (almost) nothing.
      EXPECT_LT(uploaded * 10, total);
    }
    ids.push_back(*id);
  }

  // The repository view: growth oldest first, then a GC run with its
  // figures.
  HttpResponse repo = Get("/api/v1/repository");
  ASSERT_EQ(repo.status, 200);
  const size_t g0 = repo.body.find("[\"" + ids[0] + "\"");
  const size_t g1 = repo.body.find("[\"" + ids[1] + "\"");
  ASSERT_NE(g0, std::string::npos) << repo.body;
  ASSERT_NE(g1, std::string::npos) << repo.body;
  EXPECT_LT(g0, g1);
  EXPECT_NE(repo.body.find("\"gc_runs\":[]"), std::string::npos);
  CollectGarbageRequest gc_req;
  gc_req.set_grace_seconds(0);
  CollectGarbageResponse gc;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(cluster_.admin()->CollectGarbage(&ctx, gc_req, &gc).ok());
  }
  auto gc_job = cluster_.WaitForSnapshot(gc.gc_id(), absl::Seconds(60));
  ASSERT_OK(gc_job);
  EXPECT_EQ(gc_job->state(), SNAPSHOT_STATE_COMMITTED);
  repo = Get("/api/v1/repository");
  EXPECT_NE(repo.body.find("\"gc_id\":\"" + gc.gc_id() + "\""),
            std::string::npos)
      << repo.body;
  EXPECT_NE(repo.body.find("\"objects_scanned\""), std::string::npos);
  // The overview says when the repository was last collected.
  const std::string overview = Get("/api/v1/overview").body;
  EXPECT_NE(overview.find("\"last_gc\":{\"snapshot_id\":\"" + gc.gc_id()),
            std::string::npos)
      << overview;

  // A restore: the plan first, and nothing recorded by it.
  const std::string plan_req =
      absl::StrCat("{\"snapshot_id\":\"", ids[0], "\",\"dry_run\":true}");
  EXPECT_EQ(Post("/api/v1/restores", plan_req, "").status, 403);
  HttpResponse plan = Post("/api/v1/restores", plan_req, csrf);
  ASSERT_EQ(plan.status, 200) << plan.body;
  EXPECT_NE(plan.body.find(absl::StrCat("\"partitions\":", kNodes * kPerNode)),
            std::string::npos)
      << plan.body;
  for (int i = 0; i < kNodes; ++i) {
    EXPECT_NE(plan.body.find("\"node_id\":\"" +
                             testing::LocalCluster::NodeId(i) + "\""),
              std::string::npos);
  }
  EXPECT_EQ(JsonField(plan.body, "restore_id"), "");
  EXPECT_EQ(Count(Get("/api/v1/jobs?type=restore").body, "\"snapshot_id\""), 0);
  EXPECT_EQ(Post("/api/v1/restores",
                 "{\"snapshot_id\":\"20990101T000000.000Z-00000000\"}", csrf)
                .status,
            404);
  // Started with a key: the same click sent twice is one restore.
  const std::string start = absl::StrCat("{\"snapshot_id\":\"", ids[0],
                                         "\",\"request_id\":\"console-1\"}");
  HttpResponse r1 = Post("/api/v1/restores", start, csrf);
  ASSERT_EQ(r1.status, 200) << r1.body;
  HttpResponse r2 = Post("/api/v1/restores", start, csrf);
  ASSERT_EQ(r2.status, 200) << r2.body;
  const std::string restore_id = JsonField(r1.body, "restore_id");
  ASSERT_FALSE(restore_id.empty());
  EXPECT_EQ(JsonField(r2.body, "restore_id"), restore_id);
  auto restored = cluster_.WaitForSnapshot(restore_id, absl::Seconds(120));
  ASSERT_OK(restored);
  EXPECT_EQ(restored->state(), SNAPSHOT_STATE_COMMITTED);
  EXPECT_EQ(Count(Get("/api/v1/jobs?type=restore").body, "\"snapshot_id\""), 1);

  // This console's URL, as the other controllers' consoles link to it.
  EXPECT_NE(Get("/api/v1/controllers")
                .body.find("\"console_url\":\"" + base_ + "/\""),
            std::string::npos);
}

// In a real browser: every page loads and shows what the admin API says,
// the job page follows the snapshot live to COMMITTED, keyboard and phone
// width work; screenshots of every page.
TEST_F(ConsoleTest, InABrowserThePagesFollowASnapshotLive) {
  // Longer tasks than the other test: the browser must see the job run.
  ASSERT_OK(cluster_.LoadRandom(/*keys=*/2048, /*value_size=*/1024,
                                /*batch=*/256));
  auto id = cluster_.CreateSnapshot();
  ASSERT_OK(id);
  std::vector<std::string> nodes;
  for (int i = 0; i < kNodes; ++i) {
    nodes.push_back(testing::LocalCluster::NodeId(i));
  }
  RunBrowser(
      "insecure", tmp_,
      {"--url", base_, "--job", *id, "--nodes", absl::StrJoin(nodes, ","),
       "--partitions", absl::StrCat(kNodes * kPerNode)});
  auto snap = cluster_.WaitForSnapshot(*id, absl::Seconds(120));
  ASSERT_OK(snap);
  EXPECT_EQ(snap->state(), SNAPSHOT_STATE_COMMITTED);
}

constexpr char kOperatorToken[] = "op-0123456789abcdef0123456789abcdef";
constexpr char kViewerToken[] = "view-0123456789abcdef0123456789abcde";

// With TLS and tokens: HTTPS with the controller's certificate, login,
// roles, CSRF, logout.
class ConsoleAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = testing::TestCa::Create("Shutter Test CA", tmp_.path(), "ca");
    ASSERT_OK(ca);
    ca_ = std::move(ca).value();
    auto controller = ca_->Issue("shutter-controller", "controller");
    ASSERT_OK(controller);
    std::vector<testing::CertFiles> nodes;
    for (int i = 0; i < 2; ++i) {
      auto n =
          ca_->Issue(testing::LocalCluster::NodeId(i), absl::StrCat("node", i));
      ASSERT_OK(n);
      nodes.push_back(*n);
    }
    const std::string tokens = tmp_.Sub("tokens");
    std::ofstream(tokens) << "operator " << kOperatorToken << "\nviewer "
                          << kViewerToken << "\n";
    cluster_.SetSecurity(
        {"--tls-cert", controller->cert, "--tls-key", controller->key,
         "--tls-ca", ca_->cert_path(), "--admin-token-file", tokens,
         "--admin-identities",
         "shutter-controller=operator,alice=viewer,bob=operator"},
        [this, nodes](int i) {
          return std::vector<std::string>{"--tls-cert", nodes[i].cert,
                                          "--tls-key",  nodes[i].key,
                                          "--tls-ca",   ca_->cert_path()};
        });
    TlsOptions o;
    o.cert = controller->cert;
    o.key = controller->key;
    o.ca = ca_->cert_path();
    SetTransportSecurity(nullptr, MakeChannelCredentials(o), nullptr);
    auto port = testing::PickFreePort();
    ASSERT_OK(port);
    base_ = absl::StrCat("https://127.0.0.1:", *port);
    ASSERT_OK(cluster_.StartController(
        {"--console-listen", absl::StrCat("127.0.0.1:", *port)}));
    ASSERT_OK(cluster_.StartAllNodes());
    ASSERT_OK(cluster_.WaitForLeaders(absl::Seconds(30)));
    started_ = true;
  }
  void TearDown() override {
    cluster_.CloseChannels();
    cluster_.StopAllNodes();
    cluster_.StopController(SIGTERM).IgnoreError();
    SetTransportSecurity(nullptr, nullptr, nullptr);
  }

  HttpResponse Do(const std::string& method, const std::string& path,
                  const std::string& body = "",
                  std::vector<std::string> headers = {}) {
    HttpRequest req;
    req.method = method;
    req.url = base_ + path;
    req.body = body;
    req.headers = std::move(headers);
    req.ca = ca_->cert_path();
    auto r = Http(req);
    EXPECT_OK(r);
    return r.ok() ? *r : HttpResponse{};
  }
  // Logs in with `token`; returns the "Cookie: ..." header to send.
  std::string Login(const std::string& token) {
    HttpResponse r = Do("POST", "/login", "token=" + token,
                        {"Content-Type: application/x-www-form-urlencoded"});
    EXPECT_EQ(r.status, 303) << r.body;
    const std::string set = r.Header("Set-Cookie");
    EXPECT_NE(set.find("HttpOnly"), std::string::npos) << set;
    EXPECT_NE(set.find("SameSite=Strict"), std::string::npos) << set;
    EXPECT_NE(set.find("Secure"), std::string::npos) << set;
    return "Cookie: " + set.substr(0, set.find(';'));
  }

  testing::TempDir tmp_;
  std::unique_ptr<testing::TestCa> ca_;
  std::string base_;
  bool started_ = false;
  testing::LocalCluster cluster_{{SHUTTER_CONTROLLER_BIN, SHUTTER_NODE_BIN,
                                  tmp_.path(), 2, 2, /*capacity=*/2}};
};

TEST_F(ConsoleAuthTest, LoginRolesCsrfAndLogout) {
  // Nothing but the login form without a session.
  HttpResponse page = Do("GET", "/");
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.body.find("name=\"token\""), std::string::npos);
  EXPECT_EQ(page.body.find("console.js"), std::string::npos);
  HttpResponse api = Do("GET", "/api/v1/overview");
  EXPECT_EQ(api.status, 401);
  EXPECT_EQ(api.body.find("nodes"), std::string::npos);
  // A wrong token: the form again, no cookie.
  HttpResponse wrong = Do("POST", "/login", "token=not-a-token-0123456789",
                          {"Content-Type: application/x-www-form-urlencoded"});
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(wrong.Header("Set-Cookie"), "");
  EXPECT_EQ(Do("GET", "/api/v1/nodes", "",
               {"Cookie: shutter_session=0123456789abcdef"})
                .status,
            401);

  // A viewer reads everything, but cannot act.
  const std::string viewer = Login(kViewerToken);
  HttpResponse overview = Do("GET", "/api/v1/overview", "", {viewer});
  ASSERT_EQ(overview.status, 200) << overview.body;
  EXPECT_NE(overview.body.find("\"alive\":2"), std::string::npos);
  HttpResponse session = Do("GET", "/api/v1/session", "", {viewer});
  EXPECT_NE(session.body.find("\"role\":\"viewer\""), std::string::npos);
  const std::string viewer_csrf = JsonField(session.body, "csrf");
  HttpResponse denied = Do("POST", "/api/v1/snapshots", "{}",
                           {viewer, "X-Shutter-CSRF: " + viewer_csrf});
  EXPECT_EQ(denied.status, 403) << denied.body;
  EXPECT_NE(denied.body.find("PERMISSION_DENIED"), std::string::npos);

  // An operator acts, with the CSRF header of its own session only.
  const std::string op = Login(kOperatorToken);
  const std::string op_csrf =
      JsonField(Do("GET", "/api/v1/session", "", {op}).body, "csrf");
  ASSERT_NE(op_csrf, viewer_csrf);
  EXPECT_EQ(Do("POST", "/api/v1/snapshots", "{}", {op}).status, 403);
  EXPECT_EQ(Do("POST", "/api/v1/snapshots", "{}",
               {op, "X-Shutter-CSRF: " + viewer_csrf})
                .status,
            403);
  HttpResponse created =
      Do("POST", "/api/v1/snapshots", "{}", {op, "X-Shutter-CSRF: " + op_csrf});
  ASSERT_EQ(created.status, 200) << created.body;
  auto snap = cluster_.WaitForSnapshot(JsonField(created.body, "snapshot_id"),
                                       absl::Seconds(60));
  ASSERT_OK(snap);
  EXPECT_EQ(snap->state(), SNAPSHOT_STATE_COMMITTED);

  // Scripts: a bearer token reads, but a POST with it is refused.
  EXPECT_EQ(Do("GET", "/api/v1/nodes", "",
               {std::string("Authorization: Bearer ") + kViewerToken})
                .status,
            200);
  EXPECT_EQ(Do("GET", "/api/v1/nodes", "",
               {"Authorization: Bearer not-a-token-0123456789"})
                .status,
            401);
  EXPECT_EQ(Do("POST", "/api/v1/snapshots", "{}",
               {std::string("Authorization: Bearer ") + kOperatorToken,
                "X-Shutter-CSRF: " + op_csrf})
                .status,
            403);

  // Logging out ends the session.
  EXPECT_EQ(
      Do("POST", "/logout", "", {op, "X-Shutter-CSRF: " + op_csrf}).status,
      200);
  EXPECT_EQ(Do("GET", "/api/v1/overview", "", {op}).status, 401);
  EXPECT_EQ(Do("GET", "/api/v1/overview", "", {viewer}).status, 200);
}

// Client certificates: one on the admin list logs its holder in with its
// role (no token, nothing to log out of), one not on it sees the login
// form only, one from another CA gets no TLS connection. A pin shows in
// the node's limit history and as an overview warning. Ten refused logins
// from one address shut the form for that address (429), certificates
// still work.
TEST_F(ConsoleAuthTest, ClientCertificatesLimitHistoryAndLoginLimit) {
  auto alice = ca_->Issue("alice", "alice");  // viewer
  ASSERT_OK(alice);
  auto bob = ca_->Issue("bob", "bob");  // operator
  ASSERT_OK(bob);
  auto mallory = ca_->Issue("mallory", "mallory");  // not on the list
  ASSERT_OK(mallory);
  auto other = testing::TestCa::Create("Other CA", tmp_.path(), "other-ca");
  ASSERT_OK(other);
  auto forged = (*other)->Issue("bob", "forged-bob");
  ASSERT_OK(forged);
  auto as = [&](const testing::CertFiles& c, const std::string& method,
                const std::string& path,
                std::vector<std::string> headers = {}) {
    HttpRequest req;
    req.method = method;
    req.url = base_ + path;
    req.body = method == "POST" ? "{}" : "";
    req.headers = std::move(headers);
    req.ca = ca_->cert_path();
    req.cert = c.cert;
    req.key = c.key;
    return Http(req);
  };
  auto session = as(*alice, "GET", "/api/v1/session");
  ASSERT_OK(session);
  ASSERT_EQ(session->status, 200) << session->body;
  EXPECT_NE(session->body.find("\"role\":\"viewer\""), std::string::npos);
  EXPECT_NE(session->body.find("\"certificate\":\"alice\""), std::string::npos);
  const std::string alice_csrf = JsonField(session->body, "csrf");
  auto denied = as(*alice, "POST", "/api/v1/snapshots",
                   {"X-Shutter-CSRF: " + alice_csrf});
  ASSERT_OK(denied);
  EXPECT_EQ(denied->status, 403) << denied->body;
  EXPECT_NE(denied->body.find("PERMISSION_DENIED"), std::string::npos);

  auto bob_session = as(*bob, "GET", "/api/v1/session");
  ASSERT_OK(bob_session);
  const std::string bob_csrf = JsonField(bob_session->body, "csrf");
  auto no_csrf = as(*bob, "POST", "/api/v1/snapshots");
  ASSERT_OK(no_csrf);
  EXPECT_EQ(no_csrf->status, 403);
  auto created =
      as(*bob, "POST", "/api/v1/snapshots", {"X-Shutter-CSRF: " + bob_csrf});
  ASSERT_OK(created);
  ASSERT_EQ(created->status, 200) << created->body;
  auto snap = cluster_.WaitForSnapshot(JsonField(created->body, "snapshot_id"),
                                       absl::Seconds(60));
  ASSERT_OK(snap);
  EXPECT_EQ(snap->state(), SNAPSHOT_STATE_COMMITTED);

  auto stranger = as(*mallory, "GET", "/api/v1/overview");
  ASSERT_OK(stranger);
  EXPECT_EQ(stranger->status, 401);
  auto form = as(*mallory, "GET", "/");
  ASSERT_OK(form);
  EXPECT_NE(form->body.find("name=\"token\""), std::string::npos);
  auto forged_call = as(*forged, "GET", "/api/v1/overview");
  EXPECT_TRUE(!forged_call.ok() || forged_call->status == 401)
      << forged_call->body;

  // A pin: the node's limit history says from, to and why; the overview
  // warns about it.
  SetNodeLimitRequest pin;
  pin.set_node_id(testing::LocalCluster::NodeId(0));
  pin.set_limit(1);
  SetNodeLimitResponse pinned;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(cluster_.admin()->SetNodeLimit(&ctx, pin, &pinned).ok());
  }
  auto nodes = as(*alice, "GET", "/api/v1/nodes");
  ASSERT_OK(nodes);
  EXPECT_NE(nodes->body.find("\"from_limit\":2,\"to_limit\":1,\"reason\":"
                             "\"pinned by an operator\""),
            std::string::npos)
      << nodes->body;
  auto overview = as(*alice, "GET", "/api/v1/overview");
  ASSERT_OK(overview);
  EXPECT_NE(
      overview->body.find(absl::StrCat(
          "\"limited\":[{\"node_id\":\"", testing::LocalCluster::NodeId(0),
          "\",\"limit\":1,\"capacity\":2,\"pinned\":true")),
      std::string::npos)
      << overview->body;
  // Alice's refused POST was counted, and the overview warns about it.
  const size_t denials = overview->body.find("\"denials\":");
  ASSERT_NE(denials, std::string::npos);
  EXPECT_GE(std::atoi(overview->body.c_str() + denials + 10), 1)
      << overview->body;

  // Refused logins: the eleventh attempt is refused whatever the token.
  for (int i = 0; i < controller::Console::kMaxLoginFailures; ++i) {
    EXPECT_EQ(Do("POST", "/login", "token=not-a-token-0123456789",
                 {"Content-Type: application/x-www-form-urlencoded"})
                  .status,
              401);
  }
  HttpResponse blocked =
      Do("POST", "/login", std::string("token=") + kOperatorToken,
         {"Content-Type: application/x-www-form-urlencoded"});
  EXPECT_EQ(blocked.status, 429) << blocked.body;
  EXPECT_NE(blocked.Header("Retry-After"), "");
  EXPECT_EQ(blocked.Header("Set-Cookie"), "");
  auto still = as(*alice, "GET", "/api/v1/nodes");
  ASSERT_OK(still);
  EXPECT_EQ(still->status, 200);
}

// In a real browser over HTTPS: the login form only until a token is
// given; a viewer sees the pages without actions and is refused a POST;
// an operator sees the committed job.
TEST_F(ConsoleAuthTest, InABrowserLoginAndRoles) {
  auto id = cluster_.CreateSnapshot();
  ASSERT_OK(id);
  auto snap = cluster_.WaitForSnapshot(*id, absl::Seconds(60));
  ASSERT_OK(snap);
  ASSERT_EQ(snap->state(), SNAPSHOT_STATE_COMMITTED);
  RunBrowser("tls", tmp_,
             {"--url", base_, "--job", *id, "--nodes",
              absl::StrCat(testing::LocalCluster::NodeId(0), ",",
                           testing::LocalCluster::NodeId(1)),
              "--partitions", "4", "--committed", "--token", kOperatorToken,
              "--viewer-token", kViewerToken});
}

}  // namespace console_test
}  // namespace shutter
