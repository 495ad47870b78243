#ifndef SHUTTER_NODE_HEARTBEATER_H_
#define SHUTTER_NODE_HEARTBEATER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "node/heartbeat_stream.h"
#include "node/node_host.h"
#include "node/node_instance.h"
#include "shutter/v1/controller.grpc.pb.h"
#include "snapshot/repository.h"

namespace shutter::node {

// Registers the node with the controller and then sends a Heartbeat every
// `interval` (and at once after ReportSoon) from its own thread (to the leader,
// with several controllers: a follower's UNAVAILABLE answer names it in its
// "shutter-leader" trailer, which is followed at once; an unreachable
// controller makes it try the next one in the list), describing the node (its
// incarnation and repository identity) and every hosted partition. Transient
// failures are logged (once per outage) and retried sooner than the next tick:
// after 100 ms, doubling up to `interval` (a restarted controller, or a new
// leader of a group, has its nodes back within a fraction of a tick). A refusal
// that retrying cannot cure (controller.proto: ALREADY_EXISTS,
// FAILED_PRECONDITION, INVALID_ARGUMENT) is fatal: it is logged, the loop stops
// and `on_fatal` runs once with it (the daemon then exits).
//
// Thread-safe; `host` and `repo` must outlive the heartbeater.
class Heartbeater {
 public:
  struct Options {
    std::string node_id;
    NodeInstanceInfo instance;
    std::string advertise_address;
    // One controller, or every controller of a group.
    std::vector<std::string> controller_addresses;
    // Called with the term of each answering leader (0 without etcd).
    std::function<void(uint64_t)> on_term;
    // Called with each answer's checkpoint_limit when it has one (> 0).
    std::function<void(uint32_t)> on_limit;
    int checkpoint_capacity = 2;
    absl::Duration interval = absl::Seconds(1);
    // Called once, on the heartbeat thread, with a fatal refusal.
    std::function<void(const absl::Status&)> on_fatal;
    // A full partition report at least every this many heartbeats (the
    // others are keep-alives unless a role or epoch changed).
    int full_report_every = 10;
    // If set, called once per heartbeat for the load of the interval since
    // the previous one (LoadMonitor::Sample), sent with it.
    std::function<shutter::v1::NodeLoad()> load;
  };

  Heartbeater(const Options& options, const NodeHost* host,
              const snapshot::Repository* repo);
  // Calls Stop().
  ~Heartbeater();

  // Sends one heartbeat now, synchronously (deadline `timeout`), before the
  // loop starts: OK if accepted; the fatal refusal if refused for good
  // (on_fatal is not called); UNAVAILABLE / DEADLINE_EXCEEDED if the
  // controller could not be reached (the loop keeps trying later).
  absl::Status Register(absl::Duration timeout);

  // Tells the controller that this incarnation is leaving (a clean
  // shutdown, after draining), so that it is released at once: a new
  // incarnation of the node id need not wait for it to be declared dead.
  // Call after Stop(). Best effort: the error is returned for the log.
  absl::Status SendLeaving(absl::Duration timeout);

  // Starts the loop; its first heartbeat goes out at once.
  void Start();
  // A partition's role or epoch changed: the next heartbeat (carrying the
  // full report) goes out now rather than at the next tick, so that the
  // controller sends work to the new leader within a round trip. Cheap;
  // any thread; before Start or after Stop it does nothing.
  void ReportSoon() ABSL_LOCKS_EXCLUDED(mu_);
  // Stops the thread; returns once it has exited. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // True for the refusals that retrying cannot cure.
  static bool IsFatal(const absl::Status& s);

 private:
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);
  // A heartbeat with this node's identity only (id, address, capacity,
  // incarnation).
  shutter::v1::HeartbeatRequest Identity() const;
  // Sends a full report if `full` or if anything that leadership depends
  // on changed since the last one; a keep-alive otherwise.
  absl::Status SendOnce(absl::Duration timeout, bool full);

  const Options options_;
  const NodeHost* const host_;
  const snapshot::Repository* const repo_;
  // One heartbeat call to `address`; `leader` gets the "shutter-leader"
  // trailer of a follower's answer, if any.
  absl::Status Call(const std::string& address,
                    const shutter::v1::HeartbeatRequest& req,
                    absl::Time deadline, shutter::v1::HeartbeatResponse* resp,
                    std::string* leader);
  // Sends to the controller believed to lead, following redirects and
  // trying the others, until `deadline`.
  absl::Status Send(const shutter::v1::HeartbeatRequest& req,
                    absl::Duration timeout,
                    shutter::v1::HeartbeatResponse* resp);
  // Whom heartbeats go to now (for logs).
  std::string Target() const ABSL_LOCKS_EXCLUDED(stub_mu_);

  mutable absl::Mutex stub_mu_;
  // Controllers that answered a stream with UNIMPLEMENTED: unary calls.
  std::set<std::string> unary_only_ ABSL_GUARDED_BY(stub_mu_);
  std::map<std::string, std::unique_ptr<shutter::v1::ControllerService::Stub>>
      stubs_ ABSL_GUARDED_BY(stub_mu_);
  // The controller believed to lead.
  std::string target_ ABSL_GUARDED_BY(stub_mu_);
  // Open heartbeat streams by controller address (heartbeat thread only;
  // after stubs_, so destroyed before them).
  std::map<std::string, std::unique_ptr<HeartbeatStream>> streams_;
  // Read from the repository until found (it may be created later).
  std::string repository_id_;  // heartbeat thread (or Register) only
  // (partition, role, epoch) of the last full report accepted; heartbeat
  // thread (or Register) only.
  std::vector<std::tuple<uint32_t, bool, uint64_t>> last_reported_;
  int since_full_ = 0;
  bool full_needed_ = true;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool soon_ ABSL_GUARDED_BY(mu_) = false;  // ReportSoon since the last beat
  std::thread thread_;
};

}  // namespace shutter::node

#endif  // SHUTTER_NODE_HEARTBEATER_H_
