#include "controller/node_limits.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace shutter::controller {

namespace {
constexpr char kPinPrefix[] = "node-limit/";
}  // namespace

std::string NodeLimits::PinKey(const std::string& node) {
  return absl::StrCat(kPinPrefix, node);
}

NodeLimits::NodeLimits(const Options& options, JobStore* store)
    : options_(options), store_(store) {}

absl::Status NodeLimits::Load() {
  if (store_ == nullptr) return absl::OkStatus();
  std::map<std::string, uint32_t> pins;
  absl::Status s = store_->Scan(
      kPinPrefix, [&](absl::string_view key, absl::string_view value) {
        uint32_t limit = 0;
        if (!absl::SimpleAtoi(value, &limit) || limit == 0) {
          return absl::DataLossError(absl::StrCat("job store record ", key,
                                                  ": bad limit '", value, "'"));
        }
        pins[std::string(key.substr(sizeof(kPinPrefix) - 1))] = limit;
        return absl::OkStatus();
      });
  if (!s.ok()) return s;
  absl::MutexLock l(&mu_);
  pins_ = std::move(pins);
  return absl::OkStatus();
}

NodeLimits::NodeState& NodeLimits::StateLocked(const std::string& node,
                                               uint32_t capacity) {
  auto it = nodes_.find(node);
  if (it == nodes_.end()) {
    scheduler::AdaptiveLimit::Options o = options_.rule;
    o.capacity = static_cast<int>(std::max<uint32_t>(1, capacity));
    it = nodes_.emplace(node, NodeState(o)).first;
    it->second.capacity = capacity;
  } else if (it->second.capacity != capacity) {
    it->second.capacity = capacity;
    it->second.rule.SetCapacity(static_cast<int>(capacity));
  }
  return it->second;
}

int NodeLimits::EffectiveLocked(const std::string& node, uint32_t capacity,
                                const scheduler::AdaptiveLimit* rule) const {
  const int cap = static_cast<int>(std::max<uint32_t>(1, capacity));
  auto pin = pins_.find(node);
  if (pin != pins_.end()) return std::min(cap, static_cast<int>(pin->second));
  if (!options_.adaptive || rule == nullptr) return cap;
  return std::clamp(rule->limit(), 1, cap);
}

std::string NodeLimits::ReasonLocked(const std::string& node,
                                     const NodeState& n) const {
  auto pin = pins_.find(node);
  if (pin != pins_.end()) {
    return pin->second > n.capacity
               ? absl::StrCat("pinned by an operator to ", pin->second,
                              ", above the capacity ", n.capacity)
               : "pinned by an operator";
  }
  if (!options_.adaptive) return "adaptive limits off: the capacity";
  if (!n.has_load) return "no load reported: the capacity";
  return n.rule.reason();
}

std::optional<int> NodeLimits::Observe(const std::string& node,
                                       uint32_t capacity,
                                       const shutter::v1::NodeLoad* load,
                                       int in_flight, int queued) {
  absl::MutexLock l(&mu_);
  NodeState& n = StateLocked(node, capacity);
  if (load != nullptr) {
    n.has_load = true;
    n.load = *load;
    scheduler::LoadSample s;
    s.cpu_busy = load->cpu_busy();
    s.disk_busy = load->disk_busy();
    s.write_p99_micros =
        load->foreground_writes() > 0
            ? static_cast<double>(load->foreground_write_p99_micros())
            : -1;
    if (load->interval_millis() > 0) {
      s.write_stall_fraction =
          static_cast<double>(load->write_stall_micros()) /
          (static_cast<double>(load->interval_millis()) * 1000.0);
    }
    s.snapshot_work = load->snapshot_work();
    s.in_flight = in_flight;
    s.queued = queued;
    const int before = n.rule.limit();
    scheduler::AdaptiveLimit::Decision d = n.rule.Update(s);
    if (d.changed) ++(d.limit < before ? n.decreases : n.increases);
    if (d.changed && options_.adaptive && pins_.count(node) == 0) {
      spdlog::info("node {}: limit {} -> {} ({})", node, before, d.limit,
                   n.rule.reason());
    }
  }
  const int effective = EffectiveLocked(node, n.capacity, &n.rule);
  if (effective == n.applied) return std::nullopt;
  ApplyLocked(node, n, effective);
  return effective;
}

