/* tests/test_api_tune.c — the sweep API of <loom/tune.h> from C, on a real
 * local cluster: a refused spec and its reason; a sweep run with a progress
 * callback (its snapshots count up, the last says done); its JSON record;
 * the list of sweeps; a stop asked by another client while it runs; an
 * interrupted driver and the same sweep resumed to its end with
 * loom_sweep_open; results in blocks read back; and the blobs of the
 * key-value table that checkpoints and artifacts are kept in. */
#include <dirent.h>
#include <pthread.h>
#include <jansson.h>
#include <loom/tune.h>
#include "test_api_util.h"

typedef struct watch {
    int calls, done, last_running;
    int64_t last_trials;
    loom_sweep *interrupt_after3; /* interrupt this sweep at the 3rd call */
} watch;

static void on_progress(const loom_sweep_progress *p, void *arg)
{
    watch *w = arg;
    w->calls++;
    CHECK(p->trials >= w->last_trials); /* trials only ever get added */
    w->last_trials = p->trials;
    w->last_running = p->running;
    w->done = p->done;
    if (w->interrupt_after3 && w->calls == 3) loom_sweep_interrupt(w->interrupt_after3);
}

static char *spec_text(const char *name, int trials, int step_ms, int max_t, const char *out)
{
    char *s = NULL;
    if (asprintf(&s,
                 "{\"name\": \"%s\", \"metric\": \"loss\", \"mode\": \"min\","
                 " \"space\": {\"a\": {\"type\": \"uniform\", \"lower\": 0, \"upper\": 1}, \"b\": 1,"
                 " \"step_ms\": %d, \"max_t\": %d},"
                 " \"search\": {\"algorithm\": \"random\", \"seed\": 5},"
                 " \"scheduler\": {\"type\": \"median\", \"grace_period\": 2, \"min_samples\": 2},"
                 " \"trial\": {\"library\": \"%s\", \"function\": \"curve\"},"
                 " \"limits\": {\"trials\": %d, \"concurrent\": 2}, \"output\": \"%s\"}",
                 name, step_ms, max_t, LOOM_TUNE_EXAMPLES_LIB, trials, out) < 0)
        return NULL;
    return s;
}

static json_t *sweep_record(loom_sweep *s)
{
    char *text = NULL;
    CHECK_RC(loom_sweep_json(s, &text), LOOM_OK);
    json_t *j = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    REQUIRE(j != NULL);
    return j;
}

static void test_refused(loom_client *c)
{
    loom_sweep *s = NULL;
    CHECK_RC(loom_sweep_create(c, "{\"metric\": ", &s), LOOM_EINVAL);
    CHECK(s == NULL && strstr(loom_sweep_last_error(), "not JSON"));
    CHECK_RC(loom_sweep_create(c, "{\"metric\": \"x\", \"space\": {\"a\": {\"type\": \"uniform\"}},"
                                  " \"trial\": {\"command\": [\"true\"]}}", &s), LOOM_EINVAL);
    CHECK(strstr(loom_sweep_last_error(), "space") != NULL);
    CHECK_RC(loom_sweep_create(c, "{\"metric\": \"x\", \"space\": {}, \"trial\": {}}", &s), LOOM_EINVAL);
    CHECK(strstr(loom_sweep_last_error(), "trial") != NULL);
    CHECK_RC(loom_sweep_open(c, "0123456789abcdef0123456789abcdef", &s), LOOM_ENOTFOUND);
    CHECK_RC(loom_sweep_create(NULL, "{}", &s), LOOM_EINVAL);
}

static void test_run(loom_client *c, const char *dir)
{
    char out[512];
    snprintf(out, sizeof(out), "%s/out-run", dir);
    char *spec = spec_text("c-run", 6, 5, 6, out);
    loom_sweep *s = NULL;
    REQUIRE(spec && loom_sweep_create(c, spec, &s) == LOOM_OK);
    free(spec);
    watch w = {0};
    CHECK_RC(loom_sweep_run(s, on_progress, &w, 50), LOOM_OK);
    CHECK(w.calls >= 2 && w.done == 1 && w.last_running == 0 && w.last_trials == 6);
    json_t *j = sweep_record(s);
    json_t *sw = json_object_get(j, "sweep"), *trials = json_object_get(j, "trials");
    CHECK(!strcmp(json_string_value(json_object_get(sw, "state")), "completed"));
    CHECK(json_array_size(trials) == 6);
    size_t i;
    json_t *t;
    int64_t best = -1;
    double bestv = 1e9;
    json_array_foreach(trials, i, t) {
        const char *st = json_string_value(json_object_get(t, "state"));
        CHECK(!strcmp(st, "completed") || !strcmp(st, "stopped"));
        double b = json_number_value(json_object_get(t, "best"));
        if (b < bestv) bestv = b, best = (int64_t)i;
    }
    CHECK(json_integer_value(json_object_get(sw, "best_trial")) == best);
    char path[600];
    snprintf(path, sizeof(path), "%s/results.csv", out);
    CHECK(access(path, R_OK) == 0);
    char *list = NULL;
    CHECK_RC(loom_sweeps_json(c, &list), LOOM_OK);
    CHECK(list && strstr(list, loom_sweep_id(s)));
    free(list);
    json_decref(j);
    CHECK_RC(loom_sweep_run(s, NULL, NULL, 0), LOOM_ESTATE); /* it has ended */
    loom_sweep_destroy(&s);
    CHECK(s == NULL);
}

