/* tests/test_api_actors.c — actors on a real local cluster: create, call,
 * state kept between calls, per-caller ordering under concurrent callers,
 * named actors, handles passed to tasks and to other actors, init failure,
 * method failure, crash, kill, job-scoped versus detached lifetime,
 * concurrent calls (max_concurrency), and the actors listing. */
#include <pthread.h>
#include "test_api_util.h"

static char state_dir[4096], address[512], secret_file[4600];
static loom_ref lib;

static void find_local_cluster(void)
{
    t_find_local(state_dir, address, sizeof address, secret_file, sizeof secret_file);
}

static loom_client *second_client(void)
{
    loom_connect_opts o;
    memset(&o, 0, sizeof o);
    o.secret_file = secret_file;
    loom_client *c = NULL;
    REQUIRE(loom_connect(address, &o, &c) == 0);
    return c;
}

static int64_t call_i64(loom_client *c, loom_actor a, const char *m, int64_t k, int *rc_out)
{
    t_int v = t_i64(k);
    loom_arg arg = t_arg_i64(&v);
    loom_ref r;
    int rc = loom_actor_call(c, a, m, &arg, 1, &r);
    int64_t out = INT64_MIN;
    if (!rc) rc = t_get_i64(c, r, 30000, &out);
    if (!rc) loom_release(c, r);
    if (rc_out) *rc_out = rc;
    return out;
}

static void test_basic(loom_client *c)
{
    t_int start = t_i64(10);
    loom_arg arg = t_arg_i64(&start);
    loom_actor a;
    CHECK_RC(loom_actor_create(c, lib, "Counter", &arg, 1, NULL, &a), 0);
    CHECK_RC(loom_actor_wait_ready(c, a, 30000), 0);
    int rc;
    CHECK(call_i64(c, a, "add", 5, &rc) == 15 && rc == 0);
    CHECK(call_i64(c, a, "add", -3, &rc) == 12 && rc == 0);
    /* many calls without waiting: in order, state kept */
    loom_ref refs[200];
    t_int one = t_i64(1);
    loom_arg a1 = t_arg_i64(&one);
    for (int i = 0; i < 200; i++) CHECK_RC(loom_actor_call(c, a, "add", &a1, 1, &refs[i]), 0);
    int ordered = 1;
    for (int i = 0; i < 200; i++) {
        int64_t v = 0;
        CHECK_RC(t_get_i64(c, refs[i], 30000, &v), 0);
        if (v != 13 + i) ordered = 0;
        loom_release(c, refs[i]);
    }
    CHECK(ordered);
    /* a failing method fails its call, not the actor */
    loom_ref r;
    CHECK_RC(loom_actor_call(c, a, "fail", NULL, 0, &r), 0);
    loom_value *v = NULL;
    CHECK_RC(loom_get(c, r, 30000, &v), LOOM_ETASK);
    CHECK_ERR_HAS(c, "fails on purpose");
    CHECK(call_i64(c, a, "add", 0, &rc) == 212 && rc == 0);
    /* no such method */
    CHECK_RC(loom_actor_call(c, a, "nosuch", NULL, 0, &r), 0);
    CHECK_RC(loom_get(c, r, 30000, &v), LOOM_ENOTFOUND);
    CHECK_ERR_HAS(c, "no method 'nosuch'");
    CHECK_RC(loom_actor_call(c, a, "init", NULL, 0, &r), LOOM_EINVAL);
    /* kill: later calls fail with LOOM_EACTOR */
    CHECK_RC(loom_actor_kill(c, a), 0);
    CHECK_RC(loom_actor_call(c, a, "add", &a1, 1, &r), 0);
    CHECK_RC(loom_get(c, r, 30000, &v), LOOM_EACTOR);
    CHECK_ERR_HAS(c, "killed");
}

