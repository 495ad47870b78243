// Transport security and authorization with real daemons and real
// certificates made by the test (OpenSSL): a cluster on mutual TLS takes
// and restores snapshots through shutterctl, and every wrong credential is
// refused: plaintext, an unknown CA, a certificate from another CA, an
// expired one, an unknown identity, a missing or wrong token, a viewer
// trying to change something, a node presenting another node's
// certificate, a caller of NodeService that is not the controller.
#include <sys/wait.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "common/rpc.h"
#include "common/security.h"
#include "gtest/gtest.h"
#include "shutter/v1/admin.grpc.pb.h"
#include "shutter/v1/node.grpc.pb.h"
#include "testing/binaries.h"
#include "testing/certs.h"
#include "testing/local_cluster.h"
#include "testing/process.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace shutter {
namespace tls_test {

using namespace shutter::v1;  // NOLINT
using testing::CertFiles;
using testing::RunCommand;

constexpr char kOperatorToken[] = "op-0123456789abcdef0123456789abcdef";
constexpr char kViewerToken[] = "view-0123456789abcdef0123456789abcde";

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = testing::TestCa::Create("Shutter Test CA", tmp_.path(), "ca");
    ASSERT_OK(ca);
    ca_ = std::move(ca).value();
    auto other = testing::TestCa::Create("Some Other CA", tmp_.path(), "other");
    ASSERT_OK(other);
    other_ca_ = std::move(other).value();
    controller_ = Issue(*ca_, "shutter-controller", "controller");
    for (int i = 0; i < 2; ++i) {
      nodes_.push_back(Issue(*ca_, testing::LocalCluster::NodeId(i),
                             absl::StrCat("node", i)));
    }
    alice_ = Issue(*ca_, "alice", "alice");        // operator by certificate
    bob_ = Issue(*ca_, "bob", "bob");              // viewer by certificate
    mallory_ = Issue(*ca_, "mallory", "mallory");  // on no list
    foreign_alice_ = Issue(*other_ca_, "alice", "foreign-alice");
    expired_alice_ = Issue(*ca_, "alice", "expired-alice", -7200, -3600);
    tokens_ = tmp_.Sub("tokens");
    std::ofstream(tokens_) << "# role token\noperator " << kOperatorToken
                           << "\nviewer " << kViewerToken << "\n";
    std::ofstream(tmp_.Sub("op-token")) << kOperatorToken << "\n";
    std::ofstream(tmp_.Sub("viewer-token")) << kViewerToken << "\n";
    std::ofstream(tmp_.Sub("bad-token")) << "not-the-token-0123456789\n";

