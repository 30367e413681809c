/* tune/tune_internal.h — what the sweep controller (sweep.c) and the trial
 * side (trial.c) share: the layout of a sweep in the cluster's key-value
 * table, and the helpers that store JSON and large blobs there.
 *
 * Keys (the head keeps the table in LMDB, so all of this outlives it):
 *   tune/index                         JSON array of sweep ids, oldest first
 *   tune/s/<S>/sweep                   the sweep record (tune/track.h)
 *   tune/s/<S>/t/<N>                   trial N's record
 *   tune/s/<S>/stop                    present: a stop was asked
 *   tune/s/<S>/t/<N>/a<A>/r/<seq>      attempt A's report seq (0: "started")
 *   tune/s/<S>/t/<N>/a<A>/d/<seq>      the answer: continue | stop | pause
 *   tune/s/<S>/t/<N>/a<A>/c/<seq>      the checkpoint of report seq (a blob:
 *                                      loom_kv_put_blob)
 *   tune/s/<S>/t/<N>/art/<name>        an artifact (a blob)
 *   tune/s/<S>/t/<N>/art/<name>/meta   its name, key, bytes and sha256 */
#ifndef LOOM_TUNE_INTERNAL_H
#define LOOM_TUNE_INTERNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "base/clock.h"
#include "loom/loom.h"

#define TUNE_MAX_BLOB ((size_t)64 << 20)
#define TUNE_KEY_MAX 512
/* How long a trial waits for its answer before it gives up (the driver died
 * and nobody resumed the sweep). */
#define TUNE_ANSWER_WAIT_MS (30 * 60 * 1000)


/* JSON in the key-value table. */
int tune_kv_put_json(loom_client *c, const char *key, const json_t *v);
/* *out: a new reference.  LOOM_ENOTFOUND when absent (timeout_ms 0). */
int tune_kv_get_json(loom_client *c, const char *key, int64_t timeout_ms, json_t **out);

/* Read a whole file (up to max bytes): *data malloc'd.  LOOM_EIO / LOOM_ETOOBIG. */
int tune_read_file(const char *path, size_t max, void **data, size_t *len);

/* Register the best trial's artifact (spec "register") in the model registry
 * of the gateway the spec names: *out is the registry's answer (its version
 * and sha256).  tune/register.c */
int tune_register_best(loom_client *c, const json_t *sweep, const json_t *trial, json_t **out, char *err,
                       size_t errlen);

#endif
