#ifndef SHUTTER_TESTS_TESTING_TEMP_DIR_H_
#define SHUTTER_TESTS_TESTING_TEMP_DIR_H_

#include <stdlib.h>

#include <filesystem>
#include <string>

namespace shutter::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents when
// the object goes away.
class TempDir {
 public:
  TempDir() : TempDir(DefaultBase()) {}
  // A fresh directory under `base` instead.
  explicit TempDir(const std::string& base) {
    std::string tmpl = base + "/shutter-test-XXXXXX";
    char* p = mkdtemp(tmpl.data());
    path_ = p ? p : "";
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  static std::string DefaultBase() {
    const char* base = getenv("TMPDIR");
    return base && *base ? base : "/tmp";
  }
  std::string path_;
};

}  // namespace shutter::testing

#endif  // SHUTTER_TESTS_TESTING_TEMP_DIR_H_
