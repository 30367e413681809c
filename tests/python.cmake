# tests/python.cmake — the pytest suites of `import loom` (tests/python/),
# run by Debian's python3 against the build's package (build/python), loom
# binary and task libraries.  Included from tests/CMakeLists.txt; skipped
# where python/ was not built (no libpython3-dev) or pytest is missing.
if(NOT TARGET loom_ext)
  return()
endif()
execute_process(COMMAND ${LOOM_PYTHON3} -c "import pytest, cloudpickle"
  RESULT_VARIABLE loom_pytest_missing OUTPUT_QUIET ERROR_QUIET)
if(loom_pytest_missing)
  message(STATUS "loom: python3-pytest or python3-cloudpickle missing; not testing Python")
  return()
endif()
if(LOOM_TSAN)
  # an uninstrumented interpreter cannot host a ThreadSanitizer extension
  return()
endif()

set(loom_py_env
  "PYTHONPATH=${CMAKE_BINARY_DIR}/python"
  "LOOM_BIN=$<TARGET_FILE:loom_cli>"
  "LOOM_EXAMPLES_LIB=$<TARGET_FILE:loom_examples>"
  "PYTHONDONTWRITEBYTECODE=1")
set(loom_py_cmd ${LOOM_PYTHON3} -m pytest -q -p no:cacheprovider)
if(LOOM_SANITIZE)
  # the extension is instrumented, the interpreter is not: preload the ASan
  # runtime into python3 and suppress the interpreter's own leaks
  execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=libasan.so
    OUTPUT_VARIABLE loom_libasan OUTPUT_STRIP_TRAILING_WHITESPACE)
  list(APPEND loom_py_env "LD_PRELOAD=${loom_libasan}"
    "LSAN_OPTIONS=suppressions=${CMAKE_CURRENT_SOURCE_DIR}/python/lsan.supp:print_suppressions=0:malloc_context_size=2"
)
endif()
# one ctest per file (py_basic for test_basic.py, ...), so that ctest -j runs
# them side by side, each with its own cluster
file(GLOB loom_py_tests CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/python/test_*.py)
foreach(file ${loom_py_tests})
  get_filename_component(name ${file} NAME_WE)
  string(REGEX REPLACE "^test_" "py_" name ${name})
  add_test(NAME ${name} COMMAND ${loom_py_cmd} ${file})
  set_tests_properties(${name} PROPERTIES TIMEOUT 180 LABELS python ENVIRONMENT "${loom_py_env}")
endforeach()
