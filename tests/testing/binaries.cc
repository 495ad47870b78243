#include "testing/binaries.h"

// The paths come from tests/CMakeLists.txt (shutter_test_paths).
namespace shutter::testing {

const char* ControllerBinary() { return SHUTTER_CONTROLLER_PATH; }
const char* NodeBinary() { return SHUTTER_NODE_PATH; }
const char* ShutterctlBinary() { return SHUTTERCTL_PATH; }
const char* SourceDir() { return SHUTTER_SOURCE_PATH; }

}  // namespace shutter::testing
