#ifndef SHUTTER_COMMON_IDS_H_
#define SHUTTER_COMMON_IDS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"

namespace shutter {

// True if `s` can be used as a single path component (and an object key
// segment): 1..128 characters from [A-Za-z0-9._-], not starting with '.'.
bool IsSafePathComponent(absl::string_view s);

// OK if IsSafePathComponent(id); otherwise INVALID_ARGUMENT naming `what`
// ("snapshot id", "node_id", ...) and quoting at most 64 bytes of `id`.
absl::Status CheckSafeId(absl::string_view what, absl::string_view id);

// Generates snapshot ids of the form "20261127T094634.123Z-1a2b3c4d":
// UTC creation time to the millisecond, then 32 random bits. Ids sort
// lexicographically by creation time; within one generator they are
// strictly increasing even if the clock stalls or steps back (the time part
// is bumped past the last id issued). Ids are safe path components.
// Thread-safe. `clock` must outlive the generator.
class SnapshotIdGenerator {
 public:
  explicit SnapshotIdGenerator(Clock* clock);
  // Makes the generator issue ids after `id` (e.g. the newest id found in
  // the job store at start-up). Ignores ids it cannot parse.
  void ObserveExisting(absl::string_view id) ABSL_LOCKS_EXCLUDED(mu_);
  std::string Next() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  Clock* const clock_;
  absl::Mutex mu_;
  int64_t last_millis_ ABSL_GUARDED_BY(mu_) = 0;
};

// `bytes` random bytes as 2 * bytes lower-case hex digits (a per-thread
// generator seeded from std::random_device): temp-file suffixes, attempt
// ids, identities. Thread-safe.
std::string RandomHex(int bytes);

// True if `s` is exactly `length` lower-case hex digits (RandomHex ids,
// SHA-256 digests: length 64).
bool IsLowerHex(absl::string_view s, size_t length);

// Formats sorted, unique ids compactly: {0,1,2,3,5,9,10} -> "0-3,5,9-10".
std::string FormatIdList(const std::vector<uint32_t>& ids);

// Parses a partition list such as "0,3,5-9" into sorted, unique ids.
// INVALID_ARGUMENT names the offending element.
absl::StatusOr<std::vector<uint32_t>> ParseIdList(absl::string_view spec);

}  // namespace shutter

#endif  // SHUTTER_COMMON_IDS_H_
