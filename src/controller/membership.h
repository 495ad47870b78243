#ifndef SHUTTER_CONTROLLER_MEMBERSHIP_H_
#define SHUTTER_CONTROLLER_MEMBERSHIP_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "controller/job_engine.h"
#include "controller/node_registry.h"
#include "controller/node_transport.h"
#include "shutter/v1/controller.pb.h"

namespace shutter::controller {

// What a node's heartbeat does to the controller, whatever carries it
// (ControllerService.Heartbeat today): the registry learns the node, its
// incarnation and its partitions; the node's concurrency limit follows
// its capacity, pin and load (NodeLimits, when the engine has them) and
// reaches the scheduler only when it changes (the scheduler's lock is busy
// while a large job is queued, and a heartbeat must not wait for it); and
// a node that registers (or comes back at a new address or as a new
// process) is connected to at once (NodeTransport::Connect), so that the
// first job does not pay for the connection.
// Thread-safe; the pointers must outlive it.
class Membership {
 public:
  // `term`: the leader's term, told to every node it answers (0 without
  // etcd). `transport`: the term's calls to nodes (null: none made).
  Membership(NodeRegistry* registry, JobEngine* engine,
             absl::Duration expected_interval, std::string repository_id,
             uint64_t term = 0, NodeTransport* transport = nullptr)
      : registry_(registry),
        engine_(engine),
        expected_interval_(expected_interval),
        repository_id_(std::move(repository_id)),
        term_(term),
        transport_(transport) {}

  // Records the heartbeat and fills the answer. Errors are the
  // registry's (a refused incarnation, a foreign repository).
  absl::Status Heartbeat(const shutter::v1::HeartbeatRequest& request,
                         shutter::v1::HeartbeatResponse* response);

 private:
  NodeRegistry* const registry_;
  JobEngine* const engine_;
  const absl::Duration expected_interval_;
  const std::string repository_id_;
  const uint64_t term_;
  NodeTransport* const transport_;
};

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_MEMBERSHIP_H_
