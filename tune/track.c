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
 * names and PROV local names only through safe_name(): [A-Za-z0-9_.-],
 * never starting with '.', so "../x" and "a/b" cannot leave their folder.
 *
 * Digests of local code and data files are cached in OUT/prov/.sha256.json
 * by path, device, inode, size and mtime: a trial is rewritten on every
 * result, and a dataset of gigabytes must not be read again each time.
 *
 * Numbers are written as the shortest text that reads back to the same
 * double (jansson's own dump writes 17 digits: 0.1 as 0.10000000000000001),
 * by the small JSON writer here, which also writes the pretty JSON files. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* the GNU strerror_r, which returns the message; mkostemp */
#endif
#include "tune/track.h"

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

/* MLflow's RunStatus and SourceType codes (mlflow/entities). */
enum { RUN_RUNNING = 1, RUN_SCHEDULED = 2, RUN_FINISHED = 3, RUN_FAILED = 4, RUN_KILLED = 5 };
enum { SOURCE_LOCAL = 4 };
#define SAFE_NAME_MAX 200   /* MLflow keys may be 250 chars; room for a suffix */

/* ---- one call's context ------------------------------------------------ */

typedef struct track_ctx {
    char *err;
    size_t errlen;
    const json_t *sweep, *spec;
    const char *sweep_id, *name, *metric;
    int maximize;
    long long created_ms, ended_ms;
    int has_ended;
    char exp_id[24];
    char out[PATH_MAX];      /* the output folder, absolute */
    char user[256];
    json_t *digests;         /* the sha256 cache, owned; NULL until loaded */
    int digests_dirty;
} track_ctx;

typedef struct trial_info {
    const json_t *rec, *config, *results, *artifacts, *last;
    long long id;
    const char *name;
    char name_buf[32];
    const char *state;
    long long start_ms, end_ms;
    int has_start, has_end;
    char run_id[33];
} trial_info;

__attribute__((format(printf, 3, 4)))
static int fail(track_ctx *c, int code, const char *fmt, ...)
{
    if (c->err && c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, c->errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int fail_io(track_ctx *c, const char *what, const char *path)
{
    char buf[128];
    const char *msg = strerror_r(errno, buf, sizeof buf);
    return fail(c, LOOM_EIO, "%s %s: %s", what, path, msg);
}

/* ---- a growable text buffer --------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

__attribute__((format(printf, 2, 3)))
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        sb_add(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_add(b, big, (size_t)n);
    free(big);
}

static void sb_free(sbuf *b)
{
    free(b->p);
    *b = (sbuf){0};
}

/* ---- numbers, times, names --------------------------------------------- */

/* The shortest "%g" text that reads back as v, with a '.' or an exponent so
 * that it reads back as a real (JSON, Python's float()). */
static void fmt_double(double v, char out[40])
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

static void number_text(const json_t *v, char out[40])
{
    if (json_is_integer(v))
        snprintf(out, 40, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else
        fmt_double(json_number_value(v), out);
}

/* xsd:dateTime in UTC with milliseconds. */
static void iso_time(long long ms, char out[80])
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

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A number field of a record as long long; 0 when absent. */
static int get_ll(const json_t *obj, const char *key, long long *out)
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
static void safe_name(const char *in, char out[SAFE_NAME_MAX + 1])
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

/* ---- JSON text ----------------------------------------------------------- */

static void json_write_string(sbuf *b, const char *s, size_t n)
{
    sb_add(b, "\"", 1);
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        const char *esc = NULL;
        char ubuf[8];
        if (ch == '"')
            esc = "\\\"";
        else if (ch == '\\')
            esc = "\\\\";
        else if (ch == '\n')
            esc = "\\n";
        else if (ch == '\r')
            esc = "\\r";
        else if (ch == '\t')
            esc = "\\t";
        else if (ch < 0x20 || ch == 0x7f) {
            snprintf(ubuf, sizeof ubuf, "\\u%04x", ch);
            esc = ubuf;
        }
        if (esc) {
            sb_add(b, s + start, i - start);
            sb_puts(b, esc);
            start = i + 1;
        }
    }
    sb_add(b, s + start, n - start);
    sb_add(b, "\"", 1);
}

static void json_newline(sbuf *b, int indent, int depth)
{
    if (!indent)
        return;
    sb_add(b, "\n", 1);
    for (int i = 0; i < indent * depth; i++)
        sb_add(b, " ", 1);
}

/* v as JSON: compact when indent is 0, else pretty; keys in stored order. */
static void json_write(sbuf *b, const json_t *v, int indent, int depth)
{
    char num[40];
    size_t i = 0;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if (!json_object_size(v)) {
            sb_puts(b, "{}");
            break;
        }
        sb_puts(b, "{");
        for (void *it = json_object_iter((json_t *)v); it;
             it = json_object_iter_next((json_t *)v, it), i++) {
            if (i)
                sb_puts(b, ",");
            json_newline(b, indent, depth + 1);
            const char *key = json_object_iter_key(it);
            json_write_string(b, key, strlen(key));
            sb_puts(b, indent ? ": " : ":");
            json_write(b, json_object_iter_value(it), indent, depth + 1);
        }
        json_newline(b, indent, depth);
        sb_puts(b, "}");
        break;
    }
    case JSON_ARRAY:
        if (!json_array_size(v)) {
            sb_puts(b, "[]");
            break;
        }
        sb_puts(b, "[");
        for (i = 0; i < json_array_size(v); i++) {
            if (i)
                sb_puts(b, ",");
            json_newline(b, indent, depth + 1);
            json_write(b, json_array_get(v, i), indent, depth + 1);
        }
        json_newline(b, indent, depth);
        sb_puts(b, "]");
        break;
    case JSON_STRING:
        json_write_string(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
    case JSON_REAL:
        number_text(v, num);
        sb_puts(b, num);
        break;
    case JSON_TRUE:
        sb_puts(b, "true");
        break;
    case JSON_FALSE:
        sb_puts(b, "false");
        break;
    default:
        sb_puts(b, "null");
        break;
    }
}

/* A value as a cell or parameter: strings as they are, numbers shortest,
 * anything else as compact JSON; null as nothing. */
static void value_text(sbuf *b, const json_t *v)
{
    if (!v || json_is_null(v))
        return;
    if (json_is_string(v))
        sb_add(b, json_string_value(v), json_string_length(v));
    else
        json_write(b, v, 0, 0);
}

/* ---- keys ---------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The keys of obj, sorted; they point into obj.  *keys is the caller's. */
static int sorted_keys(const json_t *obj, const char ***keys, size_t *n)
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
static int safe_names(const char **names, size_t n, json_t **out)
{
    json_t *map = json_object(), *used = json_object();
    int rc = map && used ? 0 : LOOM_ENOMEM;
    for (size_t i = 0; i < n && !rc; i++) {
        char base[SAFE_NAME_MAX + 1], cand[SAFE_NAME_MAX + 16];
        safe_name(names[i], base);
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
static int path_fmt(track_ctx *c, char out[PATH_MAX], const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, PATH_MAX, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= PATH_MAX)
        return fail(c, LOOM_EINVAL, "path too long under %s", c->out[0] ? c->out : "output");
    return 0;
}

static int mkdir_p(track_ctx *c, const char *path)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return fail(c, LOOM_EINVAL, "path too long: %.200s", path);
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
    int rc = path_fmt(c, tmp, "%s/.track-XXXXXX", tmp_dir);
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

static int write_sbuf(track_ctx *c, const char *tmp_dir, const char *path, const sbuf *b)
{
    if (b->oom)
        return fail(c, LOOM_ENOMEM, "out of memory writing %s", path);
    return write_atomic(c, tmp_dir, path, b->p ? b->p : "", b->len);
}

/* Remove the files of dir not named in keep (only those starting with
 * prefix, when given). */
static int prune_dir(track_ctx *c, const char *dir, const json_t *keep, const char *prefix)
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
        rc = path_fmt(c, path, "%s/%s", dir, e->d_name);
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
    return path_fmt(c, path, "%s/prov/.sha256.json", c->out);
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
    return c->digests ? 0 : fail(c, LOOM_ENOMEM, "out of memory");
}

static int digest_cache_save(track_ctx *c)
{
    if (!c->digests || !c->digests_dirty)
        return 0;
    char path[PATH_MAX], dir[PATH_MAX];
    int rc = digest_cache_path(c, path);
    if (!rc)
        rc = path_fmt(c, dir, "%s/prov", c->out);
    if (!rc)
        rc = mkdir_p(c, dir);
    sbuf b = {0};
    json_write(&b, c->digests, 2, 0);
    sb_add(&b, "\n", 1);
    if (!rc)
        rc = write_sbuf(c, dir, path, &b);
    sb_free(&b);
    c->digests_dirty = 0;
    return rc;
}

/* A local regular file's absolute path and digest, from the cache when the
 * file has not changed.  Returns 1 when path is no readable local file. */
static int digest_of(track_ctx *c, const char *path, char abs[PATH_MAX], char hex[65])
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
    if (cached && strlen(cached) == 64 && get_ll(e, "size", &v) && v == (long long)st.st_size &&
        get_ll(e, "mtime_ns", &v) && v == mtime_ns && get_ll(e, "ino", &v) &&
        v == (long long)st.st_ino && get_ll(e, "dev", &v) && v == (long long)st.st_dev) {
        memcpy(hex, cached, 65);
        return 0;
    }
    if (sha256_file(abs, hex))
        return 1;
    json_t *entry = json_pack("{s:I,s:I,s:I,s:I,s:s}", "size", (json_int_t)st.st_size,
                              "mtime_ns", (json_int_t)mtime_ns, "ino", (json_int_t)st.st_ino,
                              "dev", (json_int_t)st.st_dev, "sha256", hex);
    if (!entry || json_object_set_new(c->digests, abs, entry))
        return fail(c, LOOM_ENOMEM, "out of memory");
    c->digests_dirty = 1;
    return 0;
}

/* ---- records ------------------------------------------------------------- */

static int sweep_parse(track_ctx *c, const char *out_dir, const json_t *sweep)
{
    if (!out_dir || !*out_dir)
        return fail(c, LOOM_EINVAL, "no output folder");
    if (!json_is_object(sweep))
        return fail(c, LOOM_EINVAL, "sweep record is not an object");
    c->sweep = sweep;
    c->sweep_id = json_string_value(json_object_get(sweep, "id"));
    if (!c->sweep_id || !*c->sweep_id)
        return fail(c, LOOM_EINVAL, "sweep record has no \"id\"");
    c->spec = json_object_get(sweep, "spec");
    if (!json_is_object(c->spec))
        return fail(c, LOOM_EINVAL, "sweep %s has no \"spec\"", c->sweep_id);
    c->metric = json_string_value(json_object_get(c->spec, "metric"));
    if (!c->metric || !*c->metric)
        return fail(c, LOOM_EINVAL, "sweep %s: spec has no \"metric\"", c->sweep_id);
    const json_t *mode = json_object_get(c->spec, "mode");
    if (mode && !json_is_null(mode)) {   /* absent: "min", as the schedulers' losses */
        const char *m = json_string_value(mode);
        if (!m || (strcmp(m, "min") && strcmp(m, "max")))
            return fail(c, LOOM_EINVAL, "sweep %s: spec \"mode\" is not \"min\" or \"max\"",
                        c->sweep_id);
        c->maximize = !strcmp(m, "max");
    }
    c->name = json_string_value(json_object_get(sweep, "name"));
    if (!c->name || !*c->name)
        c->name = json_string_value(json_object_get(c->spec, "name"));
    if (!get_ll(sweep, "created_ms", &c->created_ms))
        c->created_ms = now_ms();
    c->has_ended = get_ll(sweep, "ended_ms", &c->ended_ms);

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
    int rc = mkdir_p(c, out_dir);
    if (rc)
        return rc;
    if (!realpath(out_dir, c->out))
        return fail_io(c, "cannot resolve", out_dir);
    return 0;
}

static int trial_parse(track_ctx *c, const json_t *trial, trial_info *t)
{
    memset(t, 0, sizeof *t);
    if (!json_is_object(trial))
        return fail(c, LOOM_EINVAL, "trial record is not an object");
    const json_t *id = json_object_get(trial, "id");
    if (!json_is_integer(id) || json_integer_value(id) < 0)
        return fail(c, LOOM_EINVAL, "trial record has no \"id\" (an integer >= 0)");
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
        return fail(c, LOOM_EINVAL, "trial %lld: \"config\" is not an object", t->id);
    t->results = json_object_get(trial, "results");
    if (t->results && !json_is_array(t->results) && !json_is_null(t->results))
        return fail(c, LOOM_EINVAL, "trial %lld: \"results\" is not an array", t->id);
    t->artifacts = json_object_get(trial, "artifacts");
    t->last = json_object_get(trial, "last");
    t->has_start = get_ll(trial, "start_ms", &t->start_ms);
    t->has_end = get_ll(trial, "end_ms", &t->end_ms);
    tune_track_run_id(c->sweep_id, t->id, t->run_id);
    return 0;
}

/* The metrics object of result i, or NULL. */
static const json_t *result_metrics(const trial_info *t, size_t i)
{
    const json_t *m = json_object_get(json_array_get(t->results, i), "metrics");
    return json_is_object(m) ? m : NULL;
}

/* The last metrics reported: the last result's, else the record's "last". */
static const json_t *last_metrics(const trial_info *t)
{
    size_t n = json_array_size(t->results);
    if (n)
        return result_metrics(t, n - 1);
    return json_is_object(t->last) ? t->last : NULL;
}

/* The last value reported of metric name (a number), or NULL. */
static const json_t *last_value(const trial_info *t, const char *name)
{
    for (size_t i = json_array_size(t->results); i > 0; i--) {
        const json_t *v = json_object_get(result_metrics(t, i - 1), name);
        if (json_is_number(v))
            return v;
    }
    const json_t *v = json_object_get(last_metrics(t), name);
    return json_is_number(v) ? v : NULL;
}

/* The run's start in ms: started, else first result, else sweep created. */
static long long trial_start_ms(const track_ctx *c, const trial_info *t)
{
    long long ms;
    if (t->has_start)
        return t->start_ms;
    if (get_ll(json_array_get(t->results, 0), "time_ms", &ms))
        return ms;
    return c->created_ms;
}

static int run_status(const char *state)
{
    static const struct { const char *state; int status; } map[] = {
        {"pending", RUN_SCHEDULED}, {"paused", RUN_SCHEDULED}, {"running", RUN_RUNNING},
        {"completed", RUN_FINISHED}, {"stopped", RUN_FINISHED}, /* early stopping is an end */
        {"failed", RUN_FAILED}, {"cancelled", RUN_KILLED},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(state, map[i].state))
            return map[i].status;
    return RUN_RUNNING;
}

/* The spec's "trial" as one line for MLflow's source name. */
static void source_name(const track_ctx *c, sbuf *b)
{
    const json_t *trial = json_object_get(c->spec, "trial");
    const json_t *argv = json_object_get(trial, "command");
    const char *lib = json_string_value(json_object_get(trial, "library"));
    for (size_t i = 0; i < json_array_size(argv); i++) {
        if (i)
            sb_puts(b, " ");
        value_text(b, json_array_get(argv, i));
    }
    if (lib) {
        const char *fn = json_string_value(json_object_get(trial, "function"));
        const char *actor = json_string_value(json_object_get(trial, "actor"));
        sb_printf(b, "%s%s%s", lib, fn || actor ? ":" : "", fn ? fn : actor ? actor : "");
    }
}

/* ---- YAML (the subset MLflow's meta.yaml files use) --------------------- */

static int yaml_is_plain(const char *s)
{
    static const char *const words[] = {"y", "n", "yes", "no", "true", "false", "on", "off",
                                        "null"};
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_' || *s == '/'))
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '.' || *p == '/' || *p == '-'))
            return 0;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (!strcasecmp(s, words[i]))
            return 0;
    return 1;
}

