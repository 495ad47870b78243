#ifndef SHUTTER_CONTROLLER_CONTROLLER_METRICS_H_
#define SHUTTER_CONTROLLER_CONTROLLER_METRICS_H_

#include "common/metrics.h"
#include "common/security.h"
#include "controller/node_limits.h"
#include "controller/node_registry.h"
#include "controller/schedules.h"

namespace shutter::controller {

// Scrape-time metrics of the controller's state (the coordinator measures
// its own jobs, see JobEngine::Options::metrics):
//   shutter_registry_nodes{state="alive|dead"}
//   shutter_registry_partitions
//   shutter_schedule_last_success_timestamp_seconds{schedule}
//   shutter_schedule_skipped_total{schedule}
// The pointers must stay valid until registry->RemoveCallbacks(owner)
// (a term of leadership's parts, removed when the term ends).
void ExportControllerState(metrics::Registry* registry,
                           const NodeRegistry* nodes,
                           const ScheduleRunner* schedules, const void* owner);

//   shutter_auth_denials_total (for the process' lifetime)
void ExportAuthDenials(metrics::Registry* registry, const Authorizer* authz);

// Per node, from the load its heartbeats report and the limit rule:
//   shutter_node_capacity{node}
//   shutter_node_limit_pinned{node}            (0: not pinned)
//   shutter_node_limit_changes_total{node,direction="down|up"}
//   shutter_node_cpu_busy_ratio{node}, shutter_node_disk_busy_ratio{node}
//   shutter_node_foreground_write_p99_seconds{node}
//   shutter_node_idle_write_p99_seconds{node}  (the rule's baseline)
// (The effective limit is shutter_node_limit, from the scheduler.)
void ExportNodeLimits(metrics::Registry* registry, const NodeLimits* limits,
                      const void* owner);

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_CONTROLLER_METRICS_H_
