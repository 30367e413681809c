/* tests/testutil.h — the few macros loom's C tests use: CHECK a condition,
 * CHECK_RC a call's return code, and a summary line ctest can read. */
#ifndef LOOM_TESTUTIL_H
#define LOOM_TESTUTIL_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int loom_test_failures = 0;
static int loom_test_checks = 0;

#define CHECK(cond) do { loom_test_checks++; if (!(cond)) { \
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    loom_test_failures++; } } while (0)
#define CHECK_RC(call, want) do { int rc_ = (call); loom_test_checks++; if (rc_ != (want)) { \
    fprintf(stderr, "%s:%d: %s returned %d (%s), want %d\n", __FILE__, __LINE__, \
            #call, rc_, loom_strerror(rc_), (want)); loom_test_failures++; } } while (0)
#define REQUIRE(cond) do { if (!(cond)) { \
    fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond); \
    exit(1); } } while (0)
#define TEST_DONE() (printf("%d checks, %d failed\n", loom_test_checks, loom_test_failures), \
                     loom_test_failures ? 1 : 0)
#endif
