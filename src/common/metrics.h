#ifndef SHUTTER_COMMON_METRICS_H_
#define SHUTTER_COMMON_METRICS_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

// Prometheus metrics of a daemon, over prometheus-cpp (core + pull), kept
// behind this small interface so that widely included headers do not pull
// prometheus-cpp in. Names follow Prometheus conventions: base units
// (seconds, bytes), `_total` counters, low-cardinality labels.
namespace shutter::metrics {

using Labels = std::map<std::string, std::string>;

// Default buckets for latencies, in seconds: 1 ms to 10 min.
std::vector<double> LatencyBuckets();

class Counter {
 public:
  virtual ~Counter() = default;
  virtual void Inc(double v = 1) = 0;
};
class Gauge {
 public:
  virtual ~Gauge() = default;
  virtual void Set(double v) = 0;
};
class Histogram {
 public:
  virtual ~Histogram() = default;
  virtual void Observe(double v) = 0;
};

// Gauges computed at scrape time: the callback adds one sample per call of
// `emit`.
using EmitFn = std::function<void(const Labels& labels, double value)>;

// Thread-safe. Metric objects returned stay valid as long as the registry.
class Registry {
 public:
  Registry();
  ~Registry();

  // The child of family `name` with `labels`, created on first use. A name
  // is one kind of metric with one help text (the first one given).
  Counter* GetCounter(const std::string& name, const std::string& help,
                      const Labels& labels = {}) ABSL_LOCKS_EXCLUDED(mu_);
  Gauge* GetGauge(const std::string& name, const std::string& help,
                  const Labels& labels = {}) ABSL_LOCKS_EXCLUDED(mu_);
  Histogram* GetHistogram(const std::string& name, const std::string& help,
                          const Labels& labels = {},
                          const std::vector<double>& buckets = LatencyBuckets())
      ABSL_LOCKS_EXCLUDED(mu_);
  // A gauge family whose samples `fill` emits at every scrape (called on
  // the HTTP server's thread; must be thread-safe and quick). `owner`
  // (any pointer; nullptr: the registry's lifetime) lets an object whose
  // state `fill` reads remove its callbacks before it goes away.
  void AddGaugeCallback(const std::string& name, const std::string& help,
                        std::function<void(const EmitFn&)> fill,
                        const void* owner = nullptr) ABSL_LOCKS_EXCLUDED(mu_);
  // The same for a counter whose running total lives elsewhere.
  void AddCounterCallback(const std::string& name, const std::string& help,
                          std::function<void(const EmitFn&)> fill,
                          const void* owner = nullptr) ABSL_LOCKS_EXCLUDED(mu_);
  // Removes the callbacks added with `owner`; returns once no scrape is
  // running any of them.
  void RemoveCallbacks(const void* owner) ABSL_LOCKS_EXCLUDED(mu_);

  // Serves GET /metrics on `listen` ("host:port", port 0 = ephemeral).
  // UNAVAILABLE naming the address if it cannot bind. Call once.
  absl::Status Serve(const std::string& listen);
  // The bound port, 0 when not serving.
  int port() const;
  // Stops serving (before the objects the callbacks read go away).
  void StopServing();

  // The text exposition format, as /metrics answers (tests, tools).
  std::string Render() const;

 private:
  friend absl::Status StartDaemonMetrics(Registry* registry,
                                         const std::string& listen);
  struct Impl;
  std::unique_ptr<Impl> impl_;
  mutable absl::Mutex mu_;
};

// A daemon's metrics setup: records every gRPC call it serves as
// shutter_rpc_duration_seconds{service, method, code} (SetRpcObserver,
// common/rpc.h; call before its servers start), and serves `registry` on
// `listen` unless empty, logging the bound port. UNAVAILABLE if it cannot
// bind. The observer is process-wide (the last call wins) and outlives
// `registry` harmlessly: calls that end after the registry is destroyed
// are not recorded.
absl::Status StartDaemonMetrics(Registry* registry, const std::string& listen);

}  // namespace shutter::metrics

#endif  // SHUTTER_COMMON_METRICS_H_
