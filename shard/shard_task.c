/* shard/shard_task.c — the task side of batch inference: the task function
 * infer_shard of libloom_shard.so runs the model on one shard.
 *
 * Arguments: 0 the model's sha256 (hex text), 1 the model artifact (a
 * safetensors MLP, serve/mlp.h), 2 the shard's rows as float32 values
 * (row-major), 3 the parameters as JSON: {"cols": D, "device": "cpu"|"cuda",
 * "threads": N}.  Result: the class probabilities as a .npy file's bytes,
 * float32 [rows, classes].
 *
 * The executor keeps the last model it loaded (keyed by its sha256), so the
 * shards that follow on the same executor skip the load; that cache is this
 * file's only state, and an executor runs one task at a time. */
#include <cblas.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/task.h"
#include "serve/mlp.h"
#include "shard/dataset.h"

static struct {
    char sha[65];
    char device[8];
    loom_mlp *m;
} cached;

/* The model for sha: the cached one, or loaded from its bytes. */
static int model_for(loom_task_ctx *ctx, const char *sha, const char *device, loom_mlp **out)
{
    if (cached.m && !strcmp(cached.sha, sha) && !strcmp(cached.device, device)) {
        *out = cached.m;
        return 0;
    }
    loom_mlp_destroy(&cached.m);
    cached.sha[0] = 0;
    const void *art;
    size_t len;
    char err[512];
    if (loom_task_arg(ctx, 1, &art, &len)) return loom_task_fail(ctx, "infer_shard: no model argument");
    if (loom_mlp_load(art, len, &cached.m, err, sizeof(err)))
        return loom_task_fail(ctx, "infer_shard: the model does not load: %s", err);
    if (!strcmp(device, "cuda") && loom_mlp_use_cuda(cached.m, err, sizeof(err))) {
        loom_mlp_destroy(&cached.m);
        return loom_task_fail(ctx, "infer_shard: device cuda: %s", err);
    }
    snprintf(cached.sha, sizeof(cached.sha), "%s", sha);
    snprintf(cached.device, sizeof(cached.device), "%s", device);
    *out = cached.m;
    return 0;
}

LOOM_TASK(infer_shard)
{
    const void *shaw, *rows, *pj;
    size_t shalen, rowlen, pjlen;
    if (loom_task_nargs(ctx) != 4 || loom_task_arg(ctx, 0, &shaw, &shalen) || loom_task_arg(ctx, 2, &rows, &rowlen) ||
        loom_task_arg(ctx, 3, &pj, &pjlen) || shalen == 0 || shalen > 64)
        return loom_task_fail(ctx, "infer_shard: want (model sha256, model, rows, params)");
    char sha[65];
    memcpy(sha, shaw, shalen);
    sha[shalen] = 0;
    json_t *params = json_loadb(pj, pjlen, 0, NULL);
    int64_t cols = json_integer_value(json_object_get(params, "cols"));
    const char *dev = json_string_value(json_object_get(params, "device"));
    int threads = (int)json_integer_value(json_object_get(params, "threads"));
    char device[8];
    snprintf(device, sizeof(device), "%s", dev && !strcmp(dev, "cuda") ? "cuda" : "cpu");
    json_decref(params);
    if (cols <= 0 || rowlen % (sizeof(float) * (size_t)cols))
        return loom_task_fail(ctx, "infer_shard: %zu bytes of rows are not rows of %lld float32", rowlen,
                              (long long)cols);
    openblas_set_num_threads(threads > 0 ? threads : 1);
    loom_mlp *m = NULL;
    int rc = model_for(ctx, sha, device, &m);
    if (rc) return rc;
    if (loom_mlp_inputs(m) != cols)
        return loom_task_fail(ctx, "infer_shard: the model takes %d columns, the dataset has %lld", loom_mlp_inputs(m),
                              (long long)cols);
    int64_t n = (int64_t)(rowlen / (sizeof(float) * (size_t)cols));
    int k = loom_mlp_outputs(m);
    float *x = malloc(rowlen ? rowlen : 1), *probs = malloc(sizeof(float) * (size_t)(n ? n : 1) * (size_t)k);
    char err[512];
    if (!x || !probs) rc = loom_task_fail(ctx, "infer_shard: out of memory for %lld rows", (long long)n);
    else {
        memcpy(x, rows, rowlen); /* the store's bytes may not be aligned for float */
        if (loom_mlp_forward(m, x, n, probs, err, sizeof(err)))
            rc = loom_task_fail(ctx, "infer_shard: %s", err);
    }
    void *npy = NULL;
    size_t npylen = 0;
    if (!rc && shard_npy_encode_f32(probs, n, k, &npy, &npylen))
        rc = loom_task_fail(ctx, "infer_shard: out of memory for the result");
    if (!rc) rc = loom_task_return(ctx, npy, npylen);
    free(npy);
    free(x);
    free(probs);
    return rc;
}
