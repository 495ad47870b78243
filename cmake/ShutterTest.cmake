find_package(GTest REQUIRED)
include(GoogleTest)

# shutter_test(NAME SOURCES... LIBS libs... [LABELS labels...] [TIMEOUT s]
#              [COST s] [PROCESSORS n] [RESOURCE_GROUPS groups] [JUMBO n])
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
# headers.
function(shutter_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT;COST;PROCESSORS;RESOURCE_GROUPS;JUMBO"
                        "SOURCES;LIBS;LABELS"
                        ${ARGN})
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
  gtest_discover_tests(${name} PROPERTIES ${props} DISCOVERY_TIMEOUT 30)
endfunction()
