/* tests/test_tensor.c — serve/tensor.c: data type names and sizes, shape
 * arithmetic with overflow, element conversion, the LTN1 container round
 * trip and alignment, and the decoder's refusals of malformed bytes (every
 * truncation of a valid container, bad magic, counts, dtypes, dims, sizes,
 * padding, duplicate names, stray bytes). */
#include <math.h>
#include <stdint.h>
#include "loom/loom.h"
#include "serve/tensor.h"
#include "testutil.h"

static void test_dtypes(void)
{
    CHECK(loom_tensor_dtype_size(LOOM_DTYPE_FP32) == 4 && loom_tensor_dtype_size(LOOM_DTYPE_INT64) == 8);
    CHECK(loom_tensor_dtype_size(LOOM_DTYPE_BOOL) == 1 && loom_tensor_dtype_size(LOOM_DTYPE_BF16) == 2);
    CHECK(loom_tensor_dtype_size(LOOM_DTYPE_INVALID) == 0 && loom_tensor_dtype_size((loom_tensor_dtype)99) == 0);
    for (int i = 1; i < LOOM_DTYPE_COUNT_; i++)
        CHECK(loom_tensor_dtype_from_name(loom_tensor_dtype_name((loom_tensor_dtype)i)) == (loom_tensor_dtype)i);
    CHECK(!strcmp(loom_tensor_dtype_name(LOOM_DTYPE_FP64), "FP64"));
    CHECK(loom_tensor_dtype_from_name("fp32") == LOOM_DTYPE_INVALID);
    CHECK(loom_tensor_dtype_from_name("BYTES") == LOOM_DTYPE_INVALID);
    CHECK(loom_tensor_dtype_from_name(NULL) == LOOM_DTYPE_INVALID);
    CHECK(loom_tensor_dtype_name(LOOM_DTYPE_INVALID) == NULL);
}

static void test_shapes(void)
{
    int64_t numel;
    size_t nbytes;
    int64_t s[3] = {2, 3, 4};
    CHECK_RC(loom_tensor_shape_size(LOOM_DTYPE_FP64, 3, s, &numel, &nbytes), 0);
    CHECK(numel == 24 && nbytes == 192);
    CHECK_RC(loom_tensor_shape_size(LOOM_DTYPE_FP32, 0, NULL, &numel, &nbytes), 0);
    CHECK(numel == 1 && nbytes == 4);   /* a scalar */
    int64_t zero[2] = {0, INT64_MAX};
    CHECK_RC(loom_tensor_shape_size(LOOM_DTYPE_FP32, 2, zero, &numel, &nbytes), 0);
    CHECK(numel == 0 && nbytes == 0);
    int64_t big[2] = {(int64_t)1 << 40, (int64_t)1 << 40};
    CHECK_RC(loom_tensor_shape_size(LOOM_DTYPE_UINT8, 2, big, &numel, &nbytes), LOOM_ETOOBIG);
    int64_t edge[1] = {INT64_MAX / 2};
    CHECK_RC(loom_tensor_shape_size(LOOM_DTYPE_FP32, 1, edge, &numel, &nbytes), LOOM_ETOOBIG);
    int64_t neg[1] = {-1};
    CHECK_RC(loom_tensor_shape_size(LOOM_DTYPE_FP32, 1, neg, NULL, NULL), LOOM_EINVAL);
    CHECK_RC(loom_tensor_shape_size(LOOM_DTYPE_FP32, 9, s, NULL, NULL), LOOM_EINVAL);
    CHECK_RC(loom_tensor_shape_size(LOOM_DTYPE_INVALID, 1, s, NULL, NULL), LOOM_EINVAL);
}

