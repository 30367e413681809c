/* tests/test_tune_track.c — tune/track.c: a sweep of three trials (completed,
 * stopped early, failed; configs of mixed types) written into a temporary
 * folder, then read back: the MLflow file store (experiment and run
 * meta.yaml read the way MLflow's FileStore reads them, status codes,
 * params, "ts value step" metric lines, tags), a rewrite that replaces
 * rather than duplicates (stale metrics and loom tags removed, a user's tag
 * kept), the PROV-JSON documents (sections, relations, the sha256 of local
 * code and data), results.csv (header, rows, RFC 4180 quoting), results.json,
 * best.json for "max" and "min" (ties to the lower id, null for none),
 * hostile names kept inside their folder, and the refusals (LOOM_EINVAL for
 * missing fields, LOOM_EIO for an unusable folder). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* nftw */
#endif
#include <ctype.h>
#include <dirent.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "loom/loom.h"
#include "tune/track.h"
#include "testutil.h"

#define SHA_ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define ART_SHA "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

static char g_root[PATH_MAX];   /* the temporary folder */

/* ---- helpers ------------------------------------------------------------- */

__attribute__((format(printf, 2, 3)))
static const char *path_of(char out[PATH_MAX], const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, PATH_MAX, fmt, ap);
    va_end(ap);
    REQUIRE(n > 0 && n < PATH_MAX);
    return out;
}

/* The file's contents (caller frees), or NULL. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    REQUIRE(s);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = '\0';
    fclose(f);
    return s;
}

static int file_is(const char *path, const char *want)
{
    char *got = slurp(path);
    int same = got && !strcmp(got, want);
    if (!same)
        fprintf(stderr, "%s:\n  got  [%s]\n  want [%s]\n", path, got ? got : "(none)", want);
    free(got);
    return same;
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void put_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    fputs(text, f);
    fclose(f);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void rm_rf(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* Entries of dir whose names start with prefix ("" for all, dot files
 * excluded unless prefix starts with '.'). */
static int count_entries(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix)) && strcmp(e->d_name, ".") &&
            strcmp(e->d_name, "..") && (prefix[0] == '.' || e->d_name[0] != '.'))
            n++;
    closedir(d);
    return n;
}

/* The one experiment folder of mlruns/ that is not "0" or ".trash". */
static int find_experiment(const char *out, char exp[256])
{
    char dir[PATH_MAX];
    DIR *d = opendir(path_of(dir, "%s/mlruns", out));
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && strcmp(e->d_name, "0")) {
            snprintf(exp, 256, "%s", e->d_name);
            n++;
        }
    closedir(d);
    return n;
}

/* The tiny YAML reader: the value of "key: value" in a meta.yaml the way
 * MLflow's FileStore gets it from yaml.safe_load for these files — plain,
 * or single-quoted with '' for a quote.  0 when the key is absent. */
static int yaml_get(const char *path, const char *key, char *out, size_t outsz)
{
    char *text = slurp(path);
    int found = 0;
    size_t klen = strlen(key);
    for (char *line = text; line && *line && !found;) {
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len > klen + 1 && !strncmp(line, key, klen) && line[klen] == ':' &&
            line[klen + 1] == ' ') {
            const char *v = line + klen + 2, *vend = line + len;
            size_t o = 0;
            if (*v == '\'') {
                for (v++; v < vend - 1 && o + 1 < outsz; v++) {
                    out[o++] = *v;
                    if (*v == '\'')
                        v++;   /* '' is one quote */
                }
            } else {
                for (; v < vend && o + 1 < outsz; v++)
                    out[o++] = *v;
            }
            out[o] = '\0';
            found = 1;
        }
        line = end ? end + 1 : NULL;
    }
    free(text);
    return found;
}

static int all_digits(const char *s)
{
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p))
            return 0;
    return *s != '\0';
}

