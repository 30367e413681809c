# System tests: shell scripts that drive the `loom` command, the example
# drivers and real clusters (head + node daemons) end to end.  Each script
# makes its own state dir and ports and stops what it started; helpers are in
# tests/lib.sh (shell) and tests/loom_fuzz.py (a ZMTP/msgpack fuzzer, stdlib
# only).  sys_netns needs root for network namespaces and skips without it.
loom_script_test(sys_cli sys_cli.sh)
loom_script_test(sys_auth sys_auth.sh)
loom_script_test(sys_garbage sys_garbage.sh)
loom_script_test(sys_netns sys_netns.sh)
loom_script_test(sys_examples sys_examples.sh)
loom_script_test(sys_node_death sys_node_death.sh)
loom_script_test(sys_dp_train sys_dp_train.sh)
set_tests_properties(sys_cli sys_auth sys_garbage sys_netns sys_examples sys_node_death sys_dp_train
  PROPERTIES LABELS system)
# a skipped test (netns without root, dp_train without its dataset) prints
# this line; ctest shows it as skipped, not passed
set_tests_properties(sys_netns sys_dp_train PROPERTIES SKIP_REGULAR_EXPRESSION " 1 skipped")
# resources, placement and the actor commands through the CLI
loom_script_test(sys_actors_cli sys_actors_cli.sh)
set_tests_properties(sys_actors_cli PROPERTIES LABELS system)
