/* gateway/kserve.c — deployments of registered models and the KServe v2 /
 * Open Inference Protocol REST routes that call them.
 *
 * A deployment is a set of replica actors of a model runtime's `Model` class
 * (serve/README.md: init with the artifact, predict on a tensor container,
 * metadata), each loaded once with the registry's artifact.  An inference
 * request's JSON tensors become one LTN1 container, sent to the replica with
 * the fewest calls in flight; the answer goes back as JSON tensors.
 *
 * The deployment table lives in this process (one gateway per head) under
 * one lock; the actors are detached, so a worker's reconnection does not end
 * them.  Not yet here: dynamic batching, autoscaling, rollout of a new version
 * and keeping deployments across a head restart. */
#include "gateway/gateway_internal.h"

#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/util.h"
#include "serve/serve_internal.h"
#include "serve/tensor.h"

#define NAME_LEN 128
#define MAX_REPLICAS 64
#define MAX_DEPLOYMENTS 256
#define READY_WAIT_MS 60000
#define PREDICT_WAIT_MS 60000
#define RUNTIME_LIB "libloom_mlp.so"
#define RUNTIME_CLASS "Model"

typedef struct replica {
    loom_actor actor;
    int inflight;
} replica;

typedef struct deployment {
    char name[NAME_LEN + 1], model[NAME_LEN + 1];
    int version;
    replica r[MAX_REPLICAS];
    int nreplicas;
    char *metadata;            /* the runtime's model metadata (JSON text) */
    int deleting;
} deployment;

static pthread_mutex_t deploy_lock = PTHREAD_MUTEX_INITIALIZER;
static deployment *deployments[MAX_DEPLOYMENTS];

/* ---- the deployment table (under deploy_lock) ----------------------------------- */

static deployment *find_locked(const char *name)
{
    for (int i = 0; i < MAX_DEPLOYMENTS; i++)
        if (deployments[i] && !strcmp(deployments[i]->name, name)) return deployments[i];
    return NULL;
}

static int insert_locked(deployment *d)
{
    if (find_locked(d->name)) return LOOM_ESTATE;
    for (int i = 0; i < MAX_DEPLOYMENTS; i++)
        if (!deployments[i]) {
            deployments[i] = d;
            return LOOM_OK;
        }
    return LOOM_EFULL;
}

static void remove_locked(deployment *d)
{
    for (int i = 0; i < MAX_DEPLOYMENTS; i++)
        if (deployments[i] == d) deployments[i] = NULL;
}

static void deployment_free(deployment *d)
{
    if (!d) return;
    free(d->metadata);
    free(d);
}

/* The replica with the fewest calls in flight, counted in; -1 if d is gone. */
static int take_replica(const char *name, int version, loom_actor *out, deployment **dp)
{
    pthread_mutex_lock(&deploy_lock);
    deployment *d = find_locked(name);
    int best = -1;
    if (d && !d->deleting && (version == 0 || version == d->version))
        for (int i = 0; i < d->nreplicas; i++)
            if (best < 0 || d->r[i].inflight < d->r[best].inflight) best = i;
    if (best >= 0) {
        d->r[best].inflight++;
        *out = d->r[best].actor;
        *dp = d;
    }
    pthread_mutex_unlock(&deploy_lock);
    return best;
}

static void give_replica(deployment *d, int i)
{
    pthread_mutex_lock(&deploy_lock);
    d->r[i].inflight--;
    pthread_mutex_unlock(&deploy_lock);
}

void gw_serving_free(void)
{
    pthread_mutex_lock(&deploy_lock);
    for (int i = 0; i < MAX_DEPLOYMENTS; i++) {
        deployment_free(deployments[i]);
        deployments[i] = NULL;
    }
    pthread_mutex_unlock(&deploy_lock);
}

/* ---- deploying ---------------------------------------------------------------------- */

