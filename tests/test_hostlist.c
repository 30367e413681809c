/* tests/test_hostlist.c — runtime/hostlist.h: Slurm hostlist expressions.
 * Plain names, ranges and lists, zero padding as Slurm does it, several
 * groups (cartesian product, leftmost outermost), order and duplicates kept;
 * every refusal with its message and position; the max_hosts limit checked
 * before anything is expanded (ranges of 10^10 and more, saturating counts);
 * the 255-byte name limit including padding; a 100000-host expansion; random
 * expressions against an independent expansion; random byte soup for the
 * "on error nothing is returned" contract. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "loom/loom.h"
#include "runtime/hostlist.h"
#include "tests/testutil.h"

/* ---- helpers ------------------------------------------------------------ */

/* Expand expr; compare with want, the names separated by single spaces. */
static void expect_ok(const char *expr, size_t max, const char *want)
{
    char **hosts = (char **)(uintptr_t)1, err[256] = "x";
    size_t n = 12345;
    int rc = loom__hostlist_expand(expr, max, &hosts, &n, err, sizeof err);
    CHECK_RC(rc, 0);
    if (rc) {
        fprintf(stderr, "  expr \"%s\": %s\n", expr, err);
        return;
    }
    CHECK(err[0] == 0);
    char got[4096] = "";
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(got + len, sizeof got - len, "%s%s", i ? " " : "", hosts[i]);
    int same = strcmp(got, want) == 0;
    CHECK(same);
    if (!same) fprintf(stderr, "  expr \"%s\":\n    got  \"%s\"\n    want \"%s\"\n", expr, got, want);
    loom__hostlist_free(hosts, n);
}

/* Expect a refusal with code want_rc whose message holds every one of the
 * (NULL-terminated) substrings. */
static void expect_err_v(const char *expr, size_t max, int want_rc, const char *const *subs)
{
    char **hosts = (char **)(uintptr_t)1, err[256] = "";
    size_t n = 12345;
    int rc = loom__hostlist_expand(expr, max, &hosts, &n, err, sizeof err);
    CHECK_RC(rc, want_rc);
    CHECK(hosts == NULL);
    CHECK(n == 0);
    CHECK(err[0] != 0);
    for (; *subs; subs++) {
        int has = strstr(err, *subs) != NULL;
        CHECK(has);
        if (!has) fprintf(stderr, "  expr \"%s\": message \"%s\" lacks \"%s\"\n", expr, err, *subs);
    }
    if (rc == 0) loom__hostlist_free(hosts, n);
}
#define expect_err(expr, max, rc, ...) \
    expect_err_v((expr), (max), (rc), (const char *const[]){__VA_ARGS__, NULL})

static char *repeat(char c, size_t n, const char *suffix)
{
    char *s = malloc(n + strlen(suffix) + 1);
    REQUIRE(s);
    memset(s, c, n);
    strcpy(s + n, suffix);
    return s;
}

static uint64_t rng_state = 0x243f6a8885a308d3ull;

static uint64_t rng_next(void) /* xorshift64, fixed seed: reproducible */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int rng_below(int n)
{
    return (int)(rng_next() % (uint64_t)n);
}

/* ---- valid expressions -------------------------------------------------- */

static void test_basic(void)
{
    expect_ok("gpu5", 10, "gpu5");
    expect_ok("a", 1, "a");
    expect_ok("a.b_c-D9", 1, "a.b_c-D9");
    expect_ok("node[01-03,07]", 10, "node01 node02 node03 node07");
    expect_ok("a,b,c", 3, "a b c");
    expect_ok("a,a,a", 3, "a a a");                         /* duplicates kept */
    expect_ok("n[3,1,2]", 3, "n3 n1 n2");                    /* order kept */
    expect_ok("n[1-2,2-3]", 10, "n1 n2 n2 n3");
    expect_ok("n[5]", 1, "n5");
    expect_ok("n[0]", 1, "n0");
    expect_ok("n[1-1]", 1, "n1");
    expect_ok("n[0-3]", 4, "n0 n1 n2 n3");
    expect_ok("[1-3]", 3, "1 2 3");                          /* no prefix */
    expect_ok("n[1-2]x", 2, "n1x n2x");                      /* text after */
    expect_ok("n[1-2]0", 2, "n10 n20");
    expect_ok("n[1-2].ib", 2, "n1.ib n2.ib");
    expect_ok("node[1-2],gpu5,m[7]", 10, "node1 node2 gpu5 m7");
    expect_ok("b,a[2-4],c", 5, "b a2 a3 a4 c");
}

