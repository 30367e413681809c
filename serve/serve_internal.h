/* serve/serve_internal.h — what the serve sources share and do not export. */
#ifndef LOOM_SERVE_INTERNAL_H
#define LOOM_SERVE_INTERNAL_H

#include <stddef.h>

/* Writes a printf-style reason into err (errlen bytes; either may be 0/NULL)
 * and returns rc, so a check can `return serve_fail(LOOM_EINVAL, ...)`.
 * Defined in tensor.c. */
int serve_fail(int rc, char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
