/* gateway/deploy.c — deployments (see deploy.h).
 *
 * A deployment owns replicas (heap records, so a request keeps its replica
 * while the array changes under rollout or scaling); replicas taken out of
 * rotation wait in `retired` until their last call returns, then the tick
 * kills them.  Everything here is under deploy_lock; calls to the cluster are
 * made with it released.
 *
 * Dynamic batching: requests with one input tensor join the deployment's
 * open batch when its name, dtype and inner shape match and it has room.  The
 * first request of a batch leads it: it sends the batch at once when a
 * replica is idle, else waits (up to max_wait_ms, or until the batch is full
 * or a replica frees up) for others to join; then it concatenates the rows,
 * calls the least-loaded replica and hands the answer to every member. */
#include "gateway/deploy.h"

#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gateway/gateway_internal.h"
#include "runtime/log.h"
#include "serve/registry_store.h"
#include "runtime/util.h"

#define MAX_REPLICAS 64
#define MAX_RETIRED 128
#define MAX_DEPLOYMENTS 256
#define READY_WAIT_MS 60000
#define PREDICT_WAIT_MS 60000
#define SCALE_DOWN_IDLE_MS 10000     /* no load this long: one replica fewer */
#define SCALE_UP_WAIT_MS 10000       /* a replica added under load must be up by then */
#define SCALE_UP_BACKOFF_MS 30000    /* ... else no new try for this long (no room in the cluster) */
#define RUNTIME_LIB "libloom_mlp.so"
#define RUNTIME_CLASS "Model"

typedef struct replica {
    loom_actor actor;
    int inflight;              /* calls (batches) on it now */
} replica;

typedef struct batch {
    char name[LOOM_TENSOR_NAME_MAX + 1];
    loom_tensor_dtype dtype;
    int ndim;
    int64_t shape[LOOM_TENSOR_MAX_DIMS];   /* shape[0]: rows so far */
    size_t row_bytes;
    char *data;
    size_t cap;
    int closed, done, refs, rc;
    char err[512];
    void *result;
    size_t result_len;
    int version;
    pthread_cond_t cv;
} batch;

typedef struct deployment {
    char name[GW_DEPLOY_NAME_MAX + 1], model[GW_DEPLOY_NAME_MAX + 1];
    int version;
    char *metadata;            /* the runtime's metadata (JSON text) */
    replica *r[MAX_REPLICAS];
    int nreplicas;
    replica *retired[MAX_RETIRED];
    int nretired;
    int min_replicas, max_replicas, max_batch, max_wait_ms, max_queued;
    double target_load, num_cpus, num_gpus;
    char *params;
    char owner[GW_USER_MAX];
    int public_;
    loom_ref lib;
    int starting;              /* being created: not routed to */
    int deleting;
    int changing;              /* a rollout or scaling step is under way */
    int waiting;               /* requests in this deployment now (queued + running) */
    int64_t last_load_ms;      /* when it last had a request */
    int64_t no_scale_until_ms; /* a replica could not be added: not before then */
    batch *open;
} deployment;

static pthread_mutex_t deploy_lock = PTHREAD_MUTEX_INITIALIZER;
static deployment *table[MAX_DEPLOYMENTS];
static const double batch_buckets[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};

/* ---- the table (under deploy_lock) --------------------------------------------------- */

static deployment *find_locked(const char *name)
{
    for (int i = 0; i < MAX_DEPLOYMENTS; i++)
        if (table[i] && !strcmp(table[i]->name, name)) return table[i];
    return NULL;
}

/* d serves requests (for `version`, unless 0). */
static int serving(const deployment *d, int version)
{
    return d && !d->starting && !d->deleting && d->nreplicas > 0 && (version == 0 || version == d->version);
}

static int insert_locked(deployment *d)
{
    if (find_locked(d->name)) return LOOM_ESTATE;
    for (int i = 0; i < MAX_DEPLOYMENTS; i++)
        if (!table[i]) {
            table[i] = d;
            return LOOM_OK;
        }
    return LOOM_EFULL;
}

static void remove_locked(deployment *d)
{
    for (int i = 0; i < MAX_DEPLOYMENTS; i++)
        if (table[i] == d) table[i] = NULL;
}