/* Does s hold a character YAML readers refuse raw (controls, C1, U+FFFE/F)? */
static int yaml_needs_escapes(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return 1;
        if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f && p[1] != 0x85)
            return 1;
        if (p[0] == 0xef && p[1] == 0xbf && (p[2] == 0xbe || p[2] == 0xbf))
            return 1;
    }
    return 0;
}

static void yaml_double_quoted(sbuf *b, const char *s)
{
    sb_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            sb_printf(b, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            sb_printf(b, "\\x%02x", *p);
        else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f && p[1] != 0x85)
            sb_printf(b, "\\x%02x", *++p);
        else if (p[0] == 0xef && p[1] == 0xbf && (p[2] == 0xbe || p[2] == 0xbf)) {
            sb_printf(b, "\\u%s", p[2] == 0xbe ? "fffe" : "ffff");
            p += 2;
        } else
            sb_add(b, (const char *)p, 1);
    }
    sb_puts(b, "\"");
}

/* A string scalar: plain when YAML reads it back as that string, else
 * single-quoted (as PyYAML writes '0'), else double-quoted with escapes. */
static void yaml_scalar(sbuf *b, const char *s)
{
    if (*s && yaml_is_plain(s)) {
        sb_puts(b, s);
        return;
    }
    if (yaml_needs_escapes(s)) {
        yaml_double_quoted(b, s);
        return;
    }
    sb_puts(b, "'");
    for (const char *p = s; *p; p++)
        sb_add(b, *p == '\'' ? "''" : p, *p == '\'' ? 2 : 1);   /* a quote is doubled */
    sb_puts(b, "'");
}

