#ifndef SHUTTER_TESTS_TESTING_SHUTTERCTL_H_
#define SHUTTER_TESTS_TESTING_SHUTTERCTL_H_

// shutterctl as the integration tests run it: the real binary
// (SHUTTERCTL_BIN, testing/binaries.h) against a LocalCluster's controller.

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "testing/binaries.h"
#include "testing/local_cluster.h"
#include "testing/process.h"

namespace shutter::testing {

// Runs `shutterctl args...` with SHUTTER_CONTROLLER set to the cluster's
// controller; returns its exit code, or -1 (and a test failure) if it could
// not be run or did not finish within `timeout`.
inline int RunShutterctl(const LocalCluster& cluster,
                         std::vector<std::string> args, std::string* out,
                         std::string* err,
                         absl::Duration timeout = absl::Seconds(120)) {
  args.insert(args.begin(), SHUTTERCTL_BIN);
  auto rc = RunCommand(args, out, err, timeout,
                       {"SHUTTER_CONTROLLER=" + cluster.controller_address()});
  EXPECT_TRUE(rc.ok()) << rc.status();
  return rc.ok() ? *rc : -1;
}

// Parses shutterctl's `-o json` output; a test failure (naming the text) if
// it is not an `M`.
template <typename M>
M FromJson(const std::string& text) {
  M m;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(text, &m).ok())
      << text;
  return m;
}

}  // namespace shutter::testing

#endif  // SHUTTER_TESTS_TESTING_SHUTTERCTL_H_