static void deployment_free(deployment *d)
{
    if (!d) return;
    for (int i = 0; i < d->nreplicas; i++) free(d->r[i]);
    for (int i = 0; i < d->nretired; i++) free(d->retired[i]);
    free(d->metadata);
    free(d->params);
    free(d);
}

static replica *least_loaded_locked(deployment *d)
{
    replica *best = NULL;
    for (int i = 0; i < d->nreplicas; i++)
        if (!best || d->r[i]->inflight < best->inflight) best = d->r[i];
    return best;
}

static int has_idle_locked(const deployment *d)
{
    for (int i = 0; i < d->nreplicas; i++)
        if (d->r[i]->inflight == 0) return 1;
    return 0;
}

/* Out of rotation: it ends once idle (tick). */
static void retire_locked(deployment *d, int i)
{
    if (d->nretired < MAX_RETIRED) d->retired[d->nretired++] = d->r[i];
    else free(d->r[i]);   /* cannot happen while MAX_RETIRED >= 2 * MAX_REPLICAS */
    d->r[i] = d->r[--d->nreplicas];
}

/* ---- replicas -------------------------------------------------------------------------- */

/* The model runtime library: beside libloom, in the build's or install's lib/. */
static int runtime_lib(loom_client *c, loom_ref *lib)
{
    char bin[PATH_MAX], path[PATH_MAX + 64];
    loom__snprintf(bin, sizeof(bin), "%s", loom__binary_path());
    loom__snprintf(path, sizeof(path), "%s/../lib/%s", dirname(bin), RUNTIME_LIB);
    return loom_library_load(c, path, lib);
}

/* The runtime's init parameters: the spec's, plus the deployment's name and version. */
static char *init_params(const char *params, const char *name, int version)
{
    json_t *p = params ? json_loads(params, 0, NULL) : NULL;
    if (!json_is_object(p)) {
        json_decref(p);
        p = json_object();
    }
    char vbuf[16];
    loom__snprintf(vbuf, sizeof(vbuf), "%d", version);
    json_object_set_new(p, "name", json_string(name));
    json_object_set_new(p, "version", json_string(vbuf));
    char *text = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    return text;
}

/* Starts n replicas of model:version into out[] and waits for their init.
 * On failure the ones made are killed.  *meta (if given) gets the first
 * replica's metadata. */
static int start_replicas(loom_client *c, const deployment *d, const char *model, int version, int n,
                          int64_t ready_ms, replica **out, char **meta, char *err, size_t errlen)
{
    json_t *m = NULL;
    char *artifact = NULL, *params = NULL;
    size_t len = 0;
    loom_ref art;
    int made = 0, rc = loom_registry_fetch(c, model, version, &m, &artifact, &len);
    json_decref(m);
    if (rc) {
        loom__snprintf(err, errlen, rc == LOOM_ENOTFOUND ? "no model '%s' version %d in the registry"
                                                         : "cannot read model '%s' version %d from the registry",
                       model, version);
        return rc;
    }
    rc = loom_put(c, artifact, len, &art);
    free(artifact);
    if (rc) {
        loom__snprintf(err, errlen, "cannot put the artifact: %s", loom_last_error(c));
        return rc;
    }
    params = init_params(d->params, d->name, version);
    loom_arg args[2] = {loom_arg_ref(art), loom_arg_value(params ? params : "{}", params ? strlen(params) : 2)};
    loom_actor_opts ao = {.detached = 1, .res = {.num_cpus = d->num_cpus, .num_gpus = d->num_gpus}};
    for (; !rc && made < n; made++) {
        out[made] = calloc(1, sizeof(replica));
        rc = out[made] ? loom_actor_create(c, d->lib, RUNTIME_CLASS, args, 2, &ao, &out[made]->actor) : LOOM_ENOMEM;
        if (rc) free(out[made]);
    }
    if (rc) made--;
    for (int i = 0; !rc && i < made; i++) rc = loom_actor_wait_ready(c, out[i]->actor, ready_ms);
    if (rc) loom__snprintf(err, errlen, "a replica did not start: %s", loom_last_error(c));
    free(params);
    loom_release(c, art);
    if (!rc && meta) {
        loom_ref mref;
        loom_value *v = NULL;
        rc = loom_actor_call(c, out[0]->actor, "metadata", NULL, 0, &mref);
        if (!rc) rc = loom_get(c, mref, READY_WAIT_MS, &v);
        if (!rc) *meta = strndup(loom_value_data(v), loom_value_size(v));
        if (!rc && !*meta) rc = LOOM_ENOMEM;
        if (rc) loom__snprintf(err, errlen, "the runtime's metadata call failed: %s", loom_last_error(c));
        loom_value_release(&v);
        if (v || !rc) loom_release(c, mref);
    }
    if (rc)
        for (int i = 0; i < made; i++) {
            loom_actor_kill(c, out[i]->actor);
            free(out[i]);
        }
    return rc;
}

