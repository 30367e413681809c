/* tests/restart_order_driver.c — the driver of sys_restart_order.sh: actor
 * calls that wait at the head keep their order when the head restarts.
 *
 *   restart_order_driver ADDRESS LIB N HOLD_MS
 *
 * On a cluster with one CPU: a task of HOLD_MS ms takes the CPU, so a
 * Counter actor that asks for 1 CPU waits for it, and N calls log_add(i)
 * (i = 1..N) wait at the head with it.  A synchronous key-value put after
 * them means the head has written them to its tables; the driver then says
 * "queued N calls" on stdout and the test kills and restarts the head.  When
 * the task ends the actor starts and runs the calls: call i must return i
 * (the history's length after it) and history() must be 1..N.  Prints
 * "restart_order_driver: OK" (exit 0), or what differed (exit 1). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <loom/loom.h>
#include <loom/value.h>

#define MAX_CALLS 200
#define WAIT_MS 120000

static int fail(loom_client *c, const char *what, int rc)
{
    printf("restart_order_driver: FAILED: %s: %s: %s\n", what, loom_strerror(rc), c ? loom_last_error(c) : "");
    return 1;
}

/* The integer a call returned. */
static int get_i64(loom_client *c, loom_ref r, int64_t *x)
{
    loom_value *v = NULL;
    int rc = loom_get(c, r, WAIT_MS, &v);
    if (rc) return rc;
    loom_unpack u;
    loom_unpack_init(&u, loom_value_data(v), loom_value_size(v));
    rc = loom_unpack_i64(&u, x) ? LOOM_EINVAL : 0;
    loom_value_release(&v);
    return rc;
}

/* history(): the values added, in the order the actor ran the calls; 0 when
 * it is 1..n. */
static int check_history(loom_client *c, loom_actor a, int n)
{
    loom_ref r;
    loom_value *v = NULL;
    int rc = loom_actor_call(c, a, "history", NULL, 0, &r);
    if (!rc) rc = loom_get(c, r, WAIT_MS, &v);
    if (rc) return fail(c, "history()", rc);
    loom_unpack u;
    loom_unpack_init(&u, loom_value_data(v), loom_value_size(v));
    uint32_t len = 0;
    int bad = loom_unpack_array(&u, &len) || len != (uint32_t)n;
    printf("history:");
    for (uint32_t i = 0; i < len && i < MAX_CALLS; i++) {
        int64_t x = 0;
        if (loom_unpack_i64(&u, &x)) {
            bad = 1;
            break;
        }
        printf(" %lld", (long long)x);
        if (x != (int64_t)i + 1) bad = 1;
    }
    printf("\n");
    loom_value_release(&v);
    if (bad) printf("restart_order_driver: FAILED: the history is not 1..%d in order\n", n);
    return bad;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: restart_order_driver ADDRESS LIB N HOLD_MS\n");
        return 2;
    }
    int n = atoi(argv[3]);
    int64_t hold_ms = atoll(argv[4]);
    if (n < 1 || n > MAX_CALLS || hold_ms < 1) {
        fprintf(stderr, "restart_order_driver: N in 1..%d, HOLD_MS > 0\n", MAX_CALLS);
        return 2;
    }
    loom_client *c = NULL;
    loom_ref lib, hold, calls[MAX_CALLS];
    int rc = loom_connect(argv[1], NULL, &c);
    if (rc) return fail(NULL, "connect", rc);
    if ((rc = loom_library_load(c, argv[2], &lib))) return fail(c, "library", rc);
    /* the one CPU, taken for hold_ms */
    loom_pack *p = loom_pack_new();
    if (!p) return fail(c, "pack", LOOM_ENOMEM);
    loom_pack_i64(p, hold_ms);
    size_t first = loom_pack_size(p);
    loom_pack_i64(p, 0);
    const uint8_t *b = loom_pack_data(p);
    loom_arg hargs[2] = {loom_arg_value(b, first), loom_arg_value(b + first, loom_pack_size(p) - first)};
    if ((rc = loom_submit(c, lib, "slow_value", hargs, 2, NULL, &hold))) return fail(c, "submit slow_value", rc);
    /* the actor waits for that CPU, its calls with it */
    loom_actor_opts ao;
    memset(&ao, 0, sizeof ao);
    ao.res.num_cpus = 1;
    ao.max_task_retries = 3;
    uint8_t zero = 0; /* msgpack 0 */
    loom_arg init = loom_arg_value(&zero, 1);
    loom_actor a;
    if ((rc = loom_actor_create(c, lib, "Counter", &init, 1, &ao, &a))) return fail(c, "create Counter", rc);
    for (int i = 0; i < n; i++) {
        loom_pack_reset(p);
        loom_pack_i64(p, i + 1);
        loom_arg arg = loom_arg_value(loom_pack_data(p), loom_pack_size(p));
        if ((rc = loom_actor_call(c, a, "log_add", &arg, 1, &calls[i]))) return fail(c, "log_add", rc);
    }
    loom_pack_destroy(&p);
    /* answered after the head's commit, so after the calls' */
    if ((rc = loom_kv_put(c, "restart-order/barrier", "1", 1))) return fail(c, "kv put", rc);
    printf("queued %d calls\n", n);
    fflush(stdout);
    int64_t x = 0;
    if ((rc = get_i64(c, hold, &x))) return fail(c, "slow_value", rc);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if ((rc = get_i64(c, calls[i], &x))) return fail(c, "a log_add call", rc);
        if (x != i + 1) {
            if (++bad <= 5) printf("call %d (log_add(%d)) ran as number %lld\n", i + 1, i + 1, (long long)x);
        }
    }
    bad |= check_history(c, a, n);
    loom_actor_kill(c, a);
    loom_disconnect(&c);
    printf(bad ? "restart_order_driver: FAILED\n" : "restart_order_driver: OK\n");
    return bad ? 1 : 0;
}
