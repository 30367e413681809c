/* tests/test_shard_dataset.c — shard/dataset.c: .npy round trips and the
 * bytes NumPy would write; hand-written .npy files of every dtype, both byte
 * orders, C and Fortran order, 1-d and 3-d shapes, format versions 1.0, 2.0
 * and 3.0; refusals of malformed, truncated and corrupted .npy files and of
 * huge declared shapes (without allocating them); CSV (header, CRLF, spaces,
 * blank lines, ragged rows, non-numbers, NaN, range, the number reader's
 * rounding); JSONL (flat, nested, {"input": …}, ragged); directories (name
 * order, mixed formats, column mismatch, other files ignored, empty); and
 * the load time of a 100,000 × 64 CSV and .npy.  When python3 has numpy,
 * the files written are also checked with numpy.load. */
#include <dirent.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "loom/loom.h"
#include "shard/dataset.h"
#include "testutil.h"

static char tmpdir[64];

static char *tpath(const char *name)
{
    static char buf[4][256];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", tmpdir, name);
    return p;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    REQUIRE(fwrite(data, 1, len, f) == len);
    REQUIRE(fclose(f) == 0);
}

static void write_text(const char *path, const char *text)
{
    write_bytes(path, text, strlen(text));
}

static unsigned char *read_bytes(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    REQUIRE(f);
    REQUIRE(fseek(f, 0, SEEK_END) == 0);
    long n = ftell(f);
    REQUIRE(n >= 0);
    rewind(f);
    unsigned char *b = malloc((size_t)n + 1);
    REQUIRE(b && fread(b, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* An .npy file of format version major.0 whose header is dict (padded with
 * spaces to a multiple of 64 and a newline, as NumPy does), then data. */
static unsigned char *npy_bytes(int major, const char *dict, const void *data, size_t dlen, size_t *len)
{
    size_t pre = major == 1 ? 10 : 12, hlen = strlen(dict) + 1;
    size_t total = pre + hlen;
    total += (64 - total % 64) % 64;
    unsigned char *b = malloc(total + dlen + 1);
    REQUIRE(b);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (unsigned char)major;
    b[7] = 0;
    size_t h = total - pre;
    for (size_t i = 0; i < pre - 8; i++) b[8 + i] = (unsigned char)(h >> (8 * i));
    memset(b + pre, ' ', h);
    memcpy(b + pre, dict, strlen(dict));
    b[total - 1] = '\n';
    if (dlen) memcpy(b + total, data, dlen);
    *len = total + dlen;
    return b;
}

static int parse_npy(const void *b, size_t len, shard_dataset *d, char *err, size_t errlen)
{
    return shard_dataset_parse(b, len, "npy", d, err, errlen);
}

/* Store v as one value of the given kind/size/byte order. */
static void put_value(unsigned char *p, char kind, int size, int big, double v)
{
    unsigned char raw[8];
    if (kind == 'f' && size == 4) { float f = (float)v; memcpy(raw, &f, 4); }
    else if (kind == 'f') memcpy(raw, &v, 8);
    else if (kind == 'u' || kind == 'b') { uint64_t u = (uint64_t)v; memcpy(raw, &u, 8); }
    else { int64_t s = (int64_t)v; memcpy(raw, &s, 8); }
    /* the host is little-endian here (checked in main) */
    for (int i = 0; i < size; i++) p[big ? size - 1 - i : i] = raw[i];
}

/* ---- .npy ------------------------------------------------------------------ */

static void test_npy_round_trip(void)
{
    float x[12];
    for (int i = 0; i < 12; i++) x[i] = (float)i * 0.25f - 1.5f;
    char err[256];
    shard_dataset d;
    CHECK_RC(shard_npy_write_f32(tpath("rt.npy"), x, 3, 4, err, sizeof err), 0);
    CHECK_RC(shard_dataset_load(tpath("rt.npy"), &d, err, sizeof err), 0);
    CHECK(d.rows == 3 && d.cols == 4 && d.x && !memcmp(d.x, x, sizeof x));
    shard_dataset_free(&d);
    CHECK(d.x == NULL && d.rows == 0);
    /* cols 0: shape [rows], read back as rows × 1 */
    CHECK_RC(shard_npy_write_f32(tpath("rt1.npy"), x, 12, 0, err, sizeof err), 0);
    CHECK_RC(shard_dataset_load(tpath("rt1.npy"), &d, err, sizeof err), 0);
    CHECK(d.rows == 12 && d.cols == 1 && !memcmp(d.x, x, sizeof x));
    shard_dataset_free(&d);
    /* no rows */
    CHECK_RC(shard_npy_write_f32(tpath("rt0.npy"), NULL, 0, 5, err, sizeof err), 0);
    CHECK_RC(shard_dataset_load(tpath("rt0.npy"), &d, err, sizeof err), 0);
    CHECK(d.rows == 0 && d.cols == 5 && d.x);
    shard_dataset_free(&d);
    /* overwrite in place; no temporary left behind */
    x[0] = 42;
    CHECK_RC(shard_npy_write_f32(tpath("rt.npy"), x, 3, 4, err, sizeof err), 0);
    CHECK_RC(shard_dataset_load(tpath("rt.npy"), &d, err, sizeof err), 0);
    CHECK(d.x[0] == 42);
    shard_dataset_free(&d);
    DIR *dir = opendir(tmpdir);
    struct dirent *e;
    int tmps = 0;
    while ((e = readdir(dir))) tmps += strstr(e->d_name, ".npy.") != NULL;
    closedir(dir);
    CHECK(tmps == 0);
    /* refusals */
    CHECK_RC(shard_npy_write_f32(tpath("bad.npy"), x, -1, 4, err, sizeof err), LOOM_EINVAL);
    CHECK_RC(shard_npy_write_f32(tpath("bad.npy"), NULL, 2, 2, err, sizeof err), LOOM_EINVAL);
    CHECK_RC(shard_npy_write_f32(tpath("nodir/x.npy"), x, 1, 1, err, sizeof err), LOOM_EIO);
    CHECK(strstr(err, "nodir/x.npy") != NULL);
    CHECK_RC(shard_npy_write_f32(tpath("big.npy"), x, INT64_MAX / 2, 4, err, sizeof err), LOOM_ETOOBIG);
}

/* What numpy.save writes: a 128-byte v1.0 header (with room for shape[0]
 * to grow to 21 digits) and little-endian data. */
static void test_npy_bytes(void)
{
    const char *f32_dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    float x[6] = {1, 2, 3, -4, 0.5f, 1e-3f};
    void *enc;
    size_t len;
    CHECK_RC(shard_npy_encode_f32(x, 2, 3, &enc, &len), 0);
    REQUIRE(len == 128 + sizeof x);
    const unsigned char *b = enc;
    CHECK(!memcmp(b, "\x93NUMPY\x01\x00\x76\x00", 10));
    CHECK(!memcmp(b + 10, f32_dict, strlen(f32_dict)));
    int spaces = 1;
    for (size_t i = 10 + strlen(f32_dict); i < 127; i++) spaces &= b[i] == ' ';
    CHECK(spaces && b[127] == '\n');
    CHECK(!memcmp(b + 128, x, sizeof x));
    char err[256];
    CHECK_RC(shard_npy_write_f32(tpath("enc.npy"), x, 2, 3, err, sizeof err), 0);
    size_t flen;
    unsigned char *file = read_bytes(tpath("enc.npy"), &flen);
    CHECK(flen == len && !memcmp(file, enc, len));
    free(file);
    free(enc);

    const char *i64_dict = "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }";
    int64_t v[3] = {-1, 0, (int64_t)1 << 40};
    CHECK_RC(shard_npy_write_i64(tpath("i64.npy"), v, 3, err, sizeof err), 0);
    file = read_bytes(tpath("i64.npy"), &flen);
    REQUIRE(flen == 128 + sizeof v);
    CHECK(!memcmp(file, "\x93NUMPY\x01\x00\x76\x00", 10) && !memcmp(file + 10, i64_dict, strlen(i64_dict)));
    CHECK(file[127] == '\n' && !memcmp(file + 128, v, sizeof v));
    free(file);
    shard_dataset d;
    CHECK_RC(shard_dataset_load(tpath("i64.npy"), &d, err, sizeof err), 0);
    CHECK(d.rows == 3 && d.cols == 1 && d.x[0] == -1 && d.x[2] == 1099511627776.0f);
    shard_dataset_free(&d);

    /* a 1,000,000-row header: 21 - 7 growth spaces, still 128 bytes */
    CHECK_RC(shard_npy_encode_f32(NULL, 0, 1000000, &enc, &len), 0);
    {
        const char *want = "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 1000000), }";
        CHECK(len == 128 && !memcmp((char *)enc + 10, want, strlen(want)) && ((char *)enc)[10 + strlen(want)] == ' ');
    }
    free(enc);
    CHECK_RC(shard_npy_encode_f32(NULL, 1, 1, &enc, &len), LOOM_EINVAL);
    CHECK_RC(shard_npy_encode_f32(x, -1, 1, &enc, &len), LOOM_EINVAL);
}

static void check_dtype(const char *descr, const double *vals, int n)
{
    char kind = descr[1];
    int size = descr[2] - '0', big = descr[0] == '>';
    unsigned char data[64];
    for (int i = 0; i < n; i++) put_value(data + i * size, kind, size, big, vals[i]);
    char dict[128];
    snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%d,), }", descr, n);
    size_t len;
    unsigned char *b = npy_bytes(1, dict, data, (size_t)(n * size), &len);
    shard_dataset d;
    char err[256];
    int rc = parse_npy(b, len, &d, err, sizeof err);
    CHECK_RC(rc, 0);
    if (rc) fprintf(stderr, "  %s: %s\n", descr, err);
    int same = !rc && d.rows == n && d.cols == 1;
    for (int i = 0; same && i < n; i++) same = d.x[i] == (float)vals[i];
    if (!same) fprintf(stderr, "  dtype %s read back wrong\n", descr);
    CHECK(same);
    shard_dataset_free(&d);
    free(b);
}

static void test_npy_dtypes(void)
{
    const double s[] = {0, 1, -1, 100, -128, 127};
    const double u[] = {0, 1, 200, 255, 7};
    const double big16[] = {-32768, 32767, 1000};
    const double u16[] = {65535, 1};
    const double big32[] = {-2147483648.0, 2147483647.0, 123456789};
    const double u32[] = {4294967295.0, 5};
    const double big64[] = {-9223372036854775808.0, 9007199254740993.0, 1e18};
    const double u64[] = {18446744073709549568.0, 3};
    const double fl[] = {0.1, -2.5, 1e30, -1e-30, 3.4028234663852886e38};
    const double b1[] = {0, 1, 1, 0};
    check_dtype("|b1", b1, 4);
    for (int big = 0; big < 2; big++) {
        char descr[4] = {big ? '>' : '<', 0, 0, 0};
        const char *kinds[] = {"i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f4", "f8"};
        const double *vals[] = {s, u, big16, u16, big32, u32, big64, u64, fl, fl};
        int ns[] = {6, 5, 3, 2, 3, 2, 3, 2, 5, 5};
        for (int k = 0; k < 10; k++) {
            memcpy(descr + 1, kinds[k], 2);
            check_dtype(descr, vals[k], ns[k]);
        }
    }
    check_dtype("|i1", s, 6);
    check_dtype("|u1", u, 5);
    check_dtype("=f8", fl, 5);

    /* float16, both byte orders: 1, -2, 0.5, 65504, 2^-24, -0 */
    const uint16_t half[] = {0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x8000};
    const float want[] = {1, -2, 0.5f, 65504, 5.9604644775390625e-8f, -0.0f};
    for (int big = 0; big < 2; big++) {
        unsigned char data[12];
        for (int i = 0; i < 6; i++) {
            data[2 * i + big] = (unsigned char)(half[i] & 0xff);
            data[2 * i + !big] = (unsigned char)(half[i] >> 8);
        }
        size_t len;
        unsigned char *b = npy_bytes(1, big ? "{'descr': '>f2', 'fortran_order': False, 'shape': (2, 3)}"
                                            : "{'descr': '<f2', 'fortran_order': False, 'shape': (2, 3)}",
                                     data, sizeof data, &len);
        shard_dataset d;
        char err[256];
        CHECK_RC(parse_npy(b, len, &d, err, sizeof err), 0);
        CHECK(d.rows == 2 && d.cols == 3 && !memcmp(d.x, want, sizeof want));
        shard_dataset_free(&d);
        free(b);
    }
}

static void test_npy_shapes(void)
{
    float v[24];
    for (int i = 0; i < 24; i++) v[i] = (float)i;
    char err[256];
    shard_dataset d;
    size_t len;
    /* 3-d C order: 2 rows of 3*4 */
    unsigned char *b = npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }", v, sizeof v, &len);
    CHECK_RC(parse_npy(b, len, &d, err, sizeof err), 0);
    CHECK(d.rows == 2 && d.cols == 12 && !memcmp(d.x, v, sizeof v));
    shard_dataset_free(&d);
    free(b);
    /* 2-d Fortran order: the values go down the columns */
    float f2[6] = {0, 3, 1, 4, 2, 5};
    b = npy_bytes(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", f2, sizeof f2, &len);
    CHECK_RC(parse_npy(b, len, &d, err, sizeof err), 0);
    CHECK(d.rows == 2 && d.cols == 3 && !memcmp(d.x, v, 6 * sizeof(float)));
    shard_dataset_free(&d);
    free(b);
    /* 3-d Fortran order, big-endian float64: element (i,j,k) at i + 2*(j + 3*k) */
    double f3[24];
    unsigned char raw[24 * 8];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 4; k++) f3[i + 2 * (j + 3 * k)] = i * 12 + j * 4 + k;
    for (int i = 0; i < 24; i++) put_value(raw + 8 * i, 'f', 8, 1, f3[i]);
    b = npy_bytes(2, "{'descr': '>f8', 'fortran_order': True, 'shape': (2, 3, 4), }", raw, sizeof raw, &len);
    CHECK_RC(parse_npy(b, len, &d, err, sizeof err), 0);
    CHECK(d.rows == 2 && d.cols == 12 && !memcmp(d.x, v, sizeof v));
    shard_dataset_free(&d);
    free(b);
    /* 1-d Fortran order is C order; version 3.0; a header of other spacing */
    b = npy_bytes(3, "{\"shape\":(5,),\"fortran_order\":True,\"descr\":\"<f4\"}", v, 5 * sizeof(float), &len);
    CHECK_RC(parse_npy(b, len, &d, err, sizeof err), 0);
    CHECK(d.rows == 5 && d.cols == 1 && !memcmp(d.x, v, 5 * sizeof(float)));
    shard_dataset_free(&d);
    free(b);
    /* Python 2's long integers */
    b = npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }", v, 6 * sizeof(float), &len);
    CHECK_RC(parse_npy(b, len, &d, err, sizeof err), 0);
    CHECK(d.rows == 2 && d.cols == 3);
    shard_dataset_free(&d);
    free(b);
    /* version 2.0 header length beyond 65535 */
    char *dict = malloc(70000);
    strcpy(dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), ");
    size_t n = strlen(dict);
    memset(dict + n, ' ', 69000 - n);
    strcpy(dict + 69000, "}");
    b = npy_bytes(2, dict, v, 4 * sizeof(float), &len);
    CHECK_RC(parse_npy(b, len, &d, err, sizeof err), 0);
    CHECK(d.rows == 2 && d.cols == 2 && d.x[3] == 3);
    shard_dataset_free(&d);
    free(b);
    free(dict);
}

