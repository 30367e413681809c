/* tests/test_api_basic.c — the basic driver API on a real local cluster (a
 * head and one node daemon with four executors started by loom_connect):
 * put/get of inline and stored values, zero-copy gets, submitting tasks with
 * value and ref arguments, get timeouts, loom_wait's n-of-m semantics,
 * release, cancel (queued and running, and what it does to dependents),
 * error names and argument checking. */
#include <inttypes.h>
#include "test_api_util.h"

/* Whether addr lies in a file mapping under /dev/shm (the node's LMDB store)
 * rather than in the heap: that is what zero-copy means here. */
static int mapped_from_shm(const void *addr)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return 0;
    char line[4096];
    int found = 0;
    uintptr_t a = (uintptr_t)addr;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) != 2) continue;
        if (a >= lo && a < hi && strstr(line, "/dev/shm/")) found = 1;
    }
    fclose(f);
    return found;
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (uint8_t)(x >> 16);
    }
}

static void test_put_get(loom_client *c)
{
    /* small values travel inline; sizes around the inline limit (16 KiB) */
    size_t sizes[] = {0, 1, 5, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 100 * 1024};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        uint8_t *buf = malloc(n ? n : 1);
        fill(buf, n, (uint32_t)k);
        loom_ref ref;
        CHECK_RC(loom_put(c, buf, n, &ref), LOOM_OK);
        loom_value *v = NULL;
        CHECK_RC(loom_get(c, ref, 10000, &v), LOOM_OK);
        CHECK(v && loom_value_size(v) == n);
        CHECK(v && (n == 0 || memcmp(loom_value_data(v), buf, n) == 0));
        /* a second get of the same ref gives the same bytes */
        loom_value *v2 = NULL;
        CHECK_RC(loom_get(c, ref, 0, &v2), LOOM_OK);
        CHECK(v2 && loom_value_size(v2) == n && (n == 0 || memcmp(loom_value_data(v2), buf, n) == 0));
        loom_value_release(&v);
        loom_value_release(&v2);
        CHECK(v == NULL && v2 == NULL);
        CHECK_RC(loom_release(c, ref), LOOM_OK);
        free(buf);
    }
    /* several refs released in one go: freed (a get asks the head, which
       no longer knows them) */
    {
        loom_ref many[3];
        for (int i = 0; i < 3; i++) CHECK_RC(loom_put(c, "abc", 3, &many[i]), LOOM_OK);
        CHECK_RC(loom_release_many(c, many, 3), LOOM_OK);
        CHECK_RC(loom_release_many(c, many, -1), LOOM_EINVAL);
        CHECK_RC(loom_release_many(c, NULL, 0), LOOM_OK);
        loom_value *gone = NULL;
        for (int i = 0; i < 3; i++) CHECK_RC(loom_get(c, many[i], 5000, &gone), LOOM_ENOTFOUND);
    }
    /* a text value */
    loom_ref r;
    CHECK_RC(loom_put(c, "hello", 5, &r), LOOM_OK);
    loom_value *v = NULL;
    CHECK_RC(loom_get(c, r, 5000, &v), LOOM_OK);
    CHECK(v && loom_value_size(v) == 5 && !memcmp(loom_value_data(v), "hello", 5));
    loom_value_release(&v);
    /* two puts of the same bytes are two objects */
    loom_ref r2;
    CHECK_RC(loom_put(c, "hello", 5, &r2), LOOM_OK);
    CHECK(memcmp(r.id, r2.id, LOOM_ID_LEN) != 0);
    /* a value stays readable until loom_value_release, even after its ref is
       released (the small value is the client's own copy) */
    CHECK_RC(loom_get(c, r2, 5000, &v), LOOM_OK);
    loom_value *v2 = NULL;
    CHECK_RC(loom_get(c, r2, 5000, &v2), LOOM_OK);
    CHECK_RC(loom_release(c, r2), LOOM_OK);
    char other[5] = "world";
    loom_ref r3;
    CHECK_RC(loom_put(c, other, 5, &r3), LOOM_OK);
    CHECK(v && loom_value_size(v) == 5 && !memcmp(loom_value_data(v), "hello", 5));
    loom_value_release(&v);
    CHECK(v2 && loom_value_size(v2) == 5 && !memcmp(loom_value_data(v2), "hello", 5));
    loom_value_release(&v2);
    loom_release(c, r3);
}