static void yaml_kv(sbuf *b, const char *key, const char *value)
{
    sb_printf(b, "%s: ", key);
    yaml_scalar(b, value);
    sb_puts(b, "\n");
}

/* file:// URI of an absolute path (Python's Path.as_uri() quoting). */
static void file_uri(sbuf *b, const char *path)
{
    sb_puts(b, "file://");
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        int keep = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                   (*p >= '0' && *p <= '9') || strchr("-._~/", *p);
        if (keep)
            sb_add(b, (const char *)p, 1);
        else
            sb_printf(b, "%%%02X", *p);
    }
}

/* ---- MLflow file store ----------------------------------------------------- */

static int mlflow_experiment_meta(track_ctx *c, const char *exp_id, const char *name,
                                  long long created, long long updated)
{
    char dir[PATH_MAX], path[PATH_MAX];
    int rc = path_fmt(c, dir, "%s/mlruns/%s", c->out, exp_id);
    if (!rc)
        rc = path_fmt(c, path, "%s/meta.yaml", dir);
    if (!rc)
        rc = mkdir_p(c, dir);
    if (rc)
        return rc;
    sbuf uri = {0}, b = {0};
    file_uri(&uri, dir);
    yaml_kv(&b, "artifact_location", uri.p ? uri.p : "");
    sb_printf(&b, "creation_time: %lld\n", created);
    yaml_kv(&b, "experiment_id", exp_id);
    sb_printf(&b, "last_update_time: %lld\n", updated);
    sb_puts(&b, "lifecycle_stage: active\n");
    yaml_kv(&b, "name", name);
    if (uri.oom)
        b.oom = 1;
    rc = write_sbuf(c, dir, path, &b);
    sb_free(&uri);
    sb_free(&b);
    return rc;
}

/* mlruns/ with the Default experiment (kept if there), the trash folder
 * MLflow makes on opening, and this sweep's experiment. */
static int mlflow_experiments(track_ctx *c)
{
    char path[PATH_MAX], name[64];
    struct stat st;
    int rc = path_fmt(c, path, "%s/mlruns/.trash", c->out);
    if (!rc)
        rc = mkdir_p(c, path);
    if (!rc)
        rc = path_fmt(c, path, "%s/mlruns/0/meta.yaml", c->out);
    if (!rc && stat(path, &st))
        rc = mlflow_experiment_meta(c, "0", "Default", c->created_ms, c->created_ms);
    if (rc)
        return rc;
    if (!c->name || !*c->name)
        snprintf(name, sizeof name, "sweep-%.40s", c->sweep_id);
    long long updated = c->has_ended && c->ended_ms > c->created_ms ? c->ended_ms : c->created_ms;
    return mlflow_experiment_meta(c, c->exp_id, c->name && *c->name ? c->name : name,
                                  c->created_ms, updated);
}

static int mlflow_run_meta(track_ctx *c, const trial_info *t, const char *run_dir)
{
    char path[PATH_MAX], art[PATH_MAX];
    int rc = path_fmt(c, path, "%s/meta.yaml", run_dir);
    if (!rc)
        rc = path_fmt(c, art, "%s/artifacts", run_dir);
    if (rc)
        return rc;
    sbuf uri = {0}, b = {0};
    file_uri(&uri, art);
    yaml_kv(&b, "artifact_uri", uri.p ? uri.p : "");
    if (t->has_end)
        sb_printf(&b, "end_time: %lld\n", t->end_ms);
    else
        sb_puts(&b, "end_time: null\n");
    sb_puts(&b, "entry_point_name: ''\n");
    yaml_kv(&b, "experiment_id", c->exp_id);
    sb_puts(&b, "lifecycle_stage: active\n");
    yaml_kv(&b, "run_id", t->run_id);
    yaml_kv(&b, "run_name", t->name);
    yaml_kv(&b, "run_uuid", t->run_id);
    sb_puts(&b, "source_name: ''\n");
    sb_printf(&b, "source_type: %d\n", SOURCE_LOCAL);
    sb_puts(&b, "source_version: ''\n");
    sb_printf(&b, "start_time: %lld\n", trial_start_ms(c, t));
    sb_printf(&b, "status: %d\n", run_status(t->state));
    sb_puts(&b, "tags: []\n");
    yaml_kv(&b, "user_id", c->user);
    if (uri.oom)
        b.oom = 1;
    rc = write_sbuf(c, run_dir, path, &b);
    sb_free(&uri);
    sb_free(&b);
    return rc;
}

