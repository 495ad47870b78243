#include "controller/membership.h"

#include <optional>

#include "controller/node_limits.h"

namespace shutter::controller {

absl::Status Membership::Heartbeat(const shutter::v1::HeartbeatRequest& req,
                                   shutter::v1::HeartbeatResponse* resp) {
  bool full_needed = false, capacity_changed = false, registered = false;
  resp->set_controller_term(term_);
  absl::Status s =
      registry_->Heartbeat(req, &full_needed, &capacity_changed, &registered);
  if (!s.ok()) return s;
  if (registered && transport_ != nullptr) transport_->Connect(req.address());
  resp->set_full_report_needed(full_needed);
  if (full_needed || req.leaving()) return absl::OkStatus();
  // The node's limit after this beat: sent back (below) and applied.
  int limit = static_cast<int>(req.checkpoint_capacity());
  if (NodeLimits* limits = engine_->limits(); limits != nullptr) {
    scheduler::Scheduler::KeyStats ks;
    if (req.has_load()) ks = engine_->NodeKeyStats(req.node_id());
    std::optional<int> changed = limits->Observe(
        req.node_id(), req.checkpoint_capacity(),
        req.has_load() ? &req.load() : nullptr, ks.in_flight, ks.queued);
    limit = changed
                ? *changed
                : limits->Effective(req.node_id(), req.checkpoint_capacity());
    // When the limit holds, what may be sent ahead can still move with
    // whether the node queues and its headroom (NodeLimits::HasHeadroom).
    // The registry has just recorded the beat's capacity and queueing.
    const bool moved = changed || capacity_changed;
    if (moved || req.has_load()) {
      const int ahead =
          engine_->AheadGiven(req.node_id(), limit, req.checkpoint_capacity(),
                              req.queues_checkpoints());
      if (moved || ahead != ks.ahead) {
        engine_->SetNodeLimit(req.node_id(), limit, ahead);
      }
    }
  } else if (capacity_changed) {
    engine_->SetNodeLimit(req.node_id(), limit);
  }
  // What the node holds follows the limit too (queues_checkpoints).
  resp->set_checkpoint_limit(static_cast<uint32_t>(limit));
  resp->set_expected_interval_millis(
      absl::ToInt64Milliseconds(expected_interval_));
  resp->set_repository_id(repository_id_);
  return absl::OkStatus();
}

}  // namespace shutter::controller