void NodeLimits::ApplyLocked(const std::string& node, NodeState& n,
                             int effective) {
  if (n.applied != 0 && n.applied != effective) {
    n.changes.push_back(Change{absl::Now(), static_cast<uint32_t>(n.applied),
                               static_cast<uint32_t>(effective),
                               ReasonLocked(node, n)});
    while (n.changes.size() > kMaxChanges) n.changes.pop_front();
  }
  n.applied = effective;
}

bool NodeLimits::HasHeadroom(const std::string& node) const {
  if (!options_.adaptive) return true;
  absl::ReaderMutexLock l(&mu_);
  auto it = nodes_.find(node);
  if (it == nodes_.end() || !it->second.has_load) return true;
  return it->second.rule.pressure() < options_.rule.healthy_below;
}

int NodeLimits::Effective(const std::string& node, uint32_t capacity) const {
  absl::MutexLock l(&mu_);
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return EffectiveLocked(node, capacity, nullptr);
  return EffectiveLocked(node, it->second.capacity, &it->second.rule);
}

absl::StatusOr<int> NodeLimits::Pin(const std::string& node, uint32_t limit) {
  absl::MutexLock l(&mu_);
  auto it = nodes_.find(node);
  if (it == nodes_.end()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "node ", node, " has not sent a heartbeat to this controller yet"));
  }
  NodeState& n = it->second;
  if (limit > n.capacity) {
    return absl::InvalidArgumentError(
        absl::StrCat("limit ", limit, " is above node ", node,
                     "'s capacity of ", n.capacity, " (it takes no more)"));
  }
  if (store_ != nullptr) {
    absl::Status s =
        limit == 0 ? store_->DeleteRecord(PinKey(node))
                   : store_->PutRecord(PinKey(node), std::to_string(limit));
    if (!s.ok()) return s;
  }
  if (limit == 0) {
    pins_.erase(node);
  } else {
    pins_[node] = limit;
  }
  ApplyLocked(node, n, EffectiveLocked(node, n.capacity, &n.rule));
  return n.applied;
}

NodeLimits::View NodeLimits::Describe(const std::string& node) const {
  absl::MutexLock l(&mu_);
  auto it = nodes_.find(node);
  if (it == nodes_.end()) {
    View v;
    auto pin = pins_.find(node);
    if (pin != pins_.end()) v.pinned = pin->second;
    return v;
  }
  return DescribeLocked(node, it->second);
}

std::map<std::string, NodeLimits::View> NodeLimits::DescribeAll() const {
  absl::MutexLock l(&mu_);
  std::map<std::string, View> out;
  for (const auto& [id, n] : nodes_) out.emplace(id, DescribeLocked(id, n));
  return out;
}

NodeLimits::View NodeLimits::DescribeLocked(const std::string& node,
                                            const NodeState& n) const {
  View v;
  auto pin = pins_.find(node);
  if (pin != pins_.end()) v.pinned = pin->second;
  v.decreases = n.decreases;
  v.increases = n.increases;
  v.capacity = n.capacity;
  v.limit = static_cast<uint32_t>(EffectiveLocked(node, n.capacity, &n.rule));
  v.reason = ReasonLocked(node, n);
  v.has_load = n.has_load;
  v.load = n.load;
  v.changes.assign(n.changes.begin(), n.changes.end());
  v.idle_write_p99_micros = n.rule.idle_p99_micros() > 0
                                ? static_cast<int64_t>(n.rule.idle_p99_micros())
                                : 0;
  return v;
}

void NodeLimits::Forget(const std::string& node) {
  absl::MutexLock l(&mu_);
  nodes_.erase(node);
}

}  // namespace shutter::controller