static void test_init_failure_and_crash(loom_client *c)
{
    t_int bad = t_i64(-1);
    loom_arg arg = t_arg_i64(&bad);
    loom_actor a;
    CHECK_RC(loom_actor_create(c, lib, "Counter", &arg, 1, NULL, &a), 0);
    CHECK_RC(loom_actor_wait_ready(c, a, 30000), LOOM_ETASK);
    CHECK_ERR_HAS(c, "refuses to start");
    loom_ref r;
    loom_value *v = NULL;
    CHECK_RC(loom_actor_call(c, a, "get", NULL, 0, &r), 0);
    CHECK_RC(loom_get(c, r, 30000, &v), LOOM_EACTOR);
    CHECK_ERR_HAS(c, "init failed");
    /* a class that does not exist */
    CHECK_RC(loom_actor_create(c, lib, "NoSuchClass", NULL, 0, NULL, &a), 0);
    CHECK_RC(loom_actor_wait_ready(c, a, 30000), LOOM_ENOTFOUND);
    CHECK_RC(loom_actor_create(c, lib, "bad__name", NULL, 0, NULL, &a), LOOM_EINVAL);
    /* a crash kills the actor: the call fails, later calls too */
    CHECK_RC(loom_actor_create(c, lib, "Counter", NULL, 0, NULL, &a), 0);
    CHECK_RC(loom_actor_call(c, a, "crash", NULL, 0, &r), 0);
    CHECK_RC(loom_get(c, r, 30000, &v), LOOM_EACTOR);
    CHECK_RC(loom_actor_call(c, a, "get", NULL, 0, &r), 0);
    CHECK_RC(loom_get(c, r, 30000, &v), LOOM_EACTOR);
}

/* Callers on their own threads and clients, each adding its own sequence:
 * each caller's values appear in the actor's history in the order sent. */
typedef struct caller_arg {
    loom_actor a;
    int id, n;
    int rc;
} caller_arg;

static void *caller_main(void *p)
{
    caller_arg *ca = p;
    loom_connect_opts o;
    memset(&o, 0, sizeof o);
    o.secret_file = secret_file;
    loom_client *c = NULL;
    ca->rc = loom_connect(address, &o, &c);
    if (ca->rc) return NULL;
    loom_ref *refs = calloc((size_t)ca->n, sizeof(loom_ref));
    for (int i = 0; i < ca->n && !ca->rc; i++) {
        t_int v = t_i64((int64_t)ca->id * 100000 + i), ms = t_i64(i % 7 == 0 ? 2 : 0);
        loom_arg args[2] = {t_arg_i64(&v), t_arg_i64(&ms)};
        ca->rc = loom_actor_call(c, ca->a, "log_add", args, 2, &refs[i]);
    }
    for (int i = 0; i < ca->n && !ca->rc; i++) {
        int64_t x;
        ca->rc = t_get_i64(c, refs[i], 60000, &x);
    }
    free(refs);
    loom_disconnect(&c);
    return NULL;
}

static void test_ordering(loom_client *c)
{
    loom_actor a;
    CHECK_RC(loom_actor_create(c, lib, "Counter", NULL, 0, NULL, &a), 0);
    enum { NC = 4, N = 150 };
    pthread_t th[NC];
    caller_arg ca[NC];
    for (int i = 0; i < NC; i++) {
        ca[i] = (caller_arg){a, i + 1, N, 0};
        pthread_create(&th[i], NULL, caller_main, &ca[i]);
    }
    for (int i = 0; i < NC; i++) {
        pthread_join(th[i], NULL);
        CHECK_RC(ca[i].rc, 0);
    }
    loom_ref r;
    CHECK_RC(loom_actor_call(c, a, "history", NULL, 0, &r), 0);
    loom_value *v = NULL;
    CHECK_RC(loom_get(c, r, 30000, &v), 0);
    REQUIRE(v);
    loom_unpack u;
    loom_unpack_init(&u, loom_value_data(v), loom_value_size(v));
    uint32_t n = 0;
    CHECK_RC(loom_unpack_array(&u, &n), 0);
    CHECK(n == NC * N);
    int64_t next[NC + 1] = {0};
    int in_order = 1;
    for (uint32_t i = 0; i < n; i++) {
        int64_t x;
        if (loom_unpack_i64(&u, &x)) { in_order = 0; break; }
        int who = (int)(x / 100000), seq = (int)(x % 100000);
        if (who < 1 || who > NC || seq != next[who]) in_order = 0;
        else next[who]++;
    }
    CHECK(in_order);
    loom_value_release(&v);
    loom_actor_kill(c, a);
}

