/* runtime/value.c — msgpack values for task arguments and results (loom/value.h).
 *
 * Owns three things:
 *   - loom_pack: a builder over msgpack-c's sbuffer/packer.  Space for a whole
 *     value (header and body) is reserved before anything is written, so a
 *     failed call leaves the buffer as it was.
 *   - loom_unpack: a cursor reader written by hand.  Every read is preceded by
 *     a check against the bytes that remain, so no input can make it read past
 *     buf + len; nesting is limited to LOOM_UNPACK_MAX_DEPTH containers.
 *   - loom_msgpack_to_json: one msgpack value to JSON text, built with jansson.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <msgpack.h>
#include "loom/loom.h"
#include "loom/value.h"

#define LOOM_UNPACK_MAX_DEPTH 64
/* Non-string map keys become their JSON text; each level of keys-inside-keys
 * doubles the escaping, so the text of one key is capped to keep a few input
 * bytes from asking for exponential output. */
#define LOOM_JSON_MAX_KEY_TEXT (64 * 1024)

/* ---- packing ------------------------------------------------------------ */

struct loom_pack {
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
};

loom_pack *loom_pack_new(void)
{
    loom_pack *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    msgpack_sbuffer_init(&p->sbuf);
    msgpack_packer_init(&p->pk, &p->sbuf, msgpack_sbuffer_write);
    return p;
}

void loom_pack_destroy(loom_pack **p)
{
    if (!p || !*p) return;
    msgpack_sbuffer_destroy(&(*p)->sbuf);
    free(*p);
    *p = NULL;
}

void loom_pack_reset(loom_pack *p)
{
    if (p) msgpack_sbuffer_clear(&p->sbuf);
}

const void *loom_pack_data(const loom_pack *p)
{
    if (!p || !p->sbuf.data) return "";
    return p->sbuf.data;
}

size_t loom_pack_size(const loom_pack *p)
{
    return p ? p->sbuf.size : 0;
}

/* Make room for n more bytes so that the writes that follow cannot fail. */
static int pack_reserve(loom_pack *p, size_t n)
{
    msgpack_sbuffer *sb = &p->sbuf;
    if (sb->alloc - sb->size >= n) return LOOM_OK;
    if (n > SIZE_MAX - sb->size) return LOOM_ENOMEM;
    size_t want = sb->size + n;
    size_t cap = sb->alloc ? sb->alloc : 256;
    while (cap < want) cap = cap > SIZE_MAX / 2 ? want : cap * 2;
    char *data = realloc(sb->data, cap);
    if (!data) return LOOM_ENOMEM;
    sb->data = data;
    sb->alloc = cap;
    return LOOM_OK;
}

/* The largest header msgpack uses (type byte + 8-byte payload). */
#define PACK_HEAD_MAX 9

static int pack_done(int msgpack_rc)
{
    return msgpack_rc == 0 ? LOOM_OK : LOOM_ENOMEM;
}

int loom_pack_nil(loom_pack *p)
{
    if (!p) return LOOM_EINVAL;
    if (pack_reserve(p, 1)) return LOOM_ENOMEM;
    return pack_done(msgpack_pack_nil(&p->pk));
}

int loom_pack_bool(loom_pack *p, int v)
{
    if (!p) return LOOM_EINVAL;
    if (pack_reserve(p, 1)) return LOOM_ENOMEM;
    return pack_done(v ? msgpack_pack_true(&p->pk) : msgpack_pack_false(&p->pk));
}

int loom_pack_i64(loom_pack *p, int64_t v)
{
    if (!p) return LOOM_EINVAL;
    if (pack_reserve(p, PACK_HEAD_MAX)) return LOOM_ENOMEM;
    return pack_done(msgpack_pack_int64(&p->pk, v));
}

int loom_pack_u64(loom_pack *p, uint64_t v)
{
    if (!p) return LOOM_EINVAL;
    if (pack_reserve(p, PACK_HEAD_MAX)) return LOOM_ENOMEM;
    return pack_done(msgpack_pack_uint64(&p->pk, v));
}

int loom_pack_f64(loom_pack *p, double v)
{
    if (!p) return LOOM_EINVAL;
    if (pack_reserve(p, PACK_HEAD_MAX)) return LOOM_ENOMEM;
    return pack_done(msgpack_pack_double(&p->pk, v));
}

/* msgpack lengths are 32-bit; a longer string cannot be encoded. */
static int pack_check_len(const loom_pack *p, const void *data, size_t len)
{
    if (!p || (!data && len)) return LOOM_EINVAL;
    if (len > UINT32_MAX) return LOOM_ETOOBIG;
    return LOOM_OK;
}

