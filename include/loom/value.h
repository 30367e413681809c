/* loom/value.h — msgpack helpers for structured task arguments and results.
 *
 * loom_pack builds a msgpack byte string; loom_unpack reads one back with type
 * and bounds checks (never reads past the buffer, whatever the bytes).  Both
 * are used by drivers (to make arguments) and by task libraries (to read them
 * and to return results).  Wraps msgpack-c.
 *
 *     loom_pack *p = loom_pack_new();
 *     loom_pack_array(p, 2); loom_pack_i64(p, 7); loom_pack_str(p, "x", 1);
 *     loom_put(c, loom_pack_data(p), loom_pack_size(p), &ref);
 *     loom_pack_destroy(&p);
 */
#ifndef LOOM_VALUE_H
#define LOOM_VALUE_H

#include "loom/export.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_pack loom_pack;

LOOM_API loom_pack *loom_pack_new(void);            /* NULL on out of memory */
LOOM_API void loom_pack_destroy(loom_pack **p);     /* NULL-safe; sets *p to NULL */
LOOM_API void loom_pack_reset(loom_pack *p);        /* empty it, keep the buffer */
LOOM_API const void *loom_pack_data(const loom_pack *p);
LOOM_API size_t loom_pack_size(const loom_pack *p);

/* Each returns 0 or LOOM_ENOMEM. */
LOOM_API int loom_pack_nil(loom_pack *p);
LOOM_API int loom_pack_bool(loom_pack *p, int v);
LOOM_API int loom_pack_i64(loom_pack *p, int64_t v);
LOOM_API int loom_pack_u64(loom_pack *p, uint64_t v);
LOOM_API int loom_pack_f64(loom_pack *p, double v);
LOOM_API int loom_pack_str(loom_pack *p, const char *s, size_t len);
LOOM_API int loom_pack_cstr(loom_pack *p, const char *s);   /* strlen(s) */
LOOM_API int loom_pack_bin(loom_pack *p, const void *data, size_t len);
LOOM_API int loom_pack_array(loom_pack *p, uint32_t n);     /* then n values */
LOOM_API int loom_pack_map(loom_pack *p, uint32_t n);       /* then n key, value pairs */

/* A cursor over msgpack bytes (does not copy or own them). */
typedef struct loom_unpack {
    const uint8_t *buf;
    size_t len;
    size_t pos;
} loom_unpack;

enum {
    LOOM_TYPE_NIL = 0, LOOM_TYPE_BOOL, LOOM_TYPE_INT, LOOM_TYPE_FLOAT,
    LOOM_TYPE_STR, LOOM_TYPE_BIN, LOOM_TYPE_ARRAY, LOOM_TYPE_MAP,
    LOOM_TYPE_EXT, LOOM_TYPE_INVALID = -1
};

LOOM_API void loom_unpack_init(loom_unpack *u, const void *data, size_t len);
/* Type of the next value, or LOOM_TYPE_INVALID at the end or on bad bytes. */
LOOM_API int loom_unpack_peek(const loom_unpack *u);
/* Each reads the next value if it has the wanted type and advances; otherwise
 * returns LOOM_EPROTO and leaves the cursor where it was.  Strings and binaries
 * point into the buffer (not NUL-terminated).  Integers: any msgpack int that
 * fits the target type. Floats: float32, float64 or an integer. */
LOOM_API int loom_unpack_nil(loom_unpack *u);
LOOM_API int loom_unpack_bool(loom_unpack *u, int *v);
LOOM_API int loom_unpack_i64(loom_unpack *u, int64_t *v);
LOOM_API int loom_unpack_u64(loom_unpack *u, uint64_t *v);
LOOM_API int loom_unpack_f64(loom_unpack *u, double *v);
LOOM_API int loom_unpack_str(loom_unpack *u, const char **s, size_t *len);
LOOM_API int loom_unpack_bin(loom_unpack *u, const void **data, size_t *len); /* bin or str */
LOOM_API int loom_unpack_array(loom_unpack *u, uint32_t *n);
LOOM_API int loom_unpack_map(loom_unpack *u, uint32_t *n);
/* Skip one whole value (with everything nested in it). Depth-limited (64). */
LOOM_API int loom_unpack_skip(loom_unpack *u);
/* 1 when every byte has been read. */
LOOM_API int loom_unpack_done(const loom_unpack *u);

/* Convert one msgpack value to JSON text (malloc'd, NUL-terminated; caller
 * frees).  Binary values that are not valid UTF-8 become {"base64": "..."}. */
LOOM_API int loom_msgpack_to_json(const void *data, size_t len, char **json);

#ifdef __cplusplus
}
#endif
#endif
