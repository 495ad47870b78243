// The node's record of the newest controller term: refuses older terms,
// and keeps the newest one across a restart of the node.
#include "node/controller_term.h"

#include <fstream>

#include "common/error_reason.h"
#include "common/fs.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace shutter::node {
namespace {

using ::shutter::testing::StatusIs;

TEST(ControllerTermTest, OlderTermsAreRefusedWithTheirReason) {
  ControllerTerm term;
  EXPECT_OK(term.Admit(0, "CreateCheckpoint"));  // a single controller
  EXPECT_OK(term.Admit(7, "CreateCheckpoint"));
  term.Observe(9);  // a heartbeat answer of the next leader
  absl::Status old = term.Admit(7, "CreateCheckpoint");
  EXPECT_THAT(old, StatusIs(absl::StatusCode::kFailedPrecondition,
                            "older than term 9"));
  EXPECT_EQ(GetErrorReason(old), ErrorReason::kStaleController);
  EXPECT_OK(term.Admit(9, "CreateCheckpoint"));
  EXPECT_EQ(term.newest(), 9u);
}

TEST(ControllerTermTest, TheNewestTermSurvivesARestart) {
  testing::TempDir tmp;
  const std::string path = tmp.Sub("controller_term");
  {
    auto term = ControllerTerm::Open(path);
    ASSERT_OK(term);
    EXPECT_EQ((*term)->newest(), 0u);
    EXPECT_FALSE(fs::ReadFile(path).ok());  // nothing seen, nothing written
    EXPECT_OK((*term)->Admit(12, "CreateCheckpoint"));
    (*term)->Observe(5);  // older: not written over the newer
  }
  EXPECT_EQ(*fs::ReadFile(path), "12\n");
  // Restarted: the deposed leader of term 11 is refused at its first
  // request, before any heartbeat answer.
  auto again = ControllerTerm::Open(path);
  ASSERT_OK(again);
  EXPECT_EQ((*again)->newest(), 12u);
  EXPECT_THAT((*again)->Admit(11, "RestorePartition"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "RestorePartition refused"));
  (*again)->Observe(13);
  EXPECT_EQ(*fs::ReadFile(path), "13\n");
  // Not a term: refused loudly rather than read as 0.
  std::ofstream(path, std::ios::trunc) << "garbage";
  EXPECT_THAT(ControllerTerm::Open(path),
              StatusIs(absl::StatusCode::kDataLoss, "remove it"));
}

}  // namespace
}  // namespace shutter::node