int loom_pack_str(loom_pack *p, const char *s, size_t len)
{
    int rc = pack_check_len(p, s, len);
    if (rc) return rc;
    if (pack_reserve(p, PACK_HEAD_MAX + len)) return LOOM_ENOMEM;
    if (msgpack_pack_str(&p->pk, len)) return LOOM_ENOMEM;
    return pack_done(msgpack_pack_str_body(&p->pk, s, len));
}

int loom_pack_cstr(loom_pack *p, const char *s)
{
    if (!s) return LOOM_EINVAL;
    return loom_pack_str(p, s, strlen(s));
}

int loom_pack_bin(loom_pack *p, const void *data, size_t len)
{
    int rc = pack_check_len(p, data, len);
    if (rc) return rc;
    if (pack_reserve(p, PACK_HEAD_MAX + len)) return LOOM_ENOMEM;
    if (msgpack_pack_bin(&p->pk, len)) return LOOM_ENOMEM;
    return pack_done(msgpack_pack_bin_body(&p->pk, data, len));
}

int loom_pack_array(loom_pack *p, uint32_t n)
{
    if (!p) return LOOM_EINVAL;
    if (pack_reserve(p, PACK_HEAD_MAX)) return LOOM_ENOMEM;
    return pack_done(msgpack_pack_array(&p->pk, n));
}

int loom_pack_map(loom_pack *p, uint32_t n)
{
    if (!p) return LOOM_EINVAL;
    if (pack_reserve(p, PACK_HEAD_MAX)) return LOOM_ENOMEM;
    return pack_done(msgpack_pack_map(&p->pk, n));
}

/* ---- unpacking ---------------------------------------------------------- */

/* The decoded header of the value at a cursor position. */
typedef struct mp_head {
    int type;           /* LOOM_TYPE_* */
    size_t size;        /* bytes of the header, plus the body for str/bin/ext */
    int is_signed;      /* INT: value in i (1) or u (0) */
    int64_t i;
    uint64_t u;
    double f;           /* FLOAT */
    int is_f32;         /* FLOAT: it was a float32 */
    int b;              /* BOOL */
    const uint8_t *body;/* STR, BIN, EXT */
    uint32_t len;       /* STR/BIN/EXT: body bytes; ARRAY: items; MAP: pairs */
    int8_t ext_type;    /* EXT */
} mp_head;

static uint64_t load_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

static void head_uint(mp_head *h, uint64_t v)
{
    h->type = LOOM_TYPE_INT;
    h->is_signed = 0;
    h->u = v;
}

static void head_int(mp_head *h, int64_t v)
{
    h->type = LOOM_TYPE_INT;
    h->is_signed = 1;
    h->i = v;
}

static int64_t sign_extend(uint64_t v, size_t n)
{
    switch (n) {
    case 1: return (int8_t)v;
    case 2: return (int16_t)v;
    case 4: return (int32_t)v;
    default: return (int64_t)v;
    }
}

/* Decode a scalar of n payload bytes following the type byte. */
static int head_fixed(mp_head *h, uint8_t tag, const uint8_t *pl, size_t avail, size_t n)
{
    if (avail < n) return -1;
    h->size = 1 + n;
    uint64_t raw = load_be(pl, n);
    if (tag >= 0xcc && tag <= 0xcf) {
        head_uint(h, raw);
    } else if (tag >= 0xd0 && tag <= 0xd3) {
        head_int(h, sign_extend(raw, n));
    } else if (tag == 0xca) {
        float f;
        uint32_t r32 = (uint32_t)raw;
        memcpy(&f, &r32, sizeof f);
        h->type = LOOM_TYPE_FLOAT;
        h->f = f;
        h->is_f32 = 1;
    } else {
        h->type = LOOM_TYPE_FLOAT;
        memcpy(&h->f, &raw, sizeof h->f);
    }
    return 0;
}

/* A str/bin/ext whose length is in the nlen bytes after the type byte (nlen 0:
 * len_fixed is the length).  ext: one type byte precedes the body. */
