#ifndef SHUTTER_CONTROLLER_CONTROLLER_GROUP_H_
#define SHUTTER_CONTROLLER_CONTROLLER_GROUP_H_

#include <functional>

#include "absl/status/statusor.h"
#include "common/metrics.h"
#include "common/timer.h"
#include "controller/etcd_client.h"
#include "controller/leader_election.h"
#include "shutter/v1/admin.pb.h"

namespace shutter::controller {

// The group of controllers sharing `election`'s etcd prefix, as
// `shutterctl controllers list` shows it: every registered controller
// (role, the leader's term, what etcd says is left of its lease) and each
// etcd endpoint's health. With etcd unreachable, this controller's own
// view and the endpoints' errors (never an error itself). `base` carries
// the fields the caller fills (job store, answering controller).
shutter::v1::ListControllersResponse DescribeControllerGroup(
    EtcdClient* etcd, const LeaderElection* election,
    shutter::v1::ListControllersResponse base);

// The election's metrics, for the process' lifetime:
//   shutter_controller_leader            1 while this controller leads
//   shutter_controller_term              the leader's term as known here
//   shutter_controller_elections_won_total
//   shutter_controller_lease_renewal_seconds  last keep-alive round trip
void ExportElection(metrics::Registry* registry,
                    const LeaderElection* election);

// The same gauges for a controller without etcd: it always leads, in
// term 0 (so the alerts and dashboards see one shape everywhere).
void ExportSoleLeader(metrics::Registry* registry);

// EtcdClient::Options::observer recording into `registry`:
//   shutter_etcd_request_seconds{op}         latency (histogram)
//   shutter_etcd_request_errors_total{op}    calls that failed
std::function<void(const char*, const absl::Status&, absl::Duration)>
EtcdMetricsObserver(metrics::Registry* registry);

// Every `interval` (on `timer`, until it shuts down), compacts etcd's
// history up to the revision seen one interval earlier (`keep_from`: the
// revision to compact to now; 0 on the first call). etcd keeps every
// version of every key until compacted: without this the job records'
// history grows with every task transition.
void ScheduleEtcdCompaction(EtcdClient* etcd, Timer* timer,
                            absl::Duration interval, int64_t keep_from);

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_CONTROLLER_GROUP_H_
