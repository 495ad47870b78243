#ifndef SHUTTER_COMMON_IO_PRIORITY_H_
#define SHUTTER_COMMON_IO_PRIORITY_H_

#include <string>

#include "absl/status/statusor.h"

namespace shutter {

// Linux I/O scheduling classes for a thread's own reads and writes
// (ioprio_set(2)), so that snapshot and restore I/O yields to the
// partitions' own: honoured by the BFQ and mq-deadline (class only)
// schedulers; a no-op elsewhere.
enum class IoClass {
  kNormal,         // leave the thread as it is
  kBestEffortLow,  // best-effort, lowest priority (7)
  kIdle,           // only when the disk is otherwise idle
};

// "normal", "best-effort-low", "idle"; INVALID_ARGUMENT otherwise.
absl::StatusOr<IoClass> ParseIoClass(const std::string& s);

// Applies `c` to the calling thread (kNormal: nothing). Errors are
// ignored: a kernel or container that refuses leaves normal priority.
void SetThreadIoClass(IoClass c);

// Sets the calling thread's CPU nice value (0..19; setpriority(2) on the
// thread id), so snapshot and restore work (hashing, copying, compressing)
// takes CPU the partitions' own requests leave. Errors are ignored.
void SetThreadNice(int nice);
// The calling thread's nice value.
int ThreadNice();

// The calling thread's class as the kernel reports it: "none", "rt",
// "best-effort/<level>", "idle" (tests, logs).
std::string ThreadIoClassName();

}  // namespace shutter

#endif  // SHUTTER_COMMON_IO_PRIORITY_H_