static void expect_npy_refused(const char *dict, size_t dlen, int want, const char *needle)
{
    static const unsigned char zeros[64];
    size_t len;
    unsigned char *b = npy_bytes(1, dict, zeros, dlen, &len);
    shard_dataset d;
    char err[256] = "";
    int rc = parse_npy(b, len, &d, err, sizeof err);
    CHECK_RC(rc, want);
    CHECK(d.x == NULL && d.rows == 0);
    CHECK(err[0] != 0);
    if (needle && !strstr(err, needle)) {
        fprintf(stderr, "  for %s: message '%s' lacks '%s'\n", dict, err, needle);
        CHECK(0);
    }
    free(b);
}

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

/* While the huge shapes are refused, the address space is capped (not
 * under AddressSanitizer, which needs terabytes of it), so that a reader
 * that allocated for a declared shape would fail with LOOM_ENOMEM. */
static void cap_address_space(int on, struct rlimit *saved)
{
#ifndef UNDER_ASAN
    if (on) {
        REQUIRE(getrlimit(RLIMIT_AS, saved) == 0);
        struct rlimit cap = *saved;
        cap.rlim_cur = (rlim_t)256 << 20;
        if (saved->rlim_max != RLIM_INFINITY && saved->rlim_max < cap.rlim_cur) cap.rlim_cur = saved->rlim_max;
        REQUIRE(setrlimit(RLIMIT_AS, &cap) == 0);
    } else REQUIRE(setrlimit(RLIMIT_AS, saved) == 0);
#else
    (void)on;
    (void)saved;
#endif
}

