/* tests/test_api_collective.c — a collective group of actors on a real
 * cluster: three Member actors (examples/tasks.c) spread over two nodes join
 * a group through the head's key-value table and run allreduce, broadcast,
 * allgather and reduce-scatter; every member's result is checked against
 * the sum computed here.  The key-value table itself is checked first. */
#include "test_api_util.h"
#include <loom/collective.h>

enum { WORLD = 3, N = 3000 };

static loom_ref call_values(loom_client *c, loom_actor a, const char *method, const double *v, size_t n,
                            int64_t extra, int has_extra)
{
    loom_pack *p = loom_pack_new();
    loom_pack_array(p, (uint32_t)n);
    for (size_t i = 0; i < n; i++) loom_pack_f64(p, v[i]);
    size_t n1 = loom_pack_size(p);
    if (has_extra) loom_pack_i64(p, extra);
    const uint8_t *d = loom_pack_data(p);
    loom_arg args[2] = {loom_arg_value(d, n1), loom_arg_value(d + n1, loom_pack_size(p) - n1)};
    loom_ref r;
    int rc = loom_actor_call(c, a, method, args, has_extra ? 2 : 1, &r);
    if (rc) fprintf(stderr, "%s: %s\n", method, loom_last_error(c));
    REQUIRE(rc == 0);
    loom_pack_destroy(&p);
    return r;
}

/* The array of doubles a call returned; NULL on failure. */
static double *get_values(loom_client *c, loom_ref r, size_t *n)
{
    loom_value *v = NULL;
    int rc = loom_get(c, r, 60000, &v);
    if (rc) {
        fprintf(stderr, "get: %s: %s\n", loom_strerror(rc), loom_last_error(c));
        return NULL;
    }
    loom_unpack u;
    loom_unpack_init(&u, loom_value_data(v), loom_value_size(v));
    uint32_t k = 0;
    double *out = NULL;
    if (loom_unpack_array(&u, &k) == 0 && (out = calloc(k + 1, sizeof(double))))
        for (uint32_t i = 0; i < k; i++) loom_unpack_f64(&u, &out[i]);
    *n = k;
    loom_value_release(&v);
    loom_release(c, r);
    return out;
}

static void test_kv(loom_client *c)
{
    CHECK_RC(loom_kv_put(c, "test/a", "hello", 5), 0);
    void *d = NULL;
    size_t n = 0;
    CHECK_RC(loom_kv_get(c, "test/a", 0, &d, &n), 0);
    CHECK(n == 5 && d && !memcmp(d, "hello", 5));
    free(d);
    CHECK_RC(loom_kv_get(c, "test/missing", 0, &d, &n), LOOM_ENOTFOUND);
    int64_t t0 = t_now_ms();
    CHECK_RC(loom_kv_get(c, "test/missing", 300, &d, &n), LOOM_ETIMEOUT);
    CHECK(t_now_ms() - t0 < 3000);
    CHECK_RC(loom_kv_del(c, "test/a"), 0);
    CHECK_RC(loom_kv_get(c, "test/a", 0, &d, &n), LOOM_ENOTFOUND);
    char big[600];
    memset(big, 'k', sizeof big);
    big[599] = 0;
    CHECK_RC(loom_kv_put(c, big, "x", 1), LOOM_EINVAL);
}

int main(void)
{
    loom_client *c = t_connect(2, 2, NULL);
    loom_ref lib = t_lib(c);
    test_kv(c);

    loom_actor m[WORLD];
    loom_actor_opts o;
    memset(&o, 0, sizeof o);
    o.res.strategy = LOOM_SCHED_SPREAD;
    char group[64];
    snprintf(group, sizeof group, "test-%d", (int)getpid());
    for (int r = 0; r < WORLD; r++) {
        loom_pack *p = loom_pack_new();
        loom_pack_cstr(p, group);
        size_t a0 = loom_pack_size(p);
        loom_pack_i64(p, WORLD);
        size_t a1 = loom_pack_size(p);
        loom_pack_i64(p, r);
        const uint8_t *d = loom_pack_data(p);
        loom_arg args[3] = {loom_arg_value(d, a0), loom_arg_value(d + a0, a1 - a0),
                            loom_arg_value(d + a1, loom_pack_size(p) - a1)};
        CHECK_RC(loom_actor_create(c, lib, "Member", args, 3, &o, &m[r]), 0);
        loom_pack_destroy(&p);
    }
    for (int r = 0; r < WORLD; r++) {
        int rc = loom_actor_wait_ready(c, m[r], 60000);
        if (rc) fprintf(stderr, "member %d: %s\n", r, loom_last_error(c));
        CHECK_RC(rc, 0);
    }
    char *json = NULL;
    REQUIRE(loom_actors_json(c, &json) == 0);
    int64_t nodes[16];
    int nn = t_json_ints(json, "node", nodes, 16);
    CHECK(nn == WORLD && (nodes[0] != nodes[1] || nodes[1] != nodes[2])); /* spread over both nodes */
    free(json);

    /* inputs: member r holds v_r[i] = (r + 1) * i + r (integer-valued: exact sums) */
    static double in[WORLD][N], sum[N];
    for (int i = 0; i < N; i++) {
        sum[i] = 0;
        for (int r = 0; r < WORLD; r++) {
            in[r][i] = (double)((r + 1) * i + r);
            sum[i] += in[r][i];
        }
    }
    loom_ref refs[WORLD];
    /* allreduce: every member gets the sum */
    for (int r = 0; r < WORLD; r++) refs[r] = call_values(c, m[r], "allreduce", in[r], N, 0, 0);
    for (int r = 0; r < WORLD; r++) {
        size_t n = 0;
        double *out = get_values(c, refs[r], &n);
        CHECK(out && n == N && !memcmp(out, sum, sizeof sum));
        free(out);
    }
    /* broadcast from rank 1 */
    for (int r = 0; r < WORLD; r++) refs[r] = call_values(c, m[r], "broadcast", in[r], N, 1, 1);
    for (int r = 0; r < WORLD; r++) {
        size_t n = 0;
        double *out = get_values(c, refs[r], &n);
        CHECK(out && n == N && !memcmp(out, in[1], sizeof in[1]));
        free(out);
    }
    /* allgather: everyone's values in rank order */
    for (int r = 0; r < WORLD; r++) refs[r] = call_values(c, m[r], "allgather", in[r], N, 0, 0);
    for (int r = 0; r < WORLD; r++) {
        size_t n = 0;
        double *out = get_values(c, refs[r], &n);
        CHECK(out && n == (size_t)WORLD * N && !memcmp(out, in, sizeof in));
        free(out);
    }
    /* reduce-scatter: member r gets block r of the sum */
    for (int r = 0; r < WORLD; r++) refs[r] = call_values(c, m[r], "reduce_scatter", in[r], N, 0, 0);
    for (int r = 0; r < WORLD; r++) {
        size_t n = 0;
        double *out = get_values(c, refs[r], &n);
        CHECK(out && n == N / WORLD && !memcmp(out, sum + r * (N / WORLD), (N / WORLD) * sizeof(double)));
        free(out);
    }
    for (int r = 0; r < WORLD; r++) loom_actor_kill(c, m[r]);
    loom_disconnect(&c);
    return TEST_DONE();
}
