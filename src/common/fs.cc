#include "common/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/rate_limiter.h"
#include "common/status_macros.h"

namespace shutter::fs {

absl::Status ErrnoStatus(absl::string_view what, absl::string_view path) {
  int e = errno;
  return absl::Status(absl::ErrnoToStatusCode(e),
                      absl::StrCat(what, " ", path, ": ", strerror(e)));
}

namespace {

// The buffer a whole-file read goes through: the file's size up to 1 MiB
// (most files of a checkpoint - CURRENT, OPTIONS, MANIFEST, small SSTs -
// are far smaller), at least 4 KiB, and not zero-filled: a 1 MiB zeroed
// vector per file was an mmap, 256 page faults and a memset per file.
constexpr size_t kMaxIoBuffer = size_t{1} << 20;
std::unique_ptr<char[]> IoBuffer(int fd, size_t* size) {
  struct stat st;
  uint64_t want = kMaxIoBuffer;
  if (::fstat(fd, &st) == 0 && st.st_size >= 0) {
    want = std::clamp<uint64_t>(static_cast<uint64_t>(st.st_size) + 1,
                                uint64_t{4096}, kMaxIoBuffer);
  }
  *size = static_cast<size_t>(want);
  return std::unique_ptr<char[]>(new char[*size]);
}

// Closes a descriptor on scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  // Closes now, reporting errors (a deferred write error can surface here).
  int Close() {
    int r = ::close(fd_);
    fd_ = -1;
    return r;
  }

 private:
  int fd_;
};

// Starts writeback of each MiB as soon as it is written and waits for the
// one before it, so a large file never piles up more than ~2 MiB of dirty
// pages. Otherwise the final fsync (or the kernel's writeback) sends it
// all at once, and on ext4 (data=ordered) every other process's fsync
// waits behind it in the same journal commit: a snapshot's copy would stall
// the partitions' own synced writes for as long as the burst takes.
class RangeSyncer {
 public:
  explicit RangeSyncer(int fd) : fd_(fd) {}
  void Wrote(uint64_t n) {
    written_ += n;
    constexpr uint64_t kStep = 1 << 20;
    while (written_ - started_ >= kStep) {
      if (started_ >= kStep) {
        // Wait for the previous step (started a step ago) to be on disk.
        ::sync_file_range(fd_, static_cast<off_t>(started_ - kStep), kStep,
                          SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                              SYNC_FILE_RANGE_WAIT_AFTER);
      }
      ::sync_file_range(fd_, static_cast<off_t>(started_), kStep,
                        SYNC_FILE_RANGE_WRITE);
      started_ += kStep;
    }
  }

 private:
  const int fd_;
  uint64_t written_ = 0;
  uint64_t started_ = 0;
};

absl::Status WriteAll(int fd, const char* p, size_t n,
                      const std::string& path) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("write", path);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return absl::OkStatus();
}
}  // namespace

absl::Status SyncDir(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus("open dir", dir);
  if (::fsync(fd.get()) != 0) return ErrnoStatus("fsync dir", dir);
  return absl::OkStatus();
}

absl::Status SyncFile(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus("open", path);
  if (::fsync(fd.get()) != 0) return ErrnoStatus("fsync", path);
  return absl::OkStatus();
}

std::string Dirname(const std::string& path) {
  std::filesystem::path p(path);
  std::string parent = p.parent_path().string();
  return parent.empty() ? "." : parent;
}

absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view contents) {
  const std::string tmp = path + ".tmp";
  absl::Status s = [&]() -> absl::Status {
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (fd.get() < 0) return ErrnoStatus("create", tmp);
    absl::Status w = WriteAll(fd.get(), contents.data(), contents.size(), tmp);
    if (!w.ok()) return w;
    if (::fsync(fd.get()) != 0) return ErrnoStatus("fsync", tmp);
    if (fd.Close() != 0) return ErrnoStatus("close", tmp);
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      return ErrnoStatus("rename to " + path, tmp);
    }
    return SyncDir(Dirname(path));
  }();
  if (!s.ok()) ::unlink(tmp.c_str());
  return s;
}

