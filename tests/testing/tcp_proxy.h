#ifndef SHUTTER_TESTS_TESTING_TCP_PROXY_H_
#define SHUTTER_TESTS_TESTING_TCP_PROXY_H_

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace shutter::testing {

// A TCP proxy on 127.0.0.1 in front of 127.0.0.1:<target>, to cut one
// process off from a server while others still reach it. Cut() makes it a
// black hole, as a network partition is: connections stay open but no
// byte goes through either way, and new connections are accepted and
// held; Heal() lets everything through again. Thread-safe.
class TcpProxy {
 public:
  static absl::StatusOr<std::unique_ptr<TcpProxy>> Start(int target_port);
  ~TcpProxy();

  int port() const { return port_; }
  void Cut() { cut_ = true; }
  void Heal() { cut_ = false; }

 private:
  TcpProxy() = default;
  void Loop();

  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  int port_ = 0;
  int target_port_ = 0;
  std::atomic<bool> cut_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace shutter::testing

#endif  // SHUTTER_TESTS_TESTING_TCP_PROXY_H_
