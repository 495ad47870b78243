#ifndef SHUTTER_BENCH_BENCH_FLAGS_H_
#define SHUTTER_BENCH_BENCH_FLAGS_H_

// Flag parsing shared by the benchmarks: CLI11, as the daemons and
// shutterctl. Each benchmark declares its options on a CLI::App, adds
// --smoke (a small configuration for CI) with SmokeFlag, and calls
// ParseFlags.
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"

namespace shutter::bench {

// Registers --smoke: after parsing, `apply` sets the small configuration on
// every option the command line did not give (so `--smoke --runs 3`
// keeps 3 runs). `apply` gets a function telling whether an option name
// (e.g. "--runs") was given.
inline void SmokeFlag(
    CLI::App& app, bool* smoke,
    std::function<void(const std::function<bool(const std::string&)>& given)>
        apply) {
  app.add_flag("--smoke", *smoke,
               "A small configuration that runs in seconds (CI)");
  app.final_callback([&app, smoke, apply = std::move(apply)] {
    if (!*smoke) return;
    apply([&app](const std::string& name) {
      const CLI::Option* o = app.get_option_no_throw(name);
      return o != nullptr && o->count() > 0;
    });
  });
}

// Parses the command line: --help prints the options and exits 0; a bad
// option prints one line and exits 2.
inline void ParseFlags(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    std::exit(0);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: %s (see --help)\n", app.get_name().c_str(),
                 e.what());
    std::exit(2);
  }
}

// The shape of the cluster benchmarks that snapshot or restore a real
// local cluster (cluster_bench, restore_bench): nodes, partitions in all,
// per-node capacity, per-partition data, runs per variant, and each
// stream's throttle (as a remote object store would be).
struct ClusterConfig {
  int nodes = 4;
  int partitions = 64;
  int capacity = 4;
  int keys = 2048;
  int value_size = 1024;
  int runs = 3;
  double stream_mibps = 4;
};

// Adds ClusterConfig's options and --smoke (2 nodes x 4 partitions,
// capacity 2, 64 keys of 512 B, 1 run, 8 MiB/s).
inline void AddClusterFlags(CLI::App& app, ClusterConfig* cfg, bool* smoke) {
  app.add_option("--nodes", cfg->nodes)->capture_default_str();
  app.add_option("--partitions", cfg->partitions,
                 "In all, a multiple of --nodes")
      ->capture_default_str();
  app.add_option("--capacity", cfg->capacity, "Per node")
      ->capture_default_str();
  app.add_option("--keys", cfg->keys, "Per partition")->capture_default_str();
  app.add_option("--value-size", cfg->value_size, "Bytes, incompressible")
      ->capture_default_str();
  app.add_option("--runs", cfg->runs, "Per variant (median)")
      ->capture_default_str();
  app.add_option("--stream-mibps", cfg->stream_mibps,
                 "Each transfer stream's throttle")
      ->capture_default_str();
  SmokeFlag(app, smoke, [cfg](const auto& given) {
    const ClusterConfig small{2, 8, 2, 64, 512, 1, 8};
    if (!given("--nodes")) cfg->nodes = small.nodes;
    if (!given("--partitions")) cfg->partitions = small.partitions;
    if (!given("--capacity")) cfg->capacity = small.capacity;
    if (!given("--keys")) cfg->keys = small.keys;
    if (!given("--value-size")) cfg->value_size = small.value_size;
    if (!given("--runs")) cfg->runs = small.runs;
    if (!given("--stream-mibps")) cfg->stream_mibps = small.stream_mibps;
  });
}

}  // namespace shutter::bench

#endif  // SHUTTER_BENCH_BENCH_FLAGS_H_