/* The model runtime library: beside libloom, in the build's or install's lib/. */
static int runtime_lib(loom_client *c, loom_ref *lib)
{
    char bin[PATH_MAX], path[PATH_MAX + 64];
    loom_snprintf(bin, sizeof(bin), "%s", loom_binary_path());
    loom_snprintf(path, sizeof(path), "%s/../lib/%s", dirname(bin), RUNTIME_LIB);
    return loom_library_load(c, path, lib);
}

typedef struct deploy_spec {
    const char *name, *model;
    int version, replicas;
    double num_cpus, num_gpus;
    json_t *params;
} deploy_spec;

static int parse_spec(json_t *body, deploy_spec *s, char *err, size_t errlen)
{
    json_t *nm = json_object_get(body, "name"), *md = json_object_get(body, "model");
    s->model = json_string_value(md);
    s->name = nm ? json_string_value(nm) : s->model;
    s->version = (int)json_integer_value(json_object_get(body, "version"));
    json_t *rp = json_object_get(body, "replicas");
    s->replicas = rp ? (int)json_integer_value(rp) : 1;
    json_t *cpu = json_object_get(body, "num_cpus"), *gpu = json_object_get(body, "num_gpus");
    s->num_cpus = cpu ? json_number_value(cpu) : 1;
    s->num_gpus = gpu ? json_number_value(gpu) : 0;
    s->params = json_object_get(body, "params");
    const char *why = !s->model ? "\"model\" (a registered model's name) is required"
                    : !s->name || !s->name[0] || strlen(s->name) > NAME_LEN || strchr(s->name, '/')
                        ? "\"name\" must be 1-128 characters without '/'"
                    : s->version < 0 ? "\"version\" must be a version number (0 or absent: the newest)"
                    : s->replicas < 1 || s->replicas > MAX_REPLICAS ? "\"replicas\" must be 1-64"
                    : s->num_cpus < 0 || s->num_gpus < 0 ? "resources must not be negative"
                    : s->params && !json_is_object(s->params) ? "\"params\" must be a JSON object"
                    : NULL;
    if (why) loom_snprintf(err, errlen, "%s", why);
    return why ? LOOM_EINVAL : LOOM_OK;
}

/* Creates the replicas of d from the artifact and waits for their init; the
 * first replica's metadata becomes d's. */
static int start_replicas(loom_client *c, deployment *d, const deploy_spec *s, const char *artifact, size_t len,
                          char *err, size_t errlen)
{
    loom_ref lib, art;
    int rc = runtime_lib(c, &lib);
    if (rc) {
        loom_snprintf(err, errlen, "cannot load the model runtime %s: %s", RUNTIME_LIB, loom_last_error(c));
        return rc;
    }
    rc = loom_put(c, artifact, len, &art);
    if (rc) {
        loom_snprintf(err, errlen, "cannot put the artifact: %s", loom_last_error(c));
        return rc;
    }
    json_t *p = s->params ? json_deep_copy(s->params) : json_object();
    json_object_set_new(p, "name", json_string(d->name));
    char vbuf[16];
    loom_snprintf(vbuf, sizeof(vbuf), "%d", d->version);
    json_object_set_new(p, "version", json_string(vbuf));
    char *ptext = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    loom_arg args[2] = {loom_arg_ref(art), loom_arg_value(ptext ? ptext : "{}", ptext ? strlen(ptext) : 2)};
    loom_actor_opts ao = {.detached = 1, .res = {.num_cpus = s->num_cpus, .num_gpus = s->num_gpus}};
    for (int i = 0; !rc && i < s->replicas; i++) {
        rc = loom_actor_create(c, lib, RUNTIME_CLASS, args, 2, &ao, &d->r[i].actor);
        if (!rc) d->nreplicas++;
    }
    for (int i = 0; !rc && i < d->nreplicas; i++) rc = loom_actor_wait_ready(c, d->r[i].actor, READY_WAIT_MS);
    if (rc) loom_snprintf(err, errlen, "a replica did not start: %s", loom_last_error(c));
    free(ptext);
    loom_release(c, art);
    if (rc) return rc;
    loom_ref mref;
    loom_value *v = NULL;
    rc = loom_actor_call(c, d->r[0].actor, "metadata", NULL, 0, &mref);
    if (!rc) rc = loom_get(c, mref, READY_WAIT_MS, &v);
    if (!rc) d->metadata = strndup(loom_value_data(v), loom_value_size(v));
    if (rc) loom_snprintf(err, errlen, "the runtime's metadata call failed: %s", loom_last_error(c));
    loom_value_release(&v);
    loom_release(c, mref);
    return rc ? rc : d->metadata ? LOOM_OK : LOOM_ENOMEM;
}

