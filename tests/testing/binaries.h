#ifndef SHUTTER_TESTS_TESTING_BINARIES_H_
#define SHUTTER_TESTS_TESTING_BINARIES_H_

// Where this build's programs and the source tree are, for the
// integration tests and benchmarks that run the real daemons and CLI as
// processes: absolute paths, fixed when the build was configured.
//
// They are compiled into one small unit (binaries.cc) rather than into the
// flags of every test and benchmark unit: ccache rewrites absolute paths in
// include options to relative ones but not in macro definitions, so a path
// in the flags of a large unit made ccache miss it in every new clone of
// the tree (docs/development.md, "Build and test").

namespace shutter::testing {

const char* ControllerBinary();  // shutter-controller
const char* NodeBinary();        // shutter-node
const char* ShutterctlBinary();  // shutterctl
const char* SourceDir();         // the top of the source tree

}  // namespace shutter::testing

#define SHUTTER_CONTROLLER_BIN (::shutter::testing::ControllerBinary())
#define SHUTTER_NODE_BIN (::shutter::testing::NodeBinary())
#define SHUTTERCTL_BIN (::shutter::testing::ShutterctlBinary())
#define SHUTTER_SOURCE_DIR (::shutter::testing::SourceDir())

#endif  // SHUTTER_TESTS_TESTING_BINARIES_H_