/* Write text as run_dir/sub/file (its temporary in run_dir, which MLflow
 * does not list); keep collects the file names written. */
static int mlflow_write_value(track_ctx *c, const char *run_dir, const char *sub,
                              const char *file, const sbuf *text, json_t *keep)
{
    char path[PATH_MAX];
    int rc = path_fmt(c, path, "%s/%s/%s", run_dir, sub, file);
    if (!rc)
        rc = write_sbuf(c, run_dir, path, text);
    if (!rc && json_object_set_new(keep, file, json_true()))
        rc = fail(c, LOOM_ENOMEM, "out of memory");
    return rc;
}

/* The end of writing run_dir/sub (params, metrics) after its values, when
 * rc is 0: remove the files not in keep.  Frees keys, names and keep; returns
 * rc or the pruning's error. */
static int mlflow_values_done(track_ctx *c, const char *run_dir, const char *sub, int rc,
                              const char **keys, json_t *names, json_t *keep)
{
    char dir[PATH_MAX];
    if (!rc)
        rc = path_fmt(c, dir, "%s/%s", run_dir, sub);
    if (!rc)
        rc = prune_dir(c, dir, keep, NULL);
    free(keys);
    json_decref(names);
    json_decref(keep);
    return rc;
}

static int mlflow_params(track_ctx *c, const trial_info *t, const char *run_dir)
{
    const char **keys = NULL;
    size_t n = 0;
    json_t *names = NULL, *keep = json_object();
    int rc = keep ? sorted_keys(t->config, &keys, &n) : LOOM_ENOMEM;
    if (!rc)
        rc = safe_names(keys, n, &names);
    if (rc)
        rc = fail(c, rc, "out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        sbuf b = {0};
        value_text(&b, json_object_get(t->config, keys[i]));
        rc = mlflow_write_value(c, run_dir, "params",
                                json_string_value(json_object_get(names, keys[i])), &b, keep);
        sb_free(&b);
    }
    return mlflow_values_done(c, run_dir, "params", rc, keys, names, keep);
}