/* ---- create, rollout, delete ----------------------------------------------------------------- */

int gw_deploy_parse(json_t *body, gw_deploy_spec *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    if (!json_is_object(body)) {
        loom__snprintf(err, errlen, "the body must be a JSON object");
        return LOOM_EINVAL;
    }
    json_t *v;
    s->model = json_string_value(json_object_get(body, "model"));
    s->name = (v = json_object_get(body, "name")) ? json_string_value(v) : s->model;
    s->version = (int)json_integer_value(json_object_get(body, "version"));
    s->replicas = (v = json_object_get(body, "replicas")) ? (int)json_integer_value(v) : 1;
    s->min_replicas = (v = json_object_get(body, "min_replicas")) ? (int)json_integer_value(v) : s->replicas;
    s->max_replicas = (v = json_object_get(body, "max_replicas")) ? (int)json_integer_value(v) : s->replicas;
    s->target_load = (v = json_object_get(body, "target_load")) ? json_number_value(v) : 4;
    s->num_cpus = (v = json_object_get(body, "num_cpus")) ? json_number_value(v) : 1;
    s->num_gpus = (v = json_object_get(body, "num_gpus")) ? json_number_value(v) : 0;
    s->max_batch = (v = json_object_get(body, "max_batch_size")) ? (int)json_integer_value(v) : 32;
    s->max_wait_ms = (v = json_object_get(body, "max_wait_ms")) ? (int)json_integer_value(v) : 5;
    s->max_queued = (v = json_object_get(body, "max_queued")) ? (int)json_integer_value(v) : 1024;
    json_t *params = json_object_get(body, "params");
    const char *why = !s->model ? "\"model\" (a registered model's name) is required"
                    : !s->name || !s->name[0] || strlen(s->name) > GW_DEPLOY_NAME_MAX || strchr(s->name, '/')
                        ? "\"name\" must be 1-128 characters without '/'"
                    : s->version < 0 ? "\"version\" must be a version number (0 or absent: the newest)"
                    : s->min_replicas < 1 || s->max_replicas > MAX_REPLICAS || s->min_replicas > s->max_replicas ||
                              s->replicas < s->min_replicas || s->replicas > s->max_replicas
                        ? "replicas must satisfy 1 <= min_replicas <= replicas <= max_replicas <= 64"
                    : s->target_load <= 0 ? "\"target_load\" must be positive"
                    : s->num_cpus < 0 || s->num_gpus < 0 ? "resources must not be negative"
                    : s->max_batch < 1 || s->max_batch > 4096 ? "\"max_batch_size\" must be 1-4096"
                    : s->max_wait_ms < 0 || s->max_wait_ms > 10000 ? "\"max_wait_ms\" must be 0-10000"
                    : s->max_queued < 1 ? "\"max_queued\" must be positive"
                    : params && !json_is_object(params) ? "\"params\" must be a JSON object"
                    : NULL;
    if (why) {
        loom__snprintf(err, errlen, "%s", why);
        return LOOM_EINVAL;
    }
    return LOOM_OK;
}

static deployment *deployment_new(const gw_deploy_spec *s, json_t *params)
{
    deployment *d = calloc(1, sizeof(*d));
    if (!d) return NULL;
    loom__snprintf(d->name, sizeof(d->name), "%s", s->name);
    loom__snprintf(d->model, sizeof(d->model), "%s", s->model);
    d->min_replicas = s->min_replicas;
    d->max_replicas = s->max_replicas;
    d->target_load = s->target_load;
    d->num_cpus = s->num_cpus;
    d->num_gpus = s->num_gpus;
    d->max_batch = s->max_batch;
    d->max_wait_ms = s->max_wait_ms;
    d->max_queued = s->max_queued;
    d->params = params ? json_dumps(params, JSON_COMPACT) : NULL;
    loom__snprintf(d->owner, sizeof(d->owner), "%s", s->owner ? s->owner : "");
    d->public_ = s->public_;
    d->starting = 1;
    d->last_load_ms = loom__now_ms();
    return d;
}

