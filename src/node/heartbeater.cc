#include "node/heartbeater.h"

#include "common/rpc.h"
#include "spdlog/spdlog.h"

namespace shutter::node {

Heartbeater::Heartbeater(const Options& options, const NodeHost* host)
    : options_(options),
      host_(host),
      stub_(shutter::v1::ControllerService::NewStub(
          MakeChannel(options.controller_address))) {}

Heartbeater::~Heartbeater() { Stop(); }

void Heartbeater::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void Heartbeater::Stop() {
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

bool Heartbeater::SendOnce() {
  shutter::v1::HeartbeatRequest req;
  req.set_node_id(options_.node_id);
  req.set_address(options_.advertise_address);
  req.set_checkpoint_capacity(options_.checkpoint_capacity);
  for (const auto& p : host_->Status()) {
    auto* hp = req.add_partitions();
    hp->set_partition_id(p.partition_id);
    hp->set_role(p.leader ? shutter::v1::PARTITION_ROLE_LEADER
                          : shutter::v1::PARTITION_ROLE_FOLLOWER);
    hp->set_leader_epoch(p.leader_epoch);
    hp->set_applied_index(p.applied_index);
    hp->set_approximate_size_bytes(p.approximate_size_bytes);
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   absl::ToChronoMilliseconds(
                       std::max(options_.interval, absl::Milliseconds(500))));
  shutter::v1::HeartbeatResponse resp;
  grpc::Status s = stub_->Heartbeat(&ctx, req, &resp);
  if (!s.ok()) {
    spdlog::debug("heartbeat to {} failed: {}", options_.controller_address,
                  s.error_message());
  }
  return s.ok();
}

void Heartbeater::Loop() {
  bool was_ok = true;
  for (;;) {
    bool ok = SendOnce();
    if (ok && !was_ok) {
      spdlog::info("heartbeats to controller {} resumed",
                   options_.controller_address);
    } else if (!ok && was_ok) {
      spdlog::warn("heartbeat to controller {} failed; retrying every {}",
                   options_.controller_address,
                   absl::FormatDuration(options_.interval));
    }
    was_ok = ok;
    absl::MutexLock l(&mu_);
    if (mu_.AwaitWithTimeout(absl::Condition(&stop_), options_.interval)) {
      return;
    }
  }
}

}  // namespace shutter::node
