#ifndef SHUTTER_TESTS_TESTING_STATUS_MATCHERS_H_
#define SHUTTER_TESTS_TESTING_STATUS_MATCHERS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"

// Abseil 20220623 ships no gtest matchers for Status; these cover our use.
namespace shutter::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& s = GetStatus(arg);
  if (!s.ok()) *result_listener << "status is " << s.ToString();
  return s.ok();
}

MATCHER_P(StatusIs, code,
          "has code " +
              absl::StatusCodeToString(static_cast<absl::StatusCode>(code))) {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status is " << s.ToString();
  return s.code() == code;
}

MATCHER_P2(StatusIs, code, substr, "has code and message") {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status is " << s.ToString();
  return s.code() == code &&
         std::string(s.message()).find(substr) != std::string::npos;
}

}  // namespace shutter::testing

#define ASSERT_OK(expr) ASSERT_THAT(expr, ::shutter::testing::IsOk())
#define EXPECT_OK(expr) EXPECT_THAT(expr, ::shutter::testing::IsOk())

#endif  // SHUTTER_TESTS_TESTING_STATUS_MATCHERS_H_