/* The registry's number of version v (0: newest) of model. */
static int resolve_version(loom_client *c, const char *model, int v, int *out)
{
    json_t *m = NULL;
    int rc = loom_registry_fetch(c, model, v, &m, NULL, NULL);
    if (!rc) *out = (int)json_integer_value(json_object_get(m, "version"));
    json_decref(m);
    return rc;
}

int gw_deploy_create(loom_client *c, const gw_deploy_spec *s, char *err, size_t errlen)
{
    json_t *params = s->params ? json_loads(s->params, 0, NULL) : NULL;
    deployment *d = deployment_new(s, params);
    json_decref(params);
    if (!d) return LOOM_ENOMEM;
    int rc = resolve_version(c, s->model, s->version, &d->version);
    if (rc == LOOM_ENOTFOUND) loom__snprintf(err, errlen, "no model '%s' version %d in the registry", s->model,
                                             s->version);
    if (!rc) {
        rc = runtime_lib(c, &d->lib);
        if (rc) loom__snprintf(err, errlen, "cannot load the model runtime %s: %s", RUNTIME_LIB, loom_last_error(c));
    }
    if (!rc) {
        pthread_mutex_lock(&deploy_lock);
        rc = insert_locked(d);
        pthread_mutex_unlock(&deploy_lock);
        if (rc == LOOM_ESTATE) loom__snprintf(err, errlen, "a deployment named '%s' exists", s->name);
        if (rc == LOOM_EFULL) loom__snprintf(err, errlen, "too many deployments (%d)", MAX_DEPLOYMENTS);
        if (rc) {
            deployment_free(d);
            return rc;
        }
        replica *made[MAX_REPLICAS];
        char *meta = NULL;
        rc = start_replicas(c, d, d->model, d->version, s->replicas, READY_WAIT_MS, made, &meta, err, errlen);
        pthread_mutex_lock(&deploy_lock);
        if (rc) {
            remove_locked(d);
        } else {
            memcpy(d->r, made, (size_t)s->replicas * sizeof(made[0]));
            d->nreplicas = s->replicas;
            d->metadata = meta;
            d->starting = 0;
        }
        pthread_mutex_unlock(&deploy_lock);
    }
    if (rc) deployment_free(d);
    return rc;
}

/* Claims d for a change (rollout, scaling): 0, or LOOM_ENOTFOUND / LOOM_ESTATE. */
static int claim_change(const char *name, deployment **out)
{
    pthread_mutex_lock(&deploy_lock);
    deployment *d = find_locked(name);
    int rc = !d || d->deleting || d->starting ? LOOM_ENOTFOUND : d->changing ? LOOM_ESTATE : LOOM_OK;
    if (!rc) {
        d->changing = 1;
        *out = d;
    }
    pthread_mutex_unlock(&deploy_lock);
    return rc;
}

static void release_change(deployment *d)
{
    pthread_mutex_lock(&deploy_lock);
    d->changing = 0;
    pthread_mutex_unlock(&deploy_lock);
}

int gw_deploy_rollout(loom_client *c, const char *name, int version, int public_, char *err, size_t errlen)
{
    deployment *d = NULL;
    int rc = claim_change(name, &d);
    /* a scaling step under way (a replica starting) ends within
       SCALE_UP_WAIT_MS: the rollout waits for it rather than fail */
    for (int64_t until = loom__now_ms() + 2 * SCALE_UP_WAIT_MS; rc == LOOM_ESTATE && loom__now_ms() < until;) {
        usleep(50000);
        rc = claim_change(name, &d);
    }
    if (rc) {
        loom__snprintf(err, errlen, rc == LOOM_ESTATE ? "deployment '%s' is changing already; retry"
                                                      : "no deployment named '%s'", name);
        return rc;
    }
    pthread_mutex_lock(&deploy_lock);
    int n = d->nreplicas;
    pthread_mutex_unlock(&deploy_lock);
    replica *made[MAX_REPLICAS];
    char *meta = NULL;
    rc = start_replicas(c, d, d->model, version, n, READY_WAIT_MS, made, &meta, err, errlen);
    if (!rc) {
        /* the switch: new requests go to the new replicas; the old ones
           finish their calls out of rotation and end (tick) */
        pthread_mutex_lock(&deploy_lock);
        while (d->nreplicas > 0) retire_locked(d, d->nreplicas - 1);
        memcpy(d->r, made, (size_t)n * sizeof(made[0]));
        d->nreplicas = n;
        free(d->metadata);
        d->metadata = meta;
        d->version = version;
        d->public_ = public_;
        pthread_mutex_unlock(&deploy_lock);
    }
    release_change(d);
    return rc;
}

