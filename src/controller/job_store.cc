#include "controller/job_store.h"

#include "absl/strings/str_cat.h"
#include "rocksdb/db.h"

namespace shutter::controller {
namespace {
constexpr char kPrefix[] = "snapshot/";

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  absl::StatusCode code = absl::StatusCode::kInternal;
  if (s.IsIOError() && s.subcode() == rocksdb::Status::kNoSpace) {
    code = absl::StatusCode::kResourceExhausted;
  }
  return absl::Status(code, absl::StrCat(what, ": ", s.ToString()));
}
}  // namespace

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

absl::Status RocksDbJobStore::Put(const shutter::v1::Snapshot& snapshot) {
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return FromRocks(db_->Put(wo, absl::StrCat(kPrefix, snapshot.snapshot_id()),
                            snapshot.SerializeAsString()),
                   "persist snapshot record");
}

absl::StatusOr<std::vector<shutter::v1::Snapshot>> RocksDbJobStore::LoadAll() {
  std::vector<shutter::v1::Snapshot> out;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(kPrefix); it->Valid() && it->key().starts_with(kPrefix);
       it->Next()) {
    shutter::v1::Snapshot s;
    if (!s.ParseFromArray(it->value().data(),
                          static_cast<int>(it->value().size()))) {
      return absl::DataLossError(absl::StrCat(
          "job store record ", it->key().ToString(), " does not parse"));
    }
    out.push_back(std::move(s));
  }
  absl::Status s = FromRocks(it->status(), "scan job store");
  if (!s.ok()) return s;
  return out;
}

}  // namespace shutter::controller
