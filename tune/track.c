/* tune/track.c — a sweep's results and lineage on disk (tune/track.h).
 *
 * Three views of the same records, all rewritten in place so a resumed sweep
 * replaces rather than duplicates:
 *
 *   OUT/mlruns/   MLflow's file-store layout (mlflow/store/tracking/
 *                 file_store.py): 0/meta.yaml (the "Default" experiment
 *                 MLflow expects), <exp>/meta.yaml (one experiment per
 *                 sweep, its numeric id derived from the sweep id), and
 *                 <exp>/<run>/{meta.yaml, params/, metrics/, tags/,
 *                 artifacts/} per trial (the run id derived from the sweep
 *                 and trial ids).  Metric files hold "<ms> <value> <step>"
 *                 lines; params and tags hold their value without newline.
 *   OUT/prov/     W3C PROV-JSON (https://www.w3.org/Submission/prov-json/):
 *                 trial_NNNN.json per trial and sweep.json for the sweep.
 *   OUT/results.{csv,json}, OUT/best.json   the table and the best trial.
 *
 * Every file is written to a temporary name and renamed, so a reader (the
 * MLflow UI polling the store) never sees half a file.  Temporary files of
 * a run live in the run's own folder, which MLflow does not list, never in
 * params/, metrics/ or tags/, which it does.
 *
 * Names from users (config keys, metric names, artifact names) become file
 * names and PROV local names only through track_safe_name(): [A-Za-z0-9_.-],
 * never starting with '.', so "../x" and "a/b" cannot leave their folder.
 *
 * Digests of local code and data files are cached in OUT/prov/.sha256.json
 * by path, device, inode, size and mtime: a trial is rewritten on every
 * result, and a dataset of gigabytes must not be read again each time.
 *
 * Numbers are written as the shortest text that reads back to the same
 * double (jansson's own dump writes 17 digits: 0.1 as 0.10000000000000001),
 * by the small JSON writer (track_write.c), which also writes the pretty JSON
 * files.
 *
 * This file: the records, file and digest helpers, the results table and the
 * public calls; the MLflow store is written by track_mlflow.c, the PROV-JSON
 * documents by track_prov.c, and what they share is in track_internal.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* the GNU strerror_r, which returns the message; mkostemp */
#endif
#include "base/errf.h"
#include "base/clock.h"
#include "tune/track.h"
#include "tune/track_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "loom/loom.h"


/* ---- one call's context ------------------------------------------------ */

__attribute__((format(printf, 3, 4)))
int track_fail(track_ctx *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    loom__verrf(c->err, c->errlen, code, fmt, ap);
    va_end(ap);
    return code;
}

static int fail_io(track_ctx *c, const char *what, const char *path)
{
    char buf[128];
    const char *msg = strerror_r(errno, buf, sizeof buf);
    return track_fail(c, LOOM_EIO, "%s %s: %s", what, path, msg);
}

/* ---- numbers, times, names --------------------------------------------- */

/* The shortest "%g" text that reads back as v, with a '.' or an exponent so
 * that it reads back as a real (JSON, Python's float()). */
