/* worker/task_ctx.h — the context a task function runs with (the private side
 * of loom/task.h): its arguments and the result it sets. */
#ifndef LOOM_WORKER_TASK_CTX_H
#define LOOM_WORKER_TASK_CTX_H
#include <stddef.h>
#include <stdint.h>
#include "loom/task.h"

typedef struct loom_task_argv {
    const void *data;
    size_t len;
} loom_task_argv;

struct loom_task_ctx {
    const char *name;
    const char *gpu_ids;   /* "" when none */
    void **actor_state;    /* the hosting actor's state slot, or NULL in a plain task */
    uint8_t self[16];      /* the actor's id (zero in a plain task) */
    loom_client *(*connect)(char *err, size_t errlen);   /* for loom_task_client */
    char task_hex[33];
    const loom_task_argv *args;
    int nargs;
    void *result;          /* malloc'd, owned by the context */
    size_t result_len;
    int has_result;
    char error[2048];
    int failed;
};

void loom__task_ctx_reset(loom_task_ctx *ctx);   /* free the result, clear the error */
#endif