int gw_deploy_delete(loom_client *c, const char *name)
{
    pthread_mutex_lock(&deploy_lock);
    deployment *d = find_locked(name);
    int ok = d && !d->deleting && !d->starting;
    if (ok) {
        d->deleting = 1;   /* no new request reaches it */
        while (d->nreplicas > 0) retire_locked(d, d->nreplicas - 1);
        if (d->open) {
            d->open->closed = 1;
            pthread_cond_broadcast(&d->open->cv);
        }
    }
    pthread_mutex_unlock(&deploy_lock);
    if (!ok) return LOOM_ENOTFOUND;
    /* its requests finish (each is bounded by PREDICT_WAIT_MS), then the
       replicas end */
    for (int guard = 0; guard < 2 * PREDICT_WAIT_MS / 100; guard++) {
        pthread_mutex_lock(&deploy_lock);
        int busy = d->waiting > 0 || d->changing;
        pthread_mutex_unlock(&deploy_lock);
        if (!busy) break;
        usleep(100000);
    }
    pthread_mutex_lock(&deploy_lock);
    remove_locked(d);
    pthread_mutex_unlock(&deploy_lock);
    for (int i = 0; i < d->nretired; i++) loom_actor_kill(c, d->retired[i]->actor);
    deployment_free(d);
    return LOOM_OK;
}

/* ---- inspection ---------------------------------------------------------------------------------- */

static json_t *deployment_json(const deployment *d)
{
    json_t *inflight = json_array();
    for (int i = 0; i < d->nreplicas; i++) json_array_append_new(inflight, json_integer(d->r[i]->inflight));
    return json_pack("{s:s,s:s,s:i,s:i,s:i,s:i,s:o,s:i,s:i,s:i,s:s,s:s,s:b}", "name", d->name, "model", d->model,
                     "version", d->version, "replicas", d->nreplicas, "min_replicas", d->min_replicas,
                     "max_replicas", d->max_replicas, "inflight", inflight, "queued", d->waiting, "max_batch_size",
                     d->max_batch, "max_wait_ms", d->max_wait_ms, "state",
                     d->starting ? "starting" : d->deleting ? "deleting" : d->changing ? "changing" : "ready",
                     "owner", d->owner, "public", d->public_);
}

json_t *gw_deploy_list(void)
{
    json_t *out = json_array();
    pthread_mutex_lock(&deploy_lock);
    for (int i = 0; i < MAX_DEPLOYMENTS; i++)
        if (table[i] && !table[i]->deleting) json_array_append_new(out, deployment_json(table[i]));
    pthread_mutex_unlock(&deploy_lock);
    return out;
}

json_t *gw_deploy_info(const char *name)
{
    pthread_mutex_lock(&deploy_lock);
    deployment *d = find_locked(name);
    json_t *out = d && !d->deleting ? deployment_json(d) : NULL;
    pthread_mutex_unlock(&deploy_lock);
    return out;
}

int gw_deploy_count_owned(const char *owner, int *replicas)
{
    int n = 0, r = 0;
    pthread_mutex_lock(&deploy_lock);
    for (int i = 0; i < MAX_DEPLOYMENTS; i++)
        if (table[i] && !table[i]->deleting && !strcmp(table[i]->owner, owner)) {
            n++;
            r += table[i]->max_replicas;
        }
    pthread_mutex_unlock(&deploy_lock);
    if (replicas) *replicas = r;
    return n;
}

int gw_deploy_access(const char *name, char *owner, size_t cap, int *public_)
{
    pthread_mutex_lock(&deploy_lock);
    deployment *d = find_locked(name);
    if (d) {
        loom__snprintf(owner, cap, "%s", d->owner);
        *public_ = d->public_;
    }
    pthread_mutex_unlock(&deploy_lock);
    return d ? LOOM_OK : LOOM_ENOTFOUND;
}