void track_fmt_double(double v, char out[40])
{
    if (!isfinite(v)) {
        snprintf(out, 40, "%s", isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, 40, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            break;
    }
    if (!strpbrk(out, ".eE"))
        strcat(out, ".0");
}

void track_number_text(const json_t *v, char out[40])
{
    if (json_is_integer(v))
        snprintf(out, 40, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else
        track_fmt_double(json_number_value(v), out);
}

/* xsd:dateTime in UTC with milliseconds. */
void track_iso_time(long long ms, char out[80])
{
    long long secs = ms / 1000, frac = ms % 1000;
    if (frac < 0) {
        frac += 1000;
        secs--;
    }
    time_t tt = (time_t)secs;
    struct tm tm;
    if (!gmtime_r(&tt, &tm)) {
        snprintf(out, 80, "1970-01-01T00:00:00.000Z");
        return;
    }
    snprintf(out, 80, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
}

/* A number field of a record as long long; 0 when absent. */
int track_get_ll(const json_t *obj, const char *key, long long *out)
{
    const json_t *v = json_object_get(obj, key);
    if (json_is_integer(v))
        *out = (long long)json_integer_value(v);
    else if (json_is_real(v) && fabs(json_real_value(v)) < 9.2e18)
        *out = (long long)json_real_value(v);
    else
        return 0;
    return 1;
}

/* A user's name as a file name and PROV local name: bytes outside
 * [A-Za-z0-9_.-] become '_', as do leading dots ("..", ".x", "../x"); empty
 * becomes "_"; at most SAFE_NAME_MAX bytes. */
void track_safe_name(const char *in, char out[SAFE_NAME_MAX + 1])
{
    size_t n = 0;
    int leading = 1;
    for (const unsigned char *p = (const unsigned char *)in; *p && n < SAFE_NAME_MAX; p++) {
        unsigned char ch = *p;
        int ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                 (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.';
        if (ch == '.' && leading)
            ok = 0;
        leading = leading && ch == '.';
        out[n++] = ok ? (char)ch : '_';
    }
    if (n == 0)
        out[n++] = '_';
    out[n] = '\0';
}

/* ---- keys ---------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The keys of obj, sorted; they point into obj.  *keys is the caller's. */
int track_sorted_keys(const json_t *obj, const char ***keys, size_t *n)
{
    *n = json_object_size(obj);
    *keys = NULL;
    if (!*n)
        return 0;
    *keys = malloc(*n * sizeof **keys);
    if (!*keys)
        return LOOM_ENOMEM;
    size_t i = 0;
    for (void *it = json_object_iter((json_t *)obj); it && i < *n;
         it = json_object_iter_next((json_t *)obj, it))
        (*keys)[i++] = json_object_iter_key(it);
    qsort(*keys, *n, sizeof **keys, cmp_str);
    return 0;
}

/* Map each of the sorted names to a distinct safe_name (a later name whose
 * safe form is taken gets "_2", "_3", ...): {name: safe}. */
int track_safe_names(const char **names, size_t n, json_t **out)
{
    json_t *map = json_object(), *used = json_object();
    int rc = map && used ? 0 : LOOM_ENOMEM;
    for (size_t i = 0; i < n && !rc; i++) {
        char base[SAFE_NAME_MAX + 1], cand[SAFE_NAME_MAX + 16];
        track_safe_name(names[i], base);
        snprintf(cand, sizeof cand, "%s", base);
        for (int k = 2; json_object_get(used, cand); k++)
            snprintf(cand, sizeof cand, "%s_%d", base, k);
        if (json_object_set_new(used, cand, json_true()) ||
            json_object_set_new(map, names[i], json_string(cand)))
            rc = LOOM_ENOMEM;
    }
    json_decref(used);
    if (rc) {
        json_decref(map);
        map = NULL;
    }
    *out = map;
    return rc;
}

/* ---- files ---------------------------------------------------------------- */

__attribute__((format(printf, 3, 4)))
int track_path_fmt(track_ctx *c, char out[PATH_MAX], const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, PATH_MAX, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= PATH_MAX)
        return track_fail(c, LOOM_EINVAL, "path too long under %s", c->out[0] ? c->out : "output");
    return 0;
}

int track_mkdir_p(track_ctx *c, const char *path)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return track_fail(c, LOOM_EINVAL, "path too long: %.200s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) && errno != EEXIST)
            return fail_io(c, "cannot create", tmp);
        *p = '/';
    }
    if (mkdir(tmp, 0755) && errno != EEXIST)
        return fail_io(c, "cannot create", tmp);
    struct stat st;
    if (stat(tmp, &st))
        return fail_io(c, "cannot create", tmp);
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return fail_io(c, "cannot create", tmp);
    }
    return 0;
}

/* Write path whole: a temporary file in tmp_dir (same file system), then
 * rename over path. */
static int write_atomic(track_ctx *c, const char *tmp_dir, const char *path, const char *data,
                        size_t len)
{
    char tmp[PATH_MAX];
    int rc = track_path_fmt(c, tmp, "%s/.track-XXXXXX", tmp_dir);
    if (rc)
        return rc;
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return fail_io(c, "cannot create", tmp);
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            goto failed;
        off += (size_t)w;
    }
    if (fchmod(fd, 0644))
        goto failed;
    int closed = close(fd);
    fd = -1;
    if (closed || rename(tmp, path))
        goto failed;
    return 0;
failed:;
    int e = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    errno = e;
    return fail_io(c, "cannot write", path);
}

int track_write_sbuf(track_ctx *c, const char *tmp_dir, const char *path, const loom_buf *b)
{
    if (b->oom)
        return track_fail(c, LOOM_ENOMEM, "out of memory writing %s", path);
    return write_atomic(c, tmp_dir, path, b->p ? b->p : "", b->len);
}

