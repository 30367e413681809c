/* serve/registry_store.h — where the model registry keeps its models in the
 * cluster's key-value table (the head keeps the table in LMDB, so the
 * registry outlives the head), and how to read one back: shared by the
 * gateway's registry routes (gateway/registry.c), which write it, and
 * whatever runs a registered model (serving, batch inference).
 *
 * Layout:
 *   registry/index                  JSON array of model names
 *   registry/m/NAME                 JSON {"next": N, "owner", "versions": [meta, ...]}
 *   registry/m/NAME/v/V/NNNNNN      the artifact of version V in chunks of
 *                                   LOOM_REGISTRY_CHUNK bytes (one empty
 *                                   chunk for an empty artifact)
 * A version's metadata: name, version, author, license, framework, dataset,
 * tags, parameters, produced_by, sha256, size, created, owner, public. */
#ifndef LOOM_SERVE_REGISTRY_STORE_H
#define LOOM_SERVE_REGISTRY_STORE_H

#include <jansson.h>
#include <stddef.h>

#include "loom/loom.h"

#define LOOM_REGISTRY_CHUNK ((size_t)1 << 20) /* the key-value table holds values up to 1 MiB */

void loom_registry_model_key(char *out, size_t cap, const char *name);
void loom_registry_chunk_key(char *out, size_t cap, const char *name, int version, size_t i);

/* The JSON under key, or NULL with *rc set (LOOM_ENOTFOUND when absent,
 * LOOM_EPROTO when it is not JSON). */
json_t *loom_registry_kv_json(loom_client *c, const char *key, int *rc);

/* The version entry v of a model record (0: the newest), or NULL. */
json_t *loom_registry_find_version(json_t *rec, int version);

/* Version `version` (0: the newest) of model `name`: *meta (a new
 * reference) and, when data is not NULL, its artifact (*data malloc'd, *len
 * bytes).  LOOM_ENOTFOUND when there is no such model or version. */
int loom_registry_fetch(loom_client *c, const char *name, int version, json_t **meta, char **data,
                        size_t *len);

#endif
