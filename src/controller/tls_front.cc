#include "controller/tls_front.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/rpc.h"
#include "common/thread_name.h"
#include "spdlog/spdlog.h"

namespace shutter::controller {
namespace {

constexpr int kMaxConnections = 256;
constexpr int kIdleMillis = 60000;
constexpr int kHandshakeSeconds = 10;

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();
  if (e == 0) return "unknown error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

void SetTimeout(int fd, int seconds) {
  timeval tv{seconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

// The port of an IPv4 or IPv6 socket address.
int PortOf(const sockaddr_storage& ss) {
  return ss.ss_family == AF_INET6
             ? ntohs(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port)
             : ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port);
}

// The local port `fd` is bound to; -1 if it cannot be read.
int BoundPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return -1;
  }
  return PortOf(ss);
}

bool WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

// What the relay threads share with the front; held by each thread too,
// so the last one out may release the mutex after the front is gone.
struct RelayState {
  absl::Mutex mu;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  int active ABSL_GUARDED_BY(mu) = 0;
  std::set<int> open ABSL_GUARDED_BY(mu);  // sockets to shut at stop
  // Open relays by their backend connection's local port.
  std::map<int, TlsFront::Peer> peers ABSL_GUARDED_BY(mu);
};

class TlsFront::Impl {
 public:
  ~Impl() {
    {
      absl::MutexLock l(&st_->mu);
      st_->stopping = true;
      // Wakes every relay blocked on a socket.
      for (int fd : st_->open) ::shutdown(fd, SHUT_RDWR);
    }
    if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);
    if (acceptor_.joinable()) acceptor_.join();
    {
      RelayState* st = st_.get();
      absl::MutexLock l(&st->mu);
      auto idle = [st]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(st->mu) {
        return st->active == 0;
      };
      st->mu.Await(absl::Condition(&idle));
    }
    if (listen_fd_ >= 0) ::close(listen_fd_);
    if (ctx_ != nullptr) SSL_CTX_free(ctx_);
  }

