/* serve/safetensors.c — the safetensors reader and writer of
 * serve/safetensors.h.  The header is JSON parsed with jansson; everything in
 * it is checked against the buffer before a tensor view is made, because the
 * file comes from outside (an uploaded model). */
#include "serve/safetensors.h"
#include "serve/serve_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "loom/loom.h"

#define META_KEY "__metadata__"

struct loom_st_file {
    int n;
    loom_tensor *tensors;   /* sorted by data offset */
    int nmeta;
    char **meta;            /* key, value, key, value, … (owned) */
};

static const struct {
    const char *st;
    loom_tensor_dtype dt;
} st_dtypes[] = {
    {"BOOL", LOOM_DTYPE_BOOL}, {"U8", LOOM_DTYPE_UINT8},   {"U16", LOOM_DTYPE_UINT16},
    {"U32", LOOM_DTYPE_UINT32}, {"U64", LOOM_DTYPE_UINT64}, {"I8", LOOM_DTYPE_INT8},
    {"I16", LOOM_DTYPE_INT16},  {"I32", LOOM_DTYPE_INT32},  {"I64", LOOM_DTYPE_INT64},
    {"F16", LOOM_DTYPE_FP16},   {"BF16", LOOM_DTYPE_BF16},  {"F32", LOOM_DTYPE_FP32},
    {"F64", LOOM_DTYPE_FP64},
};
#define N_ST_DTYPES ((int)(sizeof(st_dtypes) / sizeof(st_dtypes[0])))

const char *loom_st_dtype_name(loom_tensor_dtype dt)
{
    for (int i = 0; i < N_ST_DTYPES; i++)
        if (st_dtypes[i].dt == dt) return st_dtypes[i].st;
    return NULL;
}

loom_tensor_dtype loom_st_dtype_from_name(const char *name)
{
    for (int i = 0; name && i < N_ST_DTYPES; i++)
        if (!strcmp(st_dtypes[i].st, name)) return st_dtypes[i].dt;
    return LOOM_DTYPE_INVALID;
}

static uint64_t read_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* ---- reading ----------------------------------------------------------------- */

void loom_st_close(loom_st_file **pf)
{
    if (!pf || !*pf) return;
    loom_st_file *f = *pf;
    for (int i = 0; i < 2 * f->nmeta; i++) free(f->meta[i]);
    free(f->meta);
    free(f->tensors);
    free(f);
    *pf = NULL;
}