/* The numeric metric names over all results: {name: null}. */
static json_t *metric_names(const trial_info *t)
{
    json_t *set = json_object();
    for (size_t i = 0; set && i < json_array_size(t->results); i++) {
        const json_t *m = result_metrics(t, i);
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

/* "<timestamp_ms> <value> <step>" lines of one metric; step is the result's
 * t (rounded down when fractional: MLflow steps are integers). */
static void metric_lines(const track_ctx *c, const trial_info *t, const char *name, sbuf *b)
{
    long long fallback = trial_start_ms(c, t);
    for (size_t i = 0; i < json_array_size(t->results); i++) {
        const json_t *r = json_array_get(t->results, i);
        const json_t *v = json_object_get(result_metrics(t, i), name);
        if (!json_is_number(v))
            continue;
        long long ms = fallback, step = (long long)i + 1;
        get_ll(r, "time_ms", &ms);
        const json_t *tv = json_object_get(r, "t");
        if (json_is_integer(tv))
            step = (long long)json_integer_value(tv);
        else if (json_is_real(tv) && fabs(json_real_value(tv)) < 9.2e18)
            step = (long long)floor(json_real_value(tv));
        char num[40];
        number_text(v, num);
        sb_printf(b, "%lld %s %lld\n", ms < 0 ? 0 : ms, num, step);
    }
}

static int mlflow_metrics(track_ctx *c, const trial_info *t, const char *run_dir)
{
    const char **keys = NULL;
    size_t n = 0;
    json_t *set = metric_names(t), *names = NULL, *keep = json_object();
    int rc = set && keep ? sorted_keys(set, &keys, &n) : LOOM_ENOMEM;
    if (!rc)
        rc = safe_names(keys, n, &names);
    if (rc)
        rc = fail(c, rc, "out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        sbuf b = {0};
        metric_lines(c, t, keys[i], &b);
        rc = mlflow_write_value(c, run_dir, "metrics",
                                json_string_value(json_object_get(names, keys[i])), &b, keep);
        sb_free(&b);
    }
    rc = mlflow_values_done(c, run_dir, "metrics", rc, keys, names, keep);
    json_decref(set);
    return rc;
}

static int mlflow_tag(track_ctx *c, const char *run_dir, const char *name, const char *value,
                      json_t *keep)
{
    sbuf b = {0};
    sb_puts(&b, value);
    int rc = mlflow_write_value(c, run_dir, "tags", name, &b, keep);
    sb_free(&b);
    return rc;
}

/* MLflow's system tags and loom's; stale loom.* tags are removed, others
 * (a note written in the MLflow UI) kept. */
static int mlflow_tags(track_ctx *c, const trial_info *t, const char *run_dir)
{
    json_t *keep = json_object();
    if (!keep)
        return fail(c, LOOM_ENOMEM, "out of memory");
    char id[32];
    snprintf(id, sizeof id, "%lld", t->id);
    sbuf src = {0};
    source_name(c, &src);
    const char *error = json_string_value(json_object_get(t->rec, "error"));
    int rc = src.oom ? fail(c, LOOM_ENOMEM, "out of memory") : 0;
    if (!rc)
        rc = mlflow_tag(c, run_dir, "mlflow.runName", t->name, keep);
    if (!rc)
        rc = mlflow_tag(c, run_dir, "mlflow.user", c->user, keep);
    if (!rc)
        rc = mlflow_tag(c, run_dir, "mlflow.source.name", src.p ? src.p : "", keep);
    if (!rc)
        rc = mlflow_tag(c, run_dir, "mlflow.source.type", "LOCAL", keep);
    if (!rc)
        rc = mlflow_tag(c, run_dir, "loom.sweep_id", c->sweep_id, keep);
    if (!rc && c->name)
        rc = mlflow_tag(c, run_dir, "loom.sweep_name", c->name, keep);
    if (!rc)
        rc = mlflow_tag(c, run_dir, "loom.trial_id", id, keep);
    if (!rc)
        rc = mlflow_tag(c, run_dir, "loom.trial_state", t->state, keep);
    if (!rc && error)
        rc = mlflow_tag(c, run_dir, "loom.error", error, keep);
    char dir[PATH_MAX];
    if (!rc)
        rc = path_fmt(c, dir, "%s/tags", run_dir);
    if (!rc)
        rc = prune_dir(c, dir, keep, "loom.");
    sb_free(&src);
    json_decref(keep);
    return rc;
}

/* The run's files; meta.yaml last, so a run listed is a run complete. */
static int mlflow_run(track_ctx *c, const trial_info *t)
{
    static const char *const subs[] = {"params", "metrics", "tags", "artifacts"};
    char run_dir[PATH_MAX], dir[PATH_MAX];
    int rc = path_fmt(c, run_dir, "%s/mlruns/%s/%s", c->out, c->exp_id, t->run_id);
    for (size_t i = 0; i < sizeof subs / sizeof subs[0] && !rc; i++) {
        rc = path_fmt(c, dir, "%s/%s", run_dir, subs[i]);
        if (!rc)
            rc = mkdir_p(c, dir);
    }
    if (!rc)
        rc = mlflow_params(c, t, run_dir);
    if (!rc)
        rc = mlflow_metrics(c, t, run_dir);
    if (!rc)
        rc = mlflow_tags(c, t, run_dir);
    if (!rc)
        rc = mlflow_run_meta(c, t, run_dir);
    return rc;
}

/* ---- PROV-JSON ------------------------------------------------------------ */

typedef struct prov {
    json_t *doc;
    json_t *inputs;   /* [{"id", "data": bool}]: code and data entities */
    int next;         /* relation ids */
    int oom;
} prov;

static const char *const prov_sections[] = {
    "entity", "activity", "agent", "used", "wasGeneratedBy", "wasAssociatedWith",
    "wasInformedBy", "wasDerivedFrom", "wasStartedBy", "actedOnBehalfOf",
};

static void pset(prov *p, json_t *obj, const char *key, json_t *v)
{
    if (!obj || !v || json_object_set_new(obj, key, v))
        p->oom = 1;
}

static json_t *typed(const char *lexical, const char *type)
{
    return json_pack("{s:s,s:s}", "$", lexical, "type", type);
}

static json_t *qname(const char *name) { return typed(name, "xsd:QName"); }

static json_t *typed_ll(long long v)
{
    char num[32];
    snprintf(num, sizeof num, "%lld", v);
    return typed(num, v >= INT32_MIN && v <= INT32_MAX ? "xsd:int" : "xsd:long");
}

/* A record's value as a PROV attribute value; NULL for null. */
static json_t *prov_value(const json_t *v)
{
    char num[40];
    if (json_is_string(v))
        return json_string(json_string_value(v));
    if (json_is_integer(v))
        return typed_ll((long long)json_integer_value(v));
    if (json_is_real(v)) {
        fmt_double(json_real_value(v), num);
        return typed(num, "xsd:double");
    }
    if (json_is_boolean(v))
        return typed(json_is_true(v) ? "true" : "false", "xsd:boolean");
    if (json_is_array(v) || json_is_object(v)) {
        sbuf b = {0};
        json_write(&b, v, 0, 0);
        json_t *s = b.oom ? NULL : json_string(b.p);
        sb_free(&b);
        return s;
    }
    return NULL;
}

static json_t *prov_node(prov *p, const char *section, const char *id)
{
    json_t *node = json_object();
    pset(p, json_object_get(p->doc, section), id, node);
    return p->oom ? NULL : node;
}

/* A relation: section {"_:<section><n>": {k1: v1, k2: v2[, k3: v3]}}. */
static json_t *prov_rel(prov *p, const char *section, const char *k1, const char *v1,
                        const char *k2, const char *v2)
{
    char id[64];
    snprintf(id, sizeof id, "_:%s%d", section, ++p->next);
    json_t *rel = prov_node(p, section, id);
    pset(p, rel, k1, json_string(v1));
    pset(p, rel, k2, json_string(v2));
    return rel;
}

static void prov_rel_time(prov *p, json_t *rel, const char *key, long long ms)
{
    char iso[80];
    iso_time(ms, iso);
    pset(p, rel, key, json_string(iso));
}

static int prov_init(track_ctx *c, prov *p)
{
    memset(p, 0, sizeof *p);
    p->doc = json_object();
    p->inputs = json_array();
    json_t *prefix = json_object();
    pset(p, p->doc, "prefix", prefix);
    sbuf ns = {0};
    sb_puts(&ns, "urn:loom:sweep:");
    for (const unsigned char *s = (const unsigned char *)c->sweep_id; *s; s++)
        if ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
            *s == '-' || *s == '_' || *s == '.')
            sb_add(&ns, (const char *)s, 1);
        else
            sb_printf(&ns, "%%%02X", *s);
    sb_puts(&ns, ":");
    pset(p, prefix, "prov", json_string("http://www.w3.org/ns/prov#"));
    pset(p, prefix, "xsd", json_string("http://www.w3.org/2001/XMLSchema#"));
    pset(p, prefix, "loom", json_string("urn:loom:"));
    pset(p, prefix, "sweep", ns.oom ? NULL : json_string(ns.p));
    pset(p, prefix, "param", json_string("urn:loom:param:"));
    pset(p, prefix, "metric", json_string("urn:loom:metric:"));
    pset(p, prefix, "mlflow", json_string("runs:/"));   /* MLflow's run URIs */
    sb_free(&ns);
    for (size_t i = 0; i < sizeof prov_sections / sizeof prov_sections[0]; i++)
        pset(p, p->doc, prov_sections[i], json_object());
    if (!p->inputs)
        p->oom = 1;
    return p->oom ? fail(c, LOOM_ENOMEM, "out of memory") : 0;
}

static void prov_free(prov *p)
{
    json_decref(p->doc);
    json_decref(p->inputs);
    memset(p, 0, sizeof *p);
}

static void user_agent_id(const track_ctx *c, char out[SAFE_NAME_MAX + 16])
{
    char safe[SAFE_NAME_MAX + 1];
    safe_name(c->user, safe);
    snprintf(out, SAFE_NAME_MAX + 16, "loom:user.%s", safe);
}

/* The agents: loom (software) acting for the user (a person). */
static void prov_agents(track_ctx *c, prov *p)
{
    char user_id[SAFE_NAME_MAX + 16];
    user_agent_id(c, user_id);
    json_t *loom = prov_node(p, "agent", "loom:runtime");
    pset(p, loom, "prov:type", qname("prov:SoftwareAgent"));
    pset(p, loom, "prov:label", json_string("loom"));
    json_t *user = prov_node(p, "agent", user_id);
    pset(p, user, "prov:type", qname("prov:Person"));
    pset(p, user, "prov:label", json_string(c->user));
    prov_rel(p, "actedOnBehalfOf", "prov:delegate", "loom:runtime", "prov:responsible", user_id);
}

/* The sweep activity: it generated every config and informed every trial. */
static void prov_sweep_activity(track_ctx *c, prov *p)
{
    json_t *a = prov_node(p, "activity", "sweep:sweep");
    pset(p, a, "prov:type", qname("loom:Sweep"));
    pset(p, a, "prov:label", json_string(c->name ? c->name : c->sweep_id));
    pset(p, a, "loom:sweepId", json_string(c->sweep_id));
    pset(p, a, "loom:metric", json_string(c->metric));
    pset(p, a, "loom:mode", json_string(c->maximize ? "max" : "min"));
    char iso[80];
    iso_time(c->created_ms, iso);
    pset(p, a, "prov:startTime", json_string(iso));
    if (c->has_ended) {
        iso_time(c->ended_ms, iso);
        pset(p, a, "prov:endTime", json_string(iso));
    }
    char user_id[SAFE_NAME_MAX + 16];
    user_agent_id(c, user_id);
    prov_rel(p, "wasAssociatedWith", "prov:activity", "sweep:sweep", "prov:agent", user_id);
    prov_rel(p, "wasAssociatedWith", "prov:activity", "sweep:sweep", "prov:agent",
             "loom:runtime");
}

/* One local-or-remote input: its entity with location and, for a local
 * file, absolute path and sha256. */
static int prov_input(track_ctx *c, prov *p, const char *id, const char *location,
                      const char *type, int is_data)
{
    json_t *e = prov_node(p, "entity", id);
    pset(p, e, "prov:type", qname(type));
    pset(p, e, "prov:location", json_string(location));
    const char *path = location;
    if (!strncmp(path, "file://", 7))
        path += 7;
    char abs[PATH_MAX], hex[65];
    int rc = strstr(path, "://") ? 1 : digest_of(c, path, abs, hex);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        pset(p, e, "loom:path", json_string(abs));
        pset(p, e, "loom:sha256", json_string(hex));
    }
    json_t *in = json_pack("{s:s,s:b}", "id", id, "data", is_data);
    if (!in || json_array_append_new(p->inputs, in))
        p->oom = 1;
    return 0;
}

