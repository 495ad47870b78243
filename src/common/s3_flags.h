#ifndef SHUTTER_COMMON_S3_FLAGS_H_
#define SHUTTER_COMMON_S3_FLAGS_H_

#include <string>

namespace shutter {

// Flags naming an S3-compatible repository's endpoint and credentials,
// shared by the daemons (the values go to snapshot::RepositoryOptions).
struct S3Flags {
  std::string endpoint;
  std::string region;
  std::string credentials_file;
  std::string addressing = "auto";  // auto | path | virtual
  // -1 auto, 1 path-style, 0 virtual-hosted.
  int path_style() const {
    return addressing == "path" ? 1 : addressing == "virtual" ? 0 : -1;
  }
};

}  // namespace shutter

#endif  // SHUTTER_COMMON_S3_FLAGS_H_