int gw_deploy_serving(const char *name, int version)
{
    pthread_mutex_lock(&deploy_lock);
    int ok = serving(find_locked(name), version);
    pthread_mutex_unlock(&deploy_lock);
    return ok;
}

json_t *gw_deploy_metadata(const char *name, int version, int *ver)
{
    pthread_mutex_lock(&deploy_lock);
    deployment *d = find_locked(name);
    json_t *meta = serving(d, version) ? json_loads(d->metadata, 0, NULL) : NULL;
    if (meta) *ver = d->version;
    pthread_mutex_unlock(&deploy_lock);
    return meta;
}

/* ---- batching --------------------------------------------------------------------------------------- */

/* A batch for rows like t's (NULL: a request sent alone). */
static batch *batch_new(const loom_tensor *t)
{
    batch *b = calloc(1, sizeof(*b));
    if (!b) return NULL;
    b->refs = 1;
    pthread_cond_init(&b->cv, NULL);
    if (!t) return b;
    memcpy(b->name, t->name, sizeof(b->name));
    b->dtype = t->dtype;
    b->ndim = t->ndim;
    memcpy(b->shape, t->shape, sizeof(b->shape));
    b->shape[0] = 0;
    b->row_bytes = t->shape[0] ? t->nbytes / (size_t)t->shape[0] : 0;
    return b;
}

static void batch_unref_locked(batch *b)
{
    if (--b->refs > 0) return;
    pthread_cond_destroy(&b->cv);
    free(b->data);
    free(b->result);
    free(b);
}

/* t's rows fit b: same name, dtype and inner shape. */
static int batch_fits(const batch *b, const loom_tensor *t, int max_rows)
{
    if (b->closed || b->dtype != t->dtype || b->ndim != t->ndim || strcmp(b->name, t->name)) return 0;
    for (int i = 1; i < t->ndim; i++)
        if (b->shape[i] != t->shape[i]) return 0;
    return b->shape[0] + t->shape[0] <= max_rows;
}

static int batch_append(batch *b, const loom_tensor *t)
{
    size_t need = (size_t)(b->shape[0] + t->shape[0]) * b->row_bytes;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < need) cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) return LOOM_ENOMEM;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + (size_t)b->shape[0] * b->row_bytes, t->data, t->nbytes);
    b->shape[0] += t->shape[0];
    return LOOM_OK;
}

static void batch_close_locked(deployment *d, batch *b)
{
    b->closed = 1;
    if (d->open == b) d->open = NULL;
}

/* The leader's wait: until the batch is full (closed by a member), a replica
 * is idle, or max_wait_ms passed. */
static void lead_wait_locked(deployment *d, batch *b)
{
    if (has_idle_locked(d) || d->max_wait_ms == 0) return;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    int64_t ns = until.tv_nsec + (int64_t)d->max_wait_ms * 1000000;
    until.tv_sec += (time_t)(ns / 1000000000);
    until.tv_nsec = (long)(ns % 1000000000);
    while (!b->closed && !has_idle_locked(d))
        if (pthread_cond_timedwait(&b->cv, &deploy_lock, &until) != 0) break;
}

/* Calls replica r with the encoded request; the answer into b (malloc'd copy). */
static int call_replica(loom_client *c, replica *r, const void *req, size_t len, batch *b)
{
    loom_arg arg = loom_arg_value(req, len);
    loom_ref out;
    loom_value *v = NULL;
    int rc = loom_actor_call(c, r->actor, "predict", &arg, 1, &out);
    if (rc) return rc;
    rc = loom_get(c, out, PREDICT_WAIT_MS, &v);
    if (!rc) {
        b->result = malloc(loom_value_size(v) ? loom_value_size(v) : 1);
        if (b->result) memcpy(b->result, loom_value_data(v), loom_value_size(v));
        b->result_len = loom_value_size(v);
        if (!b->result) rc = LOOM_ENOMEM;
    }
    loom_value_release(&v);
    loom_release(c, out);
    return rc;
}

