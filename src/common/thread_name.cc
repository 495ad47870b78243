#include "common/thread_name.h"

#include <pthread.h>

#include <cstdio>

namespace shutter {

void NameThisThread(const char* name) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%s", name);
  pthread_setname_np(pthread_self(), buf);
}

}  // namespace shutter
