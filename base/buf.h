/* base/buf.h — the growable buffer: bytes or text (kept NUL-terminated after
 * every append), with a sticky out-of-memory flag so a writer can append many
 * pieces and check once. */
#ifndef LOOM_BASE_BUF_H
#define LOOM_BASE_BUF_H
#include <stdarg.h>
#include <stddef.h>

typedef struct loom_buf {
    char *p;        /* NULL until the first append */
    size_t len, cap;
    int oom;        /* set when an append failed; later appends do nothing */
} loom_buf;

static inline void loom_buf_init(loom_buf *b) { *b = (loom_buf){0}; }
/* Each returns 0, or -1 when out of memory (and sets b->oom). */
int loom__buf_append(loom_buf *b, const void *data, size_t n);
int loom__buf_puts(loom_buf *b, const char *s);
int loom__buf_appendf(loom_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int loom__buf_vappendf(loom_buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* The text so far ("" before the first append). */
static inline const char *loom_buf_str(const loom_buf *b) { return b->p ? b->p : ""; }
void loom__buf_free(loom_buf *b);
#endif