absl::Status CreateFileExclusively(const std::string& path,
                                   absl::string_view contents) {
  const std::string tmp =
      absl::StrFormat("%s.tmp-%d-%x", path, static_cast<int>(getpid()),
                      reinterpret_cast<uintptr_t>(&tmp));
  absl::Status s = [&]() -> absl::Status {
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (fd.get() < 0) return ErrnoStatus("create", tmp);
    RETURN_IF_ERROR(WriteAll(fd.get(), contents.data(), contents.size(), tmp));
    if (::fsync(fd.get()) != 0) return ErrnoStatus("fsync", tmp);
    if (fd.Close() != 0) return ErrnoStatus("close", tmp);
    // link() fails if `path` exists: the first writer wins.
    if (::link(tmp.c_str(), path.c_str()) != 0) {
      if (errno == EEXIST) {
        return absl::AlreadyExistsError(absl::StrCat(path, " already exists"));
      }
      return ErrnoStatus("link to " + path, tmp);
    }
    return absl::OkStatus();
  }();
  ::unlink(tmp.c_str());
  if (!s.ok()) return s;
  return SyncDir(Dirname(path));
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus("open", path);
  std::string out;
  char buf[64 * 1024];
  for (;;) {
    ssize_t r = ::read(fd.get(), buf, sizeof(buf));
    if (r < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("read", path);
    }
    if (r == 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  return out;
}

absl::Status CreateDirs(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::Status(absl::ErrnoToStatusCode(ec.value()),
                        absl::StrCat("mkdir -p ", dir, ": ", ec.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<DirectoryLock> DirectoryLock::Acquire(
    const std::string& dir, absl::string_view name, absl::string_view program) {
  const std::string path = absl::StrCat(dir, "/", name);
  // A new open file description each time, so that a second lock in this
  // process conflicts too (flock locks belong to the description).
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("open", path);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    std::string holder;
    char buf[32] = {};
    const ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
    ::close(fd);
    if (err != EWOULDBLOCK) {
      errno = err;
      return ErrnoStatus("lock", path);
    }
    if (n > 0) {
      holder = absl::StrCat(" (pid ", absl::StripAsciiWhitespace(buf), ")");
    }
    return absl::FailedPreconditionError(absl::StrCat(
        dir, " is in use by another process", holder, ", which holds ", path,
        ": is another ", program, " running on it?"));
  }
  // Ours: say who holds it. (Best effort: the lock is what counts.)
  const std::string pid = absl::StrCat(::getpid(), "\n");
  // (A failure only makes the refusal's message less precise.)
  if (::ftruncate(fd, 0) == 0) (void)!::pwrite(fd, pid.data(), pid.size(), 0);
  return DirectoryLock(fd);
}

DirectoryLock& DirectoryLock::operator=(DirectoryLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

DirectoryLock::~DirectoryLock() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status CheckWritableDir(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("empty path");
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0 && !S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " exists and is not a directory"));
  }
  RETURN_IF_ERROR(CreateDirs(dir));
  const std::string probe =
      absl::StrFormat("%s/.write-probe-%d", dir, static_cast<int>(getpid()));
  int fd =
      ::open(probe.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus("cannot create a file in", dir);
  bool ok = ::write(fd, "x", 1) == 1 && ::fsync(fd) == 0;
  absl::Status s = ok ? absl::OkStatus() : ErrnoStatus("cannot write in", dir);
  ::close(fd);
  ::unlink(probe.c_str());
  return s;
}

absl::Status RemoveAll(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) {
    return absl::Status(absl::ErrnoToStatusCode(ec.value()),
                        absl::StrCat("remove ", path, ": ", ec.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> FreeBytes(const std::string& path) {
  struct statvfs st;
  if (::statvfs(path.c_str(), &st) != 0) return ErrnoStatus("statvfs", path);
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr);
}

Sha256::~Sha256() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void Sha256::Update(const void* data, size_t n) {
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data, n);
}

std::string Sha256::HexDigest() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), md, &len);
  std::string hex;
  hex.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i)
    absl::StrAppendFormat(&hex, "%02x", md[i]);
  return hex;
}