static int head_blob(mp_head *h, int type, const uint8_t *pl, size_t avail,
                     size_t nlen, uint32_t len_fixed)
{
    size_t hdr = nlen + (type == LOOM_TYPE_EXT ? 1 : 0);
    if (avail < hdr) return -1;
    uint32_t len = nlen ? (uint32_t)load_be(pl, nlen) : len_fixed;
    if (avail - hdr < len) return -1;
    h->type = type;
    h->len = len;
    if (type == LOOM_TYPE_EXT) h->ext_type = (int8_t)pl[nlen];
    h->body = pl + hdr;
    h->size = 1 + hdr + len;
    return 0;
}

static int head_container(mp_head *h, int type, const uint8_t *pl, size_t avail,
                          size_t nlen, uint32_t n_fixed)
{
    if (avail < nlen) return -1;
    h->type = type;
    h->len = nlen ? (uint32_t)load_be(pl, nlen) : n_fixed;
    h->size = 1 + nlen;
    return 0;
}

/* Decode the header at u->pos.  Returns 0, or -1 at the end or on bad bytes. */
static int read_head(const loom_unpack *u, mp_head *h)
{
    memset(h, 0, sizeof *h);
    if (!u || !u->buf || u->pos >= u->len) return -1;
    const uint8_t *p = u->buf + u->pos;
    uint8_t tag = p[0];
    const uint8_t *pl = p + 1;
    size_t avail = u->len - u->pos - 1;
    h->size = 1;
    if (tag <= 0x7f) { head_uint(h, tag); return 0; }
    if (tag >= 0xe0) { head_int(h, (int8_t)tag); return 0; }
    if (tag <= 0x8f) return head_container(h, LOOM_TYPE_MAP, pl, avail, 0, tag & 0x0f);
    if (tag <= 0x9f) return head_container(h, LOOM_TYPE_ARRAY, pl, avail, 0, tag & 0x0f);
    if (tag <= 0xbf) return head_blob(h, LOOM_TYPE_STR, pl, avail, 0, tag & 0x1f);
    switch (tag) {
    case 0xc0: h->type = LOOM_TYPE_NIL; return 0;
    case 0xc2: case 0xc3: h->type = LOOM_TYPE_BOOL; h->b = tag == 0xc3; return 0;
    case 0xc4: return head_blob(h, LOOM_TYPE_BIN, pl, avail, 1, 0);
    case 0xc5: return head_blob(h, LOOM_TYPE_BIN, pl, avail, 2, 0);
    case 0xc6: return head_blob(h, LOOM_TYPE_BIN, pl, avail, 4, 0);
    case 0xc7: return head_blob(h, LOOM_TYPE_EXT, pl, avail, 1, 0);
    case 0xc8: return head_blob(h, LOOM_TYPE_EXT, pl, avail, 2, 0);
    case 0xc9: return head_blob(h, LOOM_TYPE_EXT, pl, avail, 4, 0);
    case 0xca: return head_fixed(h, tag, pl, avail, 4);
    case 0xcb: return head_fixed(h, tag, pl, avail, 8);
    case 0xcc: return head_fixed(h, tag, pl, avail, 1);
    case 0xcd: return head_fixed(h, tag, pl, avail, 2);
    case 0xce: return head_fixed(h, tag, pl, avail, 4);
    case 0xcf: return head_fixed(h, tag, pl, avail, 8);
    case 0xd0: return head_fixed(h, tag, pl, avail, 1);
    case 0xd1: return head_fixed(h, tag, pl, avail, 2);
    case 0xd2: return head_fixed(h, tag, pl, avail, 4);
    case 0xd3: return head_fixed(h, tag, pl, avail, 8);
    case 0xd4: return head_blob(h, LOOM_TYPE_EXT, pl, avail, 0, 1);
    case 0xd5: return head_blob(h, LOOM_TYPE_EXT, pl, avail, 0, 2);
    case 0xd6: return head_blob(h, LOOM_TYPE_EXT, pl, avail, 0, 4);
    case 0xd7: return head_blob(h, LOOM_TYPE_EXT, pl, avail, 0, 8);
    case 0xd8: return head_blob(h, LOOM_TYPE_EXT, pl, avail, 0, 16);
    case 0xd9: return head_blob(h, LOOM_TYPE_STR, pl, avail, 1, 0);
    case 0xda: return head_blob(h, LOOM_TYPE_STR, pl, avail, 2, 0);
    case 0xdb: return head_blob(h, LOOM_TYPE_STR, pl, avail, 4, 0);
    case 0xdc: return head_container(h, LOOM_TYPE_ARRAY, pl, avail, 2, 0);
    case 0xdd: return head_container(h, LOOM_TYPE_ARRAY, pl, avail, 4, 0);
    case 0xde: return head_container(h, LOOM_TYPE_MAP, pl, avail, 2, 0);
    case 0xdf: return head_container(h, LOOM_TYPE_MAP, pl, avail, 4, 0);
    default: return -1;   /* 0xc1: never used */
    }
}

