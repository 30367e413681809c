/* shard/dataset.c — the dataset readers and .npy writers of shard/dataset.h.
 *
 * Every reader appends rows to one growing float32 matrix (struct matrix),
 * so the files of a directory land in it one after the other without being
 * copied again.  The bytes come from outside (users' files): every size is
 * checked for overflow and against the limits before it is used, every read
 * stays inside its buffer, and nothing is allocated for a declared shape
 * before the bytes it needs are known to be there.
 *
 * Numbers in text (.csv, .jsonl) are read as the correctly rounded double
 * and then rounded to float32, as NumPy's loadtxt does.  The CSV number
 * reader has a fast path (at most 19 significant digits and a power of ten
 * up to 1e22, exact in double) and falls back to strtod_l in the "C" locale
 * for the rest. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strtod_l, mkostemp, the GNU strerror_r */
#endif
#include "base/errf.h"
#include "shard/dataset.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>

#include "loom/loom.h"

#define NPY_MAX_DIMS 32          /* NumPy's own limit (NPY_MAXDIMS) */
#define JSON_MAX_DIMS 32
#define NPY_MAX_HEADER (1u << 20) /* more header than this is not an array */

/* ---- errors --------------------------------------------------------------- */

/* What messages name and where they go. */
typedef struct {
    const char *name; /* the file, or "<input>" for bytes in memory */
    char *err;
    size_t errlen;
} source;

