/* tests/test_api_store.c — a local cluster with small object stores
 * (loom_connect_opts.store_bytes = 64 MiB per node, two one-CPU nodes):
 * objects beyond the memory tier spill to disk instead of failing, one
 * larger than the whole memory tier still fits, and tasks read and write
 * such objects, also across nodes. */
#include <string.h>
#include "test_api_util.h"

static int all_bytes(const loom_value *v, size_t n, uint8_t b)
{
    if (!v || loom_value_size(v) != n) return 0;
    const uint8_t *p = loom_value_data(v);
    for (size_t i = 0; i < n; i += 4093)
        if (p[i] != b) return 0;
    return p[n - 1] == b;
}

int main(void)
{
    t_setup_env();
    loom_connect_opts o = {.num_nodes = 2, .num_cpus = 1, .store_bytes = 64u << 20};
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
        int rc;
        int64_t end = t_now_ms() + 5000;
        while ((rc = loom_put(c, b, n, &t)) == LOOM_ESTOREFULL && t_now_ms() < end) usleep(50 * 1000);
        CHECK_RC(rc, LOOM_OK);
        CHECK_RC(loom_get(c, t, 10000, &v), LOOM_OK);
        CHECK(all_bytes(v, n, 'q'));
        loom_value_release(&v);
        CHECK_RC(loom_release(c, t), LOOM_OK);
    }
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

    loom_disconnect(&c);
    return TEST_DONE();
}