/* Read the next header if it has type `type`; the cursor moves only on success. */
static int take_head(loom_unpack *u, int type, mp_head *h)
{
    if (!u) return LOOM_EINVAL;
    if (read_head(u, h) || h->type != type) return LOOM_EPROTO;
    return LOOM_OK;
}

static void advance(loom_unpack *u, const mp_head *h)
{
    u->pos += h->size;
}

void loom_unpack_init(loom_unpack *u, const void *data, size_t len)
{
    if (!u) return;
    u->buf = data;
    u->len = data ? len : 0;
    u->pos = 0;
}

int loom_unpack_peek(const loom_unpack *u)
{
    mp_head h;
    if (read_head(u, &h)) return LOOM_TYPE_INVALID;
    return h.type;
}

int loom_unpack_nil(loom_unpack *u)
{
    mp_head h;
    int rc = take_head(u, LOOM_TYPE_NIL, &h);
    if (rc) return rc;
    advance(u, &h);
    return LOOM_OK;
}

int loom_unpack_bool(loom_unpack *u, int *v)
{
    mp_head h;
    if (!v) return LOOM_EINVAL;
    int rc = take_head(u, LOOM_TYPE_BOOL, &h);
    if (rc) return rc;
    *v = h.b;
    advance(u, &h);
    return LOOM_OK;
}

int loom_unpack_i64(loom_unpack *u, int64_t *v)
{
    mp_head h;
    if (!v) return LOOM_EINVAL;
    int rc = take_head(u, LOOM_TYPE_INT, &h);
    if (rc) return rc;
    if (!h.is_signed && h.u > (uint64_t)INT64_MAX) return LOOM_EPROTO;
    *v = h.is_signed ? h.i : (int64_t)h.u;
    advance(u, &h);
    return LOOM_OK;
}

int loom_unpack_u64(loom_unpack *u, uint64_t *v)
{
    mp_head h;
    if (!v) return LOOM_EINVAL;
    int rc = take_head(u, LOOM_TYPE_INT, &h);
    if (rc) return rc;
    if (h.is_signed && h.i < 0) return LOOM_EPROTO;
    *v = h.is_signed ? (uint64_t)h.i : h.u;
    advance(u, &h);
    return LOOM_OK;
}

int loom_unpack_f64(loom_unpack *u, double *v)
{
    mp_head h;
    if (!u || !v) return LOOM_EINVAL;
    if (read_head(u, &h)) return LOOM_EPROTO;
    if (h.type == LOOM_TYPE_FLOAT) *v = h.f;
    else if (h.type == LOOM_TYPE_INT) *v = h.is_signed ? (double)h.i : (double)h.u;
    else return LOOM_EPROTO;
    advance(u, &h);
    return LOOM_OK;
}

int loom_unpack_str(loom_unpack *u, const char **s, size_t *len)
{
    mp_head h;
    if (!s || !len) return LOOM_EINVAL;
    int rc = take_head(u, LOOM_TYPE_STR, &h);
    if (rc) return rc;
    *s = (const char *)h.body;
    *len = h.len;
    advance(u, &h);
    return LOOM_OK;
}

int loom_unpack_bin(loom_unpack *u, const void **data, size_t *len)
{
    mp_head h;
    if (!u || !data || !len) return LOOM_EINVAL;
    if (read_head(u, &h)) return LOOM_EPROTO;
    if (h.type != LOOM_TYPE_BIN && h.type != LOOM_TYPE_STR) return LOOM_EPROTO;
    *data = h.body;
    *len = h.len;
    advance(u, &h);
    return LOOM_OK;
}

static int unpack_container(loom_unpack *u, int type, uint32_t *n)
{
    mp_head h;
    if (!n) return LOOM_EINVAL;
    int rc = take_head(u, type, &h);
    if (rc) return rc;
    *n = h.len;
    advance(u, &h);
    return LOOM_OK;
}

int loom_unpack_array(loom_unpack *u, uint32_t *n)
{
    return unpack_container(u, LOOM_TYPE_ARRAY, n);
}

int loom_unpack_map(loom_unpack *u, uint32_t *n)
{
    return unpack_container(u, LOOM_TYPE_MAP, n);
}

/* Skip one value; `depth` counts the containers around it.  Each element of a
 * container consumes at least one byte, so the loops end within len steps
 * whatever count the header claims. */
