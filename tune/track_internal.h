/* tune/track_internal.h — what the files of tune/track.h share: one call's
 * context and trial record (track.c: records, files, digests, the results
 * table and the public calls), the text writers (track_write.c: a growable
 * buffer, JSON, YAML), the MLflow file store (track_mlflow.c) and PROV-JSON
 * (track_prov.c).  Not a public interface. */
#ifndef LOOM_TUNE_TRACK_INTERNAL_H
#define LOOM_TUNE_TRACK_INTERNAL_H

#include <jansson.h>
#include "base/buf.h"
#include <limits.h>
#include <stddef.h>

#define SAFE_NAME_MAX 200   /* MLflow keys may be 250 chars; room for a suffix */

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

/* the text writers below append to a loom_buf (base/buf.h; oom is sticky) */
/* JSON text of v; indent > 0: pretty, that many spaces a level. */
void track_json_write(loom_buf *b, const json_t *v, int indent, int depth);
/* A value as plain text: strings bare, numbers shortest, others as JSON. */
void track_value_text(loom_buf *b, const json_t *v);
/* "key: value\n" with value as a YAML scalar. */
void track_yaml_kv(loom_buf *b, const char *key, const char *value);
/* file:// URI of an absolute path. */
void track_file_uri(loom_buf *b, const char *path);

/* track.c */
__attribute__((format(printf, 3, 4)))
int track_fail(track_ctx *c, int code, const char *fmt, ...);
void track_fmt_double(double v, char out[40]);
void track_number_text(const json_t *v, char out[40]);
void track_iso_time(long long ms, char out[80]);
int track_get_ll(const json_t *obj, const char *key, long long *out);
void track_safe_name(const char *in, char out[SAFE_NAME_MAX + 1]);
int track_sorted_keys(const json_t *obj, const char ***keys, size_t *n);
int track_safe_names(const char **names, size_t n, json_t **out);
int track_path_fmt(track_ctx *c, char out[PATH_MAX], const char *fmt, ...);
int track_mkdir_p(track_ctx *c, const char *path);
int track_write_sbuf(track_ctx *c, const char *tmp_dir, const char *path, const loom_buf *b);
int track_prune_dir(track_ctx *c, const char *dir, const json_t *keep, const char *prefix);
int track_digest_of(track_ctx *c, const char *path, char abs[PATH_MAX], char hex[65]);
int track_trial_parse(track_ctx *c, const json_t *trial, trial_info *t);
const json_t *track_result_metrics(const trial_info *t, size_t i);
const json_t *track_last_metrics(const trial_info *t);
const json_t *track_last_value(const trial_info *t, const char *name);
long long track_trial_start_ms(const track_ctx *c, const trial_info *t);
json_t *track_metric_names(const trial_info *t);

/* track_mlflow.c */
int track_mlflow_experiments(track_ctx *c);
int track_mlflow_run(track_ctx *c, const trial_info *t);

/* track_prov.c */
int track_prov_trial_doc(track_ctx *c, const trial_info *t);
int track_prov_sweep_doc(track_ctx *c, const json_t *trials);

#endif
