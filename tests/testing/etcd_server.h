#ifndef SHUTTER_TESTS_TESTING_ETCD_SERVER_H_
#define SHUTTER_TESTS_TESTING_ETCD_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "testing/process.h"

namespace shutter::testing {

// A real etcd (Debian's etcd-server) on loopback for tests: one member, or
// a cluster of three for the tests of etcd's own faults. Ephemeral ports;
// every member's data under `dir`; killed with this object.
class EtcdTestServer {
 public:
  // NOT_FOUND (with the reason) if etcd is not installed or does not come
  // up.
  static absl::StatusOr<std::unique_ptr<EtcdTestServer>> Start(
      const std::string& dir, int members = 1);
  ~EtcdTestServer();

  int members() const { return static_cast<int>(members_.size()); }
  // "127.0.0.1:port" of each member's client listener.
  std::vector<std::string> Endpoints() const;
  // "etcd://127.0.0.1:p1,.../<prefix>"
  std::string Url(const std::string& prefix) const;

  // Kills member `i` (SIGKILL); Restart brings it back with its data.
  absl::Status Kill(int i);
  absl::Status Restart(int i);
  // Member `i`'s process id (0 if it is not running).
  pid_t pid(int i) const;
  // SIGSTOP / SIGCONT member `i`.
  absl::Status Pause(int i);
  absl::Status Resume(int i);

 private:
  struct Member {
    std::string name;
    int client_port = 0;
    int peer_port = 0;
    std::string data_dir;
    std::string log;
    std::unique_ptr<Subprocess> process;
  };
  absl::Status Launch(int i, bool wait);
  std::string initial_cluster_;
  std::vector<Member> members_;
};

// Skips the test (or fails it, when $SHUTTER_REQUIRE_ETCD is set, as in
// CI) if `server` could not be started.
#define SHUTTER_ETCD_OR_SKIP(server)                              \
  do {                                                            \
    if (!(server).ok()) {                                         \
      if (getenv("SHUTTER_REQUIRE_ETCD") != nullptr) {            \
        FAIL() << "etcd required: " << (server).status();         \
      }                                                           \
      GTEST_SKIP() << "no etcd: " << (server).status().message(); \
    }                                                             \
  } while (0)

// A free TCP port on 127.0.0.1, below the kernel's ephemeral port range
// where it has room (so no outgoing connection can be given it), else any
// (bound and released: another process could still bind it before the
// caller does, which Start retries).
absl::StatusOr<int> PickFreePort();

}  // namespace shutter::testing

#endif  // SHUTTER_TESTS_TESTING_ETCD_SERVER_H_
