#ifndef SHUTTER_TESTS_TESTING_SANITIZERS_H_
#define SHUTTER_TESTS_TESTING_SANITIZERS_H_

// SHUTTER_TEST_UNDER_ASAN is defined in a build with AddressSanitizer
// (scripts/test.sh's clang tree), where integration tests that run the
// same scenario on several repository stores may leave out a variant
// whose store the sanitizers see elsewhere (docs/development.md, "The
// clang job"): the two cores are saturated there, and each variant costs
// tens of seconds of the suite.
#if defined(__SANITIZE_ADDRESS__)
#define SHUTTER_TEST_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SHUTTER_TEST_UNDER_ASAN 1
#endif
#endif

#endif  // SHUTTER_TESTS_TESTING_SANITIZERS_H_
