#ifndef SHUTTER_CONTROLLER_VERIFIER_H_
#define SHUTTER_CONTROLLER_VERIFIER_H_

#include <string>

#include "absl/status/statusor.h"
#include "shutter/v1/admin.pb.h"
#include "snapshot/repository.h"

namespace shutter::controller {

// Re-reads a committed snapshot from the repository: its cluster manifest,
// every partition manifest (which must agree with the cluster manifest on
// applied index and epoch) and every file (size and SHA-256). Problems
// name the partition and the file; an error status only if the cluster
// manifest cannot be read. Reads only; thread-safe as the repository is.
absl::StatusOr<shutter::v1::VerifySnapshotResponse> VerifyCommittedSnapshot(
    const snapshot::Repository& repo, const std::string& snapshot_id);

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_VERIFIER_H_
