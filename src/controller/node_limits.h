#ifndef SHUTTER_CONTROLLER_NODE_LIMITS_H_
#define SHUTTER_CONTROLLER_NODE_LIMITS_H_

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "controller/job_store.h"
#include "scheduler/adaptive_limit.h"
#include "shutter/v1/common.pb.h"

namespace shutter::controller {

// Each node's effective concurrency limit: what the scheduler admits on
// it. Three sources, first match wins:
//   1. an operator's pin (SetNodeLimit), durable in the job store as
//      "node-limit/<node id>" records;
//   2. the adaptive rule (scheduler::AdaptiveLimit, docs/adaptive.md) fed
//      with the load each heartbeat carries, when Options::adaptive;
//   3. the capacity the node reports.
// Always within [1, capacity].
//
// Thread-safe.
class NodeLimits {
 public:
  struct Options {
    bool adaptive = true;
    // The rule's parameters (capacity is each node's own).
    scheduler::AdaptiveLimit::Options rule;
  };

  // One change of a node's effective limit.
  struct Change {
    absl::Time at;
    uint32_t from = 0;
    uint32_t to = 0;
    std::string reason;
  };
  // Changes kept per node (the newest).
  static constexpr size_t kMaxChanges = 32;
  struct View {
    uint32_t capacity = 0;
    uint32_t limit = 0;
    uint32_t pinned = 0;
    std::string reason;
    bool has_load = false;
    shutter::v1::NodeLoad load;
    int64_t idle_write_p99_micros = 0;
    // Changes the adaptive rule made (pins not counted).
    uint64_t decreases = 0;
    uint64_t increases = 0;
    // The newest changes of the effective limit, oldest first (the first
    // limit a node gets is not a change).
    std::vector<Change> changes;
  };

  // `store` (may be null: pins are then not durable) must outlive this.
  NodeLimits(const Options& options, JobStore* store);

  // Reads the pins from the store.
  absl::Status Load() ABSL_LOCKS_EXCLUDED(mu_);

  // One heartbeat of `node`: its capacity, its load if it sent one, and
  // the scheduler's in-flight and queued tasks on it now. Returns the new
  // effective limit if it differs from the last one returned for the node
  // (the first heartbeat always returns one), for the caller to apply.
  std::optional<int> Observe(const std::string& node, uint32_t capacity,
                             const shutter::v1::NodeLoad* load, int in_flight,
                             int queued) ABSL_LOCKS_EXCLUDED(mu_);

  // The limit to apply to `node`; `capacity` if it has not been observed.
  int Effective(const std::string& node, uint32_t capacity) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Whether `node` has headroom for checkpoints sent ahead of its free
  // slots (JobEngine::Options::queue_at_nodes): yes unless the adaptive
  // rule is on and the node's load, as the rule last read it, was not
  // healthy (its pressure at or above the rule's healthy_below). A node
  // that never reported load has it.
  bool HasHeadroom(const std::string& node) const ABSL_LOCKS_EXCLUDED(mu_);

  // Pins (1..capacity) or unpins (0) `node`, durably. INVALID_ARGUMENT
  // above the capacity; FAILED_PRECONDITION if the node was never
  // observed. Returns the new effective limit.
  absl::StatusOr<int> Pin(const std::string& node, uint32_t limit)
      ABSL_LOCKS_EXCLUDED(mu_);

  // What is known of `node` (zeros if never observed).
  View Describe(const std::string& node) const ABSL_LOCKS_EXCLUDED(mu_);

  // Every observed node, by id.
  std::map<std::string, View> DescribeAll() const ABSL_LOCKS_EXCLUDED(mu_);

  // Forgets a removed node (its pin stays in the store until unpinned).
  void Forget(const std::string& node) ABSL_LOCKS_EXCLUDED(mu_);

  static std::string PinKey(const std::string& node);

 private:
  struct NodeState {
    explicit NodeState(const scheduler::AdaptiveLimit::Options& o) : rule(o) {}
    scheduler::AdaptiveLimit rule;
    uint32_t capacity = 0;
    int applied = 0;  // last limit returned by Observe/Pin; 0 = none
    bool has_load = false;
    shutter::v1::NodeLoad load;
    uint64_t decreases = 0;
    uint64_t increases = 0;
    std::deque<Change> changes;
  };
  // Sets n.applied to `effective`, remembering the change.
  void ApplyLocked(const std::string& node, NodeState& n, int effective)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  View DescribeLocked(const std::string& node, const NodeState& n) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  NodeState& StateLocked(const std::string& node, uint32_t capacity)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Pin, else the rule's limit (when adaptive and `rule` is known), else
  // the capacity; within [1, capacity].
  int EffectiveLocked(const std::string& node, uint32_t capacity,
                      const scheduler::AdaptiveLimit* rule) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  std::string ReasonLocked(const std::string& node, const NodeState& n) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const Options options_;
  JobStore* const store_;
  mutable absl::Mutex mu_;
  std::map<std::string, NodeState> nodes_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint32_t> pins_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_NODE_LIMITS_H_