/* Remove the files of dir not named in keep (only those starting with
 * prefix, when given). */
int track_prune_dir(track_ctx *c, const char *dir, const json_t *keep, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : fail_io(c, "cannot list", dir);
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        if (e->d_name[0] == '.' || json_object_get(keep, e->d_name))
            continue;
        if (prefix && strncmp(e->d_name, prefix, strlen(prefix)))
            continue;
        char path[PATH_MAX];
        struct stat st;
        rc = track_path_fmt(c, path, "%s/%s", dir, e->d_name);
        if (rc || lstat(path, &st) || S_ISDIR(st.st_mode))
            continue;
        if (unlink(path) && errno != ENOENT)
            rc = fail_io(c, "cannot remove", path);
    }
    closedir(d);
    return rc;
}

/* ---- SHA-256 -------------------------------------------------------------- */

static void hex_of(const unsigned char *d, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

/* The file's digest; -1 (errno set) when it cannot be read. */
static int sha256_file(const char *path, char hex[65])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = malloc(CHUNK);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc = buf && md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) ? 0 : -1;
    if (rc)
        errno = ENOMEM;
    while (!rc) {
        ssize_t n = read(fd, buf, CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = -1;
        else if (n == 0)
            break;
        else if (!EVP_DigestUpdate(md, buf, (size_t)n))
            rc = -1;
    }
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    if (!rc && (!EVP_DigestFinal_ex(md, d, &dlen) || dlen != 32))
        rc = -1;
    if (!rc)
        hex_of(d, 32, hex);
    EVP_MD_CTX_free(md);
    free(buf);
    close(fd);
    return rc;
}

static int digest_cache_path(track_ctx *c, char path[PATH_MAX])
{
    return track_path_fmt(c, path, "%s/prov/.sha256.json", c->out);
}

static int digest_cache_load(track_ctx *c)
{
    if (c->digests)
        return 0;
    char path[PATH_MAX];
    int rc = digest_cache_path(c, path);
    if (rc)
        return rc;
    c->digests = json_load_file(path, 0, NULL);
    if (!json_is_object(c->digests)) {   /* absent or damaged: start again */
        json_decref(c->digests);
        c->digests = json_object();
    }
    return c->digests ? 0 : track_fail(c, LOOM_ENOMEM, "out of memory");
}

static int digest_cache_save(track_ctx *c)
{
    if (!c->digests || !c->digests_dirty)
        return 0;
    char path[PATH_MAX], dir[PATH_MAX];
    int rc = digest_cache_path(c, path);
    if (!rc)
        rc = track_path_fmt(c, dir, "%s/prov", c->out);
    if (!rc)
        rc = track_mkdir_p(c, dir);
    loom_buf b = {0};
    track_json_write(&b, c->digests, 2, 0);
    loom__buf_append(&b, "\n", 1);
    if (!rc)
        rc = track_write_sbuf(c, dir, path, &b);
    loom__buf_free(&b);
    c->digests_dirty = 0;
    return rc;
}

/* A local regular file's absolute path and digest, from the cache when the
 * file has not changed.  Returns 1 when path is no readable local file. */
int track_digest_of(track_ctx *c, const char *path, char abs[PATH_MAX], char hex[65])
{
    struct stat st;
    if (stat(path, &st) || !S_ISREG(st.st_mode) || !realpath(path, abs))
        return 1;
    int rc = digest_cache_load(c);
    if (rc)
        return rc;
    long long mtime_ns = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
    const json_t *e = json_object_get(c->digests, abs);
    long long v;
    const char *cached = json_string_value(json_object_get(e, "sha256"));
    if (cached && strlen(cached) == 64 && track_get_ll(e, "size", &v) && v == (long long)st.st_size &&
        track_get_ll(e, "mtime_ns", &v) && v == mtime_ns && track_get_ll(e, "ino", &v) &&
        v == (long long)st.st_ino && track_get_ll(e, "dev", &v) && v == (long long)st.st_dev) {
        memcpy(hex, cached, 65);
        return 0;
    }
    if (sha256_file(abs, hex))
        return 1;
    json_t *entry = json_pack("{s:I,s:I,s:I,s:I,s:s}", "size", (json_int_t)st.st_size,
                              "mtime_ns", (json_int_t)mtime_ns, "ino", (json_int_t)st.st_ino,
                              "dev", (json_int_t)st.st_dev, "sha256", hex);
    if (!entry || json_object_set_new(c->digests, abs, entry))
        return track_fail(c, LOOM_ENOMEM, "out of memory");
    c->digests_dirty = 1;
    return 0;
}

