#include "controller/controller_metrics.h"

namespace shutter::controller {

void ExportControllerState(metrics::Registry* registry,
                           const NodeRegistry* nodes,
                           const ScheduleRunner* schedules,
                           const Authorizer* authz) {
  registry->AddGaugeCallback("shutter_registry_nodes",
                             "Nodes the controller knows, by liveness",
                             [nodes](const metrics::EmitFn& emit) {
                               double alive = 0, dead = 0;
                               for (const auto& n : nodes->ListNodes())
                                 (n.alive() ? alive : dead)++;
                               emit({{"state", "alive"}}, alive);
                               emit({{"state", "dead"}}, dead);
                             });
  registry->AddGaugeCallback(
      "shutter_registry_partitions", "Partitions any node reports",
      [nodes](const metrics::EmitFn& emit) {
        emit({}, static_cast<double>(nodes->ListPartitions().size()));
      });
  registry->AddGaugeCallback(
      "shutter_schedule_last_success_timestamp_seconds",
      "When each schedule's last snapshot committed (Unix time; 0: never)",
      [schedules](const metrics::EmitFn& emit) {
        for (const auto& s : schedules->List()) {
          emit({{"schedule", s.name()}}, s.last_success_at_micros() / 1e6);
        }
      });
  registry->AddCounterCallback(
      "shutter_schedule_skipped_total",
      "Schedule ticks skipped (the previous run still going, or the "
      "snapshot could not start)",
      [schedules](const metrics::EmitFn& emit) {
        for (const auto& s : schedules->List()) {
          emit({{"schedule", s.name()}}, static_cast<double>(s.skipped()));
        }
      });
  registry->AddCounterCallback(
      "shutter_auth_denials_total",
      "Calls refused for authentication or authorization",
      [authz](const metrics::EmitFn& emit) {
        emit({}, static_cast<double>(authz->denials()));
      });
}

}  // namespace shutter::controller