typedef struct stopper {
    const char *state_dir, *id;
    int rc;
} stopper;

/* Another driver of the same cluster asks the sweep to stop. */
static void *stop_later(void *arg)
{
    stopper *st = arg;
    usleep(800 * 1000);
    /* the local cluster keeps its files in STATE_DIR/local-XXXXXX */
    char local[600] = "", addr_path[700], addr[128] = "";
    DIR *d = opendir(st->state_dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (!strncmp(e->d_name, "local-", 6)) snprintf(local, sizeof(local), "%s/%s", st->state_dir, e->d_name);
    if (d) closedir(d);
    loom_connect_opts o;
    memset(&o, 0, sizeof o);
    o.state_dir = local;
    snprintf(addr_path, sizeof(addr_path), "%s/address", local);
    FILE *f = fopen(addr_path, "r");
    if (f) {
        if (!fgets(addr, sizeof(addr), f)) addr[0] = 0;
        fclose(f);
    }
    addr[strcspn(addr, "\n")] = 0;
    loom_client *c2 = NULL;
    st->rc = loom_connect(addr, &o, &c2);
    if (!st->rc) st->rc = loom_sweep_request_stop(c2, st->id);
    loom_disconnect(&c2);
    return NULL;
}

static void test_stop(loom_client *c, const char *dir)
{
    char out[512];
    snprintf(out, sizeof(out), "%s/out-stop", dir);
    char *spec = spec_text("c-stop", 50, 100, 300, out); /* minutes, if it never stopped */
    loom_sweep *s = NULL;
    REQUIRE(spec && loom_sweep_create(c, spec, &s) == LOOM_OK);
    free(spec);
    stopper st = {dir, loom_sweep_id(s), -1};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, stop_later, &st) == 0);
    int64_t t0 = t_now_ms();
    CHECK_RC(loom_sweep_run(s, NULL, NULL, 0), LOOM_OK);
    pthread_join(th, NULL);
    CHECK_RC(st.rc, LOOM_OK);
    CHECK(t_now_ms() - t0 < 20000);
    json_t *j = sweep_record(s);
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(j, "sweep"), "state")), "stopped"));
    json_decref(j);
    loom_sweep_destroy(&s);
}

static void test_interrupt_resume(loom_client *c, const char *dir)
{
    char out[512];
    snprintf(out, sizeof(out), "%s/out-resume", dir);
    char *spec = spec_text("c-resume", 6, 40, 8, out);
    loom_sweep *s = NULL;
    REQUIRE(spec && loom_sweep_create(c, spec, &s) == LOOM_OK);
    free(spec);
    char id[40];
    snprintf(id, sizeof(id), "%s", loom_sweep_id(s));
    watch w = {.interrupt_after3 = s};
    CHECK_RC(loom_sweep_run(s, on_progress, &w, 100), LOOM_OK);
    json_t *j = sweep_record(s);
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(j, "sweep"), "state")), "running"));
    json_decref(j);
    loom_sweep_destroy(&s);
    /* the same client takes it up again: its trials went on meanwhile */
    CHECK_RC(loom_sweep_open(c, id, &s), LOOM_OK);
    watch w2 = {0};
    CHECK_RC(loom_sweep_run(s, on_progress, &w2, 100), LOOM_OK);
    j = sweep_record(s);
    json_t *trials = json_object_get(j, "trials");
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(j, "sweep"), "state")), "completed"));
    CHECK(json_array_size(trials) == 6);
    size_t i;
    json_t *t;
    json_array_foreach(trials, i, t) {
        /* results are consecutive from 1, none lost or doubled by the handover */
        json_t *res = json_object_get(t, "results");
        for (size_t k = 0; k < json_array_size(res); k++)
            CHECK(json_number_value(json_object_get(json_array_get(res, k), "t")) == (double)(k + 1));
    }
    json_decref(j);
    loom_sweep_destroy(&s);
}

