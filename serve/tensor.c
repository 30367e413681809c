/* serve/tensor.c — data types, shape arithmetic, element conversion and the
 * LTN1 container codec of serve/tensor.h.  The decoder reads bytes that come
 * from outside (HTTP bodies, other processes): it checks every length against
 * what is left before it reads, and every product for overflow. */
#include "base/errf.h"
#include "serve/tensor.h"
#include "serve/serve_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/loom.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "serve/tensor.c copies element data as is: it assumes a little-endian host"
#endif

#define ALIGN 8

static const struct {
    const char *name;
    size_t size;
} dtypes[LOOM_DTYPE_COUNT_] = {
    [LOOM_DTYPE_BOOL] = {"BOOL", 1},     [LOOM_DTYPE_UINT8] = {"UINT8", 1},
    [LOOM_DTYPE_UINT16] = {"UINT16", 2}, [LOOM_DTYPE_UINT32] = {"UINT32", 4},
    [LOOM_DTYPE_UINT64] = {"UINT64", 8}, [LOOM_DTYPE_INT8] = {"INT8", 1},
    [LOOM_DTYPE_INT16] = {"INT16", 2},   [LOOM_DTYPE_INT32] = {"INT32", 4},
    [LOOM_DTYPE_INT64] = {"INT64", 8},   [LOOM_DTYPE_FP16] = {"FP16", 2},
    [LOOM_DTYPE_FP32] = {"FP32", 4},     [LOOM_DTYPE_FP64] = {"FP64", 8},
    [LOOM_DTYPE_BF16] = {"BF16", 2},
};

int serve_fail(int rc, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    loom__verrf(err, errlen, rc, fmt, ap);
    va_end(ap);
    return rc;
}

static int dtype_valid(loom_tensor_dtype dt)
{
    return dt > LOOM_DTYPE_INVALID && dt < LOOM_DTYPE_COUNT_;
}

size_t loom_tensor_dtype_size(loom_tensor_dtype dt)
{
    return dtype_valid(dt) ? dtypes[dt].size : 0;
}

const char *loom_tensor_dtype_name(loom_tensor_dtype dt)
{
    return dtype_valid(dt) ? dtypes[dt].name : NULL;
}

loom_tensor_dtype loom_tensor_dtype_from_name(const char *name)
{
    if (!name) return LOOM_DTYPE_INVALID;
    for (int i = 1; i < LOOM_DTYPE_COUNT_; i++)
        if (!strcmp(dtypes[i].name, name)) return (loom_tensor_dtype)i;
    return LOOM_DTYPE_INVALID;
}

/* ---- shapes ---------------------------------------------------------------- */

int loom_tensor_shape_size(loom_tensor_dtype dt, int ndim, const int64_t *shape, int64_t *numel,
                           size_t *nbytes)
{
    if (!dtype_valid(dt) || ndim < 0 || ndim > LOOM_TENSOR_MAX_DIMS || (ndim && !shape))
        return LOOM_EINVAL;
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return LOOM_EINVAL;
        uint64_t d = (uint64_t)shape[i];
        if (d && n > (uint64_t)INT64_MAX / d) return LOOM_ETOOBIG;
        n *= d;
    }
    /* zero elements: n is 0 after the loop above only if some dim is 0 */
    size_t es = dtypes[dt].size;
    if (n > SIZE_MAX / es || n > (uint64_t)INT64_MAX / es) return LOOM_ETOOBIG;
    if (numel) *numel = (int64_t)n;
    if (nbytes) *nbytes = (size_t)n * es;
    return 0;
}

static int name_ok(const char *name, size_t *len)
{
    if (!name) return 0;
    *len = strnlen(name, LOOM_TENSOR_NAME_MAX + 1);
    return *len > 0 && *len <= LOOM_TENSOR_NAME_MAX;
}

int loom_tensor_set(loom_tensor *t, const char *name, loom_tensor_dtype dt, int ndim,
                    const int64_t *shape, const void *data, char *err, size_t errlen)
{
    size_t nlen;
    if (!t) return serve_fail(LOOM_EINVAL, err, errlen, "no tensor");
    if (!name_ok(name, &nlen))
        return serve_fail(LOOM_EINVAL, err, errlen, "tensor name must be 1..%d bytes",
                    LOOM_TENSOR_NAME_MAX);
    size_t nbytes;
    int rc = loom_tensor_shape_size(dt, ndim, shape, NULL, &nbytes);
    if (rc)
        return serve_fail(rc, err, errlen, "tensor '%s': %s", name,
                    rc == LOOM_ETOOBIG ? "shape too large" : "bad dtype, ndim or shape");
    if (nbytes && !data) return serve_fail(LOOM_EINVAL, err, errlen, "tensor '%s': no data", name);
    memset(t, 0, sizeof(*t));
    memcpy(t->name, name, nlen);
    t->dtype = dt;
    t->ndim = ndim;
    if (ndim) memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
    t->data = data;
    t->nbytes = nbytes;
    return 0;
}

