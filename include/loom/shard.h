/* loom/shard.h — sharded batch inference (libloom_shard.so): run a model of
 * the registry over a dataset, one task per shard, with every shard's result
 * cached in the cluster.
 *
 * The dataset (a .npy array, a CSV file, JSON Lines, or a directory of such
 * files: shard/dataset.h) is read by the driver and cut into shards of
 * shard_size rows; each shard is put in the object store and inferred by one
 * task on the node that holds it when that node has room, else elsewhere,
 * with a bounded number in flight.  A shard's result is keyed by
 * sha256(model digest, inference parameters, shard content digest): the
 * key-value table of the head (kept in LMDB) holds it, and any later run that
 * meets the same key — of any user, with any shard size that cuts the same
 * rows — reuses it.  A run that stopped midway (crash, restart, a dead node)
 * is resumed by running it again: finished shards come from the cache or
 * from the output directory.
 *
 * Output directory:
 *   shard-NNNNN.npy          class probabilities, float32 [rows, classes]
 *   shard-NNNNN.labels.npy   the most probable class, int64 [rows]
 *   manifest.json            the model (name, version, sha256), parameters,
 *                            the input, every shard (rows, input digest,
 *                            files and their sha256, where its result came
 *                            from) and the totals
 */
#ifndef LOOM_SHARD_H
#define LOOM_SHARD_H

#include "loom/export.h"

#include <stdint.h>

#include "loom/loom.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_infer_progress {
    int64_t shards, done;       /* done: results written (any source) */
    int64_t cache_hits, computed, from_output, speculative, retried;
    int64_t rows_done, rows;
    double seconds, rows_per_s, eta_s; /* eta_s < 0: unknown yet */
    int finished;
} loom_infer_progress;

typedef void (*loom_infer_progress_fn)(const loom_infer_progress *p, void *arg);

typedef struct loom_infer_opts {
    const char *model;          /* "NAME" (newest version) or "NAME:VERSION" in the registry */
    const char *input;          /* the dataset: a file or a directory */
    const char *output;         /* the output directory (made when missing) */
    int64_t shard_size;         /* rows per shard; 0: 1000 */
    int max_in_flight;          /* shard tasks at once; 0: 8 (at most 256) */
    const char *params;         /* inference parameters (JSON object; part of the cache
                                   key): "device": "cpu" (default) or "cuda" */
    double num_cpus;            /* per shard task; 0: 1 */
    double num_gpus;            /* per shard task; 0: the model's "gpus" parameter in the
                                   registry, else none; "device" "cuda" needs some */
    double straggler_factor;    /* start a second copy of a shard running longer than
                                   this many times the median shard time (once 3 shards are
                                   done, on a cluster of 2 nodes or more); 0: 4; < 0: never */
    int no_cache;               /* 1: neither read nor fill the cache */
    loom_infer_progress_fn progress; /* may be NULL; called about every interval_ms */
    void *progress_arg;
    int interval_ms;            /* 0: 500 */
} loom_infer_opts;

/* Run it.  0 when every shard's result is written (stats, if not NULL,
 * has the totals), or an error with the reason in loom_infer_last_error():
 * LOOM_ENOTFOUND (no such model or version), LOOM_EINVAL (a bad option, a
 * malformed dataset, a model that does not take its columns), LOOM_EIO (the
 * output directory), LOOM_ETASK (a shard failed on every try). */
LOOM_API int loom_infer(loom_client *c, const loom_infer_opts *o, loom_infer_progress *stats);

/* Why the last loom_infer of this thread failed ("" if none). */
LOOM_API const char *loom_infer_last_error(void);

#ifdef __cplusplus
}
#endif
#endif
