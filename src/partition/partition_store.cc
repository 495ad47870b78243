#include "partition/partition_store.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "partition/write_stall_listener.h"
#include "rocksdb/db.h"
#include "rocksdb/env.h"
#include "rocksdb/options.h"
#include "rocksdb/utilities/checkpoint.h"
#include "rocksdb/write_batch.h"

namespace shutter::partition {

int TableOpeningThreads(const std::string& dir) {
  std::vector<std::string> names;
  if (!rocksdb::Env::Default()->GetChildren(dir, &names).ok()) return 1;
  const auto tables = std::count_if(
      names.begin(), names.end(),
      [](const std::string& n) { return absl::EndsWith(n, ".sst"); });
  return static_cast<int>(std::clamp<decltype(tables)>(tables / 8, 1, 16));
}

namespace {

// True when `open_error`, the text of a failed RocksDB open, says that the
// store's LOCK file is held by another process (RocksDB's
// PosixEnv::LockFile: "While lock file: <dir>/LOCK: Resource temporarily
// unavailable"; a lock held by this process reads differently). A node
// daemon's own data directory lock refuses a second node before this;
// this is for services that embed the store.
bool LockHeldElsewhere(absl::string_view open_error) {
  return absl::StrContains(open_error, "While lock file") &&
         absl::StrContains(open_error, "Resource temporarily unavailable");
}

constexpr char kMetaCf[] = "meta";
constexpr char kAppliedIndexKey[] = "applied_index";
constexpr char kLeaderEpochKey[] = "leader_epoch";
constexpr char kRestoredByKey[] = "restored_by";

absl::Status ToStatus(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  absl::StatusCode code = absl::StatusCode::kInternal;
  if (s.IsNotFound()) code = absl::StatusCode::kNotFound;
  if (s.IsInvalidArgument()) code = absl::StatusCode::kInvalidArgument;
  if (s.IsIOError() && s.subcode() == rocksdb::Status::kNoSpace) {
    code = absl::StatusCode::kResourceExhausted;
  }
  if (s.IsBusy() || s.IsTryAgain()) code = absl::StatusCode::kUnavailable;
  return absl::Status(code, absl::StrCat(what, ": ", s.ToString()));
}

rocksdb::DBOptions MakeDbOptions(const std::string& dir) {
  rocksdb::DBOptions o;
  o.max_file_opening_threads = TableOpeningThreads(dir);
  o.create_if_missing = true;
  o.create_missing_column_families = true;
  // Flush both column families together so data and its applied index
  // always reach SST files in one step (checkpoints flush first).
  o.atomic_flush = true;
  o.max_background_jobs = 2;
  // Write flushed SSTs (a checkpoint's flush among them) back to disk a MiB
  // at a time instead of in one burst at the file's end: a burst makes the
  // partitions' own synced writes wait behind it (on ext4 their fsync
  // joins the same journal commit). foreground_bench measures it.
  o.bytes_per_sync = 1 << 20;
  o.wal_bytes_per_sync = 1 << 20;
  return o;
}

absl::StatusOr<uint64_t> ReadCounter(rocksdb::DB* db,
                                     rocksdb::ColumnFamilyHandle* cf,
                                     const char* key) {
  std::string v;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), cf, key, &v);
  if (s.IsNotFound()) return 0;
  RETURN_IF_ERROR(ToStatus(s, absl::StrCat("read meta ", key)));
  uint64_t n = 0;
  if (!absl::SimpleAtoi(v, &n)) {
    return absl::DataLossError(
        absl::StrCat("meta key ", key, " holds a non-number: \"", v, "\""));
  }
  return n;
}

absl::StatusOr<std::string> ReadString(rocksdb::DB* db,
                                       rocksdb::ColumnFamilyHandle* cf,
                                       const char* key) {
  std::string v;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), cf, key, &v);
  if (s.IsNotFound()) return std::string();
  RETURN_IF_ERROR(ToStatus(s, absl::StrCat("read meta ", key)));
  return v;
}

}  // namespace

