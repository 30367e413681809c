/* gateway/kserve.c — the REST routes of serving: deployments
 * (/v1/deployments, on deploy.c) and the KServe v2 / Open Inference Protocol
 * (/v2/...): an inference request's JSON tensors become LTN1 tensors for
 * the model runtime (serve/README.md), and its answer — this request's rows
 * of a batch — goes back as JSON tensors.  Errors are {"error": "..."}. */
#include "gateway/gateway_internal.h"
#include "serve/registry_store.h"

#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/deploy.h"
#include "runtime/audit.h"
#include "runtime/util.h"
#include "base/errf.h"
#include "serve/tensor.h"

#define NAME_LEN GW_DEPLOY_NAME_MAX
#define MAX_USER_DEPLOYMENTS 8    /* deployments per user (admins: no limit) */
#define MAX_USER_REPLICAS 16      /* replicas per user, counted at max_replicas */

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
        return loom__errf(err, errlen, LOOM_EINVAL, "an input needs \"name\", \"shape\", \"datatype\" and \"data\"");
    if (dt != LOOM_DTYPE_FP32 && dt != LOOM_DTYPE_FP64 && dt != LOOM_DTYPE_INT32 && dt != LOOM_DTYPE_INT64 &&
        dt != LOOM_DTYPE_UINT8 && dt != LOOM_DTYPE_BOOL)
        return loom__errf(err, errlen, LOOM_EINVAL, "input '%s': datatype %s is not one of FP32, FP64, INT32, INT64, "
                          "UINT8, BOOL", name, dtn ? dtn : "(none)");
    int64_t dims[LOOM_TENSOR_MAX_DIMS];
    int ndim = (int)json_array_size(shape);
    if (ndim < 1 || ndim > LOOM_TENSOR_MAX_DIMS)
        return loom__errf(err, errlen, LOOM_EINVAL, "input '%s': shape must have 1-%d dims", name,
                          LOOM_TENSOR_MAX_DIMS);
    for (int i = 0; i < ndim; i++) {
        json_t *d = json_array_get(shape, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return loom__errf(err, errlen, LOOM_EINVAL, "input '%s': shape must be non-negative integers", name);
        dims[i] = json_integer_value(d);
    }
    int64_t numel = 0;
    size_t nbytes = 0;
    if (loom_tensor_shape_size(dt, ndim, dims, &numel, &nbytes) || numel > (int64_t)1 << 26)
        return loom__errf(err, errlen, LOOM_EINVAL, "input '%s': shape too large", name);
    double *vals = malloc((size_t)(numel ? numel : 1) * sizeof(double));
    *data = malloc(nbytes ? nbytes : 1);
    size_t n = 0;
    int rc = vals && *data ? flatten(values, vals, (size_t)numel, &n, 0) : LOOM_ENOMEM;
    if (!rc && n != (size_t)numel) rc = LOOM_EINVAL;
    for (size_t i = 0; !rc && i < n; i++) store_elem(dt, *data, i, vals[i]);
    free(vals);
    if (rc)
        return loom__errf(err, errlen, LOOM_EINVAL, "input '%s': data must be %lld numbers (shape), nested or flat",
                          name, (long long)numel);
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

/* The request's input tensors into t[] (*n of them), their data malloc'd
 * into bufs[] (the caller frees them). */
static int request_tensors(json_t *body, loom_tensor *t, void **bufs, int *n, char *err, size_t errlen)
{
    json_t *inputs = json_object_get(body, "inputs");
    *n = (int)json_array_size(inputs);
    if (!json_is_array(inputs) || *n < 1 || *n > LOOM_TENSOR_MAX_COUNT)
        return loom__errf(err, errlen, LOOM_EINVAL, "\"inputs\" must be an array of 1-%d tensors",
                          LOOM_TENSOR_MAX_COUNT);
    int rc = LOOM_OK;
    for (int i = 0; !rc && i < *n; i++)
        rc = input_tensor(json_array_get(inputs, (size_t)i), &t[i], &bufs[i], err, errlen);
    return rc;
}

/* Rows [off, off + rows) of t (all of t when rows is 0 or t is not a batch
 * of batch_rows rows). */
static loom_tensor slice_rows(const loom_tensor *t, int64_t off, int64_t rows, int64_t batch_rows)
{
    loom_tensor s = *t;
    if (rows <= 0 || t->ndim < 1 || t->shape[0] != batch_rows || batch_rows <= 0) return s;
    size_t row_bytes = t->nbytes / (size_t)batch_rows;
    s.shape[0] = rows;
    s.data = (const char *)t->data + (size_t)off * row_bytes;
    s.nbytes = (size_t)rows * row_bytes;
    return s;
}

/* This request's part of the runtime's answer as KServe outputs (only those
 * asked for, if any). */
static json_t *response_outputs(const gw_prediction *p, json_t *wanted, char *err, size_t errlen)
{
    loom_tensor t[LOOM_TENSOR_MAX_COUNT];
    int n = 0;
    if (loom_tensors_decode(p->out, p->len, t, LOOM_TENSOR_MAX_COUNT, &n, err, errlen)) return NULL;
    json_t *outs = json_array();
    for (int i = 0; i < n; i++) {
        int want = !json_is_array(wanted) || json_array_size(wanted) == 0;
        size_t k;
        json_t *w;
        json_array_foreach(wanted, k, w) {
            const char *wn = json_string_value(json_object_get(w, "name"));
            want |= wn && !strcmp(wn, t[i].name);
        }
        if (!want) continue;
        loom_tensor part = slice_rows(&t[i], p->row_off, p->rows, p->batch_rows);
        json_array_append_new(outs, output_json(&part));
    }
    return outs;
}

static void observe(gw_worker *w, const char *model, int code, double seconds)
{
    loom_metrics *m = gw_metrics(w->gw);
    char labels[256];
    char cbuf[8];
    loom__snprintf(cbuf, sizeof(cbuf), "%d", code);
    loom_metrics_labels(labels, sizeof(labels), "model", model, "code", cbuf, NULL);
    loom_metrics_counter_add(m, "loom_serve_requests_total", "inference requests by model and status", labels, 1);
    loom_metrics_labels(labels, sizeof(labels), "model", model, NULL);
    loom_metrics_histogram_observe(m, "loom_serve_request_seconds", "inference latency in the gateway", labels,
                                   NULL, 0, seconds);
}

static void infer(gw_worker *w, const char *model, int version, const loom_http_request *req, loom_http_reply *rep)
{
    int64_t t0 = loom__now_us();
    if (!gw_deploy_serving(model, version)) {   /* 404 before the body is read */
        gw_reply_error(rep, 404, "model '%s'%s is not deployed", model, version ? " at that version" : "");
        return;
    }
    loom_client *c = gw_client(w, rep);
    if (!c) return;
    char err[512] = "";
    json_t *body = json_loadb(req->body, req->body_len, 0, NULL);
    loom_tensor t[LOOM_TENSOR_MAX_COUNT];
    void *bufs[LOOM_TENSOR_MAX_COUNT] = {0};
    int n = 0, status = 200;
    int rc = json_is_object(body) ? request_tensors(body, t, bufs, &n, err, sizeof(err)) : LOOM_EINVAL;
    if (!json_is_object(body)) loom__snprintf(err, sizeof(err), "the body must be a JSON object with \"inputs\"");
    gw_prediction p = {0};
    if (!rc) {
        rc = gw_deploy_predict(c, model, version, t, n, &p, err, sizeof(err));
        if (rc == LOOM_ENOTFOUND)
            loom__snprintf(err, sizeof(err), "model '%s'%s is not deployed", model, version ? " at that version" : "");
        if (!rc && p.row_off == 0) gw_deploy_observe_batch(gw_metrics(w->gw), model, p.batch_rows ? p.batch_rows : 1);
    }
    for (int i = 0; i < n; i++) free(bufs[i]);
    json_t *outs = rc ? NULL : response_outputs(&p, json_object_get(body, "outputs"), err, sizeof(err));
    free(p.out);
    if (rc || !outs) {
        gw_client_check(w, rc);
        status = rc == LOOM_EINVAL || rc == LOOM_ETASK ? 400 : rc == LOOM_ENOTFOUND ? 404 : rc == LOOM_EFULL ? 503
               : rc ? gw_status_of(rc) : 500;
        gw_reply_error(rep, status, "%s", err);   /* 503 comes with Retry-After */
    } else {
        char vbuf[16];
        loom__snprintf(vbuf, sizeof(vbuf), "%d", p.version);
        json_t *id = json_object_get(body, "id");
        json_t *resp = json_pack("{s:s,s:s,s:o}", "model_name", model, "model_version", vbuf, "outputs", outs);
        if (json_is_string(id)) json_object_set(resp, "id", id);
        gw_reply_json(rep, 200, resp);
    }
    json_decref(body);
    observe(w, model, status, (double)(loom__now_us() - t0) / 1e6);
}

/* GET /v2/models/{m}[/versions/{v}][/ready]: the runtime's metadata under the
 * deployment's name and version, or whether it is ready. */
static void model_metadata(const char *model, int version, int ready_only, loom_http_reply *rep)
{
    int ver = 0;
    json_t *meta = gw_deploy_metadata(model, version, &ver);
    if (ready_only) {
        gw_reply_json(rep, meta ? 200 : 404, json_pack("{s:s,s:b}", "name", model, "ready", meta != NULL));
        json_decref(meta);
        return;
    }
    if (!meta) {
        gw_reply_error(rep, 404, "model '%s'%s is not deployed", model, version ? " at that version" : "");
        return;
    }
    char vbuf[16];
    loom__snprintf(vbuf, sizeof(vbuf), "%d", ver);
    json_object_set_new(meta, "name", json_string(model));
    json_object_set_new(meta, "versions", json_pack("[s]", vbuf));
    gw_reply_json(rep, 200, meta);
}

/* ---- tenancy ------------------------------------------------------------------------------ */

/* May w use deployment name (write: change or delete it)?  1, or 0 with a 403
 * sent; an unknown name passes (its route answers 404). */
static int deployment_allowed(gw_worker *w, const char *name, int write, loom_http_reply *rep)
{
    char owner[GW_USER_MAX];
    int public_ = 0;
    if (gw_deploy_access(name, owner, sizeof(owner), &public_)) return 1;
    if (write ? gw_may_write(w, owner) : gw_may_read(w, owner, public_)) return 1;
    gw_reply_error(rep, 403, "deployment '%s' belongs to user %s", name, owner);
    return 0;
}

/* ---- /v1/deployments -------------------------------------------------------------------- */

static int deploy_status(int rc)
{
    return rc == LOOM_ESTATE ? 409 : rc == LOOM_ENOTFOUND ? 404 : rc == LOOM_EINVAL ? 400 : gw_status_of(rc);
}

/* Deployment names are scoped: a user's are "USER~NAME" (a name without
 * "~" is an admin's), so that nobody can take the name another user's
 * clients call.  Without a "name", a user's deployment of model M is
 * "USER~M".  0, or 403 with err. */
static int scoped_name(const gw_worker *w, gw_deploy_spec *s, char *buf, size_t cap, char *err, size_t errlen)
{
    if (w->admin) return 0;
    size_t n = strlen(w->user);
    if (s->name == s->model) {   /* no "name": the user's own name for the model */
        loom__snprintf(buf, cap, "%s~%s", w->user, s->model);
        s->name = buf;
        if (strlen(buf) <= GW_DEPLOY_NAME_MAX) return 0;
    }
    if (strncmp(s->name, w->user, n) != 0 || s->name[n] != '~' || !s->name[n + 1]) {
        loom__snprintf(err, errlen, "user %s's deployments are named '%s~NAME' (names without '~' are the "
                                    "admins')", w->user, w->user);
        return 403;
    }
    return 0;
}

/* A user has at most MAX_USER_DEPLOYMENTS deployments and MAX_USER_REPLICAS
 * replicas (counted at their max_replicas).  0, or 429 with err. */
static int within_quota(const gw_worker *w, const gw_deploy_spec *s, char *err, size_t errlen)
{
    if (w->admin) return 0;
    int replicas = 0, n = gw_deploy_count_owned(w->user, &replicas);
    if (n >= MAX_USER_DEPLOYMENTS) {
        loom__snprintf(err, errlen, "user %s already has %d deployments (at most %d); undeploy one first", w->user,
                       n, MAX_USER_DEPLOYMENTS);
        return 429;
    }
    double quota = gw_quota_field(w->c, 'u', w->user, "replicas");   /* loom quota set --replicas */
    int most = isnan(quota) ? MAX_USER_REPLICAS : (int)quota;
    if (replicas + s->max_replicas > most) {
        loom__snprintf(err, errlen, "user %s may have at most %d replicas (has %d, asks for %d more)", w->user,
                       most, replicas, s->max_replicas);
        return 429;
    }
    return 0;
}

static void deploy(gw_worker *w, const loom_http_request *req, loom_http_reply *rep)
{
    loom_client *c = gw_client(w, rep);
    if (!c) return;
    char err[512] = "", scoped[GW_DEPLOY_NAME_MAX + GW_USER_MAX + 2];
    json_t *body = json_loadb(req->body, req->body_len, 0, NULL);
    gw_deploy_spec s;
    char *params = NULL;
    int rc = gw_deploy_parse(body, &s, err, sizeof(err));
    int refused = rc ? 0 : scoped_name(w, &s, scoped, sizeof(scoped), err, sizeof(err));
    if (!refused) refused = rc ? 0 : within_quota(w, &s, err, sizeof(err));
    if (refused) {
        gw_reply_error(rep, refused, "%s", err);
        json_decref(body);
        return;
    }
    if (!rc && json_object_get(body, "params")) {
        params = json_dumps(json_object_get(body, "params"), JSON_COMPACT);
        s.params = params;
    }
    json_t *meta = NULL;
    if (!rc) {   /* the model version must be readable by the user, who then owns the deployment */
        rc = loom_registry_fetch(c, s.model, s.version, &meta, NULL, NULL);
        if (rc == LOOM_ENOTFOUND)
            loom__snprintf(err, sizeof(err), "no model '%s' version %d in the registry", s.model, s.version);
        if (!rc && !gw_may_read_rec(w, meta)) {
            gw_reply_error(rep, 403, "model '%s' is private to another user", s.model);   /* s.model is in body */
            json_decref(meta);
            json_decref(body);
            free(params);
            return;
        }
        s.owner = w->user;
        s.public_ = json_is_true(json_object_get(meta, "public"));
    }
    if (!rc) rc = gw_deploy_create(c, &s, err, sizeof(err));
    json_decref(meta);
    json_t *info = rc ? NULL : gw_deploy_info(s.name);
    if (info) {   /* s.model and s.name may point into body: before it goes */
        char detail[300];
        loom__snprintf(detail, sizeof(detail), "model=%s version=%d replicas=%d-%d", s.model, s.version,
                       s.min_replicas, s.max_replicas);
        loom__audit(w->user[0] ? w->user : "cluster", "deployment.create", s.name, detail);
    }
    free(params);
    json_decref(body);
    if (rc || !info) {
        gw_client_check(w, rc);
        gw_reply_error(rep, rc ? deploy_status(rc) : 500, "%s", err[0] ? err : loom_strerror(rc));
        return;
    }
    gw_reply_json(rep, 201, info);
}

/* The version of the deployment's model that a rollout to `version` (0:
 * the newest) would serve, if the user may read it: 0 with *resolved and
 * *public_, 403 (a private version of another user), or a loom error, with
 * err. */
static int rollout_target(gw_worker *w, loom_client *c, const char *name, int version, int *resolved,
                          int *public_, char *err, size_t errlen)
{
    json_t *info = gw_deploy_info(name);
    if (!info) {
        loom__snprintf(err, errlen, "no deployment named '%s'", name);
        return LOOM_ENOTFOUND;
    }
    char model[256];
    loom__snprintf(model, sizeof(model), "%s", json_string_value(json_object_get(info, "model")));
    json_decref(info);
    json_t *meta = NULL;
    int rc = loom_registry_fetch(c, model, version, &meta, NULL, NULL);
    if (rc) {
        loom__snprintf(err, errlen, rc == LOOM_ENOTFOUND ? "no model '%s' version %d in the registry"
                                                         : "cannot read model '%s' version %d from the registry",
                       model, version);
        return rc;
    }
    *resolved = (int)json_integer_value(json_object_get(meta, "version"));
    *public_ = json_is_true(json_object_get(meta, "public"));
    if (!gw_may_read_rec(w, meta)) rc = 403;
    json_decref(meta);
    if (rc) loom__snprintf(err, errlen, "model '%s' version %d is private to another user", model, *resolved);
    return rc;
}

/* PUT /v1/deployments/{name} {"version": V}: roll out version V (0: newest),
 * which the user must be allowed to read; the deployment then is public
 * only if V is. */
static void rollout(gw_worker *w, const char *name, const loom_http_request *req, loom_http_reply *rep)
{
    loom_client *c = gw_client(w, rep);
    if (!c) return;
    char err[512] = "";
    json_t *body = json_loadb(req->body, req->body_len, 0, NULL);
    json_t *v = json_object_get(body, "version");
    int rc = json_is_object(body) && (!v || (json_is_integer(v) && json_integer_value(v) >= 0 &&
                                             json_integer_value(v) <= INT32_MAX)) ? LOOM_OK : LOOM_EINVAL;
    if (rc) loom__snprintf(err, sizeof(err), "the body must be {\"version\": N} (0 or absent: the newest)");
    int target = 0, public_ = 0;
    if (!rc) rc = rollout_target(w, c, name, v ? (int)json_integer_value(v) : 0, &target, &public_, err, sizeof(err));
    json_decref(body);
    if (rc == 403) {
        gw_reply_error(rep, 403, "%s", err);
        return;
    }
    if (!rc) rc = gw_deploy_rollout(c, name, target, public_, err, sizeof(err));
    json_t *info = rc ? NULL : gw_deploy_info(name);
    if (rc || !info) {
        gw_client_check(w, rc);
        gw_reply_error(rep, rc ? deploy_status(rc) : 404, "%s", err[0] ? err : loom_strerror(rc));
        return;
    }
    char detail[64];
    loom__snprintf(detail, sizeof(detail), "version=%d", target);
    loom__audit(w->user[0] ? w->user : "cluster", "deployment.rollout", name, detail);
    gw_reply_json(rep, 200, info);
}

static void undeploy(gw_worker *w, const char *name, loom_http_reply *rep)
{
    loom_client *c = gw_client(w, rep);
    if (!c) return;
    if (gw_deploy_delete(c, name)) {
        gw_reply_error(rep, 404, "no deployment named '%s'", name);
        return;
    }
    loom__audit(w->user[0] ? w->user : "cluster", "deployment.delete", name, "");
    gw_reply_json(rep, 200, json_pack("{s:s,s:s}", "name", name, "status", "deleted"));
}

/* GET /v1/deployments: those the user may see. */
static void list_deployments(gw_worker *w, loom_http_reply *rep)
{
    json_t *all = gw_deploy_list(), *shown = json_array(), *d;
    size_t i;
    json_array_foreach(all, i, d) if (gw_may_read(w, json_string_value(json_object_get(d, "owner")),
                                                  json_is_true(json_object_get(d, "public"))))
        json_array_append(shown, d);
    json_decref(all);
    gw_reply_json(rep, 200, json_pack("{s:o}", "deployments", shown));
}

/* ---- routes ------------------------------------------------------------------------- */

int gw_kserve_route(gw_worker *w, const loom_http_request *req, loom_http_reply *rep)
{
    const char *m = req->method, *rest = NULL;
    if (!strcmp(req->path, "/v1/deployments")) {
        if (!strcmp(m, "POST")) deploy(w, req, rep);
        else if (!strcmp(m, "GET")) list_deployments(w, rep);
        else gw_reply_error(rep, 405, "use GET or POST /v1/deployments");
        return 1;
    }
    char name[NAME_LEN + 2];
    if (!gw_path_segment(req->path, "/v1/deployments/", name, sizeof(name), &rest)) {
        json_t *info = NULL;
        if (!deployment_allowed(w, name, strcmp(m, "GET") != 0, rep)) return 1;
        if (rest[0]) gw_reply_error(rep, 404, "no route %s", req->path);
        else if (!strcmp(m, "DELETE")) undeploy(w, name, rep);
        else if (!strcmp(m, "PUT")) rollout(w, name, req, rep);
        else if (strcmp(m, "GET")) gw_reply_error(rep, 405, "use GET, PUT or DELETE /v1/deployments/NAME");
        else if ((info = gw_deploy_info(name))) gw_reply_json(rep, 200, info);
        else gw_reply_error(rep, 404, "no deployment named '%s'", name);
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
    if (!deployment_allowed(w, name, 0, rep)) return 1;
    if (!rest[0] && !strcmp(m, "GET")) model_metadata(name, version, 0, rep);
    else if (!strcmp(rest, "/ready") && !strcmp(m, "GET")) model_metadata(name, version, 1, rep);
    else if (!strcmp(rest, "/infer") && !strcmp(m, "POST")) infer(w, name, version, req, rep);
    else gw_reply_error(rep, 405, "%s %s is not an inference route", m, req->path);
    return 1;
}
