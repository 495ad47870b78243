#include "testing/etcd_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "common/status_macros.h"

namespace shutter::testing {
namespace {

std::string FindEtcd() {
  const char* path = getenv("PATH");
  std::string p = path ? path : "";
  for (absl::string_view dir : absl::StrSplit(p + ":/usr/bin", ':')) {
    std::string bin = absl::StrCat(dir, "/etcd");
    if (!dir.empty() && ::access(bin.c_str(), X_OK) == 0) return bin;
  }
  return "";
}

// Whether 127.0.0.1:`port` can be bound now (`port` 0: any; the port bound
// is returned in *bound).
bool BindsOnLoopback(int port, int* bound) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  socklen_t len = sizeof(a);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  ::close(fd);
  if (ok) *bound = ntohs(a.sin_port);
  return ok;
}

}  // namespace

absl::StatusOr<int> PickFreePort() {
  // Below the kernel's ephemeral range, so the port cannot be taken as the
  // local end of an outgoing connection (any test's gRPC or HTTP client)
  // between this pick and the caller's bind: a port picked by binding port
  // 0 comes from that range, and an HA test once lost a controller's port
  // to such a connection ("address already in use").
  int low = 32768;
  if (auto range = fs::ReadFile("/proc/sys/net/ipv4/ip_local_port_range");
      range.ok()) {
    std::vector<std::string> parts =
        absl::StrSplit(*range, absl::ByAnyChar(" \t\n"), absl::SkipEmpty());
    if (!parts.empty() && !absl::SimpleAtoi(parts[0], &low)) low = 32768;
  }
  const int first = std::max(1024, low - 16384);
  if (low > first) {
    // At random, so that tests picking at once rarely try the same ports.
    std::mt19937 gen(std::random_device{}());
    std::uniform_int_distribution<int> pick(first, low - 1);
    for (int attempt = 0; attempt < 64; ++attempt) {
      int bound = 0;
      if (BindsOnLoopback(pick(gen), &bound)) return bound;
    }
  }
  int bound = 0;
  if (!BindsOnLoopback(0, &bound)) {
    return absl::InternalError("bind 127.0.0.1:0");
  }
  return bound;
}

absl::StatusOr<std::unique_ptr<EtcdTestServer>> EtcdTestServer::Start(
    const std::string& dir, int members) {
  if (FindEtcd().empty()) {
    return absl::NotFoundError("etcd is not installed (Debian etcd-server)");
  }
  RETURN_IF_ERROR(fs::CreateDirs(dir));
  // A port taken between PickFreePort and etcd's bind fails the start:
  // try again with new ports.
  absl::Status last;
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto server = std::unique_ptr<EtcdTestServer>(new EtcdTestServer());
    std::vector<std::string> peers;
    for (int i = 0; i < members; ++i) {
      Member m;
      m.name = absl::StrCat("m", i);
      ASSIGN_OR_RETURN(m.client_port, PickFreePort());
      ASSIGN_OR_RETURN(m.peer_port, PickFreePort());
      m.data_dir = absl::StrCat(dir, "/etcd-", attempt, "-", m.name);
      m.log = m.data_dir + ".log";
      peers.push_back(absl::StrCat(m.name, "=http://127.0.0.1:", m.peer_port));
      server->members_.push_back(std::move(m));
    }
    server->initial_cluster_ = absl::StrJoin(peers, ",");
    last = absl::OkStatus();
    for (int i = 0; i < members && last.ok(); ++i) {
      last = server->Launch(i, /*wait=*/false);
    }
    for (int i = 0; i < members && last.ok(); ++i) {
      const std::string log = server->members_[i].log;
      if (!PollUntil(
              [&] {
                return ReadFileOrEmpty(log).find("serving client traffic") !=
                       std::string::npos;
              },
              absl::Seconds(30))) {
        last = absl::NotFoundError(
            absl::StrCat("etcd member ", i, " did not come up within 30 s: ",
                         ReadFileOrEmpty(log).substr(0, 4000)));
      }
    }
    if (last.ok()) return server;
  }
  return last;
}