static void test_large_zero_copy(loom_client *c, loom_ref lib)
{
    const size_t n = 50u << 20;
    uint8_t *buf = malloc(n);
    REQUIRE(buf);
    fill(buf, n, 7);
    loom_ref ref;
    int64_t t0 = t_now_ms();
    CHECK_RC(loom_put(c, buf, n, &ref), LOOM_OK);
    loom_value *v = NULL;
    CHECK_RC(loom_get(c, ref, 30000, &v), LOOM_OK);
    printf("put+get of 50 MB: %lld ms\n", (long long)(t_now_ms() - t0));
    REQUIRE(v);
    CHECK(loom_value_size(v) == n);
    CHECK(memcmp(loom_value_data(v), buf, n) == 0);
    /* the driver runs on the node's machine: the bytes are mapped from the store */
    CHECK(mapped_from_shm(loom_value_data(v)));
    const void *p = loom_value_data(v);

    /* a task reads the stored object by ref: length and echo */
    loom_ref lr, er;
    loom_arg a = loom_arg_ref(ref);
    CHECK_RC(loom_submit(c, lib, "length", &a, 1, NULL, &lr), LOOM_OK);
    CHECK_RC(loom_submit(c, lib, "echo", &a, 1, NULL, &er), LOOM_OK);
    int64_t len = -1;
    CHECK_RC(t_get_i64(c, lr, 30000, &len), LOOM_OK);
    CHECK(len == (int64_t)n);
    loom_value *ev = NULL;
    CHECK_RC(loom_get(c, er, 30000, &ev), LOOM_OK);
    CHECK(ev && loom_value_size(ev) == n && memcmp(loom_value_data(ev), buf, n) == 0);
    CHECK(ev && mapped_from_shm(loom_value_data(ev)));
    loom_value_release(&ev);
    CHECK_RC(loom_release(c, er), LOOM_OK);

    /* more store traffic while the view is held */
    uint8_t *other = malloc(8u << 20);
    fill(other, 8u << 20, 99);
    loom_ref o;
    CHECK_RC(loom_put(c, other, 8u << 20, &o), LOOM_OK);
    CHECK_RC(loom_release(c, o), LOOM_OK);
    free(other);
    /* and even once the object itself is released (and deleted from the
     * store), the mapping stays valid until the value is released */
    CHECK_RC(loom_release(c, ref), LOOM_OK);
    usleep(300 * 1000);
    CHECK(loom_value_data(v) == p);
    CHECK(memcmp(loom_value_data(v), buf, n) == 0);
    loom_value_release(&v);

    /* a large argument given by value is put by the client on the way */
    loom_arg big = loom_arg_value(buf, 1u << 20);
    loom_ref lr2;
    CHECK_RC(loom_submit(c, lib, "length", &big, 1, NULL, &lr2), LOOM_OK);
    CHECK_RC(t_get_i64(c, lr2, 30000, &len), LOOM_OK);
    CHECK(len == 1 << 20);
    free(buf);
}

