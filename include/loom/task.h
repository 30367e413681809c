/* loom/task.h — the task-side API: what a task library is written against.
 *
 * A task library is a shared object (.so) loaded into executor processes with
 * dlopen.  Each task function is declared with LOOM_TASK(name) and gets a
 * context from which it reads its arguments (zero-copy from the node's object
 * store) and to which it writes its result:
 *
 *     #include <loom/task.h>
 *     LOOM_TASK(add) {
 *         int64_t a, b;
 *         if (loom_task_arg_i64(ctx, 0, &a) || loom_task_arg_i64(ctx, 1, &b))
 *             return loom_task_fail(ctx, "add: want two msgpack integers");
 *         return loom_task_return_i64(ctx, a + b);
 *     }
 *
 * A function returns 0 on success.  Any other return, a call to
 * loom_task_fail, or a crash of the executor fails the task, and the message
 * reaches the driver's loom_get.  Build with:
 *     cc -shared -fPIC mytasks.c $(pkg-config --cflags --libs loom) -o libmytasks.so
 */
#ifndef LOOM_TASK_H
#define LOOM_TASK_H

#include "loom/export.h"

#include <stddef.h>
#include <stdint.h>
#include "loom/loom.h"
#include "loom/value.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_task_ctx loom_task_ctx;
typedef int (*loom_task_fn)(loom_task_ctx *ctx);

#define LOOM_TASK_SYMBOL_PREFIX "loom_task__"
#define LOOM_TASK(name)                                               \
    LOOM_API int loom_task__##name(loom_task_ctx *ctx);               \
    int loom_task__##name(loom_task_ctx *ctx)

/* Number of arguments. */
LOOM_API int loom_task_nargs(const loom_task_ctx *ctx);
/* Argument i as bytes (valid until the function returns). */
LOOM_API int loom_task_arg(const loom_task_ctx *ctx, int i, const void **data, size_t *len);
/* Argument i decoded as a msgpack integer / float / string (not NUL-terminated). */
LOOM_API int loom_task_arg_i64(const loom_task_ctx *ctx, int i, int64_t *out);
LOOM_API int loom_task_arg_f64(const loom_task_ctx *ctx, int i, double *out);
LOOM_API int loom_task_arg_str(const loom_task_ctx *ctx, int i, const char **s, size_t *len);

/* Set the result (copied).  Calling it again replaces the result. A task that
 * sets none returns an empty value. */
LOOM_API int loom_task_return(loom_task_ctx *ctx, const void *data, size_t len);
/* Result as a msgpack integer / float / string. */
LOOM_API int loom_task_return_i64(loom_task_ctx *ctx, int64_t v);
LOOM_API int loom_task_return_f64(loom_task_ctx *ctx, double v);
LOOM_API int loom_task_return_str(loom_task_ctx *ctx, const char *s, size_t len);
/* The packed contents of a loom_pack as the result. */
LOOM_API int loom_task_return_pack(loom_task_ctx *ctx, const loom_pack *p);

/* Fail the task with a printf-style message; returns LOOM_ETASK so a function
 * can `return loom_task_fail(ctx, ...)`. */
LOOM_API int loom_task_fail(loom_task_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Name of the function being run, and the task's id as hex. */
LOOM_API const char *loom_task_name(const loom_task_ctx *ctx);

/* ---- actors ------------------------------------------------------------- */

/* An actor class CLS in a task library: an init that builds the state, methods
 * that use it, and an optional destroy:
 *
 *     typedef struct counter { int64_t n; } counter;
 *     LOOM_ACTOR_INIT(Counter) {
 *         counter *s = calloc(1, sizeof(*s));
 *         loom_task_arg_i64(ctx, 0, &s->n);      // init arguments
 *         loom_actor_set_state(ctx, s);
 *         return 0;
 *     }
 *     LOOM_ACTOR_METHOD(Counter, add) {
 *         counter *s = loom_actor_state(ctx);
 *         int64_t k = 1;
 *         loom_task_arg_i64(ctx, 0, &k);
 *         return loom_task_return_i64(ctx, s->n += k);
 *     }
 *     LOOM_ACTOR_DESTROY(Counter) { free(state); }
 *
 * Class and method names are C identifiers without "__". */
#define LOOM_ACTOR_SYMBOL_PREFIX "loom_actor__"
#define LOOM_ACTOR_INIT(cls)                                          \
    LOOM_API int loom_actor__##cls##__init(loom_task_ctx *ctx);       \
    int loom_actor__##cls##__init(loom_task_ctx *ctx)
#define LOOM_ACTOR_METHOD(cls, method)                                \
    LOOM_API int loom_actor__##cls##__##method(loom_task_ctx *ctx);   \
    int loom_actor__##cls##__##method(loom_task_ctx *ctx)
#define LOOM_ACTOR_DESTROY(cls)                                       \
    LOOM_API void loom_actor__##cls##__destroy(void *state);          \
    void loom_actor__##cls##__destroy(void *state)

/* The actor's state (NULL before init sets it). */
LOOM_API void *loom_actor_state(const loom_task_ctx *ctx);
LOOM_API void loom_actor_set_state(loom_task_ctx *ctx, void *state);
/* The running actor's own handle (all zero in a plain task). */
LOOM_API loom_actor loom_task_self(const loom_task_ctx *ctx);

/* Argument i as an actor handle (passed with loom_arg_actor). */
LOOM_API int loom_task_arg_actor(const loom_task_ctx *ctx, int i, loom_actor *out);

/* A client connected to the cluster this task runs in, to submit tasks, call
 * actors, put and get objects from inside a task.  Made on first use and kept
 * by the executor (one per thread); do not disconnect it.  NULL when it
 * cannot connect (the reason is in the task's error). */
LOOM_API loom_client *loom_task_client(loom_task_ctx *ctx);

/* The GPUs granted to this task or actor, as in CUDA_VISIBLE_DEVICES ("0,1"),
 * "" when it asked for none. */
LOOM_API const char *loom_task_gpu_ids(const loom_task_ctx *ctx);

#ifdef __cplusplus
}
#endif
#endif