static int fail(const source *src, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(const source *src, int rc, const char *fmt, ...)
{
    if (!src->err || !src->errlen) return rc;
    loom__errf(src->err, src->errlen, rc, "%s: ", src->name);
    va_list ap;
    va_start(ap, fmt);
    loom__verrf_append(src->err, src->errlen, rc, fmt, ap);
    va_end(ap);
    return rc;
}

static int fail_errno(const source *src, const char *what)
{
    char buf[128];
    const char *msg = strerror_r(errno, buf, sizeof buf);
    return fail(src, LOOM_EIO, "%s: %s", what, msg);
}

/* Up to cap-1 bytes of [p, end) for a message: at most 24 characters,
 * anything unprintable as '?', "..." when cut. */
static const char *excerpt(const char *p, const char *end, char *buf, size_t cap)
{
    size_t n = 0, max = cap - 4 < 24 ? cap - 4 : 24;
    for (; p < end && n < max; p++) buf[n++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
    if (p < end) { memcpy(buf + n, "...", 3); n += 3; }
    buf[n] = 0;
    return buf;
}

/* ---- the matrix being filled ------------------------------------------------ */

typedef struct {
    float *x;
    size_t len, cap;    /* values stored; room for */
    int64_t rows, cols; /* cols is 0 until a first row fixes it */
    char *cols_from;    /* the name of the source that fixed cols (owned) */
} matrix;

static void mat_free(matrix *m)
{
    free(m->x);
    free(m->cols_from);
    memset(m, 0, sizeof *m);
}

/* Make room for extra values after the stored ones. */
static int mat_reserve(matrix *m, size_t extra, const source *src)
{
    if (extra <= m->cap - m->len) return 0;
    if ((uint64_t)extra > (uint64_t)SHARD_MAX_CELLS - m->len)
        return fail(src, LOOM_ETOOBIG, "more than %lld values in all (the limit)",
                    (long long)SHARD_MAX_CELLS);
    uint64_t want = (uint64_t)m->len + extra;
    uint64_t cap = m->cap ? (uint64_t)m->cap * 2 : 4096;
    if (cap < want) cap = want;
    if (cap > (uint64_t)SHARD_MAX_CELLS) cap = (uint64_t)SHARD_MAX_CELLS;
    if (cap > SIZE_MAX / sizeof(float)) return fail(src, LOOM_ENOMEM, "out of memory");
    float *x = realloc(m->x, (size_t)cap * sizeof(float));
    if (!x) return fail(src, LOOM_ENOMEM, "out of memory for %llu values", (unsigned long long)cap);
    m->x = x;
    m->cap = (size_t)cap;
    return 0;
}

/* Room for about extra more values if memory allows: a guess made to
 * save regrowing, so a failure is no error. */
static void mat_hint(matrix *m, uint64_t extra)
{
    if (extra <= m->cap - m->len || extra > (uint64_t)SHARD_MAX_CELLS - m->len) return;
    uint64_t cap = m->len + extra;
    if (cap > SIZE_MAX / sizeof(float)) return;
    float *x = realloc(m->x, (size_t)cap * sizeof(float));
    if (!x) return;
    m->x = x;
    m->cap = (size_t)cap;
}

/* A source's rows have cols values: the first source fixes the width, the
 * others must match it. */
static int mat_set_cols(matrix *m, int64_t cols, const source *src, const char *where)
{
    if (m->cols == cols) return 0;
    if (m->cols)
        return fail(src, LOOM_EINVAL, "%s%s%lld columns, but %s has %lld", where, *where ? ": " : "",
                    (long long)cols, m->cols_from, (long long)m->cols);
    if (cols > SHARD_MAX_COLS)
        return fail(src, LOOM_ETOOBIG, "%s%s%lld columns (the limit is %d)", where, *where ? ": " : "",
                    (long long)cols, SHARD_MAX_COLS);
    if (!(m->cols_from = strdup(src->name))) return fail(src, LOOM_ENOMEM, "out of memory");
    m->cols = cols;
    return 0;
}

/* The reserved values [len, len + cols) are one more row. */
static void mat_commit_row(matrix *m)
{
    m->len += (size_t)m->cols;
    m->rows++;
}

/* A double that fits a float32: finite and at most FLT_MAX in size. */
static bool fits_f32(double v)
{
    return fabs(v) <= FLT_MAX;
}

/* ---- numbers in text -------------------------------------------------------- */

static const double pow10_exact[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static bool is_digit(char c)
{
    return (unsigned char)(c - '0') < 10;
}

/* strtod in the "C" locale on a NUL-terminated copy of [p, end). */
static int strtod_c(const char *p, const char *end, double *out)
{
    char small[128];
    size_t n = (size_t)(end - p);
    char *s = n < sizeof small ? small : malloc(n + 1);
    if (!s) return LOOM_ENOMEM;
    memcpy(s, p, n);
    s[n] = 0;
    int rc = 0;
    locale_t c = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (!c) rc = LOOM_ENOMEM;
    else {
        char *stop;
        *out = strtod_l(s, &stop, c);   /* ERANGE: an overflow is caught as out of range */
        if (stop != s + n) rc = LOOM_EINVAL;
        freelocale(c);
    }
    if (s != small) free(s);
    return rc;
}

/* The decimal number [-+]digits[.digits][(e|E)[-+]digits] (".5" and "5."
 * too) at the start of [p, end): *out its value, *stop the byte after it.
 * Returns 0, LOOM_EINVAL when there is no number there, or LOOM_ENOMEM. */
static int scan_number(const char *p, const char *end, double *out, const char **stop)
{
    bool neg = false;
    if (p < end && (*p == '+' || *p == '-')) neg = *p++ == '-';
    const char *unsigned_start = p;
    uint64_t mant = 0;
    int sig = 0;
    int64_t exp10 = 0, digits = 0; /* 64 bits: a number may be longer than 2^31 digits */
    bool exact = true; /* every significant digit is in mant */
    for (; p < end && is_digit(*p); p++, digits++) {
        if (sig < 19) {
            mant = mant * 10 + (uint64_t)(*p - '0');
            sig += mant != 0;
        } else {
            exp10++;
            exact &= *p == '0';
        }
    }
    if (p < end && *p == '.') {
        for (p++; p < end && is_digit(*p); p++, digits++) {
            if (sig < 19) {
                mant = mant * 10 + (uint64_t)(*p - '0');
                sig += mant != 0;
                exp10--;
            } else {
                exact &= *p == '0';
            }
        }
    }
    if (!digits) return LOOM_EINVAL;
    if (p < end && (*p == 'e' || *p == 'E')) {
        const char *e = p + 1;
        bool eneg = false;
        if (e < end && (*e == '+' || *e == '-')) eneg = *e++ == '-';
        if (e == end || !is_digit(*e)) return LOOM_EINVAL;
        int64_t ev = 0;
        for (; e < end && is_digit(*e); e++)
            if (ev < 100000) ev = ev * 10 + (*e - '0');
        exp10 += eneg ? -ev : ev;
        p = e;
    }
    *stop = p;
    double v;
    if (mant == 0) v = 0;
    else if (exact && mant <= ((uint64_t)1 << 53) && exp10 >= -22 && exp10 <= 22)
        v = exp10 < 0 ? (double)mant / pow10_exact[-exp10] : (double)mant * pow10_exact[exp10];
    else {
        int rc = strtod_c(unsigned_start, p, &v);
        if (rc) return rc;
    }
    *out = neg ? -v : v;
    return 0;
}

/* Whether [p, end) is nan, inf or infinity (any case, any sign): words
 * strtod would take, refused here by name. */
static bool is_nan_or_inf(const char *p, const char *end)
{
    if (p < end && (*p == '+' || *p == '-')) p++;
    size_t n = (size_t)(end - p);
    return (n == 3 && (!strncasecmp(p, "nan", 3) || !strncasecmp(p, "inf", 3))) ||
           (n == 8 && !strncasecmp(p, "infinity", 8));
}

/* ---- .csv ------------------------------------------------------------------ */

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

static const char *skip_spaces(const char *p, const char *end)
{
    while (p < end && is_space(*p)) p++;
    return p;
}

/* The field starting at p, spaces around it trimmed: [*fs, *fe); returns
 * the byte after it (a ',' or end). */
static const char *csv_field(const char *p, const char *end, const char **fs, const char **fe)
{
    p = skip_spaces(p, end);
    const char *q = p;
    while (q < end && *q != ',') q++;
    const char *e = q;
    while (e > p && is_space(e[-1])) e--;
    *fs = p;
    *fe = e;
    return q;
}

static int64_t csv_count_fields(const char *p, const char *end)
{
    int64_t n = 1;
    for (; p < end; p++) n += *p == ',';
    return n;
}

/* A first line is a header when one of its fields is text: not empty, not
 * a number and not nan/inf (which are data, to be refused). */
static bool csv_is_header(const char *p, const char *end)
{
    for (;;) {
        const char *fs, *fe, *stop;
        double v;
        p = csv_field(p, end, &fs, &fe);
        if (fs < fe && !is_nan_or_inf(fs, fe) && (scan_number(fs, fe, &v, &stop) || stop != fe))
            return true;
        if (p == end) return false;
        p++;
    }
}

/* Why the field at column col of the line [line_start, end) is not a value. */
static int csv_bad_field(const char *p, const char *end, int64_t col, int64_t lineno, const source *src)
{
    const char *fs, *fe;
    char buf[40];
    csv_field(p, end, &fs, &fe);
    if (fs == fe)
        return fail(src, LOOM_EINVAL, "line %lld: column %lld: empty value", (long long)lineno, (long long)col);
    if (is_nan_or_inf(fs, fe))
        return fail(src, LOOM_EINVAL, "line %lld: column %lld: %s (NaN and infinities are refused)",
                    (long long)lineno, (long long)col, excerpt(fs, fe, buf, sizeof buf));
    return fail(src, LOOM_EINVAL, "line %lld: column %lld: '%s' is not a number", (long long)lineno,
                (long long)col, excerpt(fs, fe, buf, sizeof buf));
}

static int csv_width_mismatch(matrix *m, int64_t n, int64_t lineno, bool first_row, const source *src)
{
    if (first_row) {
        char where[48];
        snprintf(where, sizeof where, "line %lld", (long long)lineno);
        return mat_set_cols(m, n, src, where);
    }
    return fail(src, LOOM_EINVAL, "line %lld: %lld values, but the rows before it have %lld", (long long)lineno,
                (long long)n, (long long)m->cols);
}

/* The numbers of one line [p, end) become the row after m's stored values.
 * first_row: this is the file's first row (a width that differs from m's
 * is then another file's). */
static int csv_row(const char *p, const char *end, matrix *m, int64_t lineno, bool first_row, const source *src)
{
    int64_t k = 0;
    for (;;) {
        const char *field = p;
        p = skip_spaces(p, end);
        if (m->cols && k == m->cols)
            return csv_width_mismatch(m, k + csv_count_fields(field, end), lineno, first_row, src);
        if (k == SHARD_MAX_COLS)
            return fail(src, LOOM_ETOOBIG, "line %lld: more than %d columns (the limit)", (long long)lineno,
                        SHARD_MAX_COLS);
        int rc;
        if (m->cap - m->len <= (size_t)k && (rc = mat_reserve(m, (size_t)k + 1, src))) return rc;
        double v;
        const char *stop;
        rc = scan_number(p, end, &v, &stop);
        if (rc == LOOM_ENOMEM) return fail(src, rc, "out of memory");
        if (rc) return csv_bad_field(field, end, k + 1, lineno, src);
        p = skip_spaces(stop, end);
        if (p < end && *p != ',') return csv_bad_field(field, end, k + 1, lineno, src);
        if (!fits_f32(v))
            return fail(src, LOOM_EINVAL, "line %lld: column %lld: %g does not fit a float32", (long long)lineno,
                        (long long)(k + 1), v);
        m->x[m->len + (size_t)k++] = (float)v;
        if (p == end) break;
        p++;
    }
    if (k != m->cols) {
        int rc = csv_width_mismatch(m, k, lineno, first_row, src);
        if (rc) return rc;
    }
    mat_commit_row(m);
    return 0;
}

static bool is_blank(const char *p, const char *end)
{
    return skip_spaces(p, end) == end;
}

/* A UTF-8 byte order mark at the start of a text file is not data. */
static const char *skip_bom(const char *p, const char *end)
{
    if (end - p >= 3 && !memcmp(p, "\xef\xbb\xbf", 3)) return p + 3;
    return p;
}

/* The next line of [*p, end), without its LF or CRLF; *p moves past it. */
static void next_line(const char **p, const char *end, const char **ls, const char **le)
{
    const char *s = *p;
    const char *nl = memchr(s, '\n', (size_t)(end - s));
    const char *e = nl ? nl : end;
    *p = nl ? nl + 1 : end;
    if (e > s && e[-1] == '\r') e--;
    *ls = s;
    *le = e;
}

static int parse_csv(const char *data, size_t len, matrix *m, const source *src)
{
    const char *p = skip_bom(data, data + len), *end = data + len;
    int64_t lineno = 0, rows0 = m->rows;
    bool seen_line = false;
    while (p < end) {
        const char *ls, *le;
        next_line(&p, end, &ls, &le);
        lineno++;
        if (is_blank(ls, le)) continue;
        bool header = !seen_line && csv_is_header(ls, le);
        seen_line = true;
        if (header) continue;
        bool first_row = m->rows == rows0;
        int rc = csv_row(ls, le, m, lineno, first_row, src);
        if (rc) return rc;
        if (first_row) /* as many rows again as the rest of the file holds of this one's length */
            mat_hint(m, ((uint64_t)(end - p) / (uint64_t)(p - ls) + 1) * (uint64_t)m->cols);
    }
    if (m->rows == rows0) return fail(src, LOOM_EINVAL, "no rows of numbers");
    return 0;
}

/* ---- .jsonl ----------------------------------------------------------------- */

/* The shape of a nested array, read down its first elements. */
static int json_shape(const json_t *a, int64_t *shape, int *ndim, int64_t lineno, const source *src)
{
    int n = 0;
    for (; json_is_array(a); a = json_array_get(a, 0)) {
        if (n == JSON_MAX_DIMS)
            return fail(src, LOOM_EINVAL, "line %lld: arrays nested more than %d deep", (long long)lineno,
                        JSON_MAX_DIMS);
        shape[n++] = (int64_t)json_array_size(a);
        if (!json_array_size(a)) break;
    }
    *ndim = n;
    return 0;
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    default: return "a number";
    }
}

typedef struct {
    matrix *m;
    const int64_t *shape;
    int ndim;
    int64_t lineno;
    int64_t count; /* values written after m's stored ones */
    const source *src;
} json_walk;

/* Append the numbers of a (at nesting depth) in row-major order, checking
 * that it has the shape read from its first elements. */
static int json_flatten(json_walk *w, const json_t *a, int depth)
{
    const source *src = w->src;
    if (depth == w->ndim) {
        if (!json_is_number(a))
            return fail(src, LOOM_EINVAL, "line %lld: %s where a number was expected%s", (long long)w->lineno,
                        json_kind(a), json_is_array(a) ? " (the array is not rectangular)" : "");
        double v = json_number_value(a);
        if (!fits_f32(v))
            return fail(src, LOOM_EINVAL, "line %lld: value %lld: %g does not fit a float32", (long long)w->lineno,
                        (long long)w->count + 1, v);
        matrix *m = w->m;
        if (w->count == SHARD_MAX_COLS)
            return fail(src, LOOM_ETOOBIG, "line %lld: more than %d values in a row (the limit)",
                        (long long)w->lineno, SHARD_MAX_COLS);
        int rc;
        if (m->cap - m->len <= (size_t)w->count && (rc = mat_reserve(m, (size_t)w->count + 1, src))) return rc;
        m->x[m->len + (size_t)w->count++] = (float)v;
        return 0;
    }
    if (!json_is_array(a) || (int64_t)json_array_size(a) != w->shape[depth])
        return fail(src, LOOM_EINVAL, "line %lld: not rectangular: %s where an array of %lld was expected",
                    (long long)w->lineno, json_is_array(a) ? "an array of another length" : json_kind(a),
                    (long long)w->shape[depth]);
    for (size_t i = 0; i < json_array_size(a); i++) {
        int rc = json_flatten(w, json_array_get(a, i), depth + 1);
        if (rc) return rc;
    }
    return 0;
}

/* One line's value: an array, or an object with an "input" array. */
static int json_row(const json_t *v, matrix *m, int64_t lineno, bool first_row, const source *src)
{
    if (json_is_object(v)) {
        const json_t *in = json_object_get(v, "input");
        if (!in) return fail(src, LOOM_EINVAL, "line %lld: an object without an \"input\" member", (long long)lineno);
        v = in;
    }
    if (!json_is_array(v))
        return fail(src, LOOM_EINVAL, "line %lld: %s, where an array of numbers was expected", (long long)lineno,
                    json_kind(v));
    int64_t shape[JSON_MAX_DIMS];
    int ndim = 0;
    int rc = json_shape(v, shape, &ndim, lineno, src);
    if (rc) return rc;
    json_walk w = {m, shape, ndim, lineno, 0, src};
    if ((rc = json_flatten(&w, v, 0))) return rc;
    if (w.count == 0) return fail(src, LOOM_EINVAL, "line %lld: an empty row", (long long)lineno);
    if (w.count != m->cols) {
        char where[48];
        snprintf(where, sizeof where, "line %lld", (long long)lineno);
        if (!first_row)
            return fail(src, LOOM_EINVAL, "line %lld: %lld values, but the rows before it have %lld",
                        (long long)lineno, (long long)w.count, (long long)m->cols);
        if ((rc = mat_set_cols(m, w.count, src, where))) return rc;
    }
    mat_commit_row(m);
    return 0;
}

static int parse_jsonl(const char *data, size_t len, matrix *m, const source *src)
{
    const char *p = skip_bom(data, data + len), *end = data + len;
    int64_t lineno = 0, rows0 = m->rows;
    while (p < end) {
        const char *ls, *le;
        next_line(&p, end, &ls, &le);
        lineno++;
        if (is_blank(ls, le)) continue;
        json_error_t jerr;
        json_t *v = json_loadb(ls, (size_t)(le - ls), JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &jerr);
        if (!v)
            return fail(src, LOOM_EINVAL, "line %lld: column %d: %s", (long long)lineno, jerr.column, jerr.text);
        int rc = json_row(v, m, lineno, m->rows == rows0, src);
        json_decref(v);
        if (rc) return rc;
    }
    if (m->rows == rows0) return fail(src, LOOM_EINVAL, "no rows");
    return 0;
}

/* ---- .npy header ---------------------------------------------------------- */

typedef struct {
    char kind;        /* 'b' bool, 'i' signed, 'u' unsigned, 'f' floating point */
    int size;         /* bytes per value: 1, 2, 4 or 8 */
    bool big;         /* stored big-endian */
    bool fortran;     /* column-major */
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    size_t data_off;  /* where the values start */
} npy_header;

static bool host_is_big_endian(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 0;
}

/* A cursor in the header text (the Python dict literal). */
typedef struct {
    const char *p, *start, *end;
    size_t base; /* file offset of start */
    const source *src;
} hcur;

static int hfail(const hcur *c, int rc, const char *what)
{
    return fail(c->src, rc, "byte %zu: .npy header: %s", c->base + (size_t)(c->p - c->start), what);
}

static void h_ws(hcur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r' || *c->p == '\f'))
        c->p++;
}

static bool h_eat(hcur *c, char ch)
{
    h_ws(c);
    if (c->p < c->end && *c->p == ch) { c->p++; return true; }
    return false;
}

/* A quoted string (no escapes) into buf. */
static int h_string(hcur *c, char *buf, size_t cap)
{
    h_ws(c);
    if (c->p == c->end || (*c->p != '\'' && *c->p != '"')) return hfail(c, LOOM_EINVAL, "expected a quoted string");
    char q = *c->p++;
    size_t n = 0;
    for (; c->p < c->end && *c->p != q; c->p++) {
        if (*c->p == '\\' || *c->p == '\n') return hfail(c, LOOM_EINVAL, "unexpected character in a string");
        if (n + 1 == cap) return hfail(c, LOOM_EINVAL, "string too long");
        buf[n++] = *c->p;
    }
    if (c->p == c->end) return hfail(c, LOOM_EINVAL, "unterminated string");
    c->p++;
    buf[n] = 0;
    return 0;
}

static bool h_word(hcur *c, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n)) return false;
    const char *after = c->p + n;
    if (after < c->end && (is_digit(*after) || *after == '_' || ((*after | 0x20) >= 'a' && (*after | 0x20) <= 'z')))
        return false;
    c->p = after;
    return true;
}

