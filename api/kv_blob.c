/* api/kv_blob.c — values of any size in the key-value table (loom.h:
 * loom_kv_put_blob and friends), for what outgrows the table's 1 MiB:
 * checkpoints and artifacts of sweeps, cached results of batch inference.
 *
 * KEY holds one line of JSON {"bytes": n, "chunks": k, "sha256": hex} and,
 * when k is 0, the n bytes right after it; otherwise the bytes are in KEY/0
 * .. KEY/k-1, chunks of BLOB_CHUNK bytes.  The chunks are written before KEY
 * and KEY is deleted before them, so a reader never takes a half-written or
 * half-deleted value for a whole one; it checks the bytes against the sha256
 * all the same. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/loom.h"

#define BLOB_CHUNK (1000u * 1000u)
#define BLOB_MAX ((size_t)1 << 30)
#define HEAD_MAX 200

static int chunk_key(const char *key, int i, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%d", key, i);
    return n < 0 || (size_t)n >= cap ? LOOM_EINVAL : LOOM_OK;
}

int loom_kv_put_blob(loom_client *c, const char *key, const void *data, size_t len)
{
    if (!c || !key || (len && !data)) return LOOM_EINVAL;
    if (len > BLOB_MAX) return LOOM_ETOOBIG;
    char head[HEAD_MAX], sha[65], part[600];
    int chunks = len + HEAD_MAX <= BLOB_CHUNK ? 0 : (int)((len + BLOB_CHUNK - 1) / BLOB_CHUNK);
    for (int i = 0; i < chunks; i++) {
        size_t off = (size_t)i * BLOB_CHUNK, n = len - off < BLOB_CHUNK ? len - off : BLOB_CHUNK;
        int rc = chunk_key(key, i, part, sizeof(part));
        if (!rc) rc = loom_kv_put(c, part, (const char *)data + off, n);
        if (rc) return rc;
    }
    loom_sha256_hex(data ? data : "", len, sha);
    int k = snprintf(head, sizeof(head), "{\"bytes\": %zu, \"chunks\": %d, \"sha256\": \"%s\"}\n", len, chunks, sha);
    size_t vlen = (size_t)k + (chunks ? 0 : len);
    char *val = malloc(vlen);
    if (!val) return LOOM_ENOMEM;
    memcpy(val, head, (size_t)k);
    if (!chunks && len) memcpy(val + k, data, len);
    int rc = loom_kv_put(c, key, val, vlen);
    free(val);
    return rc;
}

/* The header of a blob value: bytes, chunks, sha256, and where inline bytes
 * start.  -1 when it is not one. */
static int parse_head(const char *val, size_t vlen, size_t *bytes, int *chunks, char sha[65], size_t *body)
{
    const char *nl = memchr(val, '\n', vlen < HEAD_MAX ? vlen : HEAD_MAX);
    unsigned long long b = 0;
    if (!nl || sscanf(val, "{\"bytes\": %llu, \"chunks\": %d, \"sha256\": \"%64[0-9a-f]\"}", &b, chunks, sha) != 3 ||
        *chunks < 0 || b > BLOB_MAX || (*chunks == 0 && vlen - (size_t)(nl + 1 - val) != b) ||
        (*chunks > 0 && (size_t)*chunks != (b + BLOB_CHUNK - 1) / BLOB_CHUNK))
        return -1;
    *bytes = (size_t)b;
    *body = (size_t)(nl + 1 - val);
    return 0;
}

int loom_kv_get_blob(loom_client *c, const char *key, void **data, size_t *len)
{
    if (!c || !key || !data || !len) return LOOM_EINVAL;
    void *val = NULL;
    size_t vlen = 0, bytes = 0, body = 0, off = 0;
    int chunks = 0, rc = loom_kv_get(c, key, 0, &val, &vlen);
    char want[65], got[65], part[600];
    if (rc) return rc;
    if (parse_head(val, vlen, &bytes, &chunks, want, &body)) {
        free(val);
        return LOOM_EPROTO;
    }
    char *buf = malloc(bytes ? bytes : 1);
    if (buf && !chunks) {
        memcpy(buf, (char *)val + body, bytes);
        off = bytes;
    }
    free(val);
    if (!buf) return LOOM_ENOMEM;
    for (int i = 0; i < chunks; i++) {
        void *d = NULL;
        size_t n = 0;
        rc = chunk_key(key, i, part, sizeof(part));
        if (!rc) rc = loom_kv_get(c, part, 0, &d, &n);
        if (!rc && n > bytes - off) rc = LOOM_EPROTO;
        if (rc) {
            free(d);
            free(buf);
            return rc == LOOM_ENOTFOUND ? LOOM_EPROTO : rc; /* a chunk gone: torn */
        }
        memcpy(buf + off, d, n);
        off += n;
        free(d);
    }
    loom_sha256_hex(buf, off, got);
    if (off != bytes || strcmp(got, want)) {
        free(buf);
        return LOOM_EPROTO;
    }
    *data = buf;
    *len = bytes;
    return LOOM_OK;
}

int loom_kv_del_blob(loom_client *c, const char *key)
{
    if (!c || !key) return LOOM_EINVAL;
    void *val = NULL;
    size_t vlen = 0, bytes = 0, body = 0;
    int chunks = 0;
    char sha[65], part[600];
    int rc = loom_kv_get(c, key, 0, &val, &vlen);
    if (rc) return rc;
    int ok = !parse_head(val, vlen, &bytes, &chunks, sha, &body);
    free(val);
    rc = loom_kv_del(c, key); /* the header first: readers then see nothing */
    for (int i = 0; ok && i < chunks; i++)
        if (!chunk_key(key, i, part, sizeof(part))) loom_kv_del(c, part);
    return rc;
}
