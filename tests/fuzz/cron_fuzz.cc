// libFuzzer target: schedule cron expressions (operator input, stored and
// re-parsed at every controller start). Next() must terminate and move
// strictly forward.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "controller/cron.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view in(reinterpret_cast<const char*>(data), size);
  auto cron = shutter::controller::CronExpr::Parse(in);
  if (!cron.ok()) return 0;
  const absl::Time start = absl::FromUnixSeconds(1800000000);
  const absl::Time next = cron->Next(start);
  if (next != absl::InfiniteFuture() && next <= start) std::abort();
  return 0;
}
