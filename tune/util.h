/* tune/util.h — small helpers the parts of loom_tune_core and the sweep
 * controller share: the printf-style error of a spec parser, and the check
 * for unknown keys in a JSON spec object.  tune/util.c */
#ifndef LOOM_TUNE_UTIL_H
#define LOOM_TUNE_UTIL_H

#include <jansson.h>
#include <stddef.h>

/* Format fmt into err (when err is not NULL and errlen > 0; truncated to
 * errlen) and return LOOM_EINVAL. */
int tune_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The first key of object obj (in its order) that is not in allowed (a
 * NULL-terminated list), or NULL when every key is allowed (or obj is not
 * an object).  The name points into obj. */
const char *tune_unknown_key(const json_t *obj, const char *const *allowed);

/* 0 when every key of obj is in allowed; else LOOM_EINVAL, with
 * "WHERE: unknown key \"KEY\"" in err (as tune_fail). */
int tune_check_keys(const json_t *obj, const char *const *allowed, const char *where,
                    char *err, size_t errlen);

#endif
