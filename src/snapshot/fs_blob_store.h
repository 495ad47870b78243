#ifndef SHUTTER_SNAPSHOT_FS_BLOB_STORE_H_
#define SHUTTER_SNAPSHOT_FS_BLOB_STORE_H_

#include <memory>
#include <string>
#include <vector>

#include "snapshot/blob_store.h"

namespace shutter::snapshot {

// A blob store in a local (or mounted) directory: key "a/b" is the file
// "<root>/a/b". A put writes a temporary file under "<root>/.tmp/", fsyncs
// it, then renames it into place (link(2) for if_absent, which fails
// atomically if the key exists) and fsyncs the directory: a crash leaves
// the object complete or absent, plus possibly a temporary file that a
// later Open removes once it is a day old. Hidden names (a segment
// starting with '.') are never keys, so listings skip them.
class FsBlobStore : public BlobStore {
 public:
  // `root` is created (with parents) if `create` is true; otherwise a
  // missing root makes every put fail and every read NOT_FOUND.
  static absl::StatusOr<std::unique_ptr<FsBlobStore>> Open(
      const std::string& root, bool create);

  absl::StatusOr<PutResult> PutFile(const std::string& key,
                                    const std::string& local_path,
                                    const PutOptions& options) override;
  absl::Status Put(const std::string& key, absl::string_view data,
                   const PutOptions& options) override;
  absl::Status Read(const std::string& key, uint64_t offset, uint64_t length,
                    const std::function<absl::Status(absl::string_view)>& sink)
      const override;
  absl::StatusOr<BlobInfo> Head(const std::string& key) const override;
  absl::StatusOr<std::vector<BlobInfo>> List(
      const std::string& prefix) const override;
  absl::Status Delete(const std::string& key) override;
  // A rename (with if_absent: a link, then the old name removed).
  absl::Status Move(const std::string& from, const std::string& to,
                    bool if_absent) override;
  std::string Describe() const override { return root_; }
  std::string LocalPath(const std::string& key) const override {
    return root_ + "/" + key;
  }

 private:
  explicit FsBlobStore(std::string root) : root_(std::move(root)) {}
  // Moves the finished temporary file `tmp` to `key`.
  absl::Status Install(const std::string& tmp, const std::string& key,
                       bool if_absent);
  std::string TempPath() const;
  // After an object left `dir` (a delete, a move): makes that durable,
  // then removes `dir` and its parents while they are empty, up to the
  // root, as an object store has no directories (a concurrent Install
  // recreates what it needs: see there).
  absl::Status LeftDir(std::string dir) const;

  const std::string root_;
};

}  // namespace shutter::snapshot

#endif  // SHUTTER_SNAPSHOT_FS_BLOB_STORE_H_
