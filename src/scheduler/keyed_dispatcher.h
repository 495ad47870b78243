#ifndef SHUTTER_SCHEDULER_KEYED_DISPATCHER_H_
#define SHUTTER_SCHEDULER_KEYED_DISPATCHER_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <queue>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace shutter::scheduler {

class KeyedDispatcher;

// A held concurrency slot for one key. Move-only; the slot is given back
// when the token is destroyed or Release()d, so every path (success, error,
// exception, dropped callback) returns it exactly once.
class SlotToken {
 public:
  SlotToken() = default;
  SlotToken(SlotToken&& other) noexcept;
  SlotToken& operator=(SlotToken&& other) noexcept;
  SlotToken(const SlotToken&) = delete;
  SlotToken& operator=(const SlotToken&) = delete;
  ~SlotToken() { Release(); }

  // Gives the slot back now. Idempotent.
  void Release();
  bool held() const { return owner_ != nullptr; }
  const std::string& key() const { return key_; }

 private:
  friend class KeyedDispatcher;
  SlotToken(KeyedDispatcher* owner, std::string key)
      : owner_(owner), key_(std::move(key)) {}
  KeyedDispatcher* owner_ = nullptr;
  std::string key_;
};

// Runs tasks on a fixed pool of threads while keeping, for every key (a
// node id), no more tasks in flight than the key's limit. A task is in
// flight from the moment it starts until the SlotToken it receives is
// released, so asynchronous work (an RPC completing later on another
// thread) keeps its slot until it really ends.
//
// Within one key, pending tasks start largest `weight` first (ties in
// submission order). A key at its limit never delays tasks of other keys.
//
// This is the simple dispatcher of the first release: one mutex guards all
// queues. The work-stealing scheduler replaces it behind the same calls.
//
// Thread-safe. Tasks may call Submit() and SetLimit(). The dispatcher must
// outlive every SlotToken it hands out.
class KeyedDispatcher {
 public:
  struct Options {
    // Worker threads that run task bodies. Task bodies should be short
    // (start an RPC, return); long work belongs elsewhere.
    int num_threads = 2;
    // Limit for keys never given one with SetLimit().
    int default_limit = 1;
    // Cap on tasks in flight over all keys; 0 means no cap.
    int global_limit = 0;
  };

  struct KeyStats {
    int limit = 0;
    int queued = 0;
    int in_flight = 0;
    int peak_in_flight = 0;
    uint64_t completed = 0;
  };

  using Task = absl::AnyInvocable<void(SlotToken) &&>;

  explicit KeyedDispatcher(const Options& options);
  // Calls Shutdown().
  ~KeyedDispatcher();

  // Sets the limit of `key` (>= 0; 0 drains the key: nothing new starts).
  // Raising a limit starts pending tasks at once.
  void SetLimit(absl::string_view key, int limit) ABSL_LOCKS_EXCLUDED(mu_);

  // Queues `task` for `key`. It runs on a worker thread once the key has a
  // free slot. Returns false (and drops the task) after Shutdown().
  bool Submit(absl::string_view key, int64_t weight, Task task)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Stops accepting tasks, drops pending ones (destroying them unrun), waits
  // for running task bodies to return and joins the threads. Tokens still
  // held may be released afterwards. Idempotent.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

  KeyStats GetKeyStats(absl::string_view key) const ABSL_LOCKS_EXCLUDED(mu_);
  std::map<std::string, KeyStats> GetAllStats() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  friend class SlotToken;

  struct Pending {
    int64_t weight;
    uint64_t seq;
    Task task;
  };
  struct PendingOrder {
    bool operator()(const Pending& a, const Pending& b) const {
      if (a.weight != b.weight) return a.weight < b.weight;
      return a.seq > b.seq;
    }
  };
  // A priority_queue over move-only elements needs a mutable top; keep a
  // heap in a vector instead.
  struct KeyState {
    int limit = -1;  // -1: default_limit
    int in_flight = 0;
    int peak_in_flight = 0;
    uint64_t completed = 0;
    std::vector<Pending> pending;  // max-heap by PendingOrder
  };
  struct Ready {
    std::string key;
    Task task;
  };

  void ReleaseSlot(const std::string& key) ABSL_LOCKS_EXCLUDED(mu_);
  // Moves startable tasks of `key` to the ready queue.
  void PumpLocked(const std::string& key, KeyState& ks)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Pumps every key with pending work (used when the global cap frees up).
  void PumpAllLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int LimitLocked(const KeyState& ks) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WorkerLoop() ABSL_LOCKS_EXCLUDED(mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  int total_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, KeyState> keys_ ABSL_GUARDED_BY(mu_);
  std::deque<Ready> ready_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

}  // namespace shutter::scheduler

#endif  // SHUTTER_SCHEDULER_KEYED_DISPATCHER_H_