static void test_submit(loom_client *c, loom_ref lib)
{
    t_int a = t_i64(2), b = t_i64(40);
    loom_arg args[2] = {t_arg_i64(&a), t_arg_i64(&b)};
    loom_ref sum;
    CHECK_RC(loom_submit(c, lib, "add", args, 2, NULL, &sum), LOOM_OK);
    int64_t x = 0;
    CHECK_RC(t_get_i64(c, sum, 30000, &x), LOOM_OK);
    CHECK(x == 42);

    /* ref args: a put object and a task's output */
    loom_ref pr;
    t_int seven = t_i64(7);
    CHECK_RC(loom_put(c, seven.b, seven.n, &pr), LOOM_OK);
    loom_arg args2[3] = {loom_arg_ref(pr), loom_arg_ref(sum), t_arg_i64(&a)};
    loom_ref sum2;
    loom_task_opts to = {.name = "sum-of-three", .num_cpus = 1};
    CHECK_RC(loom_submit(c, lib, "add", args2, 3, &to, &sum2), LOOM_OK);
    CHECK_RC(t_get_i64(c, sum2, 30000, &x), LOOM_OK);
    CHECK(x == 51);

    /* echo of bytes, length of bytes */
    const char msg[] = "the quick brown fox";
    loom_arg e = loom_arg_value(msg, sizeof msg - 1);
    loom_ref er, lr;
    CHECK_RC(loom_submit(c, lib, "echo", &e, 1, NULL, &er), LOOM_OK);
    CHECK_RC(loom_submit(c, lib, "length", &e, 1, NULL, &lr), LOOM_OK);
    loom_value *v = NULL;
    CHECK_RC(loom_get(c, er, 30000, &v), LOOM_OK);
    CHECK(v && loom_value_size(v) == sizeof msg - 1 && !memcmp(loom_value_data(v), msg, sizeof msg - 1));
    loom_value_release(&v);
    CHECK_RC(t_get_i64(c, lr, 30000, &x), LOOM_OK);
    CHECK(x == (int64_t)sizeof msg - 1);

    /* no arguments; an empty argument */
    loom_ref nr;
    CHECK_RC(loom_submit(c, lib, "noop", NULL, 0, NULL, &nr), LOOM_OK);
    CHECK_RC(loom_get(c, nr, 30000, &v), LOOM_OK);
    CHECK(v && loom_value_size(v) == 2 && !memcmp(loom_value_data(v), "ok", 2));
    loom_value_release(&v);
    loom_arg empty = loom_arg_value(NULL, 0);
    CHECK_RC(loom_submit(c, lib, "length", &empty, 1, NULL, &lr), LOOM_OK);
    CHECK_RC(t_get_i64(c, lr, 30000, &x), LOOM_OK);
    CHECK(x == 0);

    /* a chain: each add consumes the previous output */
    loom_ref prev = sum;
    for (int i = 0; i < 20; i++) {
        t_int one = t_i64(1);
        loom_arg ca[2] = {loom_arg_ref(prev), t_arg_i64(&one)};
        CHECK_RC(loom_submit(c, lib, "add", ca, 2, NULL, &prev), LOOM_OK);
    }
    CHECK_RC(t_get_i64(c, prev, 30000, &x), LOOM_OK);
    CHECK(x == 62);

    /* the same library loaded twice is the same ref */
    loom_ref lib2;
    CHECK_RC(loom_library_load(c, LOOM_EXAMPLES_LIB, &lib2), LOOM_OK);
    CHECK(!memcmp(lib.id, lib2.id, LOOM_ID_LEN));

    /* a put object has no log */
    char *nolog = NULL;
    CHECK_RC(loom_logs(c, pr, &nolog, NULL), LOOM_ENOTFOUND);
    CHECK(nolog == NULL);

    /* function tasks write no log: an empty one */
    char *log = NULL;
    size_t loglen = 99;
    CHECK_RC(loom_logs(c, sum, &log, &loglen), LOOM_OK);
    CHECK(log && loglen == 0 && log[0] == 0);
    free(log);

    /* what a function task prints (stdout and stderr) is its log */
    loom_arg who = loom_arg_value("tour", 4);
    loom_ref hello;
    CHECK_RC(loom_submit(c, lib, "hello", &who, 1, NULL, &hello), LOOM_OK);
    loom_value *hv = NULL;
    CHECK_RC(loom_get(c, hello, 30000, &hv), LOOM_OK);
    CHECK(hv && loom_value_size(hv) == 11 && !memcmp(loom_value_data(hv), "hello, tour", 11));
    loom_value_release(&hv);
    log = NULL;
    CHECK_RC(loom_logs(c, hello, &log, &loglen), LOOM_OK);
    CHECK(log && strstr(log, "saying hello to tour\n") && strstr(log, "a line on stderr\n"));
    CHECK(log && !strstr(log, "executor")); /* only the task's own lines */
    free(log);
}

static void test_timeout(loom_client *c, loom_ref lib)
{
    loom_ref r;
    CHECK_RC(t_submit_i64(c, lib, "sleep_ms", 1500, &r), LOOM_OK);
    loom_value *v = (loom_value *)1;
    int64_t t0 = t_now_ms();
    CHECK_RC(loom_get(c, r, 200, &v), LOOM_ETIMEOUT);
    int64_t dt = t_now_ms() - t0;
    CHECK(dt >= 190 && dt < 1200);
    CHECK(v == NULL);
    CHECK_ERR_HAS(c, "not ready");
    /* timeout 0 polls */
    CHECK_RC(loom_get(c, r, 0, &v), LOOM_ETIMEOUT);
    int64_t x = 0;
    CHECK_RC(t_get_i64(c, r, -1, &x), LOOM_OK);
    CHECK(x == 1500);
    CHECK(t_now_ms() - t0 >= 1300);
}