  absl::Status Start(const std::string& listen, const std::string& cert,
                     const std::string& key, const std::string& ca,
                     int backend_port) {
    backend_port_ = backend_port;
    ctx_ = SSL_CTX_new(TLS_server_method());
    if (ctx_ == nullptr) return absl::InternalError(OpenSslError());
    SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx_, cert.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx_, key.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx_) != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("console TLS: ", OpenSslError()));
    }
    if (!ca.empty()) {
      if (SSL_CTX_load_verify_locations(ctx_, ca.c_str(), nullptr) != 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("console TLS: the CA ", ca, ": ", OpenSslError()));
      }
      // Asked for, not required: people without one log in with a token.
      SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
      // A browser resumes its TLS sessions; with peer verification on,
      // OpenSSL refuses a resumption without a session id context
      // ("session id context uninitialized"): the fetch fails.
      static const unsigned char kContext[] = "shutter-console";
      SSL_CTX_set_session_id_context(ctx_, kContext, sizeof(kContext) - 1);
      STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(ca.c_str());
      if (names != nullptr) SSL_CTX_set_client_CA_list(ctx_, names);
    }
    absl::StatusOr<int> fd = BindTcpSocket(listen);
    if (!fd.ok()) return fd.status();
    listen_fd_ = *fd;
    if (::listen(listen_fd_, 128) != 0) {
      return absl::UnavailableError(absl::StrCat("cannot listen on \"", listen,
                                                 "\": ", std::strerror(errno)));
    }
    port_ = BoundPort(listen_fd_);
    acceptor_ = std::thread([this] {
      NameThisThread("tls-accept");
      AcceptLoop();
    });
    return absl::OkStatus();
  }

  int port() const { return port_; }

  std::optional<TlsFront::Peer> PeerOf(int local_port) const {
    absl::MutexLock l(&st_->mu);
    auto it = st_->peers.find(local_port);
    if (it == st_->peers.end()) return std::nullopt;
    return it->second;
  }

 private:
  // The client's address and verified certificate common name.
  static TlsFront::Peer Describe(int client, SSL* ssl) {
    TlsFront::Peer peer;
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (::getpeername(client, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
      if (ss.ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr,
                  host, sizeof(host));
      } else {
        inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, host,
                  sizeof(host));
      }
      port = PortOf(ss);
    }
    peer.address = absl::StrCat(host, ":", port);
    X509* cert = SSL_get1_peer_certificate(ssl);
    if (cert != nullptr) {
      if (SSL_get_verify_result(ssl) == X509_V_OK) {
        char cn[256];
        const int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert),
                                                NID_commonName, cn, sizeof(cn));
        if (n > 0) peer.common_name.assign(cn, static_cast<size_t>(n));
      }
      X509_free(cert);
    }
    return peer;
  }

  void AcceptLoop() {
    for (;;) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;  // shut down
      }
      {
        absl::MutexLock l(&st_->mu);
        if (st_->stopping || st_->active >= kMaxConnections) {
          ::close(fd);
          if (st_->stopping) return;
          continue;
        }
        ++st_->active;
        st_->open.insert(fd);
      }
      // Relay touches the front only before it counts itself out.
      std::thread([this, fd, st = st_] {
        NameThisThread("tls-relay");
        Relay(fd);
        absl::MutexLock l(&st->mu);
        st->open.erase(fd);
        ::close(fd);
        --st->active;
      }).detach();
    }
  }

  void Relay(int client) {
    SetTimeout(client, kHandshakeSeconds);
    SSL* ssl = SSL_new(ctx_);
    SSL_set_fd(ssl, client);
    if (SSL_accept(ssl) != 1) {
      spdlog::debug("console: TLS handshake failed: {}", OpenSslError());
      SSL_free(ssl);
      return;
    }
    SetTimeout(client, 0);
    const int backend = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(backend_port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok =
        backend >= 0 && ::connect(backend, reinterpret_cast<sockaddr*>(&addr),
                                  sizeof(addr)) == 0;
    const int local_port = ok ? BoundPort(backend) : -1;
    if (ok) {
      TlsFront::Peer peer = Describe(client, ssl);
      absl::MutexLock l(&st_->mu);
      if (st_->stopping) {
        ok = false;
      } else {
        st_->open.insert(backend);
        st_->peers[local_port] = std::move(peer);
      }
    }
    char buf[16384];
    while (ok) {
      // Bytes OpenSSL already decrypted do not show on the socket.
      if (SSL_pending(ssl) == 0) {
        pollfd p[2] = {{client, POLLIN, 0}, {backend, POLLIN, 0}};
        const int n = ::poll(p, 2, kIdleMillis);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  // idle, or an error
        if (p[1].revents != 0) {
          const ssize_t r = ::recv(backend, buf, sizeof(buf), 0);
          if (r <= 0) break;
          if (SSL_write(ssl, buf, static_cast<int>(r)) <= 0) break;
          continue;
        }
        if (p[0].revents == 0) continue;
      }
      const int r = SSL_read(ssl, buf, sizeof(buf));
      if (r <= 0) break;
      if (!WriteAll(backend, buf, static_cast<size_t>(r))) break;
    }
    SSL_shutdown(ssl);
    SSL_free(ssl);
    if (backend >= 0) {
      absl::MutexLock l(&st_->mu);
      st_->open.erase(backend);
      st_->peers.erase(local_port);
      ::close(backend);
    }
  }

  SSL_CTX* ctx_ = nullptr;
  int listen_fd_ = -1;
  int port_ = 0;
  int backend_port_ = 0;
  std::thread acceptor_;
  const std::shared_ptr<RelayState> st_ = std::make_shared<RelayState>();
};

absl::StatusOr<std::unique_ptr<TlsFront>> TlsFront::Start(
    const std::string& listen, const std::string& cert, const std::string& key,
    const std::string& ca, int backend_port) {
  auto impl = std::make_unique<Impl>();
  absl::Status s = impl->Start(listen, cert, key, ca, backend_port);
  if (!s.ok()) return s;
  return std::unique_ptr<TlsFront>(new TlsFront(std::move(impl)));
}

TlsFront::TlsFront(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TlsFront::~TlsFront() = default;
int TlsFront::port() const { return impl_->port(); }
std::optional<TlsFront::Peer> TlsFront::PeerOf(int local_port) const {
  return impl_->PeerOf(local_port);
}

}  // namespace shutter::controller
