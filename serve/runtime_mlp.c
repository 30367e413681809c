/* serve/runtime_mlp.c — libloom_mlp.so, the model runtime for MLPs stored as
 * safetensors (serve/mlp.h).  It is the reference of the runtime convention
 * every model runtime follows (serve/README.md): an actor class `Model` with
 *
 *   init(artifact bytes [, params JSON])   load the model once; params:
 *       {"device": "auto"|"cpu"|"cuda", "name": "...", "version": "..."}
 *       auto (default): CUDA when the actor was granted a GPU and CUDA works,
 *       else the CPU, with the reason kept for metadata.  cuda: fail unless
 *       the GPU path starts.
 *   predict(LTN1 tensor container)         one input [n, in] (FP32, or any
 *       numeric type, converted) -> container {"probabilities" FP32 [n, out]
 *       (or the artifact's output_name), "label" INT64 [n]}
 *   metadata()                             KServe v2 model metadata, JSON text
 *   destroy                                frees everything, GPU memory too
 *
 * A bad request fails its call with a message and leaves the actor serving. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <loom/task.h>

#include "serve/mlp.h"
#include "serve/tensor.h"

#define PLATFORM "loom-mlp"
#define LABEL_NAME "label"

typedef struct model {
    loom_mlp *mlp;
    char *metadata_json;   /* built once at init */
} model;

typedef struct params {
    char device[16];
    char name[128];
    char version[64];
} params;

static void model_free(model *s)
{
    if (!s) return;
    loom_mlp_destroy(&s->mlp);
    free(s->metadata_json);
    free(s);
}

/* ---- init -------------------------------------------------------------------------- */

static int copy_field(json_t *root, const char *key, char *dst, size_t cap, char *err,
                      size_t errlen)
{
    json_t *v = json_object_get(root, key);
    if (!v) return 0;
    if (!json_is_string(v) || json_string_length(v) >= cap) {
        snprintf(err, errlen, "params.%s must be a string of less than %zu bytes", key, cap);
        return -1;
    }
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static int parse_params(const char *text, size_t len, params *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    strcpy(p->device, "auto");
    if (!text || !len) return 0;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root)) {
        snprintf(err, errlen, "params are not a JSON object: %s", root ? "" : jerr.text);
        json_decref(root);
        return -1;
    }
    int rc = copy_field(root, "device", p->device, sizeof(p->device), err, errlen);
    if (!rc) rc = copy_field(root, "name", p->name, sizeof(p->name), err, errlen);
    if (!rc) rc = copy_field(root, "version", p->version, sizeof(p->version), err, errlen);
    json_decref(root);
    if (!rc && strcmp(p->device, "auto") && strcmp(p->device, "cpu") && strcmp(p->device, "cuda")) {
        snprintf(err, errlen, "params.device '%s': want auto, cpu or cuda", p->device);
        rc = -1;
    }
    return rc;
}

/* Put the model on the device params ask for; reason says why it is where it
 * is.  -1 (message in err) only when cuda was demanded and cannot be had. */
static int choose_device(model *s, const params *p, const char *gpu_ids, char *reason,
                         size_t rlen, char *err, size_t errlen)
{
    if (!strcmp(p->device, "cpu")) {
        snprintf(reason, rlen, "params.device is cpu");
        return 0;
    }
    if (!gpu_ids[0]) {
        if (!strcmp(p->device, "cuda")) {
            snprintf(err, errlen, "params.device is cuda but the actor was granted no GPU "
                                  "(create it with num_gpus)");
            return -1;
        }
        snprintf(reason, rlen, "no GPU granted to the actor");
        return 0;
    }
    char why[256] = "";
    if (loom_mlp_use_cuda(s->mlp, why, sizeof(why)) == 0) {
        snprintf(reason, rlen, "GPU %s granted and CUDA works", gpu_ids);
        return 0;
    }
    if (!strcmp(p->device, "cuda")) {
        snprintf(err, errlen, "params.device is cuda but CUDA is unusable: %s", why);
        return -1;
    }
    snprintf(reason, rlen, "GPU %s granted but CUDA is unusable (%s): running on the CPU",
             gpu_ids, why);
    return 0;
}