static void test_padding(void)
{
    expect_ok("n[8-10]", 3, "n8 n9 n10");
    expect_ok("n[08-10]", 3, "n08 n09 n10");
    expect_ok("n[001-003]", 3, "n001 n002 n003");
    expect_ok("n[098-101]", 4, "n098 n099 n100 n101");
    expect_ok("n[98-101]", 4, "n98 n99 n100 n101");
    expect_ok("n[1-010]", 10, "n1 n2 n3 n4 n5 n6 n7 n8 n9 n10"); /* width of the lower bound */
    expect_ok("n[007]", 1, "n007");
    expect_ok("n[00]", 1, "n00");
    expect_ok("n[00-02]", 3, "n00 n01 n02");
    expect_ok("n[9-11,007,08-09]", 10, "n9 n10 n11 n007 n08 n09");
    expect_ok("n[0000000001]", 1, "n0000000001");            /* 10 digits: allowed */
    expect_ok("n[9999999998-9999999999]", 2, "n9999999998 n9999999999");
}

static void test_product(void)
{
    expect_ok("rack[1-2]-n[1-3]", 6, "rack1-n1 rack1-n2 rack1-n3 rack2-n1 rack2-n2 rack2-n3");
    expect_ok("a[1-2]b[3-4]c", 4, "a1b3c a1b4c a2b3c a2b4c");
    expect_ok("x[1-2][3-4]", 4, "x13 x14 x23 x24");
    expect_ok("r[1,3]s[01-02]t[9]", 4, "r1s01t9 r1s02t9 r3s01t9 r3s02t9");
    expect_ok("r[2,1]-n[2-3,1]", 6, "r2-n2 r2-n3 r2-n1 r1-n2 r1-n3 r1-n1");
    expect_ok("a,r[1-2]-n[1-2],b", 6, "a r1-n1 r1-n2 r2-n1 r2-n2 b");
    expect_ok("[1-2][1-2][1-2]", 8, "111 112 121 122 211 212 221 222");
}

/* ---- refusals ----------------------------------------------------------- */