/* The code (the command's program and the local files among its arguments,
 * or the library) and the data the trials read. */
static int prov_inputs(track_ctx *c, prov *p)
{
    const json_t *trial = json_object_get(c->spec, "trial");
    const json_t *argv = json_object_get(trial, "command");
    const char *lib = json_string_value(json_object_get(trial, "library"));
    const json_t *data = json_object_get(c->spec, "data");
    char id[64];
    int rc = 0;
    for (size_t i = 0; i < json_array_size(argv) && !rc; i++) {
        const char *arg = json_string_value(json_array_get(argv, i));
        struct stat st;
        if (!arg || (i > 0 && (strchr(arg, '{') || stat(arg, &st) || !S_ISREG(st.st_mode))))
            continue;   /* program, then only files that exist, not templates */
        if (i)
            snprintf(id, sizeof id, "sweep:code.arg%zu", i);
        else
            snprintf(id, sizeof id, "sweep:code");
        rc = prov_input(c, p, id, arg, "loom:Code", 0);
    }
    if (lib && !rc) {
        rc = prov_input(c, p, "sweep:code", lib, "loom:Code", 0);
        json_t *e = json_object_get(json_object_get(p->doc, "entity"), "sweep:code");
        const json_t *fn = json_object_get(trial, "function");
        const json_t *actor = json_object_get(trial, "actor");
        if (json_is_string(fn))
            pset(p, e, "loom:function", json_string(json_string_value(fn)));
        if (json_is_string(actor))
            pset(p, e, "loom:actor", json_string(json_string_value(actor)));
    }
    if (json_is_string(data) && !rc)
        rc = prov_input(c, p, "sweep:data0", json_string_value(data), "loom:Dataset", 1);
    for (size_t i = 0; i < json_array_size(data) && !rc; i++) {
        const char *ref = json_string_value(json_array_get(data, i));
        if (!ref)
            continue;
        snprintf(id, sizeof id, "sweep:data%zu", i);
        rc = prov_input(c, p, id, ref, "loom:Dataset", 1);
    }
    return rc;
}

static void trial_ids(const trial_info *t, char act[48], char cfg[64], char res[64])
{
    snprintf(act, 48, "sweep:trial_%04lld", t->id);
    snprintf(cfg, 64, "%s.config", act);
    snprintf(res, 64, "%s.result", act);
}

/* The trial activity and its config, result and artifact entities, with
 * their relations to the sweep, the agents and the inputs. */
static void prov_trial(track_ctx *c, prov *p, const trial_info *t)
{
    char act[48], cfg[64], res[64], user_id[SAFE_NAME_MAX + 16], mlrun[48];
    trial_ids(t, act, cfg, res);
    user_agent_id(c, user_id);
    snprintf(mlrun, sizeof mlrun, "mlflow:%s", t->run_id);

    json_t *a = prov_node(p, "activity", act);
    pset(p, a, "prov:type", qname("loom:Trial"));
    pset(p, a, "prov:label", json_string(t->name));
    pset(p, a, "loom:trialId", typed_ll(t->id));
    pset(p, a, "loom:state", json_string(t->state));
    pset(p, a, "loom:mlflowRun", qname(mlrun));
    char iso[80];
    iso_time(trial_start_ms(c, t), iso);
    pset(p, a, "prov:startTime", json_string(iso));
    if (t->has_end) {
        iso_time(t->end_ms, iso);
        pset(p, a, "prov:endTime", json_string(iso));
    }
    static const char *const extra[] = {"attempts", "cpu_seconds", "gpu_seconds", "error"};
    static const char *const attr[] = {"loom:attempts", "loom:cpuSeconds", "loom:gpuSeconds",
                                       "loom:error"};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        const json_t *v = json_object_get(t->rec, extra[i]);
        if (v && !json_is_null(v))
            pset(p, a, attr[i], prov_value(v));
    }

    json_t *e = prov_node(p, "entity", cfg);
    pset(p, e, "prov:type", qname("loom:Config"));
    for (void *it = json_object_iter((json_t *)t->config); it;
         it = json_object_iter_next((json_t *)t->config, it)) {
        char safe[SAFE_NAME_MAX + 1], key[SAFE_NAME_MAX + 8];
        const json_t *v = json_object_iter_value(it);
        if (json_is_null(v))
            continue;
        safe_name(json_object_iter_key(it), safe);
        snprintf(key, sizeof key, "param:%s", safe);
        pset(p, e, key, prov_value(v));
    }
    prov_rel(p, "wasGeneratedBy", "prov:entity", cfg, "prov:activity", "sweep:sweep");
    prov_rel(p, "used", "prov:activity", act, "prov:entity", cfg);
    prov_rel(p, "wasInformedBy", "prov:informed", act, "prov:informant", "sweep:sweep");
    prov_rel(p, "wasAssociatedWith", "prov:activity", act, "prov:agent", user_id);
    json_t *assoc = prov_rel(p, "wasAssociatedWith", "prov:activity", act, "prov:agent",
                             "loom:runtime");
    if (json_object_get(json_object_get(p->doc, "entity"), "sweep:code"))
        pset(p, assoc, "prov:plan", json_string("sweep:code"));
    for (size_t i = 0; i < json_array_size(p->inputs); i++) {
        const char *in = json_string_value(json_object_get(json_array_get(p->inputs, i), "id"));
        prov_rel(p, "used", "prov:activity", act, "prov:entity", in);
    }

    const json_t *last = last_metrics(t);
    if (last) {
        json_t *r = prov_node(p, "entity", res);
        pset(p, r, "prov:type", qname("loom:Result"));
        pset(p, r, "loom:objective", json_string(c->metric));
        size_t nres = json_array_size(t->results);
        const json_t *tv = json_object_get(json_array_get(t->results, nres ? nres - 1 : 0), "t");
        if (json_is_number(tv))
            pset(p, r, "loom:t", prov_value(tv));
        const json_t *best = json_object_get(t->rec, "best");
        if (json_is_number(best))
            pset(p, r, "loom:best", prov_value(best));
        json_t *names = metric_names(t);
        if (!names)
            p->oom = 1;
        else if (!json_object_size(names))   /* no results: the record's "last" */
            for (void *it = json_object_iter((json_t *)last); it;
                 it = json_object_iter_next((json_t *)last, it))
                if (json_is_number(json_object_iter_value(it)) &&
                    json_object_set_new(names, json_object_iter_key(it), json_null()))
                    p->oom = 1;
        for (void *it = json_object_iter(names); it; it = json_object_iter_next(names, it)) {
            char safe[SAFE_NAME_MAX + 1], key[SAFE_NAME_MAX + 8];
            safe_name(json_object_iter_key(it), safe);
            snprintf(key, sizeof key, "metric:%s", safe);
            pset(p, r, key, prov_value(last_value(t, json_object_iter_key(it))));
        }
        json_decref(names);
        json_t *gen = prov_rel(p, "wasGeneratedBy", "prov:entity", res, "prov:activity", act);
        long long ms;
        if (get_ll(json_array_get(t->results, nres ? nres - 1 : 0), "time_ms", &ms))
            prov_rel_time(p, gen, "prov:time", ms);
        json_t *d = prov_rel(p, "wasDerivedFrom", "prov:generatedEntity", res,
                             "prov:usedEntity", cfg);
        pset(p, d, "prov:activity", json_string(act));
        for (size_t i = 0; i < json_array_size(p->inputs); i++) {
            const json_t *in = json_array_get(p->inputs, i);
            if (!json_is_true(json_object_get(in, "data")))
                continue;
            d = prov_rel(p, "wasDerivedFrom", "prov:generatedEntity", res, "prov:usedEntity",
                         json_string_value(json_object_get(in, "id")));
            pset(p, d, "prov:activity", json_string(act));
        }
    }

    json_t *art_names = json_object();
    if (!art_names)
        p->oom = 1;
    for (size_t i = 0; art_names && i < json_array_size(t->artifacts); i++) {
        const json_t *art = json_array_get(t->artifacts, i);
        const char *name = json_string_value(json_object_get(art, "name"));
        if (!name)
            continue;
        char safe[SAFE_NAME_MAX + 1], id[SAFE_NAME_MAX + 96];
        safe_name(name, safe);
        snprintf(id, sizeof id, "%s.artifact.%s", act, safe);
        for (int k = 2; json_object_get(art_names, id); k++)
            snprintf(id, sizeof id, "%s.artifact.%s_%d", act, safe, k);
        if (json_object_set_new(art_names, id, json_true()))
            p->oom = 1;
        json_t *ae = prov_node(p, "entity", id);
        pset(p, ae, "prov:type", qname("loom:Artifact"));
        pset(p, ae, "prov:label", json_string(name));
        const json_t *sha = json_object_get(art, "sha256");
        const json_t *bytes = json_object_get(art, "bytes");
        if (json_is_string(sha))
            pset(p, ae, "loom:sha256", json_string(json_string_value(sha)));
        if (json_is_integer(bytes))
            pset(p, ae, "loom:bytes", typed_ll((long long)json_integer_value(bytes)));
        json_t *gen = prov_rel(p, "wasGeneratedBy", "prov:entity", id, "prov:activity", act);
        if (t->has_end)
            prov_rel_time(p, gen, "prov:time", t->end_ms);
    }
    json_decref(art_names);
}

