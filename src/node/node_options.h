#ifndef SHUTTER_NODE_NODE_OPTIONS_H_
#define SHUTTER_NODE_NODE_OPTIONS_H_

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/s3_flags.h"
#include "common/security.h"

namespace shutter::node {

// Settings of the shutter-node daemon. Each can be given as a flag
// (--node-id) or in the TOML file named by --config (node_id = "n1");
// flags win over the file.
struct NodeOptions {
  // Stable, unique id of this node (a safe path component). Required.
  std::string node_id;
  // host:port to serve NodeService and PartitionData on; port 0 = ephemeral.
  std::string listen = "127.0.0.1:7100";
  // host:port the controller should dial; default: listen host + bound port.
  std::string advertise;
  // host:port of the controller, or of each controller of a group on etcd
  // ("a:7000,b:7000,c:7000"): heartbeats go to the leader and follow it.
  std::string controller = "127.0.0.1:7000";
  // Directory holding the partitions' databases and the staging area. Required.
  std::string data_dir;
  // Snapshot repository: a directory or file:///path. Required.
  std::string repository;
  S3Flags s3;
  // Transport security (--tls-* or --insecure); the common name of the
  // controller's certificate (the only caller NodeService accepts).
  TlsOptions tls;
  std::string controller_identity = "shutter-controller";
  // Serve the reference data plane (PartitionData) and the test hook
  // SetPartitionRole. Off by default and in the packaged units.
  bool enable_data_plane = false;
  // host:port serving Prometheus metrics at /metrics; empty: off.
  std::string metrics_listen;
  // Partitions hosted here, e.g. "0-7". Required.
  std::vector<uint32_t> partitions;
  // Partitions this node leads; default all hosted ones.
  std::set<uint32_t> leader_for;
  // Checkpoints taken at once (1..64).
  int checkpoint_capacity = 2;
  // Cap on each checkpoint's publish stream, MiB/s; 0 = none. Models a
  // remote object store (bandwidth capped per connection, parallel
  // uploads add up).
  double publish_stream_mibps = 0;
  // I/O class of snapshot and restore threads: normal, best-effort-low,
  // idle (common/io_priority.h).
  std::string snapshot_io_class = "best-effort-low";
  // CPU nice value of snapshot and restore threads (0..19).
  int snapshot_nice = 10;
  // Cap on this node's total publish bandwidth, MiB/s, shared by its
  // concurrent checkpoints; 0 = none. Keeps snapshot I/O from starving
  // foreground traffic.
  double publish_bandwidth_mibps = 0;
  // Remember the SHA-256 of published SST files (in
  // <data-dir>/published-hashes) so unchanged ones are not re-read by the
  // next snapshot. Off: every file is hashed again (benchmarks).
  bool hash_cache = true;
  // Before serving, restore every hosted partition that has no local store
  // from this snapshot: "latest" (the newest committed) or a snapshot id.
  // Empty: no bootstrap (missing partitions start empty).
  std::string bootstrap_from;
  // With bootstrap_from: refuse a checkpoint older than this applied index.
  uint64_t bootstrap_min_applied_index = 0;
  // Refuse checkpoints while the data/staging filesystem has less free
  // space than this, MiB (0 = no floor).
  int min_free_mib = 64;
  // Heartbeat period in milliseconds (10..60000). Each heartbeat carries
  // the node's load over the period (docs/adaptive.md).
  int heartbeat_interval_ms = 1000;
  // Block device whose busy time is reported as the node's disk load, as
  // named in /proc/diskstats; empty = the one holding data_dir.
  std::string disk_device;
  // How often the daemon checks that its listener still accepts
  // connections (0: never); three misses in a row end the daemon (exit 1).
  int listener_check_ms = 5000;
  // If set, the bound port is written here once serving.
  std::string port_file;
  // trace, debug, info, warn, error, critical, off.
  std::string log_level = "info";
  // Tests only (no flag): called with the partition id as each checkpoint
  // starts running, on its worker thread, before it is taken.
  std::function<void(uint32_t partition_id)> test_before_checkpoint;
};

// Parses flags and the optional config file. INVALID_ARGUMENT with a
// one-line message naming the option for anything unknown or out of range.
// `help` is set (and OK returned) when --help was asked; the text is in
// `*help_text`.
absl::StatusOr<NodeOptions> ParseNodeOptions(int argc, const char* const* argv,
                                             bool* help,
                                             std::string* help_text);

}  // namespace shutter::node

#endif  // SHUTTER_NODE_NODE_OPTIONS_H_