/* A JSON integer in [0, INT64_MAX]. */
static int json_nonneg(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int parse_metadata(loom_st_file *f, json_t *meta, char *err, size_t errlen)
{
    if (!json_is_object(meta))
        return serve_fail(LOOM_EINVAL, err, errlen, "__metadata__ is not an object of strings");
    size_t n = json_object_size(meta);
    if (n > LOOM_ST_MAX_METADATA)
        return serve_fail(LOOM_ETOOBIG, err, errlen, "%zu metadata entries, at most %d", n,
                    LOOM_ST_MAX_METADATA);
    f->meta = calloc(2 * n + 1, sizeof(char *));
    if (!f->meta) return serve_fail(LOOM_ENOMEM, err, errlen, "out of memory");
    const char *key;
    json_t *v;
    json_object_foreach(meta, key, v) {
        if (!json_is_string(v))
            return serve_fail(LOOM_EINVAL, err, errlen, "__metadata__ '%s' is not a string", key);
        char *k = strdup(key), *s = strdup(json_string_value(v));
        f->meta[2 * f->nmeta] = k;
        f->meta[2 * f->nmeta + 1] = s;
        f->nmeta++;
        if (!k || !s) return serve_fail(LOOM_ENOMEM, err, errlen, "out of memory");
    }
    return 0;
}

/* One tensor entry of the header: fills t (data relative to the byte buffer
 * start, as an offset in t->data's place) and its [begin, end). */
static int parse_entry(const char *name, json_t *e, size_t buflen, loom_tensor *t,
                       uint64_t *begin, uint64_t *end, char *err, size_t errlen)
{
    if (strlen(name) == 0 || strlen(name) > LOOM_TENSOR_NAME_MAX)
        return serve_fail(LOOM_EINVAL, err, errlen, "tensor name of %zu bytes, want 1..%d",
                    strlen(name), LOOM_TENSOR_NAME_MAX);
    if (!json_is_object(e))
        return serve_fail(LOOM_EINVAL, err, errlen, "tensor '%s': entry is not an object", name);
    json_t *jdt = json_object_get(e, "dtype"), *jshape = json_object_get(e, "shape"),
           *joff = json_object_get(e, "data_offsets");
    if (!json_is_string(jdt) || !json_is_array(jshape) || !json_is_array(joff) ||
        json_array_size(joff) != 2 || json_object_size(e) != 3)
        return serve_fail(LOOM_EINVAL, err, errlen,
                    "tensor '%s': want exactly dtype (string), shape (array), "
                    "data_offsets ([begin, end])", name);
    loom_tensor_dtype dt = loom_st_dtype_from_name(json_string_value(jdt));
    if (dt == LOOM_DTYPE_INVALID)
        return serve_fail(LOOM_EINVAL, err, errlen, "tensor '%s': dtype %s is not supported", name,
                    json_string_value(jdt));
    size_t ndim = json_array_size(jshape);
    if (ndim > LOOM_TENSOR_MAX_DIMS)
        return serve_fail(LOOM_EINVAL, err, errlen, "tensor '%s': %zu dims, at most %d", name, ndim,
                    LOOM_TENSOR_MAX_DIMS);
    int64_t shape[LOOM_TENSOR_MAX_DIMS];
    for (size_t d = 0; d < ndim; d++) {
        uint64_t v;
        if (json_nonneg(json_array_get(jshape, d), &v))
            return serve_fail(LOOM_EINVAL, err, errlen, "tensor '%s': shape is not integers >= 0",
                        name);
        shape[d] = (int64_t)v;
    }
    size_t nbytes;
    int rc = loom_tensor_shape_size(dt, (int)ndim, shape, NULL, &nbytes);
    if (rc) return serve_fail(rc, err, errlen, "tensor '%s': shape too large", name);
    if (json_nonneg(json_array_get(joff, 0), begin) || json_nonneg(json_array_get(joff, 1), end) ||
        *begin > *end || *end > buflen)
        return serve_fail(LOOM_EINVAL, err, errlen,
                    "tensor '%s': data_offsets outside the %zu-byte buffer", name, buflen);
    if (*end - *begin != nbytes)
        return serve_fail(LOOM_EINVAL, err, errlen,
                    "tensor '%s': %llu data bytes, %s shape needs %zu", name,
                    (unsigned long long)(*end - *begin), json_string_value(jdt), nbytes);
    /* data is set once the tiling is checked; the name fits (checked above) */
    return loom_tensor_set(t, name, dt, (int)ndim, shape, nbytes ? "" : NULL, err, errlen);
}

typedef struct span {
    uint64_t begin, end;
    int index;
} span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->index - y->index;
}

/* The tensors tile [0, buflen) exactly; then reorder them by offset and point
 * their data into the buffer. */
static int place_tensors(loom_st_file *f, span *spans, const unsigned char *data, size_t buflen,
                         char *err, size_t errlen)
{
    qsort(spans, (size_t)f->n, sizeof(span), span_cmp);
    uint64_t at = 0;
    for (int i = 0; i < f->n; i++) {
        if (spans[i].begin != at)
            return serve_fail(LOOM_EINVAL, err, errlen,
                        "tensor '%s' starts at byte %llu of the buffer, want %llu "
                        "(tensors overlap or leave a hole)",
                        f->tensors[spans[i].index].name, (unsigned long long)spans[i].begin,
                        (unsigned long long)at);
        at = spans[i].end;
    }
    if (at != buflen)
        return serve_fail(LOOM_EINVAL, err, errlen, "tensors cover %llu of the %zu buffer bytes",
                    (unsigned long long)at, buflen);
    size_t count = f->n > 0 ? (size_t)(unsigned)f->n : 1;
    loom_tensor *sorted = calloc(count, sizeof(loom_tensor));
    if (!sorted) return serve_fail(LOOM_ENOMEM, err, errlen, "out of memory");
    for (int i = 0; i < f->n; i++) {
        sorted[i] = f->tensors[spans[i].index];
        sorted[i].data = sorted[i].nbytes ? data + spans[i].begin : NULL;
    }
    free(f->tensors);
    f->tensors = sorted;
    return 0;
}