static void test_wait(loom_client *c, loom_ref lib)
{
    loom_ref r[3];
    CHECK_RC(t_submit_i64(c, lib, "sleep_ms", 100, &r[0]), LOOM_OK);
    CHECK_RC(t_submit_i64(c, lib, "sleep_ms", 2500, &r[1]), LOOM_OK);
    CHECK_RC(t_submit_i64(c, lib, "sleep_ms", 4000, &r[2]), LOOM_OK);
    int ready[3] = {-1, -1, -1};
    int64_t t0 = t_now_ms();
    int n = loom_wait(c, r, 3, 1, 30000, ready);
    int64_t dt = t_now_ms() - t0;
    CHECK(n == 1);
    CHECK(ready[0] == 1 && ready[1] == 0 && ready[2] == 0);
    CHECK(dt < 2000);
    /* a timeout before num_ready: returns what is done */
    n = loom_wait(c, r, 3, 3, 100, ready);
    CHECK(n == 1);
    CHECK(ready[0] == 1 && ready[1] == 0 && ready[2] == 0);
    /* two of three */
    n = loom_wait(c, r, 3, 2, 30000, ready);
    CHECK(n == 2);
    CHECK(ready[0] == 1 && ready[1] == 1 && ready[2] == 0);
    CHECK(t_now_ms() - t0 >= 2000);
    /* all, with ready NULL allowed */
    n = loom_wait(c, r, 3, 3, 30000, NULL);
    CHECK(n == 3);
    n = loom_wait(c, r, 3, 3, 0, ready);
    CHECK(n == 3 && ready[0] && ready[1] && ready[2]);
    /* num_ready above n means all; n 0 is done at once */
    CHECK(loom_wait(c, r, 3, 10, 1000, ready) == 3);
    CHECK(loom_wait(c, r, 0, 0, 1000, NULL) == 0);
    /* a failed task counts as done */
    loom_ref f;
    CHECK_RC(loom_submit(c, lib, "fail", NULL, 0, NULL, &f), LOOM_OK);
    CHECK(loom_wait(c, &f, 1, 1, 30000, ready) == 1 && ready[0] == 1);
    /* a ref the cluster never heard of is done (it fails with ENOTFOUND) */
    loom_ref bogus;
    memset(&bogus, 0xab, sizeof bogus);
    CHECK(loom_wait(c, &bogus, 1, 1, 5000, ready) == 1);
}

static void test_release(loom_client *c, loom_ref lib)
{
    /* a put object */
    loom_ref r;
    CHECK_RC(loom_put(c, "abc", 3, &r), LOOM_OK);
    loom_value *v = NULL;
    CHECK_RC(loom_get(c, r, 5000, &v), LOOM_OK);
    loom_value_release(&v);
    CHECK_RC(loom_release(c, r), LOOM_OK);
    int64_t t0 = t_now_ms();
    CHECK_RC(loom_get(c, r, 10000, &v), LOOM_ENOTFOUND);
    CHECK(t_now_ms() - t0 < 2000);
    CHECK(v == NULL);

    /* a stored (large) put object */
    size_t n = 1u << 20;
    uint8_t *buf = calloc(1, n);
    CHECK_RC(loom_put(c, buf, n, &r), LOOM_OK);
    free(buf);
    CHECK_RC(loom_release(c, r), LOOM_OK);
    t0 = t_now_ms();
    CHECK_RC(loom_get(c, r, 10000, &v), LOOM_ENOTFOUND);
    CHECK(t_now_ms() - t0 < 2000);

    /* a task output */
    loom_ref s;
    CHECK_RC(t_submit_i64(c, lib, "value", 5, &s), LOOM_OK);
    int64_t x;
    CHECK_RC(t_get_i64(c, s, 30000, &x), LOOM_OK);
    CHECK_RC(loom_release(c, s), LOOM_OK);
    t0 = t_now_ms();
    CHECK_RC(loom_get(c, s, 10000, &v), LOOM_ENOTFOUND);
    CHECK(t_now_ms() - t0 < 2000);

    /* an object released while a queued task still needs it is kept for
     * the task, and then for its lineage while the task's output is held
     * (to rebuild that output if it is lost); freed after */
    loom_ref big, slow, len;
    uint8_t *b2 = calloc(1, 100000);
    CHECK_RC(loom_put(c, b2, 100000, &big), LOOM_OK);
    free(b2);
    CHECK_RC(t_submit_i64(c, lib, "sleep_ms", 300, &slow), LOOM_OK);
    loom_arg la[2] = {loom_arg_ref(big), loom_arg_ref(slow)};
    CHECK_RC(loom_submit(c, lib, "length", la, 2, NULL, &len), LOOM_OK);
    CHECK_RC(loom_release(c, big), LOOM_OK);
    CHECK_RC(t_get_i64(c, len, 30000, &x), LOOM_OK);
    CHECK(x == 100000);
    CHECK_RC(loom_release(c, len), LOOM_OK);
    usleep(100 * 1000);
    CHECK_RC(loom_get(c, big, 10000, &v), LOOM_ENOTFOUND);

    /* releasing twice, or a ref never held, is harmless */
    CHECK_RC(loom_release(c, big), LOOM_OK);
    loom_ref bogus;
    memset(&bogus, 0x5a, sizeof bogus);
    CHECK_RC(loom_release(c, bogus), LOOM_OK);
    CHECK_RC(loom_get(c, bogus, 5000, &v), LOOM_ENOTFOUND);
}

