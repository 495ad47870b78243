#include "node/node_instance.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/error_reason.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "spdlog/spdlog.h"

namespace shutter::node {

namespace {
constexpr char kFileName[] = "NODE_INSTANCE";
}  // namespace

absl::StatusOr<NodeInstanceInfo> StartNodeInstance(const std::string& data_dir,
                                                   const std::string& node_id) {
  const std::string path = absl::StrCat(data_dir, "/", kFileName);
  NodeInstanceInfo info;
  if (fs::Exists(path)) {
    ASSIGN_OR_RETURN(std::string text, fs::ReadFile(path));
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      if (line.empty()) continue;
      std::pair<absl::string_view, absl::string_view> kv =
          absl::StrSplit(line, absl::MaxSplits('=', 1));
      if (kv.first == "node_id") {
        info.node_id = std::string(kv.second);
      } else if (kv.first == "instance_id") {
        info.instance_id = std::string(kv.second);
      } else if (kv.first == "start_count") {
        if (!absl::SimpleAtoi(kv.second, &info.start_count)) {
          info.start_count = 0;
          info.instance_id.clear();  // reported as malformed below
        }
      }
    }
    if (info.node_id.empty() || !IsLowerHex(info.instance_id, 32)) {
      return absl::DataLossError(
          absl::StrCat(path,
                       " is malformed; it must hold node_id=, "
                       "instance_id= (32 hex digits) and start_count="));
    }
    if (info.node_id != node_id) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the data directory ", data_dir, " belongs to node ",
          Quote(info.node_id), ", not ", Quote(node_id), " (see ", path, ")"));
    }
  } else {
    info.node_id = node_id;
    info.instance_id = RandomHex(16);
  }
  ++info.start_count;
  RETURN_IF_ERROR(fs::WriteFileAtomically(
      path, absl::StrFormat("node_id=%s\ninstance_id=%s\nstart_count=%d\n",
                            info.node_id, info.instance_id, info.start_count)));
  return info;
}

absl::Status CheckIncarnation(const std::string& expected,
                              const std::string& instance_id,
                              const std::string& node_id) {
  if (expected.empty() || instance_id.empty() || expected == instance_id) {
    return absl::OkStatus();
  }
  return WithReason(
      absl::FailedPreconditionError(absl::StrCat(
          "request meant for incarnation ", Quote(expected), " of node ",
          node_id, ", but this is incarnation ", instance_id)),
      ErrorReason::kWrongIncarnation);
}

void ReleaseDeadPublishLocks(snapshot::Repository& repo,
                             const std::string& node_id,
                             const NodeInstanceInfo& me) {
  auto released = repo.ReleasePublishLocks([&](const snapshot::PublishLock& l) {
    if (l.node_id != node_id) return false;
    std::pair<absl::string_view, absl::string_view> parts =
        absl::StrSplit(l.instance, absl::MaxSplits('/', 1));
    uint64_t start = 0;
    return parts.first == me.instance_id &&
           absl::SimpleAtoi(parts.second, &start) && start < me.start_count;
  });
  if (!released.ok()) {
    spdlog::warn("cannot remove the publish locks of earlier processes: {}",
                 released.status().ToString());
  } else if (*released > 0) {
    spdlog::info(
        "removed {} publish lock(s) left by an earlier process of this node "
        "(killed mid-publish), so garbage collection need not wait for them",
        *released);
  }
}

}  // namespace shutter::node
