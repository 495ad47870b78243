#include "common/health.h"

namespace shutter {

using grpc::health::v1::HealthCheckResponse;

void HealthService::SetServing(bool serving) {
  absl::MutexLock l(&mu_);
  serving_ = serving;
}

grpc::health::v1::HealthCheckResponse::ServingStatus
HealthService::ServerStatus() const {
  return serving_ ? HealthCheckResponse::SERVING
                  : HealthCheckResponse::NOT_SERVING;
}

void HealthService::Shutdown() {
  absl::MutexLock l(&mu_);
  shutdown_ = true;
}

grpc::Status HealthService::Check(
    grpc::ServerContext*, const grpc::health::v1::HealthCheckRequest* request,
    HealthCheckResponse* response) {
  if (!request->service().empty()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service");
  }
  absl::MutexLock l(&mu_);
  response->set_status(ServerStatus());
  return grpc::Status::OK;
}

grpc::Status HealthService::Watch(
    grpc::ServerContext* ctx,
    const grpc::health::v1::HealthCheckRequest* request,
    grpc::ServerWriter<HealthCheckResponse>* writer) {
  {
    absl::MutexLock l(&mu_);
    if (shutdown_) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "the server is shutting down");
    }
    if (watchers_ >= kMaxWatchers) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          "too many health watchers; use Check");
    }
    ++watchers_;
  }
  const bool known = request->service().empty();
  auto status_now = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return known ? ServerStatus() : HealthCheckResponse::SERVICE_UNKNOWN;
  };
  HealthCheckResponse::ServingStatus sent = HealthCheckResponse::UNKNOWN;
  grpc::Status result = grpc::Status::OK;
  for (;;) {
    HealthCheckResponse::ServingStatus now;
    {
      absl::MutexLock l(&mu_);
      auto news = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return status_now() != sent || shutdown_;
      };
      mu_.AwaitWithTimeout(absl::Condition(&news), kCancelPoll);
      now = status_now();
      if (now == sent) {  // nothing to send
        if (shutdown_) {
          result = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                "the server is shutting down");
          break;
        }
        if (ctx->IsCancelled()) break;
        continue;
      }
    }
    HealthCheckResponse r;
    r.set_status(now);
    if (!writer->Write(r)) break;  // the caller has gone
    sent = now;
  }
  absl::MutexLock l(&mu_);
  --watchers_;
  return result;
}

}  // namespace shutter
