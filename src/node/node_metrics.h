#ifndef SHUTTER_NODE_NODE_METRICS_H_
#define SHUTTER_NODE_NODE_METRICS_H_

#include <string>

#include "common/metrics.h"
#include "common/security.h"
#include "node/checkpoint_taker.h"
#include "node/partition_restorer.h"

namespace shutter::node {

// Scrape-time metrics of a node (the services measure each checkpoint,
// restore and write themselves):
//   shutter_node_checkpoints_in_flight, shutter_node_checkpoint_capacity
//   shutter_node_restores_in_flight
//   shutter_node_filesystem_free_bytes   (of the data directory)
//   shutter_node_staging_bytes           (checkpoints and restores being
//                                         assembled)
//   shutter_auth_denials_total
//   shutter_node_write_stalls_total, shutter_node_write_stall_seconds_total
//                                        (RocksDB write stalls)
// The pointers must stay valid while `registry` serves.
void ExportNodeState(metrics::Registry* registry, const std::string& data_dir,
                     const CheckpointTaker* taker,
                     const PartitionRestorer* restorer, const Authorizer* authz,
                     const partition::WriteStallStats* stalls = nullptr);

}  // namespace shutter::node

#endif  // SHUTTER_NODE_NODE_METRICS_H_