static int h_bool(hcur *c, bool *out)
{
    h_ws(c);
    if (h_word(c, "True")) *out = true;
    else if (h_word(c, "False")) *out = false;
    else return hfail(c, LOOM_EINVAL, "fortran_order is not True or False");
    return 0;
}

/* A non-negative integer (Python 2's "L" suffix allowed). */
static int h_int(hcur *c, int64_t *out)
{
    h_ws(c);
    if (c->p == c->end || !is_digit(*c->p)) return hfail(c, LOOM_EINVAL, "a dimension is not a non-negative integer");
    int64_t v = 0;
    for (; c->p < c->end && is_digit(*c->p); c->p++) {
        int d = *c->p - '0';
        if (v > (INT64_MAX - d) / 10) return hfail(c, LOOM_ETOOBIG, "a dimension larger than 2^63");
        v = v * 10 + d;
    }
    if (c->p < c->end && *c->p == 'L') c->p++;
    *out = v;
    return 0;
}

/* A tuple of integers: (), (n,), (n, m), (n, m,) … */
static int h_shape(hcur *c, npy_header *h)
{
    if (!h_eat(c, '(')) return hfail(c, LOOM_EINVAL, "shape is not a tuple");
    h->ndim = 0;
    if (h_eat(c, ')')) return 0;
    for (;;) {
        if (h->ndim == NPY_MAX_DIMS) return hfail(c, LOOM_EINVAL, "more than 32 dimensions");
        int rc = h_int(c, &h->shape[h->ndim++]);
        if (rc) return rc;
        bool comma = h_eat(c, ',');
        if (h_eat(c, ')')) {
            if (h->ndim == 1 && !comma) return hfail(c, LOOM_EINVAL, "shape (n) is not a tuple; want (n,)");
            return 0;
        }
        if (!comma) return hfail(c, LOOM_EINVAL, "expected ',' or ')' in shape");
    }
}

