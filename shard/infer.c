/* shard/infer.c — the driver of batch inference (loom/shard.h): read the
 * dataset, cut it into shards, take each shard's result from the output
 * directory of an earlier run, from the cluster's cache, or from a task that
 * infers it, and write the results and the manifest.
 *
 * Cache: the key-value table of the head, key shard/cache/<hex of
 * sha256(model sha256 "\n" canonical parameters "\n" shard digest)>, holding
 * the result's .npy bytes as a blob (loom_kv_put_blob: checked against its
 * sha256 when read).  A shard's digest is sha256 of its column count and
 * float32 rows.
 *
 * In flight: at most max_in_flight tasks.  A failed task (its node died, its
 * executor crashed) is submitted again, its rows put again, up to 3 times.
 * A shard running longer than straggler_factor times the median shard time
 * gets a second copy (spread to the least loaded node); the first result
 * wins and the other is cancelled. */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/errf.h"
#include "base/file.h"
#include "loom/shard.h"
#include "serve/registry_store.h"
#include "shard/dataset.h"

#define MAX_TRIES 3
#define MAX_COPIES 2

static __thread char infer_err[600];

const char *loom_infer_last_error(void) { return infer_err; }

static int fail(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    loom__verrf(infer_err, sizeof(infer_err), rc, fmt, ap);
    va_end(ap);
    return rc;
}

static double now_s(void) { return (double)loom__now_us() / 1e6; }