static void test_named_and_handles(loom_client *c)
{
    loom_actor_opts o;
    memset(&o, 0, sizeof o);
    o.name = "shared-counter";
    loom_actor a, b;
    CHECK_RC(loom_actor_create(c, lib, "Counter", NULL, 0, &o, &a), 0);
    CHECK_RC(loom_actor_lookup(c, "shared-counter", &b), 0);
    CHECK(!memcmp(a.id, b.id, 16));
    CHECK_RC(loom_actor_create(c, lib, "Counter", NULL, 0, &o, &b), LOOM_EINVAL);
    CHECK_ERR_HAS(c, "already exists");
    CHECK_RC(loom_actor_lookup(c, "nobody", &b), LOOM_ENOTFOUND);
    /* a task calls the actor through its handle */
    t_int k = t_i64(7);
    loom_arg args[2] = {loom_arg_actor(&a), t_arg_i64(&k)};
    loom_ref r;
    CHECK_RC(loom_submit(c, lib, "call_counter", args, 2, NULL, &r), 0);
    int64_t x = 0;
    CHECK_RC(t_get_i64(c, r, 60000, &x), 0);
    if (x != 7) fprintf(stderr, "call_counter: %s\n", loom_last_error(c));
    CHECK(x == 7);
    /* an actor calls another actor */
    loom_arg h = loom_arg_actor(&a);
    loom_actor relay;
    CHECK_RC(loom_actor_create(c, lib, "Relay", &h, 1, NULL, &relay), 0);
    int rc;
    CHECK(call_i64(c, relay, "relay", 5, &rc) == 12 && rc == 0);
    if (rc) fprintf(stderr, "relay: %s\n", loom_last_error(c));
    CHECK(call_i64(c, a, "get", 0, &rc) == 12);
    /* the listing shows both */
    char *json = NULL;
    CHECK_RC(loom_actors_json(c, &json), 0);
    CHECK(t_has(json, "shared-counter") && t_has(json, "\"Relay\""));
    free(json);
    loom_actor_kill(c, relay);
    CHECK_RC(loom_actor_kill(c, a), 0);
    CHECK_RC(loom_actor_lookup(c, "shared-counter", &b), LOOM_ENOTFOUND);
}

static void test_lifetimes(loom_client *c)
{
    loom_client *other = second_client();
    loom_actor_opts o;
    memset(&o, 0, sizeof o);
    o.name = "scoped";
    loom_actor scoped, kept;
    CHECK_RC(loom_actor_create(other, lib, "Counter", NULL, 0, &o, &scoped), 0);
    o.name = "kept";
    o.detached = 1;
    CHECK_RC(loom_actor_create(other, lib, "Counter", NULL, 0, &o, &kept), 0);
    CHECK_RC(loom_actor_wait_ready(other, scoped, 30000), 0);
    CHECK_RC(loom_actor_wait_ready(other, kept, 30000), 0);
    loom_disconnect(&other);
    /* the job-scoped actor goes with its creator; the detached one stays */
    loom_actor x;
    int gone = 0;
    for (int i = 0; i < 200 && !gone; i++) {
        gone = loom_actor_lookup(c, "scoped", &x) == LOOM_ENOTFOUND;
        if (!gone) usleep(20000);
    }
    CHECK(gone);
    CHECK_RC(loom_actor_lookup(c, "kept", &x), 0);
    int rc;
    CHECK(call_i64(c, x, "add", 3, &rc) == 3 && rc == 0);
    CHECK_RC(loom_actor_kill(c, x), 0);
}

/* Restarts: init runs again with the same arguments (state starts over);
 * exactly max_restarts of them; calls in flight are retried when asked. */