static void kill_replicas(loom_client *c, deployment *d)
{
    for (int i = 0; i < d->nreplicas; i++) loom_actor_kill(c, d->r[i].actor);
}

static json_t *deployment_json(const deployment *d)
{
    json_t *inflight = json_array();
    for (int i = 0; i < d->nreplicas; i++) json_array_append_new(inflight, json_integer(d->r[i].inflight));
    return json_pack("{s:s,s:s,s:i,s:i,s:o}", "name", d->name, "model", d->model, "version", d->version,
                     "replicas", d->nreplicas, "inflight", inflight);
}

static void deploy(gw_worker *w, const loom_http_request *req, loom_http_reply *rep)
{
    loom_client *c = gw_client(w, rep);
    if (!c) return;
    char err[512] = "";
    json_t *body = json_loadb(req->body, req->body_len, 0, NULL), *meta = NULL;
    deploy_spec s;
    int rc = body ? parse_spec(body, &s, err, sizeof(err)) : LOOM_EINVAL;
    if (!body) loom_snprintf(err, sizeof(err), "the body must be a JSON object");
    char *artifact = NULL;
    size_t len = 0;
    if (!rc) {
        rc = gw_registry_fetch(c, s.model, s.version, &meta, &artifact, &len);
        if (rc == LOOM_ENOTFOUND) loom_snprintf(err, sizeof(err), "no model '%s' version %d in the registry",
                                                s.model, s.version);
    }
    deployment *d = rc ? NULL : calloc(1, sizeof(*d));
    if (!rc && !d) rc = LOOM_ENOMEM;
    if (d) {
        loom_snprintf(d->name, sizeof(d->name), "%s", s.name);
        loom_snprintf(d->model, sizeof(d->model), "%s", s.model);
        d->version = (int)json_integer_value(json_object_get(meta, "version"));
        d->deleting = 1;   /* not routed to until its replicas are up */
        pthread_mutex_lock(&deploy_lock);
        rc = insert_locked(d);
        pthread_mutex_unlock(&deploy_lock);
        if (rc) {
            if (rc == LOOM_ESTATE) loom_snprintf(err, sizeof(err), "a deployment named '%s' exists", s.name);
            else loom_snprintf(err, sizeof(err), "too many deployments (%d)", MAX_DEPLOYMENTS);
            deployment_free(d);
            d = NULL;
        }
    }
    if (d) {
        rc = start_replicas(c, d, &s, artifact, len, err, sizeof(err));
        pthread_mutex_lock(&deploy_lock);
        if (rc) remove_locked(d);
        else d->deleting = 0;
        pthread_mutex_unlock(&deploy_lock);
        if (rc) {
            kill_replicas(c, d);
            deployment_free(d);
            d = NULL;
        }
    }
    free(artifact);
    json_decref(meta);
    json_decref(body);
    if (rc) {
        gw_client_check(w, rc);
        int status = rc == LOOM_ESTATE ? 409 : rc == LOOM_ENOTFOUND ? 404 : rc == LOOM_EINVAL ? 400 : gw_status_of(rc);
        gw_reply_error(rep, status, "%s", err[0] ? err : loom_strerror(rc));
        return;
    }
    pthread_mutex_lock(&deploy_lock);
    json_t *out = deployment_json(d);
    pthread_mutex_unlock(&deploy_lock);
    gw_reply_json(rep, 201, out);
}