static void test_syntax_errors(void)
{
    expect_err("", 10, LOOM_EINVAL, "empty hostlist expression");
    expect_err("a,,b", 10, LOOM_EINVAL, "item 2", "position 3", "empty item");
    expect_err(",a", 10, LOOM_EINVAL, "item 1", "position 1", "empty item");
    expect_err("a,", 10, LOOM_EINVAL, "item 2", "position 3", "trailing ','");
    expect_err(",", 10, LOOM_EINVAL, "item 1", "empty item");
    /* brackets */
    expect_err("n[1-3", 10, LOOM_EINVAL, "item 1", "position 2", "'[' is never closed");
    expect_err("a,n[1,2", 10, LOOM_EINVAL, "item 2", "position 4", "never closed");
    expect_err("n[", 10, LOOM_EINVAL, "never closed");
    expect_err("n1-3]", 10, LOOM_EINVAL, "position 5", "']' without a matching '['");
    expect_err("n[1]]", 10, LOOM_EINVAL, "position 5", "']' without");
    expect_err("]", 10, LOOM_EINVAL, "position 1", "']' without");
    expect_err("n[[1]]", 10, LOOM_EINVAL, "position 3", "nested '['");
    expect_err("n[1[2]]", 10, LOOM_EINVAL, "position 4", "nested");
    expect_err("n[1-[2]]", 10, LOOM_EINVAL, "position 5", "nested");
    /* empty ranges and bounds */
    expect_err("n[]", 10, LOOM_EINVAL, "position 3", "empty range");
    expect_err("n[1,]", 10, LOOM_EINVAL, "position 5", "empty range");
    expect_err("n[,1]", 10, LOOM_EINVAL, "position 3", "empty range");
    expect_err("n[1,,2]", 10, LOOM_EINVAL, "position 5", "empty range");
    expect_err("n[1-]", 10, LOOM_EINVAL, "position 4", "no upper bound", "\"1-\"");
    expect_err("n[12-,3]", 10, LOOM_EINVAL, "no upper bound", "\"12-\"");
    expect_err("n[-3]", 10, LOOM_EINVAL, "position 3", "before '-'");
    expect_err("n[1--3]", 10, LOOM_EINVAL, "position 5", "before '-'");
    expect_err("n[1-2-3]", 10, LOOM_EINVAL, "position 6", "one '-'");
    /* a > b */
    expect_err("n[5-3]", 10, LOOM_EINVAL, "position 3", "5-3", "goes down");
    expect_err("n[1,10-09]", 10, LOOM_EINVAL, "position 5", "10-09", "goes down");
    expect_err("a,b,n[2-1]", 10, LOOM_EINVAL, "item 3", "\"n[2-1]\"", "position 7");
    /* non-digits in a range: no steps, no letters, no signs */
    expect_err("n[1-10x2]", 10, LOOM_EINVAL, "position 7", "'x' in a range");
    expect_err("n[1-10:2]", 10, LOOM_EINVAL, "':' in a range");
    expect_err("n[a]", 10, LOOM_EINVAL, "position 3", "'a' in a range");
    expect_err("n[1-b]", 10, LOOM_EINVAL, "position 5", "'b' in a range");
    expect_err("n[+1]", 10, LOOM_EINVAL, "'+' in a range");
    expect_err("n[1.5]", 10, LOOM_EINVAL, "'.' in a range");
    /* too many digits */
    expect_err("n[12345678901]", 10, LOOM_EINVAL, "position 3", "11 digits", "at most 10");
    expect_err("n[00000000001]", 10, LOOM_EINVAL, "11 digits");
    expect_err("n[1-123456789012]", 10, LOOM_EINVAL, "position 5", "12 digits");
    expect_err("n[99999999999999999999999]", 10, LOOM_EINVAL, "23 digits");
    /* whitespace, anywhere */
    expect_err("a b", 10, LOOM_EINVAL, "position 2", "whitespace");
    expect_err(" a", 10, LOOM_EINVAL, "position 1", "whitespace");
    expect_err("a ", 10, LOOM_EINVAL, "position 2", "whitespace");
    expect_err("a\n", 10, LOOM_EINVAL, "position 2", "whitespace");
    expect_err("a,\tb", 10, LOOM_EINVAL, "item 2", "position 3", "whitespace");
    expect_err("n[1, 2]", 10, LOOM_EINVAL, "position 5", "whitespace");
    expect_err("n[1 -2]", 10, LOOM_EINVAL, "position 4", "whitespace");
    /* characters not allowed in host names */
    expect_err("a@b", 10, LOOM_EINVAL, "position 2", "'@' is not allowed in a host name");
    expect_err("a/b", 10, LOOM_EINVAL, "'/' is not allowed");
    expect_err("a:1", 10, LOOM_EINVAL, "':' is not allowed");
    expect_err("n[1-2]*", 10, LOOM_EINVAL, "position 7", "'*'");
    expect_err("a\x01z", 10, LOOM_EINVAL, "byte 0x01");
    expect_err("caf\xc3\xa9", 10, LOOM_EINVAL, "position 4", "byte 0xc3");
    expect_err("a{1-2}", 10, LOOM_EINVAL, "'{'");
    /* the first error wins, and a syntax error wins over the count */
    expect_err("a b,c@d", 10, LOOM_EINVAL, "position 2", "whitespace");
    expect_err("n[0-9999999999],a b", 10, LOOM_EINVAL, "item 2", "whitespace");
    /* long items are shortened in the message */
    char *s = repeat('q', 300, "!");
    expect_err(s, 10, LOOM_EINVAL, "position 301", "qqq...\"", "'!'");
    free(s);
}

static void test_args(void)
{
    char **hosts = (char **)(uintptr_t)1, err[128];
    size_t n = 7;
    CHECK_RC(loom__hostlist_expand(NULL, 10, &hosts, &n, err, sizeof err), LOOM_EINVAL);
    CHECK(hosts == NULL && n == 0 && err[0]);
    n = 7;
    CHECK_RC(loom__hostlist_expand("a", 10, NULL, &n, err, sizeof err), LOOM_EINVAL);
    CHECK(n == 0);
    hosts = (char **)(uintptr_t)1;
    CHECK_RC(loom__hostlist_expand("a", 10, &hosts, NULL, err, sizeof err), LOOM_EINVAL);
    CHECK(hosts == NULL);
    /* err may be NULL or tiny */
    CHECK_RC(loom__hostlist_expand("a b", 10, &hosts, &n, NULL, 0), LOOM_EINVAL);
    CHECK(hosts == NULL && n == 0);
    char tiny[6];
    memset(tiny, 'z', sizeof tiny);
    CHECK_RC(loom__hostlist_expand("n[5-3]", 10, &hosts, &n, tiny, sizeof tiny), LOOM_EINVAL);
    CHECK(tiny[5] == 0 && strlen(tiny) == 5);
    CHECK_RC(loom__hostlist_expand("n[1-3]", 10, &hosts, &n, NULL, 0), 0);
    CHECK(n == 3 && hosts && strcmp(hosts[2], "n3") == 0);
    loom__hostlist_free(hosts, n);
    loom__hostlist_free(NULL, 0);
    loom__hostlist_free(NULL, 5);
}