static void test_conversion(void)
{
    loom_tensor t;
    float out[4];
    int64_t i64[3] = {-5, 0, 1 << 20};
    int64_t s3[1] = {3}, s4[1] = {4};
    CHECK_RC(loom_tensor_set(&t, "a", LOOM_DTYPE_INT64, 1, s3, i64, NULL, 0), 0);
    loom_tensor_to_f32(&t, out);
    CHECK(out[0] == -5 && out[1] == 0 && out[2] == 1048576);
    uint16_t half[4] = {0x3c00, 0xc000, 0x3800, 0x0001};   /* 1, -2, 0.5, 2^-24 */
    CHECK_RC(loom_tensor_set(&t, "h", LOOM_DTYPE_FP16, 1, s4, half, NULL, 0), 0);
    loom_tensor_to_f32(&t, out);
    CHECK(out[0] == 1 && out[1] == -2 && out[2] == 0.5f && out[3] == ldexpf(1, -24));
    uint16_t bf[1] = {0x3f80};
    int64_t s1[1] = {1};
    CHECK_RC(loom_tensor_set(&t, "b", LOOM_DTYPE_BF16, 1, s1, bf, NULL, 0), 0);
    CHECK(loom_tensor_get_f32(&t, 0) == 1.0f);
    uint8_t bools[3] = {0, 1, 7};
    CHECK_RC(loom_tensor_set(&t, "c", LOOM_DTYPE_BOOL, 1, s3, bools, NULL, 0), 0);
    loom_tensor_to_f32(&t, out);
    CHECK(out[0] == 0 && out[1] == 1 && out[2] == 1);
    double d[3] = {1.5, -2.25, 1e300};
    CHECK_RC(loom_tensor_set(&t, "d", LOOM_DTYPE_FP64, 1, s3, d, NULL, 0), 0);
    CHECK(loom_tensor_get_f64(&t, 1) == -2.25 && isinf(loom_tensor_get_f32(&t, 2)));
    char err[128] = "";
    CHECK_RC(loom_tensor_set(&t, "", LOOM_DTYPE_FP32, 1, s3, d, err, sizeof err), LOOM_EINVAL);
    CHECK(strstr(err, "name") != NULL);
    CHECK_RC(loom_tensor_set(&t, "x", LOOM_DTYPE_FP32, 1, s3, NULL, err, sizeof err), LOOM_EINVAL);
}

/* Three tensors of odd sizes, so that padding is exercised. */
static void make_sample(loom_tensor t[4], float *f, int64_t *l, uint8_t *u)
{
    for (int i = 0; i < 6; i++) f[i] = (float)i * 0.5f - 1;
    for (int i = 0; i < 3; i++) l[i] = (int64_t)i * 1000000007LL - 5;
    u[0] = 42;
    int64_t fs[2] = {2, 3}, ls[1] = {3}, es[2] = {0, 5};
    REQUIRE(loom_tensor_set(&t[0], "input", LOOM_DTYPE_FP32, 2, fs, f, NULL, 0) == 0);
    REQUIRE(loom_tensor_set(&t[1], "label", LOOM_DTYPE_INT64, 1, ls, l, NULL, 0) == 0);
    REQUIRE(loom_tensor_set(&t[2], "scalar_u8", LOOM_DTYPE_UINT8, 0, NULL, u, NULL, 0) == 0);
    REQUIRE(loom_tensor_set(&t[3], "empty", LOOM_DTYPE_BOOL, 2, es, NULL, NULL, 0) == 0);
}

static void test_round_trip(void)
{
    loom_tensor t[4], back[8];
    float f[6];
    int64_t l[3];
    uint8_t u[1];
    make_sample(t, f, l, u);
    void *buf = NULL;
    size_t len = 0, size = 0;
    CHECK_RC(loom_tensors_encoded_size(t, 4, &size, NULL, 0), 0);
    CHECK_RC(loom_tensors_encode_alloc(t, 4, &buf, &len, NULL, 0), 0);
    CHECK(len == size && !memcmp(buf, "LTN1", 4));
    int n = -1;
    char err[256] = "";
    CHECK_RC(loom_tensors_decode(buf, len, back, 8, &n, err, sizeof err), 0);
    CHECK(n == 4);
    for (int i = 0; i < n && i < 4; i++) {
        CHECK(!strcmp(back[i].name, t[i].name) && back[i].dtype == t[i].dtype);
        CHECK(back[i].ndim == t[i].ndim && back[i].nbytes == t[i].nbytes);
        CHECK(!memcmp(back[i].shape, t[i].shape, sizeof(int64_t) * (size_t)t[i].ndim));
        CHECK(!t[i].nbytes || !memcmp(back[i].data, t[i].data, t[i].nbytes));
        /* data 8-aligned relative to the container */
        CHECK(!back[i].nbytes || ((const char *)back[i].data - (const char *)buf) % 8 == 0);
    }
    CHECK(loom_tensors_find(back, n, "label") == &back[1]);
    CHECK(loom_tensors_find(back, n, "nope") == NULL);
    /* room for fewer tensors than there are */
    CHECK_RC(loom_tensors_decode(buf, len, back, 2, &n, err, sizeof err), LOOM_ETOOBIG);
    /* every truncation is refused, never read past */
    int refused = 1;
    for (size_t cut = 0; cut < len; cut++) {
        unsigned char *copy = malloc(cut + 1);
        memcpy(copy, buf, cut);
        if (loom_tensors_decode(copy, cut, back, 8, &n, NULL, 0) != LOOM_EINVAL) refused = 0;
        free(copy);
    }
    CHECK(refused);
    /* a stray byte at the end */
    unsigned char *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = 0;
    CHECK_RC(loom_tensors_decode(longer, len + 1, back, 8, &n, err, sizeof err), LOOM_EINVAL);
    CHECK(strstr(err, "stray") != NULL);
    free(longer);
    /* an empty container */
    unsigned char empty[8];
    size_t elen;
    CHECK_RC(loom_tensors_encode(NULL, 0, empty, sizeof empty, &elen, NULL, 0), 0);
    CHECK_RC(loom_tensors_decode(empty, elen, back, 8, &n, NULL, 0), 0);
    CHECK(n == 0 && elen == 8);
    /* a buffer too small to encode into */
    CHECK_RC(loom_tensors_encode(t, 4, empty, sizeof empty, &elen, NULL, 0), LOOM_ETOOBIG);
    free(buf);
}

