loom_unit_test(test_wire)
loom_unit_test(test_gpu)
loom_unit_test(test_pool)
