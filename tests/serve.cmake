# Tests of serve/ (included by tests/CMakeLists.txt): the tensor wire format,
# the safetensors reader/writer and the MLP as unit tests; the Model runtime
# on a real local cluster; the digits example trained and checked end to end
# (skipped, exit 77, where the dataset cannot be fetched).
if(TARGET loom_serve_core)
  foreach(t test_tensor test_safetensors test_mlp)
    add_executable(${t} ${t}.c)
    target_link_libraries(${t} PRIVATE loom_serve_core)
    loom_link_internal(${t})
    add_test(NAME ${t} COMMAND ${t})
    set_tests_properties(${t} PROPERTIES TIMEOUT 120 LABELS unit)
  endforeach()

  add_executable(test_api_model test_api_model.c)
  target_link_libraries(test_api_model PRIVATE loom_serve_core)
  loom_link_internal(test_api_model)
  target_compile_definitions(test_api_model PRIVATE
    LOOM_MLP_LIB="$<TARGET_FILE:loom_mlp>"
    LOOM_EXAMPLES_LIB="$<TARGET_FILE:loom_examples>"
    LOOM_BIN_PATH="$<TARGET_FILE:loom_cli>")
  add_dependencies(test_api_model loom_mlp loom_cli)
  add_test(NAME test_api_model COMMAND test_api_model)
  set_tests_properties(test_api_model PROPERTIES TIMEOUT 300
    ENVIRONMENT "LOOM_BIN=$<TARGET_FILE:loom_cli>")

  add_test(NAME serve_digits
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/serve_digits.sh $<TARGET_FILE:digits_mlp>
            ${CMAKE_SOURCE_DIR})
  set_tests_properties(serve_digits PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77)
endif()
