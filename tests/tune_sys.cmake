# tune/: sweeps on a real cluster (tests/sys_tune.sh) and the digits
# benchmark of ASHA against grid search (tests/sys_tune_digits.sh).
loom_script_test(sys_tune sys_tune.sh)
set_tests_properties(sys_tune PROPERTIES LABELS "system;tune" SKIP_REGULAR_EXPRESSION " 1 skipped")
if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/sys_tune_digits.sh)
  loom_script_test(sys_tune_digits sys_tune_digits.sh)
  set_tests_properties(sys_tune_digits PROPERTIES LABELS "system;tune" SKIP_REGULAR_EXPRESSION " 1 skipped")
endif()
# the sweep API from C on a local cluster
find_package(Threads REQUIRED)
add_executable(test_api_tune test_api_tune.c)
target_link_libraries(test_api_tune PRIVATE loom_tune PkgConfig::JANSSON Threads::Threads)
loom_link_internal(test_api_tune)
target_compile_definitions(test_api_tune PRIVATE
  LOOM_TUNE_EXAMPLES_LIB="$<TARGET_FILE:loom_tune_examples>"
  LOOM_EXAMPLES_LIB="$<TARGET_FILE:loom_examples>"
  LOOM_BIN_PATH="$<TARGET_FILE:loom_cli>")
add_dependencies(test_api_tune loom_tune_examples loom_cli)
add_test(NAME test_api_tune COMMAND test_api_tune)
set_tests_properties(test_api_tune PROPERTIES TIMEOUT 300 LABELS tune
  ENVIRONMENT "LOOM_BIN=$<TARGET_FILE:loom_cli>")
