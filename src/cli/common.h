#ifndef SHUTTER_CLI_COMMON_H_
#define SHUTTER_CLI_COMMON_H_

// What every shutterctl command shares: the global flags, the admin API
// client, errors (one line on stderr, an exit code) and JSON output.
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/rpc.h"
#include "common/security.h"
#include "google/protobuf/message.h"
#include "shutter/v1/admin.grpc.pb.h"

namespace shutter::cli {

struct Global {
  std::string controller = "127.0.0.1:7000";
  std::string output = "table";
  int timeout_ms = 30000;
  // With --wait: stop waiting after this many seconds (exit 4; the job
  // goes on). 0: wait for the job's end.
  int wait_timeout_s = 0;
  // TLS when a CA is given (common/security.h); the bearer token, if any,
  // goes with every admin call.
  TlsOptions tls;
  std::string token_file;
  std::string token;
};

// True when the admin channel uses TLS (for the hint on connection
// failures).
extern bool g_tls_used;

// Everything printed that came from the server or a user is passed
// through EscapeForTerminal: a label or an error message cannot move the
// cursor, change colours or break a table row. Prints "shutterctl: <msg>"
// and returns `code`.
int Fail(absl::string_view msg, int code = 1);
// An RPC's failure: what was being done, the code, the message, a hint.
int FailRpc(const grpc::Status& s, absl::string_view what);

// A token file holds the token on its first line that is not blank or a
// comment, alone or after a role ("operator <token>", the controller's
// own format).
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

// A message as JSON with the proto's field names and every field.
std::string Json(const google::protobuf::Message& m);
// A fresh idempotency key for a call that creates something (128 random
// bits, hex): the call can be retried on another controller safely.
std::string NewRequestId();
// "PUBLISHED" for PARTITION_TASK_STATE_PUBLISHED.
std::string TaskStateName(shutter::v1::PartitionTaskState s);
// "42%", or "-" for a negative fraction (unknown).
std::string Percent(double fraction);

// The admin API of the controller, each call with the deadline and token
// of the global flags. With several controllers (--controller a,b,c) a
// call goes to the one believed to lead; a follower's UNAVAILABLE answer
// names the leader (trailer "shutter-leader"), which is asked at once, and
// an unreachable controller makes it ask the next, all within the
// deadline.
class Client {
 public:
  explicit Client(const Global& g);
  template <typename Req, typename Resp, typename Fn>
  grpc::Status Call(Fn fn, const Req& req, Resp* resp) {
    const auto deadline = std::chrono::system_clock::now() +
                          std::chrono::milliseconds(g_.timeout_ms);
    grpc::Status s;
    for (size_t attempt = 0; attempt < 2 * addresses_.size() + 4; ++attempt) {
      grpc::ClientContext ctx;
      ctx.set_deadline(deadline);
      if (!g_.token.empty()) {
        ctx.AddMetadata("authorization", "Bearer " + g_.token);
      }
      s = ((*Stub(current_)).*fn)(&ctx, req, resp);
      if (s.error_code() != grpc::StatusCode::UNAVAILABLE ||
          addresses_.size() < 2 ||
          std::chrono::system_clock::now() >= deadline) {
        return s;
      }
      if (!Next(ctx)) {
        // No leader named (an election or a take-over under way): give it
        // a moment before asking again.
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
    }
    return s;
  }
  shutter::v1::AdminService::Stub* stub() { return Stub(current_); }
  // The controller asked last.
  const std::string& address() const { return current_; }

 private:
  shutter::v1::AdminService::Stub* Stub(const std::string& address);
  // After an UNAVAILABLE answer: the leader it names (true), else the
  // next one (false).
  bool Next(const grpc::ClientContext& ctx);

  const Global& g_;
  std::vector<std::string> addresses_;
  std::string current_;
  std::map<std::string, std::unique_ptr<shutter::v1::AdminService::Stub>>
      stubs_;
};

// Where a noun's commands register (Add*Commands in the noun's file): the
// global flags, the exit code the chosen command sets, and storage for
// the commands' flags (kept until the command has run).
struct Commands {
  Global& g;
  int& rc;
  std::vector<std::shared_ptr<void>> kept;

  template <typename T>
  T& Keep() {
    auto p = std::make_shared<T>();
    kept.push_back(p);
    return *p;
  }
};

// One function per noun: `shutterctl <noun> <verb>` (nodes.cc, ...).
void AddNodesCommands(CLI::App& app, Commands& cmds);
void AddPartitionsCommands(CLI::App& app, Commands& cmds);
void AddSnapshotsCommands(CLI::App& app, Commands& cmds);
void AddRestoresCommands(CLI::App& app, Commands& cmds);
void AddVerifiesCommands(CLI::App& app, Commands& cmds);
void AddGcsCommands(CLI::App& app, Commands& cmds);
void AddDeletesCommands(CLI::App& app, Commands& cmds);
void AddRepositoryCommands(CLI::App& app, Commands& cmds);
void AddSchedulesCommands(CLI::App& app, Commands& cmds);
void AddDataCommands(CLI::App& app, Commands& cmds);
void AddControllersCommands(CLI::App& app, Commands& cmds);

}  // namespace shutter::cli

#endif  // SHUTTER_CLI_COMMON_H_
