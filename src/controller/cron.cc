#include "controller/cron.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/text.h"

namespace shutter::controller {
namespace {

// Sets bits [lo, hi] of the field from `spec`; returns false if malformed.
template <size_t N>
bool ParseField(absl::string_view spec, int lo, int hi, std::bitset<N>* out,
                bool* restricted) {
  *restricted = spec != "*";
  for (absl::string_view part : absl::StrSplit(spec, ',')) {
    int step = 1;
    const size_t slash = part.find('/');
    if (slash != absl::string_view::npos) {
      if (!absl::SimpleAtoi(part.substr(slash + 1), &step) || step < 1 ||
          step > hi) {
        return false;
      }
      part = part.substr(0, slash);
    }
    int a = lo, b = hi;
    if (part != "*") {
      const size_t dash = part.find('-');
      if (dash == absl::string_view::npos) {
        if (!absl::SimpleAtoi(part, &a)) return false;
        b = slash == absl::string_view::npos ? a : hi;  // "5/15" = 5-hi/15
      } else if (!absl::SimpleAtoi(part.substr(0, dash), &a) ||
                 !absl::SimpleAtoi(part.substr(dash + 1), &b)) {
        return false;
      }
    }
    if (a < lo || b > hi || a > b) return false;
    for (int v = a; v <= b; v += step) out->set(static_cast<size_t>(v));
  }
  return true;
}

}  // namespace

absl::StatusOr<CronExpr> CronExpr::Parse(absl::string_view text) {
  std::vector<absl::string_view> f =
      absl::StrSplit(text, ' ', absl::SkipEmpty());
  if (f.size() != 5) {
    return absl::InvalidArgumentError(
        absl::StrCat("cron expression ", Quote(text),
                     " must have 5 fields: minute hour day-of-month month "
                     "day-of-week"));
  }
  CronExpr c;
  c.text_ = std::string(text);
  bool unused = false;
  struct {
    const char* name;
    bool ok;
  } checks[] = {
      {"minute", ParseField(f[0], 0, 59, &c.minutes_, &unused)},
      {"hour", ParseField(f[1], 0, 23, &c.hours_, &unused)},
      {"day-of-month", ParseField(f[2], 1, 31, &c.days_, &c.days_restricted_)},
      {"month", ParseField(f[3], 1, 12, &c.months_, &unused)},
  };
  for (const auto& ch : checks) {
    if (!ch.ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cron expression ", Quote(text), ": bad ", ch.name, " field"));
    }
  }
  std::bitset<8> dow;
  if (!ParseField(f[4], 0, 7, &dow, &c.weekdays_restricted_)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cron expression ", Quote(text), ": bad day-of-week field"));
  }
  if (dow.test(7)) dow.set(0);
  dow.reset(7);
  c.weekdays_ = dow;
  return c;
}

absl::Time CronExpr::Next(absl::Time after) const {
  const absl::TimeZone utc = absl::UTCTimeZone();
  absl::CivilMinute m = absl::ToCivilMinute(after, utc) + 1;  // strictly after
  const absl::CivilMinute limit = m + 5 * 366 * 24 * 60;
  while (m < limit) {
    if (!months_.test(static_cast<size_t>(m.month()))) {
      m = absl::CivilMinute(absl::CivilMonth(m) + 1);
      continue;
    }
    const absl::CivilDay day(m);
    const bool dom_ok = days_.test(static_cast<size_t>(m.day()));
    const int wd = static_cast<int>(absl::GetWeekday(day));  // Monday = 0
    const bool dow_ok = weekdays_.test(static_cast<size_t>((wd + 1) % 7));
    const bool day_ok = days_restricted_ && weekdays_restricted_
                            ? (dom_ok || dow_ok)
                            : (dom_ok && dow_ok);
    if (!day_ok) {
      m = absl::CivilMinute(day + 1);
      continue;
    }
    if (!hours_.test(static_cast<size_t>(m.hour()))) {
      m = absl::CivilMinute(absl::CivilHour(m) + 1);
      continue;
    }
    if (!minutes_.test(static_cast<size_t>(m.minute()))) {
      m += 1;
      continue;
    }
    return absl::FromCivil(m, utc);
  }
  return absl::InfiniteFuture();
}

}  // namespace shutter::controller
