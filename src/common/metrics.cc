#include "common/metrics.h"

#include <CivetServer.h>
#include <civetweb.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/rpc.h"
#include "common/status_macros.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"
#include "spdlog/spdlog.h"

namespace shutter::metrics {

namespace {

class CounterImpl : public Counter {
 public:
  explicit CounterImpl(prometheus::Counter* c) : c_(c) {}
  void Inc(double v) override { c_->Increment(v); }

 private:
  prometheus::Counter* const c_;
};

class GaugeImpl : public Gauge {
 public:
  explicit GaugeImpl(prometheus::Gauge* g) : g_(g) {}
  void Set(double v) override { g_->Set(v); }

 private:
  prometheus::Gauge* const g_;
};

class HistogramImpl : public Histogram {
 public:
  explicit HistogramImpl(prometheus::Histogram* h) : h_(h) {}
  void Observe(double v) override { h_->Observe(v); }

 private:
  prometheus::Histogram* const h_;
};

// The scrape-time gauge families.
class Callbacks : public prometheus::Collectable {
 public:
  struct Entry {
    std::string name, help;
    std::function<void(const EmitFn&)> fill;
    bool counter = false;
    const void* owner = nullptr;
  };
  void Add(Entry e) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    entries_.push_back(std::move(e));
  }
  // Removes `owner`'s entries and waits for scrapes still running them.
  void Remove(const void* owner) ABSL_LOCKS_EXCLUDED(mu_, running_) {
    {
      absl::MutexLock l(&mu_);
      entries_.erase(
          std::remove_if(entries_.begin(), entries_.end(),
                         [owner](const Entry& e) { return e.owner == owner; }),
          entries_.end());
    }
    absl::WriterMutexLock w(&running_);
  }
  std::vector<prometheus::MetricFamily> Collect() const override
      ABSL_LOCKS_EXCLUDED(mu_, running_) {
    // Held while the callbacks run, so Remove() returns only once none of
    // the removed ones can still be running.
    absl::ReaderMutexLock r(&running_);
    std::vector<Entry> entries;
    {
      absl::MutexLock l(&mu_);
      entries = entries_;
    }
    std::vector<prometheus::MetricFamily> out;
    for (const Entry& e : entries) {
      prometheus::MetricFamily f;
      f.name = e.name;
      f.help = e.help;
      f.type = e.counter ? prometheus::MetricType::Counter
                         : prometheus::MetricType::Gauge;
      e.fill([&f, &e](const Labels& labels, double value) {
        prometheus::ClientMetric m;
        for (const auto& [k, v] : labels) m.label.push_back({k, v});
        (e.counter ? m.counter.value : m.gauge.value) = value;
        f.metric.push_back(std::move(m));
      });
      out.push_back(std::move(f));
    }
    return out;
  }

 private:
  mutable absl::Mutex running_;
  mutable absl::Mutex mu_;
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::vector<double> LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
          1,     2.5,    5,     10,   30,    60,   120, 300,  600};
}

// How the process-wide RPC observer (StartDaemonMetrics) reaches its
// registry: the registry's destructor cuts the link, so an RPC that ends
// after the registry went away (another server of an embedding process, a
// call in flight while a daemon object is destroyed) records nothing
// instead of touching freed memory.
struct RpcObserverLink {
  absl::Mutex mu;
  Registry* registry ABSL_GUARDED_BY(mu);
  explicit RpcObserverLink(Registry* r) : registry(r) {}
};

struct Registry::Impl {
  std::shared_ptr<RpcObserverLink> rpc_link;  // set by StartDaemonMetrics
  std::shared_ptr<prometheus::Registry> registry =
      std::make_shared<prometheus::Registry>();
  std::shared_ptr<Callbacks> callbacks = std::make_shared<Callbacks>();
  std::unique_ptr<prometheus::Exposer> exposer;
  int port = 0;
  std::map<std::string, prometheus::Family<prometheus::Counter>*> counters;
  std::map<std::string, prometheus::Family<prometheus::Gauge>*> gauges;
  std::map<std::string, prometheus::Family<prometheus::Histogram>*> histograms;
  // Wrappers handed out, by (name, labels).
  std::map<std::pair<std::string, Labels>, std::unique_ptr<Counter>> counter;
  std::map<std::pair<std::string, Labels>, std::unique_ptr<Gauge>> gauge;
  std::map<std::pair<std::string, Labels>, std::unique_ptr<Histogram>> hist;
};

Registry::Registry() : impl_(std::make_unique<Impl>()) {}
Registry::~Registry() {
  if (impl_->rpc_link != nullptr) {
    absl::MutexLock l(&impl_->rpc_link->mu);
    impl_->rpc_link->registry = nullptr;
  }
}

Counter* Registry::GetCounter(const std::string& name, const std::string& help,
                              const Labels& labels) {
  absl::MutexLock l(&mu_);
  auto& slot = impl_->counter[{name, labels}];
  if (slot == nullptr) {
    auto*& family = impl_->counters[name];
    if (family == nullptr) {
      family = &prometheus::BuildCounter().Name(name).Help(help).Register(
          *impl_->registry);
    }
    slot = std::make_unique<CounterImpl>(&family->Add(labels));
  }
  return slot.get();
}