static void list_deployments(loom_http_reply *rep)
{
    json_t *out = json_array();
    pthread_mutex_lock(&deploy_lock);
    for (int i = 0; i < MAX_DEPLOYMENTS; i++)
        if (deployments[i] && !deployments[i]->deleting) json_array_append_new(out, deployment_json(deployments[i]));
    pthread_mutex_unlock(&deploy_lock);
    gw_reply_json(rep, 200, json_pack("{s:o}", "deployments", out));
}

static void undeploy(gw_worker *w, const char *name, loom_http_reply *rep)
{
    loom_client *c = gw_client(w, rep);
    if (!c) return;
    pthread_mutex_lock(&deploy_lock);
    deployment *d = find_locked(name);
    int busy = d && d->deleting;
    if (d && !busy) d->deleting = 1;   /* new requests go nowhere */
    pthread_mutex_unlock(&deploy_lock);
    if (!d || busy) {
        gw_reply_error(rep, 404, "no deployment named '%s'", name);
        return;
    }
    kill_replicas(c, d);   /* calls still running fail with LOOM_EACTOR */
    for (int guard = 0; guard < 600; guard++) {   /* their workers give the replicas back */
        pthread_mutex_lock(&deploy_lock);
        int inflight = 0;
        for (int i = 0; i < d->nreplicas; i++) inflight += d->r[i].inflight;
        if (!inflight) remove_locked(d);
        pthread_mutex_unlock(&deploy_lock);
        if (!inflight) break;
        usleep(100000);
    }
    gw_reply_json(rep, 200, json_pack("{s:s,s:s}", "name", name, "status", "deleted"));
    pthread_mutex_lock(&deploy_lock);
    int still = 0;
    for (int i = 0; i < MAX_DEPLOYMENTS; i++) still |= deployments[i] == d;
    pthread_mutex_unlock(&deploy_lock);
    if (!still) deployment_free(d);
}

/* ---- KServe v2: JSON tensors <-> LTN1 ---------------------------------------------- */

/* Appends the numbers of a (possibly nested) JSON array to vals. */
static int flatten(json_t *a, double *vals, size_t cap, size_t *n, int depth)
{
    if (depth > LOOM_TENSOR_MAX_DIMS) return LOOM_EINVAL;
    size_t i;
    json_t *e;
    json_array_foreach(a, i, e) {
        if (json_is_array(e)) {
            if (flatten(e, vals, cap, n, depth + 1)) return LOOM_EINVAL;
        } else if (json_is_number(e) || json_is_boolean(e)) {
            if (*n >= cap) return LOOM_EINVAL;
            vals[(*n)++] = json_is_boolean(e) ? json_is_true(e) : json_number_value(e);
        } else {
            return LOOM_EINVAL;
        }
    }
    return LOOM_OK;
}

/* Stores v as element i of a dtype buffer. */
static void store_elem(loom_tensor_dtype dt, void *buf, size_t i, double v)
{
    switch (dt) {
    case LOOM_DTYPE_FP32: ((float *)buf)[i] = (float)v; break;
    case LOOM_DTYPE_FP64: ((double *)buf)[i] = v; break;
    case LOOM_DTYPE_INT32: ((int32_t *)buf)[i] = (int32_t)v; break;
    case LOOM_DTYPE_INT64: ((int64_t *)buf)[i] = (int64_t)v; break;
    case LOOM_DTYPE_UINT8: ((uint8_t *)buf)[i] = (uint8_t)v; break;
    default: ((uint8_t *)buf)[i] = v != 0; break;   /* BOOL */
    }
}

