#ifndef SHUTTER_TESTS_TESTING_PROCESS_H_
#define SHUTTER_TESTS_TESTING_PROCESS_H_

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace shutter::testing {

// A child process (fork + exec) with stdout and stderr appended to a log
// file. The destructor kills (SIGKILL) and reaps it if still running, and
// the child gets SIGKILL if the test process dies (PR_SET_PDEATHSIG), so a
// failing or crashing test never leaks processes.
class Subprocess {
 public:
  Subprocess() = default;
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  // `env`: "NAME=value" entries added to the child's environment.
  absl::Status Start(const std::vector<std::string>& argv,
                     const std::string& log_path,
                     const std::vector<std::string>& env = {});
  // Sends `sig` and waits up to `timeout` for exit; returns the wait status
  // (as from waitpid) or DEADLINE_EXCEEDED (after which it SIGKILLs).
  absl::StatusOr<int> Stop(int sig, absl::Duration timeout);
  bool running() const { return pid_ > 0; }
  // True (and *status set, the process reaped) if it has exited; does not
  // wait.
  bool Exited(int* status);
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

// Runs argv to completion, capturing stdout (and stderr into *err if set).
// Returns the exit code; DEADLINE_EXCEEDED (child killed) after `timeout`.
absl::StatusOr<int> RunCommand(const std::vector<std::string>& argv,
                               std::string* out, std::string* err,
                               absl::Duration timeout,
                               const std::vector<std::string>& extra_env = {});

// Polls `cond` (every 20 ms) until it is true or `timeout` passes.
bool PollUntil(const std::function<bool()>& cond, absl::Duration timeout);

// Waits for a port file written by a daemon and returns the port. With
// `process` (the daemon), stops waiting if it exits first: UNAVAILABLE.
absl::StatusOr<int> WaitForPortFile(const std::string& path,
                                    absl::Duration timeout,
                                    Subprocess* process = nullptr);

// The contents of `path`, or "" if it cannot be read (e.g. a daemon's log
// that is not written yet).
std::string ReadFileOrEmpty(const std::string& path);

// The names of process `pid`'s threads now (/proc/PID/task/*/comm; empty
// if it has gone).
std::vector<std::string> ThreadNames(pid_t pid);

}  // namespace shutter::testing

#endif  // SHUTTER_TESTS_TESTING_PROCESS_H_
