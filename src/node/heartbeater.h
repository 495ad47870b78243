#ifndef SHUTTER_NODE_HEARTBEATER_H_
#define SHUTTER_NODE_HEARTBEATER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "node/node_host.h"
#include "shutter/v1/controller.grpc.pb.h"

namespace shutter::node {

// Sends a Heartbeat to the controller every `interval` from its own thread,
// describing the node and every hosted partition. Failures are logged (once
// per outage) and retried at the next tick. Thread-safe; `host` must
// outlive the heartbeater.
class Heartbeater {
 public:
  struct Options {
    std::string node_id;
    std::string advertise_address;
    std::string controller_address;
    int checkpoint_capacity = 2;
    absl::Duration interval = absl::Seconds(1);
  };

  Heartbeater(const Options& options, const NodeHost* host);
  // Calls Stop().
  ~Heartbeater();

  void Start();
  // Stops the thread; returns once it has exited. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);
  bool SendOnce();

  const Options options_;
  const NodeHost* const host_;
  std::unique_ptr<shutter::v1::ControllerService::Stub> stub_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace shutter::node

#endif  // SHUTTER_NODE_HEARTBEATER_H_
