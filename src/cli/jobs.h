#ifndef SHUTTER_CLI_JOBS_H_
#define SHUTTER_CLI_JOBS_H_

// Showing, waiting for, listing and cancelling jobs: what `snapshots` and
// `restores` share (a restore is a job like a snapshot).
#include <cstdint>
#include <string>

#include "cli/common.h"
#include "shutter/v1/admin.pb.h"

namespace shutter::cli {

// Fetches a snapshot: its fields, summary and partitions (every one with
// `all`, else those that need attention: queued, running, waiting,
// failed), paging through GetSnapshot.
grpc::Status FetchSnapshot(Client& c, const std::string& id, bool all,
                           shutter::v1::GetSnapshotResponse* out);
bool IsRestore(const shutter::v1::Snapshot& s);
bool IsVerify(const shutter::v1::Snapshot& s);
// "snapshot", "restore" or "verify"; what a done task is ("published",
// "restored", "verified").
const char* Noun(const shutter::v1::Snapshot& s);
const char* DoneWord(const shutter::v1::Snapshot& s);
// A job as a table (or JSON): fields, summary, partitions.
void PrintSnapshot(const Global& g, const shutter::v1::GetSnapshotResponse& r,
                   bool all);
// A text Gantt chart of where a job's time went: per node, its tasks in
// lanes (one lane per slot in use), each bar from the task's start to its
// end on a common time axis; the node that finished last is marked.
void PrintTimeline(const shutter::v1::Snapshot& s, int width);
// `<noun> show`.
int ShowSnapshot(const Global& g, const std::string& id, bool all,
                 bool timeline = false);
// Shows progress until the job ends, then the job; exit 0 COMMITTED, 3
// PARTIAL, 1 otherwise.
int WaitForSnapshot(const Global& g, Client& c, const std::string& id);
// `<noun> cancel`.
int CancelSnapshot(const Global& g, const std::string& id);
// `<noun> list`: jobs of `type`, newest first.
int ListSnapshots(const Global& g, uint32_t limit,
                  shutter::v1::JobType type = shutter::v1::JOB_TYPE_SNAPSHOT);

// A noun whose commands are list, show and cancel over jobs of one type
// (restores, verifies).
struct JobNoun {
  const char* name;  // "restores"
  const char* help;  // "Restore jobs"
  const char* one;   // "restore"
  shutter::v1::JobType type;
  const char* show_lists;   // what `show` lists besides the summary
  const char* cancel_note;  // what a cancel keeps
};
// Registers `<noun> list [--limit N]`, `<noun> show ID [--all]
// [--timeline]` and `<noun> cancel ID`.
void AddJobCommands(CLI::App& app, Commands& cmds, const JobNoun& noun);

}  // namespace shutter::cli

#endif  // SHUTTER_CLI_JOBS_H_
