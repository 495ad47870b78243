#ifndef SHUTTER_NODE_NODE_INSTANCE_H_
#define SHUTTER_NODE_NODE_INSTANCE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "snapshot/repository.h"

namespace shutter::node {

// A node's incarnation (controller.proto NodeInstance), kept in
// "<data_dir>/NODE_INSTANCE":
//   node_id=n1
//   instance_id=<32 hex digits, random, created once with the directory>
//   start_count=<incremented durably at every start>
// Restarting with the same data directory is the same node (same
// instance_id, higher start_count); a fresh directory is a new incarnation,
// which the controller refuses while the old one is alive.
struct NodeInstanceInfo {
  std::string node_id;
  std::string instance_id;
  uint64_t start_count = 0;
};

// Reads the file (creating it with a new random instance_id if missing),
// increments start_count and writes it back crash-safely (temp, fsync,
// rename, fsync the directory). FAILED_PRECONDITION if the directory
// belongs to another node id, DATA_LOSS if the file is malformed; both
// name the file.
absl::StatusOr<NodeInstanceInfo> StartNodeInstance(const std::string& data_dir,
                                                   const std::string& node_id);

// For requests naming the incarnation they are meant for: OK if
// `expected` is empty (no check asked), `instance_id` is empty (no
// incarnation here), or they match; else FAILED_PRECONDITION with the
// WRONG_INCARNATION reason, naming both.
absl::Status CheckIncarnation(const std::string& expected,
                              const std::string& instance_id,
                              const std::string& node_id);

// Removes the repository's publish locks left by earlier processes of this
// data directory (same instance_id, lower start count): a node killed
// mid-publish leaves its lock behind, and a GC would otherwise wait for it
// until it went stale (RepositoryOptions::lock_stale_after). A failure is
// logged only (the controller and the stale rule still clean up).
void ReleaseDeadPublishLocks(snapshot::Repository& repo,
                             const std::string& node_id,
                             const NodeInstanceInfo& me);

}  // namespace shutter::node

#endif  // SHUTTER_NODE_NODE_INSTANCE_H_
