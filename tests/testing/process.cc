#include "testing/process.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/fs.h"

extern char** environ;

namespace shutter::testing {
namespace {

std::vector<char*> CArgv(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  for (const auto& a : argv) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

// Waits for `pid` up to `timeout`; returns the status or nullopt.
bool WaitPid(pid_t pid, absl::Duration timeout, int* status) {
  absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid) return true;
    if (r < 0) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
}

}  // namespace

std::string ReadFileOrEmpty(const std::string& path) {
  return fs::ReadFile(path).value_or("");
}

Subprocess::~Subprocess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    int st;
    waitpid(pid_, &st, 0);
  }
}

absl::Status Subprocess::Start(const std::vector<std::string>& argv,
                               const std::string& log_path,
                               const std::vector<std::string>& env) {
  auto args = CArgv(argv);
  // Copies the child keeps (putenv keeps the pointer).
  std::vector<std::string> env_copy = env;
  int log_fd =
      open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return absl::InternalError(
        absl::StrCat("open ", log_path, ": ", strerror(errno)));
  }
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    close(log_fd);
    return absl::InternalError(absl::StrCat("fork: ", strerror(errno)));
  }
  if (pid == 0) {
    // Child: die with the test process even if it crashes, so a failing
    // test never leaves daemons behind.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    for (std::string& e : env_copy) putenv(e.data());
    execv(args[0], args.data());
    _exit(127);
  }
  close(log_fd);
  pid_ = pid;
  return absl::OkStatus();
}

bool Subprocess::Exited(int* status) {
  if (pid_ <= 0) return false;
  if (waitpid(pid_, status, WNOHANG) == pid_) {
    pid_ = -1;
    return true;
  }
  return false;
}

absl::StatusOr<int> Subprocess::Stop(int sig, absl::Duration timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("not running");
  kill(pid_, sig);
  int st = 0;
  if (!WaitPid(pid_, timeout, &st)) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &st, 0);
    pid_ = -1;
    return absl::DeadlineExceededError("process did not exit in time");
  }
  pid_ = -1;
  return st;
}

absl::StatusOr<int> RunCommand(const std::vector<std::string>& argv,
                               std::string* out, std::string* err,
                               absl::Duration timeout,
                               const std::vector<std::string>& extra_env) {
  char out_tmpl[] = "/tmp/shutter-cmd-out-XXXXXX";
  char err_tmpl[] = "/tmp/shutter-cmd-err-XXXXXX";
  int ofd = mkstemp(out_tmpl);
  int efd = mkstemp(err_tmpl);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, ofd, 1);
  posix_spawn_file_actions_adddup2(&fa, efd, 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  std::vector<std::string> env_strs;
  for (char** e = environ; *e; ++e) env_strs.push_back(*e);
  for (const auto& e : extra_env) env_strs.push_back(e);
  auto envp = CArgv(env_strs);
  auto args = CArgv(argv);
  pid_t pid;
  int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  close(ofd);
  close(efd);
  auto cleanup = [&] {
    if (out) *out = ReadFileOrEmpty(out_tmpl);
    if (err) *err = ReadFileOrEmpty(err_tmpl);
    unlink(out_tmpl);
    unlink(err_tmpl);
  };
  if (rc != 0) {
    cleanup();
    return absl::InternalError(
        absl::StrCat("spawn ", argv[0], ": ", strerror(rc)));
  }
  int st = 0;
  if (!WaitPid(pid, timeout, &st)) {
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    cleanup();
    return absl::DeadlineExceededError(absl::StrCat(argv[0], " timed out"));
  }
  cleanup();
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  return 128 + WTERMSIG(st);
}

bool PollUntil(const std::function<bool()>& cond, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    if (cond()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

absl::StatusOr<int> WaitForPortFile(const std::string& path,
                                    absl::Duration timeout,
                                    Subprocess* process) {
  int port = 0;
  bool exited = false;
  bool ok = PollUntil(
      [&] {
        std::string s = ReadFileOrEmpty(path);
        if (absl::SimpleAtoi(absl::StripAsciiWhitespace(s), &port) &&
            port > 0) {
          return true;
        }
        int status = 0;
        exited = process != nullptr && process->Exited(&status);
        return exited;
      },
      timeout);
  if (exited) return absl::UnavailableError("exited before writing " + path);
  if (!ok) return absl::DeadlineExceededError("no port file " + path);
  return port;
}

std::vector<std::string> ThreadNames(pid_t pid) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& t : std::filesystem::directory_iterator(
           absl::StrCat("/proc/", pid, "/task"), ec)) {
    std::ifstream comm(t.path() / "comm");
    std::string name;
    if (std::getline(comm, name)) out.push_back(name);
  }
  return out;
}

}  // namespace shutter::testing