static void test_cancel(loom_client *c, loom_ref lib, int cpus)
{
    /* fill every executor, so the next task queues */
    loom_ref block[16];
    for (int i = 0; i < cpus; i++) CHECK_RC(t_submit_i64(c, lib, "sleep_ms", 10000, &block[i]), LOOM_OK);
    loom_ref queued, dep;
    CHECK_RC(t_submit_i64(c, lib, "sleep_ms", 10, &queued), LOOM_OK);
    t_int one = t_i64(1);
    loom_arg da[2] = {loom_arg_ref(queued), t_arg_i64(&one)};
    CHECK_RC(loom_submit(c, lib, "add", da, 2, NULL, &dep), LOOM_OK);
    usleep(300 * 1000);
    int64_t t0 = t_now_ms();
    CHECK_RC(loom_cancel(c, queued), LOOM_OK);
    loom_value *v = NULL;
    CHECK_RC(loom_get(c, queued, 5000, &v), LOOM_ECANCELLED);
    CHECK_RC(loom_get(c, dep, 5000, &v), LOOM_ECANCELLED);
    CHECK(t_now_ms() - t0 < 2000);

    /* a queued task whose output nobody holds any more, then cancelled: the
     * head must forget it cleanly (it is still in its ready queue) */
    loom_ref orphan;
    CHECK_RC(t_submit_i64(c, lib, "sleep_ms", 10, &orphan), LOOM_OK);
    CHECK_RC(loom_release(c, orphan), LOOM_OK);
    CHECK_RC(loom_cancel(c, orphan), LOOM_OK);
    loom_ref probe;
    CHECK_RC(t_submit_i64(c, lib, "value", 3, &probe), LOOM_OK); /* runs schedule() */
    CHECK_RC(loom_cancel(c, probe), LOOM_OK);
    CHECK_RC(loom_get(c, probe, 5000, &v), LOOM_ECANCELLED);

    /* running: the executor is killed; the get answers at once */
    loom_ref run = block[0], dep1, dep2;
    loom_arg ra[2] = {loom_arg_ref(run), t_arg_i64(&one)};
    CHECK_RC(loom_submit(c, lib, "add", ra, 2, NULL, &dep1), LOOM_OK);
    loom_arg rb[1] = {loom_arg_ref(dep1)};
    CHECK_RC(loom_submit(c, lib, "length", rb, 1, NULL, &dep2), LOOM_OK);
    t0 = t_now_ms();
    for (int i = 0; i < cpus; i++) CHECK_RC(loom_cancel(c, block[i]), LOOM_OK);
    CHECK_RC(loom_get(c, run, 5000, &v), LOOM_ECANCELLED);
    CHECK_ERR_HAS(c, "cancel");
    CHECK_RC(loom_get(c, dep1, 5000, &v), LOOM_ECANCELLED);
    CHECK_RC(loom_get(c, dep2, 5000, &v), LOOM_ECANCELLED);
    for (int i = 1; i < cpus; i++) CHECK_RC(loom_get(c, block[i], 5000, &v), LOOM_ECANCELLED);
    CHECK(t_now_ms() - t0 < 3000);
    /* a dependent submitted after the cancel fails at once too */
    loom_ref late;
    CHECK_RC(loom_submit(c, lib, "add", ra, 2, NULL, &late), LOOM_OK);
    CHECK_RC(loom_get(c, late, 5000, &v), LOOM_ECANCELLED);

    /* the executors were replaced: all CPUs run tasks again */
    loom_ref after[16];
    t0 = t_now_ms();
    for (int i = 0; i < cpus; i++) CHECK_RC(t_submit_i64(c, lib, "sleep_ms", 500, &after[i]), LOOM_OK);
    for (int i = 0; i < cpus; i++) {
        int64_t x = 0;
        CHECK_RC(t_get_i64(c, after[i], 30000, &x), LOOM_OK);
        CHECK(x == 500);
    }
    int64_t dt = t_now_ms() - t0;
    printf("%d sleep_ms(500) after cancel: %lld ms\n", cpus, (long long)dt);
    CHECK(dt < 500 * cpus);
    /* the resources of the cancelled tasks were given back */
    char *json = NULL;
    CHECK_RC(loom_status_json(c, &json), LOOM_OK);
    double used = -1;
    const char *p = json ? strstr(json, "\"cpus_used\"") : NULL;
    if (p) sscanf(strchr(p, ':') + 1, " %lf", &used);
    CHECK(used == 0);
    free(json);

    /* a task still waiting for its dependency: cancelled alone */
    loom_ref dep_src, waiting;
    CHECK_RC(t_submit_i64(c, lib, "sleep_ms", 400, &dep_src), LOOM_OK);
    loom_arg wa = loom_arg_ref(dep_src);
    CHECK_RC(loom_submit(c, lib, "length", &wa, 1, NULL, &waiting), LOOM_OK);
    CHECK_RC(loom_cancel(c, waiting), LOOM_OK);
    CHECK_RC(loom_get(c, waiting, 5000, &v), LOOM_ECANCELLED);
    int64_t y = 0;
    CHECK_RC(t_get_i64(c, dep_src, 30000, &y), LOOM_OK);
    CHECK(y == 400);

    /* cancelling a finished task changes nothing; an unknown one is not found */
    CHECK_RC(loom_cancel(c, after[0]), LOOM_OK);
    int64_t x = 0;
    CHECK_RC(t_get_i64(c, after[0], 1000, &x), LOOM_OK);
    CHECK(x == 500);
    loom_ref bogus;
    memset(&bogus, 0x11, sizeof bogus);
    CHECK_RC(loom_cancel(c, bogus), LOOM_ENOTFOUND);
}