static void hex(const unsigned char *md, int n, char *out)
{
    for (int i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* ---- shards ----------------------------------------------------------------- */

enum { S_PENDING, S_RUNNING, S_DONE };
enum { FROM_NONE, FROM_OUTPUT, FROM_CACHE, FROM_TASK };

typedef struct copy {
    loom_ref out, rows;
    double started;
    int live;
} copy;

typedef struct shard {
    int64_t index, first, rows;
    char digest[65], key[65];   /* content digest; cache key */
    int state, from, tries, ncopies;
    copy copies[MAX_COPIES];
    double took;                /* seconds, for the median */
    char out_sha[65];
} shard;

typedef struct run {
    loom_client *c;
    const loom_infer_opts *o;
    shard_dataset ds;
    shard *shards;
    int64_t nshards, shard_size;
    char model_name[256], model_sha[65], params[1024];
    int model_version;
    char *artifact;
    size_t artifact_len;
    loom_ref model_ref, lib;
    double num_cpus, num_gpus, straggler, model_put_at;
    int nodes;
    int max_in_flight, in_flight;
    loom_infer_progress p;
    double t0, last_progress;
    json_t *model_meta;
} run;

static const float *shard_rows(const run *r, const shard *s) { return r->ds.x + s->first * r->ds.cols; }
static size_t shard_bytes(const run *r, const shard *s) { return sizeof(float) * (size_t)(s->rows * r->ds.cols); }

static void digest_shard(run *r, shard *s)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char out[32];
    unsigned int n = 0;
    int64_t cols = r->ds.cols;
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    EVP_DigestUpdate(md, &cols, sizeof(cols));
    EVP_DigestUpdate(md, shard_rows(r, s), shard_bytes(r, s));
    EVP_DigestFinal_ex(md, out, &n);
    EVP_MD_CTX_free(md);
    hex(out, 32, s->digest);
    char keytext[65 + 1024 + 65 + 4];
    int k = snprintf(keytext, sizeof(keytext), "%s\n%s\n%s", r->model_sha, r->params, s->digest);
    loom_sha256_hex(keytext, (size_t)k, s->key);
}

static int make_shards(run *r)
{
    int64_t n = r->ds.rows, size = r->shard_size;
    r->nshards = n ? (n + size - 1) / size : 0;
    r->shards = calloc((size_t)(r->nshards ? r->nshards : 1), sizeof(shard));
    if (!r->shards) return fail(LOOM_ENOMEM, "out of memory for %lld shards", (long long)r->nshards);
    for (int64_t i = 0; i < r->nshards; i++) {
        shard *s = &r->shards[i];
        s->index = i;
        s->first = i * size;
        s->rows = n - s->first < size ? n - s->first : size;
        digest_shard(r, s);
    }
    r->p.shards = r->nshards;
    r->p.rows = n;
    return LOOM_OK;
}

/* ---- the model ---------------------------------------------------------------- */

/* The model's bytes, checked against the sha256 the registry recorded. */
static int fetch_artifact(run *r)
{
    if (r->artifact) return LOOM_OK;
    json_t *meta = NULL;
    int rc = loom_registry_fetch(r->c, r->model_name, r->model_version, &meta, &r->artifact, &r->artifact_len);
    json_decref(meta);
    if (rc) return fail(rc, "cannot read model %s version %d: %s", r->model_name, r->model_version, loom_strerror(rc));
    char sha[65];
    loom_sha256_hex(r->artifact, r->artifact_len, sha);
    if (r->model_sha[0] && strcmp(sha, r->model_sha))
        return fail(LOOM_EPROTO, "model %s version %d: its bytes do not match its sha256", r->model_name,
                    r->model_version);
    memcpy(r->model_sha, sha, sizeof(sha));
    return LOOM_OK;
}

static int load_model(run *r)
{
    const char *spec = r->o->model;
    const char *colon = strrchr(spec, ':');
    int version = 0;
    if (colon) {
        char *end;
        long v = strtol(colon + 1, &end, 10);
        if (*end || v <= 0 || v > 1000000) return fail(LOOM_EINVAL, "model '%s': the version after ':' must be a number", spec);
        version = (int)v;
    }
    size_t nlen = colon ? (size_t)(colon - spec) : strlen(spec);
    if (!nlen || nlen >= sizeof(r->model_name)) return fail(LOOM_EINVAL, "model '%s': want NAME or NAME:VERSION", spec);
    memcpy(r->model_name, spec, nlen);
    r->model_name[nlen] = 0;
    /* its metadata only: the artifact is fetched when a shard needs a task */
    int rc = loom_registry_fetch(r->c, r->model_name, version, &r->model_meta, NULL, NULL);
    if (rc == LOOM_ENOTFOUND)
        return fail(rc, "no model %s%s%s in the registry", r->model_name, version ? " version " : "",
                    version ? colon + 1 : "");
    if (rc) return fail(rc, "cannot read model %s: %s", spec, loom_strerror(rc));
    r->model_version = (int)json_integer_value(json_object_get(r->model_meta, "version"));
    const char *recorded = json_string_value(json_object_get(r->model_meta, "sha256"));
    if (!recorded || strlen(recorded) != 64) return fetch_artifact(r); /* no digest recorded: compute it */
    memcpy(r->model_sha, recorded, 65);
    return LOOM_OK;
}

/* The parameters, canonical (sorted keys, compact), with "device". */
static int canonical_params(run *r)
{
    json_t *p = r->o->params && *r->o->params ? json_loads(r->o->params, 0, NULL) : json_object();
    if (!json_is_object(p)) {
        json_decref(p);
        return fail(LOOM_EINVAL, "params: want a JSON object");
    }
    const char *dev = json_string_value(json_object_get(p, "device"));
    if (!dev) json_object_set_new(p, "device", json_string("cpu"));
    else if (strcmp(dev, "cpu") && strcmp(dev, "cuda")) {
        json_decref(p);
        return fail(LOOM_EINVAL, "params: device is cpu or cuda");
    }
    char *text = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(p);
    if (!text || strlen(text) >= sizeof(r->params)) {
        free(text);
        return fail(LOOM_EINVAL, "params: too long");
    }
    snprintf(r->params, sizeof(r->params), "%s", text);
    free(text);
    return LOOM_OK;
}

/* ---- outputs ---------------------------------------------------------------- */

static void out_path(const run *r, const shard *s, const char *suffix, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/shard-%05lld%s", r->o->output, (long long)s->index, suffix);
}

static int write_file(const char *path, const void *data, size_t len)
{
    char tmp[PATH_MAX + 16];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return -1;
    int ok = fwrite(data, 1, len, f) == len;
    if (fclose(f)) ok = 0;
    if (!ok || rename(tmp, path)) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int read_whole(const char *path, void **data, size_t *len)
{
    char *buf = NULL;
    if (loom__file_read(path, SIZE_MAX - 1, &buf, len)) return -1;
    *data = buf;
    return 0;
}

/* The probabilities (.npy bytes of float32 [rows, k]) of a finished shard
 * into its two files. */
static int write_result(run *r, shard *s, const void *npy, size_t len)
{
    char path[PATH_MAX], err[512];
    shard_dataset probs = {0};
    if (shard_dataset_parse(npy, len, "npy", &probs, err, sizeof(err)) || probs.rows != s->rows)
        return fail(LOOM_EPROTO, "shard %lld: its result is not %lld rows of probabilities (%s)", (long long)s->index,
                    (long long)s->rows, err);
    int64_t *labels = malloc(sizeof(int64_t) * (size_t)(probs.rows ? probs.rows : 1));
    for (int64_t i = 0; labels && i < probs.rows; i++) {
        const float *row = probs.x + i * probs.cols;
        int64_t best = 0;
        for (int64_t k = 1; k < probs.cols; k++)
            if (row[k] > row[best]) best = k;
        labels[i] = best;
    }
    out_path(r, s, ".npy", path, sizeof(path));
    int rc = labels ? LOOM_OK : LOOM_ENOMEM;
    if (!rc && write_file(path, npy, len)) rc = fail(LOOM_EIO, "cannot write %s: %s", path, strerror(errno));
    out_path(r, s, ".labels.npy", path, sizeof(path));
    if (!rc && shard_npy_write_i64(path, labels, probs.rows, err, sizeof(err))) rc = fail(LOOM_EIO, "%s", err);
    free(labels);
    shard_dataset_free(&probs);
    if (!rc) loom_sha256_hex(npy, len, s->out_sha);
    return rc;
}

/* ---- the cache ---------------------------------------------------------------- */

static void cache_key(const shard *s, char *out, size_t cap) { snprintf(out, cap, "shard/cache/%s", s->key); }

static int cache_get(run *r, shard *s, void **npy, size_t *len)
{
    char key[128];
    cache_key(s, key, sizeof(key));
    return loom_kv_get_blob(r->c, key, npy, len) ? -1 : 0; /* absent, torn or corrupt: compute it */
}

static void cache_put(run *r, shard *s, const void *npy, size_t len)
{
    char key[128];
    cache_key(s, key, sizeof(key));
    loom_kv_put_blob(r->c, key, npy, len); /* a cache: a result not kept is computed next time */
}

/* ---- the manifest --------------------------------------------------------------- */

static int write_manifest(run *r, int complete)
{
    static const char *from_name[] = {"none", "output", "cache", "task"};
    json_t *shards = json_array();
    for (int64_t i = 0; i < r->nshards; i++) {
        shard *s = &r->shards[i];
        char p1[PATH_MAX], p2[PATH_MAX];
        out_path(r, s, ".npy", p1, sizeof(p1));
        out_path(r, s, ".labels.npy", p2, sizeof(p2));
        json_t *e = json_pack("{s:I, s:I, s:I, s:s, s:s}", "index", (json_int_t)s->index, "first_row",
                              (json_int_t)s->first, "rows", (json_int_t)s->rows, "input_sha256", s->digest,
                              "cache_key", s->key);
        if (s->state == S_DONE) {
            json_object_set_new(e, "output", json_string(strrchr(p1, '/') + 1));
            json_object_set_new(e, "output_sha256", json_string(s->out_sha));
            json_object_set_new(e, "labels", json_string(strrchr(p2, '/') + 1));
            json_object_set_new(e, "from", json_string(from_name[s->from]));
        }
        json_array_append_new(shards, e);
    }
    json_t *params = json_loads(r->params, 0, NULL);
    char *real_in = realpath(r->o->input, NULL);
    json_t *m = json_pack("{s:i, s:b, s:{s:s, s:i, s:s}, s:o, s:{s:s, s:I, s:I}, s:I, s:o,"
                          " s:{s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f}}",
                          "manifest_version", 1, "complete", complete, "model", "name", r->model_name, "version",
                          r->model_version, "sha256", r->model_sha, "params", params ? params : json_object(),
                          "input", "path", real_in ? real_in : r->o->input, "rows", (json_int_t)r->ds.rows, "cols",
                          (json_int_t)r->ds.cols, "shard_size", (json_int_t)r->shard_size, "shards", shards, "totals",
                          "shards", (json_int_t)r->nshards, "done", (json_int_t)r->p.done, "cache_hits",
                          (json_int_t)r->p.cache_hits, "computed", (json_int_t)r->p.computed, "from_output",
                          (json_int_t)r->p.from_output, "speculative", (json_int_t)r->p.speculative, "hit_rate",
                          r->nshards ? (double)r->p.cache_hits / (double)r->nshards : 0.0, "seconds",
                          now_s() - r->t0);
    free(real_in);
    char *text = m ? json_dumps(m, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
    json_decref(m);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/manifest.json", r->o->output);
    int rc = text && !write_file(path, text, strlen(text)) ? LOOM_OK : fail(LOOM_EIO, "cannot write %s", path);
    free(text);
    return rc;
}

/* Shards an earlier run wrote: its manifest names the same model, parameters
 * and input digest, and the file is there with its recorded sha256. */
static void take_earlier_outputs(run *r)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/manifest.json", r->o->output);
    json_t *m = json_load_file(path, 0, NULL);
    if (!m) return;
    json_t *model = json_object_get(m, "model");
    const char *sha = json_string_value(json_object_get(model, "sha256"));
    char *params = json_dumps(json_object_get(m, "params"), JSON_COMPACT | JSON_SORT_KEYS);
    int same = sha && !strcmp(sha, r->model_sha) && params && !strcmp(params, r->params);
    free(params);
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(m, "shards"), i, e) {
        int64_t idx = json_integer_value(json_object_get(e, "index"));
        const char *in = json_string_value(json_object_get(e, "input_sha256"));
        const char *out_sha = json_string_value(json_object_get(e, "output_sha256"));
        if (!same || idx < 0 || idx >= r->nshards || !in || !out_sha) continue;
        shard *s = &r->shards[idx];
        if (strcmp(in, s->digest) || json_integer_value(json_object_get(e, "first_row")) != s->first) continue;
        char p1[PATH_MAX], p2[PATH_MAX], got[65];
        void *data = NULL;
        size_t len = 0;
        out_path(r, s, ".npy", p1, sizeof(p1));
        out_path(r, s, ".labels.npy", p2, sizeof(p2));
        if (read_whole(p1, &data, &len) || access(p2, R_OK)) {
            free(data);
            continue;
        }
        loom_sha256_hex(data, len, got);
        free(data);
        if (strcmp(got, out_sha)) continue;
        memcpy(s->out_sha, got, sizeof(got));
        s->state = S_DONE;
        s->from = FROM_OUTPUT;
        r->p.done++;
        r->p.from_output++;
        r->p.rows_done += s->rows;
    }
    json_decref(m);
}

/* ---- tasks ----------------------------------------------------------------------- */

/* Nodes alive now (a second copy of a straggler only helps elsewhere). */
static int alive_nodes(loom_client *c)
{
    char *js = NULL;
    int n = 0;
    if (loom_status_json(c, &js)) return 1;
    json_t *st = json_loads(js, 0, NULL);
    free(js);
    size_t i;
    json_t *node;
    json_array_foreach(json_object_get(st, "nodes"), i, node) {
        const char *state = json_string_value(json_object_get(node, "state"));
        n += state && !strcmp(state, "alive");
    }
    json_decref(st);
    return n;
}

static int ensure_library(run *r)
{
    Dl_info info;
    if (!dladdr((void *)&loom_infer, &info) || !info.dli_fname)
        return fail(LOOM_ENOTFOUND, "cannot find libloom_shard.so's path");
    int rc = loom_library_load(r->c, info.dli_fname, &r->lib);
    if (rc) return fail(rc, "cannot load %s: %s", info.dli_fname, loom_last_error(r->c));
    if ((rc = fetch_artifact(r))) return rc;
    rc = loom_put(r->c, r->artifact, r->artifact_len, &r->model_ref);
    if (rc) return fail(rc, "cannot put the model: %s", loom_last_error(r->c));
    r->model_put_at = now_s();
    r->nodes = alive_nodes(r->c);
    return LOOM_OK;
}

static int submit_copy(run *r, shard *s, int spread)
{
    copy *cp = &s->copies[s->ncopies];
    int rc = loom_put(r->c, shard_rows(r, s), shard_bytes(r, s), &cp->rows);
    if (rc) return fail(rc, "cannot put shard %lld: %s", (long long)s->index, loom_last_error(r->c));
    char params[1200];
    int threads = r->num_cpus >= 1 ? (int)r->num_cpus : 1;
    json_t *pj = json_loads(r->params, 0, NULL);
    const char *dev = json_string_value(json_object_get(pj, "device"));
    int k = snprintf(params, sizeof(params), "{\"cols\": %lld, \"device\": \"%s\", \"threads\": %d}",
                     (long long)r->ds.cols, dev ? dev : "cpu", threads);
    json_decref(pj);
    loom_arg args[4] = {loom_arg_value(r->model_sha, strlen(r->model_sha)), loom_arg_ref(r->model_ref),
                        loom_arg_ref(cp->rows), loom_arg_value(params, (size_t)k)};
    char name[48];
    snprintf(name, sizeof(name), "shard-%05lld", (long long)s->index);
    loom_task_opts o = {.name = name, .num_cpus = r->num_cpus, .num_gpus = r->num_gpus,
                        .strategy = spread ? LOOM_SCHED_SPREAD : LOOM_SCHED_DEFAULT};
    rc = loom_submit(r->c, r->lib, "infer_shard", args, 4, &o, &cp->out);
    if (rc) {
        loom_release(r->c, cp->rows);
        return fail(rc, "cannot submit shard %lld: %s", (long long)s->index, loom_last_error(r->c));
    }
    cp->started = now_s();
    cp->live = 1;
    s->ncopies++;
    s->state = S_RUNNING;
    r->in_flight++;
    return LOOM_OK;
}

static void drop_copy(run *r, copy *cp, int cancel)
{
    if (!cp->live) return;
    if (cancel) loom_cancel(r->c, cp->out);
    loom_release(r->c, cp->out);
    loom_release(r->c, cp->rows);
    cp->live = 0;
    r->in_flight--;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median_took(const run *r)
{
    double *v = malloc(sizeof(double) * (size_t)(r->nshards ? r->nshards : 1));
    int64_t n = 0;
    for (int64_t i = 0; v && i < r->nshards; i++)
        if (r->shards[i].from == FROM_TASK) v[n++] = r->shards[i].took;
    double m = -1;
    if (n >= 3) {
        qsort(v, (size_t)n, sizeof(double), cmp_double);
        m = v[n / 2];
    }
    free(v);
    return m;
}

/* A copy of s finished: keep its result, or try again. */
static int copy_done(run *r, shard *s, copy *cp)
{
    loom_value *v = NULL;
    int rc = loom_get(r->c, cp->out, 0, &v);
    if (!rc) {
        const void *npy = loom_value_data(v);
        size_t len = loom_value_size(v);
        rc = write_result(r, s, npy, len);
        if (!rc && !r->o->no_cache) cache_put(r, s, npy, len);
        loom_value_release(&v);
        double took = now_s() - cp->started;
        drop_copy(r, cp, 0);
        for (int i = 0; i < s->ncopies; i++) drop_copy(r, &s->copies[i], 1); /* the slower copy */
        if (rc) return rc;
        s->state = S_DONE;
        s->from = FROM_TASK;
        s->took = took;
        r->p.done++;
        r->p.computed++;
        r->p.rows_done += s->rows;
        return write_manifest(r, 0);
    }
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", loom_last_error(r->c));
    drop_copy(r, cp, 0);
    for (int i = 0; i < s->ncopies; i++)
        if (s->copies[i].live) return LOOM_OK; /* the other copy goes on */
    s->ncopies = 0;
    if (rc == LOOM_ETASK || ++s->tries >= MAX_TRIES) /* the model itself failed: trying again will not help */
        return fail(LOOM_ETASK, "shard %lld failed: %s: %s", (long long)s->index, loom_strerror(rc), msg);
    if (now_s() - r->model_put_at > 1) { /* its node may have died with the model's only copy */
        loom_ref fresh;
        if (!loom_put(r->c, r->artifact, r->artifact_len, &fresh)) {
            loom_release(r->c, r->model_ref);
            r->model_ref = fresh;
            r->model_put_at = now_s();
        }
    }
    r->p.retried++;
    s->state = S_PENDING;
    return LOOM_OK;
}

/* Finished copies, and a second copy for stragglers. */
static int poll_running(run *r)
{
    loom_ref refs[512];
    copy *who[512];
    shard *of[512];
    int n = 0;
    for (int64_t i = 0; i < r->nshards && n < 512; i++) {
        shard *s = &r->shards[i];
        if (s->state != S_RUNNING) continue;
        for (int k = 0; k < s->ncopies && n < 512; k++)
            if (s->copies[k].live) {
                refs[n] = s->copies[k].out;
                who[n] = &s->copies[k];
                of[n++] = s;
            }
    }
    if (!n) return LOOM_OK;
    int ready[512];
    int got = loom_wait(r->c, refs, n, 1, 50, ready);
    if (got < 0) return fail(got, "waiting for shards: %s", loom_last_error(r->c));
    for (int i = 0; i < n; i++) {
        if (!ready[i] || !who[i]->live || of[i]->state != S_RUNNING) continue;
        int rc = copy_done(r, of[i], who[i]);
        if (rc) return rc;
    }
    double med = r->straggler > 0 && r->nodes > 1 ? median_took(r) : -1, t = now_s();
    for (int64_t i = 0; med > 0 && i < r->nshards; i++) {
        shard *s = &r->shards[i];
        if (s->state != S_RUNNING || s->ncopies != 1 || !s->copies[0].live) continue;
        if (t - s->copies[0].started > r->straggler * med && t - s->copies[0].started > 0.5) {
            if (submit_copy(r, s, 1)) return LOOM_EIO;
            r->p.speculative++;
        }
    }
    return LOOM_OK;
}

/* ---- progress ------------------------------------------------------------------ */

static void report(run *r, int finished)
{
    double t = now_s();
    r->p.seconds = t - r->t0;
    r->p.rows_per_s = r->p.seconds > 0 ? (double)r->p.rows_done / r->p.seconds : 0;
    r->p.eta_s = r->p.rows_per_s > 0 ? (double)(r->p.rows - r->p.rows_done) / r->p.rows_per_s : -1;
    r->p.finished = finished;
    int interval = r->o->interval_ms > 0 ? r->o->interval_ms : 500;
    if (r->o->progress && (finished || (t - r->last_progress) * 1000 >= interval)) {
        r->o->progress(&r->p, r->o->progress_arg);
        r->last_progress = t;
    }
}

/* ---- the run ---------------------------------------------------------------------- */

static int check_opts(run *r)
{
    const loom_infer_opts *o = r->o;
    if (!o->model || !*o->model || !o->input || !*o->input || !o->output || !*o->output)
        return fail(LOOM_EINVAL, "want a model, an input and an output directory");
    if (o->shard_size < 0 || o->max_in_flight < 0 || o->num_cpus < 0 || o->num_gpus < 0)
        return fail(LOOM_EINVAL, "shard size, tasks in flight, CPUs and GPUs must not be negative");
    r->shard_size = o->shard_size ? o->shard_size : 1000;
    r->max_in_flight = o->max_in_flight ? o->max_in_flight : 8;
    if (r->max_in_flight > 256) r->max_in_flight = 256;
    r->num_cpus = o->num_cpus > 0 ? o->num_cpus : 1;
    r->straggler = o->straggler_factor == 0 ? 4 : o->straggler_factor;
    if (mkdir(o->output, 0755) && errno != EEXIST)
        return fail(LOOM_EIO, "cannot make %s: %s", o->output, strerror(errno));
    return LOOM_OK;
}

static double model_gpus(const run *r)
{
    json_t *g = json_object_get(json_object_get(r->model_meta, "parameters"), "gpus");
    return json_is_number(g) ? json_number_value(g) : 0;
}

static int drive(run *r)
{
    int rc = LOOM_OK;
    for (int64_t i = 0; i < r->nshards; i++) { /* the cache first */
        shard *s = &r->shards[i];
        void *npy = NULL;
        size_t len = 0;
        if (s->state != S_PENDING || r->o->no_cache || cache_get(r, s, &npy, &len)) continue;
        rc = write_result(r, s, npy, len);
        free(npy);
        if (rc) return rc;
        s->state = S_DONE;
        s->from = FROM_CACHE;
        r->p.done++;
        r->p.cache_hits++;
        r->p.rows_done += s->rows;
        report(r, 0);
    }
    if ((rc = write_manifest(r, r->p.done == r->nshards))) return rc;
    if (r->p.done == r->nshards) return LOOM_OK;
    if ((rc = ensure_library(r))) return rc;
    int64_t next = 0;
    while (r->p.done < r->nshards) {
        while (r->in_flight < r->max_in_flight && next < r->nshards) {
            shard *s = &r->shards[next];
            if (s->state == S_PENDING && (rc = submit_copy(r, s, 0))) return rc;
            next++;
        }
        if ((rc = poll_running(r))) return rc;
        report(r, 0);
        if (next >= r->nshards) /* shards to try again */
            for (int64_t i = 0; i < r->nshards; i++)
                if (r->shards[i].state == S_PENDING) {
                    next = i;
                    break;
                }
    }
    return write_manifest(r, 1);
}

static void run_free(run *r)
{
    for (int64_t i = 0; r->shards && i < r->nshards; i++)
        for (int k = 0; k < r->shards[i].ncopies; k++) drop_copy(r, &r->shards[i].copies[k], 1);
    if (r->artifact) loom_release(r->c, r->model_ref);
    free(r->shards);
    free(r->artifact);
    json_decref(r->model_meta);
    shard_dataset_free(&r->ds);
}

int loom_infer(loom_client *c, const loom_infer_opts *o, loom_infer_progress *stats)
{
    infer_err[0] = 0;
    if (!c || !o) return fail(LOOM_EINVAL, "loom_infer: no client or options");
    run r = {.c = c, .o = o, .t0 = now_s()};
    char err[512];
    int rc = check_opts(&r);
    if (!rc) rc = load_model(&r);
    if (!rc) rc = canonical_params(&r);
    if (!rc && (rc = shard_dataset_load(o->input, &r.ds, err, sizeof(err)))) fail(rc, "%s", err);
    if (!rc) {
        r.num_gpus = o->num_gpus > 0 ? o->num_gpus : model_gpus(&r);
        json_t *pj = json_loads(r.params, 0, NULL);
        const char *dev = json_string_value(json_object_get(pj, "device"));
        if (dev && !strcmp(dev, "cuda") && r.num_gpus <= 0)
            rc = fail(LOOM_EINVAL, "device cuda: give the shard tasks GPUs (--num-gpus, or the model's \"gpus\" parameter)");
        json_decref(pj);
    }
    if (!rc) rc = make_shards(&r);
    if (!rc) take_earlier_outputs(&r);
    if (!rc) rc = drive(&r);
    report(&r, 1);
    if (stats) *stats = r.p;
    run_free(&r);
    return rc;
}
