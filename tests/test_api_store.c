/* tests/test_api_store.c — a local cluster with small object stores
 * (loom_connect_opts.store_bytes = 64 MiB per node, two one-CPU nodes):
 * objects beyond the memory tier spill to disk instead of failing, one
 * larger than the whole memory tier still fits, and tasks read and write
 * such objects, also across nodes. */
#include <pthread.h>
#include <string.h>
#include "runtime/util.h"
#include "test_api_util.h"

/* Backpressure: a put into a full store waits for room instead of failing. */
typedef struct waiting_put {
    const char *address, *secret_file;
    uint8_t *buf;
    size_t n;
    int rc;
    int64_t ms;
} waiting_put;

static void *waiting_put_main(void *arg)
{
    waiting_put *w = arg;
    loom_connect_opts o = {.secret_file = w->secret_file, .store_wait_ms = 20000};
    loom_client *c = NULL;
    w->rc = loom_connect(w->address, &o, &c);
    if (w->rc) return NULL;
    loom_ref r;
    int64_t t0 = t_now_ms();
    w->rc = loom_put(c, w->buf, w->n, &r);
    w->ms = t_now_ms() - t0;
    loom_disconnect(&c);
    return NULL;
}

static void test_backpressure(const char *state_dir)
{
    char address[512], secret_file[4600];
    t_find_local(state_dir, address, sizeof address, secret_file, sizeof secret_file);
    loom_connect_opts fo = {.secret_file = secret_file, .store_wait_ms = -1};
    loom_client *c = NULL;
    REQUIRE(loom_connect(address, &fo, &c) == LOOM_OK);
    const size_t n = 24u << 20;
    uint8_t *b = malloc(n);
    REQUIRE(b);
    memset(b, 'f', n);
    /* fill both tiers of the client's node (this client fails at once) */
    loom_ref held[32];
    int nheld = 0, rc = 0;
    while (nheld < 32 && (rc = loom_put(c, b, n, &held[nheld])) == LOOM_OK) nheld++;
    CHECK_RC(rc, LOOM_ESTOREFULL);
    CHECK(nheld >= 4);
    printf("the store took %d objects of 24 MiB before it was full\n", nheld);
    /* a producer that waits: it blocks until room is made */
    waiting_put w = {.address = address, .secret_file = secret_file, .buf = b, .n = n, .rc = 1};
    pthread_t th;
    pthread_create(&th, NULL, waiting_put_main, &w);
    usleep(1000 * 1000);
    for (int k = 0; k < nheld; k++) CHECK_RC(loom_release(c, held[k]), LOOM_OK);
    pthread_join(th, NULL);
    CHECK_RC(w.rc, LOOM_OK);
    printf("a put into the full store waited %lld ms for room, then succeeded\n", (long long)w.ms);
    CHECK(w.ms >= 500);
    free(b);
    loom_disconnect(&c);
}

static int all_bytes(const loom_value *v, size_t n, uint8_t b)
{
    if (!v || loom_value_size(v) != n) return 0;
    const uint8_t *p = loom_value_data(v);
    for (size_t i = 0; i < n; i += 4093)
        if (p[i] != b) return 0;
    return p[n - 1] == b;
}

/* loom_put_parts: a gathered put reads back as the parts one after
 * another, large (straight into the store) and small (inline); a store that
 * cannot hold it says so; bad parts are EINVAL. */
static void test_put_parts(loom_client *c, uint8_t *b)
{
    const size_t big = 20u << 20;
    memset(b, 'x', big);
    loom_part parts[] = {{"head:", 5}, {b, big}, {NULL, 0}, {":tail", 5}};
    loom_ref r;
    CHECK_RC(loom_put_parts(c, parts, 4, &r), LOOM_OK);
    loom_value *v = NULL;
    CHECK_RC(loom_get(c, r, 10000, &v), LOOM_OK);
    const uint8_t *d = v ? loom_value_data(v) : NULL;
    CHECK(v && loom_value_size(v) == big + 10 && memcmp(d, "head:", 5) == 0 && d[5] == 'x' &&
          d[5 + big - 1] == 'x' && memcmp(d + 5 + big, ":tail", 5) == 0);
    loom_value_release(&v);
    CHECK_RC(loom_release(c, r), LOOM_OK);
    loom_part small[] = {{"ab", 2}, {"cd", 2}};
    CHECK_RC(loom_put_parts(c, small, 2, &r), LOOM_OK);
    CHECK_RC(loom_get(c, r, 10000, &v), LOOM_OK);
    CHECK(v && loom_value_size(v) == 4 && memcmp(loom_value_data(v), "abcd", 4) == 0);
    loom_value_release(&v);
    CHECK_RC(loom_put_parts(c, NULL, 0, &r), LOOM_OK);   /* the empty object */
    CHECK_RC(loom_get(c, r, 10000, &v), LOOM_OK);
    CHECK(v && loom_value_size(v) == 0);
    loom_value_release(&v);
    loom_part bad[] = {{NULL, 3}};
    CHECK_RC(loom_put_parts(c, bad, 1, &r), LOOM_EINVAL);
    CHECK_RC(loom_put_parts(c, small, -1, &r), LOOM_EINVAL);
    /* 400 MiB in 5 parts of the same 80 MiB: no tier holds it */
    loom_part huge[5];
    for (int i = 0; i < 5; i++) huge[i] = (loom_part){b, 80u << 20};
    CHECK_RC(loom_put_parts(c, huge, 5, &r), LOOM_ESTOREFULL);
    CHECK(strstr(loom_last_error(c), "store") != NULL);
}

