/* tests/test_value.c — loom/value.h: pack/unpack round trips of every type,
 * integer range checks, cursors left in place on mismatch, truncated input at
 * every length, skipping, the nesting limit, and msgpack-to-JSON output. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "loom/loom.h"
#include "loom/value.h"
#include "tests/testutil.h"

/* A heap copy of exactly n bytes, so that AddressSanitizer sees any read past
 * the end. */
static uint8_t *exact_copy(const void *data, size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    REQUIRE(p);
    if (n) memcpy(p, data, n);
    return p;
}

static void test_scalars(void)
{
    loom_pack *p = loom_pack_new();
    REQUIRE(p);
    const int64_t ints[] = {0, 1, 127, 128, 255, 256, 65535, 65536, 4294967295LL,
                            4294967296LL, -1, -32, -33, -128, -129, -32768, -32769,
                            INT32_MIN, (int64_t)INT32_MIN - 1, INT64_MIN, INT64_MAX};
    const size_t nints = sizeof ints / sizeof ints[0];
    CHECK_RC(loom_pack_nil(p), 0);
    CHECK_RC(loom_pack_bool(p, 1), 0);
    CHECK_RC(loom_pack_bool(p, 0), 0);
    for (size_t i = 0; i < nints; i++) CHECK_RC(loom_pack_i64(p, ints[i]), 0);
    CHECK_RC(loom_pack_u64(p, UINT64_MAX), 0);
    CHECK_RC(loom_pack_u64(p, 5), 0);
    CHECK_RC(loom_pack_f64(p, 1.5), 0);
    CHECK_RC(loom_pack_f64(p, -0.0), 0);
    CHECK_RC(loom_pack_f64(p, 1e300), 0);

    loom_unpack u;
    loom_unpack_init(&u, loom_pack_data(p), loom_pack_size(p));
    int b = -1;
    CHECK(loom_unpack_peek(&u) == LOOM_TYPE_NIL);
    CHECK_RC(loom_unpack_nil(&u), 0);
    CHECK(loom_unpack_peek(&u) == LOOM_TYPE_BOOL);
    CHECK_RC(loom_unpack_bool(&u, &b), 0);
    CHECK(b == 1);
    CHECK_RC(loom_unpack_bool(&u, &b), 0);
    CHECK(b == 0);
    for (size_t i = 0; i < nints; i++) {
        int64_t v = 0;
        CHECK(loom_unpack_peek(&u) == LOOM_TYPE_INT);
        CHECK_RC(loom_unpack_i64(&u, &v), 0);
        CHECK(v == ints[i]);
    }
    uint64_t uv = 0;
    int64_t iv = 0;
    size_t pos = u.pos;
    CHECK_RC(loom_unpack_i64(&u, &iv), LOOM_EPROTO);   /* UINT64_MAX does not fit */
    CHECK(u.pos == pos);
    CHECK_RC(loom_unpack_u64(&u, &uv), 0);
    CHECK(uv == UINT64_MAX);
    double d = 0;
    CHECK_RC(loom_unpack_f64(&u, &d), 0);              /* an integer reads as a float */
    CHECK(d == 5.0);
    CHECK(loom_unpack_peek(&u) == LOOM_TYPE_FLOAT);
    CHECK_RC(loom_unpack_f64(&u, &d), 0);
    CHECK(d == 1.5);
    CHECK_RC(loom_unpack_f64(&u, &d), 0);
    CHECK(d == 0.0 && signbit(d));
    CHECK_RC(loom_unpack_f64(&u, &d), 0);
    CHECK(d == 1e300);
    CHECK(loom_unpack_done(&u));
    CHECK(loom_unpack_peek(&u) == LOOM_TYPE_INVALID);
    CHECK_RC(loom_unpack_nil(&u), LOOM_EPROTO);
    loom_pack_destroy(&p);
    CHECK(p == NULL);
    loom_pack_destroy(&p);   /* NULL-safe */
}

