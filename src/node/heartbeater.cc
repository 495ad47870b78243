#include "node/heartbeater.h"

#include "common/rpc.h"
#include "spdlog/spdlog.h"

namespace shutter::node {

Heartbeater::Heartbeater(const Options& options, const NodeHost* host,
                         const snapshot::Repository* repo)
    : options_(options),
      host_(host),
      repo_(repo),
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

bool Heartbeater::IsFatal(const absl::Status& s) {
  // Refusals that repeating cannot change, including a certificate the
  // controller does not accept for this node id.
  return absl::IsAlreadyExists(s) || absl::IsFailedPrecondition(s) ||
         absl::IsInvalidArgument(s) || absl::IsPermissionDenied(s) ||
         absl::IsUnauthenticated(s);
}

absl::Status Heartbeater::Register(absl::Duration timeout) {
  return SendOnce(timeout, /*full=*/true);
}

shutter::v1::HeartbeatRequest Heartbeater::Identity() const {
  shutter::v1::HeartbeatRequest req;
  req.set_node_id(options_.node_id);
  req.set_address(options_.advertise_address);
  req.set_checkpoint_capacity(options_.checkpoint_capacity);
  req.mutable_instance()->set_instance_id(options_.instance.instance_id);
  req.mutable_instance()->set_start_count(options_.instance.start_count);
  return req;
}

absl::Status Heartbeater::SendOnce(absl::Duration timeout, bool full) {
  if (repository_id_.empty()) {
    auto id = repo_->ReadIdentity();
    if (id.ok()) repository_id_ = *id;
  }
  shutter::v1::HeartbeatRequest req = Identity();
  req.set_repository_id(repository_id_);
  req.set_repository(repo_->Describe());
  if (options_.load) *req.mutable_load() = options_.load();
  const std::vector<NodeHost::PartitionStatus> status = host_->Status();
  std::vector<std::tuple<uint32_t, bool, uint64_t>> leadership;
  leadership.reserve(status.size());
  for (const auto& p : status) {
    leadership.emplace_back(p.partition_id, p.leader, p.leader_epoch);
  }
  full = full || full_needed_ || leadership != last_reported_ ||
         since_full_ + 1 >= options_.full_report_every;
  if (full) {
    for (const auto& p : status) {
      auto* hp = req.add_partitions();
      hp->set_partition_id(p.partition_id);
      hp->set_role(p.leader ? shutter::v1::PARTITION_ROLE_LEADER
                            : shutter::v1::PARTITION_ROLE_FOLLOWER);
      hp->set_leader_epoch(p.leader_epoch);
      hp->set_applied_index(p.applied_index);
      hp->set_approximate_size_bytes(p.approximate_size_bytes);
    }
  } else {
    req.set_partitions_omitted(true);
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   absl::ToChronoMilliseconds(timeout));
  shutter::v1::HeartbeatResponse resp;
  absl::Status s = FromGrpcStatus(stub_->Heartbeat(&ctx, req, &resp));
  if (!s.ok()) {
    spdlog::debug("heartbeat to {} failed: {}", options_.controller_address,
                  s.ToString());
    full_needed_ = true;  // the controller may have restarted meanwhile
    return s;
  }
  if (resp.full_report_needed()) {
    full_needed_ = true;
    // Send it now rather than a whole interval later.
    return full ? s : SendOnce(timeout, /*full=*/true);
  }
  if (full) {
    last_reported_ = std::move(leadership);
    since_full_ = 0;
    full_needed_ = false;
  } else {
    ++since_full_;
  }
  return s;
}

absl::Status Heartbeater::SendLeaving(absl::Duration timeout) {
  shutter::v1::HeartbeatRequest req = Identity();
  req.set_partitions_omitted(true);
  req.set_leaving(true);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   absl::ToChronoMilliseconds(timeout));
  shutter::v1::HeartbeatResponse resp;
  return FromGrpcStatus(stub_->Heartbeat(&ctx, req, &resp));
}

void Heartbeater::Loop() {
  bool was_ok = true;
  const absl::Duration timeout =
      std::max(options_.interval, absl::Milliseconds(500));
  for (;;) {
    absl::Status s = SendOnce(timeout, /*full=*/false);
    if (IsFatal(s)) {
      spdlog::error("controller {} refused this node: {}",
                    options_.controller_address, std::string(s.message()));
      if (options_.on_fatal) options_.on_fatal(s);
      return;
    }
    if (s.ok() && !was_ok) {
      spdlog::info("heartbeats to controller {} resumed",
                   options_.controller_address);
    } else if (!s.ok() && was_ok) {
      spdlog::warn("heartbeat to controller {} failed ({}); retrying every {}",
                   options_.controller_address, std::string(s.message()),
                   absl::FormatDuration(options_.interval));
    }
    was_ok = s.ok();
    absl::MutexLock l(&mu_);
    if (mu_.AwaitWithTimeout(absl::Condition(&stop_), options_.interval)) {
      return;
    }
  }
}

}  // namespace shutter::node