/* ---- limits ------------------------------------------------------------- */

static void test_max_hosts(void)
{
    expect_ok("n[1-10]", 10, "n1 n2 n3 n4 n5 n6 n7 n8 n9 n10");
    expect_err("n[1-10]", 9, LOOM_ETOOBIG, "10 hosts", "at most 9");
    expect_ok("a,b,c", 3, "a b c");
    expect_err("a,b,c", 2, LOOM_ETOOBIG, "3 hosts", "at most 2");
    expect_err("a", 0, LOOM_ETOOBIG, "1 hosts", "at most 0");
    expect_err("r[1-4]-n[1-4]", 15, LOOM_ETOOBIG, "16 hosts");
    expect_ok("r[1-4]-n[1-4]", 16,
              "r1-n1 r1-n2 r1-n3 r1-n4 r2-n1 r2-n2 r2-n3 r2-n4 "
              "r3-n1 r3-n2 r3-n3 r3-n4 r4-n1 r4-n2 r4-n3 r4-n4");
    /* counted, never expanded: these would need gigabytes or worse */
    expect_err("n[0-9999999999]", 1000, LOOM_ETOOBIG, "10000000000 hosts", "at most 1000");
#if SIZE_MAX > 0xffffffffu
    expect_err("n[0-9999999999]", (size_t)9999999999ull, LOOM_ETOOBIG, "10000000000 hosts",
               "at most 9999999999");
#endif
    expect_err("a,n[0-9999999999],n[0-9999999999]", 4096, LOOM_ETOOBIG, "20000000001 hosts");
    /* 10^20 does not fit in 64 bits: the count saturates */
    expect_err("n[0-9999999999]-[0-9999999999]", 4096, LOOM_ETOOBIG, "more than");
    expect_err("[0-9999999999][0-9999999999][0-9999999999][0-9999999999]", SIZE_MAX,
               LOOM_ETOOBIG, "more than");
    expect_err("n[0-9999999999,0-9999999999,0-9999999999]", 4096, LOOM_ETOOBIG,
               "30000000000 hosts");
    /* 10^19 fits in 64 bits: an exact count, not "more than" */
    expect_err("[0-9999999999][0-999999999]", 4096, LOOM_ETOOBIG, "10000000000000000000 hosts");
    /* a product that overflows size_t must not allocate either */
    char **hosts = NULL, err[256];
    size_t n = 0;
    CHECK_RC(loom__hostlist_expand("[0-9999999999][0-9999999999]", SIZE_MAX, &hosts, &n, err,
                                   sizeof err), LOOM_ETOOBIG);
    CHECK(hosts == NULL && n == 0);
}

static void test_name_length(void)
{
    char *s = repeat('a', 255, "");
    char **hosts = NULL, err[256];
    size_t n = 0;
    CHECK_RC(loom__hostlist_expand(s, 1, &hosts, &n, err, sizeof err), 0);
    CHECK(n == 1 && strlen(hosts[0]) == 255);
    loom__hostlist_free(hosts, n);
    free(s);

    s = repeat('a', 256, "");
    expect_err(s, 1, LOOM_EINVAL, "256 bytes", "at most 255");
    free(s);
    s = repeat('a', 100000, ",b");
    expect_err(s, 2, LOOM_EINVAL, "item 1", "100000 bytes");
    free(s);

    /* numbers count: 249 + 6 digits = 255 fits, 250 + 6 does not */
    s = repeat('p', 249, "[99999-100000]");
    CHECK_RC(loom__hostlist_expand(s, 2, &hosts, &n, err, sizeof err), 0);
    CHECK(n == 2 && strlen(hosts[0]) == 254 && strlen(hosts[1]) == 255);
    loom__hostlist_free(hosts, n);
    free(s);
    s = repeat('p', 250, "[99999-100000]");
    expect_err(s, 2, LOOM_EINVAL, "256 bytes");
    free(s);
    /* padding counts: width 5 fits after 250 bytes, width 6 does not */
    s = repeat('p', 250, "[00001-2]");
    CHECK_RC(loom__hostlist_expand(s, 2, &hosts, &n, err, sizeof err), 0);
    CHECK(n == 2 && strlen(hosts[1]) == 255);
    loom__hostlist_free(hosts, n);
    free(s);
    s = repeat('p', 250, "[000001-2]");
    expect_err(s, 2, LOOM_EINVAL, "256 bytes");
    free(s);
    /* the longest name can come from any range of a group, and text on both sides */
    s = repeat('p', 242, "[1-2,0000000003]x[1]yz");
    expect_err(s, 10, LOOM_EINVAL, "256 bytes");
    free(s);
    s = repeat('p', 240, "[1-2,000000003]x[1]yz");
    CHECK_RC(loom__hostlist_expand(s, 3, &hosts, &n, err, sizeof err), 0);
    CHECK(n == 3 && strlen(hosts[0]) == 245 && strlen(hosts[2]) == 253);
    CHECK(n == 3 && strcmp(hosts[2] + 240, "000000003x1yz") == 0);
    loom__hostlist_free(hosts, n);
    free(s);
    /* a name too long is refused even when max_hosts would also refuse */
    s = repeat('p', 300, "[0-9999999999]");
    expect_err(s, 10, LOOM_EINVAL, "bytes");
    free(s);
}

