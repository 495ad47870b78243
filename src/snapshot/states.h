#ifndef SHUTTER_SNAPSHOT_STATES_H_
#define SHUTTER_SNAPSHOT_STATES_H_

#include <string>

#include "shutter/v1/admin.pb.h"

// Small facts about snapshot states shared by the controller, the CLI and
// the tests, so a new state is added in one place. Header-only: needs just
// the generated admin messages.
namespace shutter::snapshot {

// True once a snapshot will not change any more (COMMITTED, PARTIAL,
// FAILED, CANCELLED); a FAILED or CANCELLED one may still be rolling back
// (see Snapshot.rolled_back).
inline bool IsFinished(shutter::v1::SnapshotState s) {
  return s == shutter::v1::SNAPSHOT_STATE_COMMITTED ||
         s == shutter::v1::SNAPSHOT_STATE_PARTIAL ||
         s == shutter::v1::SNAPSHOT_STATE_FAILED ||
         s == shutter::v1::SNAPSHOT_STATE_CANCELLED;
}

// "COMMITTED" for SNAPSHOT_STATE_COMMITTED, and so on.
inline std::string StateName(shutter::v1::SnapshotState s) {
  std::string n = shutter::v1::SnapshotState_Name(s);
  constexpr size_t kPrefix = sizeof("SNAPSHOT_STATE_") - 1;
  return n.size() > kPrefix ? n.substr(kPrefix) : n;
}

}  // namespace shutter::snapshot

#endif  // SHUTTER_SNAPSHOT_STATES_H_
