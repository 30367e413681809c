/* tests/test_safetensors.c — serve/safetensors.c: writer/reader round trip
 * with metadata and alignment, a file written by hand as the format's
 * documentation shows it, and the reader's refusals of malformed files
 * (header length, JSON, dtypes, shapes, offsets out of range, overlapping,
 * leaving holes or bytes after the last tensor, sizes that disagree with the
 * shape, metadata that is not strings, every truncation). */
#include <stdint.h>
#include "loom/loom.h"
#include "serve/safetensors.h"
#include "testutil.h"

/* A file from a header text and a data buffer. */
static unsigned char *make_file(const char *header, const void *data, size_t dlen, size_t *len)
{
    size_t hlen = strlen(header);
    unsigned char *b = malloc(8 + hlen + dlen + 1);
    REQUIRE(b);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(b + 8, header, hlen);
    if (dlen) memcpy(b + 8 + hlen, data, dlen);
    *len = 8 + hlen + dlen;
    return b;
}

static void test_round_trip(void)
{
    float w[6] = {1, 2, 3, 4, 5, 6};
    int64_t ids[2] = {-1, 1LL << 40};
    uint16_t half[3] = {0x3c00, 0, 0xc000};
    loom_tensor t[3];
    int64_t ws[2] = {2, 3}, is[1] = {2}, hs[3] = {1, 3, 1};
    REQUIRE(loom_tensor_set(&t[0], "w", LOOM_DTYPE_FP32, 2, ws, w, NULL, 0) == 0);
    REQUIRE(loom_tensor_set(&t[1], "ids", LOOM_DTYPE_INT64, 1, is, ids, NULL, 0) == 0);
    REQUIRE(loom_tensor_set(&t[2], "h", LOOM_DTYPE_FP16, 3, hs, half, NULL, 0) == 0);
    const char *meta[] = {"format", "pt", "note", "é ünïcode"};
    void *buf = NULL;
    size_t len = 0;
    char err[256] = "";
    CHECK_RC(loom_st_write(t, 3, meta, 2, &buf, &len, err, sizeof err), 0);
    const unsigned char *b = buf;
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)b[i] << (8 * i);
    CHECK((8 + hlen) % 8 == 0 && b[8] == '{');
    CHECK(len == 8 + hlen + sizeof w + sizeof ids + sizeof half);
    loom_st_file *f = NULL;
    CHECK_RC(loom_st_open(buf, len, &f, err, sizeof err), 0);
    REQUIRE(f);
    CHECK(loom_st_count(f) == 3);
    const loom_tensor *tw = loom_st_find(f, "w"), *ti = loom_st_find(f, "ids"),
                      *th = loom_st_find(f, "h");
    CHECK(tw && tw->dtype == LOOM_DTYPE_FP32 && tw->ndim == 2 && tw->shape[1] == 3);
    CHECK(tw && !memcmp(tw->data, w, sizeof w));
    CHECK(ti && ti->dtype == LOOM_DTYPE_INT64 && !memcmp(ti->data, ids, sizeof ids));
    CHECK(th && th->ndim == 3 && loom_tensor_get_f32(th, 2) == -2.0f);
    CHECK(loom_st_tensor(f, 0) == tw && loom_st_tensor(f, 3) == NULL);   /* offset order */
    CHECK(!strcmp(loom_st_metadata(f, "note"), "é ünïcode"));
    CHECK(loom_st_metadata(f, "nope") == NULL && loom_st_metadata_count(f) == 2);
    const char *k, *v;
    CHECK_RC(loom_st_metadata_entry(f, 0, &k, &v), 0);
    CHECK_RC(loom_st_metadata_entry(f, 2, &k, &v), LOOM_EINVAL);
    loom_st_close(&f);
    CHECK(f == NULL);
    loom_st_close(&f);
    /* every truncation is refused */
    int refused = 1;
    for (size_t cut = 0; cut < len; cut++) {
        unsigned char *copy = malloc(cut + 1);
        memcpy(copy, buf, cut);
        if (loom_st_open(copy, cut, &f, NULL, 0) == 0) {
            refused = 0;
            loom_st_close(&f);
        }
        free(copy);
    }
    CHECK(refused);
    free(buf);
    /* the writer refuses duplicates, reserved names and lying sizes */
    t[1] = t[0];
    CHECK_RC(loom_st_write(t, 2, NULL, 0, &buf, &len, err, sizeof err), LOOM_EINVAL);
    CHECK(strstr(err, "duplicate") != NULL);
    REQUIRE(loom_tensor_set(&t[1], "__metadata__", LOOM_DTYPE_FP32, 2, ws, w, NULL, 0) == 0);
    CHECK_RC(loom_st_write(t, 2, NULL, 0, &buf, &len, err, sizeof err), LOOM_EINVAL);
    t[0].nbytes = 4;
    CHECK_RC(loom_st_write(t, 1, NULL, 0, &buf, &len, err, sizeof err), LOOM_EINVAL);
}

