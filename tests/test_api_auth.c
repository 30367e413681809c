/* tests/test_api_auth.c — connecting to a running cluster by address: a
 * wrong, malformed or missing cluster secret is refused with LOOM_EAUTH; the
 * right one (given, or read from the cluster's secret file) works, and a
 * second driver then shares objects and detached jobs with the first; an
 * address where nothing listens gives LOOM_ECONN. */
#include <dirent.h>
#include <pthread.h>
#include <sys/stat.h>
#include "runtime/util.h"
#include "test_api_util.h"

static char state[128];
static char cluster_dir[4200];

/* The local-* directory the local cluster made under our state dir. */
static void find_cluster_dir(void)
{
    DIR *d = opendir(state);
    REQUIRE(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "local-", 6)) snprintf(cluster_dir, sizeof cluster_dir, "%s/%s", state, e->d_name);
    closedir(d);
    REQUIRE(cluster_dir[0]);
}

static void read_line(const char *name, char *out, size_t outlen)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", cluster_dir, name);
    FILE *f = fopen(path, "r");
    REQUIRE(f);
    REQUIRE(fgets(out, (int)outlen, f));
    fclose(f);
    out[strcspn(out, "\r\n ")] = 0;
}

/* A driver thread: its own client (as loom.h asks), puts, gets, tasks. */
typedef struct worker_arg {
    const char *addr, *secret;
    int index, failures;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *w = p;
    loom_connect_opts o;
    memset(&o, 0, sizeof o);
    o.secret = w->secret;
    loom_client *c = NULL;
    if (loom_connect(w->addr, &o, &c)) {
        w->failures++;
        return NULL;
    }
    loom_ref lib;
    if (loom_library_load(c, LOOM_EXAMPLES_LIB, &lib)) w->failures++;
    size_t n = (1u << 20) + (size_t)w->index;
    uint8_t *buf = malloc(n);
    for (int round = 0; round < 10; round++) {
        for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)(i + (size_t)round * 3 + (size_t)w->index);
        loom_ref r, l;
        loom_value *v = NULL;
        int64_t len = 0;
        if (loom_put(c, buf, n, &r) || loom_get(c, r, 10000, &v) || loom_value_size(v) != n ||
            memcmp(loom_value_data(v), buf, n))
            w->failures++;
        loom_arg a = loom_arg_ref(r);
        if (loom_submit(c, lib, "length", &a, 1, NULL, &l) || t_get_i64(c, l, 30000, &len) || len != (int64_t)n)
            w->failures++;
        loom_value_release(&v);
        loom_release(c, r);
        loom_release(c, l);
    }
    free(buf);
    loom_disconnect(&c);
    return NULL;
}