/* Does the PROV section hold a record with k1: v1 and k2: v2? */
static int has_rel(const json_t *doc, const char *section, const char *k1, const char *v1,
                   const char *k2, const char *v2)
{
    const char *id;
    json_t *rel;
    json_object_foreach(json_object_get(doc, section), id, rel) {
        const char *a = json_string_value(json_object_get(rel, k1));
        const char *b = json_string_value(json_object_get(rel, k2));
        if (a && b && !strcmp(a, v1) && !strcmp(b, v2))
            return 1;
    }
    return 0;
}

/* A typed literal's lexical value and type. */
static int literal_is(const json_t *v, const char *lexical, const char *type)
{
    const char *s = json_string_value(json_object_get(v, "$"));
    const char *t = json_string_value(json_object_get(v, "type"));
    return s && t && !strcmp(s, lexical) && !strcmp(t, type);
}

static json_t *parse(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!j)
        fprintf(stderr, "bad test JSON: %s\n", je.text);
    REQUIRE(j);
    return j;
}

/* ---- the records ------------------------------------------------------------ */

static json_t *make_sweep(const char *id, const char *name, const char *mode)
{
    char code[PATH_MAX], data[PATH_MAX];
    path_of(code, "%s/train.sh", g_root);
    path_of(data, "%s/data.csv", g_root);
    json_t *s = json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:[s,s,s]}, s:[s,s]}, s:I, s:I, s:s, s:i}",
                          "id", id, "name", name, "spec", "metric", "accuracy", "mode", mode,
                          "trial", "command", code, "--lr", "{lr}", "data", data,
                          "s3://bucket/digits", "created_ms", (json_int_t)1700000000000LL,
                          "ended_ms", (json_int_t)1700000900000LL, "state", "completed",
                          "best_trial", 1);
    REQUIRE(s);
    return s;
}

static json_t *trial_completed(int with_loss)
{
    json_t *t = parse(
        "{\"id\": 1, \"name\": \"trial_0001\", \"state\": \"completed\","
        " \"config\": {\"lr\": 0.01, \"layers\": 3, \"act\": \"relu\","
        "  \"note\": \"a,b \\\"q\\\"\", \"use_bn\": true, \"hidden\": [64, 32],"
        "  \"../x\": \"up\", \"a/b\": \"slash\"},"
        " \"results\": ["
        "  {\"t\": 1, \"metrics\": {\"accuracy\": 0.5, \"loss\": 1.25, \"ok\": true,"
        "   \"tag\": \"x\"}, \"time_ms\": 1700000001000},"
        "  {\"t\": 2, \"metrics\": {\"accuracy\": 0.75, \"loss\": 0.5},"
        "   \"time_ms\": 1700000002000},"
        "  {\"t\": 3, \"metrics\": {\"accuracy\": 0.875, \"a/b\": 2}, \"time_ms\": 1700000003000}],"
        " \"best\": 0.875, \"best_t\": 3, \"last\": {\"accuracy\": 0.875, \"a/b\": 2},"
        " \"start_ms\": 1700000000500, \"end_ms\": 1700000004000,"
        " \"cpu_seconds\": 3.5, \"gpu_seconds\": 0.5, \"attempts\": 1,"
        " \"artifacts\": [{\"name\": \"model.safetensors\", \"sha256\": \"" ART_SHA "\","
        "  \"bytes\": 1234}]}");
    if (!with_loss) {
        json_t *r;
        size_t i;
        json_array_foreach(json_object_get(t, "results"), i, r)
            json_object_del(json_object_get(r, "metrics"), "loss");
    }
    return t;
}

static json_t *trial_stopped(void)
{
    return parse("{\"id\": 2, \"name\": \"trial_0002\", \"state\": \"stopped\","
                 " \"config\": {\"lr\": 0.1, \"layers\": 2, \"act\": \"tanh\"},"
                 " \"results\": [{\"t\": 1, \"metrics\": {\"accuracy\": 0.25, \"best\": 1},"
                 "   \"time_ms\": 1700000005000}],"
                 " \"best\": 0.25, \"best_t\": 1, \"start_ms\": 1700000004500,"
                 " \"end_ms\": 1700000006000, \"cpu_seconds\": 1.5, \"gpu_seconds\": 0,"
                 " \"attempts\": 2}");
}

