#ifndef SHUTTER_NODE_CONTROLLER_TERM_H_
#define SHUTTER_NODE_CONTROLLER_TERM_H_

#include <atomic>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace shutter::node {

// The newest controller term this node has seen (from heartbeat answers
// and requests). Controllers on etcd lead in terms that only grow; a
// request of an older term comes from a deposed leader (paused, cut off)
// and is refused, so it cannot start checkpoints, restores or verifies
// behind its successor's back. Terms are kept in memory: a restarted node
// learns the current one from its first heartbeat answer (and a deposed
// leader stops sending on its own once its lease has run out). Thread-safe.
class ControllerTerm {
 public:
  // OK (and remembered) if `term` is not older than the newest seen;
  // FAILED_PRECONDITION with reason STALE_CONTROLLER otherwise, naming
  // both terms and `what` was asked.
  absl::Status Admit(uint64_t term, absl::string_view what);
  // A term heard from the leader (a heartbeat answer).
  void Observe(uint64_t term);
  uint64_t newest() const { return newest_.load(); }

 private:
  std::atomic<uint64_t> newest_{0};
};

}  // namespace shutter::node

#endif  // SHUTTER_NODE_CONTROLLER_TERM_H_
