#include "node/load_monitor.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "spdlog/spdlog.h"

namespace shutter::node {

namespace {
std::string ReadWhole(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::vector<absl::string_view> Fields(absl::string_view line) {
  return absl::StrSplit(line, ' ', absl::SkipEmpty());
}
}  // namespace

absl::StatusOr<std::pair<uint64_t, uint64_t>> LoadMonitor::ParseCpu(
    const std::string& proc_stat) {
  for (absl::string_view line : absl::StrSplit(proc_stat, '\n')) {
    std::vector<absl::string_view> f = Fields(line);
    if (f.empty() || f[0] != "cpu") continue;
    // cpu user nice system idle iowait irq softirq steal [guest guest_nice]
    // (guest time is already counted in user and nice).
    if (f.size() < 5) break;
    uint64_t total = 0, idle = 0;
    for (size_t i = 1; i < f.size() && i <= 8; ++i) {
      uint64_t v = 0;
      if (!absl::SimpleAtoi(f[i], &v)) {
        return absl::InvalidArgumentError(
            absl::StrCat("/proc/stat: bad cpu field '", f[i], "'"));
      }
      total += v;
      if (i == 4 || i == 5) idle += v;  // idle, iowait
    }
    return std::make_pair(total - idle, total);
  }
  return absl::InvalidArgumentError("/proc/stat has no cpu line");
}

absl::StatusOr<uint64_t> LoadMonitor::ParseIoTicks(const std::string& diskstats,
                                                   const std::string& device) {
  for (absl::string_view line : absl::StrSplit(diskstats, '\n')) {
    std::vector<absl::string_view> f = Fields(line);
    // major minor name reads ... (field 13 = io_ticks, index 12)
    if (f.size() < 13 || f[2] != device) continue;
    uint64_t ticks = 0;
    if (!absl::SimpleAtoi(f[12], &ticks)) {
      return absl::InvalidArgumentError(
          absl::StrCat("/proc/diskstats: bad io_ticks for ", device));
    }
    return ticks;
  }
  return absl::NotFoundError(
      absl::StrCat("no device '", device, "' in /proc/diskstats"));
}

absl::StatusOr<std::string> LoadMonitor::DeviceFor(const std::string& diskstats,
                                                   uint32_t major,
                                                   uint32_t minor) {
  const std::string ma = std::to_string(major), mi = std::to_string(minor);
  for (absl::string_view line : absl::StrSplit(diskstats, '\n')) {
    std::vector<absl::string_view> f = Fields(line);
    if (f.size() >= 3 && f[0] == ma && f[1] == mi) return std::string(f[2]);
  }
  return absl::NotFoundError(absl::StrCat("no block device ", major, ":", minor,
                                          " in /proc/diskstats"));
}

LoadMonitor::LoadMonitor(const Options& options, Clock* clock)
    : options_(options), clock_(clock) {
  device_ = options_.disk_device;
  const std::string diskstats = ReadWhole(options_.proc_root + "/diskstats");
  if (device_.empty()) {
    struct stat st;
    if (::stat(options_.data_dir.c_str(), &st) == 0) {
      auto d = DeviceFor(diskstats, major(st.st_dev), minor(st.st_dev));
      if (d.ok()) {
        device_ = *d;
      } else {
        spdlog::warn(
            "load: cannot tell which block device holds {} ({}); disk busy "
            "time is not reported (set --disk-device)",
            options_.data_dir, std::string(d.status().message()));
      }
    }
  } else if (!ParseIoTicks(diskstats, device_).ok()) {
    spdlog::warn(
        "load: no device '{}' in {}/diskstats; disk busy time is "
        "not reported",
        device_, options_.proc_root);
    device_.clear();
  }
  absl::MutexLock l(&mu_);
  last_ = Read();
  last_time_ = clock_->Now();
  if (options_.writes != nullptr) options_.writes->TakeWindow();
  if (options_.checkpoints != nullptr) options_.checkpoints->TakeWindow();
  if (options_.activity) last_finished_ = options_.activity().finished;
  if (options_.stalls != nullptr) {
    last_stalls_ = options_.stalls->stalls.load();
    last_stalled_micros_ = options_.stalls->stalled_micros.load();
  }
}

LoadMonitor::Counters LoadMonitor::Read() const {
  Counters c;
  auto cpu = ParseCpu(ReadWhole(options_.proc_root + "/stat"));
  if (cpu.ok()) {
    c.cpu_ok = true;
    c.cpu_busy = cpu->first;
    c.cpu_total = cpu->second;
  }
  if (!device_.empty()) {
    auto ticks =
        ParseIoTicks(ReadWhole(options_.proc_root + "/diskstats"), device_);
    if (ticks.ok()) {
      c.disk_ok = true;
      c.io_ticks = *ticks;
    }
  }
  return c;
}

shutter::v1::NodeLoad LoadMonitor::Sample() {
  shutter::v1::NodeLoad load;
  absl::MutexLock l(&mu_);
  const absl::Time now = clock_->Now();
  const Counters c = Read();
  const int64_t millis = absl::ToInt64Milliseconds(now - last_time_);
  load.set_interval_millis(millis);
  load.set_cpu_busy(-1);
  load.set_disk_busy(-1);
  if (c.cpu_ok && last_.cpu_ok && c.cpu_total > last_.cpu_total &&
      c.cpu_busy >= last_.cpu_busy) {
    load.set_cpu_busy(
        std::clamp(static_cast<double>(c.cpu_busy - last_.cpu_busy) /
                       static_cast<double>(c.cpu_total - last_.cpu_total),
                   0.0, 1.0));
  }
  load.set_disk_device(device_);
  if (c.disk_ok && last_.disk_ok && millis > 0 &&
      c.io_ticks >= last_.io_ticks) {
    load.set_disk_busy(std::clamp(
        static_cast<double>(c.io_ticks - last_.io_ticks) / millis, 0.0, 1.0));
  }
  if (options_.writes != nullptr) {
    LatencyRecorder::Window w = options_.writes->TakeWindow();
    load.set_foreground_writes(w.count);
    load.set_foreground_write_p50_micros(absl::ToInt64Microseconds(w.p50));
    load.set_foreground_write_p99_micros(absl::ToInt64Microseconds(w.p99));
  }
  if (options_.checkpoints != nullptr) {
    LatencyRecorder::Window w = options_.checkpoints->TakeWindow();
    load.set_checkpoints_completed(static_cast<uint32_t>(w.count));
    load.set_checkpoint_p50_millis(absl::ToInt64Milliseconds(w.p50));
    load.set_checkpoint_max_millis(absl::ToInt64Milliseconds(w.max));
  }
  if (options_.activity) {
    const Activity a = options_.activity();
    load.set_snapshot_tasks_running(a.running);
    load.set_snapshot_work(a.running > 0 || a.finished != last_finished_);
    last_finished_ = a.finished;
  }
  if (options_.stalls != nullptr) {
    const uint64_t stalls = options_.stalls->stalls.load();
    const uint64_t micros = options_.stalls->stalled_micros.load();
    load.set_write_stalls(stalls - last_stalls_);
    load.set_write_stall_micros(
        static_cast<int64_t>(micros - last_stalled_micros_));
    last_stalls_ = stalls;
    last_stalled_micros_ = micros;
  }
  last_ = c;
  last_time_ = now;
  return load;
}

}  // namespace shutter::node