static json_t *trial_failed(void)
{
    return parse("{\"id\": 3, \"name\": \"trial_0003\", \"state\": \"failed\","
                 " \"config\": {\"lr\": 1, \"layers\": 4, \"act\": \"relu\", \"extra\": null},"
                 " \"results\": [], \"best\": null, \"last\": null,"
                 " \"start_ms\": 1700000006500, \"end_ms\": 1700000007000,"
                 " \"cpu_seconds\": 0.25, \"gpu_seconds\": 0, \"attempts\": 1,"
                 " \"error\": \"boom\"}");
}

/* ---- the checks --------------------------------------------------------------- */

static void test_run_id(void)
{
    char a[33], b[33], c[33], d[33];
    tune_track_run_id("9f0c", 1, a);
    tune_track_run_id("9f0c", 1, b);
    tune_track_run_id("9f0c", 2, c);
    tune_track_run_id("9f0d", 1, d);
    CHECK(strlen(a) == 32 && !strcmp(a, b) && strcmp(a, c) && strcmp(a, d));
    int hex = 1;
    for (int i = 0; i < 32; i++)
        hex = hex && strchr("0123456789abcdef", a[i]);
    CHECK(hex);
    CHECK(a[12] == '8' && strchr("89ab", a[16]));   /* RFC 9562 version 8 */
}

static void check_experiment(const char *out, const char *exp, const char *name)
{
    char path[PATH_MAX], v[256], want[3 * PATH_MAX];
    CHECK(all_digits(exp) && strlen(exp) == 18);
    path_of(path, "%s/mlruns/%s/meta.yaml", out, exp);
    snprintf(want, sizeof want,
             "artifact_location: 'file://%s/mlruns/%s'\n"
             "creation_time: 1700000000000\n"
             "experiment_id: '%s'\n"
             "last_update_time: 1700000900000\n"
             "lifecycle_stage: active\n"
             "name: 'Bob''s sweep'\n", out, exp, exp);
    CHECK(file_is(path, want));
    CHECK(yaml_get(path, "experiment_id", v, sizeof v) && !strcmp(v, exp));
    CHECK(yaml_get(path, "name", v, sizeof v) && !strcmp(v, name));
    path_of(path, "%s/mlruns/0/meta.yaml", out);
    CHECK(yaml_get(path, "experiment_id", v, sizeof v) && !strcmp(v, "0"));
    CHECK(yaml_get(path, "name", v, sizeof v) && !strcmp(v, "Default"));
    CHECK(exists(path_of(path, "%s/mlruns/.trash", out)));
}

static void check_run_meta(const char *out, const char *exp, const char *run, const char *name,
                           long long start, long long end, int status)
{
    char path[PATH_MAX], v[256], want[4 * PATH_MAX];
    const char *q = isdigit((unsigned char)run[0]) ? "'" : "";   /* YAML would read a number */
    path_of(path, "%s/mlruns/%s/%s/meta.yaml", out, exp, run);
    snprintf(want, sizeof want,
             "artifact_uri: 'file://%s/mlruns/%s/%s/artifacts'\n"
             "end_time: %lld\n"
             "entry_point_name: ''\n"
             "experiment_id: '%s'\n"
             "lifecycle_stage: active\n"
             "run_id: %s%s%s\n"
             "run_name: %s\n"
             "run_uuid: %s%s%s\n"
             "source_name: ''\n"
             "source_type: 4\n"
             "source_version: ''\n"
             "start_time: %lld\n"
             "status: %d\n"
             "tags: []\n"
             "user_id: tester\n",
             out, exp, run, end, exp, q, run, q, name, q, run, q, start, status);
    CHECK(file_is(path, want));
    /* what FileStore checks: ids match their folders, status is a RunStatus */
    CHECK(yaml_get(path, "run_id", v, sizeof v) && !strcmp(v, run));
    CHECK(yaml_get(path, "run_uuid", v, sizeof v) && !strcmp(v, run));
    CHECK(yaml_get(path, "experiment_id", v, sizeof v) && !strcmp(v, exp));
    CHECK(yaml_get(path, "status", v, sizeof v) && atoi(v) == status);
    CHECK(yaml_get(path, "lifecycle_stage", v, sizeof v) && !strcmp(v, "active"));
}

