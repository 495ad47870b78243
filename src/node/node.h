#ifndef SHUTTER_NODE_NODE_H_
#define SHUTTER_NODE_NODE_H_

#include <atomic>
#include <memory>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "node/node_options.h"

namespace shutter::node {

// The whole reference node daemon: its incarnation, the repository,
// bootstrap, the partitions' stores (NodeHost), the checkpoint taker and
// the restorer, load reports, metrics, the gRPC services and heartbeats.
// Start() brings them up in the order that keeps a failed start harmless
// (nothing durable changes -- no epoch is raised -- until the node serves
// its port and the controller has accepted it); Shutdown() drains and
// takes them down in reverse. main() parses flags, runs one Node and
// waits for a signal; tests may run one in-process.
//
// Not thread-safe: Start and Shutdown are called from one thread.
class Node {
 public:
  explicit Node(NodeOptions options);
  // Shutdown().
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Starts every part, registers with the controller, takes leadership,
  // then writes the port file. On error what was started is stopped
  // again; errors of configuration (flags, the data directory, the
  // repository, ports, a controller that refuses this node) are
  // daemon::ConfigError (exit 2).
  absl::Status Start();

  // The port the node serves on (after Start).
  int port() const;
  // Set once the controller refused this node for good after Start (the
  // node raised the shutdown signal; it must exit 2).
  std::optional<absl::Status> fatal() const ABSL_LOCKS_EXCLUDED(fatal_mu_);
  // True once the listener watchdog found the gRPC listener dead (the
  // shutdown signal was raised; exit 1).
  bool listener_dead() const { return listener_dead_; }

  // Stops heartbeats, drains checkpoints in flight (a grace period, then
  // cancels), tells the controller this incarnation is leaving (unless it
  // was refused), stops serving and closes every store. Idempotent.
  void Shutdown();

 private:
  struct Parts;
  const NodeOptions options_;
  std::unique_ptr<Parts> parts_;
  bool started_ = false;  // Start() succeeded
  std::atomic<bool> listener_dead_{false};
  mutable absl::Mutex fatal_mu_;
  std::optional<absl::Status> fatal_ ABSL_GUARDED_BY(fatal_mu_);
};

}  // namespace shutter::node

#endif  // SHUTTER_NODE_NODE_H_
