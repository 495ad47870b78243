#ifndef SHUTTER_NODE_NODE_LIFECYCLE_H_
#define SHUTTER_NODE_NODE_LIFECYCLE_H_

#include <atomic>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/error_reason.h"

namespace shutter::node {

// Whether a node takes partition work (checkpoints, restores, verifies):
// starting (until it is registered and leads its partitions), serving, or
// draining (shutting down). One per node, shared by every kind of work:
// each asks CheckServing() before it admits a request. Thread-safe.
class NodeLifecycle {
 public:
  explicit NodeLifecycle(std::string node_id) : node_id_(std::move(node_id)) {}

  // Starts (true) or stops (false) accepting work.
  void SetServing(bool serving) {
    state_.store(serving ? State::kServing : State::kStarting);
  }
  // Stops accepting work for good ("shutting down" in the refusals).
  void Drain() { state_.store(State::kDraining); }

  // OK while serving; else UNAVAILABLE with NODE_UNAVAILABLE (retryable:
  // the controller waits for the node without spending an attempt).
  absl::Status CheckServing() const {
    const State state = state_.load();
    if (state == State::kServing) return absl::OkStatus();
    return WithReason(
        absl::UnavailableError(absl::StrCat(
            "node ", node_id_,
            state == State::kStarting ? " is starting" : " is shutting down",
            "; it takes no checkpoints or restores now")),
        ErrorReason::kNodeUnavailable);
  }

 private:
  enum class State { kStarting, kServing, kDraining };
  const std::string node_id_;
  std::atomic<State> state_{State::kStarting};
};

}  // namespace shutter::node

#endif  // SHUTTER_NODE_NODE_LIFECYCLE_H_