const loom_tensor *loom_tensors_find(const loom_tensor *t, int n, const char *name)
{
    for (int i = 0; t && name && i < n; i++)
        if (!strcmp(t[i].name, name)) return &t[i];
    return NULL;
}

/* ---- element conversion ---------------------------------------------------- */

static float half_to_float(uint16_t h)
{
    int sign = h >> 15, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    float v;
    if (exp == 0) v = ldexpf((float)mant, -24);                     /* subnormal */
    else if (exp == 31) v = mant ? NAN : INFINITY;
    else v = ldexpf((float)(mant | 0x400), exp - 25);
    return sign ? -v : v;
}

static float bf16_to_float(uint16_t b)
{
    uint32_t bits = (uint32_t)b << 16;
    float v;
    memcpy(&v, &bits, sizeof(v));
    return v;
}

#define LOAD(type)                                                   \
    do {                                                             \
        type v_;                                                     \
        memcpy(&v_, p + i * sizeof(type), sizeof(type));             \
        return (double)v_;                                           \
    } while (0)

double loom_tensor_get_f64(const loom_tensor *t, size_t i)
{
    const unsigned char *p = t->data;
    switch (t->dtype) {
    case LOOM_DTYPE_BOOL: return p[i] != 0;
    case LOOM_DTYPE_UINT8: LOAD(uint8_t);
    case LOOM_DTYPE_UINT16: LOAD(uint16_t);
    case LOOM_DTYPE_UINT32: LOAD(uint32_t);
    case LOOM_DTYPE_UINT64: LOAD(uint64_t);
    case LOOM_DTYPE_INT8: LOAD(int8_t);
    case LOOM_DTYPE_INT16: LOAD(int16_t);
    case LOOM_DTYPE_INT32: LOAD(int32_t);
    case LOOM_DTYPE_INT64: LOAD(int64_t);
    case LOOM_DTYPE_FP32: LOAD(float);
    case LOOM_DTYPE_FP64: LOAD(double);
    case LOOM_DTYPE_FP16: {
        uint16_t h;
        memcpy(&h, p + i * 2, 2);
        return half_to_float(h);
    }
    case LOOM_DTYPE_BF16: {
        uint16_t h;
        memcpy(&h, p + i * 2, 2);
        return bf16_to_float(h);
    }
    default: return NAN;
    }
}

float loom_tensor_get_f32(const loom_tensor *t, size_t i)
{
    if (t->dtype == LOOM_DTYPE_FP32) {
        float v;
        memcpy(&v, (const unsigned char *)t->data + i * sizeof(float), sizeof(v));
        return v;
    }
    return (float)loom_tensor_get_f64(t, i);
}

void loom_tensor_to_f32(const loom_tensor *t, float *out)
{
    size_t es = loom_tensor_dtype_size(t->dtype);
    size_t n = es ? t->nbytes / es : 0;
    if (t->dtype == LOOM_DTYPE_FP32) {
        if (n) memcpy(out, t->data, n * sizeof(float));
        return;
    }
    for (size_t i = 0; i < n; i++) out[i] = loom_tensor_get_f32(t, i);
}

/* ---- encoding ---------------------------------------------------------------- */

static size_t pad_to_align(size_t off)
{
    return (ALIGN - off % ALIGN) % ALIGN;
}

/* Header bytes of one tensor (name .. nbytes), without padding. */
static size_t header_size(const loom_tensor *t)
{
    return 2 + strlen(t->name) + 1 + 1 + 8 * (size_t)t->ndim + 8;
}