static void check_run1_files(const char *run_dir, int with_loss)
{
    char p[PATH_MAX];
    CHECK(file_is(path_of(p, "%s/params/lr", run_dir), "0.01"));
    CHECK(file_is(path_of(p, "%s/params/layers", run_dir), "3"));
    CHECK(file_is(path_of(p, "%s/params/act", run_dir), "relu"));
    CHECK(file_is(path_of(p, "%s/params/note", run_dir), "a,b \"q\""));
    CHECK(file_is(path_of(p, "%s/params/use_bn", run_dir), "true"));
    CHECK(file_is(path_of(p, "%s/params/hidden", run_dir), "[64,32]"));
    /* hostile names stay in params/ and metrics/ */
    CHECK(file_is(path_of(p, "%s/params/___x", run_dir), "up"));
    CHECK(file_is(path_of(p, "%s/params/a_b", run_dir), "slash"));
    CHECK(!exists(path_of(p, "%s/x", run_dir)) && !exists(path_of(p, "%s/params/a", run_dir)));
    CHECK(count_entries(path_of(p, "%s/params", run_dir), "") == 8);
    CHECK(file_is(path_of(p, "%s/metrics/accuracy", run_dir),
                  "1700000001000 0.5 1\n1700000002000 0.75 2\n1700000003000 0.875 3\n"));
    CHECK(file_is(path_of(p, "%s/metrics/a_b", run_dir), "1700000003000 2 3\n"));
    if (with_loss)
        CHECK(file_is(path_of(p, "%s/metrics/loss", run_dir),
                      "1700000001000 1.25 1\n1700000002000 0.5 2\n"));
    else
        CHECK(!exists(path_of(p, "%s/metrics/loss", run_dir)));
    CHECK(!exists(path_of(p, "%s/metrics/ok", run_dir)));    /* a boolean */
    CHECK(!exists(path_of(p, "%s/metrics/tag", run_dir)));   /* a string */
    CHECK(count_entries(path_of(p, "%s/metrics", run_dir), "") == (with_loss ? 3 : 2));
    CHECK(file_is(path_of(p, "%s/tags/mlflow.runName", run_dir), "trial_0001"));
    CHECK(file_is(path_of(p, "%s/tags/mlflow.user", run_dir), "tester"));
    CHECK(file_is(path_of(p, "%s/tags/mlflow.source.type", run_dir), "LOCAL"));
    CHECK(file_is(path_of(p, "%s/tags/loom.sweep_id", run_dir), "5eed01"));
    CHECK(file_is(path_of(p, "%s/tags/loom.trial_id", run_dir), "1"));
    CHECK(file_is(path_of(p, "%s/tags/loom.trial_state", run_dir), "completed"));
    CHECK(!exists(path_of(p, "%s/tags/loom.error", run_dir)));
    CHECK(exists(path_of(p, "%s/artifacts", run_dir)));
    CHECK(count_entries(run_dir, ".track-") == 0);   /* no temporary left */
}

