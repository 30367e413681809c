/* tests/test_api_util.h — helpers shared by the C API integration tests
 * (tests/test_api_*.c): start a real local cluster, encode and decode msgpack
 * integers, submit one-call tasks, read fields out of status/job JSON.
 * Everything here goes through the public API only (loom/loom.h). */
#ifndef LOOM_TEST_API_UTIL_H
#define LOOM_TEST_API_UTIL_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <ftw.h>
#include <sys/stat.h>
#include <loom/loom.h>
#include <loom/value.h>
#include "testutil.h"

static inline int64_t t_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A fresh private directory TMPDIR/PREFIX-XXXXXX (0 or -1). */
static inline int t_temp_dir(const char *prefix, char *out, size_t len)
{
    const char *tmp = getenv("TMPDIR");
    int n = snprintf(out, len, "%s/%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", prefix);
    if (n < 0 || (size_t)n >= len) return -1;
    return mkdtemp(out) ? 0 : -1;
}

static inline int t_rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st; (void)type; (void)ftw;
    return remove(path);
}

/* Remove a directory tree (0 or -1). */
static inline int t_rm_rf(const char *dir)
{
    return nftw(dir, t_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Point the client library at the freshly built loom binary (ctest sets
 * LOOM_BIN too; this makes the programs runnable by hand). */
static inline void t_setup_env(void)
{
    setenv("LOOM_BIN", LOOM_BIN_PATH, 0);
    /* a local cluster started by a test is a child of the test only */
    unsetenv("LOOM_ADDRESS");
}

/* Start a local cluster of `nodes` daemons with `cpus` CPUs each. */
static inline loom_client *t_connect(int nodes, int cpus, const char *state_dir)
{
    t_setup_env();
    loom_connect_opts o;
    memset(&o, 0, sizeof o);
    o.num_nodes = nodes;
    o.num_cpus = cpus;
    o.state_dir = state_dir;
    o.store_bytes = (uint64_t)512 << 20;
    loom_client *c = NULL;
    int rc = loom_connect("local", &o, &c);
    if (rc) fprintf(stderr, "loom_connect(local): %s\n", loom_strerror(rc));
    REQUIRE(rc == LOOM_OK && c);
    return c;
}

static inline loom_ref t_lib(loom_client *c)
{
    loom_ref lib;
    int rc = loom_library_load(c, LOOM_EXAMPLES_LIB, &lib);
    if (rc) fprintf(stderr, "library load: %s: %s\n", loom_strerror(rc), loom_last_error(c));
    REQUIRE(rc == LOOM_OK);
    return lib;
}

/* A msgpack integer as an inline argument. */
typedef struct t_int {
    uint8_t b[16];
    size_t n;
} t_int;

static inline t_int t_i64(int64_t v)
{
    t_int r;
    memset(&r, 0, sizeof r);
    loom_pack *p = loom_pack_new();
    REQUIRE(p && loom_pack_i64(p, v) == 0 && loom_pack_size(p) <= sizeof r.b);
    r.n = loom_pack_size(p);
    memcpy(r.b, loom_pack_data(p), r.n);
    loom_pack_destroy(&p);
    return r;
}

static inline loom_arg t_arg_i64(const t_int *v)
{
    return loom_arg_value(v->b, v->n);
}

/* Decode a value as one msgpack integer; INT64_MIN when it is not one. */
static inline int64_t t_value_i64(const loom_value *v)
{
    loom_unpack u;
    loom_unpack_init(&u, loom_value_data(v), loom_value_size(v));
    int64_t x;
    if (loom_unpack_i64(&u, &x) || !loom_unpack_done(&u)) return INT64_MIN;
    return x;
}

/* loom_get of a msgpack integer: the get's code, the integer in *out. */
static inline int t_get_i64(loom_client *c, loom_ref ref, int64_t timeout_ms, int64_t *out)
{
    loom_value *v = NULL;
    int rc = loom_get(c, ref, timeout_ms, &v);
    if (rc) return rc;
    *out = t_value_i64(v);
    loom_value_release(&v);
    return LOOM_OK;
}

/* Submit fn(one integer) with default options. */
static inline int t_submit_i64(loom_client *c, loom_ref lib, const char *fn, int64_t x, loom_ref *out)
{
    t_int a = t_i64(x);
    loom_arg arg = t_arg_i64(&a);
    return loom_submit(c, lib, fn, &arg, 1, NULL, out);
}

static inline int t_has(const char *hay, const char *needle)
{
    return hay && needle && strstr(hay, needle) != NULL;
}

/* Print the client's last error when a check about it fails. */
#define CHECK_ERR_HAS(c, needle) do { const char *e_ = loom_last_error(c); loom_test_checks++; \
    if (!t_has(e_, needle)) { fprintf(stderr, "%s:%d: last error '%s' lacks '%s'\n", __FILE__, \
        __LINE__, e_ ? e_ : "(null)", needle); loom_test_failures++; } } while (0)

/* The integer after each occurrence of "key": in JSON text; counts matches
 * and records up to max of them. */
static inline int t_json_ints(const char *json, const char *key, int64_t *vals, int max)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    int n = 0;
    for (const char *p = json; p && (p = strstr(p, pat)); p += strlen(pat)) {
        const char *q = p + strlen(pat);
        while (*q == ' ') q++;
        if (*q != ':') continue;
        q++;
        while (*q == ' ') q++;
        char *end;
        long long v = strtoll(q, &end, 10);
        if (end == q) continue;
        if (n < max) vals[n] = v;
        n++;
    }
    return n;
}

/* The address and secret file of the local cluster a client started with
 * opts.state_dir = state_dir (its files are in a directory named local-<random>
 * inside it). */
#include <dirent.h>
static inline void t_find_local(const char *state_dir, char *address, size_t alen, char *secret_file, size_t slen)
{
    DIR *d = opendir(state_dir);
    REQUIRE(d);
    struct dirent *e;
    char dir[4400] = "";
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "local", 5)) snprintf(dir, sizeof dir, "%s/%s", state_dir, e->d_name);
    closedir(d);
    REQUIRE(dir[0]);
    char path[4600];
    snprintf(path, sizeof path, "%s/address", dir);
    FILE *f = fopen(path, "r");
    REQUIRE(f && fgets(address, (int)alen, f));
    fclose(f);
    address[strcspn(address, "\n")] = 0;
    snprintf(secret_file, slen, "%s/secret", dir);
}

/* Number of distinct values of "node" among a job's tasks (0 is "not placed"). */
static inline int t_job_distinct_nodes(loom_client *c, const char *job_id)
{
    char *json = NULL;
    if (loom_job_json(c, job_id, &json)) return -1;
    int cap = 1 << 16;
    int64_t *nodes = malloc(sizeof(int64_t) * (size_t)cap);
    int n = t_json_ints(json, "node", nodes, cap);
    if (n > cap) n = cap;
    int64_t seen[64];
    int ns = 0;
    for (int i = 0; i < n; i++) {
        if (nodes[i] == 0) continue;
        int dup = 0;
        for (int k = 0; k < ns; k++) dup |= seen[k] == nodes[i];
        if (!dup && ns < 64) seen[ns++] = nodes[i];
    }
    free(nodes);
    free(json);
    return ns;
}
#endif