/* The tensor is one loom_tensor_set would make. */
static int check_tensor(const loom_tensor *t, char *err, size_t errlen)
{
    size_t nlen, nbytes;
    if (!name_ok(t->name, &nlen))
        return serve_fail(LOOM_EINVAL, err, errlen, "tensor name must be 1..%d bytes",
                    LOOM_TENSOR_NAME_MAX);
    int rc = loom_tensor_shape_size(t->dtype, t->ndim, t->shape, NULL, &nbytes);
    if (rc) return serve_fail(rc, err, errlen, "tensor '%s': bad dtype, ndim or shape", t->name);
    if (nbytes != t->nbytes || (nbytes && !t->data))
        return serve_fail(LOOM_EINVAL, err, errlen, "tensor '%s': %zu data bytes, shape needs %zu",
                    t->name, t->nbytes, nbytes);
    return 0;
}

int loom_tensors_encoded_size(const loom_tensor *t, int n, size_t *size, char *err, size_t errlen)
{
    if (n < 0 || n > LOOM_TENSOR_MAX_COUNT || (n && !t))
        return serve_fail(LOOM_EINVAL, err, errlen, "tensor count %d not in 0..%d", n,
                    LOOM_TENSOR_MAX_COUNT);
    size_t off = 8;
    for (int i = 0; i < n; i++) {
        int rc = check_tensor(&t[i], err, errlen);
        if (rc) return rc;
        off += header_size(&t[i]);
        off += pad_to_align(off);
        if (t[i].nbytes > SIZE_MAX - off)
            return serve_fail(LOOM_ETOOBIG, err, errlen, "tensors too large");
        off += t[i].nbytes;
    }
    *size = off;
    return 0;
}

static unsigned char *put_le(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) p[i] = (unsigned char)(v >> (8 * i));
    return p + bytes;
}

int loom_tensors_encode(const loom_tensor *t, int n, void *buf, size_t cap, size_t *len,
                        char *err, size_t errlen)
{
    size_t need;
    int rc = loom_tensors_encoded_size(t, n, &need, err, errlen);
    if (rc) return rc;
    if (!buf || cap < need)
        return serve_fail(LOOM_ETOOBIG, err, errlen, "encoding needs %zu bytes, buffer has %zu", need,
                    cap);
    unsigned char *base = buf, *p = base;
    memcpy(p, LOOM_TENSOR_MAGIC, 4);
    p = put_le(p + 4, (uint64_t)n, 4);
    for (int i = 0; i < n; i++) {
        size_t nlen = strlen(t[i].name);
        p = put_le(p, nlen, 2);
        memcpy(p, t[i].name, nlen);
        p += nlen;
        *p++ = (unsigned char)t[i].dtype;
        *p++ = (unsigned char)t[i].ndim;
        for (int d = 0; d < t[i].ndim; d++) p = put_le(p, (uint64_t)t[i].shape[d], 8);
        p = put_le(p, t[i].nbytes, 8);
        size_t pad = pad_to_align((size_t)(p - base));
        memset(p, 0, pad);
        p += pad;
        if (t[i].nbytes) memcpy(p, t[i].data, t[i].nbytes);
        p += t[i].nbytes;
    }
    *len = (size_t)(p - base);
    return 0;
}

int loom_tensors_encode_alloc(const loom_tensor *t, int n, void **out, size_t *len, char *err,
                              size_t errlen)
{
    size_t need;
    int rc = loom_tensors_encoded_size(t, n, &need, err, errlen);
    if (rc) return rc;
    void *buf = malloc(need);
    if (!buf) return serve_fail(LOOM_ENOMEM, err, errlen, "out of memory (%zu bytes)", need);
    rc = loom_tensors_encode(t, n, buf, need, len, err, errlen);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    return 0;
}

/* ---- decoding ---------------------------------------------------------------- */

/* A cursor over outside bytes: every take checks what is left. */
typedef struct reader {
    const unsigned char *base;
    size_t len, off;
} reader;

static int take(reader *r, size_t n, const unsigned char **p)
{
    if (n > r->len - r->off) return -1;
    *p = r->base + r->off;
    r->off += n;
    return 0;
}

static int take_le(reader *r, int bytes, uint64_t *v)
{
    const unsigned char *p;
    if (take(r, (size_t)bytes, &p)) return -1;
    *v = 0;
    for (int i = 0; i < bytes; i++) *v |= (uint64_t)p[i] << (8 * i);
    return 0;
}