/* A trial with 300 results (kept in blocks beside its record) reads back
 * whole and in order. */
static void test_many_results(loom_client *c, const char *dir)
{
    char out[512];
    snprintf(out, sizeof(out), "%s/out-many", dir);
    char *spec = spec_text("c-many", 1, 0, 300, out);
    loom_sweep *s = NULL;
    REQUIRE(spec && loom_sweep_create(c, spec, &s) == LOOM_OK);
    free(spec);
    char id[40];
    snprintf(id, sizeof(id), "%s", loom_sweep_id(s));
    CHECK_RC(loom_sweep_run(s, NULL, NULL, 0), LOOM_OK);
    loom_sweep_destroy(&s);
    CHECK_RC(loom_sweep_open(c, id, &s), LOOM_OK);
    json_t *j = sweep_record(s);
    json_t *res = json_object_get(json_array_get(json_object_get(j, "trials"), 0), "results");
    CHECK(json_array_size(res) == 300);
    for (size_t k = 0; k < json_array_size(res); k++)
        CHECK(json_number_value(json_object_get(json_array_get(res, k), "t")) == (double)(k + 1));
    json_decref(j);
    loom_sweep_destroy(&s);
}

/* loom_kv_put_blob/get_blob/del_blob, which sweeps keep checkpoints and
 * artifacts in: small and chunked values, a torn or corrupt one, deletion. */
static void test_kv_blob(loom_client *c)
{
    size_t big = 3500000, n = 0;
    unsigned char *b = malloc(big);
    REQUIRE(b != NULL);
    for (size_t i = 0; i < big; i++) b[i] = (unsigned char)(i * 7 + (i >> 13));
    void *got = NULL;
    CHECK_RC(loom_kv_put_blob(c, "test/blob/small", "hello", 5), LOOM_OK);
    CHECK_RC(loom_kv_get_blob(c, "test/blob/small", &got, &n), LOOM_OK);
    CHECK(n == 5 && got && !memcmp(got, "hello", 5));
    free(got);
    CHECK_RC(loom_kv_put_blob(c, "test/blob/empty", NULL, 0), LOOM_OK);
    CHECK_RC(loom_kv_get_blob(c, "test/blob/empty", &got, &n), LOOM_OK);
    CHECK(n == 0);
    free(got);
    CHECK_RC(loom_kv_put_blob(c, "test/blob/big", b, big), LOOM_OK);
    CHECK_RC(loom_kv_get_blob(c, "test/blob/big", &got, &n), LOOM_OK);
    CHECK(n == big && got && !memcmp(got, b, big));
    free(got);
    CHECK_RC(loom_kv_put(c, "test/blob/big/1", "x", 1), LOOM_OK); /* a chunk replaced */
    CHECK_RC(loom_kv_get_blob(c, "test/blob/big", &got, &n), LOOM_EPROTO);
    CHECK_RC(loom_kv_del(c, "test/blob/big/1"), LOOM_OK); /* a chunk gone */
    CHECK_RC(loom_kv_get_blob(c, "test/blob/big", &got, &n), LOOM_EPROTO);
    CHECK_RC(loom_kv_put(c, "test/blob/plain", "not a blob", 10), LOOM_OK);
    CHECK_RC(loom_kv_get_blob(c, "test/blob/plain", &got, &n), LOOM_EPROTO);
    CHECK_RC(loom_kv_put_blob(c, "test/blob/big", b, big), LOOM_OK);
    CHECK_RC(loom_kv_del_blob(c, "test/blob/big"), LOOM_OK);
    CHECK_RC(loom_kv_get_blob(c, "test/blob/big", &got, &n), LOOM_ENOTFOUND);
    CHECK_RC(loom_kv_get(c, "test/blob/big/0", 0, &got, &n), LOOM_ENOTFOUND); /* its chunks went too */
    CHECK_RC(loom_kv_del_blob(c, "test/blob/none"), LOOM_ENOTFOUND);
    free(b);
}

int main(void)
{
    char dir[] = "/tmp/loom-test-tune-XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    loom_client *c = t_connect(1, 2, dir);
    fprintf(stderr, "-- %s\n", "test_kv_blob");
    test_kv_blob(c);
    fprintf(stderr, "-- %s\n", "test_refused");
    test_refused(c);
    fprintf(stderr, "-- %s\n", "test_run");
    test_run(c, dir);
    fprintf(stderr, "-- %s\n", "test_stop");
    test_stop(c, dir);
    fprintf(stderr, "-- %s\n", "test_many_results");
    test_many_results(c, dir);
    fprintf(stderr, "-- %s\n", "test_interrupt_resume");
    test_interrupt_resume(c, dir);
    loom_disconnect(&c);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return TEST_DONE();
}
