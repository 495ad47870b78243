#include "controller/controller_metrics.h"

namespace shutter::controller {

void ExportControllerState(metrics::Registry* registry,
                           const NodeRegistry* nodes,
                           const ScheduleRunner* schedules, const void* owner) {
  registry->AddGaugeCallback(
      "shutter_registry_nodes", "Nodes the controller knows, by liveness",
      [nodes](const metrics::EmitFn& emit) {
        double alive = 0, dead = 0;
        for (const auto& n : nodes->ListNodes()) (n.alive() ? alive : dead)++;
        emit({{"state", "alive"}}, alive);
        emit({{"state", "dead"}}, dead);
      },
      owner);
  registry->AddGaugeCallback(
      "shutter_registry_partitions", "Partitions any node reports",
      [nodes](const metrics::EmitFn& emit) {
        emit({}, static_cast<double>(nodes->PartitionCount()));
      },
      owner);
  registry->AddGaugeCallback(
      "shutter_schedule_last_success_timestamp_seconds",
      "When each schedule's last snapshot committed (Unix time; 0: never)",
      [schedules](const metrics::EmitFn& emit) {
        for (const auto& s : schedules->List()) {
          emit({{"schedule", s.name()}}, s.last_success_at_micros() / 1e6);
        }
      },
      owner);
  registry->AddCounterCallback(
      "shutter_schedule_skipped_total",
      "Schedule ticks skipped (the previous run still going, or the "
      "snapshot could not start)",
      [schedules](const metrics::EmitFn& emit) {
        for (const auto& s : schedules->List()) {
          emit({{"schedule", s.name()}}, static_cast<double>(s.skipped()));
        }
      },
      owner);
}

void ExportAuthDenials(metrics::Registry* registry, const Authorizer* authz) {
  registry->AddCounterCallback(
      "shutter_auth_denials_total",
      "Calls refused for authentication or authorization",
      [authz](const metrics::EmitFn& emit) {
        emit({}, static_cast<double>(authz->denials()));
      });
}

void ExportNodeLimits(metrics::Registry* registry, const NodeLimits* limits,
                      const void* owner) {
  using View = NodeLimits::View;
  auto per_node = [limits](auto field, bool need_load) {
    return [limits, field, need_load](const metrics::EmitFn& emit) {
      for (const auto& [node, v] : limits->DescribeAll()) {
        if (need_load && !v.has_load) continue;
        const double x = field(v);
        if (x < 0) continue;  // not measured
        emit({{"node", node}}, x);
      }
    };
  };
  registry->AddGaugeCallback(
      "shutter_node_capacity", "Checkpoints each node accepts at once",
      per_node([](const View& v) { return double(v.capacity); }, false), owner);
  registry->AddGaugeCallback(
      "shutter_node_limit_pinned",
      "An operator's pin of the node's limit (0: adaptive)",
      per_node([](const View& v) { return double(v.pinned); }, false), owner);
  registry->AddCounterCallback(
      "shutter_node_limit_changes_total",
      "Changes of a node's limit by the adaptive rule",
      [limits](const metrics::EmitFn& emit) {
        for (const auto& [node, v] : limits->DescribeAll()) {
          emit({{"node", node}, {"direction", "down"}}, double(v.decreases));
          emit({{"node", node}, {"direction", "up"}}, double(v.increases));
        }
      },
      owner);
  registry->AddGaugeCallback(
      "shutter_node_cpu_busy_ratio",
      "CPU busy fraction each node reported for its last interval",
      per_node([](const View& v) { return v.load.cpu_busy(); }, true), owner);
  registry->AddGaugeCallback(
      "shutter_node_disk_busy_ratio",
      "Busy fraction of each node's data device over its last interval",
      per_node([](const View& v) { return v.load.disk_busy(); }, true), owner);
  registry->AddGaugeCallback(
      "shutter_node_foreground_write_p99_seconds",
      "p99 of each node's own writes over its last interval",
      per_node(
          [](const View& v) {
            return v.load.foreground_writes() == 0
                       ? -1.0
                       : v.load.foreground_write_p99_micros() / 1e6;
          },
          true),
      owner);
  registry->AddGaugeCallback(
      "shutter_node_idle_write_p99_seconds",
      "Each node's write p99 without snapshot work, as learned by the "
      "adaptive rule",
      per_node(
          [](const View& v) {
            return v.idle_write_p99_micros == 0 ? -1.0
                                                : v.idle_write_p99_micros / 1e6;
          },
          false),
      owner);
}

}  // namespace shutter::controller