/* One KServe input tensor into t, its data malloc'd into *data. */
static int input_tensor(json_t *in, loom_tensor *t, void **data, char *err, size_t errlen)
{
    const char *name = json_string_value(json_object_get(in, "name"));
    const char *dtn = json_string_value(json_object_get(in, "datatype"));
    json_t *shape = json_object_get(in, "shape"), *values = json_object_get(in, "data");
    loom_tensor_dtype dt = dtn ? loom_tensor_dtype_from_name(dtn) : LOOM_DTYPE_INVALID;
    if (!name || !json_is_array(shape) || !json_is_array(values))
        return serve_fail(LOOM_EINVAL, err, errlen, "an input needs \"name\", \"shape\", \"datatype\" and \"data\"");
    if (dt != LOOM_DTYPE_FP32 && dt != LOOM_DTYPE_FP64 && dt != LOOM_DTYPE_INT32 && dt != LOOM_DTYPE_INT64 &&
        dt != LOOM_DTYPE_UINT8 && dt != LOOM_DTYPE_BOOL)
        return serve_fail(LOOM_EINVAL, err, errlen, "input '%s': datatype %s is not one of FP32, FP64, INT32, INT64, "
                               "UINT8, BOOL", name, dtn ? dtn : "(none)");
    int64_t dims[LOOM_TENSOR_MAX_DIMS];
    int ndim = (int)json_array_size(shape);
    if (ndim < 1 || ndim > LOOM_TENSOR_MAX_DIMS)
        return serve_fail(LOOM_EINVAL, err, errlen, "input '%s': shape must have 1-%d dims", name, LOOM_TENSOR_MAX_DIMS);
    for (int i = 0; i < ndim; i++) {
        json_t *d = json_array_get(shape, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return serve_fail(LOOM_EINVAL, err, errlen, "input '%s': shape must be non-negative integers", name);
        dims[i] = json_integer_value(d);
    }
    int64_t numel = 0;
    size_t nbytes = 0;
    if (loom_tensor_shape_size(dt, ndim, dims, &numel, &nbytes) || numel > (int64_t)1 << 26)
        return serve_fail(LOOM_EINVAL, err, errlen, "input '%s': shape too large", name);
    double *vals = malloc((size_t)(numel ? numel : 1) * sizeof(double));
    *data = malloc(nbytes ? nbytes : 1);
    size_t n = 0;
    int rc = vals && *data ? flatten(values, vals, (size_t)numel, &n, 0) : LOOM_ENOMEM;
    if (!rc && n != (size_t)numel) rc = LOOM_EINVAL;
    for (size_t i = 0; !rc && i < n; i++) store_elem(dt, *data, i, vals[i]);
    free(vals);
    if (rc)
        return serve_fail(LOOM_EINVAL, err, errlen, "input '%s': data must be %lld numbers (shape), nested or flat", name,
                               (long long)numel);
    return loom_tensor_set(t, name, dt, ndim, dims, *data, err, errlen);
}

static json_t *output_json(const loom_tensor *t)
{
    json_t *shape = json_array(), *data = json_array();
    int64_t numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        json_array_append_new(shape, json_integer(t->shape[i]));
        numel *= t->shape[i];
    }
    int integral = t->dtype != LOOM_DTYPE_FP32 && t->dtype != LOOM_DTYPE_FP64 && t->dtype != LOOM_DTYPE_FP16 &&
                   t->dtype != LOOM_DTYPE_BF16;
    for (int64_t i = 0; i < numel; i++) {
        double v = loom_tensor_get_f64(t, (size_t)i);
        json_array_append_new(data, integral ? json_integer((json_int_t)v) : json_real(v));
    }
    return json_pack("{s:s,s:s,s:o,s:o}", "name", t->name, "datatype", loom_tensor_dtype_name(t->dtype), "shape",
                     shape, "data", data);
}