/* A type string of the simple kind: byte order, kind letter, size. */
static int h_descr(hcur *c, npy_header *h)
{
    char d[32] = "";
    int rc = h_string(c, d, sizeof d);
    if (rc) return rc;
    bool three = strlen(d) == 3;
    char order = three ? d[0] : 0, kind = three ? d[1] : 0;
    int size = three && d[2] >= '1' && d[2] <= '8' ? d[2] - '0' : 0;
    bool ok = three && strchr("<>|=", order) &&
              ((kind == 'b' && size == 1) || ((kind == 'i' || kind == 'u') && (size == 1 || size == 2 || size == 4 || size == 8)) ||
               (kind == 'f' && (size == 2 || size == 4 || size == 8)));
    if (ok && order == '|' && size != 1) ok = false;
    if (!ok) {
        char msg[128];
        snprintf(msg, sizeof msg, "unsupported dtype '%s' (want bool, int8..int64, uint8..uint64, float16..float64)", d);
        return hfail(c, LOOM_EINVAL, msg);
    }
    h->kind = kind;
    h->size = size;
    h->big = order == '>' || (order == '=' && host_is_big_endian());
    return 0;
}

enum { KEY_DESCR = 1, KEY_FORTRAN = 2, KEY_SHAPE = 4 };

/* One "key: value" of the header dict. */
static int h_entry(hcur *c, npy_header *h, int *seen)
{
    char key[32];
    const char *at = c->p;
    int rc = h_string(c, key, sizeof key);
    if (rc) return rc;
    int bit = !strcmp(key, "descr") ? KEY_DESCR : !strcmp(key, "fortran_order") ? KEY_FORTRAN
              : !strcmp(key, "shape") ? KEY_SHAPE : 0;
    if (!bit || (*seen & bit)) {
        c->p = at;
        return hfail(c, LOOM_EINVAL, bit ? "a key given twice" : "unknown key (want descr, fortran_order, shape)");
    }
    *seen |= bit;
    if (!h_eat(c, ':')) return hfail(c, LOOM_EINVAL, "expected ':'");
    return bit == KEY_DESCR ? h_descr(c, h) : bit == KEY_FORTRAN ? h_bool(c, &h->fortran) : h_shape(c, h);
}