/* The leader sends batch b (or, with solo set, the request's own tensors). */
static void lead(loom_client *c, deployment *d, batch *b, const loom_tensor *solo, int nsolo)
{
    replica *r = least_loaded_locked(d);
    if (r) r->inflight++;
    b->version = d->version;
    loom_tensor whole;
    int rc = r ? LOOM_OK : LOOM_ENOTFOUND;
    if (!rc && !solo)
        rc = loom_tensor_set(&whole, b->name, b->dtype, b->ndim, b->shape, b->data, b->err, sizeof(b->err));
    pthread_mutex_unlock(&deploy_lock);
    void *req = NULL;
    size_t len = 0;
    if (!rc)
        rc = solo ? loom_tensors_encode_alloc(solo, nsolo, &req, &len, b->err, sizeof(b->err))
                  : loom_tensors_encode_alloc(&whole, 1, &req, &len, b->err, sizeof(b->err));
    if (!rc) rc = call_replica(c, r, req, len, b);
    if (rc && rc != LOOM_EINVAL && !b->err[0]) loom__snprintf(b->err, sizeof(b->err), "%s", loom_last_error(c));
    free(req);
    pthread_mutex_lock(&deploy_lock);
    if (r) r->inflight--;
    b->rc = rc;
    b->done = 1;
    pthread_cond_broadcast(&b->cv);
    if (d->open) pthread_cond_signal(&d->open->cv);   /* a replica is free: its leader may go */
}

int gw_deploy_predict(loom_client *c, const char *name, int version, const loom_tensor *in, int nin,
                      gw_prediction *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    pthread_mutex_lock(&deploy_lock);
    deployment *d = find_locked(name);
    if (!serving(d, version)) {
        pthread_mutex_unlock(&deploy_lock);
        return LOOM_ENOTFOUND;
    }
    if (d->waiting >= d->max_queued) {
        pthread_mutex_unlock(&deploy_lock);
        loom__snprintf(err, errlen, "deployment '%s' has %d requests queued (max_queued); retry later", name,
                       d->max_queued);
        return LOOM_EFULL;
    }
    d->waiting++;
    d->last_load_ms = loom__now_ms();
    int batched = nin == 1 && in[0].ndim >= 1 && in[0].shape[0] > 0 && d->max_batch > 1;
    batch *b = batched && d->open && batch_fits(d->open, &in[0], d->max_batch) ? d->open : NULL;
    int leader = !b, rc = LOOM_OK;
    if (b) {
        b->refs++;
        p->row_off = b->shape[0];
        rc = batch_append(b, &in[0]);
        if (b->shape[0] >= d->max_batch) {
            batch_close_locked(d, b);
            pthread_cond_broadcast(&b->cv);
        }
    } else {
        if (batched && d->open) {   /* another shape, or full: let it go now */
            batch *o = d->open;
            batch_close_locked(d, o);
            pthread_cond_broadcast(&o->cv);
        }
        b = batch_new(batched ? &in[0] : NULL);
        rc = b ? (batched ? batch_append(b, &in[0]) : LOOM_OK) : LOOM_ENOMEM;
        if (b && batched && b->shape[0] < d->max_batch) d->open = b;
        else if (b) b->closed = 1;
    }
    if (!rc && leader) {
        lead_wait_locked(d, b);
        batch_close_locked(d, b);
        lead(c, d, b, batched ? NULL : in, nin);   /* unlocks for the call */
    } else if (!rc) {
        while (!b->done)   /* the leader's call is bounded by PREDICT_WAIT_MS */
            pthread_cond_wait(&b->cv, &deploy_lock);
    }
    if (!rc) rc = b->rc;
    if (!rc) {
        p->out = malloc(b->result_len ? b->result_len : 1);
        if (p->out) memcpy(p->out, b->result, b->result_len);
        else rc = LOOM_ENOMEM;
        p->len = b->result_len;
        p->rows = batched ? in[0].shape[0] : 0;
        p->batch_rows = batched ? b->shape[0] : 0;
        p->version = b->version;
    }
    if (rc) loom__snprintf(err, errlen, "%s", b && b->err[0] ? b->err : loom_strerror(rc));
    if (b) batch_unref_locked(b);
    d->waiting--;
    pthread_mutex_unlock(&deploy_lock);
    return rc;
}

/* ---- periodic work ------------------------------------------------------------------------------------ */