static int parse_header(loom_st_file *f, json_t *root, const unsigned char *data, size_t buflen,
                        char *err, size_t errlen)
{
    if (!json_is_object(root))
        return serve_fail(LOOM_EINVAL, err, errlen, "safetensors header is not a JSON object");
    size_t n = json_object_size(root);
    json_t *meta = json_object_get(root, META_KEY);
    if (meta) {
        int rc = parse_metadata(f, meta, err, errlen);
        if (rc) return rc;
        n--;
    }
    if (n > LOOM_ST_MAX_TENSORS)
        return serve_fail(LOOM_ETOOBIG, err, errlen, "%zu tensors, at most %d", n, LOOM_ST_MAX_TENSORS);
    f->tensors = calloc(n ? n : 1, sizeof(loom_tensor));
    span *spans = calloc(n ? n : 1, sizeof(span));
    if (!f->tensors || !spans) {
        free(spans);
        return serve_fail(LOOM_ENOMEM, err, errlen, "out of memory");
    }
    const char *key;
    json_t *v;
    int rc = 0;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, META_KEY)) continue;
        span *s = &spans[f->n];
        s->index = f->n;
        rc = parse_entry(key, v, buflen, &f->tensors[f->n], &s->begin, &s->end, err, errlen);
        if (rc) break;
        f->n++;
    }
    if (!rc) rc = place_tensors(f, spans, data, buflen, err, errlen);
    free(spans);
    return rc;
}

int loom_st_open(const void *buf, size_t len, loom_st_file **out, char *err, size_t errlen)
{
    *out = NULL;
    const unsigned char *p = buf;
    if (!p || len < 8)
        return serve_fail(LOOM_EINVAL, err, errlen, "not a safetensors file (%zu bytes)", len);
    uint64_t hlen = read_le64(p);
    if (hlen < 2 || hlen > LOOM_ST_HEADER_MAX || hlen > len - 8)
        return serve_fail(LOOM_EINVAL, err, errlen,
                    "not a safetensors file: header length %llu, file has %zu bytes after it",
                    (unsigned long long)hlen, len - 8);
    if (p[8] != '{')
        return serve_fail(LOOM_EINVAL, err, errlen, "not a safetensors file: header is not a JSON object");
    json_error_t jerr;
    json_t *root = json_loadb((const char *)p + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return serve_fail(LOOM_EINVAL, err, errlen, "safetensors header: %s (byte %d)", jerr.text,
                    jerr.position);
    loom_st_file *f = calloc(1, sizeof(*f));
    if (!f) {
        json_decref(root);
        return serve_fail(LOOM_ENOMEM, err, errlen, "out of memory");
    }
    size_t start = 8 + (size_t)hlen;
    int rc = parse_header(f, root, p + start, len - start, err, errlen);
    json_decref(root);
    if (rc) {
        loom_st_close(&f);
        return rc;
    }
    *out = f;
    return 0;
}

int loom_st_count(const loom_st_file *f)
{
    return f ? f->n : 0;
}

const loom_tensor *loom_st_tensor(const loom_st_file *f, int i)
{
    return f && i >= 0 && i < f->n ? &f->tensors[i] : NULL;
}

const loom_tensor *loom_st_find(const loom_st_file *f, const char *name)
{
    return f ? loom_tensors_find(f->tensors, f->n, name) : NULL;
}

const char *loom_st_metadata(const loom_st_file *f, const char *key)
{
    for (int i = 0; f && key && i < f->nmeta; i++)
        if (!strcmp(f->meta[2 * i], key)) return f->meta[2 * i + 1];
    return NULL;
}

int loom_st_metadata_count(const loom_st_file *f)
{
    return f ? f->nmeta : 0;
}

int loom_st_metadata_entry(const loom_st_file *f, int i, const char **key, const char **value)
{
    if (!f || i < 0 || i >= f->nmeta) return LOOM_EINVAL;
    *key = f->meta[2 * i];
    *value = f->meta[2 * i + 1];
    return 0;
}

/* ---- writing ----------------------------------------------------------------- */

static json_t *entry_json(const loom_tensor *t, size_t begin)
{
    json_t *shape = json_array();
    for (int d = 0; shape && d < t->ndim; d++)
        if (json_array_append_new(shape, json_integer(t->shape[d]))) {
            json_decref(shape);
            return NULL;
        }
    return json_pack("{s:s, s:o, s:[I, I]}", "dtype", loom_st_dtype_name(t->dtype), "shape", shape,
                     "data_offsets", (json_int_t)begin, (json_int_t)(begin + t->nbytes));
}

static int build_header(const loom_tensor *t, int n, const char *const *meta, int nmeta,
                        json_t **out, size_t *buflen, char *err, size_t errlen)
{
    json_t *root = json_object();
    if (!root) return serve_fail(LOOM_ENOMEM, err, errlen, "out of memory");
    if (nmeta > 0) {
        json_t *m = json_object();
        for (int i = 0; m && i < nmeta; i++)
            if (!meta[2 * i] || !meta[2 * i + 1] ||
                json_object_set_new(m, meta[2 * i], json_string(meta[2 * i + 1]))) {
                json_decref(m);
                m = NULL;
            }
        if (!m || json_object_set_new(root, META_KEY, m)) {
            json_decref(root);
            return serve_fail(LOOM_EINVAL, err, errlen, "metadata must be UTF-8 key/value strings");
        }
    }
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        const char *why = NULL;
        size_t nbytes;
        if (!loom_st_dtype_name(t[i].dtype)) why = "has no safetensors dtype";
        else if (loom_tensor_shape_size(t[i].dtype, t[i].ndim, t[i].shape, NULL, &nbytes) ||
                 nbytes != t[i].nbytes || (nbytes && !t[i].data))
            why = "has a shape that does not match its data";
        else if (!strcmp(t[i].name, META_KEY) || json_object_get(root, t[i].name))
            why = "is a duplicate or reserved name";
        json_t *e = why ? NULL : entry_json(&t[i], at);
        if (!e || json_object_set_new(root, t[i].name, e)) {
            json_decref(root);
            return serve_fail(LOOM_EINVAL, err, errlen, "tensor '%s' %s", t[i].name,
                        why ? why : "cannot be written (name not UTF-8?)");
        }
        at += t[i].nbytes;
    }
    *out = root;
    *buflen = at;
    return 0;
}