static int npy_parse_dict(hcur *c, npy_header *h)
{
    int seen = 0, rc;
    if (!h_eat(c, '{')) return hfail(c, LOOM_EINVAL, "not a dict");
    while (!h_eat(c, '}')) {
        if ((rc = h_entry(c, h, &seen))) return rc;
        if (h_eat(c, ',')) continue;
        if (!h_eat(c, '}')) return hfail(c, LOOM_EINVAL, "expected ',' or '}'");
        break;
    }
    h_ws(c);
    if (c->p != c->end) return hfail(c, LOOM_EINVAL, "text after the dict");
    if (seen != (KEY_DESCR | KEY_FORTRAN | KEY_SHAPE))
        return hfail(c, LOOM_EINVAL, "descr, fortran_order or shape missing");
    return 0;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The magic string, version, header length and header dict of an .npy. */
static int npy_parse_header(const unsigned char *data, size_t len, npy_header *h, const source *src)
{
    memset(h, 0, sizeof *h);
    if (len < 10 || memcmp(data, "\x93NUMPY", 6))
        return fail(src, LOOM_EINVAL, "not an .npy file (no \\x93NUMPY magic string)");
    int major = data[6], minor = data[7];
    if (major < 1 || major > 3 || minor != 0)
        return fail(src, LOOM_EINVAL, "byte 6: .npy format version %d.%d (want 1.0, 2.0 or 3.0)", major, minor);
    size_t start = major == 1 ? 10 : 12;
    if (len < start) return fail(src, LOOM_EINVAL, "byte %zu: the file ends inside the .npy header length", len);
    size_t hlen = major == 1 ? (size_t)(data[8] | data[9] << 8) : (size_t)le32(data + 8);
    if (hlen > NPY_MAX_HEADER) return fail(src, LOOM_EINVAL, "byte 8: .npy header length %zu is too large", hlen);
    if (hlen > len - start)
        return fail(src, LOOM_EINVAL, "byte 8: .npy header of %zu bytes runs past the end (%zu bytes)", hlen, len);
    hcur c = {(const char *)data + start, (const char *)data + start, (const char *)data + start + hlen, start, src};
    int rc = npy_parse_dict(&c, h);
    if (rc) return rc;
    h->data_off = start + hlen;
    return 0;
}

/* rows and cols of the shape: [N] N×1, [N, d1, …] N×(d1*…); within the
 * limits, and the data really there (so that nothing is allocated for a
 * shape the bytes do not back). */
static int npy_check_shape(const npy_header *h, size_t len, int64_t *rows, int64_t *cols, const source *src)
{
    if (h->ndim == 0) return fail(src, LOOM_EINVAL, "a 0-d .npy array (want at least one dimension)");
    int64_t c = 1;
    for (int i = 1; i < h->ndim; i++) {
        if (h->shape[i] && c > SHARD_MAX_COLS / h->shape[i])
            return fail(src, LOOM_ETOOBIG, "shape: more than %d values per row (the limit)", SHARD_MAX_COLS);
        c *= h->shape[i];
    }
    if (c == 0) return fail(src, LOOM_EINVAL, "shape: rows of no values");
    if (h->shape[0] > SHARD_MAX_CELLS / c)
        return fail(src, LOOM_ETOOBIG, "shape: %lld rows of %lld values is more than %lld (the limit)",
                    (long long)h->shape[0], (long long)c, (long long)SHARD_MAX_CELLS);
    uint64_t need = (uint64_t)h->shape[0] * (uint64_t)c * (uint64_t)h->size;
    uint64_t have = len - h->data_off;
    if (have < need)
        return fail(src, LOOM_EINVAL, "byte %zu: %llu bytes of data, but the shape needs %llu (truncated file?)",
                    h->data_off, (unsigned long long)have, (unsigned long long)need);
    if (have > need)
        return fail(src, LOOM_EINVAL, "byte %llu: %llu bytes after the data", (unsigned long long)(h->data_off + need),
                    (unsigned long long)(have - need));
    *rows = h->shape[0];
    *cols = c;
    return 0;
}

/* ---- .npy values --------------------------------------------------------------- */

static double half_to_double(uint16_t hv)
{
    int e = (hv >> 10) & 0x1f, f = hv & 0x3ff;
    double v = e == 0 ? ldexp(f, -24) : e == 31 ? (f ? NAN : INFINITY) : ldexp(f | 0x400, e - 25);
    return (hv & 0x8000) ? -v : v;
}

/* The value at p as a double. */
static double npy_value(const unsigned char *p, const npy_header *h, bool swap)
{
    uint64_t u;
    switch (h->size) {
    case 1: u = p[0]; break;
    case 2: { uint16_t v; memcpy(&v, p, 2); u = swap ? __builtin_bswap16(v) : v; break; }
    case 4: { uint32_t v; memcpy(&v, p, 4); u = swap ? __builtin_bswap32(v) : v; break; }
    default: { uint64_t v; memcpy(&v, p, 8); u = swap ? __builtin_bswap64(v) : v; break; }
    }
    if (h->kind == 'b') return u != 0;
    if (h->kind == 'u') return (double)u;
    if (h->kind == 'i') {
        int sh = 64 - 8 * h->size;
        return (double)((int64_t)(u << sh) >> sh);
    }
    if (h->size == 2) return half_to_double((uint16_t)u);
    if (h->size == 4) { float f; uint32_t b = (uint32_t)u; memcpy(&f, &b, 4); return f; }
    double d;
    memcpy(&d, &u, 8);
    return d;
}

static int npy_bad_value(const npy_header *h, uint64_t src_index, uint64_t i, int64_t cols, double v,
                         const source *src)
{
    return fail(src, LOOM_EINVAL, "byte %llu (row %llu, value %llu): %g %s",
                (unsigned long long)(h->data_off + src_index * (uint64_t)h->size), (unsigned long long)(i / (uint64_t)cols),
                (unsigned long long)(i % (uint64_t)cols), v,
                isfinite(v) ? "does not fit a float32" : "(NaN and infinities are refused)");
}

/* float32 in the host's byte order and C order: a copy, then a check that
 * every value is finite. */
static int npy_copy_f32(const unsigned char *data, const npy_header *h, float *out, uint64_t n, int64_t cols,
                        const source *src)
{
    memcpy(out, data, n * sizeof(float));
    for (uint64_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &out[i], 4);
        if ((b & 0x7f800000u) == 0x7f800000u) return npy_bad_value(h, i, i, cols, out[i], src);
    }
    return 0;
}

