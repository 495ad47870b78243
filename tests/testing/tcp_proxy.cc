#include "testing/tcp_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <map>

namespace shutter::testing {
namespace {

int ConnectTo(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TcpProxy>> TcpProxy::Start(int target_port) {
  std::unique_ptr<TcpProxy> p(new TcpProxy());
  p->target_port_ = target_port;
  p->listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(p->listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (::bind(p->listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::listen(p->listen_fd_, 64) != 0 ||
      ::getsockname(p->listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) !=
          0 ||
      ::pipe(p->wake_) != 0) {
    return absl::InternalError("tcp proxy: cannot listen");
  }
  p->port_ = ntohs(a.sin_port);
  p->thread_ = std::thread([raw = p.get()] { raw->Loop(); });
  return p;
}

TcpProxy::~TcpProxy() {
  stop_ = true;
  if (wake_[1] >= 0) (void)!::write(wake_[1], "x", 1);
  if (thread_.joinable()) thread_.join();
  for (int fd : {listen_fd_, wake_[0], wake_[1]}) {
    if (fd >= 0) ::close(fd);
  }
}

void TcpProxy::Loop() {
  // Each accepted client and its upstream connection (-1 while held).
  std::map<int, int> peer;
  std::vector<int> held;  // accepted while cut, not yet connected upstream
  char buf[64 << 10];
  auto close_pair = [&](int fd) {
    auto it = peer.find(fd);
    if (it == peer.end()) return;
    const int other = it->second;
    peer.erase(it);
    peer.erase(other);
    ::close(fd);
    ::close(other);
  };
  while (!stop_) {
    if (!cut_ && !held.empty()) {
      for (int c : held) {
        int u = ConnectTo(target_port_);
        if (u < 0) {
          ::close(c);
          continue;
        }
        peer[c] = u;
        peer[u] = c;
      }
      held.clear();
    }
    std::vector<pollfd> fds;
    fds.push_back({listen_fd_, POLLIN, 0});
    fds.push_back({wake_[0], POLLIN, 0});
    const bool cut = cut_;
    if (!cut) {
      for (const auto& [fd, other] : peer) fds.push_back({fd, POLLIN, 0});
    }
    // Wakes up now and then to notice Cut/Heal.
    if (::poll(fds.data(), fds.size(), 50) <= 0) continue;
    if (fds[0].revents & POLLIN) {
      int c = ::accept(listen_fd_, nullptr, nullptr);
      if (c >= 0) {
        if (cut_) {
          held.push_back(c);
        } else {
          int u = ConnectTo(target_port_);
          if (u < 0) {
            ::close(c);
          } else {
            peer[c] = u;
            peer[u] = c;
          }
        }
      }
    }
    if (cut) continue;
    for (size_t i = 2; i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const int fd = fds[i].fd;
      auto it = peer.find(fd);
      if (it == peer.end()) continue;
      ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n <= 0) {
        close_pair(fd);
        continue;
      }
      const int other = it->second;
      ssize_t off = 0;
      while (off < n) {
        ssize_t w = ::write(other, buf + off, n - off);
        if (w <= 0) {
          if (errno == EINTR) continue;
          break;
        }
        off += w;
      }
      if (off < n) close_pair(fd);
    }
  }
  for (const auto& [fd, other] : peer) ::close(fd);
  for (int c : held) ::close(c);
}

}  // namespace shutter::testing