static void test_npy_refusals(void)
{
    expect_npy_refused("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", 16, LOOM_EINVAL, "dtype '<c8'");
    expect_npy_refused("{'descr': '|f4', 'fortran_order': False, 'shape': (2,), }", 8, LOOM_EINVAL, "dtype");
    expect_npy_refused("{'descr': '<U4', 'fortran_order': False, 'shape': (2,), }", 32, LOOM_EINVAL, "dtype");
    expect_npy_refused("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8, LOOM_EINVAL, "quoted");
    expect_npy_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (2), }", 8, LOOM_EINVAL, "not a tuple");
    expect_npy_refused("{'descr': '<f4', 'fortran_order': False, 'shape': [2], }", 8, LOOM_EINVAL, "tuple");
    expect_npy_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", 8, LOOM_EINVAL, "dimension");
    expect_npy_refused("{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }", 8, LOOM_EINVAL, "fortran_order");
    expect_npy_refused("{'descr': '<f4', 'fortran_order': Falsey, 'shape': (2,), }", 8, LOOM_EINVAL, NULL);
    expect_npy_refused("{'descr': '<f4', 'shape': (2,), }", 8, LOOM_EINVAL, "missing");
    expect_npy_refused("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 8, LOOM_EINVAL, "twice");
    expect_npy_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", 8, LOOM_EINVAL, "unknown key");
    expect_npy_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } x", 8, LOOM_EINVAL, "after");
    expect_npy_refused("{'descr': '<f4' 'fortran_order': False, 'shape': (2,), }", 8, LOOM_EINVAL, "byte 26: .npy header: expected ',' or '}'");
    expect_npy_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 4, LOOM_EINVAL, "0-d");
    expect_npy_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 0), }", 0, LOOM_EINVAL, "no values");
    /* the data must be exactly what the shape needs */
    expect_npy_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 8, LOOM_EINVAL, "truncated");
    expect_npy_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 16, LOOM_EINVAL, "after the data");
    /* huge declared shapes: refused before anything is allocated */
    struct rlimit saved;
    cap_address_space(1, &saved);
    expect_npy_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", 8,
                       LOOM_ETOOBIG, NULL);
    expect_npy_refused("{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999999,), }", 8,
                       LOOM_ETOOBIG, NULL);
    expect_npy_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 16777217), }", 8, LOOM_ETOOBIG, NULL);
    expect_npy_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (2147483649, 2), }", 8, LOOM_ETOOBIG, NULL);
    expect_npy_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (2147483648, 2), }", 8, LOOM_EINVAL, "truncated");
    expect_npy_refused("{'descr': '<u8', 'fortran_order': False, 'shape': (4096, 4096, 4096, 4096), }", 8,
                       LOOM_ETOOBIG, NULL);
    expect_npy_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (100000000,), }", 8, LOOM_EINVAL, NULL);
    expect_npy_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"
                       "1,1,1,1,1,1,1,1,1,1,1,1,1), }", 4, LOOM_EINVAL, "32 dimensions");
    cap_address_space(0, &saved);

    /* NaN, infinities and values beyond float32 */
    const float bad_f[] = {1, NAN}, inf_f[] = {INFINITY, 1};
    const double big_d[] = {1, 1e39}, ok_d[] = {FLT_MAX, -FLT_MAX};
    const uint16_t half_inf[] = {0x3c00, 0x7c00};
    struct { const char *descr; const void *data; size_t n; int want; } cases[] = {
        {"<f4", bad_f, 8, LOOM_EINVAL}, {"<f4", inf_f, 8, LOOM_EINVAL}, {"<f8", big_d, 16, LOOM_EINVAL},
        {"<f8", ok_d, 16, 0}, {"<f2", half_inf, 4, LOOM_EINVAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dict[96];
        snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (2,), }", cases[i].descr);
        size_t len;
        unsigned char *b = npy_bytes(1, dict, cases[i].data, cases[i].n, &len);
        shard_dataset d;
        char err[256];
        CHECK_RC(parse_npy(b, len, &d, err, sizeof err), cases[i].want);
        if (cases[i].want) CHECK(strstr(err, "row 1, value 0") || strstr(err, "row 0, value 0"));
        shard_dataset_free(&d);
        free(b);
    }
    /* NaN in a Fortran-order array, reported where it is in the file */
    float fo[4] = {1, 2, NAN, 4};
    size_t len;
    unsigned char *b = npy_bytes(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", fo, sizeof fo, &len);
    shard_dataset d;
    char err[256];
    CHECK_RC(parse_npy(b, len, &d, err, sizeof err), LOOM_EINVAL);
    CHECK(strstr(err, "byte 136") && strstr(err, "row 0, value 1"));
    free(b);

    /* the magic, version and header length */
    b = npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", fo, 4, &len);
    unsigned char *c = malloc(len);
    memcpy(c, b, len);
    c[0] = 'X';
    CHECK_RC(parse_npy(c, len, &d, err, sizeof err), LOOM_EINVAL);
    CHECK(strstr(err, "magic") != NULL);
    memcpy(c, b, len);
    c[6] = 4;
    CHECK_RC(parse_npy(c, len, &d, err, sizeof err), LOOM_EINVAL);
    CHECK(strstr(err, "version 4.0") != NULL);
    memcpy(c, b, len);
    c[7] = 1;
    CHECK_RC(parse_npy(c, len, &d, err, sizeof err), LOOM_EINVAL);
    memcpy(c, b, len);
    c[8] = 0xff;
    c[9] = 0xff;
    CHECK_RC(parse_npy(c, len, &d, err, sizeof err), LOOM_EINVAL);
    CHECK(strstr(err, "runs past the end") != NULL);
    memcpy(c, b, len);
    c[6] = 2;   /* read as version 2.0: a header length of 4 GiB-ish */
    CHECK_RC(parse_npy(c, len, &d, err, sizeof err), LOOM_EINVAL);
    free(c);
    free(b);
    CHECK_RC(shard_dataset_parse(NULL, 0, "npy", &d, err, sizeof err), LOOM_EINVAL);
    CHECK_RC(shard_dataset_parse("x", 1, "parquet", &d, err, sizeof err), LOOM_EINVAL);
    CHECK(strstr(err, "unknown format") != NULL);
    CHECK_RC(shard_dataset_parse("1", 1, NULL, &d, err, sizeof err), LOOM_EINVAL);
}