    cluster_.SetSecurity(
        {"--tls-cert", controller_.cert, "--tls-key", controller_.key,
         "--tls-ca", ca_->cert_path(), "--admin-token-file", tokens_,
         "--admin-identities", "alice=operator,bob=viewer"},
        [this](int i) {
          return std::vector<std::string>{"--tls-cert", nodes_[i].cert,
                                          "--tls-key",  nodes_[i].key,
                                          "--tls-ca",   ca_->cert_path()};
        });
    // This process' own calls (LocalCluster's admin and data-plane
    // helpers) go as alice, an operator.
    UseClientCert(alice_);
    ASSERT_OK(cluster_.StartController());
    ASSERT_OK(cluster_.StartAllNodes());
    ASSERT_OK(cluster_.WaitForLeaders(absl::Seconds(30)));
    started_ = true;
  }
  void TearDown() override {
    if (started_ && HasFailure()) {
      auto log = fs::ReadFile(tmp_.Sub("controller.log"));
      if (log.ok()) std::cerr << "controller log:\n" << *log;
    }
    cluster_.CloseChannels();
    cluster_.StopAllNodes();
    cluster_.StopController(SIGTERM).IgnoreError();
    SetTransportSecurity(nullptr, nullptr, nullptr);
  }

  CertFiles Issue(const testing::TestCa& ca, const std::string& cn,
                  const std::string& stem, long from = -3600, long to = 86400) {
    auto c = ca.Issue(cn, stem, from, to);
    EXPECT_OK(c);
    return c.ok() ? *c : CertFiles{};
  }

  void UseClientCert(const CertFiles& c) {
    TlsOptions o;
    o.cert = c.cert;
    o.key = c.key;
    o.ca = ca_->cert_path();
    SetTransportSecurity(nullptr, MakeChannelCredentials(o), nullptr);
  }

  // shutterctl with `flags` before the command; returns the exit code.
  int Ctl(std::vector<std::string> flags, std::vector<std::string> command,
          std::string* err) {
    std::vector<std::string> args = {SHUTTERCTL_BIN, "--controller",
                                     cluster_.controller_address()};
    args.insert(args.end(), flags.begin(), flags.end());
    args.insert(args.end(), command.begin(), command.end());
    std::string out;
    auto rc = RunCommand(args, &out, err, absl::Seconds(60));
    EXPECT_OK(rc);
    return rc.ok() ? *rc : -1;
  }
  std::vector<std::string> Ca() { return {"--tls-ca", ca_->cert_path()}; }
  std::vector<std::string> Cert(const CertFiles& c) {
    return {"--tls-ca", ca_->cert_path(), "--tls-cert",
            c.cert,     "--tls-key",      c.key};
  }
  std::vector<std::string> Token(const std::string& file) {
    return {"--tls-ca", ca_->cert_path(), "--token-file", tmp_.Sub(file)};
  }

  // A call made in this process with `creds`.
  grpc::Status ListNodesWith(std::shared_ptr<grpc::ChannelCredentials> creds) {
    auto stub = AdminService::NewStub(
        grpc::CreateChannel(cluster_.controller_address(), creds));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    ListNodesResponse resp;
    return stub->ListNodes(&ctx, ListNodesRequest(), &resp);
  }

  testing::TempDir tmp_;
  std::unique_ptr<testing::TestCa> ca_, other_ca_;
  CertFiles controller_, alice_, bob_, mallory_, foreign_alice_, expired_alice_;
  std::vector<CertFiles> nodes_;
  std::string tokens_;
  testing::LocalCluster cluster_{
      {SHUTTER_CONTROLLER_BIN, SHUTTER_NODE_BIN, tmp_.path(), 2, 2, 2}};
  bool started_ = false;
};

TEST_F(TlsTest, SnapshotAndRestoreOverMutualTls) {
  for (uint32_t p = 0; p < 4; ++p) {
    ASSERT_OK(cluster_.Write(p, {{"k", absl::StrCat("v", p)}}));
  }
  std::string err;
  // An operator by token (server-authenticated TLS only) ...
  ASSERT_EQ(Ctl(Token("op-token"), {"snapshots", "create", "--wait"}, &err), 0)
      << err;
  std::string out;
  auto rc =
      RunCommand({SHUTTERCTL_BIN, "--controller", cluster_.controller_address(),
                  "--tls-ca", ca_->cert_path(), "--token-file",
                  tmp_.Sub("op-token"), "snapshots", "list", "--limit", "1"},
                 &out, &err, absl::Seconds(30));
  ASSERT_OK(rc);
  ASSERT_EQ(*rc, 0) << err;
  std::vector<std::string> lines = absl::StrSplit(out, '\n');
  ASSERT_GE(lines.size(), 2u);
  const std::string id = lines[1].substr(0, lines[1].find(' '));
  for (uint32_t p = 0; p < 4; ++p) {
    ASSERT_OK(cluster_.Write(p, {{"k", "after"}}));
  }
  // ... and by client certificate, through the environment.
  rc = RunCommand(
      {SHUTTERCTL_BIN, "snapshots", "restore", id, "--wait"}, &out, &err,
      absl::Seconds(60),
      {"SHUTTER_CONTROLLER=" + cluster_.controller_address(),
       "SHUTTER_TLS_CA=" + ca_->cert_path(), "SHUTTER_TLS_CERT=" + alice_.cert,
       "SHUTTER_TLS_KEY=" + alice_.key});
  ASSERT_OK(rc);
  ASSERT_EQ(*rc, 0) << err;
  for (uint32_t p = 0; p < 4; ++p) {
    auto v = cluster_.Read(p, {"k"});
    ASSERT_OK(v);
    EXPECT_EQ((*v)[0], absl::StrCat("v", p));
  }
}