/* The request's inputs as one LTN1 container (malloc'd). */
static int encode_request(json_t *body, void **out, size_t *len, char *err, size_t errlen)
{
    json_t *inputs = json_object_get(body, "inputs");
    int n = (int)json_array_size(inputs);
    if (!json_is_array(inputs) || n < 1 || n > LOOM_TENSOR_MAX_COUNT)
        return serve_fail(LOOM_EINVAL, err, errlen, "\"inputs\" must be an array of 1-%d tensors", LOOM_TENSOR_MAX_COUNT);
    loom_tensor t[LOOM_TENSOR_MAX_COUNT];
    void *bufs[LOOM_TENSOR_MAX_COUNT] = {0};
    int rc = LOOM_OK;
    for (int i = 0; !rc && i < n; i++) rc = input_tensor(json_array_get(inputs, (size_t)i), &t[i], &bufs[i], err, errlen);
    if (!rc) rc = loom_tensors_encode_alloc(t, n, out, len, err, errlen);
    for (int i = 0; i < n; i++) free(bufs[i]);
    return rc;
}

/* The runtime's answer as KServe outputs (only those asked for, if any). */
static json_t *decode_response(const void *buf, size_t len, json_t *wanted, char *err, size_t errlen)
{
    loom_tensor t[LOOM_TENSOR_MAX_COUNT];
    int n = 0;
    if (loom_tensors_decode(buf, len, t, LOOM_TENSOR_MAX_COUNT, &n, err, errlen)) return NULL;
    json_t *outs = json_array();
    for (int i = 0; i < n; i++) {
        int want = !json_is_array(wanted) || json_array_size(wanted) == 0;
        size_t k;
        json_t *w;
        json_array_foreach(wanted, k, w) {
            const char *wn = json_string_value(json_object_get(w, "name"));
            want |= wn && !strcmp(wn, t[i].name);
        }
        if (want) json_array_append_new(outs, output_json(&t[i]));
    }
    return outs;
}

/* Is model deployed (at version, unless 0) and routed to? */
static int deployed(const char *model, int version)
{
    pthread_mutex_lock(&deploy_lock);
    deployment *d = find_locked(model);
    int ok = d && !d->deleting && (version == 0 || version == d->version);
    pthread_mutex_unlock(&deploy_lock);
    return ok;
}

static void infer(gw_worker *w, const char *model, int version, const loom_http_request *req, loom_http_reply *rep)
{
    if (!deployed(model, version)) {
        gw_reply_error(rep, 404, "model '%s'%s is not deployed", model, version ? " at that version" : "");
        return;
    }
    loom_client *c = gw_client(w, rep);
    if (!c) return;
    char err[512] = "";
    json_t *body = json_loadb(req->body, req->body_len, 0, NULL);
    void *enc = NULL;
    size_t enclen = 0;
    if (!json_is_object(body) || encode_request(body, &enc, &enclen, err, sizeof(err))) {
        gw_reply_error(rep, 400, "%s", err[0] ? err : "the body must be a JSON object with \"inputs\"");
        json_decref(body);
        return;
    }
    loom_actor a;
    deployment *d = NULL;
    int ri = take_replica(model, version, &a, &d);
    if (ri < 0) {
        gw_reply_error(rep, 404, "model '%s'%s is not deployed", model, version ? " at that version" : "");
        free(enc);
        json_decref(body);
        return;
    }
    int dver = d->version;
    loom_arg arg = loom_arg_value(enc, enclen);
    loom_ref out;
    loom_value *v = NULL;
    int rc = loom_actor_call(c, a, "predict", &arg, 1, &out);
    if (!rc) {
        rc = loom_get(c, out, PREDICT_WAIT_MS, &v);
        loom_release(c, out);
    }
    give_replica(d, ri);
    free(enc);
    json_t *outs = NULL;
    if (!rc) outs = decode_response(loom_value_data(v), loom_value_size(v), json_object_get(body, "outputs"), err,
                                    sizeof(err));
    loom_value_release(&v);
    if (rc || !outs) {
        gw_client_check(w, rc);
        gw_reply_error(rep, rc == LOOM_ETASK ? 400 : rc ? gw_status_of(rc) : 500, "%s",
                       rc ? loom_last_error(c) : err);
        json_decref(body);
        return;
    }
    char vbuf[16];
    loom_snprintf(vbuf, sizeof(vbuf), "%d", dver);
    json_t *id = json_object_get(body, "id");
    json_t *resp = json_pack("{s:s,s:s,s:o}", "model_name", model, "model_version", vbuf, "outputs", outs);
    if (json_is_string(id)) json_object_set(resp, "id", id);
    json_decref(body);
    gw_reply_json(rep, 200, resp);
}