/* Every truncation of a valid file gives LOOM_EINVAL; every byte changed
 * gives a refusal or a dataset of finite values, never a crash. */
static void check_prefixes_and_corruption(const unsigned char *b, size_t len)
{
    char err[256];
    int bad = 0;
    for (size_t n = 0; n < len; n++) {
        unsigned char *c = malloc(n ? n : 1);   /* exactly n bytes: ASan sees reads past them */
        memcpy(c, b, n);
        shard_dataset d;
        int rc = parse_npy(c, n, &d, err, sizeof err);
        if (rc != LOOM_EINVAL) {
            fprintf(stderr, "  truncation to %zu bytes: %d (%s)\n", n, rc, err);
            bad++;
        }
        shard_dataset_free(&d);
        free(c);
    }
    CHECK(bad == 0);
    unsigned char *c = malloc(len);
    const unsigned char subst[] = {0, ' ', '(', ')', ',', '9', '\'', 0xff, '}', 'T'};
    for (size_t i = 0; i < len; i++)
        for (size_t k = 0; k < sizeof subst; k++) {
            memcpy(c, b, len);
            c[i] = subst[k];
            shard_dataset d;
            int rc = parse_npy(c, len, &d, err, sizeof err);
            if (rc == 0) {
                for (int64_t j = 0; j < d.rows * d.cols; j++) bad += !isfinite(d.x[j]);
            } else bad += rc != LOOM_EINVAL && rc != LOOM_ETOOBIG;
            shard_dataset_free(&d);
        }
    free(c);
    CHECK(bad == 0);
}