static void test_handmade(void)
{
    float d[3] = {1, 2, 3};
    size_t len;
    /* the shape of the format's documented example, data in reverse order,
     * and a zero-size tensor */
    unsigned char *b = make_file(
        "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[2,1],\"data_offsets\":[0,8]},"
        "\"z\":{\"dtype\":\"I32\",\"shape\":[0,4],\"data_offsets\":[12,12]},"
        "\"__metadata__\":{\"k\":\"v\"}}   ",
        d, sizeof d, &len);
    loom_st_file *f = NULL;
    char err[256] = "";
    CHECK_RC(loom_st_open(b, len, &f, err, sizeof err), 0);
    if (f) {
        CHECK(loom_st_count(f) == 3);
        CHECK(!strcmp(loom_st_tensor(f, 0)->name, "a") && loom_tensor_get_f32(loom_st_tensor(f, 0), 1) == 2);
        CHECK(loom_tensor_get_f32(loom_st_find(f, "b"), 0) == 3);
        CHECK(loom_st_find(f, "z")->nbytes == 0 && !strcmp(loom_st_metadata(f, "k"), "v"));
    }
    loom_st_close(&f);
    free(b);
    /* no tensors at all */
    b = make_file("{}", NULL, 0, &len);
    CHECK_RC(loom_st_open(b, len, &f, err, sizeof err), 0);
    CHECK(loom_st_count(f) == 0);
    loom_st_close(&f);
    free(b);
}

static void expect_refused(const char *header, size_t dlen, const char *needle)
{
    unsigned char data[64] = {0};
    size_t len;
    unsigned char *b = make_file(header, data, dlen, &len);
    loom_st_file *f = NULL;
    char err[256] = "";
    int rc = loom_st_open(b, len, &f, err, sizeof err);
    loom_test_checks++;
    if (rc == 0 || f || !strstr(err, needle)) {
        fprintf(stderr, "%s: gave %d '%s', want an error with '%s'\n", header, rc, err, needle);
        loom_test_failures++;
    }
    loom_st_close(&f);
    free(b);
}

#define E(dt, shape, off) "{\"x\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" off "}}"

static void test_malformed(void)
{
    expect_refused(E("F32", "[2]", "[0,8]"), 4, "outside");
    expect_refused(E("F32", "[2]", "[0,4]"), 4, "shape needs");
    expect_refused(E("F32", "[1]", "[4,0]"), 4, "outside");
    expect_refused(E("F32", "[1]", "[4,8]"), 8, "starts at byte 4");     /* a hole */
    expect_refused(E("F32", "[1]", "[0,4]"), 8, "cover 4 of the 8");     /* bytes after */
    expect_refused(E("F8_E4M3", "[1]", "[0,1]"), 1, "not supported");
    expect_refused(E("Q4", "[1]", "[0,1]"), 1, "not supported");
    expect_refused(E("F32", "[-1]", "[0,4]"), 4, "shape");
    expect_refused(E("F32", "[1.5]", "[0,4]"), 4, "shape");
    expect_refused(E("F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]"), 4, "dims");
    expect_refused(E("F32", "[4294967296,4294967296]", "[0,4]"), 4, "too large");
    expect_refused(E("F32", "[1]", "[0]"), 4, "data_offsets");
    expect_refused(E("F32", "[1]", "[0,18446744073709551615]"), 4, "safetensors header");
    expect_refused("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}}", 4,
                   "exactly");
    expect_refused("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                   "\"y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                   "overlap");
    expect_refused("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                   "\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                   "duplicate");
    expect_refused("{\"__metadata__\":{\"k\":1}}", 0, "not a string");
    expect_refused("{\"__metadata__\":[]}", 0, "not an object");
    expect_refused("{\"x\":3}", 0, "not an object");
    expect_refused("{\"x\":", 0, "safetensors header");
    expect_refused("[1, 2]", 0, "not a JSON object");
    expect_refused("{\"a\\u0000b\":{}}", 0, "safetensors header");
    /* header lengths */
    unsigned char small[8] = {0};
    loom_st_file *f = NULL;
    char err[256];
    CHECK_RC(loom_st_open(small, 4, &f, err, sizeof err), LOOM_EINVAL);
    CHECK_RC(loom_st_open(small, 8, &f, err, sizeof err), LOOM_EINVAL);
    CHECK_RC(loom_st_open(NULL, 0, &f, err, sizeof err), LOOM_EINVAL);
    unsigned char huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    CHECK_RC(loom_st_open(huge, sizeof huge, &f, err, sizeof err), LOOM_EINVAL);
    CHECK(strstr(err, "header length") != NULL);
    CHECK(f == NULL);
}

int main(void)
{
    test_round_trip();
    test_handmade();
    test_malformed();
    return TEST_DONE();
}
