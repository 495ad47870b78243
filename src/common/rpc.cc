#include "common/rpc.h"

#include "absl/strings/str_cat.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"

namespace shutter {

grpc::Status ToGrpcStatus(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                      std::string(s.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      s.error_message());
}

absl::StatusOr<RunningServer> StartGrpcServer(
    const std::string& listen, const std::vector<grpc::Service*>& services) {
  static const bool init = [] {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    return true;
  }();
  (void)init;
  RunningServer rs;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &rs.port);
  builder.SetMaxReceiveMessageSize(64 << 20);
  for (grpc::Service* s : services) builder.RegisterService(s);
  rs.server = builder.BuildAndStart();
  if (rs.server == nullptr || rs.port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen,
                                               " (address in use or invalid)"));
  }
  rs.server->GetHealthCheckService()->SetServingStatus(true);
  return rs;
}

std::string WithPort(const std::string& host_port, int port) {
  size_t colon = host_port.rfind(':');
  std::string host =
      colon == std::string::npos ? host_port : host_port.substr(0, colon);
  return absl::StrCat(host, ":", port);
}

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  // Reconnect quickly after a peer restarts (defaults back off to minutes).
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(),
                                   args);
}

}  // namespace shutter
