#include "common/fs.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace shutter::fs {
namespace {

// One holder at a time, even within a process (each Acquire is a new open
// file description); the message names the holder's pid and the file; the
// lock is free again once its holder is gone.
TEST(DirectoryLockTest, OneHolderAtATimeNamedInTheRefusal) {
  testing::TempDir tmp;
  {
    auto first =
        DirectoryLock::Acquire(tmp.path(), "node.lock", "shutter-node");
    ASSERT_OK(first);
    auto second =
        DirectoryLock::Acquire(tmp.path(), "node.lock", "shutter-node");
    ASSERT_FALSE(second.ok());
    EXPECT_TRUE(absl::IsFailedPrecondition(second.status())) << second.status();
    EXPECT_TRUE(absl::StrContains(second.status().message(),
                                  absl::StrCat("(pid ", getpid(), ")")))
        << second.status();
    EXPECT_TRUE(
        absl::StrContains(second.status().message(), tmp.Sub("node.lock")))
        << second.status();
    // Another name is another lock.
    EXPECT_OK(DirectoryLock::Acquire(tmp.path(), "controller.lock",
                                     "shutter-controller")
                  .status());
    // Moved, it is still held.
    DirectoryLock moved = *std::move(first);
    EXPECT_FALSE(
        DirectoryLock::Acquire(tmp.path(), "node.lock", "shutter-node").ok());
  }
  EXPECT_OK(
      DirectoryLock::Acquire(tmp.path(), "node.lock", "shutter-node").status());
  // A directory that does not exist is an error naming the file.
  auto missing =
      DirectoryLock::Acquire(tmp.Sub("no/such"), "node.lock", "shutter-node");
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "no/such"))
      << missing.status();
}

}  // namespace
}  // namespace shutter::fs
