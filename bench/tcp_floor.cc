#include "tcp_floor.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <unordered_map>

#include "absl/strings/str_cat.h"

namespace shutter::bench {
namespace {

absl::Status Errno(const char* what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

void PutLength(uint32_t n, char* out) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
}

uint32_t GetLength(const char* in) {
  uint32_t n = 0;
  for (int i = 0; i < 4; ++i) {
    n |= static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  }
  return n;
}

void NoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

// Writes all of [p, p + n) to a blocking or non-blocking socket whose
// buffer has room (the frames here are far below a socket buffer).
bool SendAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

absl::Status ServeTcpFloor(const std::string& port_file, size_t answer_bytes) {
  const int lfd =
      socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd < 0) return Errno("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Errno("bind");
  }
  if (listen(lfd, 4096) != 0) return Errno("listen");
  socklen_t len = sizeof(addr);
  if (getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return Errno("getsockname");
  }
  const std::string tmp = port_file + ".tmp";
  if (FILE* f = std::fopen(tmp.c_str(), "w")) {
    std::fprintf(f, "%d\n", ntohs(addr.sin_port));
    std::fclose(f);
  } else {
    return Errno("port file");
  }
  if (std::rename(tmp.c_str(), port_file.c_str()) != 0) return Errno("rename");

  const int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return Errno("epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = lfd;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) != 0) return Errno("epoll_ctl");

  std::string answer(4 + answer_bytes, 'a');
  PutLength(static_cast<uint32_t>(answer_bytes), answer.data());
  std::unordered_map<int, std::string> pending;  // fd -> bytes read so far
  char buf[64 * 1024];
  epoll_event events[256];
  for (;;) {
    const int n = epoll_wait(ep, events, 256, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == lfd) {
        for (;;) {
          const int c =
              accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;
          NoDelay(c);
          epoll_event cev{};
          cev.events = EPOLLIN;
          cev.data.fd = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
          pending[c];
        }
        continue;
      }
      std::string& in = pending[fd];
      bool closed = false;
      for (;;) {
        const ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r > 0) {
          in.append(buf, static_cast<size_t>(r));
          continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (r < 0 && errno == EINTR) continue;
        closed = true;  // 0 (the peer closed) or an error
        break;
      }
      // Answer every whole frame read.
      size_t used = 0;
      while (in.size() - used >= 4) {
        const uint32_t len = GetLength(in.data() + used);
        if (in.size() - used - 4 < len) break;
        used += 4 + len;
        if (!SendAll(fd, answer.data(), answer.size())) closed = true;
      }
      in.erase(0, used);
      if (closed) {
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
        close(fd);
        pending.erase(fd);
      }
    }
  }
}

TcpFloorClient::~TcpFloorClient() {
  if (fd_ >= 0) close(fd_);
}

absl::Status TcpFloorClient::Connect(int port) {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return Errno("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Errno("connect");
  }
  NoDelay(fd_);
  return absl::OkStatus();
}

absl::Status TcpFloorClient::Exchange(size_t request_bytes) {
  buf_.assign(4 + request_bytes, 'r');
  PutLength(static_cast<uint32_t>(request_bytes), buf_.data());
  if (!SendAll(fd_, buf_.data(), buf_.size())) return Errno("send");
  // The answer's frame: its length, then that many bytes.
  char head[4];
  size_t got = 0;
  while (got < 4) {
    const ssize_t r = recv(fd_, head + got, 4 - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return Errno("recv");
    got += static_cast<size_t>(r);
  }
  size_t left = GetLength(head);
  char sink[4096];
  while (left > 0) {
    const ssize_t r =
        recv(fd_, sink, left < sizeof(sink) ? left : sizeof(sink), 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return Errno("recv");
    left -= static_cast<size_t>(r);
  }
  return absl::OkStatus();
}

}  // namespace shutter::bench