/* Any dtype and order: value by value, the output in C order.  For Fortran
 * order the source index is kept by an odometer over the dimensions. */
static int npy_convert(const unsigned char *data, const npy_header *h, float *out, uint64_t n, int64_t cols,
                       const source *src)
{
    bool swap = h->big != host_is_big_endian();
    int64_t idx[NPY_MAX_DIMS] = {0}, stride[NPY_MAX_DIMS];
    bool fortran = h->fortran && h->ndim > 1;
    for (int k = 0; k < h->ndim; k++) stride[k] = k ? stride[k - 1] * h->shape[k - 1] : 1;
    uint64_t from = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t at = fortran ? from : i;
        double v = npy_value(data + at * (uint64_t)h->size, h, swap);
        if (!fits_f32(v)) return npy_bad_value(h, at, i, cols, v, src);
        out[i] = (float)v;
        if (!fortran) continue;
        for (int k = h->ndim - 1; k >= 0; k--) {
            from += (uint64_t)stride[k];
            if (++idx[k] < h->shape[k]) break;
            from -= (uint64_t)(h->shape[k] * stride[k]);
            idx[k] = 0;
        }
    }
    return 0;
}

static int parse_npy(const unsigned char *data, size_t len, matrix *m, const source *src)
{
    npy_header h;
    int64_t rows = 0, cols = 0;
    int rc = npy_parse_header(data, len, &h, src);
    if (rc || (rc = npy_check_shape(&h, len, &rows, &cols, src)) || (rc = mat_set_cols(m, cols, src, "")))
        return rc;
    uint64_t n = (uint64_t)rows * (uint64_t)cols;
    if ((rc = mat_reserve(m, (size_t)n, src))) return rc;
    if (n == 0) return 0;
    bool direct = h.kind == 'f' && h.size == 4 && h.big == host_is_big_endian() && (!h.fortran || h.ndim == 1);
    float *out = m->x + m->len;
    rc = direct ? npy_copy_f32(data + h.data_off, &h, out, n, cols, src)
                : npy_convert(data + h.data_off, &h, out, n, cols, src);
    if (rc) return rc;
    m->len += (size_t)n;
    m->rows += rows;
    return 0;
}

/* ---- formats, files and directories ---------------------------------------- */

typedef enum { FMT_NONE, FMT_NPY, FMT_CSV, FMT_JSONL } data_format;

static data_format format_named(const char *name)
{
    if (!name) return FMT_NONE;
    if (!strcmp(name, "npy")) return FMT_NPY;
    if (!strcmp(name, "csv")) return FMT_CSV;
    if (!strcmp(name, "jsonl") || !strcmp(name, "ndjson")) return FMT_JSONL;
    return FMT_NONE;
}

/* The format of a file from its extension (case ignored; a name that is
 * only an extension, like ".csv", has none). */
static data_format format_of_path(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    if (!dot || dot == base) return FMT_NONE;
    char ext[8];
    size_t n = strlen(dot + 1);
    if (n >= sizeof ext) return FMT_NONE;
    for (size_t i = 0; i <= n; i++) ext[i] = (char)((dot[1 + i] >= 'A' && dot[1 + i] <= 'Z') ? dot[1 + i] | 0x20 : dot[1 + i]);
    return format_named(ext);
}

static int parse_into(const void *data, size_t len, data_format f, matrix *m, const source *src)
{
    switch (f) {
    case FMT_NPY: return parse_npy(data, len, m, src);
    case FMT_CSV: return parse_csv(data, len, m, src);
    case FMT_JSONL: return parse_jsonl(data, len, m, src);
    default: return fail(src, LOOM_EINVAL, "unknown format (want npy, csv or jsonl)");
    }
}

/* The bytes of a regular file: mapped (MAP_POPULATE reads it in one go,
 * without copying it into fresh memory, which costs as much as the parse
 * itself on a virtual machine), or read() into a buffer where mapping is
 * not possible.  The file must not shrink while it is being read. */