static int skip_value(loom_unpack *u, int depth)
{
    mp_head h;
    if (read_head(u, &h)) return LOOM_EPROTO;
    advance(u, &h);
    if (h.type != LOOM_TYPE_ARRAY && h.type != LOOM_TYPE_MAP) return LOOM_OK;
    if (depth >= LOOM_UNPACK_MAX_DEPTH) return LOOM_EPROTO;
    uint64_t items = h.type == LOOM_TYPE_MAP ? 2 * (uint64_t)h.len : h.len;
    for (uint64_t i = 0; i < items; i++) {
        int rc = skip_value(u, depth + 1);
        if (rc) return rc;
    }
    return LOOM_OK;
}

int loom_unpack_skip(loom_unpack *u)
{
    if (!u) return LOOM_EINVAL;
    size_t start = u->pos;
    int rc = skip_value(u, 0);
    if (rc) u->pos = start;
    return rc;
}

int loom_unpack_done(const loom_unpack *u)
{
    return !u || u->pos >= u->len;
}

/* ---- msgpack to JSON ---------------------------------------------------- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard base64 with padding; returns a jansson string (NULL on ENOMEM). */
static json_t *base64_json(const uint8_t *in, size_t n)
{
    size_t out_len = (n + 2) / 3 * 4;
    char *out = malloc(out_len + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t b = (uint32_t)in[i] << 16;
        if (i + 1 < n) b |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n) b |= in[i + 2];
        out[o++] = b64_alphabet[b >> 18 & 63];
        out[o++] = b64_alphabet[b >> 12 & 63];
        out[o++] = i + 1 < n ? b64_alphabet[b >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? b64_alphabet[b & 63] : '=';
    }
    json_t *s = json_stringn(out, o);
    free(out);
    return s;
}

/* Bytes as a JSON string when they are valid UTF-8 (json_stringn checks),
 * else as {"base64": "..."}. */
static json_t *bytes_json(const uint8_t *data, size_t len)
{
    json_t *s = json_stringn((const char *)data, len);
    if (s) return s;
    json_t *b = base64_json(data, len);
    if (!b) return NULL;
    return json_pack("{so}", "base64", b);
}

static json_t *ext_json(const mp_head *h)
{
    json_t *b = base64_json(h->body, h->len);
    if (!b) return NULL;
    return json_pack("{sIso}", "ext", (json_int_t)h->ext_type, "base64", b);
}

typedef struct json_conv {
    loom_unpack *u;
    int err;          /* first error: LOOM_EPROTO, LOOM_ENOMEM or LOOM_ETOOBIG */
    int digits;       /* significant digits the document's reals need */
} json_conv;

/* Whether %.<digits>g reads back as the same value (as a float32 for float32
 * values, so 0.1f counts as "0.1"). */
static int float_roundtrips(double f, int is_f32, int digits)
{
    char buf[512];   /* %.*g of a double fits in 32; gcc cannot tell */
    snprintf(buf, sizeof buf, "%.*g", digits, f);
    double back = strtod(buf, NULL);
    if (is_f32 && fabs(back) > FLT_MAX) return 0;   /* (float) would overflow */
    return is_f32 ? (float)back == (float)f : back == f;
}

/* The fewest significant digits, at least `at_least`, that read back as the
 * same value.  More digits never break a round trip, so a binary search. */