/* One tensor "x" FP32 [2] by hand: header at 0..26, padding to 32, data. */
static size_t handmade(unsigned char *b)
{
    size_t o = 0;
    memcpy(b, "LTN1", 4);
    o = 4;
    b[o++] = 1; b[o++] = 0; b[o++] = 0; b[o++] = 0;           /* count */
    b[o++] = 1; b[o++] = 0; b[o++] = 'x';                     /* name */
    b[o++] = LOOM_DTYPE_FP32; b[o++] = 1;                     /* dtype, ndim */
    memset(b + o, 0, 8); b[o] = 2; o += 8;                    /* shape */
    memset(b + o, 0, 8); b[o] = 8; o += 8;                    /* nbytes */
    while (o % 8) b[o++] = 0;
    float v[2] = {1, 2};
    memcpy(b + o, v, 8);
    return o + 8;
}

static void expect_refused(const unsigned char *b, size_t len, const char *needle)
{
    loom_tensor t[4];
    int n;
    char err[256] = "";
    int rc = loom_tensors_decode(b, len, t, 4, &n, err, sizeof err);
    loom_test_checks++;
    if (rc == 0 || !strstr(err, needle)) {
        fprintf(stderr, "decode gave %d '%s', want an error with '%s'\n", rc, err, needle);
        loom_test_failures++;
    }
}

static void test_malformed(void)
{
    unsigned char b[64], c[64];
    size_t len = handmade(b);
    loom_tensor t[4];
    int n;
    CHECK_RC(loom_tensors_decode(b, len, t, 4, &n, NULL, 0), 0);
    CHECK(n == 1 && loom_tensor_get_f32(&t[0], 1) == 2.0f);
    memcpy(c, b, len); c[0] = 'X';
    expect_refused(c, len, "magic");
    memcpy(c, b, len); c[4] = 65;
    expect_refused(c, len, "at most");
    memcpy(c, b, len); c[8] = 0;
    expect_refused(c, len, "name");
    memcpy(c, b, len); c[11] = 0;                  /* dtype 0 */
    expect_refused(c, len, "dtype");
    memcpy(c, b, len); c[11] = 200;
    expect_refused(c, len, "dtype");
    memcpy(c, b, len); c[12] = 9;                  /* ndim */
    expect_refused(c, len, "dims");
    memcpy(c, b, len); c[13] = 3;                  /* shape [3], 8 bytes */
    expect_refused(c, len, "shape needs");
    memcpy(c, b, len); c[20] = 0x80;               /* shape negative */
    expect_refused(c, len, "negative");
    memcpy(c, b, len); c[20] = 0x40; c[12 + 1 + 6] = 0x40;   /* huge shape */
    expect_refused(c, len, "too large");
    memcpy(c, b, len); c[29] = 1;                  /* padding */
    expect_refused(c, len, "padding");
    memcpy(c, b, len); c[10] = 0;                  /* NUL in the name */
    expect_refused(c, len, "NUL");
    expect_refused(NULL, 0, "magic");
    /* the same name twice */
    loom_tensor two[2];
    float v[1] = {1};
    int64_t s1[1] = {1};
    REQUIRE(loom_tensor_set(&two[0], "a", LOOM_DTYPE_FP32, 1, s1, v, NULL, 0) == 0);
    two[1] = two[0];
    void *buf;
    size_t blen;
    CHECK_RC(loom_tensors_encode_alloc(two, 2, &buf, &blen, NULL, 0), 0);
    expect_refused(buf, blen, "twice");
    free(buf);
    /* encoding refuses a tensor whose nbytes lies */
    two[0].nbytes = 8;
    char err[128] = "";
    CHECK_RC(loom_tensors_encode_alloc(two, 1, &buf, &blen, err, sizeof err), LOOM_EINVAL);
    CHECK_RC(loom_tensors_encode_alloc(two, LOOM_TENSOR_MAX_COUNT + 1, &buf, &blen, err, sizeof err),
             LOOM_EINVAL);
}

int main(void)
{
    test_dtypes();
    test_shapes();
    test_conversion();
    test_round_trip();
    test_malformed();
    return TEST_DONE();
}
