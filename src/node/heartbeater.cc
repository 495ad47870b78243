#include "node/heartbeater.h"

#include <algorithm>

#include "common/rpc.h"
#include "common/thread_name.h"
#include "spdlog/spdlog.h"

namespace shutter::node {

Heartbeater::Heartbeater(const Options& options, const NodeHost* host,
                         const snapshot::Repository* repo)
    : options_(options), host_(host), repo_(repo) {
  absl::MutexLock l(&stub_mu_);
  target_ = options_.controller_addresses.empty()
                ? ""
                : options_.controller_addresses.front();
}

std::string Heartbeater::Target() const {
  absl::MutexLock l(&stub_mu_);
  return target_;
}

absl::Status Heartbeater::Call(const std::string& address,
                               const shutter::v1::HeartbeatRequest& req,
                               absl::Time deadline,
                               shutter::v1::HeartbeatResponse* resp,
                               std::string* leader) {
  shutter::v1::ControllerService::Stub* stub;
  bool unary;
  {
    absl::MutexLock l(&stub_mu_);
    auto& s = stubs_[address];
    if (s == nullptr) {
      s = shutter::v1::ControllerService::NewStub(MakeControlChannel(address));
    }
    stub = s.get();
    unary = unary_only_.count(address) > 0;
  }
  if (!unary) {
    // Heartbeat thread (or Register / SendLeaving, never concurrently).
    std::unique_ptr<HeartbeatStream>& stream = streams_[address];
    const bool reused = stream != nullptr && !stream->done();
    if (!reused) stream = std::make_unique<HeartbeatStream>(stub);
    absl::Status s = stream->Exchange(req, deadline, resp, leader);
    if (reused && absl::IsUnavailable(s) && leader->empty()) {
      // It may have ended since the last beat (a restarted controller),
      // which only this beat could see: once more on a new stream.
      stream = std::make_unique<HeartbeatStream>(stub);
      s = stream->Exchange(req, deadline, resp, leader);
    }
    if (s.ok()) return s;
    stream.reset();  // ended or stuck: a new one for the next beat
    if (!absl::IsUnimplemented(s)) return s;
    spdlog::info(
        "controller {} does not serve heartbeat streams: unary heartbeats",
        address);
    absl::MutexLock l(&stub_mu_);
    unary_only_.insert(address);
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(deadline));
  grpc::Status g = stub->Heartbeat(&ctx, req, resp);
  if (!g.ok()) {
    const auto& trailers = ctx.GetServerTrailingMetadata();
    auto it = trailers.find("shutter-leader");
    if (it != trailers.end()) {
      leader->assign(it->second.data(), it->second.size());
    }
  }
  return FromGrpcStatus(g, ctx);
}

absl::Status Heartbeater::Send(const shutter::v1::HeartbeatRequest& req,
                               absl::Duration timeout,
                               shutter::v1::HeartbeatResponse* resp) {
  const absl::Time deadline = absl::Now() + timeout;
  const std::vector<std::string>& all = options_.controller_addresses;
  std::string address = Target();
  absl::Status s;
  // At most a redirect and a try of each controller per heartbeat.
  for (size_t attempt = 0; attempt < all.size() + 2; ++attempt) {
    std::string leader;
    *resp = shutter::v1::HeartbeatResponse();
    s = Call(address, req, deadline, resp, &leader);
    if (s.ok()) {
      if (options_.on_term) options_.on_term(resp->controller_term());
      if (options_.on_limit && resp->checkpoint_limit() > 0) {
        options_.on_limit(resp->checkpoint_limit());
      }
      absl::MutexLock l(&stub_mu_);
      if (target_ != address) {
        spdlog::info("heartbeats go to controller {} (term {})", address,
                     resp->controller_term());
      }
      target_ = address;
      return s;
    }
    if (!absl::IsUnavailable(s) && !absl::IsDeadlineExceeded(s)) return s;
    if (absl::Now() >= deadline || all.size() <= 1) return s;
    if (!leader.empty() && leader != address) {
      address = leader;  // a follower named the leader
      continue;
    }
    // Unreachable, or a follower that knows no leader yet: the next one.
    auto it = std::find(all.begin(), all.end(), address);
    address = it == all.end() || it + 1 == all.end() ? all.front() : *(it + 1);
  }
  return s;
}

Heartbeater::~Heartbeater() { Stop(); }

void Heartbeater::Start() {
  thread_ = std::thread([this] {
    NameThisThread("heartbeater");
    Loop();
  });
}

void Heartbeater::ReportSoon() {
  absl::MutexLock l(&mu_);
  soon_ = true;
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
  // CheckpointTaker queues requests beyond the capacity (WorkRunner).
  req.set_queues_checkpoints(true);
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
  // Sizes are read from RocksDB only for a full report.
  std::vector<std::tuple<uint32_t, bool, uint64_t>> leadership =
      host_->Leadership();
  full = full || full_needed_ || leadership != last_reported_ ||
         since_full_ + 1 >= options_.full_report_every;
  if (full) {
    const std::vector<NodeHost::PartitionStatus> status = host_->Status();
    leadership.clear();  // as reported
    for (const auto& p : status) {
      leadership.emplace_back(p.partition_id, p.leader, p.leader_epoch);
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
  shutter::v1::HeartbeatResponse resp;
  absl::Status s = Send(req, timeout, &resp);
  if (!s.ok()) {
    spdlog::debug("heartbeat to {} failed: {}", Target(), s.ToString());
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
  shutter::v1::HeartbeatResponse resp;
  return Send(req, timeout, &resp);
}

void Heartbeater::Loop() {
  bool was_ok = true;
  const absl::Duration timeout =
      std::max(options_.interval, absl::Milliseconds(500));
  constexpr absl::Duration kFirstRetry = absl::Milliseconds(100);
  absl::Duration retry = kFirstRetry;
  for (;;) {
    {
      absl::MutexLock l(&mu_);
      soon_ = false;  // this beat carries what changed before it
    }
    absl::Status s = SendOnce(timeout, /*full=*/false);
    if (IsFatal(s)) {
      spdlog::error("controller {} refused this node: {}", Target(),
                    std::string(s.message()));
      if (options_.on_fatal) options_.on_fatal(s);
      return;
    }
    if (s.ok() && !was_ok) {
      spdlog::info("heartbeats to controller {} resumed", Target());
    } else if (!s.ok() && was_ok) {
      spdlog::warn(
          "heartbeat to controller {} failed ({}); retrying, at most {} "
          "apart",
          Target(), std::string(s.message()),
          absl::FormatDuration(options_.interval));
    }
    was_ok = s.ok();
    absl::Duration wait = options_.interval;
    if (s.ok()) {
      retry = kFirstRetry;
    } else {
      wait = std::min(retry, options_.interval);
      retry = std::min(retry * 2, options_.interval);
    }
    absl::MutexLock l(&mu_);
    auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stop_ || soon_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&woken), wait);
    if (stop_) return;
  }
}

}  // namespace shutter::node