static void test_resources(loom_client *c, loom_ref lib, int cpus)
{
    /* more CPUs, or more memory, than any node has: refused at once */
    loom_task_opts big = {.name = "too-big", .num_cpus = cpus * 16};
    loom_ref r, dep;
    loom_value *v = NULL;
    CHECK_RC(loom_submit(c, lib, "noop", NULL, 0, &big, &r), LOOM_OK);
    int64_t t0 = t_now_ms();
    CHECK_RC(loom_get(c, r, 10000, &v), LOOM_EINFEASIBLE);
    CHECK(t_now_ms() - t0 < 2000);
    CHECK_ERR_HAS(c, "too-big");
    CHECK_ERR_HAS(c, "CPUs");
    loom_arg a = loom_arg_ref(r);
    CHECK_RC(loom_submit(c, lib, "length", &a, 1, NULL, &dep), LOOM_OK);
    CHECK_RC(loom_get(c, dep, 10000, &v), LOOM_EDEP);
    CHECK_ERR_HAS(c, "too-big");
    loom_task_opts huge = {.memory = (uint64_t)1 << 60};
    CHECK_RC(loom_submit(c, lib, "noop", NULL, 0, &huge, &r), LOOM_OK);
    CHECK_RC(loom_get(c, r, 10000, &v), LOOM_EINFEASIBLE);
    /* what fits runs: all the CPUs, some memory, a fraction of a CPU */
    loom_task_opts all = {.num_cpus = cpus, .memory = 1 << 20};
    CHECK_RC(loom_submit(c, lib, "noop", NULL, 0, &all, &r), LOOM_OK);
    CHECK_RC(loom_get(c, r, 30000, &v), LOOM_OK);
    loom_value_release(&v);
    loom_task_opts half = {.num_cpus = 0.5};
    CHECK_RC(loom_submit(c, lib, "noop", NULL, 0, &half, &r), LOOM_OK);
    CHECK_RC(loom_get(c, r, 30000, &v), LOOM_OK);
    loom_value_release(&v);
    /* a task needing every CPU waits for the others to finish */
    loom_ref s1, s2;
    CHECK_RC(t_submit_i64(c, lib, "sleep_ms", 600, &s1), LOOM_OK);
    t0 = t_now_ms();
    t_int ms = t_i64(10);
    loom_arg sa = t_arg_i64(&ms);
    CHECK_RC(loom_submit(c, lib, "sleep_ms", &sa, 1, &all, &s2), LOOM_OK);
    int64_t x;
    CHECK_RC(t_get_i64(c, s2, 30000, &x), LOOM_OK);
    CHECK(t_now_ms() - t0 >= 500);
    CHECK_RC(t_get_i64(c, s1, 30000, &x), LOOM_OK);
}

