/* base/buf.c — the growable buffer (see buf.h). */
#include "base/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for n more bytes and the NUL; 0 or -1 (oom set). */
static int reserve(loom_buf *b, size_t n)
{
    if (b->oom) return -1;
    if (b->len + n + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

int loom__buf_append(loom_buf *b, const void *data, size_t n)
{
    if (reserve(b, n)) return -1;
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int loom__buf_puts(loom_buf *b, const char *s) { return loom__buf_append(b, s, strlen(s)); }

int loom__buf_vappendf(loom_buf *b, const char *fmt, va_list ap)
{
    if (b->oom) return -1;
    va_list again;
    va_copy(again, ap);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    int rc = 0;
    if (n < 0) {
        b->oom = 1;
        rc = -1;
    } else if ((size_t)n < sizeof small) {
        rc = loom__buf_append(b, small, (size_t)n);
    } else if (!(rc = reserve(b, (size_t)n))) {
        vsnprintf(b->p + b->len, (size_t)n + 1, fmt, again);
        b->len += (size_t)n;
    }
    va_end(again);
    return rc;
}

int loom__buf_appendf(loom_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = loom__buf_vappendf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void loom__buf_free(loom_buf *b)
{
    free(b->p);
    *b = (loom_buf){0};
}
