#include "controller/etcd_job_store.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace shutter::controller {

namespace ep = etcdserverpb;

namespace {
// Records per page of a scan.
constexpr int64_t kScanPage = 1000;
}  // namespace

EtcdJobStore::EtcdJobStore(EtcdClient* client, Options options)
    : client_(client), options_(std::move(options)) {}

void EtcdJobStore::SetFence(EtcdFence fence) {
  absl::MutexLock l(&mu_);
  fence_ = std::move(fence);
  has_fence_ = true;
}

void EtcdJobStore::ClearFence() {
  absl::MutexLock l(&mu_);
  has_fence_ = false;
}

void EtcdJobStore::SetOnFenceLost(std::function<void()> fn) {
  absl::MutexLock l(&mu_);
  on_fence_lost_ = std::move(fn);
}

std::string EtcdJobStore::EtcdKey(absl::string_view key) const {
  return absl::StrCat(options_.prefix, "store/", key);
}

absl::Status EtcdJobStore::Write(const JobStoreBatch& batch) {
  if (batch.size() > MaxBatchRecords()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "job store batch of ", batch.size(), " records; etcd takes at most ",
        MaxBatchRecords(), " per transaction"));
  }
  // Split by size only when needed (a header with many labels beside many
  // tasks); each piece is fenced and the pieces go in order.
  JobStoreBatch piece;
  size_t bytes = 0;
  for (const auto& [k, v] : batch.puts) {
    const size_t n = k.size() + v.size() + options_.prefix.size() + 16;
    if (n > options_.max_txn_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "job store record ", k, " is ", n, " bytes; etcd takes at most ",
          options_.max_txn_bytes, " per transaction"));
    }
    if (bytes + n > options_.max_txn_bytes) {
      absl::Status s = WriteOne(piece);
      if (!s.ok()) return s;
      piece = JobStoreBatch();
      bytes = 0;
    }
    piece.puts.emplace_back(k, v);
    bytes += n;
  }
  piece.deletes = batch.deletes;
  return WriteOne(piece);
}

absl::Status EtcdJobStore::WriteOne(const JobStoreBatch& batch) {
  if (batch.size() == 0) return absl::OkStatus();
  ep::TxnRequest txn;
  EtcdFence fence;
  if (options_.fenced) {
    absl::MutexLock l(&mu_);
    if (!has_fence_) {
      return absl::UnavailableError(
          "this controller is not the leader: job store writes refused");
    }
    fence = fence_;
    ep::Compare* c = txn.add_compare();
    c->set_key(fence.key);
    c->set_target(ep::Compare::CREATE);
    c->set_result(ep::Compare::EQUAL);
    c->set_create_revision(fence.revision);
    if (!fence.writer.empty()) {
      ep::PutRequest* stamp = txn.add_success()->mutable_request_put();
      stamp->set_key(absl::StrCat(options_.prefix, "writer"));
      stamp->set_value(fence.writer);
    }
  }
  for (const auto& [k, v] : batch.puts) {
    ep::PutRequest* put = txn.add_success()->mutable_request_put();
    put->set_key(EtcdKey(k));
    put->set_value(v);
  }
  for (const auto& k : batch.deletes) {
    txn.add_success()->mutable_request_delete_range()->set_key(EtcdKey(k));
  }
  absl::StatusOr<ep::TxnResponse> r = client_->Txn(txn);
  if (!r.ok()) return r.status();
  if (!r->succeeded()) {
    std::function<void()> lost;
    {
      absl::MutexLock l(&mu_);
      lost = on_fence_lost_;
    }
    if (lost) lost();
    return absl::AbortedError(
        absl::StrCat("this controller is no longer the leader (", fence.key,
                     " no longer has create revision ", fence.revision,
                     "): job store write refused by etcd"));
  }
  return absl::OkStatus();
}

absl::Status EtcdJobStore::Scan(
    absl::string_view prefix,
    const std::function<absl::Status(absl::string_view key,
                                     absl::string_view value)>& fn) {
  const std::string base = EtcdKey("");
  const std::string from = EtcdKey(prefix);
  ep::RangeRequest req;
  req.set_key(from);
  req.set_range_end(PrefixRangeEnd(from));
  req.set_limit(kScanPage);
  req.set_sort_order(ep::RangeRequest::ASCEND);
  req.set_sort_target(ep::RangeRequest::KEY);
  for (;;) {
    absl::StatusOr<ep::RangeResponse> r = client_->Range(req);
    if (!r.ok()) return r.status();
    if (req.revision() == 0) req.set_revision(r->header().revision());
    for (const auto& kv : r->kvs()) {
      absl::string_view key = kv.key();
      key.remove_prefix(base.size());
      absl::Status s = fn(key, kv.value());
      if (!s.ok()) return s;
    }
    if (!r->more() || r->kvs().empty()) return absl::OkStatus();
    req.set_key(r->kvs(r->kvs_size() - 1).key() + std::string(1, '\0'));
  }
}

}  // namespace shutter::controller