/* GET /v2/models/{m}[/versions/{v}]: the runtime's metadata under the
 * deployment's name and version. */
static void model_metadata(const char *model, int version, int ready_only, loom_http_reply *rep)
{
    pthread_mutex_lock(&deploy_lock);
    deployment *d = find_locked(model);
    int ok = d && !d->deleting && (version == 0 || version == d->version);   /* deployed(), locked */
    json_t *meta = ok && !ready_only ? json_loads(d->metadata, 0, NULL) : NULL;
    int dver = ok ? d->version : 0;
    pthread_mutex_unlock(&deploy_lock);
    if (ready_only) {
        gw_reply_json(rep, ok ? 200 : 404, json_pack("{s:s,s:b}", "name", model, "ready", ok));
        return;
    }
    if (!ok || !meta) {
        json_decref(meta);
        gw_reply_error(rep, 404, "model '%s' is not deployed", model);
        return;
    }
    char vbuf[16];
    loom_snprintf(vbuf, sizeof(vbuf), "%d", dver);
    json_object_set_new(meta, "name", json_string(model));
    json_object_set_new(meta, "versions", json_pack("[s]", vbuf));
    gw_reply_json(rep, 200, meta);
}

/* ---- routes ------------------------------------------------------------------------- */

int gw_kserve_route(gw_worker *w, const loom_http_request *req, loom_http_reply *rep)
{
    const char *m = req->method, *rest = NULL;
    if (!strcmp(req->path, "/v1/deployments")) {
        if (!strcmp(m, "POST")) deploy(w, req, rep);
        else if (!strcmp(m, "GET")) list_deployments(rep);
        else gw_reply_error(rep, 405, "use GET or POST /v1/deployments");
        return 1;
    }
    char name[NAME_LEN + 2];
    if (!gw_path_segment(req->path, "/v1/deployments/", name, sizeof(name), &rest)) {
        if (!rest[0] && !strcmp(m, "DELETE")) undeploy(w, name, rep);
        else gw_reply_error(rep, 405, "use DELETE /v1/deployments/NAME");
        return 1;
    }
    if (!strcmp(req->path, "/v2") || !strcmp(req->path, "/v2/")) {
        gw_reply_json(rep, 200, json_pack("{s:s,s:s,s:[]}", "name", "loom", "version", "0.1.0", "extensions"));
        return 1;
    }
    if (gw_path_segment(req->path, "/v2/models/", name, sizeof(name), &rest)) return 0;
    int version = 0;
    if (!strncmp(rest, "/versions/", 10)) {
        char *end = NULL;
        long v = strtol(rest + 10, &end, 10);
        if (end == rest + 10 || v < 1 || v > 1000000000) {
            gw_reply_error(rep, 400, "a version is a positive integer");
            return 1;
        }
        version = (int)v;
        rest = end;
    }
    if (!rest[0] && !strcmp(m, "GET")) model_metadata(name, version, 0, rep);
    else if (!strcmp(rest, "/ready") && !strcmp(m, "GET")) model_metadata(name, version, 1, rep);
    else if (!strcmp(rest, "/infer") && !strcmp(m, "POST")) infer(w, name, version, req, rep);
    else gw_reply_error(rep, 405, "%s %s is not an inference route", m, req->path);
    return 1;
}
