#ifndef SHUTTER_CONTROLLER_CONTROLLER_GROUP_H_
#define SHUTTER_CONTROLLER_CONTROLLER_GROUP_H_

#include "absl/status/statusor.h"
#include "common/metrics.h"
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

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_CONTROLLER_GROUP_H_