absl::StatusOr<std::string> Sha256File(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus("open", path);
  Sha256 h;
  size_t buf_size = 0;
  std::unique_ptr<char[]> buf = IoBuffer(fd.get(), &buf_size);
  for (;;) {
    ssize_t r = ::read(fd.get(), buf.get(), buf_size);
    if (r < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("read", path);
    }
    if (r == 0) break;
    h.Update(buf.get(), static_cast<size_t>(r));
  }
  return h.HexDigest();
}

absl::StatusOr<CopyResult> CopyFileSynced(
    const std::string& src, const std::string& dst,
    const std::vector<RateLimiter*>& limiters) {
  Fd in(::open(src.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.get() < 0) return ErrnoStatus("open", src);
  Fd out(::open(dst.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (out.get() < 0) return ErrnoStatus("create", dst);
  auto result = [&]() -> absl::StatusOr<CopyResult> {
    CopyResult r;
    Sha256 h;
    RangeSyncer syncer(out.get());
    size_t buf_size = 0;
    std::unique_ptr<char[]> buf = IoBuffer(in.get(), &buf_size);
    for (;;) {
      ssize_t n = ::read(in.get(), buf.get(), buf_size);
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus("read", src);
      }
      if (n == 0) break;
      h.Update(buf.get(), static_cast<size_t>(n));
      for (RateLimiter* limiter : limiters) {
        if (limiter != nullptr) limiter->Request(static_cast<uint64_t>(n));
      }
      absl::Status w =
          WriteAll(out.get(), buf.get(), static_cast<size_t>(n), dst);
      if (!w.ok()) return w;
      syncer.Wrote(static_cast<uint64_t>(n));
      r.size_bytes += static_cast<uint64_t>(n);
    }
    if (::fsync(out.get()) != 0) return ErrnoStatus("fsync", dst);
    if (out.Close() != 0) return ErrnoStatus("close", dst);
    r.sha256 = h.HexDigest();
    return r;
  }();
  if (!result.ok()) ::unlink(dst.c_str());
  return result;
}

absl::Status ReadFileChunks(
    const std::string& path, uint64_t offset, uint64_t length,
    const std::function<absl::Status(absl::string_view)>& sink, size_t chunk) {
  Fd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.get() < 0) return ErrnoStatus("open", path);
  struct stat st;
  if (::fstat(in.get(), &st) != 0) return ErrnoStatus("stat", path);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (offset > size) {
    return absl::OutOfRangeError(absl::StrCat("read of ", path, " at offset ",
                                              offset, " past its end (", size,
                                              " bytes)"));
  }
  uint64_t left = std::min(length, size - offset);
  const size_t buf_size = static_cast<size_t>(
      std::min<uint64_t>(chunk, std::max<uint64_t>(left, 1)));
  std::unique_ptr<char[]> buf(new char[buf_size]);  // not zero-filled
  while (left > 0) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(left, buf_size));
    ssize_t n = ::pread(in.get(), buf.get(), want, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("read", path);
    }
    if (n == 0) break;  // truncated under us
    RETURN_IF_ERROR(sink(absl::string_view(buf.get(), static_cast<size_t>(n))));
    offset += static_cast<uint64_t>(n);
    left -= static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

absl::Status WriteFileSynced(
    const std::string& path,
    const std::function<absl::Status(
        const std::function<absl::Status(absl::string_view)>& append)>& fill) {
  Fd out(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (out.get() < 0) return ErrnoStatus("create", path);
  RangeSyncer syncer(out.get());
  absl::Status s = fill([&](absl::string_view data) {
    RETURN_IF_ERROR(WriteAll(out.get(), data.data(), data.size(), path));
    syncer.Wrote(data.size());
    return absl::OkStatus();
  });
  if (s.ok() && ::fsync(out.get()) != 0) s = ErrnoStatus("fsync", path);
  if (s.ok() && out.Close() != 0) s = ErrnoStatus("close", path);
  if (!s.ok()) ::unlink(path.c_str());
  return s;
}

}  // namespace shutter::fs