/* ---- big ---------------------------------------------------------------- */

static void test_big(void)
{
    char **hosts = NULL, err[256];
    size_t n = 0;
    CHECK_RC(loom__hostlist_expand("node[000000-099999]", 100000, &hosts, &n, err, sizeof err), 0);
    REQUIRE(n == 100000 && hosts);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        char want[32];
        snprintf(want, sizeof want, "node%06zu", i);
        if (strcmp(hosts[i], want) != 0) bad++;
    }
    CHECK(bad == 0);
    loom__hostlist_free(hosts, n);
    CHECK_RC(loom__hostlist_expand("node[000000-099999]", 99999, &hosts, &n, err, sizeof err),
             LOOM_ETOOBIG);

    CHECK_RC(loom__hostlist_expand("r[1-100]-n[1-1000]", 100000, &hosts, &n, err, sizeof err), 0);
    REQUIRE(n == 100000 && hosts);
    bad = 0;
    for (size_t i = 0; i < n; i++) {
        char want[32];
        snprintf(want, sizeof want, "r%zu-n%zu", i / 1000 + 1, i % 1000 + 1);
        if (strcmp(hosts[i], want) != 0) bad++;
    }
    CHECK(bad == 0);
    loom__hostlist_free(hosts, n);
}

/* ---- random expressions against an independent expansion ---------------- */

typedef struct ref_list {
    char **v;
    size_t n, cap;
} ref_list;

static void ref_push(ref_list *l, const char *s)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        REQUIRE(l->v);
    }
    l->v[l->n] = malloc(strlen(s) + 1);
    REQUIRE(l->v[l->n]);
    strcpy(l->v[l->n], s);
    l->n++;
}

static void ref_free(ref_list *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
}

/* A random item of up to 3 groups; its names are built here by brute force
 * (recursion over the groups, leftmost outermost) from the pieces chosen. */
typedef struct rgroup {
    int nr;
    unsigned lo[3], hi[3];
    int width[3];
} rgroup;

static void ref_expand(ref_list *out, char lits[][8], const rgroup *g, int ng, int i,
                       char *prefix)
{
    size_t len = strlen(prefix);
    if (i == ng) {
        strcat(prefix, lits[ng]);
        ref_push(out, prefix);
        prefix[len] = 0;
        return;
    }
    for (int r = 0; r < g[i].nr; r++)
        for (unsigned v = g[i].lo[r]; v <= g[i].hi[r]; v++) {
            sprintf(prefix + len, "%s%0*u", lits[i], g[i].width[r], v);
            ref_expand(out, lits, g, ng, i + 1, prefix);
            prefix[len] = 0;
        }
}