static void test_npy_truncated(void)
{
    float v[6] = {1, 2, 3, 4, 5, 6};
    void *enc;
    size_t len;
    CHECK_RC(shard_npy_encode_f32(v, 2, 3, &enc, &len), 0);
    check_prefixes_and_corruption(enc, len);
    free(enc);
    unsigned char raw[6 * 8];
    for (int i = 0; i < 6; i++) put_value(raw + 8 * i, 'f', 8, 1, v[i]);
    unsigned char *b = npy_bytes(2, "{'descr': '>f8', 'fortran_order': True, 'shape': (1, 3, 2), }", raw, sizeof raw, &len);
    check_prefixes_and_corruption(b, len);
    free(b);
}

/* ---- .csv ------------------------------------------------------------------- */

static int parse_csv(const char *text, shard_dataset *d, char *err, size_t errlen)
{
    return shard_dataset_parse(text, strlen(text), "csv", d, err, errlen);
}

static void expect_csv(const char *text, int64_t rows, int64_t cols, const float *want)
{
    shard_dataset d;
    char err[256];
    int rc = parse_csv(text, &d, err, sizeof err);
    CHECK_RC(rc, 0);
    if (rc) fprintf(stderr, "  csv: %s\n", err);
    CHECK(d.rows == rows && d.cols == cols);
    if (!rc && d.rows == rows && d.cols == cols && memcmp(d.x, want, (size_t)(rows * cols) * sizeof(float))) {
        fprintf(stderr, "  csv %s: values differ\n", text);
        CHECK(0);
    }
    shard_dataset_free(&d);
}

static void expect_csv_refused(const char *text, int want, const char *needle)
{
    shard_dataset d;
    char err[256] = "";
    CHECK_RC(parse_csv(text, &d, err, sizeof err), want);
    CHECK(d.x == NULL);
    if (needle && !strstr(err, needle)) {
        fprintf(stderr, "  csv '%s': message '%s' lacks '%s'\n", text, err, needle);
        CHECK(0);
    }
}

static void test_csv(void)
{
    const float six[] = {1, 2, 3, 4, 5, 6};
    expect_csv("1,2,3\n4,5,6\n", 2, 3, six);
    expect_csv("1,2,3\n4,5,6", 2, 3, six);
    expect_csv("a,b,c\n1,2,3\n4,5,6\n", 2, 3, six);
    expect_csv("\"a\", \"b c\",\"\"\r\n1,2,3\r\n4,5,6\r\n", 2, 3, six);
    expect_csv("\xef\xbb\xbfx,y,z\n1,2,3\n\n  \n4,5,6\n\n", 2, 3, six);
    expect_csv(" 1 ,\t2,3 \r\n  4,5 , 6\r\n", 2, 3, six);
    expect_csv("\n\nid,x,y\n1,2,3\n4,5,6", 2, 3, six);
    const float nums[] = {0.5f, 5, 3, -0.0f, (float)1e-3, 1.5e10f, (float)-25e-6, (float)1e-40, FLT_MAX};
    expect_csv(".5,5.,+3,-0,1E-3,1.5e+10,-25e-6,1e-40,3.4028234663852886e38\n", 1, 9, nums);
    const float one[] = {7};
    expect_csv("7", 1, 1, one);

    expect_csv_refused("1,2,3\n4,5\n", LOOM_EINVAL, "line 2: 2 values, but the rows before it have 3");
    expect_csv_refused("1,2\n4,5,6\n", LOOM_EINVAL, "line 2: 3 values");
    expect_csv_refused("x,y\n1,2\n4,5,6,7,8\n", LOOM_EINVAL, "line 3: 5 values");
    expect_csv_refused("1,2\n3,abc\n", LOOM_EINVAL, "line 2: column 2: 'abc' is not a number");
    expect_csv_refused("1,2\n3,4x\n", LOOM_EINVAL, "'4x' is not a number");
    expect_csv_refused("1,2\n3,4 5\n", LOOM_EINVAL, "'4 5'");
    expect_csv_refused("1,2\n3,1e\n", LOOM_EINVAL, "'1e'");
    expect_csv_refused("1,2\n3,0x10\n", LOOM_EINVAL, "'0x10'");
    expect_csv_refused("1,2\n3,\n", LOOM_EINVAL, "line 2: column 2: empty value");
    expect_csv_refused("1,2,\n", LOOM_EINVAL, "column 3: empty value");
    expect_csv_refused("1,,2\n", LOOM_EINVAL, "line 1: column 2: empty value");
    expect_csv_refused("1,2\nnan,3\n", LOOM_EINVAL, "line 2: column 1: nan (NaN");
    expect_csv_refused("NaN,3\n", LOOM_EINVAL, "line 1: column 1: NaN");
    expect_csv_refused("1,-inf\n", LOOM_EINVAL, "-inf (NaN and infinities");
    expect_csv_refused("1,Infinity\n", LOOM_EINVAL, "Infinity");
    expect_csv_refused("1,1e39\n", LOOM_EINVAL, "does not fit a float32");
    expect_csv_refused("1,-1e400\n", LOOM_EINVAL, "does not fit a float32");
    expect_csv_refused("1,2\n3\r4,5\n", LOOM_EINVAL, "line 2: column 1: '3?4'");
    expect_csv_refused("a,b\n", LOOM_EINVAL, "no rows");
    expect_csv_refused("", LOOM_EINVAL, "no rows");
    expect_csv_refused("\n \r\n", LOOM_EINVAL, "no rows");
    expect_csv_refused("a,b\nc,d\n", LOOM_EINVAL, "line 2: column 1: 'c'");
}

/* The number reader gives the double nearest the text, rounded to float
 * (strtod then a cast), on its fast path and off it. */