int loom_st_write(const loom_tensor *t, int n, const char *const *meta, int nmeta, void **out,
                  size_t *len, char *err, size_t errlen)
{
    *out = NULL;
    if (n < 0 || n > LOOM_ST_MAX_TENSORS || (n && !t) || nmeta < 0 ||
        nmeta > LOOM_ST_MAX_METADATA || (nmeta && !meta))
        return serve_fail(LOOM_EINVAL, err, errlen, "bad tensor or metadata count");
    json_t *root = NULL;
    size_t buflen = 0;
    int rc = build_header(t, n, meta, nmeta, &root, &buflen, err, errlen);
    if (rc) return rc;
    char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!text) return serve_fail(LOOM_ENOMEM, err, errlen, "out of memory");
    size_t tlen = strlen(text), hlen = tlen + (8 - tlen % 8) % 8;
    if (hlen > LOOM_ST_HEADER_MAX || buflen > SIZE_MAX - 8 - hlen) {
        free(text);
        return serve_fail(LOOM_ETOOBIG, err, errlen, "safetensors header or data too large");
    }
    unsigned char *buf = malloc(8 + hlen + buflen);
    if (!buf) {
        free(text);
        return serve_fail(LOOM_ENOMEM, err, errlen, "out of memory");
    }
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, text, tlen);
    memset(buf + 8 + tlen, ' ', hlen - tlen);
    free(text);
    unsigned char *p = buf + 8 + hlen;
    for (int i = 0; i < n; i++) {
        if (t[i].nbytes) memcpy(p, t[i].data, t[i].nbytes);
        p += t[i].nbytes;
    }
    *out = buf;
    *len = 8 + hlen + buflen;
    return 0;
}
