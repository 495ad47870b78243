#ifndef SHUTTER_NODE_HEARTBEAT_STREAM_H_
#define SHUTTER_NODE_HEARTBEAT_STREAM_H_

#include <deque>
#include <string>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "shutter/v1/controller.grpc.pb.h"

namespace shutter::node {

// One ControllerService.HeartbeatStream: a long-lived stream on which each
// beat is one request and its response (see controller.proto). Opened at
// construction; Exchange sends a beat and waits for its answer.
//
// A read is outstanding only from a beat until its answer. gRPC 1.51
// answers a read started after a message was taken with an HTTP/2
// WINDOW_UPDATE sent at once: started right after each answer, it reached
// the controller as a packet of its own a second before the next beat (a
// wake-up and a read more per beat there); started with the beat, it goes
// out just before it and the controller takes both in one read
// (docs/performance.md, "The read with the beat").
//
// Once the stream has ended (the controller refused a beat, redirected to
// the leader, went away, or a beat timed out) every Exchange returns the
// end's status: make a new stream. An end between beats is seen by the
// next Exchange, which returns it at once. Not thread-safe: one caller at
// a time (the node's heartbeat thread); the destructor cancels the stream
// and waits until gRPC is done with it.
class HeartbeatStream final
    : public grpc::ClientBidiReactor<shutter::v1::HeartbeatRequest,
                                     shutter::v1::HeartbeatResponse> {
 public:
  explicit HeartbeatStream(shutter::v1::ControllerService::Stub* stub);
  ~HeartbeatStream() override;

  HeartbeatStream(const HeartbeatStream&) = delete;
  HeartbeatStream& operator=(const HeartbeatStream&) = delete;

  // Sends `request`, waits for its response until `deadline`. The
  // stream's end status if it ended (UNIMPLEMENTED from a controller
  // without streams; a follower's UNAVAILABLE with `leader` set from its
  // shutter-leader trailer; CANCELLED by a stopping controller is given as
  // UNAVAILABLE), DEADLINE_EXCEEDED (and the stream is cancelled) if no
  // answer came in time.
  absl::Status Exchange(const shutter::v1::HeartbeatRequest& request,
                        absl::Time deadline,
                        shutter::v1::HeartbeatResponse* response,
                        std::string* leader) ABSL_LOCKS_EXCLUDED(mu_);

  // True once the stream is known to have ended (Exchange would fail at
  // once): by a beat or its deadline, or the destructor. False does not
  // promise the next Exchange reaches the controller.
  bool done() const ABSL_LOCKS_EXCLUDED(mu_);

  void OnWriteDone(bool ok) override ABSL_LOCKS_EXCLUDED(mu_);
  void OnReadDone(bool ok) override ABSL_LOCKS_EXCLUDED(mu_);
  void OnDone(const grpc::Status& s) override ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // The end's status as Exchange returns it (mu_ held, done_ set).
  absl::Status EndStatus(std::string* leader) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // True (once) when the hold on the call may go: the stream has ended
  // and no write is in flight. The caller then calls RemoveHold, outside
  // mu_.
  bool ReleaseHoldLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  grpc::ClientContext ctx_;
  shutter::v1::HeartbeatRequest request_;    // the write in flight
  shutter::v1::HeartbeatResponse incoming_;  // the read in flight
  mutable absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  // A read is outstanding (started by Exchange, ended by OnReadDone).
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  // The stream ended (its read failed, or this object is going away): no
  // more writes start.
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  bool hold_released_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<shutter::v1::HeartbeatResponse> answers_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  std::string leader_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shutter::node

#endif  // SHUTTER_NODE_HEARTBEAT_STREAM_H_
