/* serve/registry_store.c — the model registry's layout in the key-value
 * table, and reading a model version back (serve/registry_store.h). */
#include "serve/registry_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/loom.h"

void loom_registry_model_key(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "registry/m/%s", name);
}

void loom_registry_chunk_key(char *out, size_t cap, const char *name, int version, size_t i)
{
    snprintf(out, cap, "registry/m/%s/v/%d/%06zu", name, version, i);
}

/* The JSON under key, or NULL (*rc LOOM_ENOTFOUND when absent). */
json_t *loom_registry_kv_json(loom_client *c, const char *key, int *rc)
{
    void *data = NULL;
    size_t len = 0;
    *rc = loom_kv_get(c, key, 0, &data, &len);
    if (*rc) return NULL;
    json_t *j = json_loadb(data, len, 0, NULL);
    free(data);
    if (!j) *rc = LOOM_EPROTO;
    return j;
}

/* The version entry v of a model record (0: the newest), or NULL. */
json_t *loom_registry_find_version(json_t *rec, int v)
{
    json_t *versions = json_object_get(rec, "versions"), *e, *best = NULL;
    size_t i;
    json_array_foreach(versions, i, e) {
        int ev = (int)json_integer_value(json_object_get(e, "version"));
        if (v ? ev == v : (!best || ev > json_integer_value(json_object_get(best, "version")))) best = e;
        if (v && ev == v) break;
    }
    return best;
}

int loom_registry_fetch(loom_client *c, const char *name, int version, json_t **meta, char **data, size_t *len)
{
    char key[300];
    loom_registry_model_key(key, sizeof(key), name);
    int rc;
    json_t *rec = loom_registry_kv_json(c, key, &rc);
    json_t *e = rec ? loom_registry_find_version(rec, version) : NULL;
    if (!e) {
        json_decref(rec);
        return rc ? rc : LOOM_ENOTFOUND;
    }
    int v = (int)json_integer_value(json_object_get(e, "version"));
    size_t size = (size_t)json_integer_value(json_object_get(e, "size"));
    *meta = json_incref(e);
    json_decref(rec);
    if (!data) return LOOM_OK;
    char *buf = malloc(size ? size : 1);
    if (!buf) rc = LOOM_ENOMEM;
    for (size_t off = 0, i = 0; !rc && off < size; i++) {
        void *part = NULL;
        size_t plen = 0;
        loom_registry_chunk_key(key, sizeof(key), name, v, i);
        rc = loom_kv_get(c, key, 0, &part, &plen);
        if (!rc && (plen == 0 || plen > size - off)) rc = LOOM_EPROTO;
        if (!rc) memcpy(buf + off, part, plen);
        off += plen;
        free(part);
    }
    if (rc) {
        free(buf);
        json_decref(*meta);
        *meta = NULL;
        return rc;
    }
    *data = buf;
    *len = size;
    return LOOM_OK;
}