static void test_csv_numbers(void)
{
    enum { N = 4000 };
    char *text = malloc(N * 40);
    float *want = malloc(N * sizeof(float));
    size_t off = 0;
    uint64_t seed = 12345;
    for (int i = 0; i < N; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        double r = (double)(seed >> 11) / 9007199254740992.0;
        int e = (int)(seed % 70) - 38;
        double v = (r - 0.5) * pow(10, e);
        const char *fmts[] = {"%.17g", "%.9g", "%.3e", "%.6f", "%.21g", "%.1f"};
        char num[64];
        snprintf(num, sizeof num, fmts[i % 6], v);
        want[i] = (float)strtod(num, NULL);
        off += (size_t)sprintf(text + off, "%s%s", num, (i % 8 == 7) ? "\n" : ",");
    }
    text[off] = 0;
    shard_dataset d;
    char err[256];
    CHECK_RC(parse_csv(text, &d, err, sizeof err), 0);
    CHECK(d.rows == N / 8 && d.cols == 8);
    int wrong = 0;
    for (int i = 0; i < N && d.x; i++) wrong += memcmp(&d.x[i], &want[i], sizeof(float)) != 0;
    CHECK(wrong == 0);
    shard_dataset_free(&d);
    /* long digit strings and big exponents take the slow path */
    const char *hard = "0.1000000000000000055511151231257827021181583404541015625,"
                       "123456789012345678901234567890,1e-45,0.000000000000000000000000000001e+20,"
                       "99999999999999999999e-30\n";
    CHECK_RC(parse_csv(hard, &d, err, sizeof err), 0);
    CHECK(d.cols == 5 && d.x[0] == 0.1f && d.x[1] == 1.2345678901234568e29f && d.x[2] == (float)1e-45 &&
          d.x[3] == (float)1e-10 && d.x[4] == (float)1e-10);
    shard_dataset_free(&d);
    free(text);
    free(want);
}

/* ---- .jsonl ------------------------------------------------------------------- */

static void expect_jsonl(const char *text, int64_t rows, int64_t cols, const float *want)
{
    shard_dataset d;
    char err[256];
    int rc = shard_dataset_parse(text, strlen(text), "jsonl", &d, err, sizeof err);
    CHECK_RC(rc, 0);
    if (rc) fprintf(stderr, "  jsonl: %s\n", err);
    CHECK(d.rows == rows && d.cols == cols);
    if (!rc && d.rows == rows && d.cols == cols && memcmp(d.x, want, (size_t)(rows * cols) * sizeof(float))) {
        fprintf(stderr, "  jsonl %s: values differ\n", text);
        CHECK(0);
    }
    shard_dataset_free(&d);
}

static void expect_jsonl_refused(const char *text, int want, const char *needle)
{
    shard_dataset d;
    char err[256] = "";
    CHECK_RC(shard_dataset_parse(text, strlen(text), "jsonl", &d, err, sizeof err), want);
    CHECK(d.x == NULL);
    if (needle && !strstr(err, needle)) {
        fprintf(stderr, "  jsonl '%s': message '%s' lacks '%s'\n", text, err, needle);
        CHECK(0);
    }
}

static void test_jsonl(void)
{
    const float four[] = {1, 2, 3, 4, 5, 6, 7, 8};
    expect_jsonl("[1,2,3,4]\n[5,6,7,8]\n", 2, 4, four);
    expect_jsonl("[[1,2],[3,4]]\r\n\r\n[[5,6],[7,8]]", 2, 4, four);
    expect_jsonl("{\"id\": 7, \"input\": [[[1],[2]],[[3],[4]]]}\n  \n{\"input\": [5,6,7,8]}\n", 2, 4, four);
    expect_jsonl("\xef\xbb\xbf[1.0, 2e0, 3, 4]\n[5,6,7,8]\n", 2, 4, four);
    const float big[] = {(float)9007199254740993.0, (float)0.001};
    expect_jsonl("[9007199254740993, 0.001]", 1, 2, big);

    expect_jsonl_refused("[1,2,3]\n[4,5]\n", LOOM_EINVAL, "line 2: 2 values, but the rows before it have 3");
    expect_jsonl_refused("[[1,2],[3]]\n", LOOM_EINVAL, "line 1: not rectangular");
    expect_jsonl_refused("[[1,2],3]\n", LOOM_EINVAL, "not rectangular");
    expect_jsonl_refused("[1,[2]]\n", LOOM_EINVAL, "not rectangular");
    expect_jsonl_refused("[1,2]\n[1,\"x\"]\n", LOOM_EINVAL, "line 2: a string where a number was expected");
    expect_jsonl_refused("[1,null]\n", LOOM_EINVAL, "null");
    expect_jsonl_refused("[true]\n", LOOM_EINVAL, "a boolean");
    expect_jsonl_refused("[]\n", LOOM_EINVAL, "empty row");
    expect_jsonl_refused("[[],[]]\n", LOOM_EINVAL, "empty row");
    expect_jsonl_refused("5\n", LOOM_EINVAL, NULL);
    expect_jsonl_refused("{\"x\": [1]}\n", LOOM_EINVAL, "without an \"input\"");
    expect_jsonl_refused("{\"input\": 3}\n", LOOM_EINVAL, "a number, where an array");
    expect_jsonl_refused("[1,2]\n[1,2\n", LOOM_EINVAL, "line 2: column");
    expect_jsonl_refused("[1,2] [3]\n", LOOM_EINVAL, "line 1");
    expect_jsonl_refused("[1e39]\n", LOOM_EINVAL, "does not fit a float32");
    expect_jsonl_refused("[1e999]\n", LOOM_EINVAL, "line 1");
    expect_jsonl_refused("[NaN]\n", LOOM_EINVAL, "line 1");
    expect_jsonl_refused("{\"input\": [1], \"input\": [2]}\n", LOOM_EINVAL, "line 1");
    expect_jsonl_refused("\n\n", LOOM_EINVAL, "no rows");
    char deep[100];
    memset(deep, '[', 40);
    deep[40] = '1';
    memset(deep + 41, ']', 40);
    strcpy(deep + 81, "\n");
    expect_jsonl_refused(deep, LOOM_EINVAL, "nested more than 32 deep");
}

/* ---- files and directories ------------------------------------------------------- */

