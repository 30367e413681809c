/* tune/util.c — helpers shared by the spec parsers of tune/ (space.c,
 * search.c, sched.c) and the sweep controller (sweep.c): the printf-style
 * error they return, and the unknown-key check of a JSON spec object. */
#include "tune/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/errf.h"
#include "loom/loom.h"

int tune_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    loom__verrf(err, errlen, LOOM_EINVAL, fmt, ap);
    va_end(ap);
    return LOOM_EINVAL;
}

const char *tune_unknown_key(const json_t *obj, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        int ok = 0;
        for (const char *const *a = allowed; !ok && *a; a++)
            ok = !strcmp(key, *a);
        if (!ok)
            return key;
    }
    return NULL;
}

int tune_check_keys(const json_t *obj, const char *const *allowed, const char *where,
                    char *err, size_t errlen)
{
    const char *key = tune_unknown_key(obj, allowed);
    return key ? tune_fail(err, errlen, "%s: unknown key \"%s\"", where, key) : 0;
}