/* ---- records ------------------------------------------------------------- */

static int sweep_parse(track_ctx *c, const char *out_dir, const json_t *sweep)
{
    if (!out_dir || !*out_dir)
        return track_fail(c, LOOM_EINVAL, "no output folder");
    if (!json_is_object(sweep))
        return track_fail(c, LOOM_EINVAL, "sweep record is not an object");
    c->sweep = sweep;
    c->sweep_id = json_string_value(json_object_get(sweep, "id"));
    if (!c->sweep_id || !*c->sweep_id)
        return track_fail(c, LOOM_EINVAL, "sweep record has no \"id\"");
    c->spec = json_object_get(sweep, "spec");
    if (!json_is_object(c->spec))
        return track_fail(c, LOOM_EINVAL, "sweep %s has no \"spec\"", c->sweep_id);
    c->metric = json_string_value(json_object_get(c->spec, "metric"));
    if (!c->metric || !*c->metric)
        return track_fail(c, LOOM_EINVAL, "sweep %s: spec has no \"metric\"", c->sweep_id);
    const json_t *mode = json_object_get(c->spec, "mode");
    if (mode && !json_is_null(mode)) {   /* absent: "min", as the schedulers' losses */
        const char *m = json_string_value(mode);
        if (!m || (strcmp(m, "min") && strcmp(m, "max")))
            return track_fail(c, LOOM_EINVAL, "sweep %s: spec \"mode\" is not \"min\" or \"max\"",
                        c->sweep_id);
        c->maximize = !strcmp(m, "max");
    }
    c->name = json_string_value(json_object_get(sweep, "name"));
    if (!c->name || !*c->name)
        c->name = json_string_value(json_object_get(c->spec, "name"));
    if (!track_get_ll(sweep, "created_ms", &c->created_ms))
        c->created_ms = loom__wall_ms();
    c->has_ended = track_get_ll(sweep, "ended_ms", &c->ended_ms);

    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)c->sweep_id, strlen(c->sweep_id), d);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | d[i];
    /* 18 digits, never "0" (the Default experiment), like MLflow's own ids */
    snprintf(c->exp_id, sizeof c->exp_id, "%llu",
             (unsigned long long)(v % 900000000000000000ULL + 100000000000000000ULL));

    const char *user = getenv("USER");
    snprintf(c->user, sizeof c->user, "%s", user && *user ? user : "unknown");
    return 0;
}

/* The output folder, made and resolved: only once the records are known
 * good, so that a refused call leaves nothing behind. */
static int out_prepare(track_ctx *c, const char *out_dir)
{
    int rc = track_mkdir_p(c, out_dir);
    if (rc)
        return rc;
    if (!realpath(out_dir, c->out))
        return fail_io(c, "cannot resolve", out_dir);
    return 0;
}

int track_trial_parse(track_ctx *c, const json_t *trial, trial_info *t)
{
    memset(t, 0, sizeof *t);
    if (!json_is_object(trial))
        return track_fail(c, LOOM_EINVAL, "trial record is not an object");
    const json_t *id = json_object_get(trial, "id");
    if (!json_is_integer(id) || json_integer_value(id) < 0)
        return track_fail(c, LOOM_EINVAL, "trial record has no \"id\" (an integer >= 0)");
    t->rec = trial;
    t->id = (long long)json_integer_value(id);
    t->name = json_string_value(json_object_get(trial, "name"));
    if (!t->name || !*t->name) {
        snprintf(t->name_buf, sizeof t->name_buf, "trial_%04lld", t->id);
        t->name = t->name_buf;
    }
    t->state = json_string_value(json_object_get(trial, "state"));
    if (!t->state)
        t->state = "pending";
    t->config = json_object_get(trial, "config");
    if (t->config && !json_is_object(t->config) && !json_is_null(t->config))
        return track_fail(c, LOOM_EINVAL, "trial %lld: \"config\" is not an object", t->id);
    t->results = json_object_get(trial, "results");
    if (t->results && !json_is_array(t->results) && !json_is_null(t->results))
        return track_fail(c, LOOM_EINVAL, "trial %lld: \"results\" is not an array", t->id);
    t->artifacts = json_object_get(trial, "artifacts");
    t->last = json_object_get(trial, "last");
    t->has_start = track_get_ll(trial, "start_ms", &t->start_ms);
    t->has_end = track_get_ll(trial, "end_ms", &t->end_ms);
    tune_track_run_id(c->sweep_id, t->id, t->run_id);
    return 0;
}