PartitionStore::PartitionStore(uint32_t partition_id, std::string path)
    : partition_id_(partition_id), path_(std::move(path)) {}

PartitionStore::~PartitionStore() {
  if (db_) {
    db_->DestroyColumnFamilyHandle(meta_cf_.release()).PermitUncheckedError();
    db_->Close().PermitUncheckedError();
  }
}

absl::StatusOr<std::unique_ptr<PartitionStore>> PartitionStore::Open(
    const Options& options) {
  std::unique_ptr<PartitionStore> store(
      new PartitionStore(options.partition_id, options.path));
  store->write_latency_ = options.write_latency;
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
      {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()},
      {kMetaCf, rocksdb::ColumnFamilyOptions()}};
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  rocksdb::DBOptions db_options = MakeDbOptions(options.path);
  if (options.write_stalls != nullptr) {
    db_options.listeners.push_back(std::make_shared<WriteStallListener>(
        options.write_stalls, [] { return absl::Now(); }));
  }
  const rocksdb::Status opened =
      rocksdb::DB::Open(db_options, options.path, cfs, &handles, &db);
  if (!opened.ok() && LockHeldElsewhere(opened.ToString())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "open partition ", options.partition_id, " at ", options.path,
        ": another process has it open (its LOCK is held): is another node "
        "running on this data directory?"));
  }
  RETURN_IF_ERROR(
      ToStatus(opened, absl::StrCat("open partition ", options.partition_id,
                                    " at ", options.path)));
  store->db_.reset(db);
  // The default column family is reachable as db->DefaultColumnFamily().
  db->DestroyColumnFamilyHandle(handles[0]).PermitUncheckedError();
  store->default_cf_ = db->DefaultColumnFamily();
  store->meta_cf_.reset(handles[1]);
  PartitionMeta m;
  ASSIGN_OR_RETURN(m.applied_index,
                   ReadCounter(db, handles[1], kAppliedIndexKey));
  ASSIGN_OR_RETURN(m.leader_epoch,
                   ReadCounter(db, handles[1], kLeaderEpochKey));
  ASSIGN_OR_RETURN(m.restored_by, ReadString(db, handles[1], kRestoredByKey));
  {
    absl::MutexLock l(&store->write_mu_);
    store->meta_ = m;
  }
  return store;
}

absl::StatusOr<uint64_t> PartitionStore::TakeLeadership(uint64_t min_epoch) {
  absl::MutexLock l(&write_mu_);
  uint64_t epoch = std::max(meta_.leader_epoch + 1, min_epoch);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  RETURN_IF_ERROR(ToStatus(
      db_->Put(wo, meta_cf_.get(), kLeaderEpochKey, std::to_string(epoch)),
      "persist leader epoch"));
  meta_.leader_epoch = epoch;
  leader_.store(true);
  return epoch;
}

void PartitionStore::StepDown() { leader_.store(false); }

void PartitionStore::RefuseWrites(std::string reason) {
  if (reason.empty()) reason = "writes are refused";
  // Write holds write_mu_ for the whole batch: once we have it, no write
  // is in progress.
  absl::MutexLock l(&write_mu_);
  writes_refused_ = std::move(reason);
}

void PartitionStore::AllowWrites() {
  absl::MutexLock l(&write_mu_);
  writes_refused_.clear();
}

absl::Status PartitionStore::StampRestored(const std::string& dir,
                                           uint64_t epoch,
                                           const std::string& marker) {
  rocksdb::DBOptions o = MakeDbOptions(dir);
  o.create_if_missing = false;
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
      {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()},
      {kMetaCf, rocksdb::ColumnFamilyOptions()}};
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  RETURN_IF_ERROR(ToStatus(rocksdb::DB::Open(o, dir, cfs, &handles, &raw),
                           absl::StrCat("open restored store ", dir)));
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::WriteBatch batch;
  batch.Put(handles[1], kLeaderEpochKey, std::to_string(epoch));
  batch.Put(handles[1], kRestoredByKey, marker);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  absl::Status s = ToStatus(db->Write(wo, &batch), "stamp restored store");
  for (auto* h : handles)
    db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  absl::Status closed = ToStatus(db->Close(), "close restored store");
  return s.ok() ? closed : s;
}