int main(void)
{
    t_setup_env();
    char state_dir[4096];
    REQUIRE(t_temp_dir("loom-test-store", state_dir, sizeof state_dir) == 0);
    loom_connect_opts o = {.num_nodes = 2, .num_cpus = 1, .store_bytes = 64u << 20, .state_dir = state_dir,
                           .store_wait_ms = 5000};
    loom_client *c = NULL;
    REQUIRE(loom_connect("local", &o, &c) == LOOM_OK);
    loom_ref lib = t_lib(c);
    char *json = NULL;
    CHECK_RC(loom_status_json(c, &json), LOOM_OK);
    int64_t cap[4];
    CHECK(t_json_ints(json, "store_capacity", cap, 4) == 2 && cap[0] == 64 << 20);
    free(json);

    /* 5 x 24 MiB in a 64 MiB store: older ones spill (to a disk tier of 4 x
     * 64 MiB), all stay readable.  Sizes keep everything below 320 MiB, even
     * when every task runs on the node holding its argument. */
    const size_t n = 24u << 20;
    uint8_t *b = malloc(80u << 20);
    REQUIRE(b);
    loom_ref r[5];
    for (int k = 0; k < 5; k++) {
        memset(b, 'a' + k, n);
        CHECK_RC(loom_put(c, b, n, &r[k]), LOOM_OK);
    }
    for (int k = 0; k < 5; k++) {
        loom_value *v = NULL;
        CHECK_RC(loom_get(c, r[k], 10000, &v), LOOM_OK);
        CHECK(all_bytes(v, n, (uint8_t)('a' + k)));
        loom_value_release(&v);
    }
    /* one object larger than the memory tier */
    memset(b, 'z', 80u << 20);
    loom_ref big, l;
    CHECK_RC(loom_put(c, b, 80u << 20, &big), LOOM_OK);
    loom_value *v = NULL;
    CHECK_RC(loom_get(c, big, 10000, &v), LOOM_OK);
    CHECK(all_bytes(v, 80u << 20, 'z'));
    loom_value_release(&v);
    loom_arg a = loom_arg_ref(big);
    CHECK_RC(loom_submit(c, lib, "length", &a, 1, NULL, &l), LOOM_OK);
    int64_t x = 0;
    CHECK_RC(t_get_i64(c, l, 60000, &x), LOOM_OK);
    CHECK(x == 80 << 20);
    CHECK_RC(loom_release(c, big), LOOM_OK);
    /* tasks copying spilled objects, on both nodes at once */
    loom_ref e[4];
    for (int k = 0; k < 4; k++) {
        loom_arg ea = loom_arg_ref(r[k]);
        CHECK_RC(loom_submit(c, lib, "echo", &ea, 1, NULL, &e[k]), LOOM_OK);
    }
    for (int k = 0; k < 4; k++) {
        CHECK_RC(loom_get(c, e[k], 60000, &v), LOOM_OK);
        CHECK(all_bytes(v, n, (uint8_t)('a' + k)));
        loom_value_release(&v);
    }
    /* released objects give their room back */
    for (int k = 0; k < 5; k++) CHECK_RC(loom_release(c, r[k]), LOOM_OK);
    for (int k = 0; k < 4; k++) CHECK_RC(loom_release(c, e[k]), LOOM_OK);
    /* (the nodes delete released objects a moment later: until then a put
     * may find the store full, and a driver retries) */
    for (int k = 0; k < 8; k++) {
        loom_ref t;
        memset(b, 'q', n);
        CHECK_RC(loom_put(c, b, n, &t), LOOM_OK); /* it waits for the deletes (backpressure) */
        CHECK_RC(loom_get(c, t, 10000, &v), LOOM_OK);
        CHECK(all_bytes(v, n, 'q'));
        loom_value_release(&v);
        CHECK_RC(loom_release(c, t), LOOM_OK);
    }
    test_put_parts(c, b);
    free(b);

    /* an object neither tier can hold (64 MiB + 256 MiB): a clear error, and
     * the cluster goes on */
    size_t huge = 400u << 20;
    uint8_t *hb = calloc(1, huge);
    REQUIRE(hb);
    loom_ref hr;
    CHECK_RC(loom_put(c, hb, huge, &hr), LOOM_ESTOREFULL);
    CHECK(strstr(loom_last_error(c), "store") != NULL);
    free(hb);
    /* a task whose result cannot be stored fails with the reason */
    loom_graph *g = NULL;
    CHECK_RC(loom_graph_new(&g), LOOM_OK);
    const char *argv[] = {"sh", "-c", "head -c 400M /dev/zero > big.bin"};
    const char *outs[] = {"big.bin"};
    loom_command cmd = {.argv = argv, .argc = 3, .outputs = outs, .noutputs = 1};
    int node = loom_graph_command(g, &cmd, NULL);
    CHECK(node >= 0);
    loom_ref out1;
    CHECK_RC(loom_graph_ref(g, node, 1, &out1), LOOM_OK);
    CHECK_RC(loom_graph_submit(c, g, NULL, NULL), LOOM_OK);
    CHECK_RC(loom_get(c, out1, 60000, &v), LOOM_ESTOREFULL);
    CHECK(strstr(loom_last_error(c), "cannot store a result") != NULL);
    loom_graph_destroy(&g);
    loom_ref ok;
    CHECK_RC(t_submit_i64(c, lib, "value", 7, &ok), LOOM_OK);
    CHECK_RC(t_get_i64(c, ok, 30000, &x), LOOM_OK);
    CHECK(x == 7);

    test_backpressure(state_dir);
    loom_disconnect(&c);
    t_rm_rf(state_dir);
    return TEST_DONE();
}