static void test_strerror_and_args(loom_client *c, loom_ref lib)
{
    for (int e = 0; e >= -18; e--) {
        const char *s = loom_strerror(e);
        CHECK(s != NULL && s[0] != 0);
        CHECK(e == 0 || strcmp(s, loom_strerror(1000)) != 0); /* every code has its own name */
    }
    CHECK(loom_strerror(-1000) != NULL && loom_strerror(12345) != NULL);
    CHECK(loom_last_error(NULL) != NULL);

    /* ref hex */
    loom_ref r, back;
    for (int i = 0; i < LOOM_ID_LEN; i++) r.id[i] = (uint8_t)(i * 13 + 1);
    char hex[2 * LOOM_ID_LEN + 1];
    loom_ref_to_hex(&r, hex);
    CHECK(strlen(hex) == 40);
    CHECK_RC(loom_ref_from_hex(hex, &back), LOOM_OK);
    CHECK(!memcmp(r.id, back.id, LOOM_ID_LEN));
    CHECK_RC(loom_ref_from_hex("zz", &back), LOOM_EINVAL);
    CHECK_RC(loom_ref_from_hex("", &back), LOOM_EINVAL);
    CHECK_RC(loom_ref_from_hex("0123456789abcdef0123456789abcdef0123456", &back), LOOM_EINVAL);
    CHECK_RC(loom_ref_from_hex("0123456789abcdef0123456789abcdef012345678", &back), LOOM_EINVAL);
    CHECK_RC(loom_ref_from_hex("g123456789abcdef0123456789abcdef01234567", &back), LOOM_EINVAL);
    CHECK_RC(loom_ref_from_hex(NULL, &back), LOOM_EINVAL);
    CHECK_RC(loom_ref_from_hex(hex, NULL), LOOM_EINVAL);
    {
        char upper[41];
        for (int i = 0; i < 41; i++) upper[i] = (char)(hex[i] >= 'a' && hex[i] <= 'f' ? hex[i] - 32 : hex[i]);
        int rc = loom_ref_from_hex(upper, &back);
        CHECK(rc == LOOM_EINVAL || (rc == LOOM_OK && !memcmp(r.id, back.id, LOOM_ID_LEN)));
    }

    /* NULL client and other bad arguments */
    loom_value *v = NULL;
    loom_ref out;
    int ready[1];
    CHECK_RC(loom_connect("local", NULL, NULL), LOOM_EINVAL);
    CHECK_RC(loom_put(NULL, "x", 1, &out), LOOM_EINVAL);
    CHECK_RC(loom_put(c, "x", 1, NULL), LOOM_EINVAL);
    CHECK_RC(loom_put(c, NULL, 1, &out), LOOM_EINVAL);
    CHECK_RC(loom_get(NULL, r, 0, &v), LOOM_EINVAL);
    CHECK_RC(loom_get(c, r, 0, NULL), LOOM_EINVAL);
    CHECK(loom_wait(NULL, &r, 1, 1, 0, ready) == LOOM_EINVAL);
    CHECK(loom_wait(c, NULL, 1, 1, 0, ready) == LOOM_EINVAL);
    CHECK(loom_wait(c, &r, -1, 1, 0, ready) == LOOM_EINVAL);
    CHECK(loom_wait(c, &r, 1, -1, 0, ready) == LOOM_EINVAL);
    CHECK_RC(loom_cancel(NULL, r), LOOM_EINVAL);
    CHECK_RC(loom_release(NULL, r), LOOM_EINVAL);
    CHECK_RC(loom_library_load(NULL, LOOM_EXAMPLES_LIB, &out), LOOM_EINVAL);
    CHECK_RC(loom_library_load(c, NULL, &out), LOOM_EINVAL);
    CHECK_RC(loom_library_load(c, LOOM_EXAMPLES_LIB, NULL), LOOM_EINVAL);
    CHECK_RC(loom_submit(NULL, lib, "add", NULL, 0, NULL, &out), LOOM_EINVAL);
    CHECK_RC(loom_submit(c, lib, NULL, NULL, 0, NULL, &out), LOOM_EINVAL);
    CHECK_RC(loom_submit(c, lib, "add", NULL, 0, NULL, NULL), LOOM_EINVAL);
    CHECK_RC(loom_submit(c, lib, "add", NULL, 1, NULL, &out), LOOM_EINVAL);
    CHECK_RC(loom_submit(c, lib, "add", NULL, -1, NULL, &out), LOOM_EINVAL);
    CHECK_RC(loom_submit(c, lib, "not a name", NULL, 0, NULL, &out), LOOM_EINVAL);
    CHECK_RC(loom_submit(c, lib, "", NULL, 0, NULL, &out), LOOM_EINVAL);
    loom_task_opts bad = {.num_cpus = -1};
    CHECK_RC(loom_submit(c, lib, "noop", NULL, 0, &bad, &out), LOOM_EINVAL);
    char *s = NULL;
    size_t sl;
    CHECK_RC(loom_logs(NULL, r, &s, &sl), LOOM_EINVAL);
    CHECK_RC(loom_logs(c, r, NULL, &sl), LOOM_EINVAL);
    CHECK_RC(loom_status_json(NULL, &s), LOOM_EINVAL);
    CHECK_RC(loom_status_json(c, NULL), LOOM_EINVAL);
    CHECK_RC(loom_job_json(c, NULL, &s), LOOM_EINVAL);
    CHECK_RC(loom_job_json(NULL, "x", &s), LOOM_EINVAL);
    CHECK_RC(loom_job_ref(c, NULL, "t", 0, &out), LOOM_EINVAL);
    CHECK_RC(loom_job_delete(c, NULL), LOOM_EINVAL);
    CHECK_RC(loom_graph_submit(NULL, NULL, NULL, NULL), LOOM_EINVAL);
    CHECK_RC(loom_graph_submit(c, NULL, NULL, NULL), LOOM_EINVAL);
    loom_graph *g = NULL;
    CHECK_RC(loom_graph_new(&g), LOOM_OK);
    CHECK_RC(loom_graph_submit(c, g, NULL, NULL), LOOM_EINVAL); /* empty graph */
    loom_graph_destroy(&g);
    CHECK(g == NULL);
    CHECK(loom_value_data(NULL) == NULL && loom_value_size(NULL) == 0);
    loom_value_release(NULL);
    loom_value_release(&v);
    loom_disconnect(NULL);
    loom_client *none = NULL;
    loom_disconnect(&none);

    /* refs the cluster does not know */
    loom_ref bogus;
    memset(&bogus, 0x77, sizeof bogus);
    loom_arg ba = loom_arg_ref(bogus);
    /* loom_submit does not wait for the head: its refusal is the result */
    CHECK_RC(loom_submit(c, lib, "length", &ba, 1, NULL, &out), LOOM_OK);
    CHECK_RC(loom_get(c, out, 5000, &v), LOOM_ENOTFOUND);
    CHECK_ERR_HAS(c, "not known");
    CHECK_RC(loom_submit(c, bogus, "noop", NULL, 0, NULL, &out), LOOM_OK);
    CHECK_RC(loom_wait(c, &out, 1, 1, 5000, NULL), 1);
    CHECK_RC(loom_get(c, out, 5000, &v), LOOM_ENOTFOUND);
    CHECK_ERR_HAS(c, "library");
    /* a graph is answered at once */
    loom_graph *bg;
    REQUIRE(loom_graph_new(&bg) == LOOM_OK);
    int bt = loom_graph_task(bg, lib, "length", NULL);
    CHECK_RC(loom_graph_arg_ref(bg, bt, bogus), LOOM_OK);
    CHECK_RC(loom_graph_submit(c, bg, NULL, NULL), LOOM_ENOTFOUND);
    CHECK_ERR_HAS(c, "not known");
    loom_graph_destroy(&bg);
    CHECK_RC(loom_get(c, bogus, 5000, &v), LOOM_ENOTFOUND);
    /* the client still works after all that */
    loom_ref ok;
    CHECK_RC(loom_submit(c, lib, "noop", NULL, 0, NULL, &ok), LOOM_OK);
    CHECK_RC(loom_get(c, ok, 30000, &v), LOOM_OK);
    loom_value_release(&v);
}

static void test_status(loom_client *c)
{
    char *json = NULL;
    CHECK_RC(loom_status_json(c, &json), LOOM_OK);
    REQUIRE(json);
    CHECK(t_has(json, "\"nodes\""));
    CHECK(t_has(json, "\"alive\""));
    CHECK(t_has(json, "\"tasks\""));
    int64_t cpus[4];
    CHECK(t_json_ints(json, "cpus", cpus, 4) == 1 && cpus[0] == 4);
    free(json);
}

int main(void)
{
    const int cpus = 4;
    loom_client *c = t_connect(1, cpus, NULL);
    CHECK(loom_last_error(c) != NULL);
    loom_ref lib = t_lib(c);
    test_status(c);
    test_put_get(c);
    test_large_zero_copy(c, lib);
    test_submit(c, lib);
    test_timeout(c, lib);
    test_wait(c, lib);
    test_release(c, lib);
    test_cancel(c, lib, cpus);
    test_resources(c, lib, cpus);
    test_strerror_and_args(c, lib);
    loom_disconnect(&c);
    CHECK(c == NULL);
    return TEST_DONE();
}