typedef struct {
    char *data;
    size_t len;
    bool mapped;
} file_bytes;

static void file_release(file_bytes *f)
{
    if (f->mapped) munmap(f->data, f->len);
    else free(f->data);
    memset(f, 0, sizeof *f);
}

static int read_fd(int fd, size_t size, file_bytes *f, const source *src)
{
    char *buf = malloc(size ? size : 1);
    if (!buf) return fail(src, LOOM_ENOMEM, "out of memory for a file of %zu bytes", size);
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int rc = fail_errno(src, "read");
            free(buf);
            return rc;
        }
        if (r == 0) break; /* the file shrank: what is there */
        got += (size_t)r;
    }
    f->data = buf;
    f->len = got;
    f->mapped = false;
    return 0;
}

static int file_open(const char *path, file_bytes *f, const source *src)
{
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail_errno(src, "cannot open");
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st)) rc = fail_errno(src, "cannot stat");
    else if (!S_ISREG(st.st_mode)) rc = fail(src, LOOM_EIO, "not a regular file");
    else if ((uint64_t)st.st_size >= SIZE_MAX) rc = fail(src, LOOM_ETOOBIG, "file too large");
    else {
        size_t size = (size_t)st.st_size;
        void *p = size ? mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0) : MAP_FAILED;
        if (p != MAP_FAILED) *f = (file_bytes){p, size, true};
        else rc = read_fd(fd, size, f, src);
    }
    close(fd);
    return rc;
}

static int load_file(const char *path, data_format fmt, matrix *m, char *err, size_t errlen)
{
    source src = {path, err, errlen};
    file_bytes f;
    int rc = file_open(path, &f, &src);
    if (rc) return rc;
    rc = parse_into(f.data, f.len, fmt, m, &src);
    file_release(&f);
    return rc;
}

typedef struct {
    char **names;
    size_t n, cap;
} name_list;

static void names_free(name_list *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
    memset(l, 0, sizeof *l);
}

static int names_add(name_list *l, const char *name)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **nn = realloc(l->names, cap * sizeof *nn);
        if (!nn) return LOOM_ENOMEM;
        l->names = nn;
        l->cap = cap;
    }
    if (!(l->names[l->n] = strdup(name))) return LOOM_ENOMEM;
    l->n++;
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *join_path(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t n = a;
    if (!a || dir[a - 1] != '/') p[n++] = '/';
    memcpy(p + n, name, b + 1);
    return p;
}

/* The names of the regular files with a data extension in dir, sorted. */
static int list_data_files(const char *dir, name_list *l, const source *src)
{
    DIR *d = opendir(dir);
    if (!d) return fail_errno(src, "cannot open the directory");
    int rc = 0;
    struct dirent *e;
    errno = 0;
    while (!rc && (e = readdir(d))) {
        if (format_of_path(e->d_name) == FMT_NONE) continue;
        char *p = join_path(dir, e->d_name);
        struct stat st;
        if (!p) rc = fail(src, LOOM_ENOMEM, "out of memory");
        else if (!stat(p, &st) && S_ISREG(st.st_mode) && names_add(l, e->d_name))
            rc = fail(src, LOOM_ENOMEM, "out of memory");
        free(p);
        errno = 0;
    }
    if (!rc && errno) rc = fail_errno(src, "reading the directory");
    closedir(d);
    if (!rc && !l->n) rc = fail(src, LOOM_EINVAL, "no .npy, .csv, .jsonl or .ndjson files in the directory");
    if (!rc && l->n) qsort(l->names, l->n, sizeof *l->names, cmp_names);
    return rc;
}

static int load_dir(const char *dir, matrix *m, char *err, size_t errlen)
{
    source src = {dir, err, errlen};
    name_list l = {0};
    int rc = list_data_files(dir, &l, &src);
    for (size_t i = 0; !rc && i < l.n; i++) {
        char *p = join_path(dir, l.names[i]);
        rc = p ? load_file(p, format_of_path(p), m, err, errlen) : fail(&src, LOOM_ENOMEM, "out of memory");
        free(p);
    }
    names_free(&l);
    return rc;
}

/* Hand the matrix over as the dataset (its buffer trimmed to size; never
 * NULL, even with no rows). */
static int finish(matrix *m, shard_dataset *out, const source *src)
{
    size_t n = m->len ? m->len : 1;
    if (n != m->cap) {
        float *x = realloc(m->x, n * sizeof(float));
        if (!x) {
            if (!m->x) return fail(src, LOOM_ENOMEM, "out of memory");
        } else m->x = x;
    }
    out->rows = m->rows;
    out->cols = m->cols;
    out->x = m->x;
    m->x = NULL;
    mat_free(m);
    return 0;
}

static void clear_err(char *err, size_t errlen)
{
    if (err && errlen) err[0] = 0;
}

int shard_dataset_parse(const void *data, size_t len, const char *format, shard_dataset *out, char *err,
                        size_t errlen)
{
    source src = {"<input>", err, errlen};
    clear_err(err, errlen);
    if (!out) return fail(&src, LOOM_EINVAL, "no dataset to fill");
    memset(out, 0, sizeof *out);
    if (!data && len) return fail(&src, LOOM_EINVAL, "no data");
    matrix m = {0};
    int rc = parse_into(data ? data : "", len, format_named(format), &m, &src);
    if (!rc) rc = finish(&m, out, &src);
    mat_free(&m);
    return rc;
}

int shard_dataset_load(const char *path, shard_dataset *out, char *err, size_t errlen)
{
    source src = {path ? path : "(null)", err, errlen};
    clear_err(err, errlen);
    if (!out) return fail(&src, LOOM_EINVAL, "no dataset to fill");
    memset(out, 0, sizeof *out);
    if (!path || !*path) return fail(&src, LOOM_EINVAL, "no path");
    struct stat st;
    if (stat(path, &st)) return fail_errno(&src, "cannot read");
    matrix m = {0};
    int rc;
    if (S_ISDIR(st.st_mode)) rc = load_dir(path, &m, err, errlen);
    else if (format_of_path(path) == FMT_NONE)
        rc = fail(&src, LOOM_EINVAL, "unknown extension (want .npy, .csv, .jsonl or .ndjson)");
    else rc = load_file(path, format_of_path(path), &m, err, errlen);
    if (!rc) rc = finish(&m, out, &src);
    mat_free(&m);
    return rc;
}

