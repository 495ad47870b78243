#include "controller/leader_election.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/thread_name.h"
#include "shutter/store/v1/controllers.pb.h"
#include "spdlog/spdlog.h"

namespace shutter::controller {

namespace ep = etcdserverpb;

namespace {

// A monotonic clock for the lease: wall-clock steps must not lengthen it.
int64_t SteadyNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// How often the leader and followers look at the lease and at stop while
// waiting on a watch.
constexpr absl::Duration kPoll = absl::Milliseconds(100);

}  // namespace

LeaderElection::LeaderElection(Options options, EtcdClient* client,
                               EtcdJobStore* store, Callbacks callbacks)
    : options_(std::move(options)),
      client_(client),
      store_(store),
      callbacks_(std::move(callbacks)) {}

LeaderElection::~LeaderElection() { Shutdown(); }

std::string LeaderElection::ControllerKey(absl::string_view id) const {
  return absl::StrCat(options_.prefix, "controllers/", id);
}

void LeaderElection::Start() {
  keeper_ = std::thread([this] {
    NameThisThread("lease-keeper");
    KeepAliveLoop();
  });
  thread_ = std::thread([this] {
    NameThisThread("election");
    Run();
  });
}

void LeaderElection::Shutdown() {
  {
    absl::MutexLock l(&mu_);
    if (stop_) return;
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
  if (keeper_.joinable()) keeper_.join();
  int64_t lease;
  {
    absl::MutexLock l(&mu_);
    lease = lease_id_;
    lease_id_ = 0;
  }
  lease_until_ns_ = 0;
  if (lease != 0) {
    // Resign: the leader key (if ours) and our registration go with the
    // lease, and a follower campaigns at once.
    absl::Status s = client_->LeaseRevoke(lease);
    if (!s.ok() && !absl::IsNotFound(s)) {
      spdlog::warn("leaving the controller group: {}", s.ToString());
    }
  }
}

bool LeaderElection::Leads(int64_t term) const {
  return term != 0 && leading_term_.load() == term &&
         SteadyNanos() < lease_until_ns_.load();
}

bool LeaderElection::LeaseAlive() const {
  return SteadyNanos() < lease_until_ns_.load();
}

LeaderElection::View LeaderElection::Current() const {
  View v;
  const int64_t left = lease_until_ns_.load() - SteadyNanos();
  v.lease_left = left > 0 ? absl::Nanoseconds(left) : absl::ZeroDuration();
  absl::MutexLock l(&mu_);
  v.leader = leading_term_.load() != 0 && left > 0;
  v.term = known_term_;
  v.leader_id = leader_id_;
  v.leader_address = leader_address_;
  return v;
}

absl::Duration LeaderElection::last_renewal() const {
  absl::MutexLock l(&mu_);
  return last_renewal_;
}

void LeaderElection::Depose() {
  leading_term_ = 0;
  absl::MutexLock l(&mu_);
  deposed_ = true;
}

bool LeaderElection::Pause(absl::Duration d) {
  absl::MutexLock l(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stop_), d);
  return !stop_;
}

void LeaderElection::KeepAliveLoop() {
  std::unique_ptr<EtcdLeaseKeeper> keeper;
  int64_t kept = 0;
  absl::Duration ttl = options_.lease;
  for (;;) {
    int64_t lease;
    {
      absl::MutexLock l(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || lease_id_ != 0;
      };
      mu_.Await(absl::Condition(&ready));
      if (stop_) return;
      lease = lease_id_;
    }
    if (lease != kept) {
      keeper = client_->KeepAlive(lease);
      kept = lease;
    }
    const int64_t sent = SteadyNanos();
    const absl::Time sent_wall = absl::Now();
    // An answer later than a third of the TTL is as good as none: by then
    // the next renewal is due.
    absl::StatusOr<int64_t> granted = keeper->Renew(sent_wall + ttl / 3);
    if (granted.ok()) {
      ttl = absl::Seconds(*granted);
      // Counted from when the request left: etcd restarted its count on
      // receipt, later than this.
      lease_until_ns_ = sent + absl::ToInt64Nanoseconds(ttl);
      absl::MutexLock l(&mu_);
      last_renewal_ = absl::Now() - sent_wall;
    } else if (absl::IsNotFound(granted.status())) {
      spdlog::warn("controller lease {} is gone: {}", lease,
                   granted.status().ToString());
      lease_until_ns_ = 0;
      absl::MutexLock l(&mu_);
      if (lease_id_ == lease) lease_id_ = 0;
      continue;
    } else {
      spdlog::warn("controller lease {} not renewed: {}", lease,
                   granted.status().ToString());
    }
    const absl::Duration wait =
        std::max(absl::Milliseconds(50), ttl / 3 - (absl::Now() - sent_wall));
    if (!Pause(wait)) return;
  }
}

shutter::store::v1::ControllerRecord LeaderElection::Record() const {
  shutter::store::v1::ControllerRecord me;
  me.set_id(options_.id);
  me.set_address(options_.address);
  me.set_started_unix_ms(absl::ToUnixMillis(absl::Now()));
  me.set_version(options_.version);
  me.set_console_url(options_.console_url);
  return me;
}

absl::Status LeaderElection::Join() {
  const int64_t sent = SteadyNanos();
  absl::StatusOr<ep::LeaseGrantResponse> grant =
      client_->LeaseGrant(options_.lease);
  if (!grant.ok()) return grant.status();
  const shutter::store::v1::ControllerRecord me = Record();
  ep::PutRequest put;
  put.set_key(ControllerKey(options_.id));
  put.set_value(me.SerializeAsString());
  put.set_lease(grant->id());
  absl::StatusOr<ep::PutResponse> r = client_->Put(put);
  if (!r.ok()) {
    (void)client_->LeaseRevoke(grant->id());
    return r.status();
  }
  lease_until_ns_ =
      sent + absl::ToInt64Nanoseconds(absl::Seconds(grant->ttl()));
  absl::MutexLock l(&mu_);
  lease_id_ = grant->id();
  return absl::OkStatus();
}

void LeaderElection::Run() {
  for (;;) {
    {
      absl::MutexLock l(&mu_);
      if (stop_) return;
    }
    absl::Status s;
    if (!LeaseAlive()) {
      int64_t old;
      {
        absl::MutexLock l(&mu_);
        old = lease_id_;
        lease_id_ = 0;
      }
      if (old != 0) (void)client_->LeaseRevoke(old);
      s = Join();
    }
    if (s.ok()) s = Campaign();
    if (!s.ok()) {
      spdlog::warn("controller election: {}", s.ToString());
      if (!Pause(absl::Milliseconds(500))) return;
    }
  }
}

absl::Status LeaderElection::Campaign() {
  int64_t lease;
  {
    absl::MutexLock l(&mu_);
    lease = lease_id_;
  }
  const shutter::store::v1::ControllerRecord me = Record();
  const std::string key = LeaderKey();
  ep::TxnRequest txn;
  ep::Compare* c = txn.add_compare();
  c->set_key(key);
  c->set_target(ep::Compare::CREATE);
  c->set_result(ep::Compare::EQUAL);
  c->set_create_revision(0);
  ep::PutRequest* put = txn.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(me.SerializeAsString());
  put->set_lease(lease);
  txn.add_failure()->mutable_request_range()->set_key(key);
  absl::StatusOr<ep::TxnResponse> r = client_->Txn(txn);
  if (!r.ok()) return r.status();
  if (r->succeeded()) {
    Lead(r->header().revision());
    return absl::OkStatus();
  }
  const auto& kvs = r->responses(0).response_range().kvs();
  if (kvs.empty()) return absl::OkStatus();  // deleted meanwhile: again
  const auto& kv = kvs[0];
  if (kv.lease() == lease) {
    // Ours: an earlier campaign's answer was lost on the way back.
    Lead(kv.create_revision());
    return absl::OkStatus();
  }
  shutter::store::v1::ControllerRecord leader;
  (void)leader.ParseFromString(kv.value());
  {
    absl::MutexLock l(&mu_);
    leader_id_ = leader.id();
    leader_address_ = leader.address();
    known_term_ = kv.create_revision();
  }
  Follow(r->header().revision() + 1);
  return absl::OkStatus();
}

void LeaderElection::Lead(int64_t term) {
  {
    absl::MutexLock l(&mu_);
    deposed_ = false;
    leader_id_ = options_.id;
    leader_address_ = options_.address;
    known_term_ = term;
  }
  store_->SetFence(
      EtcdFence{LeaderKey(), term, absl::StrCat(options_.id, " term ", term)});
  leading_term_ = term;
  ++elections_won_;
  spdlog::info("controller {} leads, term {}", options_.id, term);
  absl::Status s =
      callbacks_.on_elected ? callbacks_.on_elected(term) : absl::OkStatus();
  if (!s.ok()) {
    spdlog::error("controller {} could not take over (term {}): {}; resigning",
                  options_.id, term, s.ToString());
    leading_term_ = 0;
    store_->ClearFence();
    int64_t lease;
    {
      absl::MutexLock l(&mu_);
      lease = lease_id_;
      lease_id_ = 0;
    }
    lease_until_ns_ = 0;
    if (lease != 0) (void)client_->LeaseRevoke(lease);
    Pause(absl::Seconds(1));
    return;
  }
  std::string why;
  ep::WatchCreateRequest create;
  create.set_key(LeaderKey());
  create.set_start_revision(term + 1);
  std::unique_ptr<EtcdWatch> watch = client_->Watch(create);
  for (;;) {
    {
      absl::MutexLock l(&mu_);
      if (stop_) {
        why = "shutting down";
        break;
      }
      if (deposed_) {
        why = "a write found another leader";
        break;
      }
    }
    if (!LeaseAlive()) {
      why = "its lease was not renewed in time";
      break;
    }
    absl::StatusOr<ep::WatchResponse> w = watch->Next(absl::Now() + kPoll);
    if (absl::IsDeadlineExceeded(w.status())) continue;
    if (!w.ok()) {
      // The watch broke (etcd unreachable): the lease decides; watch again.
      watch.reset();
      if (!Pause(kPoll)) continue;
      watch = client_->Watch(create);
      continue;
    }
    bool changed = false;
    for (const auto& ev : w->events()) {
      if (ev.type() == mvccpb::Event::DELETE ||
          ev.kv().create_revision() != term) {
        changed = true;
      }
    }
    if (changed) {
      why = "the leader key changed";
      break;
    }
  }
  watch.reset();
  leading_term_ = 0;
  {
    // Who leads now is unknown until a campaign or a watch says.
    absl::MutexLock l(&mu_);
    leader_id_.clear();
    leader_address_.clear();
  }
  store_->ClearFence();
  spdlog::warn("controller {} steps down (term {}): {}", options_.id, term,
               why);
  if (callbacks_.on_deposed) callbacks_.on_deposed();
}

void LeaderElection::Follow(int64_t from_revision) {
  ep::WatchCreateRequest create;
  create.set_key(LeaderKey());
  create.set_start_revision(from_revision);
  std::unique_ptr<EtcdWatch> watch = client_->Watch(create);
  for (;;) {
    {
      absl::MutexLock l(&mu_);
      if (stop_) return;
    }
    if (!LeaseAlive()) return;
    absl::StatusOr<ep::WatchResponse> w = watch->Next(absl::Now() + kPoll);
    if (absl::IsDeadlineExceeded(w.status())) continue;
    if (!w.ok()) return;  // campaign again (it reads the key afresh)
    for (const auto& ev : w->events()) {
      if (ev.type() == mvccpb::Event::DELETE) {
        absl::MutexLock l(&mu_);
        leader_id_.clear();
        leader_address_.clear();
        return;
      }
      shutter::store::v1::ControllerRecord leader;
      (void)leader.ParseFromString(ev.kv().value());
      absl::MutexLock l(&mu_);
      leader_id_ = leader.id();
      leader_address_ = leader.address();
      known_term_ = ev.kv().create_revision();
    }
  }
}

}  // namespace shutter::controller
