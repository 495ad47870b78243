#ifndef SHUTTER_COMMON_THREAD_NAME_H_
#define SHUTTER_COMMON_THREAD_NAME_H_

namespace shutter {

// Names the calling thread, for `top -H`, perf and
// /proc/PID/task/*/comm. Linux keeps 15 bytes; a longer name is cut.
void NameThisThread(const char* name);

}  // namespace shutter

#endif  // SHUTTER_COMMON_THREAD_NAME_H_