EtcdTestServer::~EtcdTestServer() = default;

absl::Status EtcdTestServer::Launch(int i, bool wait) {
  Member& m = members_[i];
  m.process = std::make_unique<Subprocess>();
  const std::string client = absl::StrCat("http://127.0.0.1:", m.client_port);
  const std::string peer = absl::StrCat("http://127.0.0.1:", m.peer_port);
  const size_t before = ReadFileOrEmpty(m.log).size();
  RETURN_IF_ERROR(m.process->Start({FindEtcd(),
                                    "--name",
                                    m.name,
                                    "--data-dir",
                                    m.data_dir,
                                    "--listen-client-urls",
                                    client,
                                    "--advertise-client-urls",
                                    client,
                                    "--listen-peer-urls",
                                    peer,
                                    "--initial-advertise-peer-urls",
                                    peer,
                                    "--initial-cluster",
                                    initial_cluster_,
                                    "--initial-cluster-state",
                                    "new",
                                    "--initial-cluster-token",
                                    "shutter-test",
                                    "--logger",
                                    "zap",
                                    "--log-outputs",
                                    "stderr"},
                                   m.log));
  if (!wait) return absl::OkStatus();
  const bool up = PollUntil(
      [&] {
        return ReadFileOrEmpty(m.log).find("serving client traffic", before) !=
               std::string::npos;
      },
      absl::Seconds(30));
  if (!up) {
    return absl::DeadlineExceededError(
        absl::StrCat("etcd member ", i, " did not come back within 30 s"));
  }
  return absl::OkStatus();
}

std::vector<std::string> EtcdTestServer::Endpoints() const {
  std::vector<std::string> out;
  for (const auto& m : members_) {
    out.push_back(absl::StrCat("127.0.0.1:", m.client_port));
  }
  return out;
}

std::string EtcdTestServer::Url(const std::string& prefix) const {
  return absl::StrCat("etcd://", absl::StrJoin(Endpoints(), ","), "/", prefix);
}

absl::Status EtcdTestServer::Kill(int i) {
  Member& m = members_[i];
  if (m.process == nullptr) return absl::OkStatus();
  auto st = m.process->Stop(SIGKILL, absl::Seconds(10));
  m.process.reset();
  return st.ok() ? absl::OkStatus() : st.status();
}

absl::Status EtcdTestServer::Restart(int i) {
  RETURN_IF_ERROR(Kill(i));
  return Launch(i, /*wait=*/members_.size() == 1);
}

pid_t EtcdTestServer::pid(int i) const {
  const auto& p = members_[static_cast<size_t>(i)].process;
  return p == nullptr ? 0 : p->pid();
}

absl::Status EtcdTestServer::Pause(int i) {
  if (members_[i].process == nullptr) return absl::NotFoundError("not running");
  const pid_t pid = members_[i].process->pid();
  if (::kill(pid, SIGSTOP) != 0) return absl::InternalError("kill SIGSTOP");
  // kill() returns before every thread has stopped: wait (bounded) until
  // the kernel reports the process stopped, so nothing it answers after
  // this returns.
  const std::string stat = absl::StrCat("/proc/", pid, "/stat");
  const bool stopped = PollUntil(
      [&] {
        auto text = fs::ReadFile(stat);
        if (!text.ok()) return false;
        const size_t paren = text->rfind(')');
        return paren != std::string::npos && paren + 2 < text->size() &&
               (*text)[paren + 2] == 'T';
      },
      absl::Seconds(10));
  return stopped ? absl::OkStatus()
                 : absl::DeadlineExceededError("etcd did not stop");
}

absl::Status EtcdTestServer::Resume(int i) {
  if (members_[i].process == nullptr) return absl::NotFoundError("not running");
  return ::kill(members_[i].process->pid(), SIGCONT) == 0
             ? absl::OkStatus()
             : absl::InternalError("kill SIGCONT");
}

}  // namespace shutter::testing