int main(void)
{
    t_setup_env();
    unsetenv("LOOM_SECRET");
    unsetenv("LOOM_SECRET_FILE");
    REQUIRE(t_temp_dir("loom-test-auth", state, sizeof state) == 0);
    loom_client *c1 = t_connect(1, 1, state);
    loom_ref lib = t_lib(c1);
    find_cluster_dir();
    char addr[512], secret[128];
    read_line("address", addr, sizeof addr);
    read_line("secret", secret, sizeof secret);
    CHECK(strchr(addr, ':') != NULL);
    CHECK(strlen(secret) == 64);
    /* the secret file is private */
    char path[4400];
    struct stat st;
    snprintf(path, sizeof path, "%s/secret", cluster_dir);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 077) == 0);

    /* a wrong secret of the right form */
    char wrong[65];
    memcpy(wrong, secret, 65);
    wrong[0] = wrong[0] == '0' ? '1' : '0';
    loom_connect_opts o;
    memset(&o, 0, sizeof o);
    o.secret = wrong;
    loom_client *c2 = (loom_client *)1;
    int64_t t0 = t_now_ms();
    CHECK_RC(loom_connect(addr, &o, &c2), LOOM_EAUTH);
    CHECK(c2 == NULL);
    CHECK(t_now_ms() - t0 < 5000);
    o.secret = "0000000000000000000000000000000000000000000000000000000000000000";
    CHECK_RC(loom_connect(addr, &o, &c2), LOOM_EAUTH);
    /* malformed secrets */
    o.secret = "abc";
    CHECK_RC(loom_connect(addr, &o, &c2), LOOM_EAUTH);
    o.secret = "";
    CHECK_RC(loom_connect(addr, &o, &c2), LOOM_EAUTH);
    /* a secret file that does not exist; one that is too open */
    o.secret = NULL;
    snprintf(path, sizeof path, "%s/no-such-secret", state);
    o.secret_file = path;
    CHECK_RC(loom_connect(addr, &o, &c2), LOOM_EAUTH);
    char loose[4400];
    snprintf(loose, sizeof loose, "%s/loose-secret", state);
    FILE *f = fopen(loose, "w");
    REQUIRE(f);
    fprintf(f, "%s\n", secret);
    fclose(f);
    chmod(loose, 0644);
    o.secret_file = loose;
    CHECK_RC(loom_connect(addr, &o, &c2), LOOM_EAUTH);
    /* no secret at all: the default state dir (ours, empty) has none */
    memset(&o, 0, sizeof o);
    o.state_dir = state;
    CHECK_RC(loom_connect(addr, &o, &c2), LOOM_EAUTH);

    /* the first client is unaffected by all that */
    loom_ref p1;
    CHECK_RC(loom_put(c1, "shared bytes", 12, &p1), LOOM_OK);

    /* the right secret, given */
    memset(&o, 0, sizeof o);
    o.secret = secret;
    c2 = NULL;
    CHECK_RC(loom_connect(addr, &o, &c2), LOOM_OK);
    REQUIRE(c2);
    loom_value *v = NULL;
    CHECK_RC(loom_get(c2, p1, 10000, &v), LOOM_OK);
    CHECK(v && loom_value_size(v) == 12 && !memcmp(loom_value_data(v), "shared bytes", 12));
    loom_value_release(&v);
    /* a large object put by one driver is read by the other */
    size_t n = 3u << 20;
    char *big = malloc(n);
    for (size_t i = 0; i < n; i++) big[i] = (char)(i * 7);
    loom_ref pb;
    CHECK_RC(loom_put(c2, big, n, &pb), LOOM_OK);
    CHECK_RC(loom_get(c1, pb, 10000, &v), LOOM_OK);
    CHECK(v && loom_value_size(v) == n && !memcmp(loom_value_data(v), big, n));
    loom_value_release(&v);
    free(big);
    /* the second driver runs tasks */
    loom_ref lib2, r;
    CHECK_RC(loom_library_load(c2, LOOM_EXAMPLES_LIB, &lib2), LOOM_OK);
    CHECK(!memcmp(lib.id, lib2.id, LOOM_ID_LEN));
    loom_arg a = loom_arg_ref(pb);
    CHECK_RC(loom_submit(c2, lib2, "length", &a, 1, NULL, &r), LOOM_OK);
    int64_t len = 0;
    CHECK_RC(t_get_i64(c2, r, 30000, &len), LOOM_OK);
    CHECK(len == (int64_t)n);

    /* a detached job outlives the driver that submitted it */
    loom_graph *g;
    REQUIRE(loom_graph_new(&g) == LOOM_OK);
    loom_task_opts to = {.name = "kept-value"};
    int t = loom_graph_task(g, lib2, "value", &to);
    t_int x = t_i64(1234);
    loom_graph_arg_value(g, t, x.b, x.n);
    char job[LOOM_JOB_ID_LEN];
    loom_submit_opts so = {.job_name = "detached", .detached = 1};
    CHECK_RC(loom_graph_submit(c2, g, &so, job), LOOM_OK);
    loom_graph_destroy(&g);
    loom_ref kept;
    CHECK_RC(loom_job_ref(c2, job, "kept-value", 0, &kept), LOOM_OK);
    CHECK_RC(t_get_i64(c2, kept, 30000, &len), LOOM_OK);
    /* ... while what the driver held goes with it */
    loom_ref mine;
    CHECK_RC(loom_put(c2, "mine", 4, &mine), LOOM_OK);
    loom_disconnect(&c2);
    CHECK(c2 == NULL);
    int64_t y = 0;
    CHECK_RC(t_get_i64(c1, kept, 30000, &y), LOOM_OK);
    CHECK(y == 1234);
    loom_ref kept2;
    CHECK_RC(loom_job_ref(c1, job, "kept-value", 0, &kept2), LOOM_OK);
    CHECK(!memcmp(kept.id, kept2.id, LOOM_ID_LEN));
    CHECK_RC(loom_get(c1, mine, 5000, &v), LOOM_ENOTFOUND);
    CHECK_RC(loom_job_delete(c1, job), LOOM_OK);

    /* two drivers in one process share the node's store: one going away
     * must not disturb the zero-copy values the other still holds */
    {
        size_t zn = 20u << 20;
        uint8_t *zb = malloc(zn);
        for (size_t i = 0; i < zn; i++) zb[i] = (uint8_t)(i * 31 + 7);
        loom_ref zr;
        loom_value *zv = NULL;
        CHECK_RC(loom_put(c1, zb, zn, &zr), LOOM_OK);
        CHECK_RC(loom_get(c1, zr, 10000, &zv), LOOM_OK);
        memset(&o, 0, sizeof o);
        o.secret = secret;
        CHECK_RC(loom_connect(addr, &o, &c2), LOOM_OK);
        loom_ref tmp;
        CHECK_RC(loom_put(c2, zb, 1u << 20, &tmp), LOOM_OK);
        loom_disconnect(&c2);
        /* the object goes; new objects reuse the store's free pages */
        CHECK_RC(loom_release(c1, zr), LOOM_OK);
        usleep(200 * 1000);
        uint8_t *junk = malloc(zn);
        memset(junk, 0xee, zn);
        for (int i = 0; i < 5; i++) {
            loom_ref j;
            CHECK_RC(loom_put(c1, junk, zn, &j), LOOM_OK);
            CHECK_RC(loom_release(c1, j), LOOM_OK);
        }
        CHECK(zv && loom_value_size(zv) == zn && memcmp(loom_value_data(zv), zb, zn) == 0);
        loom_value_release(&zv);
        free(junk);
        free(zb);
    }

    /* drivers in several threads, a client each */
    {
        enum { NT = 4 };
        pthread_t th[NT];
        worker_arg wa[NT];
        for (int i = 0; i < NT; i++) {
            wa[i] = (worker_arg){addr, secret, i, 0};
            REQUIRE(pthread_create(&th[i], NULL, worker, &wa[i]) == 0);
        }
        for (int i = 0; i < NT; i++) {
            pthread_join(th[i], NULL);
            CHECK(wa[i].failures == 0);
        }
    }

    /* the right secret from the secret file */
    memset(&o, 0, sizeof o);
    snprintf(path, sizeof path, "%s/secret", cluster_dir);
    o.secret_file = path;
    CHECK_RC(loom_connect(addr, &o, &c2), LOOM_OK);
    CHECK_RC(loom_get(c2, p1, 10000, &v), LOOM_OK);
    loom_value_release(&v);
    loom_disconnect(&c2);
    /* ... and from the state dir's secret, with the address from its
     * address file (what `loom` commands do with no address) */
    memset(&o, 0, sizeof o);
    o.state_dir = cluster_dir;
    CHECK_RC(loom_connect(NULL, &o, &c2), LOOM_OK);
    CHECK_RC(loom_get(c2, p1, 10000, &v), LOOM_OK);
    loom_value_release(&v);
    loom_disconnect(&c2);

    /* nothing listening: ECONN, not a hang */
    memset(&o, 0, sizeof o);
    o.secret = secret;
    t0 = t_now_ms();
    CHECK_RC(loom_connect("127.0.0.1:1", &o, &c2), LOOM_ECONN);
    CHECK(t_now_ms() - t0 < 20000);
    CHECK_RC(loom_connect("not an address", &o, &c2), LOOM_EINVAL);

    loom_disconnect(&c1);
    /* the local cluster removed its files */
    CHECK(access(cluster_dir, F_OK) != 0 || getenv("LOOM_KEEP_LOCAL"));
    if (!getenv("LOOM_KEEP_LOCAL") && t_rm_rf(state)) fprintf(stderr, "cannot remove %s\n", state);
    return TEST_DONE();
}
