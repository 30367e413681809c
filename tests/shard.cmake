# shard/: the dataset readers (unit test) and `loom infer` on a cluster.
if(TARGET loom_shard_core)
  if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/test_shard_dataset.c)
    add_executable(test_shard_dataset test_shard_dataset.c)
    target_link_libraries(test_shard_dataset PRIVATE loom_shard_core)
    loom_link_internal(test_shard_dataset)
    add_test(NAME test_shard_dataset COMMAND test_shard_dataset)
    set_tests_properties(test_shard_dataset PROPERTIES TIMEOUT 300 LABELS unit)
  endif()
  loom_script_test(sys_shard sys_shard.sh)
  set_tests_properties(sys_shard PROPERTIES TIMEOUT 900 LABELS "system;shard"
    SKIP_REGULAR_EXPRESSION " 1 skipped")
endif()