/* The metrics object of result i, or NULL. */
const json_t *track_result_metrics(const trial_info *t, size_t i)
{
    const json_t *m = json_object_get(json_array_get(t->results, i), "metrics");
    return json_is_object(m) ? m : NULL;
}

/* The last metrics reported: the last result's, else the record's "last". */
const json_t *track_last_metrics(const trial_info *t)
{
    size_t n = json_array_size(t->results);
    if (n)
        return track_result_metrics(t, n - 1);
    return json_is_object(t->last) ? t->last : NULL;
}

/* The last value reported of metric name (a number), or NULL. */
const json_t *track_last_value(const trial_info *t, const char *name)
{
    for (size_t i = json_array_size(t->results); i > 0; i--) {
        const json_t *v = json_object_get(track_result_metrics(t, i - 1), name);
        if (json_is_number(v))
            return v;
    }
    const json_t *v = json_object_get(track_last_metrics(t), name);
    return json_is_number(v) ? v : NULL;
}

/* The run's start in ms: started, else first result, else sweep created. */
long long track_trial_start_ms(const track_ctx *c, const trial_info *t)
{
    long long ms;
    if (t->has_start)
        return t->start_ms;
    if (track_get_ll(json_array_get(t->results, 0), "time_ms", &ms))
        return ms;
    return c->created_ms;
}

/* The numeric metric names over all results: {name: null}. */
json_t *track_metric_names(const trial_info *t)
{
    json_t *set = json_object();
    for (size_t i = 0; set && i < json_array_size(t->results); i++) {
        const json_t *m = track_result_metrics(t, i);
        for (void *it = json_object_iter((json_t *)m); it;
             it = json_object_iter_next((json_t *)m, it))
            if (json_is_number(json_object_iter_value(it)) &&
                json_object_set_new(set, json_object_iter_key(it), json_null())) {
                json_decref(set);
                return NULL;
            }
    }
    return set;
}

/* ---- results table ---------------------------------------------------------- */

static void csv_cell(loom_buf *b, const char *s, size_t n, int first)
{
    if (!first)
        loom__buf_append(b, ",", 1);
    if (!memchr(s, ',', n) && !memchr(s, '"', n) && !memchr(s, '\n', n) && !memchr(s, '\r', n)) {
        loom__buf_append(b, s, n);
        return;
    }
    loom__buf_append(b, "\"", 1);
    for (size_t i = 0; i < n; i++)
        loom__buf_append(b, s[i] == '"' ? "\"\"" : s + i, s[i] == '"' ? 2 : 1);
    loom__buf_append(b, "\"", 1);
}

static void csv_value(loom_buf *b, const json_t *v)
{
    loom_buf cell = {0};
    track_value_text(&cell, v);
    if (cell.oom)
        b->oom = 1;
    csv_cell(b, cell.p ? cell.p : "", cell.len, 0);
    loom__buf_free(&cell);
}

static const char *const csv_fixed[] = {"id", "name", "state", "t", "objective", "best",
                                        "cpu_seconds", "gpu_seconds", "attempts"};

/* A metric column's header: its name, or metric.NAME where that would be
 * taken by a fixed or a config column. */
static void csv_metric_header(loom_buf *b, const char *name)
{
    int taken = !strncmp(name, "config.", 7) || !strncmp(name, "metric.", 7);
    for (size_t i = 0; i < sizeof csv_fixed / sizeof csv_fixed[0]; i++)
        taken = taken || !strcmp(name, csv_fixed[i]);
    loom_buf h = {0};
    loom__buf_appendf(&h, "%s%s", taken ? "metric." : "", name);
    if (h.oom)
        b->oom = 1;
    csv_cell(b, h.p ? h.p : "", h.len, 0);
    loom__buf_free(&h);
}