static void test_random(void)
{
    static const char alpha[] = "abcXYZ019._-";
    int mismatches = 0;
    for (int round = 0; round < 3000; round++) {
        char expr[1024] = "";
        size_t elen = 0;
        ref_list want = {0};
        int nitems = 1 + rng_below(4);
        for (int it = 0; it < nitems; it++) {
            char lits[4][8];
            rgroup g[3];
            int ng = rng_below(4);
            for (int i = 0; i <= ng; i++) {
                int l = rng_below(4);
                for (int k = 0; k < l; k++) lits[i][k] = alpha[rng_below((int)sizeof alpha - 1)];
                lits[i][l] = 0;
            }
            if (ng == 0 && !lits[0][0]) strcpy(lits[0], "h");
            if (it) elen += (size_t)snprintf(expr + elen, sizeof expr - elen, ",");
            for (int i = 0; i < ng; i++) {
                g[i].nr = 1 + rng_below(3);
                elen += (size_t)snprintf(expr + elen, sizeof expr - elen, "%s[", lits[i]);
                for (int r = 0; r < g[i].nr; r++) {
                    unsigned lo = (unsigned)rng_below(120), hi = lo + (unsigned)rng_below(4);
                    int pad = rng_below(3) == 0 ? rng_below(4) : 0;
                    char los[16];
                    snprintf(los, sizeof los, "%0*u", pad, lo);
                    g[i].lo[r] = lo;
                    g[i].width[r] = (int)strlen(los);
                    int single = lo == hi && rng_below(2);
                    g[i].hi[r] = hi;
                    if (single)
                        elen += (size_t)snprintf(expr + elen, sizeof expr - elen, "%s%s", r ? "," : "", los);
                    else
                        elen += (size_t)snprintf(expr + elen, sizeof expr - elen, "%s%s-%u", r ? "," : "",
                                                 los, hi);
                }
                elen += (size_t)snprintf(expr + elen, sizeof expr - elen, "]");
            }
            elen += (size_t)snprintf(expr + elen, sizeof expr - elen, "%s", lits[ng]);
            char prefix[512] = "";
            ref_expand(&want, lits, g, ng, 0, prefix);
        }
        char **hosts = NULL, err[256];
        size_t n = 0;
        int rc = loom__hostlist_expand(expr, 100000, &hosts, &n, err, sizeof err);
        int same = rc == 0 && n == want.n;
        for (size_t i = 0; same && i < n; i++) same = strcmp(hosts[i], want.v[i]) == 0;
        if (!same && mismatches++ < 5)
            fprintf(stderr, "random expr \"%s\": rc %d (%s), %zu hosts, want %zu\n", expr, rc, err,
                    n, want.n);
        /* the limit one below the true count refuses it */
        if (rc == 0 && n > 0) {
            char **h2 = (char **)(uintptr_t)1;
            size_t n2 = 1;
            int rc2 = loom__hostlist_expand(expr, n - 1, &h2, &n2, err, sizeof err);
            if (rc2 != LOOM_ETOOBIG || h2 || n2) mismatches++;
        }
        loom__hostlist_free(hosts, n);
        ref_free(&want);
    }
    CHECK(mismatches == 0);
}

/* Random bytes from an alphabet of the interesting ones: whatever comes back
 * is either a valid list of valid names or a refusal with nothing returned. */
static void test_soup(void)
{
    static const char alpha[] = "ab09[],-- x\n@";
    int bad = 0, ok = 0;
    for (int round = 0; round < 20000; round++) {
        char expr[32];
        int len = rng_below((int)sizeof expr);
        for (int i = 0; i < len; i++) expr[i] = alpha[rng_below((int)sizeof alpha - 1)];
        expr[len] = 0;
        char **hosts = (char **)(uintptr_t)1, err[256] = "";
        size_t n = 99;
        int rc = loom__hostlist_expand(expr, 4096, &hosts, &n, err, sizeof err);
        if (rc == 0) {
            ok++;
            if (!hosts || n == 0 || err[0])
                if (bad++ < 3) fprintf(stderr, "soup \"%s\": %zu hosts, err \"%s\"\n", expr, n, err);
            for (size_t i = 0; hosts && i < n; i++) {
                size_t l = strlen(hosts[i]);
                if (l == 0 || l > 255 || strspn(hosts[i], "abx0123456789-") != l)
                    if (bad++ < 3) fprintf(stderr, "soup \"%s\": host \"%s\"\n", expr, hosts[i]);
            }
            loom__hostlist_free(hosts, n);
        } else if (hosts || n || !err[0] ||
                   (rc != LOOM_EINVAL && rc != LOOM_ETOOBIG)) {
            if (bad++ < 3) fprintf(stderr, "soup \"%s\": rc %d, err \"%s\"\n", expr, rc, err);
        }
    }
    CHECK(bad == 0);
    CHECK(ok > 100);
}

int main(void)
{
    test_basic();
    test_padding();
    test_product();
    test_syntax_errors();
    test_args();
    test_max_hosts();
    test_name_length();
    test_big();
    test_random();
    test_soup();
    return TEST_DONE();
}