static void check_prov_trial1(const char *out)
{
    char p[PATH_MAX];
    json_t *doc = json_load_file(path_of(p, "%s/prov/trial_0001.json", out), 0, NULL);
    CHECK(doc != NULL);
    if (!doc)
        return;
    static const char *const sections[] = {"prefix", "entity", "activity", "agent", "used",
                                           "wasGeneratedBy", "wasAssociatedWith",
                                           "wasInformedBy", "wasDerivedFrom"};
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++)
        CHECK(json_is_object(json_object_get(doc, sections[i])));
    json_t *prefix = json_object_get(doc, "prefix");
    CHECK(!strcmp(json_string_value(json_object_get(prefix, "prov")),
                  "http://www.w3.org/ns/prov#"));
    CHECK(json_object_get(prefix, "xsd") && json_object_get(prefix, "loom") &&
          json_object_get(prefix, "mlflow") && json_object_get(prefix, "sweep"));

    json_t *ent = json_object_get(doc, "entity");
    json_t *code = json_object_get(ent, "sweep:code");
    CHECK(!strcmp(json_string_value(json_object_get(code, "loom:sha256")), SHA_ABC));
    json_t *data = json_object_get(ent, "sweep:data0");
    CHECK(!strcmp(json_string_value(json_object_get(data, "loom:sha256")), SHA_EMPTY));
    json_t *remote = json_object_get(ent, "sweep:data1");
    CHECK(remote && !json_object_get(remote, "loom:sha256"));
    json_t *cfg = json_object_get(ent, "sweep:trial_0001.config");
    CHECK(literal_is(json_object_get(cfg, "param:lr"), "0.01", "xsd:double"));
    CHECK(literal_is(json_object_get(cfg, "param:layers"), "3", "xsd:int"));
    CHECK(literal_is(json_object_get(cfg, "param:use_bn"), "true", "xsd:boolean"));
    CHECK(!strcmp(json_string_value(json_object_get(cfg, "param:act")), "relu"));
    CHECK(json_object_get(cfg, "param:___x") && json_object_get(cfg, "param:a_b"));
    json_t *res = json_object_get(ent, "sweep:trial_0001.result");
    CHECK(literal_is(json_object_get(res, "metric:accuracy"), "0.875", "xsd:double"));
    CHECK(literal_is(json_object_get(res, "metric:loss"), "0.5", "xsd:double"));
    json_t *art = json_object_get(ent, "sweep:trial_0001.artifact.model.safetensors");
    CHECK(!strcmp(json_string_value(json_object_get(art, "loom:sha256")), ART_SHA));

    json_t *act = json_object_get(json_object_get(doc, "activity"), "sweep:trial_0001");
    CHECK(!strcmp(json_string_value(json_object_get(act, "prov:startTime")),
                  "2023-11-14T22:13:20.500Z"));
    CHECK(!strcmp(json_string_value(json_object_get(act, "prov:endTime")),
                  "2023-11-14T22:13:24.000Z"));
    CHECK(json_object_get(json_object_get(doc, "activity"), "sweep:sweep") != NULL);
    CHECK(json_object_get(json_object_get(doc, "agent"), "loom:runtime") != NULL);
    CHECK(json_object_get(json_object_get(doc, "agent"), "loom:user.tester") != NULL);

    const char *T = "sweep:trial_0001";
    CHECK(has_rel(doc, "used", "prov:activity", T, "prov:entity", "sweep:trial_0001.config"));
    CHECK(has_rel(doc, "used", "prov:activity", T, "prov:entity", "sweep:code"));
    CHECK(has_rel(doc, "used", "prov:activity", T, "prov:entity", "sweep:data0"));
    CHECK(has_rel(doc, "wasGeneratedBy", "prov:entity", "sweep:trial_0001.result",
                  "prov:activity", T));
    CHECK(has_rel(doc, "wasGeneratedBy", "prov:entity",
                  "sweep:trial_0001.artifact.model.safetensors", "prov:activity", T));
    CHECK(has_rel(doc, "wasAssociatedWith", "prov:activity", T, "prov:agent", "loom:runtime"));
    CHECK(has_rel(doc, "wasAssociatedWith", "prov:activity", T, "prov:agent",
                  "loom:user.tester"));
    CHECK(has_rel(doc, "wasInformedBy", "prov:informed", T, "prov:informant", "sweep:sweep"));
    CHECK(has_rel(doc, "wasDerivedFrom", "prov:generatedEntity", "sweep:trial_0001.result",
                  "prov:usedEntity", "sweep:trial_0001.config"));
    CHECK(has_rel(doc, "wasDerivedFrom", "prov:generatedEntity", "sweep:trial_0001.result",
                  "prov:usedEntity", "sweep:data0"));
    json_decref(doc);

    /* the failed trial: an activity, no result */
    doc = json_load_file(path_of(p, "%s/prov/trial_0003.json", out), 0, NULL);
    CHECK(doc && json_object_get(json_object_get(doc, "activity"), "sweep:trial_0003"));
    CHECK(doc && !json_object_get(json_object_get(doc, "entity"), "sweep:trial_0003.result"));
    json_decref(doc);
}

