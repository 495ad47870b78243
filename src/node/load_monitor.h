#ifndef SHUTTER_NODE_LOAD_MONITOR_H_
#define SHUTTER_NODE_LOAD_MONITOR_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/latency_recorder.h"
#include "partition/partition_store.h"
#include "shutter/v1/controller.pb.h"

namespace shutter::node {

// Measures a node's load for its heartbeats (controller.proto NodeLoad):
// CPU busy from /proc/stat, the data device's busy time from
// /proc/diskstats, foreground write latency and checkpoint durations from
// LatencyRecorders, and whether snapshot work ran.
//
// The data device is found from the data directory's st_dev (major:minor
// matched in /proc/diskstats), or named with Options::disk_device (for
// stacked devices: dm, md, where the busy device is another). When it
// cannot be found (overlay or network filesystems) disk_busy is reported
// as -1 (not measured) and a warning is logged once.
//
// Thread-safe; Sample() is meant for one caller (the heartbeat thread).
class LoadMonitor {
 public:
  struct Activity {
    // Checkpoints and restores running now.
    uint32_t running = 0;
    // Monotonic count of checkpoints and restores finished (any outcome).
    uint64_t finished = 0;
  };

  struct Options {
    std::string data_dir;
    // Device name as in /proc/diskstats ("nvme0n1", "sda"); empty = the
    // data directory's.
    std::string disk_device;
    // Where /proc is (tests point it at fixtures).
    std::string proc_root = "/proc";
    // Foreground writes and checkpoint durations; either may be null.
    LatencyRecorder* writes = nullptr;
    LatencyRecorder* checkpoints = nullptr;
    // RocksDB write stalls of the partitions; may be null.
    const partition::WriteStallStats* stalls = nullptr;
    // Snapshot activity; may be empty (then never "snapshot work").
    std::function<Activity()> activity;
  };

  LoadMonitor(const Options& options, Clock* clock);

  // The load since the previous Sample() (the first: since construction).
  shutter::v1::NodeLoad Sample() ABSL_LOCKS_EXCLUDED(mu_);

  // Device whose busy time is reported ("" if none).
  const std::string& disk_device() const { return device_; }

  // Parsers, exposed for tests. CPU: (busy, total) jiffies of the "cpu"
  // line. Disk: milliseconds spent doing I/O (field 13) of `device`.
  static absl::StatusOr<std::pair<uint64_t, uint64_t>> ParseCpu(
      const std::string& proc_stat);
  static absl::StatusOr<uint64_t> ParseIoTicks(const std::string& diskstats,
                                               const std::string& device);
  // Name of the device with this major:minor in `diskstats`.
  static absl::StatusOr<std::string> DeviceFor(const std::string& diskstats,
                                               uint32_t major, uint32_t minor);

 private:
  struct Counters {
    bool cpu_ok = false;
    uint64_t cpu_busy = 0, cpu_total = 0;
    bool disk_ok = false;
    uint64_t io_ticks = 0;
  };
  Counters Read() const;

  const Options options_;
  Clock* const clock_;
  std::string device_;
  absl::Mutex mu_;
  Counters last_ ABSL_GUARDED_BY(mu_);
  absl::Time last_time_ ABSL_GUARDED_BY(mu_);
  uint64_t last_finished_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t last_stalls_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t last_stalled_micros_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace shutter::node

#endif  // SHUTTER_NODE_LOAD_MONITOR_H_
