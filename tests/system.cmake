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
# every command's --help/-h, `loom help X`, usage errors and the bash completion
loom_script_test(sys_cli_help sys_cli_help.sh)
set_tests_properties(sys_cli_help PROPERTIES LABELS system)
# resources, placement and the actor commands through the CLI
loom_script_test(sys_actors_cli sys_actors_cli.sh)
set_tests_properties(sys_actors_cli PROPERTIES LABELS system)
# chaos: executors, daemons (and with LOOM_CHAOS_HEAD=1 the head) killed with
# SIGKILL at seeded random moments under a 10,000-task graph and an actor
# workload (examples/chaos_driver.c); seeds from LOOM_CHAOS_SEEDS
loom_script_test(sys_chaos sys_chaos.sh)
set_tests_properties(sys_chaos PROPERTIES TIMEOUT 600 LABELS "system;chaos")
# a network cut: a daemon's veth set down under a running graph (needs root for
# network namespaces; skipped otherwise)
loom_script_test(sys_netcut sys_netcut.sh)
set_tests_properties(sys_netcut PROPERTIES LABELS "system;chaos" SKIP_REGULAR_EXPRESSION " 1 skipped")
# the head killed mid-graph and restarted with its state dir
loom_script_test(sys_head_restart sys_head_restart.sh)
set_tests_properties(sys_head_restart PROPERTIES LABELS system)
# the HTTP gateway of a real head, driven by curl and Python's http.client
loom_script_test(sys_gateway sys_gateway.sh)
set_tests_properties(sys_gateway PROPERTIES LABELS system SKIP_REGULAR_EXPRESSION " 1 skipped")
# the gateway over TLS (--tls-cert/--tls-key), with a CA the test makes
loom_script_test(sys_gateway_tls sys_gateway_tls.sh)
set_tests_properties(sys_gateway_tls PROPERTIES LABELS "system;tsan" SKIP_REGULAR_EXPRESSION " 1 skipped")
if(LOOM_TSAN)
  set_tests_properties(sys_gateway_tls PROPERTIES TIMEOUT 900)
endif()
# model serving end to end: train, register, deploy, classify over KServe v2
loom_script_test(sys_serving sys_serving.sh)
set_tests_properties(sys_serving PROPERTIES LABELS system SKIP_REGULAR_EXPRESSION " 1 skipped")
# the gateway's bearer tokens and tenancy (--http-auth)
loom_script_test(sys_gateway_auth sys_gateway_auth.sh)
set_tests_properties(sys_gateway_auth PROPERTIES LABELS system)
# OIDC access tokens (JWTs from an identity provider the test makes)
loom_script_test(sys_gateway_oidc sys_gateway_oidc.sh)
set_tests_properties(sys_gateway_oidc PROPERTIES LABELS system)
# accounting, quotas and the audit log
loom_script_test(sys_usage sys_usage.sh)
set_tests_properties(sys_usage PROPERTIES LABELS system)
# loom on a real Slurm (tests/slurm_env.sh brings up a private munged,
# slurmctld and slurmd's): submit, cancel, two clusters on one node; skipped
# when Slurm cannot be installed or the test is not root
loom_script_test(sys_slurm sys_slurm.sh)
set_tests_properties(sys_slurm PROPERTIES TIMEOUT 600 LABELS "system;slurm" SKIP_REGULAR_EXPRESSION " 1 skipped")
# the same with each Slurm node a separate host (a network namespace)
loom_script_test(sys_slurm_netns sys_slurm_netns.sh)
set_tests_properties(sys_slurm_netns PROPERTIES TIMEOUT 400 LABELS "system;slurm" SKIP_REGULAR_EXPRESSION " 1 skipped")
# libloom.so, libloom_tune.so and libloom_shard.so export only what
# include/loom/ declares (LOOM_API)
loom_script_test(check_exports check_exports.sh)
set_tests_properties(check_exports PROPERTIES LABELS unit)
# a task library lost with its nodes is live again when put again (after new
# daemons join, and after loom stop / loom start on the same state dir)
loom_script_test(sys_lost_object sys_lost_object.sh)
set_tests_properties(sys_lost_object PROPERTIES LABELS system)
# actor calls waiting at the head keep their order across a head restart
add_executable(restart_order_driver restart_order_driver.c)
target_link_libraries(restart_order_driver PRIVATE loom)
add_dependencies(restart_order_driver loom_examples loom_cli)
loom_script_test(sys_restart_order sys_restart_order.sh)
set_tests_properties(sys_restart_order PROPERTIES LABELS system)
# a state directory another user owns, or may write in, is refused (root only)
loom_script_test(sys_state_dir sys_state_dir.sh)
set_tests_properties(sys_state_dir PROPERTIES LABELS system SKIP_REGULAR_EXPRESSION " 1 skipped")
# cluster traffic is encrypted (CURVE): tcpdump on the cluster's ports sees
# neither the secret nor a task's argument; a replayed handshake is refused
# (root and tcpdump; skipped otherwise)
loom_script_test(sys_curve sys_curve.sh)
set_tests_properties(sys_curve PROPERTIES LABELS system SKIP_REGULAR_EXPRESSION " 1 skipped")
# the Python examples (examples/python/) on a 3-daemon cluster; skipped where
# the Python package was not built or python3-sklearn is missing
loom_script_test(sys_py_examples sys_py_examples.sh)
set_tests_properties(sys_py_examples PROPERTIES LABELS system SKIP_REGULAR_EXPRESSION " 1 skipped")
if(LOOM_SANITIZE)
  set_tests_properties(sys_py_examples PROPERTIES ENVIRONMENT "LOOM_SANITIZED=1")
endif()
# the head with many nodes: 20 and then 200 simulated nodes (bench/simnodes.c:
# real sockets, CURVE, HELLO, heartbeats; tasks finished at once) and 3,000
# no-op tasks that ask for them with SPREAD: every task is placed and
# finishes (loom_scale exits non-zero otherwise); the rates it prints are
# bench/README.md's, not checked here
if(TARGET loom_scale)
  add_test(NAME sys_sim_nodes COMMAND loom_scale --sim-nodes 20,200 --sim-tasks 3000)
  set_tests_properties(sys_sim_nodes PROPERTIES LABELS system TIMEOUT 300)
endif()
