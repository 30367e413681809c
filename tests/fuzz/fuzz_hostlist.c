/* tests/fuzz/fuzz_hostlist.c — fuzz target for Slurm hostlist expressions
 * (runtime/hostlist.c), which come from SLURM_JOB_NODELIST and from users:
 * any bytes (up to the first NUL) are expanded with max_hosts 4096 and are
 * either refused with a message and nothing returned, or give 1..4096 valid
 * host names; the count is exact (one less as the limit is refused) and the
 * names, joined with commas, expand to themselves. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "loom/loom.h"
#include "runtime/hostlist.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_HOSTS 4096

static void check_names(char **hosts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(hosts[i]);
        if (len == 0 || len > LOOM_HOSTLIST_NAME_MAX) abort();
        if (strspn(hosts[i], "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") !=
            len)
            abort();
    }
}

/* The names joined with ',' are an expression that gives exactly them. */
static void check_round_trip(char **hosts, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += strlen(hosts[i]) + 1;
    char *expr = malloc(total);
    if (!expr) return;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (i) expr[len++] = ',';
        size_t l = strlen(hosts[i]);
        memcpy(expr + len, hosts[i], l);
        len += l;
    }
    expr[len] = 0;
    char **again = NULL, err[256];
    size_t m = 0;
    int rc = loom__hostlist_expand(expr, n, &again, &m, err, sizeof err);
    if (rc == LOOM_ENOMEM) {
        free(expr);
        return;
    }
    if (rc != 0 || m != n) abort();
    for (size_t i = 0; i < n; i++)
        if (strcmp(again[i], hosts[i]) != 0) abort();
    loom__hostlist_free(again, m);
    free(expr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *expr = malloc(size + 1);
    if (!expr) return 0;
    memcpy(expr, data, size);
    expr[size] = 0;

    char **hosts = (char **)(uintptr_t)1, err[512];
    size_t n = 7;
    memset(err, 'x', sizeof err);
    int rc = loom__hostlist_expand(expr, MAX_HOSTS, &hosts, &n, err, sizeof err);
    if (!memchr(err, 0, sizeof err)) abort(); /* always terminated */
    if (rc == 0) {
        if (!hosts || n == 0 || n > MAX_HOSTS || err[0]) abort();
        check_names(hosts, n);
        /* the limit is exact: one less is refused, with nothing returned */
        char **h2 = (char **)(uintptr_t)1, e2[64];
        size_t n2 = 7;
        int rc2 = loom__hostlist_expand(expr, n - 1, &h2, &n2, e2, sizeof e2);
        if (rc2 != LOOM_ETOOBIG || h2 || n2 || !e2[0]) abort();
        if (n <= 256) check_round_trip(hosts, n);
        loom__hostlist_free(hosts, n);
    } else {
        if (hosts || n || !err[0]) abort(); /* a refusal says why, returns nothing */
        if (rc != LOOM_EINVAL && rc != LOOM_ETOOBIG && rc != LOOM_ENOMEM) abort();
        /* and says it again, the same way, into a tiny buffer */
        char tiny[8];
        if (loom__hostlist_expand(expr, MAX_HOSTS, &hosts, &n, tiny, sizeof tiny) != rc) abort();
        if (hosts || n || strlen(tiny) >= sizeof tiny) abort();
    }
    free(expr);
    return 0;
}
