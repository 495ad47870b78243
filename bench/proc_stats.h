#ifndef SHUTTER_BENCH_PROC_STATS_H_
#define SHUTTER_BENCH_PROC_STATS_H_

// What the benchmarks read of a process or a disk from /proc: each thread's
// time on a CPU (with its name) and a block device's counters. Linux only;
// a thread or process that ended is simply missing from the answer.
#include <dirent.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>

#include <cstdint>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace shutter::bench {

// The thread ids of process `pid` (/proc/<pid>/task).
inline std::vector<int> ThreadIds(pid_t pid) {
  std::vector<int> out;
  DIR* d = opendir(absl::StrCat("/proc/", pid, "/task").c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    int tid = 0;
    if (absl::SimpleAtoi(e->d_name, &tid)) out.push_back(tid);
  }
  closedir(d);
  return out;
}

// Each thread's time on a CPU so far, in ns (/proc/<pid>/task/*/schedstat),
// by thread id: /proc/<pid>/stat counts in clock ticks (10 ms), too coarse
// for a scenario whose whole cost is 0.1-0.2 s.
inline std::map<int, int64_t> ThreadCpuNanos(pid_t pid) {
  std::map<int, int64_t> out;
  for (int tid : ThreadIds(pid)) {
    std::ifstream in(absl::StrCat("/proc/", pid, "/task/", tid, "/schedstat"));
    int64_t ns = 0;
    if (in >> ns) out[tid] = ns;  // else it ended
  }
  return out;
}

// Each thread's CPU ns since `before` (a ThreadCpuNanos of the same
// process): threads alive at both samples by their difference, threads
// started since in full. A thread that ended in between is missed.
inline std::map<int, int64_t> ThreadCpuNanosSince(
    pid_t pid, const std::map<int, int64_t>& before) {
  std::map<int, int64_t> out = ThreadCpuNanos(pid);
  for (auto& [tid, ns] : out) {
    auto it = before.find(tid);
    if (it != before.end()) ns -= it->second;
  }
  return out;
}

// A thread's name (/proc/<pid>/task/<tid>/comm), "" once it ended.
inline std::string ThreadName(pid_t pid, int tid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/task/", tid, "/comm"));
  std::string name;
  std::getline(in, name);
  return name;
}

// A block device's counters (/proc/diskstats).
struct DiskCounters {
  bool found = false;
  uint64_t sectors_written = 0;  // 512-byte sectors
  uint64_t busy_ms = 0;          // time with I/O in flight ("io_ticks")
};

// The counters of the device that holds `path` (by its st_dev; a
// partition's own line if it is one), found=false if not listed (e.g. a
// tmpfs).
inline DiskCounters DiskCountersFor(const std::string& path) {
  DiskCounters out;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return out;
  std::ifstream in("/proc/diskstats");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    unsigned maj = 0, min = 0;
    std::string name;
    uint64_t v[10] = {};
    if (!(f >> maj >> min >> name)) continue;
    for (auto& x : v) f >> x;
    if (maj != major(st.st_dev) || min != minor(st.st_dev)) continue;
    // reads, reads merged, sectors read, ms reading, writes, writes merged,
    // sectors written, ms writing, in flight, io_ticks.
    out.found = true;
    out.sectors_written = v[6];
    out.busy_ms = v[9];
  }
  return out;
}

}  // namespace shutter::bench

#endif  // SHUTTER_BENCH_PROC_STATS_H_
