#ifndef SHUTTER_CONTROLLER_CONTROLLER_METRICS_H_
#define SHUTTER_CONTROLLER_CONTROLLER_METRICS_H_

#include "common/metrics.h"
#include "common/security.h"
#include "controller/node_registry.h"
#include "controller/schedules.h"

namespace shutter::controller {

// Scrape-time metrics of the controller's state (the coordinator measures
// its own jobs, see SnapshotCoordinator::Options::metrics):
//   shutter_registry_nodes{state="alive|dead"}
//   shutter_registry_partitions
//   shutter_schedule_last_success_timestamp_seconds{schedule}
//   shutter_schedule_skipped_total{schedule}
//   shutter_auth_denials_total
// The pointers must stay valid while `registry` serves.
void ExportControllerState(metrics::Registry* registry,
                           const NodeRegistry* nodes,
                           const ScheduleRunner* schedules,
                           const Authorizer* authz);

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_CONTROLLER_METRICS_H_
