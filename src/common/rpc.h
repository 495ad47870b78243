#ifndef SHUTTER_COMMON_RPC_H_
#define SHUTTER_COMMON_RPC_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"

// gRPC glue shared by the daemons and the CLI.
namespace shutter {

// absl and gRPC status codes are numerically identical; these convert at
// the service boundary.
grpc::Status ToGrpcStatus(const absl::Status& s);
absl::Status FromGrpcStatus(const grpc::Status& s);

// A started gRPC server and the port it bound.
struct RunningServer {
  std::unique_ptr<grpc::Server> server;
  int port = 0;
};

// Builds and starts a server listening on `listen` ("host:port", port 0 for
// an ephemeral port) serving `services` (sync or callback API; not owned;
// must outlive the server), plus server reflection and the grpc.health.v1
// health service. UNAVAILABLE if the address cannot be bound.
absl::StatusOr<RunningServer> StartGrpcServer(
    const std::string& listen, const std::vector<grpc::Service*>& services);

// Returns "host:port" with the port replaced by `port`.
std::string WithPort(const std::string& host_port, int port);

// Creates an insecure channel to `target` with Shutter's client settings.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target);

}  // namespace shutter

#endif  // SHUTTER_COMMON_RPC_H_