TEST_F(TlsTest, EveryWrongCredentialIsRefused) {
  std::string err;
  // Plaintext against a TLS controller.
  EXPECT_EQ(Ctl({}, {"nodes", "list"}, &err), 1);
  EXPECT_TRUE(absl::StrContains(err, "UNAVAILABLE")) << err;
  EXPECT_TRUE(absl::StrContains(err, "pass --tls-ca")) << err;
  // A CA that did not sign the controller's certificate.
  EXPECT_EQ(Ctl({"--tls-ca", other_ca_->cert_path(), "--token-file",
                 tmp_.Sub("op-token")},
                {"nodes", "list"}, &err),
            1);
  EXPECT_TRUE(absl::StrContains(err, "UNAVAILABLE")) << err;
  // One line of shutterctl's own, none of gRPC core's ("E1203 ...
  // ssl_transport_security.cc ... Handshake failed").
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_FALSE(absl::StrContains(err, "ssl_transport_security")) << err;
  // A client certificate from another CA: the handshake fails.
  EXPECT_EQ(Ctl(Cert(foreign_alice_), {"nodes", "list"}, &err), 1);
  EXPECT_TRUE(absl::StrContains(err, "UNAVAILABLE")) << err;
  // An expired client certificate: shutterctl says so itself (exit 2) ...
  EXPECT_EQ(Ctl(Cert(expired_alice_), {"nodes", "list"}, &err), 2);
  EXPECT_TRUE(absl::StrContains(err, "has expired")) << err;
  // ... and the controller refuses it in the handshake.
  {
    TlsOptions o{expired_alice_.cert, expired_alice_.key, ca_->cert_path()};
    EXPECT_EQ(ListNodesWith(MakeChannelCredentials(o)).error_code(),
              grpc::StatusCode::UNAVAILABLE);
    TlsOptions good{alice_.cert, alice_.key, ca_->cert_path()};
    EXPECT_TRUE(ListNodesWith(MakeChannelCredentials(good)).ok());
  }
  // A valid certificate on no list.
  EXPECT_EQ(Ctl(Cert(mallory_), {"nodes", "list"}, &err), 1);
  EXPECT_TRUE(absl::StrContains(err, "PERMISSION_DENIED")) << err;
  EXPECT_TRUE(absl::StrContains(err, "not on the controller's admin list"))
      << err;
  // TLS without any credential, and with a wrong token.
  EXPECT_EQ(Ctl(Ca(), {"nodes", "list"}, &err), 1);
  EXPECT_TRUE(absl::StrContains(err, "UNAUTHENTICATED")) << err;
  EXPECT_EQ(Ctl(Token("bad-token"), {"nodes", "list"}, &err), 1);
  EXPECT_TRUE(absl::StrContains(err, "UNAUTHENTICATED")) << err;
  // Viewers read but do not change, by certificate or by token.
  for (const auto& viewer : {Cert(bob_), Token("viewer-token")}) {
    EXPECT_EQ(Ctl(viewer, {"snapshots", "list"}, &err), 0) << err;
    EXPECT_EQ(Ctl(viewer, {"snapshots", "create"}, &err), 1);
    EXPECT_TRUE(absl::StrContains(err, "PERMISSION_DENIED")) << err;
    EXPECT_TRUE(absl::StrContains(err, "needs the operator role")) << err;
  }
  EXPECT_EQ(Ctl(Cert(bob_), {"snapshots", "prune", "--dry-run"}, &err), 0)
      << err;
  // Only the controller may call a node: alice (a valid operator) may not.
  {
    auto stub = NodeService::NewStub(MakeChannel(cluster_.node_address(0)));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    CreateCheckpointRequest req;
    req.set_snapshot_id("evil");
    CreateCheckpointResponse resp;
    grpc::Status s = stub->CreateCheckpoint(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << s.error_message();
  }
  // Denials are logged by the controller.
  auto log = fs::ReadFile(tmp_.Sub("controller.log"));
  ASSERT_OK(log);
  EXPECT_TRUE(absl::StrContains(*log, "denied CreateSnapshot")) << *log;
}

TEST_F(TlsTest, NodeWithAnotherNodesCertificateIsRefused) {
  // A third node claiming id "n9" with n1's certificate.
  std::string out, err;
  auto rc = RunCommand(
      {SHUTTER_NODE_BIN, "--node-id", "n9", "--listen", "127.0.0.1:0",
       "--controller", cluster_.controller_address(), "--data-dir",
       tmp_.Sub("n9"), "--repository", cluster_.repo_dir(), "--partitions", "9",
       "--tls-cert", nodes_[0].cert, "--tls-key", nodes_[0].key, "--tls-ca",
       ca_->cert_path()},
      &out, &err, absl::Seconds(30));
  ASSERT_OK(rc);
  EXPECT_EQ(*rc, 2) << err;
  EXPECT_TRUE(absl::StrContains(err, "may not act as node")) << err;
}

TEST_F(TlsTest, DaemonsRefuseMissingOrBadTlsSetupsAtStart) {
  auto start = [&](std::vector<std::string> extra, std::string* err) {
    std::vector<std::string> argv = {
        SHUTTER_CONTROLLER_BIN, "--data-dir", tmp_.Sub("c2"), "--repository",
        tmp_.Sub("r2"),         "--listen",   "127.0.0.1:0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    std::string out;
    auto rc = RunCommand(argv, &out, err, absl::Seconds(30));
    EXPECT_OK(rc);
    return rc.ok() ? *rc : -1;
  };
  std::string err;
  EXPECT_EQ(start({}, &err), 2);
  EXPECT_TRUE(absl::StrContains(err, "or --insecure")) << err;
  EXPECT_EQ(start({"--tls-cert", expired_alice_.cert, "--tls-key",
                   expired_alice_.key, "--tls-ca", ca_->cert_path()},
                  &err),
            2);
  EXPECT_TRUE(absl::StrContains(err, "has expired")) << err;
  EXPECT_EQ(start({"--tls-cert", alice_.cert, "--tls-key", bob_.key, "--tls-ca",
                   ca_->cert_path()},
                  &err),
            2);
  EXPECT_TRUE(absl::StrContains(err, "is not the key of")) << err;
  EXPECT_EQ(start({"--insecure", "--tls-ca", ca_->cert_path()}, &err), 2);
  EXPECT_EQ(start({"--insecure", "--admin-identities", "alice=root"}, &err), 2);
  EXPECT_TRUE(absl::StrContains(err, "alice=root")) << err;
}

TEST_F(TlsTest, SighupReloadsTheTokenFileAndKeepsServing) {
  std::string err;
  ASSERT_EQ(Ctl(Token("op-token"), {"nodes", "list"}, &err), 0) << err;
  // Rotate: a new operator token replaces the old one.
  const std::string fresh = "rotated-0123456789abcdef0123456789";
  std::ofstream(tokens_ + ".new") << "operator " << fresh << "\n";
  ASSERT_EQ(std::rename((tokens_ + ".new").c_str(), tokens_.c_str()), 0);
  std::ofstream(tmp_.Sub("fresh-token")) << fresh << "\n";
  ASSERT_EQ(::kill(cluster_.controller_pid(), SIGHUP), 0);
  ASSERT_TRUE(testing::PollUntil(
      [&] {
        return Ctl(Token("fresh-token"), {"nodes", "list"}, &err) == 0;
      },
      absl::Seconds(10)))
      << err;
  EXPECT_EQ(Ctl(Token("op-token"), {"nodes", "list"}, &err), 1);
  EXPECT_TRUE(absl::StrContains(err, "UNAUTHENTICATED")) << err;
  // Still the same process, still serving.
  int status = 0;
  EXPECT_EQ(::waitpid(cluster_.controller_pid(), &status, WNOHANG), 0);
}

}  // namespace tls_test
}  // namespace shutter
