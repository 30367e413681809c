/* base/errf.c — error messages into caller buffers (see errf.h). */
#include "base/errf.h"

#include <stdio.h>
#include <string.h>

int loom__verrf(char *err, size_t errlen, int code, const char *fmt, va_list ap)
{
    if (err && errlen) vsnprintf(err, errlen, fmt, ap);
    return code;
}

int loom__errf(char *err, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    loom__verrf(err, errlen, code, fmt, ap);
    va_end(ap);
    return code;
}

int loom__verrf_append(char *err, size_t errlen, int code, const char *fmt, va_list ap)
{
    if (!err || !errlen) return code;
    size_t used = strnlen(err, errlen);
    if (used + 1 >= errlen) return code;
    vsnprintf(err + used, errlen - used, fmt, ap);
    return code;
}

int loom__errf_append(char *err, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    loom__verrf_append(err, errlen, code, fmt, ap);
    va_end(ap);
    return code;
}

void loom__snprintf(char *buf, size_t len, const char *fmt, ...)
{
    if (!buf || len == 0) return; /* nothing asked: the scheduler's fit checks pass NULL */
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    if (n < 0 && len) buf[0] = 0;
}
