loom_unit_test(test_wire)
loom_unit_test(test_gpu)
