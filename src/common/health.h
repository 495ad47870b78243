#ifndef SHUTTER_COMMON_HEALTH_H_
#define SHUTTER_COMMON_HEALTH_H_

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace shutter {

// grpc.health.v1.Health for a daemon's gRPC server (StartGrpcServer
// registers one), with the server as a whole ("") as its only service, as
// gRPC's built-in service has when it is only told SetServingStatus(bool):
// Check answers SERVING or NOT_SERVING for "" and NOT_FOUND for any other
// name; Watch sends the status now and then each change (SERVICE_UNKNOWN
// once for another name) until the caller cancels or Shutdown.
//
// Why not gRPC's built-in service: in gRPC 1.51 it uses the callback API,
// whose mere presence starts two threads that poll the process'
// connections beside every other thread and hand every event to each
// other (docs/performance.md, "One queue thread"). This one uses the sync
// API: a Watch holds one of the server's threads while it lasts, so at most
// kMaxWatchers run at once (RESOURCE_EXHAUSTED beyond). Thread-safe.
class HealthService final : public grpc::health::v1::Health::Service {
 public:
  static constexpr int kMaxWatchers = 16;

  // The server's status (SERVING until told otherwise).
  void SetServing(bool serving) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends every Watch (after sending the last status change) and refuses
  // new ones (UNAVAILABLE): before the server's shutdown, which waits for
  // the calls it serves.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

  grpc::Status Check(grpc::ServerContext* ctx,
                     const grpc::health::v1::HealthCheckRequest* request,
                     grpc::health::v1::HealthCheckResponse* response) override
      ABSL_LOCKS_EXCLUDED(mu_);
  grpc::Status Watch(grpc::ServerContext* ctx,
                     const grpc::health::v1::HealthCheckRequest* request,
                     grpc::ServerWriter<grpc::health::v1::HealthCheckResponse>*
                         writer) override ABSL_LOCKS_EXCLUDED(mu_);

  // How often a Watch with nothing to send looks whether its caller has
  // gone (gRPC's sync API does not notify it).
  static constexpr absl::Duration kCancelPoll = absl::Milliseconds(500);

 private:
  // SERVING or NOT_SERVING, as serving_ says.
  grpc::health::v1::HealthCheckResponse::ServingStatus ServerStatus() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  bool serving_ ABSL_GUARDED_BY(mu_) = true;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  int watchers_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace shutter

#endif  // SHUTTER_COMMON_HEALTH_H_
