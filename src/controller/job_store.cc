#include "controller/job_store.h"

#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"

namespace shutter::controller {
namespace {
constexpr char kJobPrefix[] = "job/";
constexpr char kLegacyPrefix[] = "snapshot/";

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  absl::StatusCode code = absl::StatusCode::kInternal;
  if (s.IsIOError() && s.subcode() == rocksdb::Status::kNoSpace) {
    code = absl::StatusCode::kResourceExhausted;
  }
  return absl::Status(code, absl::StrCat(what, ": ", s.ToString()));
}
}  // namespace

std::string JobKeys::Header(absl::string_view snapshot_id) {
  return absl::StrCat(kJobPrefix, snapshot_id, "/h");
}

std::string JobKeys::Task(absl::string_view snapshot_id,
                          uint32_t partition_id) {
  return absl::StrFormat("%s%s/t/%010u", kJobPrefix, snapshot_id, partition_id);
}

std::string JobKeys::EncodeHeader(const shutter::v1::Snapshot& job) {
  shutter::v1::Snapshot header = job;
  header.clear_partitions();
  return header.SerializeAsString();
}

std::string JobKeys::EncodeTask(const shutter::v1::PartitionTask& task) {
  return task.SerializeAsString();
}

absl::Status JobStore::PutJob(const shutter::v1::Snapshot& job) {
  JobStoreBatch batch;
  for (const auto& t : job.partitions()) {
    batch.puts.emplace_back(JobKeys::Task(job.snapshot_id(), t.partition_id()),
                            JobKeys::EncodeTask(t));
    if (batch.size() == kMaxBatchRecords) {
      RETURN_IF_ERROR(Write(batch));
      batch = JobStoreBatch();
    }
  }
  batch.puts.emplace_back(JobKeys::Header(job.snapshot_id()),
                          JobKeys::EncodeHeader(job));
  return Write(batch);
}

absl::Status JobStore::PutRecord(const std::string& key,
                                 const std::string& value) {
  JobStoreBatch batch;
  batch.puts.emplace_back(key, value);
  return Write(batch);
}

absl::Status JobStore::DeleteRecord(const std::string& key) {
  JobStoreBatch batch;
  batch.deletes.push_back(key);
  return Write(batch);
}

absl::StatusOr<std::vector<shutter::v1::Snapshot>> JobStore::LoadAll() {
  // Records of the old layout: one whole job per record. Rewritten in the
  // new one (and removed) as they are found.
  std::vector<shutter::v1::Snapshot> legacy;
  RETURN_IF_ERROR(
      Scan(kLegacyPrefix, [&](absl::string_view key, absl::string_view value) {
        shutter::v1::Snapshot s;
        if (!s.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
          return absl::DataLossError(
              absl::StrCat("job store record ", key, " does not parse"));
        }
        legacy.push_back(std::move(s));
        return absl::OkStatus();
      }));
  for (const auto& s : legacy) {
    RETURN_IF_ERROR(PutJob(s));
    JobStoreBatch del;
    del.deletes.push_back(absl::StrCat(kLegacyPrefix, s.snapshot_id()));
    RETURN_IF_ERROR(Write(del));
  }

  // Keys sort as job/<id>/h < job/<id>/t/...: the header comes first.
  std::map<std::string, shutter::v1::Snapshot> jobs;
  std::vector<std::string> orphans;
  RETURN_IF_ERROR(
      Scan(kJobPrefix, [&](absl::string_view key, absl::string_view value) {
        absl::string_view rest = key.substr(sizeof(kJobPrefix) - 1);
        size_t slash = rest.find('/');
        if (slash == absl::string_view::npos) {
          return absl::DataLossError(absl::StrCat("job store key ", key));
        }
        std::string id(rest.substr(0, slash));
        absl::string_view kind = rest.substr(slash + 1);
        if (kind == "h") {
          shutter::v1::Snapshot h;
          if (!h.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
            return absl::DataLossError(
                absl::StrCat("job store record ", key, " does not parse"));
          }
          jobs[id] = std::move(h);
          return absl::OkStatus();
        }
        if (!absl::StartsWith(kind, "t/")) {
          return absl::DataLossError(absl::StrCat("job store key ", key));
        }
        auto it = jobs.find(id);
        if (it == jobs.end()) {
          orphans.emplace_back(key);  // a creation cut short
          return absl::OkStatus();
        }
        auto* t = it->second.add_partitions();
        if (!t->ParseFromArray(value.data(), static_cast<int>(value.size()))) {
          return absl::DataLossError(
              absl::StrCat("job store record ", key, " does not parse"));
        }
        return absl::OkStatus();
      }));
  for (size_t i = 0; i < orphans.size(); i += kMaxBatchRecords) {
    JobStoreBatch del;
    for (size_t j = i; j < std::min(orphans.size(), i + kMaxBatchRecords);
         ++j) {
      del.deletes.push_back(orphans[j]);
    }
    RETURN_IF_ERROR(Write(del));
  }
  std::vector<shutter::v1::Snapshot> out;
  out.reserve(jobs.size());
  for (auto& [id, job] : jobs) out.push_back(std::move(job));
  return out;
}

RocksDbJobStore::RocksDbJobStore(std::unique_ptr<rocksdb::DB> db)
    : db_(std::move(db)) {}

RocksDbJobStore::~RocksDbJobStore() {
  if (db_) db_->Close().PermitUncheckedError();
}

absl::StatusOr<std::unique_ptr<RocksDbJobStore>> RocksDbJobStore::Open(
    const std::string& path) {
  rocksdb::Options o;
  o.create_if_missing = true;
  rocksdb::DB* db = nullptr;
  absl::Status s = FromRocks(rocksdb::DB::Open(o, path, &db),
                             absl::StrCat("open job store at ", path));
  if (!s.ok()) return s;
  return std::unique_ptr<RocksDbJobStore>(
      new RocksDbJobStore(std::unique_ptr<rocksdb::DB>(db)));
}

absl::Status RocksDbJobStore::Write(const JobStoreBatch& batch) {
  if (batch.size() > kMaxBatchRecords) {
    return absl::InvalidArgumentError(
        absl::StrCat("job store batch of ", batch.size(),
                     " records; the limit is ", kMaxBatchRecords));
  }
  rocksdb::WriteBatch wb;
  for (const auto& [k, v] : batch.puts) wb.Put(k, v);
  for (const auto& k : batch.deletes) wb.Delete(k);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return FromRocks(db_->Write(wo, &wb), "persist job records");
}

absl::Status RocksDbJobStore::Scan(
    absl::string_view prefix,
    const std::function<absl::Status(absl::string_view, absl::string_view)>&
        fn) {
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions()));
  const rocksdb::Slice p(prefix.data(), prefix.size());
  for (it->Seek(p); it->Valid() && it->key().starts_with(p); it->Next()) {
    RETURN_IF_ERROR(
        fn(absl::string_view(it->key().data(), it->key().size()),
           absl::string_view(it->value().data(), it->value().size())));
  }
  return FromRocks(it->status(), "scan job store");
}

}  // namespace shutter::controller
