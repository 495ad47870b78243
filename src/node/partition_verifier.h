#ifndef SHUTTER_NODE_PARTITION_VERIFIER_H_
#define SHUTTER_NODE_PARTITION_VERIFIER_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/io_priority.h"
#include "node/work_runner.h"
#include "shutter/v1/node.pb.h"
#include "snapshot/repository.h"

namespace shutter::node {

// Runs NodeService.VerifyPartition (see node.proto): checks one
// partition's checkpoint of a snapshot in the repository, shallow (every
// file's size and SHA-256) or deep (downloaded into scratch under
// `scratch_dir`, opened read-only with RocksDB, every key scanned, the
// `meta` column family checked against the manifest). Reads only; the
// scratch copy is removed whatever happens. Embeddable like
// CheckpointTaker. Thread-safe; the repository and clock must outlive it.
class PartitionVerifier {
 public:
  struct Options {
    std::string node_id;
    std::string instance_id;  // empty: no incarnation check
    // Verifies running at once; further requests wait in order.
    int capacity = 2;
    // Files fetched at once by a deep verify.
    int parallel_files = 4;
    // Where deep verifies download (a directory of the node's own; each
    // verify uses a subdirectory it removes).
    std::string scratch_dir;
    IoClass io_class = IoClass::kBestEffortLow;
    int nice = 0;
    // OK while the node serves (e.g. CheckpointTaker::CheckServing).
    std::function<absl::Status()> check_serving;
  };
  using Stats = WorkRunner<shutter::v1::VerifyPartitionResponse>::Stats;
  using Callback = absl::AnyInvocable<
      void(absl::StatusOr<shutter::v1::VerifyPartitionResponse>) &&>;

  // INVALID_ARGUMENT for a capacity or parallel_files below 1, or no
  // scratch directory.
  static absl::StatusOr<std::unique_ptr<PartitionVerifier>> Create(
      const Options& options, snapshot::Repository* repo, Clock* clock);

  // `done` is called exactly once, on a worker thread (or inline if the
  // request is refused up front).
  void Verify(const shutter::v1::VerifyPartitionRequest& request,
              Callback done);
  absl::StatusOr<shutter::v1::VerifyPartitionResponse> VerifySync(
      const shutter::v1::VerifyPartitionRequest& request);
  // Verifies of `verify_id` end with CANCELLED; later ones are refused.
  void Cancel(const std::string& verify_id) { runner_.Cancel(verify_id); }
  Stats GetStats() const { return runner_.GetStats(); }
  void Shutdown() { runner_.Shutdown(); }

 private:
  PartitionVerifier(const Options& options, snapshot::Repository* repo,
                    Clock* clock);
  absl::StatusOr<shutter::v1::VerifyPartitionResponse> Run(
      const shutter::v1::VerifyPartitionRequest& req);
  // Deep: download, open, scan, compare; fills keys_scanned.
  absl::Status Deep(const shutter::v1::VerifyPartitionRequest& req,
                    const shutter::v1::PartitionManifest& m,
                    shutter::v1::VerifyPartitionResponse* resp);

  const Options options_;
  snapshot::Repository* const repo_;
  Clock* const clock_;
  WorkRunner<shutter::v1::VerifyPartitionResponse> runner_;
};

}  // namespace shutter::node

#endif  // SHUTTER_NODE_PARTITION_VERIFIER_H_
