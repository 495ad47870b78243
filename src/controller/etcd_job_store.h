#ifndef SHUTTER_CONTROLLER_ETCD_JOB_STORE_H_
#define SHUTTER_CONTROLLER_ETCD_JOB_STORE_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "controller/etcd_client.h"
#include "controller/job_store.h"

namespace shutter::controller {

// What makes a write the leader's: the leader key exists with the create
// revision it had when this controller won (its term). Another leader's
// key, or none, has a different create revision, so the comparison fails.
struct EtcdFence {
  std::string key;
  int64_t revision = 0;
  // Who writes: "<controller id> term <revision>". Each fenced transaction
  // also puts it at <prefix>writer, so anyone watching the prefix can tell
  // which leader made every change (an audit; the fence is the guard).
  std::string writer;
};

// A JobStore in etcd, for a group of controllers of which one leads. The
// records live at <prefix>store/<job store key>. Every write is one etcd
// transaction (at most max_txn_ops operations and about max_txn_bytes,
// under a stock etcd's 128 operations and 1.5 MiB) whose only condition is
// the fence: a controller that is no longer the leader writes nothing,
// whatever it still believes. A write is durable when etcd answers (a
// quorum has it).
//
// Errors: UNAVAILABLE without a fence ("not the leader") or when etcd
// cannot be reached (EtcdClient: nothing is known to be applied); ABORTED
// when the fence failed (leadership lost: nothing applied; the
// on_fence_lost callback runs first).
//
// Thread-safe. `client` must outlive the store.
class EtcdJobStore : public JobStore {
 public:
  struct Options {
    // The group's prefix ("/shutter/"): records under <prefix>store/.
    std::string prefix;
    // False only for tools run with no controller up (the migration
    // command): writes then carry no condition.
    bool fenced = true;
    // etcd's --max-txn-ops default.
    size_t max_txn_ops = 128;
    // Keys and values per transaction, under etcd's default request limit
    // (--max-request-bytes 1.5 MiB) with room for the request's framing.
    size_t max_txn_bytes = 1 << 20;
  };

  EtcdJobStore(EtcdClient* client, Options options);

  // From now on writes are conditioned on `fence`; ClearFence: refused.
  void SetFence(EtcdFence fence) ABSL_LOCKS_EXCLUDED(mu_);
  void ClearFence() ABSL_LOCKS_EXCLUDED(mu_);
  // Called (on the writing thread) when a write finds the fence broken.
  void SetOnFenceLost(std::function<void()> fn) ABSL_LOCKS_EXCLUDED(mu_);

  // Batches over max_txn_bytes are written as several transactions, in
  // order, each fenced; a batch that fits is atomic (the engine's batches
  // fit: MaxBatchRecords() records of a few hundred bytes).
  absl::Status Write(const JobStoreBatch& batch) override;
  // Reads at one revision (every page), so a scan is one consistent view.
  absl::Status Scan(
      absl::string_view prefix,
      const std::function<absl::Status(absl::string_view key,
                                       absl::string_view value)>& fn) override;
  // One operation of each transaction is the writer stamp.
  size_t MaxBatchRecords() const override {
    return options_.fenced ? options_.max_txn_ops - 1 : options_.max_txn_ops;
  }

  // The etcd key of job store key `key`.
  std::string EtcdKey(absl::string_view key) const;

 private:
  absl::Status WriteOne(const JobStoreBatch& batch);

  EtcdClient* const client_;
  const Options options_;
  mutable absl::Mutex mu_;
  bool has_fence_ ABSL_GUARDED_BY(mu_) = false;
  EtcdFence fence_ ABSL_GUARDED_BY(mu_);
  std::function<void()> on_fence_lost_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_ETCD_JOB_STORE_H_
