#include "controller/job_store_import.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace shutter::controller {

namespace {
// Present while an import runs; an import finds it and resumes.
constexpr char kImporting[] = "meta/import_in_progress";

bool IsJobHeader(absl::string_view key) {
  return absl::StartsWith(key, "v2/job/") && absl::EndsWith(key, "/h");
}
}  // namespace

absl::StatusOr<ImportReport> ImportJobStore(JobStore& source,
                                            EtcdJobStore& target) {
  bool resuming = false;
  bool occupied = false;
  RETURN_IF_ERROR(
      target.Scan("", [&](absl::string_view key, absl::string_view) {
        if (key == kImporting) {
          resuming = true;
        } else {
          occupied = true;
        }
        return absl::OkStatus();
      }));
  if (occupied && !resuming) {
    return absl::FailedPreconditionError(
        absl::StrCat("etcd already holds a job store at ", target.EtcdKey(""),
                     ": nothing imported (import into "
                     "an empty prefix, with no controller running on it)"));
  }
  RETURN_IF_ERROR(source.Migrate());
  RETURN_IF_ERROR(target.PutRecord(kImporting, "1"));
  std::vector<std::pair<std::string, std::string>> headers;
  ImportReport report;
  JobStoreBatch batch;
  auto flush = [&]() -> absl::Status {
    if (batch.size() == 0) return absl::OkStatus();
    absl::Status s = target.Write(batch);
    batch = JobStoreBatch();
    return s;
  };
  RETURN_IF_ERROR(
      source.Scan("", [&](absl::string_view key, absl::string_view value) {
        ++report.records;
        if (IsJobHeader(key)) {
          headers.emplace_back(std::string(key), std::string(value));
          return absl::OkStatus();
        }
        batch.puts.emplace_back(std::string(key), std::string(value));
        if (batch.size() == target.MaxBatchRecords()) return flush();
        return absl::OkStatus();
      }));
  RETURN_IF_ERROR(flush());
  // Headers last: each job becomes visible whole.
  for (auto& [k, v] : headers) {
    batch.puts.emplace_back(std::move(k), std::move(v));
    ++report.jobs;
    if (batch.size() == target.MaxBatchRecords()) RETURN_IF_ERROR(flush());
  }
  RETURN_IF_ERROR(flush());
  RETURN_IF_ERROR(target.DeleteRecord(kImporting));
  return report;
}

}  // namespace shutter::controller