static int prov_write(track_ctx *c, prov *p, const char *file)
{
    char dir[PATH_MAX], path[PATH_MAX];
    int rc = path_fmt(c, dir, "%s/prov", c->out);
    if (!rc)
        rc = path_fmt(c, path, "%s/%s", dir, file);
    if (!rc)
        rc = mkdir_p(c, dir);
    if (rc)
        return rc;
    if (p->oom)
        return fail(c, LOOM_ENOMEM, "out of memory building %s", file);
    /* no empty relation sections: keep only what holds records */
    for (size_t i = 0; i < sizeof prov_sections / sizeof prov_sections[0]; i++)
        if (!json_object_size(json_object_get(p->doc, prov_sections[i])) &&
            strcmp(prov_sections[i], "entity") && strcmp(prov_sections[i], "activity") &&
            strcmp(prov_sections[i], "agent"))
            json_object_del(p->doc, prov_sections[i]);
    sbuf b = {0};
    json_write(&b, p->doc, 2, 0);
    sb_add(&b, "\n", 1);
    rc = write_sbuf(c, dir, path, &b);
    sb_free(&b);
    return rc;
}

static int prov_trial_doc(track_ctx *c, const trial_info *t)
{
    prov p;
    int rc = prov_init(c, &p);
    if (!rc) {
        prov_agents(c, &p);
        prov_sweep_activity(c, &p);
        rc = prov_inputs(c, &p);
    }
    if (!rc) {
        prov_trial(c, &p, t);
        char file[48];
        snprintf(file, sizeof file, "trial_%04lld.json", t->id);
        rc = prov_write(c, &p, file);
    }
    prov_free(&p);
    return rc;
}

/* The sweep: its spec used, every trial started by it. */
static int prov_sweep_doc(track_ctx *c, const json_t *trials)
{
    prov p;
    int rc = prov_init(c, &p);
    if (!rc) {
        prov_agents(c, &p);
        prov_sweep_activity(c, &p);
        rc = prov_inputs(c, &p);
    }
    if (rc) {
        prov_free(&p);
        return rc;
    }
    json_t *spec = prov_node(&p, "entity", "sweep:spec");
    pset(&p, spec, "prov:type", qname("loom:SweepSpec"));
    pset(&p, spec, "loom:spec", prov_value(c->spec));
    prov_rel(&p, "used", "prov:activity", "sweep:sweep", "prov:entity", "sweep:spec");
    json_t *sweep_act = json_object_get(json_object_get(p.doc, "activity"), "sweep:sweep");
    const json_t *state = json_object_get(c->sweep, "state");
    if (json_is_string(state))
        pset(&p, sweep_act, "loom:state", json_string(json_string_value(state)));
    const json_t *best = json_object_get(c->sweep, "best_trial");
    if (json_is_integer(best)) {
        char id[48];
        snprintf(id, sizeof id, "sweep:trial_%04lld", (long long)json_integer_value(best));
        pset(&p, sweep_act, "loom:bestTrial", qname(id));
    }
    for (size_t i = 0; i < json_array_size(trials) && !rc; i++) {
        trial_info t;
        rc = trial_parse(c, json_array_get(trials, i), &t);
        if (rc)
            break;
        prov_trial(c, &p, &t);
        char act[48], cfg[64], res[64];
        trial_ids(&t, act, cfg, res);
        json_t *st = prov_rel(&p, "wasStartedBy", "prov:activity", act, "prov:starter",
                              "sweep:sweep");
        if (t.has_start)
            prov_rel_time(&p, st, "prov:time", t.start_ms);
    }
    if (!rc)
        rc = prov_write(c, &p, "sweep.json");
    prov_free(&p);
    return rc;
}

/* ---- results table ---------------------------------------------------------- */

static void csv_cell(sbuf *b, const char *s, size_t n, int first)
{
    if (!first)
        sb_add(b, ",", 1);
    if (!memchr(s, ',', n) && !memchr(s, '"', n) && !memchr(s, '\n', n) && !memchr(s, '\r', n)) {
        sb_add(b, s, n);
        return;
    }
    sb_add(b, "\"", 1);
    for (size_t i = 0; i < n; i++)
        sb_add(b, s[i] == '"' ? "\"\"" : s + i, s[i] == '"' ? 2 : 1);
    sb_add(b, "\"", 1);
}