static void test_negative_to_u64(void)
{
    loom_pack *p = loom_pack_new();
    REQUIRE(p);
    CHECK_RC(loom_pack_i64(p, -1), 0);
    loom_unpack u;
    loom_unpack_init(&u, loom_pack_data(p), loom_pack_size(p));
    uint64_t v = 0;
    CHECK_RC(loom_unpack_u64(&u, &v), LOOM_EPROTO);
    CHECK(u.pos == 0);
    loom_pack_destroy(&p);

    /* A float32 written by hand: 0xca + big-endian 1.25f. */
    const uint8_t f32[] = {0xca, 0x3f, 0xa0, 0x00, 0x00};
    double d = 0;
    loom_unpack_init(&u, f32, sizeof f32);
    CHECK(loom_unpack_peek(&u) == LOOM_TYPE_FLOAT);
    CHECK_RC(loom_unpack_f64(&u, &d), 0);
    CHECK(d == 1.25);
}

static void test_strings_and_containers(void)
{
    static char big[70000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (char)('a' + i % 26);
    const size_t lens[] = {0, 1, 31, 32, 255, 256, 65535, 65536, sizeof big};
    const size_t nlens = sizeof lens / sizeof lens[0];
    loom_pack *p = loom_pack_new();
    REQUIRE(p);
    for (size_t i = 0; i < nlens; i++) CHECK_RC(loom_pack_str(p, big, lens[i]), 0);
    for (size_t i = 0; i < nlens; i++) CHECK_RC(loom_pack_bin(p, big, lens[i]), 0);
    CHECK_RC(loom_pack_cstr(p, "hello"), 0);
    CHECK_RC(loom_pack_array(p, 3), 0);
    CHECK_RC(loom_pack_array(p, 70000), 0);
    CHECK_RC(loom_pack_map(p, 2), 0);
    CHECK_RC(loom_pack_map(p, 100000), 0);

    loom_unpack u;
    loom_unpack_init(&u, loom_pack_data(p), loom_pack_size(p));
    for (size_t i = 0; i < nlens; i++) {
        const char *s = NULL;
        size_t n = 0;
        CHECK(loom_unpack_peek(&u) == LOOM_TYPE_STR);
        CHECK_RC(loom_unpack_str(&u, &s, &n), 0);
        CHECK(n == lens[i] && memcmp(s, big, n) == 0);
    }
    for (size_t i = 0; i < nlens; i++) {
        const void *data = NULL;
        const char *s;
        size_t n = 0, pos = u.pos;
        CHECK(loom_unpack_peek(&u) == LOOM_TYPE_BIN);
        CHECK_RC(loom_unpack_str(&u, &s, &n), LOOM_EPROTO);   /* bin is not str */
        CHECK(u.pos == pos);
        CHECK_RC(loom_unpack_bin(&u, &data, &n), 0);
        CHECK(n == lens[i] && memcmp(data, big, n) == 0);
    }
    const void *data;
    size_t n;
    CHECK_RC(loom_unpack_bin(&u, &data, &n), 0);              /* str reads as bin */
    CHECK(n == 5 && memcmp(data, "hello", 5) == 0);
    uint32_t count = 0;
    CHECK(loom_unpack_peek(&u) == LOOM_TYPE_ARRAY);
    CHECK_RC(loom_unpack_map(&u, &count), LOOM_EPROTO);
    CHECK_RC(loom_unpack_array(&u, &count), 0);
    CHECK(count == 3);
    CHECK_RC(loom_unpack_array(&u, &count), 0);
    CHECK(count == 70000);
    CHECK(loom_unpack_peek(&u) == LOOM_TYPE_MAP);
    CHECK_RC(loom_unpack_map(&u, &count), 0);
    CHECK(count == 2);
    CHECK_RC(loom_unpack_map(&u, &count), 0);
    CHECK(count == 100000);
    CHECK(loom_unpack_done(&u));

    loom_pack_reset(p);
    CHECK(loom_pack_size(p) == 0);
    CHECK_RC(loom_pack_nil(p), 0);
    CHECK(loom_pack_size(p) == 1);
    CHECK_RC(loom_pack_str(p, NULL, 3), LOOM_EINVAL);
    CHECK_RC(loom_pack_str(p, NULL, 0), 0);
    loom_pack_destroy(&p);
}

static void test_mismatch_keeps_cursor(void)
{
    loom_pack *p = loom_pack_new();
    REQUIRE(p);
    CHECK_RC(loom_pack_cstr(p, "x"), 0);
    loom_unpack u;
    loom_unpack_init(&u, loom_pack_data(p), loom_pack_size(p));
    int64_t i;
    uint64_t uv;
    double d;
    int b;
    uint32_t n;
    CHECK_RC(loom_unpack_nil(&u), LOOM_EPROTO);
    CHECK_RC(loom_unpack_bool(&u, &b), LOOM_EPROTO);
    CHECK_RC(loom_unpack_i64(&u, &i), LOOM_EPROTO);
    CHECK_RC(loom_unpack_u64(&u, &uv), LOOM_EPROTO);
    CHECK_RC(loom_unpack_f64(&u, &d), LOOM_EPROTO);
    CHECK_RC(loom_unpack_array(&u, &n), LOOM_EPROTO);
    CHECK_RC(loom_unpack_map(&u, &n), LOOM_EPROTO);
    CHECK(u.pos == 0);
    loom_pack_destroy(&p);

    const uint8_t never_used[] = {0xc1};
    loom_unpack_init(&u, never_used, 1);
    CHECK(loom_unpack_peek(&u) == LOOM_TYPE_INVALID);
    CHECK_RC(loom_unpack_skip(&u), LOOM_EPROTO);
    CHECK(u.pos == 0);
}

/* A value with every type in it, nested. */
static loom_pack *sample_value(void)
{
    loom_pack *p = loom_pack_new();
    REQUIRE(p);
    const uint8_t bin[] = {0, 1, 2, 0xff};
    CHECK_RC(loom_pack_map(p, 3), 0);
    CHECK_RC(loom_pack_cstr(p, "ints"), 0);
    CHECK_RC(loom_pack_array(p, 4), 0);
    CHECK_RC(loom_pack_i64(p, -70000), 0);
    CHECK_RC(loom_pack_u64(p, UINT64_MAX), 0);
    CHECK_RC(loom_pack_i64(p, 3), 0);
    CHECK_RC(loom_pack_f64(p, 2.5), 0);
    CHECK_RC(loom_pack_i64(p, 7), 0);   /* a non-string key */
    CHECK_RC(loom_pack_array(p, 4), 0);
    CHECK_RC(loom_pack_nil(p), 0);
    CHECK_RC(loom_pack_bool(p, 1), 0);
    CHECK_RC(loom_pack_bin(p, bin, sizeof bin), 0);
    CHECK_RC(loom_pack_str(p, "a longer string of text, more than 31 bytes", 43), 0);
    CHECK_RC(loom_pack_cstr(p, "m"), 0);
    CHECK_RC(loom_pack_map(p, 1), 0);
    CHECK_RC(loom_pack_cstr(p, "k"), 0);
    CHECK_RC(loom_pack_array(p, 0), 0);
    return p;
}

static void test_truncated_prefixes(void)
{
    loom_pack *p = sample_value();
    size_t full = loom_pack_size(p);
    for (size_t len = 0; len <= full; len++) {
        uint8_t *buf = exact_copy(loom_pack_data(p), len);
        loom_unpack u;
        loom_unpack_init(&u, buf, len);
        int rc = loom_unpack_skip(&u);
        if (len < full) {
            CHECK(rc == LOOM_EPROTO);
            CHECK(u.pos == 0);
        } else {
            CHECK(rc == 0);
            CHECK(loom_unpack_done(&u));
        }
        char *json = NULL;
        rc = loom_msgpack_to_json(buf, len, &json);
        CHECK(len < full ? rc == LOOM_EPROTO && json == NULL : rc == 0 && json != NULL);
        free(json);
        /* Every typed reader at every offset stays inside the buffer. */
        for (size_t at = 0; at <= len; at++) {
            loom_unpack v;
            loom_unpack_init(&v, buf, len);
            v.pos = at;
            const void *d;
            const char *s;
            size_t n;
            int64_t i;
            uint64_t uv;
            double f;
            int b;
            uint32_t cnt;
            (void)loom_unpack_peek(&v);
            (void)loom_unpack_nil(&v);
            (void)loom_unpack_bool(&v, &b);
            (void)loom_unpack_i64(&v, &i);
            (void)loom_unpack_u64(&v, &uv);
            (void)loom_unpack_f64(&v, &f);
            (void)loom_unpack_str(&v, &s, &n);
            (void)loom_unpack_bin(&v, &d, &n);
            (void)loom_unpack_array(&v, &cnt);
            (void)loom_unpack_map(&v, &cnt);
            (void)loom_unpack_skip(&v);
            CHECK(v.pos <= len);
        }
        free(buf);
    }
    loom_pack_destroy(&p);

    /* Headers that claim more than there is. */
    const uint8_t liars[][6] = {
        {0xdb, 0xff, 0xff, 0xff, 0xff, 'a'},  /* str32 of 4 GiB */
        {0xc6, 0x00, 0x00, 0x01, 0x00, 'a'},  /* bin32 of 256 */
        {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01}, /* array32 of 4G items */
        {0xdf, 0xff, 0xff, 0xff, 0xff, 0x01}, /* map32 of 4G pairs */
        {0xc9, 0xff, 0xff, 0xff, 0xff, 0x01}, /* ext32 */
        {0xd8, 0x01, 0x02, 0x03, 0x04, 0x05}, /* fixext16 */
    };
    for (size_t k = 0; k < sizeof liars / sizeof liars[0]; k++) {
        uint8_t *buf = exact_copy(liars[k], 6);
        loom_unpack u;
        loom_unpack_init(&u, buf, 6);
        CHECK_RC(loom_unpack_skip(&u), LOOM_EPROTO);
        char *json = NULL;
        CHECK_RC(loom_msgpack_to_json(buf, 6, &json), LOOM_EPROTO);
        free(buf);
    }
}

static void test_skip_nested(void)
{
    loom_pack *p = sample_value();
    CHECK_RC(loom_pack_cstr(p, "next"), 0);
    loom_unpack u;
    loom_unpack_init(&u, loom_pack_data(p), loom_pack_size(p));
    CHECK_RC(loom_unpack_skip(&u), 0);
    const char *s;
    size_t n;
    CHECK_RC(loom_unpack_str(&u, &s, &n), 0);
    CHECK(n == 4 && memcmp(s, "next", 4) == 0);
    CHECK(loom_unpack_done(&u));
    loom_pack_destroy(&p);
}

/* depth nested arrays around one empty array: [[...[]...]] */
static loom_pack *nested_arrays(int depth, int as_maps)
{
    loom_pack *p = loom_pack_new();
    REQUIRE(p);
    for (int i = 0; i < depth - 1; i++) {
        if (as_maps) {
            CHECK_RC(loom_pack_map(p, 1), 0);
            CHECK_RC(loom_pack_cstr(p, "k"), 0);
        } else {
            CHECK_RC(loom_pack_array(p, 1), 0);
        }
    }
    CHECK_RC(loom_pack_array(p, 0), 0);
    return p;
}

static void test_depth_limit(void)
{
    for (int as_maps = 0; as_maps < 2; as_maps++) {
        loom_pack *ok = nested_arrays(64, as_maps), *deep = nested_arrays(65, as_maps);
        loom_unpack u;
        char *json = NULL;
        loom_unpack_init(&u, loom_pack_data(ok), loom_pack_size(ok));
        CHECK_RC(loom_unpack_skip(&u), 0);
        CHECK(loom_unpack_done(&u));
        CHECK_RC(loom_msgpack_to_json(loom_pack_data(ok), loom_pack_size(ok), &json), 0);
        free(json);
        loom_unpack_init(&u, loom_pack_data(deep), loom_pack_size(deep));
        CHECK_RC(loom_unpack_skip(&u), LOOM_EPROTO);
        CHECK(u.pos == 0);
        json = NULL;
        CHECK_RC(loom_msgpack_to_json(loom_pack_data(deep), loom_pack_size(deep), &json),
                 LOOM_EPROTO);
        CHECK(json == NULL);
        loom_pack_destroy(&ok);
        loom_pack_destroy(&deep);
    }
}

/* Convert bytes and compare with the expected JSON text (NULL: want error). */
static void check_json(const void *data, size_t len, const char *want, int want_rc)
{
    char *json = NULL;
    int rc = loom_msgpack_to_json(data, len, &json);
    CHECK_RC(rc, want_rc);
    if (want) {
        CHECK(json && strcmp(json, want) == 0);
        if (json && strcmp(json, want) != 0)
            fprintf(stderr, "  got  %s\n  want %s\n", json, want);
    } else {
        CHECK(json == NULL);
    }
    free(json);
}

static void check_pack_json(loom_pack *p, const char *want)
{
    check_json(loom_pack_data(p), loom_pack_size(p), want, 0);
    loom_pack_reset(p);
}

static void test_to_json(void)
{
    loom_pack *p = sample_value();
    check_pack_json(p, "{\"ints\":[-70000,1.8446744073709552e19,3,2.5],"
                       "\"7\":[null,true,{\"base64\":\"AAEC/w==\"},"
                       "\"a longer string of text, more than 31 bytes\"],"
                       "\"m\":{\"k\":[]}}");
    loom_pack_bin(p, "hi", 2);
    check_pack_json(p, "\"hi\"");
    loom_pack_str(p, "\xff\xfe", 2);                  /* a str that is not UTF-8 */
    check_pack_json(p, "{\"base64\":\"//4=\"}");
    loom_pack_str(p, "a\0b", 3);
    check_pack_json(p, "\"a\\u0000b\"");
    loom_pack_f64(p, NAN);
    check_pack_json(p, "null");
    loom_pack_array(p, 3);
    loom_pack_f64(p, INFINITY);
    loom_pack_f64(p, -INFINITY);
    loom_pack_f64(p, 0.1);
    check_pack_json(p, "[null,null,0.1]");
    loom_pack_array(p, 2);
    loom_pack_f64(p, 0.1);
    loom_pack_f64(p, 1.0 / 3);
    check_pack_json(p, "[0.1,0.3333333333333333]");
    /* One precision per document: a value that needs 17 digits shows all reals
     * with 17, exact but longer. */
    loom_pack_array(p, 2);
    loom_pack_f64(p, 0.1);
    loom_pack_f64(p, 0.1 + 0.2);
    check_pack_json(p, "[0.10000000000000001,0.30000000000000004]");
    loom_pack_map(p, 3);
    loom_pack_array(p, 2);
    loom_pack_i64(p, 1);
    loom_pack_cstr(p, "x");
    loom_pack_bool(p, 0);
    loom_pack_nil(p);
    loom_pack_i64(p, 1);
    loom_pack_bin(p, "k", 1);
    loom_pack_i64(p, 2);
    check_pack_json(p, "{\"[1,\\\"x\\\"]\":false,\"null\":1,\"k\":2}");
    loom_pack_destroy(&p);

    const uint8_t ext[] = {0xc7, 0x03, 0x05, 'a', 'b', 'c'};
    check_json(ext, sizeof ext, "{\"ext\":5,\"base64\":\"YWJj\"}", 0);
    const uint8_t fixext[] = {0xd4, 0xff, 0x00};
    check_json(fixext, sizeof fixext, "{\"ext\":-1,\"base64\":\"AA==\"}", 0);
    const uint8_t f32[] = {0xca, 0x3d, 0xcc, 0xcc, 0xcd};   /* 0.1f */
    check_json(f32, sizeof f32, "0.1", 0);
    const uint8_t trailing[] = {0x01, 0x02};
    check_json(trailing, sizeof trailing, NULL, LOOM_EPROTO);
    check_json("", 0, NULL, LOOM_EPROTO);
    char *json;
    CHECK_RC(loom_msgpack_to_json(NULL, 1, &json), LOOM_EINVAL);
}

/* Keys that are maps whose keys are maps...: the escaping doubles per level,
 * so the key text limit turns a few bytes into an error, not gigabytes. */
static void test_key_blowup(void)
{
    loom_pack *p = loom_pack_new();
    REQUIRE(p);
    for (int i = 0; i < 40; i++) loom_pack_map(p, 1);
    loom_pack_cstr(p, "\"");
    for (int i = 0; i < 40; i++) loom_pack_nil(p);
    char *json = NULL;
    CHECK_RC(loom_msgpack_to_json(loom_pack_data(p), loom_pack_size(p), &json), LOOM_ETOOBIG);
    CHECK(json == NULL);
    loom_pack_destroy(&p);
}

int main(void)
{
    test_scalars();
    test_negative_to_u64();
    test_strings_and_containers();
    test_mismatch_keeps_cursor();
    test_truncated_prefixes();
    test_skip_nested();
    test_depth_limit();
    test_to_json();
    test_key_blowup();
    return TEST_DONE();
}