void shard_dataset_free(shard_dataset *d)
{
    if (!d) return;
    free(d->x);
    memset(d, 0, sizeof *d);
}

/* ---- .npy writing ------------------------------------------------------------- */

/* The version 1.0 header NumPy writes (numpy.lib.format): the dict with
 * keys in sorted order, room for shape[0] to grow to 21 digits, spaces to
 * make the data start at a multiple of 64, and a newline.  Returns its
 * length (at most 128 for two dimensions) or 0 on a bad shape. */
static size_t npy_header_bytes(char *buf, size_t cap, const char *descr, int64_t rows, int64_t cols)
{
    char dict[160];
    int n = cols ? snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%lld, %lld), }",
                            descr, (long long)rows, (long long)cols)
                 : snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%lld,), }",
                            descr, (long long)rows);
    char digits[24];
    int growth = 21 - snprintf(digits, sizeof digits, "%lld", (long long)rows);
    size_t hlen = (size_t)n + (size_t)(growth > 0 ? growth : 0) + 1;
    size_t total = 10 + hlen;
    total += 64 - total % 64;
    if (total > cap || total - 10 > 0xffff) return 0;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (char)((total - 10) & 0xff);
    buf[9] = (char)((total - 10) >> 8);
    memset(buf + 10, ' ', total - 10);
    memcpy(buf + 10, dict, (size_t)n);
    buf[total - 1] = '\n';
    return total;
}

/* The data size of rows × max(cols, 1) values of size bytes. */
static int npy_data_size(int64_t rows, int64_t cols, size_t size, const void *data, size_t *out)
{
    if (rows < 0 || cols < 0) return LOOM_EINVAL;
    uint64_t c = cols ? (uint64_t)cols : 1;
    if ((uint64_t)rows > (uint64_t)SIZE_MAX / size / c) return LOOM_ETOOBIG;
    *out = (size_t)((uint64_t)rows * c * size);
    if (*out && !data) return LOOM_EINVAL;
    return 0;
}

/* Copy n little-endian values of size bytes from the host's order. */
static void to_le(unsigned char *dst, const void *src, size_t n, size_t size)
{
    memcpy(dst, src, n * size);
    if (!host_is_big_endian()) return;
    for (size_t i = 0; i < n; i++)
        for (size_t a = 0, b = size - 1; a < b; a++, b--) {
            unsigned char t = dst[i * size + a];
            dst[i * size + a] = dst[i * size + b];
            dst[i * size + b] = t;
        }
}

int shard_npy_encode_f32(const float *data, int64_t rows, int64_t cols, void **out, size_t *len)
{
    if (!out || !len) return LOOM_EINVAL;
    *out = NULL;
    *len = 0;
    size_t nbytes;
    int rc = npy_data_size(rows, cols, sizeof(float), data, &nbytes);
    if (rc) return rc;
    char head[256];
    size_t hn = npy_header_bytes(head, sizeof head, "<f4", rows, cols);
    if (!hn) return LOOM_EINVAL;
    if (nbytes > SIZE_MAX - hn) return LOOM_ETOOBIG;
    unsigned char *buf = malloc(hn + nbytes);
    if (!buf) return LOOM_ENOMEM;
    memcpy(buf, head, hn);
    if (nbytes) to_le(buf + hn, data, nbytes / sizeof(float), sizeof(float));
    *out = buf;
    *len = hn + nbytes;
    return 0;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n > ((size_t)1 << 30) ? (size_t)1 << 30 : n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The data in little-endian order: as it is on a little-endian host, else
 * through a swapping buffer. */
static int write_le(int fd, const void *data, size_t nbytes, size_t size)
{
    if (!host_is_big_endian()) return write_all(fd, data, nbytes);
    unsigned char chunk[65536];
    size_t per = sizeof chunk / size;
    for (size_t off = 0; off < nbytes; off += per * size) {
        size_t n = (nbytes - off) / size < per ? (nbytes - off) / size : per;
        to_le(chunk, (const char *)data + off, n, size);
        if (write_all(fd, chunk, n * size)) return -1;
    }
    return 0;
}

/* Header and data to a temporary file beside path, then renamed over it. */
static int npy_write(const char *path, const char *descr, const void *data, int64_t rows, int64_t cols,
                     size_t size, char *err, size_t errlen)
{
    source src = {path ? path : "(null)", err, errlen};
    clear_err(err, errlen);
    if (!path || !*path) return fail(&src, LOOM_EINVAL, "no path");
    size_t nbytes;
    int rc = npy_data_size(rows, cols, size, data, &nbytes);
    if (rc) return fail(&src, rc, "bad shape (%lld, %lld) or no data", (long long)rows, (long long)cols);
    char head[256];
    size_t hn = npy_header_bytes(head, sizeof head, descr, rows, cols);
    if (!hn) return fail(&src, LOOM_EINVAL, "bad shape");
    char *tmp = malloc(strlen(path) + 8);
    if (!tmp) return fail(&src, LOOM_ENOMEM, "out of memory");
    strcpy(tmp, path);
    strcat(tmp, ".XXXXXX");
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        free(tmp);
        return fail_errno(&src, "cannot create a temporary file");
    }
    if (fchmod(fd, 0644) || write_all(fd, head, hn) || write_le(fd, data, nbytes, size))
        rc = fail_errno(&src, "write");
    if (close(fd) && !rc) rc = fail_errno(&src, "write");
    if (!rc && rename(tmp, path)) rc = fail_errno(&src, "rename");
    if (rc) unlink(tmp);
    free(tmp);
    return rc;
}

int shard_npy_write_f32(const char *path, const float *data, int64_t rows, int64_t cols, char *err, size_t errlen)
{
    return npy_write(path, "<f4", data, rows, cols, sizeof(float), err, errlen);
}

int shard_npy_write_i64(const char *path, const int64_t *data, int64_t rows, char *err, size_t errlen)
{
    return npy_write(path, "<i8", data, rows, 0, sizeof(int64_t), err, errlen);
}
