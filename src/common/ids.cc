#include "common/ids.h"

#include <algorithm>
#include <cstdio>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/text.h"

namespace shutter {

bool IsSafePathComponent(absl::string_view s) {
  if (s.empty() || s.size() > 128 || s[0] == '.') return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

absl::Status CheckSafeId(absl::string_view what, absl::string_view id) {
  if (IsSafePathComponent(id)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      what, " ", Quote(id),
      " is not valid: it must be 1-128 characters of [A-Za-z0-9._-], not "
      "starting with '.'"));
}

namespace {
constexpr char kIdTimeFormat[] = "%Y%m%dT%H%M%E3SZ";

std::string FormatMillis(int64_t millis) {
  return absl::FormatTime(kIdTimeFormat, absl::FromUnixMillis(millis),
                          absl::UTCTimeZone());
}
}  // namespace

SnapshotIdGenerator::SnapshotIdGenerator(Clock* clock) : clock_(clock) {}

void SnapshotIdGenerator::ObserveExisting(absl::string_view id) {
  // absl::ParseTime cannot split run-together digits ("%Y" is greedy), so
  // read the fields by position.
  std::string time_part(id.substr(0, id.find('-')));
  int y, mo, d, h, mi, sec, ms;
  char t, dot, z;
  if (time_part.size() != 20 ||
      std::sscanf(time_part.c_str(), "%4d%2d%2d%c%2d%2d%2d%c%3d%c", &y, &mo, &d,
                  &t, &h, &mi, &sec, &dot, &ms, &z) != 10 ||
      t != 'T' || dot != '.' || z != 'Z') {
    return;
  }
  absl::Time parsed = absl::FromCivil(absl::CivilSecond(y, mo, d, h, mi, sec),
                                      absl::UTCTimeZone()) +
                      absl::Milliseconds(ms);
  absl::MutexLock l(&mu_);
  last_millis_ = std::max(last_millis_, absl::ToUnixMillis(parsed));
}

std::string SnapshotIdGenerator::Next() {
  int64_t millis = absl::ToUnixMillis(clock_->Now());
  {
    absl::MutexLock l(&mu_);
    if (millis <= last_millis_) millis = last_millis_ + 1;
    last_millis_ = millis;
  }
  thread_local std::mt19937 rng{std::random_device{}()};
  uint32_t suffix = static_cast<uint32_t>(rng());
  return absl::StrFormat("%s-%08x", FormatMillis(millis), suffix);
}

bool IsLowerHex(absl::string_view s, size_t length) {
  if (s.size() != length) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string RandomHex(int bytes) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string out;
  while (static_cast<int>(out.size()) < 2 * bytes) {
    absl::StrAppendFormat(&out, "%016x", rng());
  }
  return out.substr(0, 2 * bytes);
}

std::string FormatIdList(const std::vector<uint32_t>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size();) {
    size_t j = i;
    while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) ++j;
    if (!out.empty()) out.push_back(',');
    absl::StrAppend(&out, ids[i]);
    if (j > i) absl::StrAppend(&out, "-", ids[j]);
    i = j + 1;
  }
  return out;
}

absl::StatusOr<std::vector<uint32_t>> ParseIdList(absl::string_view spec) {
  std::vector<uint32_t> ids;
  for (absl::string_view part : absl::StrSplit(spec, ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (part.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("empty element in id list ", Quote(spec)));
    }
    std::vector<absl::string_view> ends = absl::StrSplit(part, '-');
    uint32_t lo = 0, hi = 0;
    if (ends.size() > 2 || !absl::SimpleAtoi(ends[0], &lo) ||
        !absl::SimpleAtoi(ends.back(), &hi)) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid id or range ", Quote(part), " in ", Quote(spec),
                       " (expected e.g. 0,3,5-9)"));
    }
    if (hi < lo) {
      return absl::InvalidArgumentError(
          absl::StrCat("range ", Quote(part), " ends before it starts"));
    }
    if (hi - lo > 1'000'000) {
      return absl::InvalidArgumentError(
          absl::StrCat("range ", Quote(part), " is too large"));
    }
    for (uint64_t i = lo; i <= hi; ++i) ids.push_back(static_cast<uint32_t>(i));
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

}  // namespace shutter