static int float_digits(double f, int is_f32, int at_least)
{
    if (at_least >= 17 || float_roundtrips(f, is_f32, at_least)) return at_least;
    int lo = at_least + 1, hi = 17;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (float_roundtrips(f, is_f32, mid)) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/* jansson prints every real of a document with one precision; the largest
 * needed keeps each value exact while 0.1 stays "0.1", not 0.10000000000000001. */
static json_t *float_json(json_conv *c, const mp_head *h)
{
    if (isnan(h->f) || isinf(h->f)) return json_null();
    c->digits = float_digits(h->f, h->is_f32, c->digits);
    return json_real(h->f);
}

static json_t *int_json(json_conv *c, const mp_head *h)
{
    if (h->is_signed) return json_integer(h->i);
    if (h->u <= (uint64_t)INT64_MAX) return json_integer((json_int_t)h->u);
    /* Beyond json_int_t: still a JSON number, with a double's precision. */
    mp_head as_real = *h;
    as_real.f = (double)h->u;
    as_real.is_f32 = 0;
    return float_json(c, &as_real);
}

static json_t *conv_value(json_conv *c, int depth);

static json_t *conv_fail(json_conv *c, int err)
{
    if (!c->err) c->err = err;
    return NULL;
}

static json_t *conv_array(json_conv *c, uint32_t n, int depth)
{
    json_t *arr = json_array();
    if (!arr) return conv_fail(c, LOOM_ENOMEM);
    for (uint32_t i = 0; i < n; i++) {
        json_t *item = conv_value(c, depth + 1);
        if (!item || json_array_append_new(arr, item)) {
            json_decref(arr);
            return conv_fail(c, LOOM_ENOMEM);
        }
    }
    return arr;
}

/* A map key: a string as it is, anything else as its compact JSON text. */
static int key_text(json_conv *c, json_t *key, char **text, size_t *len)
{
    if (json_is_string(key)) {
        *len = json_string_length(key);
        *text = malloc(*len + 1);
        if (!*text) return LOOM_ENOMEM;
        memcpy(*text, json_string_value(key), *len + 1);
        return LOOM_OK;
    }
    *text = json_dumps(key, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(c->digits));
    if (!*text) return LOOM_ENOMEM;
    *len = strlen(*text);
    if (*len > LOOM_JSON_MAX_KEY_TEXT) {
        free(*text);
        *text = NULL;
        return LOOM_ETOOBIG;
    }
    return LOOM_OK;
}

static int conv_pair(json_conv *c, json_t *obj, int depth)
{
    json_t *key = conv_value(c, depth + 1);
    if (!key) return c->err ? c->err : LOOM_ENOMEM;
    char *text;
    size_t len;
    int rc = key_text(c, key, &text, &len);
    json_decref(key);
    if (rc) return rc;
    json_t *val = conv_value(c, depth + 1);
    if (!val) {
        free(text);
        return c->err ? c->err : LOOM_ENOMEM;
    }
    rc = json_object_setn_new(obj, text, len, val) ? LOOM_ENOMEM : LOOM_OK;
    free(text);
    return rc;
}

static json_t *conv_map(json_conv *c, uint32_t n, int depth)
{
    json_t *obj = json_object();
    if (!obj) return conv_fail(c, LOOM_ENOMEM);
    for (uint32_t i = 0; i < n; i++) {
        int rc = conv_pair(c, obj, depth);
        if (rc) {
            json_decref(obj);
            return conv_fail(c, rc);
        }
    }
    return obj;
}

/* Convert the value at the cursor; depth counts the containers around it. */
static json_t *conv_value(json_conv *c, int depth)
{
    mp_head h;
    json_t *j = NULL;
    if (c->err) return NULL;
    if (read_head(c->u, &h)) return conv_fail(c, LOOM_EPROTO);
    advance(c->u, &h);
    switch (h.type) {
    case LOOM_TYPE_NIL: j = json_null(); break;
    case LOOM_TYPE_BOOL: j = json_boolean(h.b); break;
    case LOOM_TYPE_INT: j = int_json(c, &h); break;
    case LOOM_TYPE_FLOAT: j = float_json(c, &h); break;
    case LOOM_TYPE_STR:
    case LOOM_TYPE_BIN: j = bytes_json(h.body, h.len); break;
    case LOOM_TYPE_EXT: j = ext_json(&h); break;
    case LOOM_TYPE_ARRAY:
    case LOOM_TYPE_MAP:
        if (depth >= LOOM_UNPACK_MAX_DEPTH) return conv_fail(c, LOOM_EPROTO);
        return h.type == LOOM_TYPE_ARRAY ? conv_array(c, h.len, depth)
                                         : conv_map(c, h.len, depth);
    }
    return j ? j : conv_fail(c, LOOM_ENOMEM);
}

/* The input must be exactly one value: trailing bytes are an error, since they
 * mean the bytes are not the msgpack value the caller thinks they are. */
int loom_msgpack_to_json(const void *data, size_t len, char **json)
{
    if (!json || (!data && len)) return LOOM_EINVAL;
    *json = NULL;
    loom_unpack u;
    loom_unpack_init(&u, data, len);
    json_conv c = {&u, 0, 1};
    json_t *root = conv_value(&c, 0);
    if (!root) return c.err ? c.err : LOOM_ENOMEM;
    if (!loom_unpack_done(&u)) {
        json_decref(root);
        return LOOM_EPROTO;
    }
    *json = json_dumps(root, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(c.digits));
    json_decref(root);
    return *json ? LOOM_OK : LOOM_ENOMEM;
}