/* Kills retired replicas that finished their calls. */
static void end_retired(loom_client *c)
{
    loom_actor dead[MAX_RETIRED];
    int n = 0;
    pthread_mutex_lock(&deploy_lock);
    for (int i = 0; i < MAX_DEPLOYMENTS; i++) {
        deployment *d = table[i];
        for (int k = 0; d && !d->deleting && k < d->nretired;) {
            if (d->retired[k]->inflight || n == MAX_RETIRED) {
                k++;
                continue;
            }
            dead[n++] = d->retired[k]->actor;
            free(d->retired[k]);
            d->retired[k] = d->retired[--d->nretired];
        }
    }
    pthread_mutex_unlock(&deploy_lock);
    for (int i = 0; i < n; i++) loom_actor_kill(c, dead[i]);
}

/* One scaling step for the first deployment that needs one: +1 replica when
 * the requests per replica exceed the target, -1 after SCALE_DOWN_IDLE_MS
 * without any. */
static void autoscale(loom_client *c)
{
    deployment *d = NULL;
    int up = 0;
    pthread_mutex_lock(&deploy_lock);
    int64_t now = loom__now_ms();
    for (int i = 0; i < MAX_DEPLOYMENTS && !d; i++) {
        deployment *x = table[i];
        if (!x || !serving(x, 0) || x->changing) continue;
        if (x->waiting > 0) x->last_load_ms = now;
        if (x->nreplicas < x->max_replicas && x->waiting > x->target_load * x->nreplicas &&
            now >= x->no_scale_until_ms) {
            up = 1;
            d = x;
        } else if (x->nreplicas > x->min_replicas && now - x->last_load_ms > SCALE_DOWN_IDLE_MS) d = x;
    }
    if (d) d->changing = 1;
    if (d && !up) {
        retire_locked(d, d->nreplicas - 1);
        d->last_load_ms = now;   /* one step per idle period */
    }
    pthread_mutex_unlock(&deploy_lock);
    if (!d || !up) {
        if (d) release_change(d);
        return;
    }
    replica *made[1];
    char err[256];
    int rc = start_replicas(c, d, d->model, d->version, 1, SCALE_UP_WAIT_MS, made, NULL, err, sizeof(err));
    pthread_mutex_lock(&deploy_lock);
    if (rc) {
        LOG_WARN("deployment %s: no replica added (next try in %d s): %s", d->name, SCALE_UP_BACKOFF_MS / 1000, err);
        d->no_scale_until_ms = loom__now_ms() + SCALE_UP_BACKOFF_MS;
    }
    else if (d->nreplicas < MAX_REPLICAS) d->r[d->nreplicas++] = made[0];
    else retire_locked(d, 0);
    pthread_mutex_unlock(&deploy_lock);
    release_change(d);
}

static void gauges(loom_metrics *m)
{
    pthread_mutex_lock(&deploy_lock);
    for (int i = 0; i < MAX_DEPLOYMENTS; i++) {
        deployment *d = table[i];
        if (!d || d->deleting) continue;
        char labels[200];
        loom_metrics_labels(labels, sizeof(labels), "deployment", d->name, NULL);
        loom_metrics_gauge_set(m, "loom_serve_replicas", "replicas of a deployment", labels, d->nreplicas);
        loom_metrics_gauge_set(m, "loom_serve_queue_depth", "requests queued or running in a deployment", labels,
                               d->waiting);
    }
    pthread_mutex_unlock(&deploy_lock);
}

void gw_deploy_tick(loom_client *c, loom_metrics *m)
{
    end_retired(c);
    autoscale(c);
    gauges(m);
}

void gw_deploy_observe_batch(loom_metrics *m, const char *name, int64_t rows)
{
    char labels[200];
    loom_metrics_labels(labels, sizeof(labels), "deployment", name, NULL);
    loom_metrics_histogram_observe(m, "loom_serve_batch_rows", "rows per batch sent to a replica", labels,
                                   batch_buckets, (int)(sizeof(batch_buckets) / sizeof(batch_buckets[0])),
                                   (double)rows);
}

void gw_deploy_free(void)
{
    pthread_mutex_lock(&deploy_lock);
    for (int i = 0; i < MAX_DEPLOYMENTS; i++) {
        deployment_free(table[i]);
        table[i] = NULL;
    }
    pthread_mutex_unlock(&deploy_lock);
}
