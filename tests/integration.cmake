# Integration tests of the C API (tests/test_api_*.c): each program starts its
# own real local cluster (a head and node daemons, as child processes) with
# loom_connect("local"), in its own temporary state directory and on its own
# ports, so they can run in parallel with each other and with other tests.
foreach(t test_api_basic test_api_failures test_api_graph test_api_command test_api_auth
          test_api_store test_api_actors test_api_placement test_api_collective
          test_api_retries)
  if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${t}.c)
    loom_cluster_test(${t})
    set_tests_properties(${t} PROPERTIES LABELS "integration;api" TIMEOUT 180)
  endif()
endforeach()

# a lost put made live again (white-box: puts under a chosen ref)
loom_cluster_test(test_lost_put WHITE_BOX)
set_tests_properties(test_lost_put PROPERTIES LABELS "integration;api" TIMEOUT 180)

# The GPU paths (on their CPU fallback where the machine has no GPU).
if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/test_api_gpu.c)
  loom_cluster_test(test_api_gpu)
  target_compile_definitions(test_api_gpu PRIVATE LOOM_GPU_EXAMPLES_LIB="$<TARGET_FILE:loom_gpu_examples>")
  add_dependencies(test_api_gpu loom_gpu_examples)
  set_tests_properties(test_api_gpu PROPERTIES LABELS "integration;api;gpu" TIMEOUT 180)
endif()
