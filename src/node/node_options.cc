#include "node/node_options.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/cli_parse.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "common/text.h"

namespace shutter::node {

absl::StatusOr<NodeOptions> ParseNodeOptions(int argc, const char* const* argv,
                                             bool* help,
                                             std::string* help_text) {
  NodeOptions o;
  std::string partitions, leader_for;
  CLI::App app{
      "shutter-node: hosts partitions (one RocksDB each) and takes "
      "their checkpoints for the Shutter controller"};
  app.set_config("--config", "", "TOML config file (keys as long flag names)");
  app.allow_config_extras(CLI::config_extras_mode::error);
  app.add_option("--node-id", o.node_id, "Unique node id")->required();
  app.add_option("--listen", o.listen, "host:port to serve on (port 0: any)")
      ->capture_default_str();
  app.add_option(
      "--advertise", o.advertise,
      "host:port the controller dials (default: listen host, bound port)");
  app.add_option("--controller", o.controller,
                 "Controller host:port, or host:port,host:port,... of a "
                 "group of controllers (heartbeats follow the leader)")
      ->capture_default_str();
  app.add_option("--data-dir", o.data_dir, "Partition data directory")
      ->required();
  app.add_option(
         "--repository", o.repository,
         "Snapshot repository: directory, file:///path or s3://bucket/prefix")
      ->required();
  app.add_option("--partitions", partitions, "Hosted partitions, e.g. 0-7")
      ->required();
  app.add_option(
      "--leader-for", leader_for,
      "Partitions led here (default: all hosted; \"none\" for none)");
  app.add_option("--checkpoint-capacity", o.checkpoint_capacity,
                 "Checkpoints taken at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--publish-stream-mibps", o.publish_stream_mibps,
                 "Cap on each checkpoint's publish stream, MiB/s (0: none)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e6));
  app.add_option("--publish-bandwidth-mibps", o.publish_bandwidth_mibps,
                 "Cap on this node's total publish bandwidth, MiB/s (0: none)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e6));
  app.add_option("--hash-cache", o.hash_cache,
                 "Remember hashes of published SST files (true/false)")
      ->capture_default_str();
  app.add_option("--bootstrap-from", o.bootstrap_from,
                 "Restore hosted partitions without a local store from this "
                 "snapshot before serving: latest or a snapshot id");
  app.add_option("--bootstrap-min-applied-index", o.bootstrap_min_applied_index,
                 "With --bootstrap-from: refuse older checkpoints");
  app.add_option("--min-free-mib", o.min_free_mib,
                 "Refuse checkpoints below this much free space, MiB")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 30));
  app.add_option("--heartbeat-interval-ms", o.heartbeat_interval_ms,
                 "Heartbeat period")
      ->capture_default_str()
      ->check(CLI::Range(10, 60000));
  app.add_option("--disk-device", o.disk_device,
                 "Block device reported as the node's disk load (as in "
                 "/proc/diskstats); default: the data directory's");
  app.add_option("--listener-check-ms", o.listener_check_ms,
                 "Self-check of the listener every this long (0: off)")
      ->capture_default_str()
      ->check(CLI::Range(0, 3600000));
  app.add_option("--port-file", o.port_file, "Write the bound port here");
  app.add_option("--log-level", o.log_level, "trace|debug|info|warn|error|off")
      ->capture_default_str()
      ->check(CLI::IsMember(
          {"trace", "debug", "info", "warn", "error", "critical", "off"}));
  AddS3Flags(app, &o.s3);
  AddDaemonTlsFlags(app, &o.tls);
  app.add_option("--snapshot-nice", o.snapshot_nice,
                 "CPU nice value of snapshot and restore threads (0: as the "
                 "daemon)")
      ->capture_default_str()
      ->check(CLI::Range(0, 19));
  app.add_option("--snapshot-io-class", o.snapshot_io_class,
                 "I/O scheduling class of snapshot and restore threads, so "
                 "the partitions' own I/O goes first")
      ->capture_default_str()
      ->check(CLI::IsMember({"normal", "best-effort-low", "idle"}));
  app.add_option("--metrics-listen", o.metrics_listen,
                 "Serve Prometheus metrics (GET /metrics) on host:port; "
                 "empty: off");
  app.add_option("--controller-identity", o.controller_identity,
                 "Common name of the controller's certificate")
      ->capture_default_str();
  app.add_flag("--enable-data-plane", o.enable_data_plane,
               "Serve PartitionData (reads and writes of the reference "
               "node) and the SetPartitionRole test hook");
  RETURN_IF_ERROR(ParseCli(app, argc, argv, help, help_text));
  if (*help) return o;

  RETURN_IF_ERROR(CheckSafeId("--node-id:", o.node_id));
  auto ids = ParseIdList(partitions);
  if (!ids.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--partitions: ", ids.status().message()));
  }
  o.partitions = *ids;
  if (leader_for.empty()) {
    o.leader_for.insert(o.partitions.begin(), o.partitions.end());
  } else if (leader_for != "none") {
    auto lids = ParseIdList(leader_for);
    if (!lids.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--leader-for: ", lids.status().message()));
    }
    for (uint32_t id : *lids) {
      if (!std::binary_search(o.partitions.begin(), o.partitions.end(), id)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--leader-for: partition ", id, " is not in --partitions"));
      }
      o.leader_for.insert(id);
    }
  }
  RETURN_IF_ERROR(ParseHostPort("--listen", o.listen, true).status());
  if (!o.metrics_listen.empty()) {
    RETURN_IF_ERROR(
        ParseHostPort("--metrics-listen", o.metrics_listen, true).status());
  }
  if (!o.advertise.empty()) {
    RETURN_IF_ERROR(ParseHostPort("--advertise", o.advertise, false).status());
  }
  for (absl::string_view c : absl::StrSplit(o.controller, ',')) {
    RETURN_IF_ERROR(ParseHostPort("--controller", c, false).status());
  }
  return o;
}

}  // namespace shutter::node
