#ifndef SHUTTER_CONTROLLER_JOB_STATES_H_
#define SHUTTER_CONTROLLER_JOB_STATES_H_

#include <string>

#include "shutter/v1/admin.pb.h"

// Small facts about the admin API's job states, shared by the controller,
// the CLI and the tests, so a new state is added in one place. Header-only:
// needs just the generated admin messages (the storage layer never sees
// job states).
namespace shutter::controller {

// True once a snapshot's tasks will not change any more (COMMITTED,
// PARTIAL, FAILED, CANCELLED, DELETED); a FAILED or CANCELLED one may
// still be rolling back (see Snapshot.rolled_back), and any finished one
// may later be DELETED.
inline bool IsFinished(shutter::v1::SnapshotState s) {
  return s == shutter::v1::SNAPSHOT_STATE_COMMITTED ||
         s == shutter::v1::SNAPSHOT_STATE_PARTIAL ||
         s == shutter::v1::SNAPSHOT_STATE_FAILED ||
         s == shutter::v1::SNAPSHOT_STATE_CANCELLED ||
         s == shutter::v1::SNAPSHOT_STATE_DELETED;
}

// True for a snapshot whose cluster manifest is in the repository.
inline bool IsUsable(shutter::v1::SnapshotState s) {
  return s == shutter::v1::SNAPSHOT_STATE_COMMITTED ||
         s == shutter::v1::SNAPSHOT_STATE_PARTIAL;
}

// "COMMITTED" for SNAPSHOT_STATE_COMMITTED, and so on.
inline std::string StateName(shutter::v1::SnapshotState s) {
  std::string n = shutter::v1::SnapshotState_Name(s);
  constexpr size_t kPrefix = sizeof("SNAPSHOT_STATE_") - 1;
  return n.size() > kPrefix ? n.substr(kPrefix) : n;
}

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_JOB_STATES_H_