PartitionMeta PartitionStore::meta() const {
  absl::MutexLock l(&write_mu_);
  return meta_;
}

absl::StatusOr<uint64_t> PartitionStore::Write(
    const std::vector<Mutation>& mutations, bool sync,
    uint64_t expected_epoch) {
  if (mutations.empty()) {
    return absl::InvalidArgumentError("write batch has no mutations");
  }
  if (mutations.size() > kMaxBatchMutations) {
    return absl::InvalidArgumentError(
        absl::StrCat("write batch has ", mutations.size(),
                     " mutations; the limit is ", kMaxBatchMutations));
  }
  size_t total = 0;
  for (size_t i = 0; i < mutations.size(); ++i) {
    const Mutation& m = mutations[i];
    if (m.key.empty() || m.key.size() > kMaxKeyBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("mutation ", i, ": key of ", m.key.size(),
                       " bytes; keys must be 1 to ", kMaxKeyBytes, " bytes"));
    }
    if (m.value.size() > kMaxValueBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("mutation ", i, ": value of ", m.value.size(),
                       " bytes; the limit is ", kMaxValueBytes));
    }
    total += m.key.size() + m.value.size();
  }
  if (total > kMaxBatchBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "write batch holds ", total, " bytes of keys and values; the limit is ",
        kMaxBatchBytes));
  }
  const absl::Time start = absl::Now();
  absl::MutexLock l(&write_mu_);
  if (!writes_refused_.empty()) return absl::UnavailableError(writes_refused_);
  if (!leader_.load()) {
    return absl::FailedPreconditionError(
        absl::StrCat("partition ", partition_id_, " is not led by this node"));
  }
  if (expected_epoch != 0 && expected_epoch != meta_.leader_epoch) {
    return absl::FailedPreconditionError(absl::StrCat(
        "stale epoch: the write is for epoch ", expected_epoch,
        " but partition ", partition_id_, " is at epoch ", meta_.leader_epoch));
  }
  rocksdb::WriteBatch batch;
  for (const Mutation& m : mutations) {
    if (m.op == Mutation::Op::kPut) {
      batch.Put(default_cf_, m.key, m.value);
    } else {
      batch.Delete(default_cf_, m.key);
    }
  }
  uint64_t next = meta_.applied_index + 1;
  batch.Put(meta_cf_.get(), kAppliedIndexKey, std::to_string(next));
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  RETURN_IF_ERROR(ToStatus(db_->Write(wo, &batch), "write batch"));
  meta_.applied_index = next;
  if (write_latency_ != nullptr) write_latency_->Record(absl::Now() - start);
  return next;
}

absl::StatusOr<std::string> PartitionStore::Get(const std::string& key) const {
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), default_cf_, key, &v);
  if (s.IsNotFound()) return absl::NotFoundError("key not found");
  RETURN_IF_ERROR(ToStatus(s, "get"));
  return v;
}

absl::Status PartitionStore::Scan(
    const std::string& start, const std::string& end, size_t limit,
    size_t max_bytes, std::vector<std::pair<std::string, std::string>>* out,
    std::string* next_key) const {
  next_key->clear();
  size_t bytes = 0;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), default_cf_));
  for (it->Seek(start); it->Valid(); it->Next()) {
    if (!end.empty() && it->key().compare(end) >= 0) break;
    const size_t entry = it->key().size() + it->value().size();
    if (out->size() >= limit || (!out->empty() && bytes + entry > max_bytes)) {
      *next_key = it->key().ToString();
      break;
    }
    bytes += entry;
    out->emplace_back(it->key().ToString(), it->value().ToString());
  }
  return ToStatus(it->status(), "scan");
}

