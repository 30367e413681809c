/* base/errf.h — formatting into fixed caller buffers: the one "printf the
 * reason into err, return the code" helper every layer uses, and
 * loom__snprintf (never overflows, empty on a format error). */
#ifndef LOOM_BASE_ERRF_H
#define LOOM_BASE_ERRF_H
#include <stdarg.h>
#include <stddef.h>

/* Write the message into err when err != NULL and errlen > 0; return code. */
int loom__errf(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int loom__verrf(char *err, size_t errlen, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
/* The same, appended after the text already in err (truncated to fit). */
int loom__errf_append(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int loom__verrf_append(char *err, size_t errlen, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

/* Simple printf into a fixed buffer that never overflows. */
void loom__snprintf(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#endif
