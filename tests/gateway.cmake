# tests/gateway.cmake — tests of the gateway's HTTP server core and metrics
# registry (gateway/http.c, gateway/metrics.c): real sockets on 127.0.0.1.
if(TARGET loom_gateway_http)
  find_package(Threads REQUIRED)
  foreach(name test_http test_metrics)
    add_executable(${name} ${name}.c)
    target_link_libraries(${name} PRIVATE loom_gateway_http loom Threads::Threads)
    add_test(NAME ${name} COMMAND ${name})
    set_tests_properties(${name} PROPERTIES TIMEOUT 120)
  endforeach()

endif()
