/* runtime/hostlist.c — Slurm hostlist expressions (see hostlist.h).
 *
 * Two passes over the expression.  The first parses every item, checks its
 * syntax and works out how many hosts it gives and how long its longest name
 * is (saturating arithmetic: nothing can overflow); nothing is expanded until
 * the whole expression is known to be valid and within max_hosts.  The second
 * parses each item again and writes its names out, odometer fashion, with the
 * rightmost bracket group turning fastest. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "loom/loom.h"
#include "runtime/hostlist.h"
#include "runtime/util.h"

typedef struct hl_range {
    uint64_t lo, hi;
    int width; /* digits of lo as written: the zero padding */
} hl_range;

typedef struct hl_group {
    size_t lit, litlen; /* host-name text before the '[' (offsets into expr) */
    size_t r0, nr;      /* its ranges: it->r[r0 .. r0 + nr) */
    uint64_t count;     /* numbers it gives (saturating) */
    size_t numlen;      /* longest number it writes */
    size_t cur;         /* expansion state: range index and value */
    uint64_t val;
} hl_group;

typedef struct hl_item {
    size_t no;           /* 1-based item number, for messages */
    size_t start, end;   /* its bytes: expr[start, end) */
    hl_group *g;
    size_t ng, gcap;
    hl_range *r;
    size_t nr, rcap;
    size_t tail, taillen; /* host-name text after the last group */
    uint64_t count;       /* hosts it gives (saturating) */
    size_t maxlen;        /* its longest host name */
} hl_item;

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t sat_mul(uint64_t a, uint64_t b)
{
    if (a == 0 || b == 0) return 0;
    return a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

static int ndigits(uint64_t v)
{
    int n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

static int is_host_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* "'x'" for a printable byte, "byte 0xNN" otherwise. */
static const char *describe(unsigned char c, char *buf, size_t len)
{
    if (c > 0x20 && c < 0x7f) loom__snprintf(buf, len, "'%c'", c);
    else loom__snprintf(buf, len, "byte 0x%02x", c);
    return buf;
}

/* The message for a failure at byte pos of the item: which item (its text,
 * shortened, with unprintable bytes as '?'), the 1-based position, the reason. */
static int fail(const char *expr, const hl_item *it, size_t pos, char *err, size_t errlen,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int fail(const char *expr, const hl_item *it, size_t pos, char *err, size_t errlen,
                const char *fmt, ...)
{
    char why[192], text[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    size_t len = it->end - it->start, show = len > 40 ? 40 : len;
    for (size_t i = 0; i < show; i++) {
        unsigned char c = (unsigned char)expr[it->start + i];
        text[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    text[show] = 0;
    loom__snprintf(err, errlen, "hostlist item %zu \"%s%s\" at position %zu: %s", it->no, text,
                   show < len ? "..." : "", pos + 1, why);
    return LOOM_EINVAL;
}

/* The reason a byte cannot start or continue a number inside brackets. */
static int fail_in_group(const char *expr, const hl_item *it, size_t pos, size_t open,
                         const char *what, char *err, size_t errlen)
{
    unsigned char c = (unsigned char)expr[pos];
    char d[16];
    if (c == 0 || pos >= it->end)
        return fail(expr, it, open, err, errlen, "'[' is never closed");
    if (c == '[') return fail(expr, it, pos, err, errlen, "nested '[' (brackets do not nest)");
    if (is_space(c))
        return fail(expr, it, pos, err, errlen, "whitespace is not allowed in a hostlist");
    if (c == ',' || c == ']')
        return fail(expr, it, pos, err, errlen, "empty range (expected %s before %s)", what,
                    describe(c, d, sizeof d));
    if (c == '-')
        return fail(expr, it, pos, err, errlen, "expected %s before '-'", what);
    return fail(expr, it, pos, err, errlen, "%s in a range: only digits, '-' and ',' may be "
                "inside brackets", describe(c, d, sizeof d));
}

/* Read a number of at most LOOM_HOSTLIST_DIGITS_MAX digits at *pos. */
static int read_number(const char *expr, const hl_item *it, size_t *pos, size_t open,
                       const char *what, uint64_t *v, int *width, char *err, size_t errlen)
{
    size_t p = *pos;
    uint64_t x = 0;
    while (is_digit((unsigned char)expr[p])) {
        if (p - *pos >= LOOM_HOSTLIST_DIGITS_MAX) {
            size_t q = p;
            while (is_digit((unsigned char)expr[q])) q++;
            return fail(expr, it, *pos, err, errlen, "number of %zu digits (at most %d allowed)",
                        q - *pos, LOOM_HOSTLIST_DIGITS_MAX);
        }
        x = x * 10 + (uint64_t)(expr[p] - '0');
        p++;
    }
    if (p == *pos) return fail_in_group(expr, it, p, open, what, err, errlen);
    *v = x;
    *width = (int)(p - *pos);
    *pos = p;
    return 0;
}

static void item_clear(hl_item *it)
{
    free(it->g);
    free(it->r);
    it->g = NULL;
    it->r = NULL;
    it->ng = it->nr = it->gcap = it->rcap = 0;
}

/* Parse the item that starts at expr[start]: its groups, ranges, host count
 * and longest name.  it->end is where it stops (a top-level ',' or the NUL).
 * On failure it holds nothing. */
static int item_parse(const char *expr, size_t start, size_t no, hl_item *it, char *err,
                      size_t errlen)
{
    memset(it, 0, sizeof *it);
    it->no = no;
    it->start = start;
    /* Size the arrays: a group per '[', a range per '[' or ',' inside one. */
    size_t nopen = 0, ncomma = 0, p = start;
    int depth = 0;
    for (; expr[p] && !(expr[p] == ',' && depth == 0); p++) {
        if (expr[p] == '[') {
            nopen++;
            depth = 1;
        } else if (expr[p] == ']') {
            depth = 0;
        } else if (expr[p] == ',') {
            ncomma++;
        }
    }
    it->end = p;
    if (p == start) {
        return fail(expr, it, start, err, errlen, "%s",
                    expr[p] ? "empty item (two ',' in a row or a leading ',')"
                    : "empty item after a trailing ','");
    }
    if (nopen) {
        it->gcap = nopen;
        it->rcap = nopen + ncomma;
        it->g = malloc(it->gcap * sizeof *it->g);
        it->r = malloc(it->rcap * sizeof *it->r);
        if (!it->g || !it->r) {
            item_clear(it);
            loom__snprintf(err, errlen, "hostlist: out of memory");
            return LOOM_ENOMEM;
        }
    }
    size_t lit = start, len = 0; /* host-name text so far (since the last ']') */
    uint64_t count = 1;
    int rc = 0;
    char d[16];
    for (p = start; p < it->end;) {
        unsigned char c = (unsigned char)expr[p];
        if (c == ']') {
            rc = fail(expr, it, p, err, errlen, "']' without a matching '['");
            goto out;
        }
        if (c != '[') {
            if (is_space(c))
                rc = fail(expr, it, p, err, errlen, "whitespace is not allowed in a hostlist");
            else if (!is_host_char(c))
                rc = fail(expr, it, p, err, errlen, "%s is not allowed in a host name "
                          "(only A-Z a-z 0-9 . _ -)", describe(c, d, sizeof d));
            if (rc) goto out;
            len++;
            p++;
            continue;
        }
        /* A bracket group: ranges until ']'. */
        size_t open = p;
        if (it->ng >= it->gcap) { /* cannot happen: sized above */
            rc = fail(expr, it, p, err, errlen, "internal error: too many groups");
            goto out;
        }
        hl_group *g = &it->g[it->ng++];
        memset(g, 0, sizeof *g);
        g->lit = lit;
        g->litlen = len;
        g->r0 = it->nr;
        p++;
        for (;;) {
            hl_range r;
            int hw = 0;
            if ((rc = read_number(expr, it, &p, open, "a number", &r.lo, &r.width, err, errlen)))
                goto out;
            r.hi = r.lo;
            if (expr[p] == '-') {
                size_t dash = p++;
                if (expr[p] == ',' || expr[p] == ']') {
                    rc = fail(expr, it, dash, err, errlen, "range \"%.*s-\" has no upper bound",
                              r.width, expr + dash - r.width);
                    goto out;
                }
                size_t hs = p;
                if ((rc = read_number(expr, it, &p, open, "a number", &r.hi, &hw, err, errlen)))
                    goto out;
                if (r.lo > r.hi) {
                    rc = fail(expr, it, hs - (size_t)r.width - 1, err, errlen,
                              "range %.*s-%.*s goes down (its start is above its end)", r.width,
                              expr + hs - r.width - 1, hw, expr + hs);
                    goto out;
                }
            }
            if (it->nr >= it->rcap) { /* cannot happen: sized above */
                rc = fail(expr, it, p, err, errlen, "internal error: too many ranges");
                goto out;
            }
            it->r[it->nr++] = r;
            g->nr++;
            g->count = sat_add(g->count, r.hi - r.lo + 1);
            /* the longest number of the range: hi, padded to lo's width */
            size_t nl = (size_t)(ndigits(r.hi) > r.width ? ndigits(r.hi) : r.width);
            if (nl > g->numlen) g->numlen = nl;
            if (expr[p] == ',' && p < it->end) {
                p++;
                continue;
            }
            if (expr[p] == ']') {
                p++;
                break;
            }
            unsigned char e = (unsigned char)expr[p];
            if (e == '-')
                rc = fail(expr, it, p, err, errlen, "a range has one '-' (as in 1-5)");
            else if (is_digit(e)) /* cannot happen: numbers are read whole */
                rc = fail(expr, it, p, err, errlen, "internal error: digit after a number");
            else
                rc = fail_in_group(expr, it, p, open, "',' or ']'", err, errlen);
            goto out;
        }
        count = sat_mul(count, g->count);
        it->maxlen = it->maxlen + g->litlen + g->numlen;
        lit = p;
        len = 0;
    }
    it->tail = lit;
    it->taillen = len;
    it->maxlen += len;
    it->count = count;
    if (it->maxlen > LOOM_HOSTLIST_NAME_MAX)
        rc = fail(expr, it, start, err, errlen, "%s %zu bytes long (at most %d allowed)",
                  it->ng ? "host names up to" : "host name", it->maxlen, LOOM_HOSTLIST_NAME_MAX);
out:
    if (rc) item_clear(it);
    return rc;
}

/* Append v, zero-padded to width, at buf[*len]. */
static void put_number(char *buf, size_t *len, uint64_t v, int width)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (int i = n; i < width; i++) buf[(*len)++] = '0';
    while (n) buf[(*len)++] = tmp[--n];
}

/* Write the item's names to hosts[*k...]: the caller made room for it->count. */
static int item_expand(const char *expr, hl_item *it, char **hosts, size_t *k)
{
    char buf[LOOM_HOSTLIST_NAME_MAX + 1];
    for (size_t i = 0; i < it->ng; i++) {
        it->g[i].cur = 0;
        it->g[i].val = it->r[it->g[i].r0].lo;
    }
    for (;;) {
        size_t len = 0;
        for (size_t i = 0; i < it->ng; i++) {
            const hl_group *g = &it->g[i];
            memcpy(buf + len, expr + g->lit, g->litlen);
            len += g->litlen;
            put_number(buf, &len, g->val, it->r[g->r0 + g->cur].width);
        }
        memcpy(buf + len, expr + it->tail, it->taillen);
        len += it->taillen;
        buf[len] = 0;
        char *name = malloc(len + 1);
        if (!name) return LOOM_ENOMEM;
        memcpy(name, buf, len + 1);
        hosts[(*k)++] = name;
        /* Advance the odometer: the rightmost group turns fastest. */
        size_t i = it->ng;
        for (; i > 0; i--) {
            hl_group *g = &it->g[i - 1];
            const hl_range *r = &it->r[g->r0 + g->cur];
            if (g->val < r->hi) {
                g->val++;
                break;
            }
            if (g->cur + 1 < g->nr) {
                g->cur++;
                g->val = it->r[g->r0 + g->cur].lo;
                break;
            }
            g->cur = 0;
            g->val = it->r[g->r0].lo;
        }
        if (i == 0) return 0; /* every group wrapped: done */
    }
}

void loom__hostlist_free(char **hosts, size_t n)
{
    if (!hosts) return;
    for (size_t i = 0; i < n; i++) free(hosts[i]);
    free(hosts);
}

int loom__hostlist_expand(const char *expr, size_t max_hosts, char ***hosts, size_t *n,
                          char *err, size_t errlen)
{
    if (hosts) *hosts = NULL;
    if (n) *n = 0;
    if (err && errlen) err[0] = 0;
    if (!expr || !hosts || !n) {
        loom__snprintf(err, errlen, "hostlist: no expression or no place for the result");
        return LOOM_EINVAL;
    }
    if (!expr[0]) {
        loom__snprintf(err, errlen, "empty hostlist expression");
        return LOOM_EINVAL;
    }
    /* Pass 1: syntax, counts and lengths; nothing expanded. */
    uint64_t total = 0;
    size_t items = 0;
    for (size_t p = 0;;) {
        hl_item it;
        int rc = item_parse(expr, p, ++items, &it, err, errlen);
        if (rc) return rc;
        total = sat_add(total, it.count);
        item_clear(&it);
        if (!expr[it.end]) break;
        p = it.end + 1;
    }
    if (total == UINT64_MAX || total > (uint64_t)max_hosts) { /* saturated: too many, always */
        if (total == UINT64_MAX)
            loom__snprintf(err, errlen, "hostlist gives more than %llu hosts (at most %zu "
                           "allowed)", (unsigned long long)UINT64_MAX - 1, max_hosts);
        else
            loom__snprintf(err, errlen, "hostlist gives %llu hosts (at most %zu allowed)",
                           (unsigned long long)total, max_hosts);
        return LOOM_ETOOBIG;
    }
    if (total > SIZE_MAX / sizeof(char *)) {
        loom__snprintf(err, errlen, "hostlist: out of memory for %llu hosts",
                       (unsigned long long)total);
        return LOOM_ENOMEM;
    }
    /* Pass 2: the names. */
    char **out = calloc((size_t)total, sizeof *out);
    if (!out) {
        loom__snprintf(err, errlen, "hostlist: out of memory for %llu hosts",
                       (unsigned long long)total);
        return LOOM_ENOMEM;
    }
    size_t k = 0, no = 0;
    for (size_t p = 0;;) {
        hl_item it;
        int rc = item_parse(expr, p, ++no, &it, err, errlen);
        if (!rc && k + it.count > total) { /* cannot happen: pass 1 counted */
            loom__snprintf(err, errlen, "hostlist: internal error: host count changed");
            rc = LOOM_EINVAL;
        }
        if (!rc) {
            rc = item_expand(expr, &it, out, &k);
            if (rc) loom__snprintf(err, errlen, "hostlist: out of memory");
        }
        item_clear(&it);
        if (rc) {
            loom__hostlist_free(out, k);
            return rc;
        }
        if (!expr[it.end]) break;
        p = it.end + 1;
    }
    if (k != total) { /* cannot happen */
        loom__hostlist_free(out, k);
        loom__snprintf(err, errlen, "hostlist: internal error: %zu hosts, expected %llu", k,
                       (unsigned long long)total);
        return LOOM_EINVAL;
    }
    *hosts = out;
    *n = k;
    return 0;
}
