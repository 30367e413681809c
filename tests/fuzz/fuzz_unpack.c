/* tests/fuzz/fuzz_unpack.c — fuzz target for the msgpack reader and the
 * msgpack-to-JSON converter (runtime/value.c): any bytes must be read within
 * bounds, and the two must agree on what one well-formed value is. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "loom/loom.h"
#include "loom/value.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Read the bytes with the typed readers, as a task library would. */
static void walk_typed(const uint8_t *data, size_t size)
{
    loom_unpack u;
    loom_unpack_init(&u, data, size);
    while (!loom_unpack_done(&u)) {
        size_t before = u.pos;
        const void *d;
        const char *s;
        size_t n;
        int64_t i;
        uint64_t uv;
        double f;
        int b;
        uint32_t cnt;
        switch (loom_unpack_peek(&u)) {
        case LOOM_TYPE_NIL: loom_unpack_nil(&u); break;
        case LOOM_TYPE_BOOL: loom_unpack_bool(&u, &b); break;
        case LOOM_TYPE_INT:
            if (loom_unpack_i64(&u, &i)) loom_unpack_u64(&u, &uv);
            break;
        case LOOM_TYPE_FLOAT: loom_unpack_f64(&u, &f); break;
        case LOOM_TYPE_STR: loom_unpack_str(&u, &s, &n); break;
        case LOOM_TYPE_BIN: loom_unpack_bin(&u, &d, &n); break;
        case LOOM_TYPE_ARRAY: loom_unpack_array(&u, &cnt); break;
        case LOOM_TYPE_MAP: loom_unpack_map(&u, &cnt); break;
        case LOOM_TYPE_EXT: loom_unpack_skip(&u); break;
        default: return;
        }
        if (u.pos <= before || u.pos > size) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    loom_unpack u;
    loom_unpack_init(&u, data, size);
    int skip_rc = loom_unpack_skip(&u);
    if (skip_rc && u.pos != 0) abort();
    int one_value = skip_rc == 0 && loom_unpack_done(&u);
    while (!skip_rc && !loom_unpack_done(&u)) skip_rc = loom_unpack_skip(&u);
    if (u.pos > size) abort();

    char *json = NULL;
    int rc = loom_msgpack_to_json(data, size, &json);
    if (rc == 0) {
        if (!one_value || !json) abort();
        json_error_t jerr;
        json_t *back = json_loads(json, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        /* The output must be valid JSON (jansson refuses to load a key with
         * "\u0000" in it, which is valid JSON all the same). */
        if (!back && json_error_code(&jerr) != json_error_null_byte_in_key) abort();
        json_decref(back);
    } else if (json || (one_value && rc != LOOM_ETOOBIG && rc != LOOM_ENOMEM)) {
        abort();
    }
    free(json);
    walk_typed(data, size);
    return 0;
}
