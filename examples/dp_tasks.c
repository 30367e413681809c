/* examples/dp_tasks.c — the Trainer actor of the data-parallel example
 * (dp_train.c): each of `world` Trainers holds one shard of the digits
 * training set and a full copy of the MLP of dp_model.h; every step it sums
 * the gradient over its shard and all-reduces [gradient, loss, count] with
 * the other Trainers (loom/collective.h), so every rank applies the same
 * global mean gradient and the weights stay identical everywhere.
 *
 *   init(path, rank, world, seed, group)   load rows of the shard, init the
 *                                          weights from seed, join the group
 *   step(k, lr) -> {"loss": f64, "steps": i64}   k steps; loss: the global mean
 *                                          loss of the last one (before its update)
 *   weights() -> bin                       DP_NPARAMS float64, host byte order
 *   evaluate(path) -> f64                  accuracy on the test rows of path
 *
 * path must be readable on every node that hosts a Trainer (one machine, a
 * shared file system, or scripts/get_digits.sh run on each node).
 *
 * Build: cc -shared -fPIC dp_tasks.c dp_model.c $(pkg-config --cflags --libs loom) -lm */
#include <stdlib.h>
#include <string.h>
#include <loom/collective.h>
#include <loom/task.h>
#include "dp_model.h"

typedef struct trainer {
    dp_data shard;
    double w[DP_NPARAMS];
    double acc[DP_ACC_LEN];      /* per step: gradient sum, loss sum, count */
    int64_t steps;
    loom_collective *group;
} trainer;

static void trainer_free(trainer *t)
{
    if (!t) return;
    loom_collective_destroy(&t->group);
    dp_data_free(&t->shard);
    free(t);
}

/* A msgpack string argument as a NUL-terminated copy (caller frees). */
static char *arg_cstr(loom_task_ctx *ctx, int i)
{
    const char *s;
    size_t n;
    if (loom_task_arg_str(ctx, i, &s, &n)) return NULL;
    return strndup(s, n);
}

LOOM_ACTOR_INIT(Trainer)
{
    int64_t rank, world, seed;
    if (loom_task_nargs(ctx) != 5 || loom_task_arg_i64(ctx, 1, &rank) ||
        loom_task_arg_i64(ctx, 2, &world) || loom_task_arg_i64(ctx, 3, &seed))
        return loom_task_fail(ctx, "Trainer: want (path, rank, world, seed, group)");
    if (world < 1 || rank < 0 || rank >= world || world > DP_TRAIN_ROWS)
        return loom_task_fail(ctx, "Trainer: rank %lld of world %lld", (long long)rank,
                              (long long)world);
    char *path = arg_cstr(ctx, 0), *group = arg_cstr(ctx, 4);
    trainer *t = calloc(1, sizeof(*t));
    if (!path || !group || !t) {
        free(path);
        free(group);
        free(t);
        return loom_task_fail(ctx, "Trainer: want string path and group (or out of memory)");
    }
    char err[256];
    int begin, end, rc = 0;
    dp_shard_range((int)rank, (int)world, &begin, &end);
    if (dp_data_load(path, begin, end, &t->shard, err, sizeof(err))) {
        rc = loom_task_fail(ctx, "Trainer %lld: %s", (long long)rank, err);
        goto out;
    }
    dp_init(t->w, (uint64_t)seed);
    loom_client *c = loom_task_client(ctx);
    if (!c) {
        rc = loom_task_fail(ctx, "Trainer %lld: no client to the cluster", (long long)rank);
        goto out;
    }
    loom_rendezvous rv;
    loom_rendezvous_cluster(&rv, c);
    int e = loom_collective_init(&rv, group, (int)world, (int)rank, NULL, &t->group);
    if (e) {
        rc = loom_task_fail(ctx, "Trainer %lld: join group %s of %lld: %s (%s)", (long long)rank,
                            group, (long long)world, loom_strerror(e), loom_collective_error(NULL));
        goto out;
    }
    loom_actor_set_state(ctx, t);
    t = NULL;
out:
    trainer_free(t);
    free(path);
    free(group);
    return rc;
}

LOOM_ACTOR_METHOD(Trainer, step)
{
    trainer *t = loom_actor_state(ctx);
    int64_t k;
    double lr, loss = 0;
    if (loom_task_arg_i64(ctx, 0, &k) || k < 0 || loom_task_arg_f64(ctx, 1, &lr))
        return loom_task_fail(ctx, "step: want (steps >= 0, learning rate)");
    for (int64_t s = 0; s < k; s++) {
        dp_grad_sum(t->w, &t->shard, t->acc);
        int e = loom_allreduce(t->group, t->acc, DP_ACC_LEN, LOOM_DT_F64, LOOM_OP_SUM);
        if (e)
            return loom_task_fail(ctx, "step %lld: allreduce: %s (%s)", (long long)t->steps,
                                  loom_strerror(e), loom_collective_error(t->group));
        loss = dp_apply(t->w, t->acc, lr);
        t->steps++;
    }
    loom_pack *p = loom_pack_new();
    if (!p) return loom_task_fail(ctx, "out of memory");
    loom_pack_map(p, 2);
    loom_pack_cstr(p, "loss");
    loom_pack_f64(p, loss);
    loom_pack_cstr(p, "steps");
    loom_pack_i64(p, t->steps);
    int rc = loom_task_return_pack(ctx, p);
    loom_pack_destroy(&p);
    return rc;
}

LOOM_ACTOR_METHOD(Trainer, weights)
{
    trainer *t = loom_actor_state(ctx);
    loom_pack *p = loom_pack_new();
    if (!p) return loom_task_fail(ctx, "out of memory");
    loom_pack_bin(p, t->w, sizeof(t->w));
    int rc = loom_task_return_pack(ctx, p);
    loom_pack_destroy(&p);
    return rc;
}

LOOM_ACTOR_METHOD(Trainer, evaluate)
{
    trainer *t = loom_actor_state(ctx);
    char *path = arg_cstr(ctx, 0);
    if (!path) return loom_task_fail(ctx, "evaluate: want the path of digits.csv");
    dp_data test;
    char err[256];
    int rc = dp_data_load(path, DP_TRAIN_ROWS, -1, &test, err, sizeof(err));
    free(path);
    if (rc) return loom_task_fail(ctx, "evaluate: %s", err);
    double a = dp_accuracy(t->w, &test);
    dp_data_free(&test);
    return loom_task_return_f64(ctx, a);
}

LOOM_ACTOR_DESTROY(Trainer)
{
    trainer_free(state);
}
