# tune/: sweeps on a real cluster (tests/sys_tune.sh) and the digits
# benchmark of ASHA against grid search (tests/sys_tune_digits.sh).
loom_script_test(sys_tune sys_tune.sh)
set_tests_properties(sys_tune PROPERTIES LABELS "system;tune" SKIP_REGULAR_EXPRESSION " 1 skipped")
if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/sys_tune_digits.sh)
  loom_script_test(sys_tune_digits sys_tune_digits.sh)
  set_tests_properties(sys_tune_digits PROPERTIES LABELS "system;tune" SKIP_REGULAR_EXPRESSION " 1 skipped")
endif()
