#ifndef SHUTTER_CONTROLLER_JOB_STORE_IMPORT_H_
#define SHUTTER_CONTROLLER_JOB_STORE_IMPORT_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "controller/etcd_job_store.h"
#include "controller/job_store.h"

namespace shutter::controller {

struct ImportReport {
  size_t records = 0;
  size_t jobs = 0;
};

// Moves a single controller's embedded store into etcd, once
// (`shutter-controller --import-job-store DIR --job-store etcd://...`):
// the embedded store is brought to the current format, then every record
// is copied, job headers last, so an import cut short leaves only task
// records without a header (ignored and removed at load) and can simply be
// run again. `target` must be unfenced (no controller leads the prefix).
//
// FAILED_PRECONDITION, writing nothing, if the etcd prefix already holds a
// job store (from a finished import, or controllers already running on it)
// unless it is an earlier import of this same kind cut short.
absl::StatusOr<ImportReport> ImportJobStore(JobStore& source,
                                            EtcdJobStore& target);

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_JOB_STORE_IMPORT_H_