static void check_prov_sweep(const char *out)
{
    char p[PATH_MAX];
    json_t *doc = json_load_file(path_of(p, "%s/prov/sweep.json", out), 0, NULL);
    CHECK(doc != NULL);
    const char *trials[] = {"sweep:trial_0001", "sweep:trial_0002", "sweep:trial_0003"};
    for (int i = 0; i < 3; i++) {
        CHECK(has_rel(doc, "wasStartedBy", "prov:activity", trials[i], "prov:starter",
                      "sweep:sweep"));
        CHECK(has_rel(doc, "wasInformedBy", "prov:informed", trials[i], "prov:informant",
                      "sweep:sweep"));
    }
    CHECK(has_rel(doc, "used", "prov:activity", "sweep:sweep", "prov:entity", "sweep:spec"));
    json_decref(doc);
}

static void check_csv(const char *out)
{
    char p[PATH_MAX];
    CHECK(file_is(path_of(p, "%s/results.csv", out),
                  "id,name,state,t,objective,best,cpu_seconds,gpu_seconds,attempts,"
                  "config.../x,config.a/b,config.act,config.extra,config.hidden,config.layers,"
                  "config.lr,config.note,config.use_bn,a/b,accuracy,metric.best\r\n"
                  "1,trial_0001,completed,3,0.875,0.875,3.5,0.5,1,"
                  "up,slash,relu,,\"[64,32]\",3,0.01,\"a,b \"\"q\"\"\",true,2,0.875,\r\n"
                  "2,trial_0002,stopped,1,0.25,0.25,1.5,0,2,"
                  ",,tanh,,,2,0.1,,,,0.25,1\r\n"
                  "3,trial_0003,failed,,,,0.25,0,1,"
                  ",,relu,,,4,1,,,,,\r\n"));
}

static void check_results_json(const char *out)
{
    char p[PATH_MAX];
    json_t *doc = json_load_file(path_of(p, "%s/results.json", out), 0, NULL);
    CHECK(doc != NULL);
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(doc, "sweep"), "id")),
                  "5eed01"));
    json_t *trials = json_object_get(doc, "trials");
    CHECK(json_array_size(trials) == 3);
    json_t *lr = json_object_get(json_object_get(json_array_get(trials, 0), "config"), "lr");
    CHECK(json_is_real(lr) && json_real_value(lr) == 0.01);   /* shortest text, exact */
    json_decref(doc);
}

static long long best_id(const char *out)
{
    char p[PATH_MAX];
    json_t *doc = json_load_file(path_of(p, "%s/best.json", out), JSON_DECODE_ANY, NULL);
    long long id = json_is_null(doc) ? -1 : doc ? (long long)json_integer_value(
                                                      json_object_get(doc, "id"))
                                                : -2;
    json_decref(doc);
    return id;
}

static json_t *three_trials(int with_loss)
{
    json_t *a = json_array();
    json_array_append_new(a, trial_completed(with_loss));
    json_array_append_new(a, trial_stopped());
    json_array_append_new(a, trial_failed());
    return a;
}

static int write_all(const char *out, const json_t *sweep, const json_t *trials)
{
    char err[512];
    for (size_t i = 0; i < json_array_size(trials); i++) {
        int rc = tune_track_trial(out, sweep, json_array_get(trials, i), err, sizeof err);
        if (rc) {
            fprintf(stderr, "tune_track_trial: %d %s\n", rc, err);
            return rc;
        }
    }
    int rc = tune_track_results(out, sweep, trials, err, sizeof err);
    if (rc)
        fprintf(stderr, "tune_track_results: %d %s\n", rc, err);
    return rc;
}

