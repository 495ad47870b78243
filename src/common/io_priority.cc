#include "common/io_priority.h"

#include <linux/ioprio.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"

namespace shutter {

absl::StatusOr<IoClass> ParseIoClass(const std::string& s) {
  if (s == "normal") return IoClass::kNormal;
  if (s == "best-effort-low") return IoClass::kBestEffortLow;
  if (s == "idle") return IoClass::kIdle;
  return absl::InvalidArgumentError(absl::StrCat(
      "I/O class \"", s, "\": expected normal, best-effort-low or idle"));
}

void SetThreadIoClass(IoClass c) {
  int value = 0;
  switch (c) {
    case IoClass::kNormal:
      return;
    case IoClass::kBestEffortLow:
      value = IOPRIO_PRIO_VALUE(IOPRIO_CLASS_BE, 7);
      break;
    case IoClass::kIdle:
      value = IOPRIO_PRIO_VALUE(IOPRIO_CLASS_IDLE, 0);
      break;
  }
  // who = 0: the calling thread.
  (void)syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value);
}

std::string ThreadIoClassName() {
  const long v = syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0);
  if (v < 0) return "unknown";
  switch (IOPRIO_PRIO_CLASS(v)) {
    case IOPRIO_CLASS_RT:
      return "rt";
    case IOPRIO_CLASS_BE:
      return absl::StrCat("best-effort/", IOPRIO_PRIO_DATA(v));
    case IOPRIO_CLASS_IDLE:
      return "idle";
    default:
      return "none";
  }
}

void SetThreadNice(int nice) {
  if (nice <= 0) return;
  ::setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)),
                std::min(nice, 19));
}

int ThreadNice() {
  errno = 0;
  return ::getpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)));
}

}  // namespace shutter