static json_t *tensor_meta(const char *name, const char *dtype, int width)
{
    json_t *shape = width ? json_pack("[i, i]", -1, width) : json_pack("[i]", -1);
    return json_pack("{s:s, s:s, s:o}", "name", name, "datatype", dtype, "shape", shape);
}

/* KServe v2 model metadata, plus loom's parameters (device, layers, the
 * artifact's __metadata__). */
static char *build_metadata(const loom_mlp *m, const params *p, const char *reason)
{
    const char *name = p->name[0] ? p->name : loom_mlp_meta(m, "name");
    json_t *layers = json_array(), *meta = json_object();
    for (int i = 0; i <= loom_mlp_layers(m); i++)
        json_array_append_new(layers, json_integer(loom_mlp_width(m, i)));
    for (int i = 0; i < loom_mlp_meta_count(m); i++) {
        const char *k, *v;
        loom_mlp_meta_entry(m, i, &k, &v);
        json_object_set_new(meta, k, json_string(v));
    }
    json_t *root = json_pack(
        "{s:s, s:s, s:[o], s:[o, o], s:{s:s, s:s, s:o, s:s, s:o}}", "name", name ? name : "mlp",
        "platform", PLATFORM, "inputs",
        tensor_meta(loom_mlp_input_name(m), "FP32", loom_mlp_inputs(m)), "outputs",
        tensor_meta(loom_mlp_output_name(m), "FP32", loom_mlp_outputs(m)),
        tensor_meta(LABEL_NAME, "INT64", 0), "parameters", "device", loom_mlp_device(m),
        "device_reason", reason, "layers", layers, "activation", loom_mlp_activation_name(m),
        "metadata", meta);
    if (root && p->version[0])
        json_object_set_new(root, "versions", json_pack("[s]", p->version));
    char *text = root ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    return text;
}

LOOM_ACTOR_INIT(Model)
{
    const void *artifact;
    size_t len;
    if (loom_task_nargs(ctx) < 1 || loom_task_arg(ctx, 0, &artifact, &len))
        return loom_task_fail(ctx, "Model init: want the artifact bytes (safetensors) as arg 0");
    const void *ptext = NULL;
    size_t plen = 0;
    if (loom_task_nargs(ctx) > 1 && loom_task_arg(ctx, 1, &ptext, &plen))
        return loom_task_fail(ctx, "Model init: cannot read params (arg 1)");
    char err[512] = "", reason[512] = "";
    params p;
    if (parse_params(ptext, plen, &p, err, sizeof(err)))
        return loom_task_fail(ctx, "Model init: %s", err);
    model *s = calloc(1, sizeof(*s));
    if (!s) return loom_task_fail(ctx, "Model init: out of memory");
    if (loom_mlp_load(artifact, len, &s->mlp, err, sizeof(err))) {
        model_free(s);
        return loom_task_fail(ctx, "Model init: %s", err);
    }
    const char *gpus = loom_task_gpu_ids(ctx);
    if (choose_device(s, &p, gpus ? gpus : "", reason, sizeof(reason), err, sizeof(err))) {
        model_free(s);
        return loom_task_fail(ctx, "Model init: %s", err);
    }
    if (!(s->metadata_json = build_metadata(s->mlp, &p, reason))) {
        model_free(s);
        return loom_task_fail(ctx, "Model init: out of memory");
    }
    loom_actor_set_state(ctx, s);
    return 0;
}

LOOM_ACTOR_DESTROY(Model)
{
    model_free(state);
}

/* ---- predict ------------------------------------------------------------------------ */

/* The input among the request's tensors: the one named like the model's
 * input, or the only one. */
