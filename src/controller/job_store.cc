#include "controller/job_store.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "controller/job_records.h"
#include "partition/partition_store.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "spdlog/spdlog.h"

namespace shutter::controller {
namespace {
namespace sv1 = shutter::store::v1;

constexpr char kJobPrefix[] = "v2/job/";
constexpr char kFormatKey[] = "meta/job_format";
// Format 1: shutter.v1 messages, one header and one record per task.
constexpr char kV1Prefix[] = "job/";
// Format 0: one whole shutter.v1.Snapshot per job.
constexpr char kV0Prefix[] = "snapshot/";

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  absl::StatusCode code = absl::StatusCode::kInternal;
  if (s.IsIOError() && s.subcode() == rocksdb::Status::kNoSpace) {
    code = absl::StatusCode::kResourceExhausted;
  }
  return absl::Status(code, absl::StrCat(what, ": ", s.ToString()));
}

template <typename Message>
absl::Status ParseRecord(absl::string_view key, absl::string_view value,
                         Message* m) {
  if (!m->ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return absl::DataLossError(
        absl::StrCat("job store record ", key, " does not parse"));
  }
  return absl::OkStatus();
}

// Splits "<prefix><id>/<rest>" into id and rest.
absl::Status SplitKey(absl::string_view key, absl::string_view prefix,
                      std::string* id, absl::string_view* rest) {
  absl::string_view r = key.substr(prefix.size());
  size_t slash = r.find('/');
  if (slash == absl::string_view::npos || slash == 0) {
    return absl::DataLossError(absl::StrCat("job store key ", key));
  }
  *id = std::string(r.substr(0, slash));
  *rest = r.substr(slash + 1);
  if (*rest != "h" && !absl::StartsWith(*rest, "t/")) {
    return absl::DataLossError(absl::StrCat("job store key ", key));
  }
  return absl::OkStatus();
}

// Deletes `keys` in batches of at most MaxBatchRecords(), in order.
absl::Status DeleteAll(JobStore* store, const std::vector<std::string>& keys) {
  const size_t max = store->MaxBatchRecords();
  for (size_t i = 0; i < keys.size(); i += max) {
    JobStoreBatch del;
    for (size_t j = i; j < std::min(keys.size(), i + max); ++j) {
      del.deletes.push_back(keys[j]);
    }
    RETURN_IF_ERROR(store->Write(del));
  }
  return absl::OkStatus();
}

// Reads every format-1 job (header plus tasks, as shutter.v1 messages);
// `keys` gets every format-1 key, a job's header before its tasks.
absl::Status ReadV1(JobStore* store,
                    std::map<std::string, shutter::v1::Snapshot>* jobs,
                    std::vector<std::string>* keys) {
  return store->Scan(
      kV1Prefix, [&](absl::string_view key, absl::string_view value) {
        std::string id;
        absl::string_view rest;
        RETURN_IF_ERROR(SplitKey(key, kV1Prefix, &id, &rest));
        keys->emplace_back(key);
        if (rest == "h") {
          shutter::v1::Snapshot h;
          RETURN_IF_ERROR(ParseRecord(key, value, &h));
          h.clear_partitions();
          (*jobs)[id] = std::move(h);
          return absl::OkStatus();
        }
        auto it = jobs->find(id);
        if (it == jobs->end()) return absl::OkStatus();  // a creation cut short
        return ParseRecord(key, value, it->second.add_partitions());
      });
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
  return ToJobRecord(job).SerializeAsString();
}

std::string JobKeys::EncodeTask(absl::string_view job_id,
                                const shutter::v1::PartitionTask& task) {
  return ToTaskRecord(job_id, task).SerializeAsString();
}

absl::Status JobStore::PutJob(const shutter::v1::Snapshot& job) {
  JobStoreBatch batch;
  for (const auto& t : job.partitions()) {
    batch.puts.emplace_back(JobKeys::Task(job.snapshot_id(), t.partition_id()),
                            JobKeys::EncodeTask(job.snapshot_id(), t));
    if (batch.size() == MaxBatchRecords()) {
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

absl::StatusOr<int> JobStore::ReadFormat() {
  int format = -1;
  RETURN_IF_ERROR(
      Scan(kFormatKey, [&](absl::string_view key, absl::string_view value) {
        if (key != kFormatKey) return absl::OkStatus();
        if (!absl::SimpleAtoi(value, &format) || format < 0) {
          return absl::DataLossError(absl::StrCat("job store record ", key,
                                                  " is \"", value,
                                                  "\", not a format number"));
        }
        return absl::OkStatus();
      }));
  return format;
}

absl::Status JobStore::Migrate() {
  ASSIGN_OR_RETURN(int format, ReadFormat());
  if (format > kJobFormat) {
    return absl::FailedPreconditionError(
        absl::StrCat("the job store is in format ", format,
                     ", newer than this controller "
                     "reads (",
                     kJobFormat,
                     "); run the shutter-controller that wrote it, "
                     "or a newer one"));
  }
  if (format == kJobFormat) return absl::OkStatus();

  // Format 0: each whole job is rewritten as format-2 records (header
  // last), then its old record removed.
  std::vector<shutter::v1::Snapshot> v0;
  RETURN_IF_ERROR(
      Scan(kV0Prefix, [&](absl::string_view key, absl::string_view value) {
        shutter::v1::Snapshot s;
        RETURN_IF_ERROR(ParseRecord(key, value, &s));
        v0.push_back(std::move(s));
        return absl::OkStatus();
      }));
  for (const auto& s : v0) {
    RETURN_IF_ERROR(PutJob(s));
    RETURN_IF_ERROR(DeleteRecord(absl::StrCat(kV0Prefix, s.snapshot_id())));
  }

  // Format 1: each job with a header is written again in format 2 (tasks,
  // then the header: a crash leaves it complete or absent there), then its
  // old records are removed, header first (a crash leaves headerless
  // tasks, which are removed next time). A job found in both formats was
  // migrated by a run a crash cut short: its format-2 copy is complete
  // (it has a header) and only the old records go.
  std::map<std::string, shutter::v1::Snapshot> v1;
  std::vector<std::string> v1_keys;
  RETURN_IF_ERROR(ReadV1(this, &v1, &v1_keys));
  for (const auto& entry : v1) {
    // (Not a structured binding: C++17 lambdas cannot capture one.)
    const std::string& id = entry.first;
    const shutter::v1::Snapshot& job = entry.second;
    bool migrated = false;
    RETURN_IF_ERROR(Scan(JobKeys::Header(id),
                         [&](absl::string_view key, absl::string_view) {
                           migrated = migrated || key == JobKeys::Header(id);
                           return absl::OkStatus();
                         }));
    if (!migrated) RETURN_IF_ERROR(PutJob(job));
  }
  RETURN_IF_ERROR(DeleteAll(this, v1_keys));
  return PutRecord(kFormatKey, absl::StrCat(kJobFormat));
}

absl::StatusOr<std::vector<shutter::v1::Snapshot>> JobStore::LoadAll() {
  RETURN_IF_ERROR(Migrate());
  // Keys sort as <id>/h < <id>/t/...: a job's header comes first.
  std::map<std::string, shutter::v1::Snapshot> jobs;
  std::set<std::string> unknown;  // a newer controller's kinds
  std::vector<std::string> orphans;
  RETURN_IF_ERROR(
      Scan(kJobPrefix, [&](absl::string_view key, absl::string_view value) {
        std::string id;
        absl::string_view rest;
        RETURN_IF_ERROR(SplitKey(key, kJobPrefix, &id, &rest));
        if (rest == "h") {
          sv1::JobRecord record;
          RETURN_IF_ERROR(ParseRecord(key, value, &record));
          absl::StatusOr<shutter::v1::Snapshot> h = FromJobRecord(record);
          if (absl::IsNotFound(h.status())) {
            spdlog::warn("{}; its records are left as they are",
                         std::string(h.status().message()));
            unknown.insert(id);
            return absl::OkStatus();
          }
          if (!h.ok()) {
            return absl::DataLossError(absl::StrCat(
                "job store record ", key, ": ", h.status().message()));
          }
          jobs[id] = *std::move(h);
          return absl::OkStatus();
        }
        auto it = jobs.find(id);
        if (it == jobs.end()) {
          if (unknown.count(id) == 0) {
            orphans.emplace_back(key);  // a creation cut short
          }
          return absl::OkStatus();
        }
        sv1::TaskRecord record;
        RETURN_IF_ERROR(ParseRecord(key, value, &record));
        *it->second.add_partitions() = FromTaskRecord(record, it->second);
        return absl::OkStatus();
      }));
  RETURN_IF_ERROR(DeleteAll(this, orphans));
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
  // RocksDB's default starts 15 threads at every open to open the table
  // files, however few; the job store has a handful.
  o.max_file_opening_threads = partition::TableOpeningThreads(path);
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
