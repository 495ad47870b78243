find_package(GTest REQUIRED)
include(GoogleTest)

# Under the sanitizers a process start costs about 0.25 s of CPU (ASan's
# set-up, the loader, static initializers, LeakSanitizer's scan at exit):
# 240 unit tests, each in a process of its own, spent about 60 s of CPU
# that way on the two cores the sanitizer phase saturates. With this on,
# a binary declared UNIT is one ctest test that runs all of its tests in
# one process (GoogleTest's own default); scripts/test.sh turns it on in
# the sanitizer tree. The release tree keeps one ctest test per test.
option(SHUTTER_WHOLE_UNIT_TESTS
       "Register each UNIT test binary as one ctest test" OFF)

# shutter_test(NAME SOURCES... LIBS libs... [LABELS labels...] [TIMEOUT s]
#              [COST s] [PROCESSORS n] [RESOURCE_GROUPS groups] [JUMBO n]
#              [SOURCE_COSTS file s file s...] [UNIT] [WHOLE_COST s])
# Declares one GoogleTest binary and registers each of its tests with ctest.
# COST is about how long one of its tests takes, in seconds: ctest starts
# the costliest tests first, so in a fresh tree (no timings of an earlier
# run yet, as in CI) the long integration tests do not end up last, with
# the other slots idle behind them. PROCESSORS is how many of ctest's -j
# slots one of its tests takes (1 unless given), for tests that run many
# processes at once. RESOURCE_GROUPS: what one of its tests takes from the
# resources of tests/resources.json ("ha:1"), which ctest honours when run
# with --resource-spec-file (scripts/test.sh does). JUMBO: compile the
# sources as n jumbo units (cmake/Jumbo.cmake), for binaries of many test
# files whose compile time is mostly the same gtest, gRPC and protobuf
# headers. SOURCE_COSTS: sources given with a COST each (instead of
# SOURCES and COST), for a binary of test files whose tests take different
# times: each file's tests are registered with its own COST (one discovery
# per file, filtered to the suites it declares with TEST, TEST_F or TEST_P;
# a TEST_P suite's tests are named <instantiation>/<suite>.<test>).
# UNIT: a binary of unit tests, registered as one ctest test when
# SHUTTER_WHOLE_UNIT_TESTS is on (above); WHOLE_COST is then its COST, about
# how many seconds the whole binary takes under the sanitizers.
function(shutter_test name)
  cmake_parse_arguments(ARG "UNIT"
                        "TIMEOUT;COST;PROCESSORS;RESOURCE_GROUPS;JUMBO;WHOLE_COST"
                        "SOURCES;LIBS;LABELS;SOURCE_COSTS"
                        ${ARGN})
  set(costs)
  while(ARG_SOURCE_COSTS)
    list(POP_FRONT ARG_SOURCE_COSTS source cost)
    list(APPEND ARG_SOURCES ${source})
    list(APPEND costs ${cost})
  endwhile()
  if(ARG_JUMBO)
    add_executable(${name})
    shutter_jumbo(${name} ${ARG_JUMBO} ${PROJECT_SOURCE_DIR}/tests ${ARG_SOURCES})
  else()
    add_executable(${name} ${ARG_SOURCES})
  endif()
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gmock GTest::gtest GTest::gtest_main)
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 120)
  endif()
  set(props TIMEOUT ${ARG_TIMEOUT})
  if(ARG_COST)
    list(APPEND props COST ${ARG_COST})
  endif()
  if(ARG_PROCESSORS)
    list(APPEND props PROCESSORS ${ARG_PROCESSORS})
  endif()
  if(ARG_RESOURCE_GROUPS)
    list(APPEND props RESOURCE_GROUPS ${ARG_RESOURCE_GROUPS})
  endif()
  if(ARG_LABELS)
    list(APPEND props LABELS "${ARG_LABELS}")
  endif()
  if(ARG_UNIT AND SHUTTER_WHOLE_UNIT_TESTS)
    add_test(NAME ${name} COMMAND ${name} --gtest_brief=1)
    if(NOT ARG_WHOLE_COST)
      set(ARG_WHOLE_COST 1)
    endif()
    set_tests_properties(${name} PROPERTIES TIMEOUT 600 COST ${ARG_WHOLE_COST})
    if(ARG_LABELS)
      set_tests_properties(${name} PROPERTIES LABELS "${ARG_LABELS}")
    endif()
    return()
  endif()
  if(NOT costs)
    gtest_discover_tests(${name} PROPERTIES ${props} DISCOVERY_TIMEOUT 30)
    return()
  endif()
  foreach(source cost IN ZIP_LISTS ARG_SOURCES costs)
    file(STRINGS ${source} declarations REGEX "^TEST(_F|_P)?\\(")
    set(filter "")
    foreach(line IN LISTS declarations)
      if(NOT line MATCHES "^TEST(_F|_P)?\\(([A-Za-z0-9_]+),")
        # Its tests would be in the binary but never run.
        message(FATAL_ERROR "${source}: the suite of \"${line}\" is not on "
                            "its line; keep TEST(Suite, on one line")
      endif()
      string(APPEND filter "${CMAKE_MATCH_2}.*:*/${CMAKE_MATCH_2}.*:")
    endforeach()
    gtest_discover_tests(${name} TEST_FILTER "${filter}"
      PROPERTIES ${props} COST ${cost} DISCOVERY_TIMEOUT 30)
  endforeach()
endfunction()