static void test_files(void)
{
    char err[256];
    shard_dataset d;
    write_text(tpath("t.csv"), "a,b\r\n1,2\r\n");
    CHECK_RC(shard_dataset_load(tpath("t.csv"), &d, err, sizeof err), 0);
    CHECK(d.rows == 1 && d.cols == 2 && d.x[1] == 2);
    shard_dataset_free(&d);
    write_text(tpath("t.NDJSON"), "[1,2]\n");
    CHECK_RC(shard_dataset_load(tpath("t.NDJSON"), &d, err, sizeof err), 0);
    CHECK(d.rows == 1 && d.cols == 2);
    shard_dataset_free(&d);
    write_text(tpath("bad.csv"), "1,2\n3,4\n5,x\n");
    CHECK_RC(shard_dataset_load(tpath("bad.csv"), &d, err, sizeof err), LOOM_EINVAL);
    CHECK(strstr(err, "bad.csv: line 3: column 2") != NULL);
    CHECK_RC(shard_dataset_load(tpath("missing.csv"), &d, err, sizeof err), LOOM_EIO);
    CHECK(strstr(err, "missing.csv") != NULL);
    write_text(tpath("t.txt"), "1,2\n");
    CHECK_RC(shard_dataset_load(tpath("t.txt"), &d, err, sizeof err), LOOM_EINVAL);
    CHECK(strstr(err, "extension") != NULL);
    CHECK_RC(shard_dataset_load(NULL, &d, err, sizeof err), LOOM_EINVAL);
    CHECK_RC(shard_dataset_load(tpath("t.csv"), &d, NULL, 0), 0);
    shard_dataset_free(&d);
    shard_dataset_free(NULL);
}

