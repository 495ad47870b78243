#include "snapshot/file_hash_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "spdlog/spdlog.h"

namespace shutter::snapshot {

absl::StatusOr<std::unique_ptr<FileHashCache>> FileHashCache::Open(
    const std::string& path, size_t max_entries) {
  std::unique_ptr<FileHashCache> cache(new FileHashCache(path, max_entries));
  if (path.empty()) return cache;
  bool reset = false;
  if (fs::Exists(path)) {
    auto text = fs::ReadFile(path);
    if (text.ok()) {
      absl::MutexLock l(&cache->mu_);
      for (absl::string_view line : absl::StrSplit(*text, '\n')) {
        std::pair<absl::string_view, absl::string_view> kv =
            absl::StrSplit(line, absl::MaxSplits(' ', 1));
        if (kv.first.empty() || kv.second.size() != 64) continue;
        cache->entries_[kv.first] = std::string(kv.second);
      }
      reset = cache->entries_.size() > max_entries;
      if (reset) cache->entries_.clear();
    } else {
      spdlog::warn("hash cache {} unreadable, starting empty: {}", path,
                   text.status().ToString());
      reset = true;
    }
  }
  int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC;
  if (reset) flags |= O_TRUNC;
  int fd = ::open(path.c_str(), flags, 0644);
  if (fd < 0) return fs::ErrnoStatus("open hash cache", path);
  absl::MutexLock l(&cache->mu_);
  cache->fd_ = fd;
  return cache;
}

FileHashCache::~FileHashCache() {
  absl::MutexLock l(&mu_);
  if (fd_ >= 0) ::close(fd_);
}

std::optional<std::string> FileHashCache::Identity(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return std::nullopt;
  }
  const size_t slash = path.rfind('/');
  const std::string name =
      slash == std::string::npos ? path : path.substr(slash + 1);
  return absl::StrCat(st.st_dev, ":", st.st_ino, ":", st.st_size, ":",
                      st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec, ":", name);
}

std::optional<std::string> FileHashCache::Lookup(const std::string& path) {
  std::optional<std::string> id = Identity(path);
  if (!id) return std::nullopt;
  absl::MutexLock l(&mu_);
  auto it = entries_.find(*id);
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

void FileHashCache::Insert(const std::string& path, const std::string& sha256) {
  std::optional<std::string> id = Identity(path);
  if (!id || id->find(' ') != std::string::npos || sha256.size() != 64) {
    return;
  }
  absl::MutexLock l(&mu_);
  if (entries_.size() >= max_entries_) {
    entries_.clear();
    if (fd_ >= 0 && ::ftruncate(fd_, 0) != 0) {
      spdlog::warn("cannot truncate hash cache {}", path_);
    }
  }
  if (!entries_.insert_or_assign(*id, sha256).second) return;
  if (fd_ >= 0) {
    const std::string line = absl::StrCat(*id, " ", sha256, "\n");
    // One write(2) per line with O_APPEND: lines never interleave; a crash
    // may tear the last one, which Open skips.
    if (::write(fd_, line.data(), line.size()) !=
        static_cast<ssize_t>(line.size())) {
      spdlog::warn("cannot append to hash cache {}", path_);
    }
  }
}

size_t FileHashCache::size() const {
  absl::MutexLock l(&mu_);
  return entries_.size();
}

}  // namespace shutter::snapshot
