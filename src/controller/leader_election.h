#ifndef SHUTTER_CONTROLLER_LEADER_ELECTION_H_
#define SHUTTER_CONTROLLER_LEADER_ELECTION_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "controller/etcd_client.h"
#include "controller/etcd_job_store.h"
#include "shutter/store/v1/controllers.pb.h"

namespace shutter::controller {

// One leader among the controllers sharing an etcd prefix, as etcd's own
// election recipe and TiDB PD elect theirs:
//  - each controller holds a lease (TTL `lease`) kept alive over a
//    keep-alive stream, and registers itself at <prefix>controllers/<id>
//    bound to it;
//  - a campaign is one transaction: create <prefix>leader bound to the
//    lease if it does not exist; whoever creates it leads, and the key's
//    create revision is its term (etcd revisions only grow, so a later
//    leader always has a higher term);
//  - the others watch the key and campaign again when it is deleted (the
//    leader resigned, or its lease expired: it stopped renewing).
// The leader leads only while its lease is surely alive: it counts the
// lease from when it *sent* the keep-alive etcd answered, so its own view
// ends no later than etcd's. It steps down (on_deposed) as soon as that
// time passes without a renewal, a renewal says the lease is gone, the
// leader key changes, or a fenced write fails (Depose).
//
// Thread-safe. Callbacks run on the election's own thread, never two at
// once; `client` and `store` (whose fence it sets and clears) must outlive
// it.
class LeaderElection {
 public:
  struct Options {
    std::string prefix;   // the group's prefix, "/shutter/"
    std::string id;       // this controller's id, unique in the group
    std::string address;  // --advertise: how the others reach it
    absl::Duration lease = absl::Seconds(3);
    std::string version;
    std::string console_url;  // its console's, "" if none
  };
  struct Callbacks {
    // This controller now leads with `term`; the store's fence is set.
    // Load state and start serving; an error resigns (and campaigns again
    // after a pause).
    std::function<absl::Status(int64_t term)> on_elected;
    // Leadership is over (lost or resigned): stop dispatching and writing
    // at once. Called only after on_elected returned OK.
    std::function<void()> on_deposed;
  };
  // What this controller knows of the election.
  struct View {
    bool leader = false;
    int64_t term = 0;       // the current leader's, 0 if none known
    std::string leader_id;  // empty if none known
    std::string leader_address;
    absl::Duration lease_left;  // own lease, as counted here
  };

  LeaderElection(Options options, EtcdClient* client, EtcdJobStore* store,
                 Callbacks callbacks);
  // Shutdown().
  ~LeaderElection();

  void Start();
  // Steps down if leading (on_deposed), revokes the lease (so another
  // controller leads at once rather than after the TTL) and stops.
  // Idempotent.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

  // True while this controller leads in `term` and its lease is surely
  // alive. Cheap; for the dispatch path.
  bool Leads(int64_t term) const;
  View Current() const ABSL_LOCKS_EXCLUDED(mu_);

  // Leadership was found lost elsewhere (a fenced write failed): step down
  // now. Any thread.
  void Depose() ABSL_LOCKS_EXCLUDED(mu_);

  std::string LeaderKey() const { return options_.prefix + "leader"; }
  std::string ControllerKey(absl::string_view id) const;

  // Counters for metrics.
  uint64_t elections_won() const { return elections_won_.load(); }
  // Last keep-alive round trip.
  absl::Duration last_renewal() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Run();
  void KeepAliveLoop();
  // This controller's record (as registered and as leader).
  shutter::store::v1::ControllerRecord Record() const;
  // Grants a lease and registers this controller.
  absl::Status Join();
  // One campaign; leads (calls on_elected) if it wins.
  absl::Status Campaign();
  // Leads until the lease, the key or a fenced write says otherwise.
  void Lead(int64_t term);
  // Follows until the leader key is deleted (or the lease is lost).
  void Follow(int64_t from_revision);
  bool LeaseAlive() const;
  // Waits `d` unless stopping; false if stopping.
  bool Pause(absl::Duration d) ABSL_LOCKS_EXCLUDED(mu_);

  const Options options_;
  EtcdClient* const client_;
  EtcdJobStore* const store_;
  const Callbacks callbacks_;

  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool deposed_ ABSL_GUARDED_BY(mu_) = false;  // Depose() asked
  int64_t lease_id_ ABSL_GUARDED_BY(mu_) = 0;  // 0: none
  std::string leader_id_ ABSL_GUARDED_BY(mu_);
  std::string leader_address_ ABSL_GUARDED_BY(mu_);
  int64_t known_term_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration last_renewal_ ABSL_GUARDED_BY(mu_);
  // The lease is surely alive until then (unix nanos); 0: no lease.
  std::atomic<int64_t> lease_until_ns_{0};
  // The term this controller leads in; 0 when it does not.
  std::atomic<int64_t> leading_term_{0};
  std::atomic<uint64_t> elections_won_{0};
  std::thread thread_;
  std::thread keeper_;
};

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_LEADER_ELECTION_H_