Gauge* Registry::GetGauge(const std::string& name, const std::string& help,
                          const Labels& labels) {
  absl::MutexLock l(&mu_);
  auto& slot = impl_->gauge[{name, labels}];
  if (slot == nullptr) {
    auto*& family = impl_->gauges[name];
    if (family == nullptr) {
      family = &prometheus::BuildGauge().Name(name).Help(help).Register(
          *impl_->registry);
    }
    slot = std::make_unique<GaugeImpl>(&family->Add(labels));
  }
  return slot.get();
}

Histogram* Registry::GetHistogram(const std::string& name,
                                  const std::string& help, const Labels& labels,
                                  const std::vector<double>& buckets) {
  absl::MutexLock l(&mu_);
  auto& slot = impl_->hist[{name, labels}];
  if (slot == nullptr) {
    auto*& family = impl_->histograms[name];
    if (family == nullptr) {
      family = &prometheus::BuildHistogram().Name(name).Help(help).Register(
          *impl_->registry);
    }
    slot = std::make_unique<HistogramImpl>(
        &family->Add(labels, prometheus::Histogram::BucketBoundaries(buckets)));
  }
  return slot.get();
}

void Registry::AddGaugeCallback(const std::string& name,
                                const std::string& help,
                                std::function<void(const EmitFn&)> fill,
                                const void* owner) {
  impl_->callbacks->Add({name, help, std::move(fill), false, owner});
}

void Registry::AddCounterCallback(const std::string& name,
                                  const std::string& help,
                                  std::function<void(const EmitFn&)> fill,
                                  const void* owner) {
  impl_->callbacks->Add({name, help, std::move(fill), true, owner});
}

void Registry::RemoveCallbacks(const void* owner) {
  impl_->callbacks->Remove(owner);
}

void Registry::StopServing() { impl_->exposer.reset(); }

namespace {
// civetweb matches a handler's URI as a prefix ("/metrics" would serve
// "/metricsx" and "/metrics/anything"): answer 404 to everything but the
// exact path before any handler sees it.
int OnlyExactPaths(mg_connection* conn) {
  const mg_request_info* info = mg_get_request_info(conn);
  const char* uri = info != nullptr ? info->local_uri : nullptr;
  if (uri != nullptr && std::strcmp(uri, "/metrics") == 0) return 0;
  mg_send_http_error(conn, 404, "%s", "not found; metrics are at /metrics\n");
  return 404;
}

const CivetCallbacks& ExactPathCallbacks() {
  static const CivetCallbacks* callbacks = [] {
    auto* cb = new CivetCallbacks();
    cb->begin_request = OnlyExactPaths;
    return cb;
  }();
  return *callbacks;
}
}  // namespace

absl::Status Registry::Serve(const std::string& listen) {
  try {
    impl_->exposer =
        std::make_unique<prometheus::Exposer>(listen, 1, &ExactPathCallbacks());
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on \"", listen, "\": ", e.what()));
  }
  impl_->exposer->RegisterCollectable(impl_->registry);
  impl_->exposer->RegisterCollectable(impl_->callbacks);
  auto ports = impl_->exposer->GetListeningPorts();
  impl_->port = ports.empty() ? 0 : ports.front();
  return absl::OkStatus();
}

int Registry::port() const { return impl_->port; }

std::string Registry::Render() const {
  std::vector<prometheus::MetricFamily> all = impl_->registry->Collect();
  for (auto& f : impl_->callbacks->Collect()) all.push_back(std::move(f));
  return prometheus::TextSerializer().Serialize(all);
}

absl::Status StartDaemonMetrics(Registry* registry, const std::string& listen) {
  auto link = std::make_shared<RpcObserverLink>(registry);
  registry->impl_->rpc_link = link;
  SetRpcObserver([link](const std::string& full, grpc::StatusCode code,
                        double seconds) {
    absl::ReaderMutexLock l(&link->mu);
    if (link->registry == nullptr) return;  // the registry is gone
    // "/shutter.v1.AdminService/CreateSnapshot"
    std::string service, method = full;
    const size_t slash = full.rfind('/');
    if (slash != std::string::npos && slash > 0) {
      method = full.substr(slash + 1);
      service = full.substr(1, slash - 1);
      const size_t dot = service.rfind('.');
      if (dot != std::string::npos) service = service.substr(dot + 1);
    }
    link->registry
        ->GetHistogram(
            "shutter_rpc_duration_seconds",
            "Server-side latency of gRPC calls by service, method and code",
            {{"service", service},
             {"method", method},
             {"code",
              absl::StatusCodeToString(static_cast<absl::StatusCode>(code))}})
        ->Observe(seconds);
  });
  if (listen.empty()) return absl::OkStatus();
  RETURN_IF_ERROR(registry->Serve(listen));
  spdlog::info("metrics on http://{}/metrics (port {})", listen,
               registry->port());
  return absl::OkStatus();
}

}  // namespace shutter::metrics
