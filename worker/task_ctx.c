/* worker/task_ctx.c — the functions task libraries call (loom/task.h):
 * reading arguments, setting the result, failing with a message. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/errf.h"
#include "worker/task_ctx.h"

void loom__task_ctx_reset(loom_task_ctx *ctx)
{
    free(ctx->result);
    ctx->result = NULL;
    ctx->result_len = 0;
    ctx->has_result = 0;
    ctx->error[0] = 0;
    ctx->failed = 0;
}

int loom_task_nargs(const loom_task_ctx *ctx)
{
    return ctx ? ctx->nargs : 0;
}

int loom_task_arg(const loom_task_ctx *ctx, int i, const void **data, size_t *len)
{
    if (!ctx || i < 0 || i >= ctx->nargs || !data || !len) return LOOM_EINVAL;
    *data = ctx->args[i].data;
    *len = ctx->args[i].len;
    return LOOM_OK;
}

static int arg_cursor(const loom_task_ctx *ctx, int i, loom_unpack *u)
{
    const void *d;
    size_t n;
    int rc = loom_task_arg(ctx, i, &d, &n);
    if (rc) return rc;
    loom_unpack_init(u, d, n);
    return LOOM_OK;
}

int loom_task_arg_i64(const loom_task_ctx *ctx, int i, int64_t *out)
{
    loom_unpack u;
    int rc = arg_cursor(ctx, i, &u);
    return rc ? rc : loom_unpack_i64(&u, out);
}

int loom_task_arg_f64(const loom_task_ctx *ctx, int i, double *out)
{
    loom_unpack u;
    int rc = arg_cursor(ctx, i, &u);
    return rc ? rc : loom_unpack_f64(&u, out);
}

int loom_task_arg_str(const loom_task_ctx *ctx, int i, const char **s, size_t *len)
{
    loom_unpack u;
    int rc = arg_cursor(ctx, i, &u);
    return rc ? rc : loom_unpack_str(&u, s, len);
}

int loom_task_return(loom_task_ctx *ctx, const void *data, size_t len)
{
    if (!ctx || (len && !data)) return LOOM_EINVAL;
    void *copy = malloc(len ? len : 1);
    if (!copy) return LOOM_ENOMEM;
    if (len) memcpy(copy, data, len);
    free(ctx->result);
    ctx->result = copy;
    ctx->result_len = len;
    ctx->has_result = 1;
    return LOOM_OK;
}

static int return_pack(loom_task_ctx *ctx, int (*fill)(loom_pack *, const void *), const void *v)
{
    loom_pack *p = loom_pack_new();
    if (!p) return LOOM_ENOMEM;
    int rc = fill(p, v);
    if (!rc) rc = loom_task_return(ctx, loom_pack_data(p), loom_pack_size(p));
    loom_pack_destroy(&p);
    return rc;
}

static int fill_i64(loom_pack *p, const void *v) { return loom_pack_i64(p, *(const int64_t *)v); }
static int fill_f64(loom_pack *p, const void *v) { return loom_pack_f64(p, *(const double *)v); }

int loom_task_return_i64(loom_task_ctx *ctx, int64_t v)
{
    return return_pack(ctx, fill_i64, &v);
}

int loom_task_return_f64(loom_task_ctx *ctx, double v)
{
    return return_pack(ctx, fill_f64, &v);
}

int loom_task_return_str(loom_task_ctx *ctx, const char *s, size_t len)
{
    loom_pack *p = loom_pack_new();
    if (!p) return LOOM_ENOMEM;
    int rc = loom_pack_str(p, s, len);
    if (!rc) rc = loom_task_return(ctx, loom_pack_data(p), loom_pack_size(p));
    loom_pack_destroy(&p);
    return rc;
}

int loom_task_return_pack(loom_task_ctx *ctx, const loom_pack *p)
{
    if (!p) return LOOM_EINVAL;
    return loom_task_return(ctx, loom_pack_data(p), loom_pack_size(p));
}

int loom_task_fail(loom_task_ctx *ctx, const char *fmt, ...)
{
    if (!ctx) return LOOM_ETASK;
    va_list ap;
    va_start(ap, fmt);
    loom__verrf(ctx->error, sizeof(ctx->error), LOOM_ETASK, fmt, ap);
    va_end(ap);
    ctx->failed = 1;
    return LOOM_ETASK;
}

const char *loom_task_name(const loom_task_ctx *ctx)
{
    return ctx ? ctx->name : "";
}

/* ---- actors and clients ------------------------------------------------- */

void *loom_actor_state(const loom_task_ctx *ctx)
{
    return ctx && ctx->actor_state ? *ctx->actor_state : NULL;
}

void loom_actor_set_state(loom_task_ctx *ctx, void *state)
{
    if (ctx && ctx->actor_state) *ctx->actor_state = state;
}

loom_actor loom_task_self(const loom_task_ctx *ctx)
{
    loom_actor a;
    memset(&a, 0, sizeof(a));
    if (ctx) memcpy(a.id, ctx->self, sizeof(a.id));
    return a;
}

int loom_task_arg_actor(const loom_task_ctx *ctx, int i, loom_actor *out)
{
    const void *d;
    size_t n;
    int rc = loom_task_arg(ctx, i, &d, &n);
    if (rc) return rc;
    if (!out || n != sizeof(out->id)) return LOOM_EINVAL;
    memcpy(out->id, d, sizeof(out->id));
    return LOOM_OK;
}

loom_client *loom_task_client(loom_task_ctx *ctx)
{
    if (!ctx) return NULL;
    if (!ctx->connect) {
        loom_task_fail(ctx, "this executor cannot connect tasks to the cluster");
        return NULL;
    }
    char err[512] = "";
    loom_client *c = ctx->connect(err, sizeof(err));
    if (!c) loom_task_fail(ctx, "cannot connect to the cluster: %s", err);
    return c;
}

const char *loom_task_gpu_ids(const loom_task_ctx *ctx)
{
    return ctx && ctx->gpu_ids ? ctx->gpu_ids : "";
}
