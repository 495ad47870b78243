#ifndef SHUTTER_CONTROLLER_KINDS_H_
#define SHUTTER_CONTROLLER_KINDS_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "controller/job_kind.h"
#include "controller/node_registry.h"
#include "controller/node_transport.h"
#include "snapshot/repository.h"

namespace shutter::controller {

// What the kinds of the standard controller need from their surroundings.
struct KindContext {
  NodeTransport* transport = nullptr;
  snapshot::Repository* repo = nullptr;
  // Learns restored partitions' epochs (may be null).
  NodeRegistry* registry = nullptr;
  // Deadline of one task RPC to a node.
  absl::Duration rpc_timeout = absl::Minutes(10);
  // Called once a snapshot's COMMITTED or PARTIAL state is durable (may be
  // empty): retention, schedules.
  std::function<void(const std::string& snapshot_id)> on_snapshot_commit;
  // Called once a verify job's COMMITTED state is durable (may be empty):
  // schedules.
  std::function<void(const std::string& verify_id)> on_verify_commit;
  // How long a garbage collection waits for publishes in flight.
  absl::Duration gc_wait_for_publishes = absl::Seconds(60);
};

// The job kinds a controller runs, one per job type: the list the engine
// is given (JobEngine::Create). A new kind is a JobKind of its
// own file added here; no engine file changes. The context's pointers must
// outlive the kinds.
std::vector<std::unique_ptr<JobKind>> StandardKinds(const KindContext& ctx);

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_KINDS_H_