static void test_directories(void)
{
    char err[256];
    shard_dataset d;
    REQUIRE(mkdir(tpath("mix"), 0755) == 0);
    write_text(tpath("mix/b.csv"), "x,y,z\n4,5,6\n7,8,9\n");
    float a[3] = {1, 2, 3};
    CHECK_RC(shard_npy_write_f32(tpath("mix/a.npy"), a, 1, 3, err, sizeof err), 0);
    write_text(tpath("mix/c.jsonl"), "[10,11,12]\n{\"input\":[[13],[14],[15]]}\n");
    write_text(tpath("mix/B.ndjson"), "[0,0,0]\n");   /* "B" sorts before "a" */
    write_text(tpath("mix/notes.txt"), "not data");
    write_text(tpath("mix/.csv"), "x");
    REQUIRE(mkdir(tpath("mix/sub.csv"), 0755) == 0);
    write_text(tpath("mix/sub.csv/z.csv"), "1\n");
    CHECK_RC(shard_dataset_load(tpath("mix"), &d, err, sizeof err), 0);
    CHECK(d.rows == 6 && d.cols == 3);
    const float want[] = {0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    CHECK(d.x && d.rows == 6 && !memcmp(d.x, want, sizeof want));
    shard_dataset_free(&d);
    /* with a trailing slash */
    char slash[300];
    snprintf(slash, sizeof slash, "%s/", tpath("mix"));
    CHECK_RC(shard_dataset_load(slash, &d, err, sizeof err), 0);
    CHECK(d.rows == 6);
    shard_dataset_free(&d);

    REQUIRE(mkdir(tpath("mismatch"), 0755) == 0);
    write_text(tpath("mismatch/1.csv"), "1,2,3\n");
    write_text(tpath("mismatch/2.csv"), "h1,h2\n1,2\n");
    CHECK_RC(shard_dataset_load(tpath("mismatch"), &d, err, sizeof err), LOOM_EINVAL);
    CHECK(strstr(err, "2.csv: line 2: 2 columns, but") && strstr(err, "1.csv has 3"));
    CHECK(d.x == NULL);
    write_text(tpath("mismatch/2.csv"), "[1,2,3]\n");   /* still a .csv: "[1" is text, a header */
    CHECK_RC(shard_dataset_load(tpath("mismatch"), &d, err, sizeof err), LOOM_EINVAL);
    unlink(tpath("mismatch/2.csv"));
    float four[4] = {0};
    CHECK_RC(shard_npy_write_f32(tpath("mismatch/3.npy"), four, 1, 4, err, sizeof err), 0);
    CHECK_RC(shard_dataset_load(tpath("mismatch"), &d, err, sizeof err), LOOM_EINVAL);
    CHECK(strstr(err, "3.npy: 4 columns, but") != NULL);
    unlink(tpath("mismatch/3.npy"));
    write_text(tpath("mismatch/4.jsonl"), "[1,2,3,4]\n");
    CHECK_RC(shard_dataset_load(tpath("mismatch"), &d, err, sizeof err), LOOM_EINVAL);
    CHECK(strstr(err, "4.jsonl: line 1: 4 columns, but") != NULL);

    REQUIRE(mkdir(tpath("empty"), 0755) == 0);
    CHECK_RC(shard_dataset_load(tpath("empty"), &d, err, sizeof err), LOOM_EINVAL);
    CHECK(strstr(err, "no .npy") != NULL);
    write_text(tpath("empty/readme.md"), "hi");
    CHECK_RC(shard_dataset_load(tpath("empty"), &d, err, sizeof err), LOOM_EINVAL);
    REQUIRE(mkdir(tpath("withbad"), 0755) == 0);
    write_text(tpath("withbad/a.csv"), "1\n");
    write_text(tpath("withbad/b.npy"), "\x93NUMPY");
    CHECK_RC(shard_dataset_load(tpath("withbad"), &d, err, sizeof err), LOOM_EINVAL);
    CHECK(strstr(err, "b.npy") != NULL);
}

/* ---- numpy, when python3 has it -------------------------------------------------- */

static void test_with_numpy(void)
{
    const char *py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s -c 'import numpy' >/dev/null 2>&1", py);
    if (system(cmd) != 0) {
        printf("numpy not available: skipping the numpy.load checks\n");
        return;
    }
    char err[256];
    float x[6] = {1.5f, -2, 3e-8f, 4e30f, 0, 6};
    int64_t v[4] = {-5, 0, 1, INT64_MAX};
    CHECK_RC(shard_npy_write_f32(tpath("np_f32.npy"), x, 2, 3, err, sizeof err), 0);
    CHECK_RC(shard_npy_write_f32(tpath("np_f32_1d.npy"), x, 6, 0, err, sizeof err), 0);
    CHECK_RC(shard_npy_write_i64(tpath("np_i64.npy"), v, 4, err, sizeof err), 0);
    /* numpy reads what was written and writes the same bytes; then it
     * writes arrays of every dtype, byte order, order, shape and version,
     * each beside the float32 C-order array it should be read as */
    write_text(tpath("check.py"),
               "import numpy as np, io\n"
               "a = np.load('np_f32.npy'); assert a.dtype == np.float32 and a.shape == (2, 3)\n"
               "assert a.tolist() == np.array([[1.5, -2, 3e-8], [4e30, 0, 6]], dtype=np.float32).tolist()\n"
               "b = np.load('np_f32_1d.npy'); assert b.shape == (6,)\n"
               "c = np.load('np_i64.npy'); assert c.dtype == np.int64 and c.tolist() == [-5, 0, 1, 2**63 - 1]\n"
               "for name, arr in (('np_f32.npy', a), ('np_f32_1d.npy', b), ('np_i64.npy', c)):\n"
               "    f = io.BytesIO(); np.save(f, arr)\n"
               "    assert f.getvalue() == open(name, 'rb').read(), name + ' differs from np.save'\n"
               "base = np.random.default_rng(7).standard_normal((5, 3, 4)) * 100\n"
               "n = 0\n"
               "for dt in ['?', 'i1', 'u1', '<i2', '>i2', '<u2', '>u2', '<i4', '>i4', '<u4', '>u4', '<i8', '>i8',\n"
               "           '<u8', '>u8', '<f2', '>f2', '<f4', '>f4', '<f8', '>f8']:\n"
               "    vals = (np.abs(base) if 'u' in dt else base).astype(dt)\n"
               "    for arr in (vals, np.asfortranarray(vals), vals.reshape(60), np.asfortranarray(vals.reshape(5, 12)),\n"
               "                vals.reshape(10, 6).T):\n"
               "        for version in ((1, 0), (2, 0), (3, 0)):\n"
               "            with open('np/%d.npy' % n, 'wb') as f:\n"
               "                np.lib.format.write_array(f, arr, version=version)\n"
               "            want = np.ascontiguousarray(arr.reshape(arr.shape[0], -1).astype('<f4'))\n"
               "            np.save('np/%d.want.npy' % n, want)\n"
               "            n += 1\n"
               "open('np/count', 'w').write(str(n))\n");
    REQUIRE(mkdir(tpath("np"), 0755) == 0);
    snprintf(cmd, sizeof cmd, "cd %s && %s check.py", tmpdir, py);
    int rc = system(cmd);
    CHECK(rc == 0);
    if (rc) return;
    size_t clen;
    unsigned char *count = read_bytes(tpath("np/count"), &clen);
    count[clen] = 0;
    int n = atoi((char *)count), bad = 0;
    free(count);
    CHECK(n == 21 * 5 * 3);
    for (int i = 0; i < n; i++) {
        char name[64], want_name[64];
        snprintf(name, sizeof name, "np/%d.npy", i);
        snprintf(want_name, sizeof want_name, "np/%d.want.npy", i);
        shard_dataset d, w;
        int rd = shard_dataset_load(tpath(name), &d, err, sizeof err);
        if (rd) fprintf(stderr, "  %s\n", err);
        int rw = shard_dataset_load(tpath(want_name), &w, err, sizeof err);
        if (rd || rw || d.rows != w.rows || d.cols != w.cols ||
            memcmp(d.x, w.x, (size_t)(d.rows * d.cols) * sizeof(float))) {
            fprintf(stderr, "  numpy file %s read wrong\n", name);
            bad++;
        }
        shard_dataset_free(&d);
        shard_dataset_free(&w);
    }
    CHECK(bad == 0);
    printf("numpy: %d files numpy wrote read as numpy reads them; 3 written files identical to np.save's\n", n);
}

/* ---- load time ----------------------------------------------------------------------- */

static void test_load_time(void)
{
    enum { ROWS = 100000, COLS = 64 };
    const char *path = tpath("big.csv");
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    fprintf(f, "c0");
    for (int j = 1; j < COLS; j++) fprintf(f, ",c%d", j);
    fputc('\n', f);
    uint64_t seed = 99;
    float *want = malloc((size_t)ROWS * COLS * sizeof(float));
    REQUIRE(want);
    for (int i = 0; i < ROWS; i++)
        for (int j = 0; j < COLS; j++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            char num[32];
            snprintf(num, sizeof num, "%.4f", ((double)(seed >> 11) / 9007199254740992.0 - 0.5) * 20);
            want[(size_t)i * COLS + j] = (float)strtod(num, NULL);
            fputs(num, f);
            fputc(j + 1 < COLS ? ',' : '\n', f);
        }
    long size = ftell(f);
    REQUIRE(fclose(f) == 0);
    char err[256];
    CHECK_RC(shard_npy_write_f32(tpath("big.npy"), want, ROWS, COLS, err, sizeof err), 0);
    /* each loaded twice: the first time pays for fresh memory, the second reuses it */
    double t_csv[2], t_npy[2];
    for (int round = 0; round < 2; round++) {
        shard_dataset d;
        double t0 = now_s();
        CHECK_RC(shard_dataset_load(path, &d, err, sizeof err), 0);
        t_csv[round] = now_s() - t0;
        CHECK(d.rows == ROWS && d.cols == COLS && d.x && !memcmp(d.x, want, (size_t)ROWS * COLS * sizeof(float)));
        shard_dataset_free(&d);
        t0 = now_s();
        CHECK_RC(shard_dataset_load(tpath("big.npy"), &d, err, sizeof err), 0);
        t_npy[round] = now_s() - t0;
        CHECK(d.rows == ROWS && d.cols == COLS && d.x && !memcmp(d.x, want, (size_t)ROWS * COLS * sizeof(float)));
        shard_dataset_free(&d);
    }
    printf("load time, %d x %d: .csv (%.1f MB) %.3f s, again %.3f s; .npy (%.1f MB) %.3f s, again %.3f s\n", ROWS,
           COLS, size / 1e6, t_csv[0], t_csv[1], (128 + (double)ROWS * COLS * 4) / 1e6, t_npy[0], t_npy[1]);
    free(want);
    unlink(path);
    unlink(tpath("big.npy"));
}

int main(void)
{
    const uint16_t one = 1;
    REQUIRE(*(const unsigned char *)&one == 1);   /* the hand-made files assume a little-endian host */
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_shard_dataset.XXXXXX");
    REQUIRE(mkdtemp(tmpdir));
    test_npy_round_trip();
    test_npy_bytes();
    test_npy_dtypes();
    test_npy_shapes();
    test_npy_refusals();
    test_npy_truncated();
    test_csv();
    test_csv_numbers();
    test_jsonl();
    test_files();
    test_directories();
    test_with_numpy();
    test_load_time();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return TEST_DONE();
}