uint64_t PartitionStore::ApproximateSizeBytes() const {
  uint64_t total = 0;
  for (rocksdb::ColumnFamilyHandle* cf : {default_cf_, meta_cf_.get()}) {
    uint64_t v = 0;
    if (db_->GetIntProperty(cf, rocksdb::DB::Properties::kLiveSstFilesSize,
                            &v)) {
      total += v;
    }
    if (db_->GetIntProperty(cf, rocksdb::DB::Properties::kCurSizeAllMemTables,
                            &v)) {
      total += v;
    }
  }
  return total;
}

absl::Status PartitionStore::CreateCheckpoint(const std::string& dir) const {
  rocksdb::Checkpoint* raw = nullptr;
  RETURN_IF_ERROR(
      ToStatus(rocksdb::Checkpoint::Create(db_.get(), &raw), "checkpoint"));
  std::unique_ptr<rocksdb::Checkpoint> cp(raw);
  // log_size_for_flush = 0: always flush first, so the checkpoint is SST
  // files plus a near-empty WAL.
  return ToStatus(cp->CreateCheckpoint(dir, /*log_size_for_flush=*/0),
                  absl::StrCat("create checkpoint of partition ", partition_id_,
                               " in ", dir));
}

absl::StatusOr<PartitionMeta> PartitionStore::ReadMeta(const std::string& dir) {
  ASSIGN_OR_RETURN(auto ro, ReadOnlyPartition::Open(dir));
  return ro->meta();
}

namespace {
// Discards RocksDB's info log so a read-only open leaves no LOG file behind.
class NullLogger : public rocksdb::Logger {
 public:
  using rocksdb::Logger::Logv;
  void Logv(const char*, va_list) override {}
};
}  // namespace

absl::StatusOr<std::unique_ptr<ReadOnlyPartition>> ReadOnlyPartition::Open(
    const std::string& dir) {
  rocksdb::DBOptions o;
  o.info_log = std::make_shared<NullLogger>();
  o.max_file_opening_threads = TableOpeningThreads(dir);
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
      {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()},
      {kMetaCf, rocksdb::ColumnFamilyOptions()}};
  std::unique_ptr<ReadOnlyPartition> p(new ReadOnlyPartition);
  rocksdb::DB* raw = nullptr;
  RETURN_IF_ERROR(
      ToStatus(rocksdb::DB::OpenForReadOnly(o, dir, cfs, &p->handles_, &raw),
               absl::StrCat("open ", dir, " read-only")));
  p->db_.reset(raw);
  ASSIGN_OR_RETURN(p->meta_.applied_index,
                   ReadCounter(raw, p->handles_[1], kAppliedIndexKey));
  ASSIGN_OR_RETURN(p->meta_.leader_epoch,
                   ReadCounter(raw, p->handles_[1], kLeaderEpochKey));
  ASSIGN_OR_RETURN(p->meta_.restored_by,
                   ReadString(raw, p->handles_[1], kRestoredByKey));
  return p;
}

ReadOnlyPartition::~ReadOnlyPartition() {
  if (!db_) return;
  for (auto* h : handles_)
    db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  db_->Close().PermitUncheckedError();
}

absl::StatusOr<std::string> ReadOnlyPartition::Get(
    const std::string& key) const {
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), handles_[0], key, &v);
  if (s.IsNotFound()) return absl::NotFoundError("key not found");
  RETURN_IF_ERROR(ToStatus(s, "get"));
  return v;
}

absl::StatusOr<uint64_t> ReadOnlyPartition::CountKeys() const {
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), handles_[0]));
  uint64_t n = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) ++n;
  RETURN_IF_ERROR(ToStatus(it->status(), "scan"));
  return n;
}

}  // namespace shutter::partition