static const loom_tensor *pick_input(const loom_mlp *m, const loom_tensor *t, int n, char *err,
                                     size_t errlen)
{
    const loom_tensor *in = loom_tensors_find(t, n, loom_mlp_input_name(m));
    if (!in && n == 1) in = &t[0];
    if (!in) {
        snprintf(err, errlen, "want one input tensor (named '%s'), got %d tensors",
                 loom_mlp_input_name(m), n);
        return NULL;
    }
    if (in->ndim != 2 || in->shape[1] != loom_mlp_inputs(m)) {
        char shape[160] = "";
        size_t used = 0;
        for (int d = 0; d < in->ndim && used < sizeof(shape) - 24; d++)
            used += (size_t)snprintf(shape + used, sizeof(shape) - used, "%s%lld", d ? ", " : "",
                                     (long long)in->shape[d]);
        snprintf(err, errlen, "input '%s' has shape [%s], want [n, %d]", in->name, shape,
                 loom_mlp_inputs(m));
        return NULL;
    }
    return in;
}

/* The response container: probabilities [n, out] and labels [n]. */
static int encode_outputs(const loom_mlp *m, const float *probs, int64_t n, void **out,
                          size_t *len, char *err, size_t errlen)
{
    int k = loom_mlp_outputs(m);
    int64_t *labels = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    if (!labels) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int64_t r = 0; r < n; r++) labels[r] = loom_mlp_argmax(probs + (size_t)r * (size_t)k, k);
    loom_tensor t[2];
    int64_t pshape[2] = {n, k}, lshape[1] = {n};
    int rc = loom_tensor_set(&t[0], loom_mlp_output_name(m), LOOM_DTYPE_FP32, 2, pshape, probs,
                             err, errlen);
    if (!rc) rc = loom_tensor_set(&t[1], LABEL_NAME, LOOM_DTYPE_INT64, 1, lshape, labels, err,
                                  errlen);
    if (!rc) rc = loom_tensors_encode_alloc(t, 2, out, len, err, errlen);
    free(labels);
    return rc;
}

/* Decode, convert, run, encode; the result bytes in *out (malloc'd). */
static int predict(loom_mlp *m, const void *req, size_t reqlen, void **out, size_t *outlen,
                   char *err, size_t errlen)
{
    loom_tensor t[LOOM_TENSOR_MAX_COUNT];
    int n;
    if (loom_tensors_decode(req, reqlen, t, LOOM_TENSOR_MAX_COUNT, &n, err, errlen)) return -1;
    const loom_tensor *in = pick_input(m, t, n, err, errlen);
    if (!in) return -1;
    int64_t rows = in->shape[0];
    size_t cells = (size_t)rows * (size_t)loom_mlp_outputs(m);
    if (rows > INT32_MAX || cells > LOOM_MLP_MAX_BATCH_BYTES / sizeof(float)) {
        snprintf(err, errlen, "batch of %lld rows is too large", (long long)rows);
        return -1;
    }
    float *x = malloc(in->nbytes / loom_tensor_dtype_size(in->dtype) * sizeof(float) + 1);
    float *probs = malloc(cells * sizeof(float) + 1);
    int rc = x && probs ? 0 : -1;
    if (rc) snprintf(err, errlen, "out of memory");
    if (!rc) {
        loom_tensor_to_f32(in, x);
        rc = loom_mlp_forward(m, x, rows, probs, err, errlen);
    }
    if (!rc) rc = encode_outputs(m, probs, rows, out, outlen, err, errlen);
    free(x);
    free(probs);
    return rc;
}

LOOM_ACTOR_METHOD(Model, predict)
{
    model *s = loom_actor_state(ctx);
    const void *req;
    size_t len;
    if (loom_task_nargs(ctx) < 1 || loom_task_arg(ctx, 0, &req, &len))
        return loom_task_fail(ctx, "predict: want a tensor container (LTN1) as arg 0");
    char err[512] = "";
    void *out = NULL;
    size_t outlen = 0;
    if (predict(s->mlp, req, len, &out, &outlen, err, sizeof(err)))
        return loom_task_fail(ctx, "predict: %s", err);
    int rc = loom_task_return(ctx, out, outlen);
    free(out);
    return rc;
}

LOOM_ACTOR_METHOD(Model, metadata)
{
    model *s = loom_actor_state(ctx);
    return loom_task_return(ctx, s->metadata_json, strlen(s->metadata_json));
}