static void test_sweep(void)
{
    char out[PATH_MAX], exp[256], run[3][33], run_dir[PATH_MAX], p[PATH_MAX];
    path_of(out, "%s/out", g_root);
    json_t *sweep = make_sweep("5eed01", "Bob's sweep", "max");
    json_t *trials = three_trials(1);
    CHECK(write_all(out, sweep, trials) == 0);

    REQUIRE(find_experiment(out, exp) == 1);
    check_experiment(out, exp, "Bob's sweep");
    for (int i = 0; i < 3; i++)
        tune_track_run_id("5eed01", i + 1, run[i]);
    CHECK(count_entries(path_of(p, "%s/mlruns/%s", out, exp), "") == 4);   /* meta.yaml, 3 runs */
    check_run_meta(out, exp, run[0], "trial_0001", 1700000000500LL, 1700000004000LL, 3);
    check_run_meta(out, exp, run[1], "trial_0002", 1700000004500LL, 1700000006000LL, 3);
    check_run_meta(out, exp, run[2], "trial_0003", 1700000006500LL, 1700000007000LL, 4);
    path_of(run_dir, "%s/mlruns/%s/%s", out, exp, run[0]);
    check_run1_files(run_dir, 1);
    CHECK(file_is(path_of(p, "%s/mlruns/%s/%s/tags/loom.trial_state", out, exp, run[1]),
                  "stopped"));
    CHECK(file_is(path_of(p, "%s/mlruns/%s/%s/metrics/accuracy", out, exp, run[1]),
                  "1700000005000 0.25 1\n"));
    CHECK(file_is(path_of(p, "%s/mlruns/%s/%s/tags/loom.error", out, exp, run[2]), "boom"));
    CHECK(count_entries(path_of(p, "%s/mlruns/%s/%s/metrics", out, exp, run[2]), "") == 0);
    CHECK(file_is(path_of(p, "%s/mlruns/%s/%s/params/extra", out, exp, run[2]), ""));
    check_prov_trial1(out);
    check_prov_sweep(out);
    check_csv(out);
    check_results_json(out);
    CHECK(best_id(out) == 1);

    /* rewrite: loss gone from trial 1, trial 3 cancelled without its error;
     * a note a user left in the MLflow UI survives */
    put_file(path_of(p, "%s/mlruns/%s/%s/tags/mlflow.note.content", out, exp, run[2]), "mine");
    json_decref(trials);
    trials = three_trials(0);
    json_t *t3 = json_array_get(trials, 2);
    json_object_del(t3, "error");
    json_object_set_new(t3, "state", json_string("cancelled"));
    CHECK(write_all(out, sweep, trials) == 0);
    CHECK(find_experiment(out, exp) == 1);
    CHECK(count_entries(path_of(p, "%s/mlruns/%s", out, exp), "") == 4);   /* meta.yaml, 3 runs */
    check_run1_files(run_dir, 0);
    check_run_meta(out, exp, run[2], "trial_0003", 1700000006500LL, 1700000007000LL, 5);
    CHECK(!exists(path_of(p, "%s/mlruns/%s/%s/tags/loom.error", out, exp, run[2])));
    CHECK(file_is(path_of(p, "%s/mlruns/%s/%s/tags/mlflow.note.content", out, exp, run[2]),
                  "mine"));
    CHECK(count_entries(path_of(p, "%s/prov", out), "") == 4);   /* 3 trials + sweep */
    json_decref(trials);
    json_decref(sweep);
}

