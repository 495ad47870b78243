#include "controller/controller_group.h"

#include <map>
#include <string>
#include <utility>

#include "shutter/store/v1/controllers.pb.h"
#include "spdlog/spdlog.h"

namespace shutter::controller {

namespace ep = etcdserverpb;

namespace {
constexpr char kLeader[] = "shutter_controller_leader";
constexpr char kLeaderHelp[] =
    "1 while this controller leads its group (0: following)";
constexpr char kTerm[] = "shutter_controller_term";
constexpr char kTermHelp[] =
    "The leader's term as this controller knows it (0: none known, or no "
    "etcd)";
constexpr char kElections[] = "shutter_controller_elections_won_total";
constexpr char kElectionsHelp[] = "Times this controller became the leader";
constexpr char kRenewal[] = "shutter_controller_lease_renewal_seconds";
constexpr char kRenewalHelp[] =
    "Round trip of the last renewal of this controller's etcd lease";
}  // namespace

shutter::v1::ListControllersResponse DescribeControllerGroup(
    EtcdClient* etcd, const LeaderElection* election,
    shutter::v1::ListControllersResponse out) {
  const LeaderElection::View self = election->Current();
  std::string leader_id;
  uint64_t term = 0;
  ep::RangeRequest lr;
  lr.set_key(election->LeaderKey());
  auto leader = etcd->Range(lr);
  if (leader.ok() && !leader->kvs().empty()) {
    shutter::store::v1::ControllerRecord r;
    if (r.ParseFromString(leader->kvs(0).value())) leader_id = r.id();
    term = static_cast<uint64_t>(leader->kvs(0).create_revision());
  }
  const std::string prefix = election->ControllerKey("");
  ep::RangeRequest cr;
  cr.set_key(prefix);
  cr.set_range_end(PrefixRangeEnd(prefix));
  auto members = leader.ok() ? etcd->Range(cr) : leader.status();
  if (members.ok()) {
    for (const auto& kv : members->kvs()) {
      shutter::store::v1::ControllerRecord r;
      if (!r.ParseFromString(kv.value())) continue;
      shutter::v1::ControllerInfo* c = out.add_controllers();
      c->set_id(r.id());
      c->set_address(r.address());
      c->set_started_unix_ms(r.started_unix_ms());
      c->set_version(r.version());
      c->set_console_url(r.console_url());
      const bool leads = !leader_id.empty() && r.id() == leader_id;
      c->set_role(leads ? shutter::v1::CONTROLLER_ROLE_LEADER
                        : shutter::v1::CONTROLLER_ROLE_FOLLOWER);
      c->set_term(leads ? term : 0);
      auto ttl = etcd->LeaseTimeToLive(kv.lease());
      c->set_lease_left_ms(ttl.ok() && *ttl >= 0 ? *ttl * 1000 : -1);
    }
  } else {
    // etcd is not answering: say what this controller knows of itself.
    shutter::v1::ControllerInfo* c = out.add_controllers();
    c->set_id(out.answered_by());
    c->set_address(out.answered_by());
    c->set_role(self.leader ? shutter::v1::CONTROLLER_ROLE_LEADER
                            : shutter::v1::CONTROLLER_ROLE_FOLLOWER);
    c->set_term(self.leader ? static_cast<uint64_t>(self.term) : 0);
    c->set_lease_left_ms(absl::ToInt64Milliseconds(self.lease_left));
  }
  for (const std::string& endpoint : etcd->options().endpoints) {
    shutter::v1::EtcdEndpointHealth* h = out.add_etcd();
    h->set_endpoint(endpoint);
    auto st = etcd->EndpointStatus(endpoint);
    if (!st.ok()) {
      h->set_healthy(false);
      h->set_error(std::string(st.status().message()));
      continue;
    }
    // A member that answers but has no leader cannot serve.
    h->set_healthy(st->leader() != 0 && st->errors().empty());
    if (st->leader() == 0) h->set_error("no etcd leader (no quorum)");
    for (const auto& e : st->errors()) {
      h->set_error(h->error().empty() ? e : h->error() + "; " + e);
    }
    h->set_version(st->version());
    h->set_db_size_bytes(st->dbsize());
    h->set_is_etcd_leader(st->leader() == st->header().member_id());
  }
  return out;
}

void ExportElection(metrics::Registry* registry,
                    const LeaderElection* election) {
  registry->AddGaugeCallback(kLeader, kLeaderHelp,
                             [election](const metrics::EmitFn& emit) {
                               emit({}, election->Current().leader ? 1 : 0);
                             });
  registry->AddGaugeCallback(
      kTerm, kTermHelp, [election](const metrics::EmitFn& emit) {
        emit({}, static_cast<double>(election->Current().term));
      });
  registry->AddCounterCallback(
      kElections, kElectionsHelp, [election](const metrics::EmitFn& emit) {
        emit({}, static_cast<double>(election->elections_won()));
      });
  registry->AddGaugeCallback(
      kRenewal, kRenewalHelp, [election](const metrics::EmitFn& emit) {
        emit({}, absl::ToDoubleSeconds(election->last_renewal()));
      });
}

void ExportSoleLeader(metrics::Registry* registry) {
  registry->AddGaugeCallback(kLeader, kLeaderHelp,
                             [](const metrics::EmitFn& emit) { emit({}, 1); });
  registry->AddGaugeCallback(kTerm, kTermHelp,
                             [](const metrics::EmitFn& emit) { emit({}, 0); });
  registry->AddCounterCallback(
      kElections, kElectionsHelp,
      [](const metrics::EmitFn& emit) { emit({}, 0); });
  registry->AddGaugeCallback(kRenewal, kRenewalHelp,
                             [](const metrics::EmitFn& emit) { emit({}, 0); });
}

std::function<void(const char*, const absl::Status&, absl::Duration)>
EtcdMetricsObserver(metrics::Registry* registry) {
  static constexpr char kSeconds[] = "shutter_etcd_request_seconds";
  static constexpr char kSecondsHelp[] =
      "Latency of the controller's etcd calls (failover included)";
  static constexpr char kErrors[] = "shutter_etcd_request_errors_total";
  static constexpr char kErrorsHelp[] =
      "The controller's etcd calls that failed";
  for (const char* op : {"txn", "range", "put", "delete", "lease grant",
                         "lease revoke", "lease time-to-live", "compact"}) {
    registry->GetHistogram(kSeconds, kSecondsHelp, {{"op", op}});
    registry->GetCounter(kErrors, kErrorsHelp, {{"op", op}});
  }
  return [registry](const char* op, const absl::Status& s, absl::Duration d) {
    registry->GetHistogram(kSeconds, kSecondsHelp, {{"op", op}})
        ->Observe(absl::ToDoubleSeconds(d));
    if (!s.ok())
      registry->GetCounter(kErrors, kErrorsHelp, {{"op", op}})->Inc();
  };
}

void ScheduleEtcdCompaction(EtcdClient* etcd, Timer* timer,
                            absl::Duration interval, int64_t keep_from) {
  timer->RunAfter(interval, [etcd, timer, interval, keep_from]() {
    int64_t now = 0;
    ep::RangeRequest probe;
    probe.set_key(std::string(1, '\0'));
    probe.set_count_only(true);
    auto r = etcd->Range(probe);
    if (r.ok()) now = r->header().revision();
    if (keep_from > 0) {
      absl::Status s = etcd->Compact(keep_from);
      if (!s.ok()) {
        spdlog::warn("etcd compaction to revision {}: {}", keep_from,
                     s.ToString());
      }
    }
    ScheduleEtcdCompaction(etcd, timer, interval, now);
  });
}

}  // namespace shutter::controller
