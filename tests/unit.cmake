loom_unit_test(test_wire)