static int decode_one(reader *r, int index, loom_tensor *t, char *err, size_t errlen)
{
    uint64_t v;
    const unsigned char *p;
    memset(t, 0, sizeof(*t));
    if (take_le(r, 2, &v) || v == 0 || v > LOOM_TENSOR_NAME_MAX || take(r, (size_t)v, &p))
        return serve_fail(LOOM_EINVAL, err, errlen, "tensor %d: bad or truncated name", index);
    if (memchr(p, 0, (size_t)v))
        return serve_fail(LOOM_EINVAL, err, errlen, "tensor %d: NUL byte in name", index);
    memcpy(t->name, p, (size_t)v);
    uint64_t dt, ndim;
    if (take_le(r, 1, &dt) || take_le(r, 1, &ndim))
        return serve_fail(LOOM_EINVAL, err, errlen, "tensor '%s': truncated header", t->name);
    if (!dtype_valid((loom_tensor_dtype)dt))
        return serve_fail(LOOM_EINVAL, err, errlen, "tensor '%s': unknown dtype code %u", t->name,
                    (unsigned)dt);
    if (ndim > LOOM_TENSOR_MAX_DIMS)
        return serve_fail(LOOM_EINVAL, err, errlen, "tensor '%s': %u dims, at most %d", t->name,
                    (unsigned)ndim, LOOM_TENSOR_MAX_DIMS);
    t->dtype = (loom_tensor_dtype)dt;
    t->ndim = (int)ndim;
    for (int d = 0; d < t->ndim; d++) {
        if (take_le(r, 8, &v))
            return serve_fail(LOOM_EINVAL, err, errlen, "tensor '%s': truncated shape", t->name);
        if (v > (uint64_t)INT64_MAX)
            return serve_fail(LOOM_EINVAL, err, errlen, "tensor '%s': negative dim", t->name);
        t->shape[d] = (int64_t)v;
    }
    size_t want;
    int rc = loom_tensor_shape_size(t->dtype, t->ndim, t->shape, NULL, &want);
    if (rc) return serve_fail(rc, err, errlen, "tensor '%s': shape too large", t->name);
    if (take_le(r, 8, &v))
        return serve_fail(LOOM_EINVAL, err, errlen, "tensor '%s': truncated header", t->name);
    if (v != want)
        return serve_fail(LOOM_EINVAL, err, errlen, "tensor '%s': %llu data bytes, shape needs %zu",
                    t->name, (unsigned long long)v, want);
    size_t pad = pad_to_align(r->off);
    if (take(r, pad, &p))
        return serve_fail(LOOM_EINVAL, err, errlen, "tensor '%s': truncated", t->name);
    for (size_t i = 0; i < pad; i++)
        if (p[i]) return serve_fail(LOOM_EINVAL, err, errlen, "tensor '%s': nonzero padding", t->name);
    if (take(r, want, &p))
        return serve_fail(LOOM_EINVAL, err, errlen, "tensor '%s': %zu data bytes, only %zu left",
                    t->name, want, r->len - r->off);
    t->data = want ? p : NULL;
    t->nbytes = want;
    return 0;
}

int loom_tensors_decode(const void *buf, size_t len, loom_tensor *out, int max, int *count,
                        char *err, size_t errlen)
{
    *count = 0;
    reader r = {buf, buf ? len : 0, 0};
    const unsigned char *magic;
    uint64_t n;
    if (take(&r, 4, &magic) || memcmp(magic, LOOM_TENSOR_MAGIC, 4))
        return serve_fail(LOOM_EINVAL, err, errlen, "not a tensor container (no \"%s\" magic)",
                    LOOM_TENSOR_MAGIC);
    if (take_le(&r, 4, &n)) return serve_fail(LOOM_EINVAL, err, errlen, "truncated tensor container");
    if (n > LOOM_TENSOR_MAX_COUNT)
        return serve_fail(LOOM_ETOOBIG, err, errlen, "%llu tensors, at most %d", (unsigned long long)n,
                    LOOM_TENSOR_MAX_COUNT);
    if ((int)n > max)
        return serve_fail(LOOM_ETOOBIG, err, errlen, "%d tensors, room for %d", (int)n, max);
    for (int i = 0; i < (int)n; i++) {
        int rc = decode_one(&r, i, &out[i], err, errlen);
        if (rc) return rc;
        for (int k = 0; k < i; k++)
            if (!strcmp(out[k].name, out[i].name))
                return serve_fail(LOOM_EINVAL, err, errlen, "tensor name '%s' appears twice",
                            out[i].name);
    }
    if (r.off != r.len)
        return serve_fail(LOOM_EINVAL, err, errlen, "%zu stray bytes after the last tensor",
                    r.len - r.off);
    *count = (int)n;
    return 0;
}