static void test_best_min_and_ties(void)
{
    char out[PATH_MAX];
    path_of(out, "%s/min", g_root);
    json_t *sweep = make_sweep("5eed02", "min sweep", "min");
    json_t *trials = three_trials(1);
    CHECK(write_all(out, sweep, trials) == 0);
    CHECK(best_id(out) == 2);   /* 0.25 < 0.875; the failed trial has none */
    json_decref(trials);

    trials = parse("[{\"id\": 5, \"best\": 0.1}, {\"id\": 4, \"best\": 0.1},"
                   " {\"id\": 6, \"best\": 0.2}, {\"id\": 7, \"best\": null}]");
    CHECK(write_all(out, sweep, trials) == 0);
    CHECK(best_id(out) == 4);
    json_decref(trials);

    trials = parse("[{\"id\": 1, \"state\": \"pending\"}]");
    CHECK(write_all(out, sweep, trials) == 0);
    CHECK(best_id(out) == -1);   /* null */
    json_decref(trials);
    json_decref(sweep);
}

static void test_refusals(void)
{
    char out[PATH_MAX], file[PATH_MAX], err[256];
    path_of(out, "%s/bad", g_root);
    json_t *trial = trial_stopped(), *trials = json_pack("[O]", trial);

    json_t *sweep = make_sweep("5eed03", "bad", "max");
    json_object_del(sweep, "id");
    err[0] = '\0';
    CHECK(tune_track_trial(out, sweep, trial, err, sizeof err) == LOOM_EINVAL && err[0]);
    CHECK(tune_track_results(out, sweep, trials, err, sizeof err) == LOOM_EINVAL);
    json_decref(sweep);

    sweep = make_sweep("5eed03", "bad", "max");
    json_object_del(sweep, "spec");
    CHECK(tune_track_trial(out, sweep, trial, err, sizeof err) == LOOM_EINVAL);
    json_decref(sweep);

    sweep = make_sweep("5eed03", "bad", "max");
    json_object_del(json_object_get(sweep, "spec"), "metric");
    CHECK(tune_track_trial(out, sweep, trial, err, sizeof err) == LOOM_EINVAL);
    CHECK(tune_track_results(out, sweep, trials, err, sizeof err) == LOOM_EINVAL);
    json_decref(sweep);

    sweep = make_sweep("5eed03", "bad", "upwards");
    CHECK(tune_track_results(out, sweep, trials, err, sizeof err) == LOOM_EINVAL);
    json_decref(sweep);

    sweep = make_sweep("5eed03", "bad", "max");
    json_t *no_id = trial_stopped();
    json_object_del(no_id, "id");
    CHECK(tune_track_trial(out, sweep, no_id, err, sizeof err) == LOOM_EINVAL);
    json_t *with_bad = json_pack("[O,O]", trial, no_id);
    CHECK(tune_track_results(out, sweep, with_bad, err, sizeof err) == LOOM_EINVAL);
    json_object_set_new(no_id, "id", json_string("2"));
    CHECK(tune_track_trial(out, sweep, no_id, err, sizeof err) == LOOM_EINVAL);
    CHECK(tune_track_results(out, sweep, trial, err, sizeof err) == LOOM_EINVAL);   /* no array */
    CHECK(tune_track_trial(NULL, sweep, trial, err, sizeof err) == LOOM_EINVAL);
    CHECK(!exists(out));   /* refused before touching the disk */

    /* a folder under a file */
    path_of(file, "%s/train.sh/sub", g_root);
    err[0] = '\0';
    CHECK(tune_track_trial(file, sweep, trial, err, sizeof err) == LOOM_EIO);
    CHECK(strstr(err, "train.sh") != NULL);
    CHECK(tune_track_results(file, sweep, trials, err, sizeof err) == LOOM_EIO);
    json_decref(with_bad);
    json_decref(no_id);
    json_decref(sweep);
    json_decref(trials);
    json_decref(trial);
}

int main(void)
{
    char tmpl[] = "/tmp/test_tune_track.XXXXXX", p[PATH_MAX];
    REQUIRE(mkdtemp(tmpl));
    REQUIRE(realpath(tmpl, g_root));
    setenv("USER", "tester", 1);
    put_file(path_of(p, "%s/train.sh", g_root), "abc");
    put_file(path_of(p, "%s/data.csv", g_root), "");

    test_run_id();
    test_sweep();
    test_best_min_and_ties();
    test_refusals();

    rm_rf(g_root);
    CHECK(!exists(g_root));
    return TEST_DONE();
}