static void csv_row(track_ctx *c, loom_buf *b, const trial_info *t, const char **cfg, size_t ncfg,
                    const char **met, size_t nmet)
{
    char num[40];
    snprintf(num, sizeof num, "%lld", t->id);
    csv_cell(b, num, strlen(num), 1);
    csv_cell(b, t->name, strlen(t->name), 0);
    csv_cell(b, t->state, strlen(t->state), 0);
    size_t n = json_array_size(t->results);
    csv_value(b, n ? json_object_get(json_array_get(t->results, n - 1), "t") : NULL);
    csv_value(b, track_last_value(t, c->metric));
    static const char *const fields[] = {"best", "cpu_seconds", "gpu_seconds", "attempts"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        csv_value(b, json_object_get(t->rec, fields[i]));
    for (size_t i = 0; i < ncfg; i++)
        csv_value(b, json_object_get(t->config, cfg[i]));
    const json_t *last = track_last_metrics(t);
    for (size_t i = 0; i < nmet; i++) {
        const json_t *v = json_object_get(last, met[i]);
        csv_value(b, json_is_number(v) ? v : NULL);
    }
    loom__buf_puts(b, "\r\n");
}

/* The union of config keys and of the last results' numeric metrics. */
static int csv_columns(track_ctx *c, const json_t *trials, json_t *cfg_set, json_t *met_set)
{
    for (size_t i = 0; i < json_array_size(trials); i++) {
        trial_info t;
        int rc = track_trial_parse(c, json_array_get(trials, i), &t);
        if (rc)
            return rc;
        for (void *it = json_object_iter((json_t *)t.config); it;
             it = json_object_iter_next((json_t *)t.config, it))
            if (json_object_set_new(cfg_set, json_object_iter_key(it), json_null()))
                return track_fail(c, LOOM_ENOMEM, "out of memory");
        const json_t *last = track_last_metrics(&t);
        for (void *it = json_object_iter((json_t *)last); it;
             it = json_object_iter_next((json_t *)last, it))
            if (json_is_number(json_object_iter_value(it)) &&
                json_object_set_new(met_set, json_object_iter_key(it), json_null()))
                return track_fail(c, LOOM_ENOMEM, "out of memory");
    }
    return 0;
}

static int results_csv(track_ctx *c, const json_t *trials)
{
    json_t *cfg_set = json_object(), *met_set = json_object();
    const char **cfg = NULL, **met = NULL;
    size_t ncfg = 0, nmet = 0;
    int rc = cfg_set && met_set ? csv_columns(c, trials, cfg_set, met_set)
                                : track_fail(c, LOOM_ENOMEM, "out of memory");
    if (!rc && (track_sorted_keys(cfg_set, &cfg, &ncfg) || track_sorted_keys(met_set, &met, &nmet)))
        rc = track_fail(c, LOOM_ENOMEM, "out of memory");
    loom_buf b = {0};
    if (!rc) {
        for (size_t i = 0; i < sizeof csv_fixed / sizeof csv_fixed[0]; i++)
            csv_cell(&b, csv_fixed[i], strlen(csv_fixed[i]), i == 0);
        for (size_t i = 0; i < ncfg; i++) {
            loom_buf h = {0};
            loom__buf_appendf(&h, "config.%s", cfg[i]);
            if (h.oom)
                b.oom = 1;
            csv_cell(&b, h.p ? h.p : "", h.len, 0);
            loom__buf_free(&h);
        }
        for (size_t i = 0; i < nmet; i++)
            csv_metric_header(&b, met[i]);
        loom__buf_puts(&b, "\r\n");
    }
    for (size_t i = 0; i < json_array_size(trials) && !rc; i++) {
        trial_info t;
        rc = track_trial_parse(c, json_array_get(trials, i), &t);
        if (!rc)
            csv_row(c, &b, &t, cfg, ncfg, met, nmet);
    }
    char path[PATH_MAX];
    if (!rc)
        rc = track_path_fmt(c, path, "%s/results.csv", c->out);
    if (!rc)
        rc = track_write_sbuf(c, c->out, path, &b);
    loom__buf_free(&b);
    free(cfg);
    free(met);
    json_decref(cfg_set);
    json_decref(met_set);
    return rc;
}

static int results_json(track_ctx *c, const json_t *trials)
{
    loom_buf b = {0};
    loom__buf_puts(&b, "{\n  \"sweep\": ");
    track_json_write(&b, c->sweep, 2, 1);
    loom__buf_puts(&b, ",\n  \"trials\": ");
    track_json_write(&b, trials, 2, 1);
    loom__buf_puts(&b, "\n}\n");
    char path[PATH_MAX];
    int rc = track_path_fmt(c, path, "%s/results.json", c->out);
    if (!rc)
        rc = track_write_sbuf(c, c->out, path, &b);
    loom__buf_free(&b);
    return rc;
}

/* The trial with the best "best" for the mode; ties go to the lower id. */
static const json_t *best_trial(const track_ctx *c, const json_t *trials)
{
    const json_t *winner = NULL;
    double wv = 0;
    long long wid = 0;
    for (size_t i = 0; i < json_array_size(trials); i++) {
        const json_t *t = json_array_get(trials, i);
        const json_t *best = json_object_get(t, "best");
        if (!json_is_number(best))
            continue;
        double v = json_number_value(best);
        long long id = (long long)json_integer_value(json_object_get(t, "id"));
        int better = !winner || (c->maximize ? v > wv : v < wv) || (v == wv && id < wid);
        if (better) {
            winner = t;
            wv = v;
            wid = id;
        }
    }
    return winner;
}

static int results_best(track_ctx *c, const json_t *trials)
{
    const json_t *best = best_trial(c, trials);
    loom_buf b = {0};
    if (best)
        track_json_write(&b, best, 2, 0);
    else
        loom__buf_puts(&b, "null");
    loom__buf_append(&b, "\n", 1);
    char path[PATH_MAX];
    int rc = track_path_fmt(c, path, "%s/best.json", c->out);
    if (!rc)
        rc = track_write_sbuf(c, c->out, path, &b);
    loom__buf_free(&b);
    return rc;
}

/* ---- public ---------------------------------------------------------------- */

void tune_track_run_id(const char *sweep_id, long long trial_id, char out[33])
{
    /* SHA-256 of the sweep id's digest and the trial id, as an RFC 9562
     * version 8 UUID in hex (MLflow's run ids are uuid4().hex). */
    unsigned char buf[SHA256_DIGEST_LENGTH + 32], d[SHA256_DIGEST_LENGTH];
    const char *sid = sweep_id ? sweep_id : "";
    SHA256((const unsigned char *)sid, strlen(sid), buf);
    int n = snprintf((char *)buf + SHA256_DIGEST_LENGTH, 32, "/%lld", trial_id);
    SHA256(buf, SHA256_DIGEST_LENGTH + (size_t)n, d);
    d[6] = (unsigned char)((d[6] & 0x0f) | 0x80);
    d[8] = (unsigned char)((d[8] & 0x3f) | 0x80);
    hex_of(d, 16, out);
}

int tune_track_trial(const char *out_dir, const json_t *sweep, const json_t *trial,
                     char *err, size_t errlen)
{
    track_ctx c = {.err = err, .errlen = errlen};
    trial_info t;
    int rc = sweep_parse(&c, out_dir, sweep);
    if (!rc)
        rc = track_trial_parse(&c, trial, &t);
    if (!rc)
        rc = out_prepare(&c, out_dir);
    if (!rc)
        rc = track_mlflow_experiments(&c);
    if (!rc)
        rc = track_mlflow_run(&c, &t);
    if (!rc)
        rc = track_prov_trial_doc(&c, &t);
    if (!rc)
        rc = digest_cache_save(&c);
    json_decref(c.digests);
    return rc;
}

int tune_track_results(const char *out_dir, const json_t *sweep, const json_t *trials,
                       char *err, size_t errlen)
{
    track_ctx c = {.err = err, .errlen = errlen};
    int rc = sweep_parse(&c, out_dir, sweep);
    if (!rc && !json_is_array(trials))
        rc = track_fail(&c, LOOM_EINVAL, "trials is not an array");
    for (size_t i = 0; !rc && i < json_array_size(trials); i++) {
        trial_info t;
        rc = track_trial_parse(&c, json_array_get(trials, i), &t);
    }
    if (!rc)
        rc = out_prepare(&c, out_dir);
    if (!rc)
        rc = track_mlflow_experiments(&c);
    if (!rc)
        rc = results_csv(&c, trials);
    if (!rc)
        rc = results_json(&c, trials);
    if (!rc)
        rc = results_best(&c, trials);
    if (!rc)
        rc = track_prov_sweep_doc(&c, trials);
    if (!rc)
        rc = digest_cache_save(&c);
    json_decref(c.digests);
    return rc;
}