static void test_restarts(loom_client *c)
{
    t_int start = t_i64(100);
    loom_arg arg = t_arg_i64(&start);
    loom_actor_opts o;
    memset(&o, 0, sizeof o);
    o.max_restarts = 2;
    loom_actor a;
    CHECK_RC(loom_actor_create(c, lib, "Counter", &arg, 1, &o, &a), 0);
    int rc;
    CHECK(call_i64(c, a, "add", 5, &rc) == 105 && rc == 0);
    for (int round = 1; round <= 3; round++) {
        loom_ref r;
        loom_value *v = NULL;
        CHECK_RC(loom_actor_call(c, a, "crash", NULL, 0, &r), 0);
        CHECK_RC(loom_get(c, r, 30000, &v), LOOM_EACTOR); /* no call retries asked */
        CHECK_RC(loom_actor_call(c, a, "add", NULL, 0, &r), 0);
        int64_t x = 0;
        int grc = t_get_i64(c, r, 30000, &x);
        if (round <= 2) {
            /* restarted from its init arguments: 100, then + 1 */
            CHECK_RC(grc, 0);
            CHECK(x == 101);
        } else {
            CHECK_RC(grc, LOOM_EACTOR);
            CHECK_ERR_HAS(c, "after 2 restarts");
        }
    }
    /* calls in flight when it dies are sent to the restarted actor */
    char path[4200];
    snprintf(path, sizeof path, "%s/crash-once-%d", state_dir, (int)getpid());
    unlink(path);
    o.max_restarts = 1;
    o.max_task_retries = 1;
    CHECK_RC(loom_actor_create(c, lib, "Counter", &arg, 1, &o, &a), 0);
    loom_pack *p = loom_pack_new();
    loom_pack_cstr(p, path);
    loom_arg parg = loom_arg_value(loom_pack_data(p), loom_pack_size(p));
    loom_ref crash_ref, adds[5];
    CHECK_RC(loom_actor_call(c, a, "crash_once", &parg, 1, &crash_ref), 0);
    t_int one = t_i64(1);
    loom_arg a1 = t_arg_i64(&one);
    for (int i = 0; i < 5; i++) CHECK_RC(loom_actor_call(c, a, "add", &a1, 1, &adds[i]), 0);
    int64_t x = -1;
    CHECK_RC(t_get_i64(c, crash_ref, 30000, &x), 0);
    CHECK(x == 100); /* the retried call ran first on the fresh actor */
    int in_order = 1;
    for (int i = 0; i < 5; i++) {
        int64_t y = 0;
        CHECK_RC(t_get_i64(c, adds[i], 30000, &y), 0);
        if (y != 101 + i) in_order = 0;
    }
    CHECK(in_order);
    loom_pack_destroy(&p);
    unlink(path);
    char *json = NULL;
    CHECK_RC(loom_actors_json(c, &json), 0);
    free(json);
    loom_actor_kill(c, a);
}

/* The state of node `id` in the status JSON ("alive", "draining", ...). */
static void node_state(loom_client *c, int id, char *out, size_t len)
{
    char *json = NULL;
    out[0] = 0;
    if (loom_status_json(c, &json)) return;
    char pat[32];
    snprintf(pat, sizeof pat, "\"id\": %d,", id);
    const char *p = strstr(json, pat);
    if (!p) snprintf(pat, sizeof pat, "\"id\":%d,", id), p = strstr(json, pat);
    const char *s = p ? strstr(p, "\"state\":") : NULL;
    if (s) {
        s = strchr(s + 8, '"');
        const char *e = s ? strchr(s + 1, '"') : NULL;
        if (e) snprintf(out, len, "%.*s", (int)(e - s - 1), s + 1);
    }
    free(json);
}

/* Drain node 2: what runs there finishes, a restartable actor moves to node
 * 1, new work goes to node 1, and the node reads "drained" once idle. */
