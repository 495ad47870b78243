#ifndef SHUTTER_CONTROLLER_CRON_H_
#define SHUTTER_CONTROLLER_CRON_H_

#include <bitset>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace shutter::controller {

// A five-field cron expression, evaluated in UTC: "minute hour
// day-of-month month day-of-week", each field "*", a value, a range
// "a-b", a step "*/n" or "a-b/n", or a comma-separated list of those.
// Day of week 0-7 (0 and 7 are Sunday). As in Vixie cron, when both day
// fields are restricted a day matches if either does. No names ("MON"),
// no seconds, no "@hourly" shorthands (use "0 * * * *").
class CronExpr {
 public:
  // INVALID_ARGUMENT naming the bad field.
  static absl::StatusOr<CronExpr> Parse(absl::string_view text);

  // The first matching minute strictly after `after`, or
  // absl::InfiniteFuture() if none within five years (e.g. "0 0 30 2 *").
  absl::Time Next(absl::Time after) const;

  const std::string& text() const { return text_; }

 private:
  std::string text_;
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_;     // 1..31
  std::bitset<13> months_;   // 1..12
  std::bitset<8> weekdays_;  // 0..6 (7 folded into 0)
  bool days_restricted_ = false;
  bool weekdays_restricted_ = false;
};

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_CRON_H_
