// LoadMonitor over fixture /proc files and a fake clock, and the
// LatencyRecorder windows it reads.
#include "node/load_monitor.h"

#include <fstream>

#include "common/clock.h"
#include "common/latency_recorder.h"
#include "gtest/gtest.h"
#include "testing/temp_dir.h"

namespace shutter::node {
namespace {

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

std::string Stat(uint64_t user, uint64_t idle, uint64_t iowait) {
  // cpu user nice system idle iowait irq softirq steal guest guest_nice
  return "cpu  " + std::to_string(user) + " 0 0 " + std::to_string(idle) + " " +
         std::to_string(iowait) +
         " 0 0 0 77 0\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 1 2 3\n";
}

std::string Diskstats(uint64_t vda_ticks) {
  return "   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
         " 254       0 vda 961311 34534 20424322 1049763 8160603 1009652 "
         "402583776 1501349 0 " +
         std::to_string(vda_ticks) +
         " 2900826 2525405 72 9437818112 218790 2217183 130922\n"
         " 254       1 vda1 1 0 0 0 0 0 0 0 0 5 0 0 0 0 0 0 0\n";
}

TEST(LoadMonitorTest, Parsers) {
  auto cpu = LoadMonitor::ParseCpu(Stat(100, 300, 50));
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_EQ(cpu->first, 100u);   // busy: user (guest not counted twice)
  EXPECT_EQ(cpu->second, 450u);  // total of the first eight fields
  EXPECT_FALSE(LoadMonitor::ParseCpu("intr 1 2\n").ok());
  EXPECT_FALSE(LoadMonitor::ParseCpu("cpu 1 x 3 4 5\n").ok());

  auto ticks = LoadMonitor::ParseIoTicks(Diskstats(788984), "vda");
  ASSERT_TRUE(ticks.ok()) << ticks.status();
  EXPECT_EQ(*ticks, 788984u);
  EXPECT_EQ(*LoadMonitor::ParseIoTicks(Diskstats(1), "vda1"), 5u);
  EXPECT_EQ(LoadMonitor::ParseIoTicks(Diskstats(1), "sdz").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(*LoadMonitor::DeviceFor(Diskstats(1), 254, 1), "vda1");
  EXPECT_FALSE(LoadMonitor::DeviceFor(Diskstats(1), 0, 42).ok());
}

TEST(LoadMonitorTest, SamplesDeltasOverTheInterval) {
  testing::TempDir proc;
  WriteFile(proc.path() + "/stat", Stat(1000, 1000, 0));
  WriteFile(proc.path() + "/diskstats", Diskstats(5000));
  FakeClock clock;
  LatencyRecorder writes, checkpoints;
  LoadMonitor::Activity activity;
  LoadMonitor::Options o;
  o.data_dir = proc.path();
  o.disk_device = "vda";
  o.proc_root = proc.path();
  o.writes = &writes;
  o.checkpoints = &checkpoints;
  o.activity = [&] { return activity; };
  writes.Record(absl::Seconds(5));  // before the monitor: not counted
  LoadMonitor monitor(o, &clock);
  EXPECT_EQ(monitor.disk_device(), "vda");

  // One second: 300 busy of 400 jiffies, 600 ms of I/O, 100 writes of
  // which one slow, a checkpoint running.
  clock.Advance(absl::Seconds(1));
  WriteFile(proc.path() + "/stat", Stat(1300, 1080, 20));
  WriteFile(proc.path() + "/diskstats", Diskstats(5600));
  for (int i = 0; i < 98; ++i) writes.Record(absl::Microseconds(200));
  writes.Record(absl::Milliseconds(5));
  writes.Record(absl::Milliseconds(50));
  activity.running = 1;
  shutter::v1::NodeLoad load = monitor.Sample();
  EXPECT_EQ(load.interval_millis(), 1000);
  EXPECT_DOUBLE_EQ(load.cpu_busy(), 0.75);
  EXPECT_DOUBLE_EQ(load.disk_busy(), 0.6);
  EXPECT_EQ(load.disk_device(), "vda");
  EXPECT_EQ(load.foreground_writes(), 100u);
  // Quantiles within 10%, never under the true value.
  EXPECT_GE(load.foreground_write_p50_micros(), 200);
  EXPECT_LE(load.foreground_write_p50_micros(), 220);
  EXPECT_GE(load.foreground_write_p99_micros(), 5000);
  EXPECT_LE(load.foreground_write_p99_micros(), 5500);
  EXPECT_TRUE(load.snapshot_work());
  EXPECT_EQ(load.snapshot_tasks_running(), 1u);

  // Next second: the checkpoint finished (took 800 ms), nothing written,
  // device idle.
  clock.Advance(absl::Seconds(1));
  checkpoints.Record(absl::Milliseconds(800));
  activity.running = 0;
  activity.finished = 1;
  load = monitor.Sample();
  EXPECT_DOUBLE_EQ(load.disk_busy(), 0.0);
  EXPECT_EQ(load.foreground_writes(), 0u);
  EXPECT_EQ(load.foreground_write_p99_micros(), 0);
  EXPECT_TRUE(load.snapshot_work()) << "finished during the interval";
  EXPECT_EQ(load.checkpoints_completed(), 1u);
  EXPECT_GE(load.checkpoint_max_millis(), 800);
  EXPECT_LE(load.checkpoint_max_millis(), 880);

  // A quiet second: no snapshot work.
  clock.Advance(absl::Seconds(1));
  load = monitor.Sample();
  EXPECT_FALSE(load.snapshot_work());
  EXPECT_EQ(load.checkpoints_completed(), 0u);
}

TEST(LoadMonitorTest, UnknownDeviceIsNotMeasured) {
  testing::TempDir proc;
  WriteFile(proc.path() + "/stat", Stat(1, 1, 0));
  WriteFile(proc.path() + "/diskstats", Diskstats(1));
  FakeClock clock;
  LoadMonitor::Options o;
  o.data_dir = proc.path();
  o.disk_device = "nosuchdisk";
  o.proc_root = proc.path();
  LoadMonitor monitor(o, &clock);
  EXPECT_EQ(monitor.disk_device(), "");
  clock.Advance(absl::Seconds(1));
  shutter::v1::NodeLoad load = monitor.Sample();
  EXPECT_LT(load.disk_busy(), 0);
  EXPECT_FALSE(load.snapshot_work());
}

TEST(LoadMonitorTest, RealProcOfThisMachine) {
  testing::TempDir data;
  LoadMonitor::Options o;
  o.data_dir = data.path();
  LoadMonitor monitor(o, Clock::Real());
  shutter::v1::NodeLoad load = monitor.Sample();
  // CPU is always readable on Linux; busy within [0, 1] or unmeasured
  // when no jiffy passed.
  EXPECT_LE(load.cpu_busy(), 1.0);
  EXPECT_LE(load.disk_busy(), 1.0);
}

TEST(LatencyRecorderTest, WindowsAreDisjoint) {
  LatencyRecorder r;
  EXPECT_EQ(r.TakeWindow().count, 0u);
  for (int i = 1; i <= 1000; ++i) r.Record(absl::Microseconds(i));
  LatencyRecorder::Window w = r.TakeWindow();
  EXPECT_EQ(w.count, 1000u);
  EXPECT_GE(absl::ToDoubleMicroseconds(w.p50), 500);
  EXPECT_LE(absl::ToDoubleMicroseconds(w.p50), 550);
  EXPECT_GE(absl::ToDoubleMicroseconds(w.p99), 990);
  EXPECT_LE(absl::ToDoubleMicroseconds(w.p99), 1090);
  EXPECT_GE(absl::ToDoubleMicroseconds(w.max), 1000);
  EXPECT_EQ(r.TakeWindow().count, 0u);
  r.Record(absl::ZeroDuration());
  r.Record(-absl::Seconds(1));
  r.Record(absl::Hours(100));
  w = r.TakeWindow();
  EXPECT_EQ(w.count, 3u);
  EXPECT_GT(w.max, absl::Hours(1));
}

}  // namespace
}  // namespace shutter::node
