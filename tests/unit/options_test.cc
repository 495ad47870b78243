#include <fstream>

#include "controller/controller_options.h"
#include "gtest/gtest.h"
#include "node/node_options.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace shutter {
namespace {

using ::shutter::testing::StatusIs;

absl::StatusOr<node::NodeOptions> ParseNode(std::vector<const char*> args) {
  args.insert(args.begin(), "shutter-node");
  bool help;
  std::string text;
  return node::ParseNodeOptions(static_cast<int>(args.size()), args.data(),
                                &help, &text);
}

absl::StatusOr<controller::ControllerOptions> ParseController(
    std::vector<const char*> args) {
  args.insert(args.begin(), "shutter-controller");
  bool help;
  std::string text;
  return controller::ParseControllerOptions(static_cast<int>(args.size()),
                                            args.data(), &help, &text);
}

TEST(NodeOptionsTest, ParsesFlagsAndDefaults) {
  auto o = ParseNode({"--node-id", "n1", "--data-dir", "/d", "--repository",
                      "/r", "--partitions", "0-3,8"});
  ASSERT_OK(o);
  EXPECT_EQ(o->partitions, (std::vector<uint32_t>{0, 1, 2, 3, 8}));
  EXPECT_EQ(o->leader_for.size(), 5u);  // leads everything it hosts
  EXPECT_EQ(o->checkpoint_capacity, 2);
  EXPECT_EQ(o->listen, "127.0.0.1:7100");
}

TEST(NodeOptionsTest, RejectsBadValuesNamingTheOption) {
  const std::vector<const char*> base = {
      "--node-id",    "n1", "--data-dir",   "/d",
      "--repository", "/r", "--partitions", "0-3"};
  auto with = [&](std::vector<const char*> extra) {
    auto a = base;
    a.insert(a.end(), extra.begin(), extra.end());
    return ParseNode(a);
  };
  EXPECT_THAT(
      with({"--checkpoint-capacity", "0"}),
      StatusIs(absl::StatusCode::kInvalidArgument, "--checkpoint-capacity"));
  EXPECT_THAT(
      with({"--checkpoint-capacity", "abc"}),
      StatusIs(absl::StatusCode::kInvalidArgument, "--checkpoint-capacity"));
  EXPECT_THAT(
      with({"--heartbeat-interval-ms", "1"}),
      StatusIs(absl::StatusCode::kInvalidArgument, "--heartbeat-interval-ms"));
  EXPECT_THAT(with({"--leader-for", "9"}),
              StatusIs(absl::StatusCode::kInvalidArgument, "--leader-for"));
  EXPECT_THAT(with({"--log-level", "loud"}),
              StatusIs(absl::StatusCode::kInvalidArgument, "--log-level"));
  EXPECT_THAT(with({"--listen", "nocolon"}),
              StatusIs(absl::StatusCode::kInvalidArgument, "--listen"));
  EXPECT_THAT(with({"--bogus", "1"}),
              StatusIs(absl::StatusCode::kInvalidArgument, "--bogus"));
  EXPECT_THAT(ParseNode({"--node-id", "../x", "--data-dir", "/d",
                         "--repository", "/r", "--partitions", "0"}),
              StatusIs(absl::StatusCode::kInvalidArgument, "--node-id"));
  EXPECT_THAT(ParseNode({"--node-id", "n1", "--data-dir", "/d", "--repository",
                         "/r", "--partitions", "3-1"}),
              StatusIs(absl::StatusCode::kInvalidArgument, "--partitions"));
  EXPECT_THAT(ParseNode({"--node-id", "n1"}),
              StatusIs(absl::StatusCode::kInvalidArgument, "--data-dir"));
}

TEST(NodeOptionsTest, ReadsTomlConfigAndFlagsWin) {
  testing::TempDir dir;
  std::string path = dir.Sub("node.toml");
  std::ofstream(path) << "node-id = \"n7\"\n"
                         "data-dir = \"/data\"\n"
                         "repository = \"/repo\"\n"
                         "partitions = \"0-1\"\n"
                         "checkpoint-capacity = 4\n";
  auto o = ParseNode({"--config", path.c_str(), "--checkpoint-capacity", "3"});
  ASSERT_OK(o);
  EXPECT_EQ(o->node_id, "n7");
  EXPECT_EQ(o->data_dir, "/data");
  EXPECT_EQ(o->checkpoint_capacity, 3);
}

TEST(NodeOptionsTest, ConfigErrorsNameTheKey) {
  testing::TempDir dir;
  std::string path = dir.Sub("node.toml");
  std::ofstream(path)
      << "node-id = \"n7\"\ndata-dir = \"/d\"\nrepository = "
         "\"/r\"\npartitions = \"0\"\ncheckpoint-capacity = 0\n";
  EXPECT_THAT(
      ParseNode({"--config", path.c_str()}),
      StatusIs(absl::StatusCode::kInvalidArgument, "checkpoint-capacity"));
  std::ofstream(path) << "node-id = \"n7\"\nunknown-key = 1\n";
  EXPECT_THAT(ParseNode({"--config", path.c_str()}),
              StatusIs(absl::StatusCode::kInvalidArgument, "unknown-key"));
}

TEST(ControllerOptionsTest, ValidatesRangesAndRelations) {
  ASSERT_OK(ParseController({"--data-dir", "/d", "--repository", "/r"}));
  EXPECT_THAT(
      ParseController({"--data-dir", "/d", "--repository", "/r",
                       "--dispatch-threads", "0"}),
      StatusIs(absl::StatusCode::kInvalidArgument, "--dispatch-threads"));
  EXPECT_THAT(
      ParseController({"--data-dir", "/d", "--repository", "/r",
                       "--node-dead-after-ms", "500", "--heartbeat-interval-ms",
                       "1000"}),
      StatusIs(absl::StatusCode::kInvalidArgument, "--node-dead-after-ms"));
  EXPECT_THAT(ParseController({"--repository", "/r"}),
              StatusIs(absl::StatusCode::kInvalidArgument, "--data-dir"));
}

}  // namespace
}  // namespace shutter
