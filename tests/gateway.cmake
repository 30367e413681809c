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

  # fuzz/CMakeLists.txt links its targets with libloom only; fuzz_http also
  # needs libuv and http-parser, which come with loom_gateway_http (its
  # sources under test are compiled into the libFuzzer binary itself, so the
  # archive's copies are never pulled in).  Linked once the fuzz targets exist.
  function(loom_gateway_link_fuzz)
    foreach(t fuzz_http_corpus fuzz_http)
      if(TARGET ${t})
        target_link_libraries(${t} PRIVATE loom_gateway_http)
      endif()
    endforeach()
  endfunction()
  cmake_language(DEFER CALL loom_gateway_link_fuzz)
endif()