static void csv_value(sbuf *b, const json_t *v)
{
    sbuf cell = {0};
    value_text(&cell, v);
    if (cell.oom)
        b->oom = 1;
    csv_cell(b, cell.p ? cell.p : "", cell.len, 0);
    sb_free(&cell);
}

static const char *const csv_fixed[] = {"id", "name", "state", "t", "objective", "best",
                                        "cpu_seconds", "gpu_seconds", "attempts"};

/* A metric column's header: its name, or metric.NAME where that would be
 * taken by a fixed or a config column. */
static void csv_metric_header(sbuf *b, const char *name)
{
    int taken = !strncmp(name, "config.", 7) || !strncmp(name, "metric.", 7);
    for (size_t i = 0; i < sizeof csv_fixed / sizeof csv_fixed[0]; i++)
        taken = taken || !strcmp(name, csv_fixed[i]);
    sbuf h = {0};
    sb_printf(&h, "%s%s", taken ? "metric." : "", name);
    if (h.oom)
        b->oom = 1;
    csv_cell(b, h.p ? h.p : "", h.len, 0);
    sb_free(&h);
}

static void csv_row(track_ctx *c, sbuf *b, const trial_info *t, const char **cfg, size_t ncfg,
                    const char **met, size_t nmet)
{
    char num[40];
    snprintf(num, sizeof num, "%lld", t->id);
    csv_cell(b, num, strlen(num), 1);
    csv_cell(b, t->name, strlen(t->name), 0);
    csv_cell(b, t->state, strlen(t->state), 0);
    size_t n = json_array_size(t->results);
    csv_value(b, n ? json_object_get(json_array_get(t->results, n - 1), "t") : NULL);
    csv_value(b, last_value(t, c->metric));
    static const char *const fields[] = {"best", "cpu_seconds", "gpu_seconds", "attempts"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        csv_value(b, json_object_get(t->rec, fields[i]));
    for (size_t i = 0; i < ncfg; i++)
        csv_value(b, json_object_get(t->config, cfg[i]));
    const json_t *last = last_metrics(t);
    for (size_t i = 0; i < nmet; i++) {
        const json_t *v = json_object_get(last, met[i]);
        csv_value(b, json_is_number(v) ? v : NULL);
    }
    sb_puts(b, "\r\n");
}

/* The union of config keys and of the last results' numeric metrics. */
static int csv_columns(track_ctx *c, const json_t *trials, json_t *cfg_set, json_t *met_set)
{
    for (size_t i = 0; i < json_array_size(trials); i++) {
        trial_info t;
        int rc = trial_parse(c, json_array_get(trials, i), &t);
        if (rc)
            return rc;
        for (void *it = json_object_iter((json_t *)t.config); it;
             it = json_object_iter_next((json_t *)t.config, it))
            if (json_object_set_new(cfg_set, json_object_iter_key(it), json_null()))
                return fail(c, LOOM_ENOMEM, "out of memory");
        const json_t *last = last_metrics(&t);
        for (void *it = json_object_iter((json_t *)last); it;
             it = json_object_iter_next((json_t *)last, it))
            if (json_is_number(json_object_iter_value(it)) &&
                json_object_set_new(met_set, json_object_iter_key(it), json_null()))
                return fail(c, LOOM_ENOMEM, "out of memory");
    }
    return 0;
}

static int results_csv(track_ctx *c, const json_t *trials)
{
    json_t *cfg_set = json_object(), *met_set = json_object();
    const char **cfg = NULL, **met = NULL;
    size_t ncfg = 0, nmet = 0;
    int rc = cfg_set && met_set ? csv_columns(c, trials, cfg_set, met_set)
                                : fail(c, LOOM_ENOMEM, "out of memory");
    if (!rc && (sorted_keys(cfg_set, &cfg, &ncfg) || sorted_keys(met_set, &met, &nmet)))
        rc = fail(c, LOOM_ENOMEM, "out of memory");
    sbuf b = {0};
    if (!rc) {
        for (size_t i = 0; i < sizeof csv_fixed / sizeof csv_fixed[0]; i++)
            csv_cell(&b, csv_fixed[i], strlen(csv_fixed[i]), i == 0);
        for (size_t i = 0; i < ncfg; i++) {
            sbuf h = {0};
            sb_printf(&h, "config.%s", cfg[i]);
            if (h.oom)
                b.oom = 1;
            csv_cell(&b, h.p ? h.p : "", h.len, 0);
            sb_free(&h);
        }
        for (size_t i = 0; i < nmet; i++)
            csv_metric_header(&b, met[i]);
        sb_puts(&b, "\r\n");
    }
    for (size_t i = 0; i < json_array_size(trials) && !rc; i++) {
        trial_info t;
        rc = trial_parse(c, json_array_get(trials, i), &t);
        if (!rc)
            csv_row(c, &b, &t, cfg, ncfg, met, nmet);
    }
    char path[PATH_MAX];
    if (!rc)
        rc = path_fmt(c, path, "%s/results.csv", c->out);
    if (!rc)
        rc = write_sbuf(c, c->out, path, &b);
    sb_free(&b);
    free(cfg);
    free(met);
    json_decref(cfg_set);
    json_decref(met_set);
    return rc;
}

static int results_json(track_ctx *c, const json_t *trials)
{
    sbuf b = {0};
    sb_puts(&b, "{\n  \"sweep\": ");
    json_write(&b, c->sweep, 2, 1);
    sb_puts(&b, ",\n  \"trials\": ");
    json_write(&b, trials, 2, 1);
    sb_puts(&b, "\n}\n");
    char path[PATH_MAX];
    int rc = path_fmt(c, path, "%s/results.json", c->out);
    if (!rc)
        rc = write_sbuf(c, c->out, path, &b);
    sb_free(&b);
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
    sbuf b = {0};
    if (best)
        json_write(&b, best, 2, 0);
    else
        sb_puts(&b, "null");
    sb_add(&b, "\n", 1);
    char path[PATH_MAX];
    int rc = path_fmt(c, path, "%s/best.json", c->out);
    if (!rc)
        rc = write_sbuf(c, c->out, path, &b);
    sb_free(&b);
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
        rc = trial_parse(&c, trial, &t);
    if (!rc)
        rc = out_prepare(&c, out_dir);
    if (!rc)
        rc = mlflow_experiments(&c);
    if (!rc)
        rc = mlflow_run(&c, &t);
    if (!rc)
        rc = prov_trial_doc(&c, &t);
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
        rc = fail(&c, LOOM_EINVAL, "trials is not an array");
    for (size_t i = 0; !rc && i < json_array_size(trials); i++) {
        trial_info t;
        rc = trial_parse(&c, json_array_get(trials, i), &t);
    }
    if (!rc)
        rc = out_prepare(&c, out_dir);
    if (!rc)
        rc = mlflow_experiments(&c);
    if (!rc)
        rc = results_csv(&c, trials);
    if (!rc)
        rc = results_json(&c, trials);
    if (!rc)
        rc = results_best(&c, trials);
    if (!rc)
        rc = prov_sweep_doc(&c, trials);
    if (!rc)
        rc = digest_cache_save(&c);
    json_decref(c.digests);
    return rc;
}
