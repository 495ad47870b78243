// The floor under a heartbeat's cost on this machine: the same exchange
// as a node's beat (a request of a beat's size, an answer of a heartbeat
// response's size, one TCP connection per node, TCP_NODELAY) over plain
// sockets, served by one thread on epoll with no RPC layer, no HTTP/2 and
// no protobuf. controller_scale_bench --heartbeats measures it beside the
// controller, so the share of a beat that is gRPC's shows against what
// the kernel and loopback TCP alone cost.
#ifndef SHUTTER_BENCH_TCP_FLOOR_H_
#define SHUTTER_BENCH_TCP_FLOOR_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"

namespace shutter::bench {

// Serves until killed: listens on 127.0.0.1 (an ephemeral port, written to
// `port_file` by temp + rename), and answers each length-prefixed frame
// (4 bytes, little-endian, then the payload) on a connection with a frame
// whose payload is `answer_bytes` long. One thread, level-triggered epoll.
// Returns only on a setup error.
absl::Status ServeTcpFloor(const std::string& port_file, size_t answer_bytes);

// One node's connection to a floor server (blocking, TCP_NODELAY).
class TcpFloorClient {
 public:
  TcpFloorClient() = default;
  ~TcpFloorClient();
  TcpFloorClient(const TcpFloorClient&) = delete;
  TcpFloorClient& operator=(const TcpFloorClient&) = delete;

  absl::Status Connect(int port);
  // Sends a frame of `request_bytes` and reads the answer's frame whole.
  absl::Status Exchange(size_t request_bytes);

 private:
  int fd_ = -1;
  std::string buf_;
};

}  // namespace shutter::bench

#endif  // SHUTTER_BENCH_TCP_FLOOR_H_
