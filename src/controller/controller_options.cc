#include "controller/controller_options.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/cli_parse.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "controller/etcd_client.h"

namespace shutter::controller {

absl::StatusOr<ControllerOptions> ParseControllerOptions(
    int argc, const char* const* argv, bool* help, std::string* help_text) {
  ControllerOptions o;
  CLI::App app{"shutter-controller: coordinates parallel cluster snapshots"};
  app.set_config("--config", "", "TOML config file (keys as long flag names)");
  app.allow_config_extras(CLI::config_extras_mode::error);
  app.add_option("--listen", o.listen, "host:port to serve on (port 0: any)")
      ->capture_default_str();
  app.add_option("--data-dir", o.data_dir, "Controller state directory")
      ->required();
  app.add_option(
         "--repository", o.repository,
         "Snapshot repository: directory, file:///path or s3://bucket/prefix")
      ->required();
  app.add_option("--node-dead-after-ms", o.node_dead_after_ms,
                 "Node is dead after this long without heartbeats")
      ->capture_default_str()
      ->check(CLI::Range(100, 3600000));
  app.add_option("--heartbeat-interval-ms", o.heartbeat_interval_ms,
                 "Heartbeat period nodes are told to use")
      ->capture_default_str()
      ->check(CLI::Range(10, 60000));
  app.add_option("--rpc-timeout-ms", o.rpc_timeout_ms,
                 "Deadline of one CreateCheckpoint call")
      ->capture_default_str()
      ->check(CLI::Range(100, 86400000));
  app.add_option("--max-in-flight-total", o.max_in_flight_total,
                 "Cluster-wide cap on checkpoints in flight (0: none)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000000));
  app.add_option("--max-attempts", o.max_attempts,
                 "CreateCheckpoint attempts per partition before it fails")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  app.add_option("--job-timeout-s", o.job_timeout_s,
                 "A snapshot's deadline, seconds from its creation")
      ->capture_default_str()
      ->check(CLI::Range(1, 604800));
  app.add_option("--task-history-jobs", o.task_history_jobs,
                 "Finished jobs whose per-partition records are kept (newest "
                 "first); older ones keep a summary. 0: keep all")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000000));
  app.add_option("--schedule-min-interval-ms", o.schedule_min_interval_ms,
                 "The shortest interval (every) a schedule may have")
      ->capture_default_str()
      ->check(CLI::Range(100, 86400000));
  app.add_option("--dispatch-threads", o.dispatch_threads,
                 "Threads that dispatch tasks")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--queue-at-nodes", o.queue_at_nodes,
                 "Send each node that queues checkpoints a second round of "
                 "requests while its limit equals its capacity, so a freed "
                 "slot starts the next checkpoint without a round trip")
      ->capture_default_str();
  app.add_option("--adaptive-limits", o.adaptive_limits,
                 "Adapt each node's concurrency limit to its reported load")
      ->capture_default_str();
  app.add_option("--adaptive-latency-tolerance", o.adaptive_latency_tolerance,
                 "Back off when foreground write p99 exceeds this multiple "
                 "of the node's idle p99 (0: ignore latency)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 100.0));
  app.add_option("--adaptive-disk-busy-target", o.adaptive_disk_busy_target,
                 "Back off above this busy fraction of a node's data device "
                 "(0: ignore)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--adaptive-cpu-busy-target", o.adaptive_cpu_busy_target,
                 "Back off above this busy fraction of a node's CPU (0: "
                 "ignore)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--listener-check-ms", o.listener_check_ms,
                 "Self-check of the listener every this long (0: off)")
      ->capture_default_str()
      ->check(CLI::Range(0, 3600000));
  app.add_option(
         "--retention-keep-last", o.retention_keep_last,
         "Retention: keep the newest N committed snapshots (0: rule off)")
      ->capture_default_str();
  app.add_option("--retention-keep-within", o.retention_keep_within,
                 "Retention: keep snapshots younger than this (e.g. 7d, 36h)");
  app.add_option("--retention-keep-label", o.retention_keep_labels,
                 "Retention: keep snapshots with this label (repeatable)");
  app.add_option("--gc-grace", o.gc_grace,
                 "Garbage collection never deletes objects younger than this")
      ->capture_default_str();
  app.add_option("--gc-after-retention", o.gc_after_retention,
                 "Collect garbage after retention deleted snapshots")
      ->capture_default_str();
  app.add_option("--job-store", o.job_store,
                 "Job store: empty for embedded RocksDB in --data-dir, or "
                 "etcd://HOST:PORT[,HOST:PORT...]/PREFIX for controllers "
                 "with one leader");
  app.add_option("--etcd-tls-ca", o.etcd_tls_ca,
                 "CA bundle etcd's certificate must chain to (TLS to etcd)");
  app.add_option("--etcd-tls-cert", o.etcd_tls_cert,
                 "Client certificate presented to etcd");
  app.add_option("--etcd-tls-key", o.etcd_tls_key,
                 "Private key of --etcd-tls-cert");
  app.add_option("--advertise", o.advertise,
                 "host:port others reach this controller at (default: "
                 "--listen with the bound port)");
  app.add_option("--leader-lease-ms", o.leader_lease_ms,
                 "The leader's etcd lease: it stops leading after this "
                 "long without renewing it")
      ->capture_default_str()
      ->check(CLI::Range(1000, 60000));
  app.add_option("--import-job-store", o.import_job_store,
                 "One-shot: copy the embedded job store of this (stopped) "
                 "controller's data directory into --job-store's etcd "
                 "prefix, then exit");
  app.add_option("--port-file", o.port_file, "Write the bound port here");
  app.add_option("--log-level", o.log_level, "trace|debug|info|warn|error|off")
      ->capture_default_str()
      ->check(CLI::IsMember(
          {"trace", "debug", "info", "warn", "error", "critical", "off"}));
  AddS3Flags(app, &o.s3);
  AddDaemonTlsFlags(app, &o.tls);
  app.add_option("--metrics-listen", o.metrics_listen,
                 "Serve Prometheus metrics (GET /metrics) on host:port; "
                 "empty: off");
  app.add_option("--console-listen", o.console_listen,
                 "Serve the operator console (a web UI and its JSON views) "
                 "on host:port, HTTPS with --tls-cert/--tls-key; empty: off");
  app.add_option("--console-advertise", o.console_advertise,
                 "The console's URL as operators reach it (shown by the "
                 "other controllers' consoles and `controllers list`); "
                 "empty: from --console-listen and --advertise");
  app.add_option("--admin-token-file", o.admin_token_file,
                 "Admin API bearer tokens: lines of \"<viewer|operator> "
                 "<token>\"");
  app.add_option("--admin-identities", o.admin_identities,
                 "Admin API client certificates: common name=role, comma "
                 "separated (e.g. alice=operator,grafana=viewer)");
  RETURN_IF_ERROR(ParseCli(app, argc, argv, help, help_text));
  if (*help) return o;
  RETURN_IF_ERROR(ParseHostPort("--listen", o.listen, true).status());
  if (!o.metrics_listen.empty()) {
    RETURN_IF_ERROR(
        ParseHostPort("--metrics-listen", o.metrics_listen, true).status());
  }
  if (!o.console_listen.empty()) {
    RETURN_IF_ERROR(
        ParseHostPort("--console-listen", o.console_listen, true).status());
  }
  if (!o.console_advertise.empty() &&
      !absl::StartsWith(o.console_advertise, "http://") &&
      !absl::StartsWith(o.console_advertise, "https://")) {
    return absl::InvalidArgumentError(
        "--console-advertise: a URL starting with http:// or https://");
  }
  if (!o.retention_keep_within.empty()) {
    RETURN_IF_ERROR(
        ParseDurationFlag("--retention-keep-within", o.retention_keep_within)
            .status());
  }
  RETURN_IF_ERROR(ParseDurationFlag("--gc-grace", o.gc_grace).status());
  if (o.job_store == "rocksdb") o.job_store.clear();
  if (!o.job_store.empty()) {
    auto url = ParseEtcdUrl(o.job_store);
    if (!url.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--job-store: ", url.status().message()));
    }
  }
  if (!o.import_job_store.empty() && o.job_store.empty()) {
    return absl::InvalidArgumentError(
        "--import-job-store needs --job-store etcd://HOST:PORT/PREFIX");
  }
  if ((!o.etcd_tls_cert.empty() || !o.etcd_tls_key.empty()) &&
      o.etcd_tls_ca.empty()) {
    return absl::InvalidArgumentError(
        "--etcd-tls-cert/--etcd-tls-key need --etcd-tls-ca");
  }
  if (o.etcd_tls_cert.empty() != o.etcd_tls_key.empty()) {
    return absl::InvalidArgumentError(
        "--etcd-tls-cert and --etcd-tls-key go together");
  }
  if (!o.advertise.empty()) {
    RETURN_IF_ERROR(ParseHostPort("--advertise", o.advertise, false).status());
  }
  if (o.node_dead_after_ms <= o.heartbeat_interval_ms) {
    return absl::InvalidArgumentError(
        absl::StrCat("--node-dead-after-ms: ", o.node_dead_after_ms,
                     " must exceed --heartbeat-interval-ms (",
                     o.heartbeat_interval_ms, ")"));
  }
  return o;
}

}  // namespace shutter::controller
