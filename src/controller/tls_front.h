#ifndef SHUTTER_CONTROLLER_TLS_FRONT_H_
#define SHUTTER_CONTROLLER_TLS_FRONT_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace shutter::controller {

// Terminates TLS for an HTTP server that listens in plaintext on loopback:
// accepts on `listen` (host:port, port 0 = ephemeral), completes a TLS
// handshake (1.2 or newer) with `cert`/`key`, and relays the bytes of each
// connection to 127.0.0.1:`backend_port`, both ways, until either side
// closes or the connection is idle for a minute.
//
// Why: Debian 12's civetweb (the console's HTTP server) loads OpenSSL at
// run time and calls SSL_get_peer_certificate, which OpenSSL 3 no longer
// exports: its own TLS crashes on the first connection. OpenSSL is used
// here directly instead.
//
// With `ca`, a client may present a certificate (it is not required):
// one that verifies against `ca` names the connection's peer (PeerOf).
//
// At most 256 connections at once (more are closed at accept). A thread
// per connection; the destructor closes every connection and waits for
// their threads.
class TlsFront {
 public:
  static absl::StatusOr<std::unique_ptr<TlsFront>> Start(
      const std::string& listen, const std::string& cert,
      const std::string& key, const std::string& ca, int backend_port);
  ~TlsFront();

  TlsFront(const TlsFront&) = delete;
  TlsFront& operator=(const TlsFront&) = delete;

  int port() const;

  // Who is behind a relayed connection, as the backend sees it.
  struct Peer {
    std::string address;      // the client's "ip:port"
    std::string common_name;  // of its verified certificate; "" if none
  };
  // The peer of the relayed connection whose loopback source port (the
  // backend's view of the remote port) is `local_port`, while it is open.
  std::optional<Peer> PeerOf(int local_port) const;

  class Impl;

 private:
  explicit TlsFront(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_TLS_FRONT_H_
