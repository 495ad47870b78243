#ifndef SHUTTER_NODE_CONTROLLER_TERM_H_
#define SHUTTER_NODE_CONTROLLER_TERM_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace shutter::node {

// The newest controller term this node has seen (from heartbeat answers
// and requests). Controllers on etcd lead in terms that only grow; a
// request of an older term comes from a deposed leader (paused, cut off)
// and is refused, so it cannot start checkpoints, restores or verifies
// behind its successor's back.
//
// With a file (Open), the newest term survives a restart of the node: it
// is written crash-safely (temp, fsync, rename, fsync the directory)
// before a request of a newer term is admitted, so a node restarted while
// a deposed leader still sends refuses it from its first request, not only
// after its first heartbeat answer. Terms change only at elections, so
// writes are rare. Thread-safe.
class ControllerTerm {
 public:
  // In memory only (tests, embedders without a data directory).
  ControllerTerm() = default;
  // Reads the newest term from `path` (0 if there is none yet); keeps it
  // there from now on. DATA_LOSS if the file is not a term.
  static absl::StatusOr<std::unique_ptr<ControllerTerm>> Open(std::string path);

  // OK (and remembered) if `term` is not older than the newest seen;
  // FAILED_PRECONDITION with reason STALE_CONTROLLER otherwise, naming
  // both terms and `what` was asked.
  absl::Status Admit(uint64_t term, absl::string_view what)
      ABSL_LOCKS_EXCLUDED(write_mu_);
  // A term heard from the leader (a heartbeat answer).
  void Observe(uint64_t term) ABSL_LOCKS_EXCLUDED(write_mu_);
  uint64_t newest() const { return newest_.load(); }

 private:
  explicit ControllerTerm(std::string path) : path_(std::move(path)) {}

  const std::string path_;  // empty: in memory only
  std::atomic<uint64_t> newest_{0};
  // Serializes writes of the file (newest_ is raised under it).
  absl::Mutex write_mu_;
  uint64_t written_ ABSL_GUARDED_BY(write_mu_) = 0;
};

}  // namespace shutter::node

#endif  // SHUTTER_NODE_CONTROLLER_TERM_H_
