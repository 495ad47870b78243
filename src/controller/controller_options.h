#ifndef SHUTTER_CONTROLLER_CONTROLLER_OPTIONS_H_
#define SHUTTER_CONTROLLER_CONTROLLER_OPTIONS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/s3_flags.h"
#include "common/security.h"

namespace shutter::controller {

// Settings of the shutter-controller daemon. Each can be given as a flag
// (--data-dir) or in the TOML file named by --config (data-dir = "...");
// flags win over the file.
struct ControllerOptions {
  // host:port for the admin and node-facing APIs; port 0 = ephemeral.
  std::string listen = "127.0.0.1:7000";
  // Directory of the controller's state (job store). Required.
  std::string data_dir;
  // Where jobs, schedules and pins live: empty (or "rocksdb") for the
  // embedded RocksDB store in data_dir, one controller; or
  // etcd://HOST:PORT[,HOST:PORT...]/PREFIX for a group of controllers of
  // which one leads (docs/high-availability.md).
  std::string job_store;
  // TLS to etcd: its CA, and a client certificate and key if etcd asks.
  std::string etcd_tls_ca;
  std::string etcd_tls_cert;
  std::string etcd_tls_key;
  // How nodes, shutterctl and the other controllers reach this one
  // (host:port). Empty: the listen address with the bound port.
  std::string advertise;
  // The leader's etcd lease: a leader that cannot renew it for this long
  // stops, and another takes over (1000..60000 ms; etcd rounds up to
  // whole seconds, at least 2 s with etcd's default election timeout).
  int leader_lease_ms = 3000;
  // One-shot: copy the embedded job store of this --data-dir (of a
  // controller that is stopped) into --job-store's etcd prefix, then exit.
  std::string import_job_store;
  // Snapshot repository shared with the nodes: a directory or file:///path.
  // Required.
  std::string repository;
  S3Flags s3;
  // Transport security (--tls-* or --insecure) and who may use the admin
  // API: a file of "<role> <token>" lines, and certificate common names
  // with roles ("alice=operator,grafana=viewer").
  TlsOptions tls;
  std::string admin_token_file;
  std::string admin_identities;
  // host:port serving Prometheus metrics at /metrics; empty: off.
  std::string metrics_listen;
  // host:port of the operator console (HTTPS with the controller's TLS
  // files, plain HTTP with --insecure); empty: off. See console.h.
  std::string console_listen;
  // The console's URL as others (a follower's console, operators) reach
  // it; empty: derived from console_listen (a wildcard host replaced by
  // the --advertise host).
  std::string console_advertise;
  // A node is dead after this long without a heartbeat (100..3600000 ms).
  int node_dead_after_ms = 10000;
  // Heartbeat period the controller expects (informational, 10..60000 ms).
  int heartbeat_interval_ms = 1000;
  // Deadline of one CreateCheckpoint call (100..86400000 ms).
  int rpc_timeout_ms = 600000;
  // Checkpoints in flight over the whole cluster; 0 = only per-node limits.
  // 1 makes a serial controller (used by the benchmark for comparison).
  int max_in_flight_total = 0;
  // CreateCheckpoint attempts per partition before it fails (1..100).
  int max_attempts = 5;
  // A snapshot's deadline in seconds from its creation (1..604800).
  int job_timeout_s = 3600;
  // Finished jobs whose per-partition task records are kept, newest first
  // (JobEngine::Options::task_history_jobs); 0 keeps all.
  int task_history_jobs = 50;
  // The shortest interval a schedule may have, milliseconds (a floor for
  // operators; tests and demos lower it).
  int schedule_min_interval_ms = 60000;
  // Threads that dispatch tasks (1..64).
  int dispatch_threads = 2;
  // Send nodes that queue checkpoints (HeartbeatRequest.queues_checkpoints)
  // up to twice their limit of checkpoint requests while the limit equals
  // their capacity (JobEngine::Options::queue_at_nodes).
  bool queue_at_nodes = true;
  // Adapt each node's concurrency limit to the load its heartbeats report
  // (docs/adaptive.md); off: the limit is the node's capacity (or a pin).
  bool adaptive_limits = true;
  // Back off when a node's foreground write p99 exceeds this multiple of
  // its idle p99 (0: ignore latency).
  double adaptive_latency_tolerance = 1.2;
  // Back off above these busy fractions of the data device and of the CPU
  // (0: ignore the signal).
  double adaptive_disk_busy_target = 0.95;
  double adaptive_cpu_busy_target = 0;
  // How often the daemon checks that its listener still accepts
  // connections (0: never); three misses in a row end the daemon (exit 1).
  int listener_check_ms = 5000;
  // Retention, applied after every commit (no rule: keep everything):
  // keep the newest N committed snapshots, those younger than a duration
  // ("7d", "36h"; empty: no such rule), and those with one of these labels.
  // The newest committed and pinned snapshots are always kept.
  uint32_t retention_keep_last = 0;
  std::string retention_keep_within;
  std::vector<std::string> retention_keep_labels;
  // Garbage collection: objects younger than this are never deleted.
  std::string gc_grace = "1h";
  // Collect garbage after a retention pass that deleted snapshots.
  bool gc_after_retention = true;
  // If set, the bound port is written here once serving.
  std::string port_file;
  // trace, debug, info, warn, error, critical, off.
  std::string log_level = "info";
};

// Parses flags and the optional config file; INVALID_ARGUMENT with a
// one-line message naming the option. See ParseNodeOptions for `help`.
absl::StatusOr<ControllerOptions> ParseControllerOptions(
    int argc, const char* const* argv, bool* help, std::string* help_text);

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_CONTROLLER_OPTIONS_H_