static void test_drain(loom_client *c)
{
    loom_actor_opts o;
    memset(&o, 0, sizeof o);
    o.max_restarts = 1;
    o.res.strategy = LOOM_SCHED_NODE;
    o.res.node = 2;
    o.res.soft = 1;
    loom_actor a;
    CHECK_RC(loom_actor_create(c, lib, "Counter", NULL, 0, &o, &a), 0);
    loom_task_opts on2;
    memset(&on2, 0, sizeof on2);
    on2.strategy = LOOM_SCHED_NODE;
    on2.node = 2;
    loom_ref slow, r;
    t_int ms = t_i64(1500);
    loom_arg arg = t_arg_i64(&ms);
    CHECK_RC(loom_submit(c, lib, "sleep_ms", &arg, 1, &on2, &slow), 0);
    CHECK_RC(loom_actor_call(c, a, "where", NULL, 0, &r), 0);
    loom_value *v = NULL;
    CHECK_RC(loom_get(c, r, 30000, &v), 0);
    CHECK(v && ((const char *)loom_value_data(v))[1] == '2');
    loom_value_release(&v);
    usleep(200000);
    CHECK_RC(loom_node_drain(c, 2), 0);
    CHECK_RC(loom_node_drain(c, 99), LOOM_ENOTFOUND);
    char st[32];
    node_state(c, 2, st, sizeof st);
    CHECK(!strcmp(st, "draining"));
    /* new work avoids it; a task that must run there is infeasible */
    for (int i = 0; i < 4; i++) {
        CHECK_RC(loom_submit(c, lib, "node_id", NULL, 0, NULL, &r), 0);
        int64_t node = 0;
        CHECK_RC(t_get_i64(c, r, 30000, &node), 0);
        CHECK(node == 1);
    }
    CHECK_RC(loom_submit(c, lib, "noop", NULL, 0, &on2, &r), 0);
    CHECK_RC(loom_get(c, r, 30000, &v), LOOM_EINFEASIBLE);
    CHECK_ERR_HAS(c, "draining");
    /* the actor moved */
    CHECK_RC(loom_actor_call(c, a, "where", NULL, 0, &r), 0);
    CHECK_RC(loom_get(c, r, 30000, &v), 0);
    CHECK(v && ((const char *)loom_value_data(v))[1] == '1');
    loom_value_release(&v);
    /* what ran there finished */
    int64_t x = 0;
    CHECK_RC(t_get_i64(c, slow, 30000, &x), 0);
    CHECK(x == 1500);
    int drained = 0;
    for (int i = 0; i < 100 && !drained; i++) {
        node_state(c, 2, st, sizeof st);
        drained = !strcmp(st, "drained");
        if (!drained) usleep(20000);
    }
    CHECK(drained);
    loom_actor_kill(c, a);
}

static void test_concurrency(loom_client *c)
{
    loom_actor_opts o;
    memset(&o, 0, sizeof o);
    o.max_concurrency = 4;
    loom_actor a;
    CHECK_RC(loom_actor_create(c, lib, "Counter", NULL, 0, &o, &a), 0);
    CHECK_RC(loom_actor_wait_ready(c, a, 30000), 0);
    /* 8 calls of 300 ms each: one at a time would take 2.4 s */
    loom_ref refs[8];
    int64_t t0 = t_now_ms();
    for (int i = 0; i < 8; i++) {
        t_int v = t_i64(0), ms = t_i64(300);
        loom_arg args[2] = {t_arg_i64(&v), t_arg_i64(&ms)};
        CHECK_RC(loom_actor_call(c, a, "log_add", args, 2, &refs[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        int64_t x;
        CHECK_RC(t_get_i64(c, refs[i], 30000, &x), 0);
    }
    int64_t ms = t_now_ms() - t0;
    printf("8 calls of 300 ms with max_concurrency 4: %lld ms\n", (long long)ms);
    CHECK(ms < 2000);
    loom_actor_kill(c, a);
}

int main(void)
{
    snprintf(state_dir, sizeof state_dir, "/tmp/loom-test-actors-%d", (int)getpid());
    loom_client *c = t_connect(2, 2, state_dir);
    find_local_cluster();
    lib = t_lib(c);
    test_basic(c);
    test_init_failure_and_crash(c);
    test_named_and_handles(c);
    test_ordering(c);
    test_lifetimes(c);
    test_restarts(c);
    test_concurrency(c);
    test_drain(c); /* last: node 2 takes no work after it */
    loom_disconnect(&c);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "%s", state_dir);
    rmdir(cmd);
    return TEST_DONE();
}
