# Integration tests of the C API (tests/test_api_*.c): each program starts its
# own real local cluster (a head and node daemons, as child processes) with
# loom_connect("local"), in its own temporary state directory and on its own
# ports, so they can run in parallel with each other and with other tests.
foreach(t test_api_basic test_api_failures test_api_graph test_api_command test_api_auth
          test_api_store test_api_actors test_api_placement)
  if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${t}.c)
    loom_cluster_test(${t})
    set_tests_properties(${t} PROPERTIES LABELS "integration;api" TIMEOUT 180)
  endif()
endforeach()
