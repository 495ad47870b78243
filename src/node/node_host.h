#ifndef SHUTTER_NODE_NODE_HOST_H_
#define SHUTTER_NODE_NODE_HOST_H_

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "partition/partition_store.h"

namespace shutter::node {

// The partitions a node hosts. Each is its own RocksDB database under
// "<data_dir>/partitions/<id, 5 digits>". Partitions listed as led take
// leadership in TakeLeadership(), which durably increases their epoch (a
// daemon calls it only once it serves and is registered, so a start that
// fails early leaves every epoch as it was).
//
// Thread-safe after Open(): the set of partitions is fixed; each store is
// itself thread-safe.
class NodeHost {
 public:
  struct Options {
    std::string data_dir;
    std::vector<uint32_t> partitions;
    // Subset of `partitions` this node leads.
    std::set<uint32_t> leader_for;
  };

  struct PartitionStatus {
    uint32_t partition_id = 0;
    bool leader = false;
    uint64_t leader_epoch = 0;
    uint64_t applied_index = 0;
    uint64_t approximate_size_bytes = 0;
  };

  // Opens every partition (creating missing ones), as followers.
  // INVALID_ARGUMENT if leader_for names a partition not in `partitions`.
  static absl::StatusOr<std::unique_ptr<NodeHost>> Open(const Options& options);

  // Takes leadership of every partition in leader_for (durably raising its
  // epoch). Call once.
  absl::Status TakeLeadership();

  // nullptr if the partition is not hosted here.
  partition::PartitionStore* Find(uint32_t partition_id) const;

  std::vector<PartitionStatus> Status() const;

  const std::string& data_dir() const { return data_dir_; }

 private:
  explicit NodeHost(const Options& options)
      : data_dir_(options.data_dir), leader_for_(options.leader_for) {}
  const std::string data_dir_;
  const std::set<uint32_t> leader_for_;
  std::map<uint32_t, std::unique_ptr<partition::PartitionStore>> stores_;
};

}  // namespace shutter::node

#endif  // SHUTTER_NODE_NODE_HOST_H_
