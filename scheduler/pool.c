/* scheduler/pool.c — the head's resource arithmetic: a pool of CPUs, memory,
 * GPUs (per device, shareable in fractions) and custom resources; requests
 * against it; fitting, taking and giving back exactly what was taken;
 * choosing a node for a request under a scheduling strategy; placing the
 * bundles of a placement group on nodes atomically.
 *
 * Pure functions over plain structs: no I/O, no allocation, no globals, so
 * each rule is unit-tested on its own (tests/test_pool.c).  A node has one
 * pool; a placement-group bundle is a pool carved out of its node's pool, and
 * tasks placed in the bundle take from the bundle's pool instead.
 *
 * Fitting and taking share one rule (pick_gpus) so that whatever fits can be
 * taken; loom__pool_could_fit is the same check run on an idle copy.  Floating
 * amounts are compared with LOOM_POOL_EPS and snapped to their bounds when
 * given back, so any sequence of takes undone by gives ends exactly where it
 * started. */
#include <math.h>
#include <string.h>
#include <strings.h>

#include "loom/loom.h"
#include "runtime/util.h"
#include "scheduler/pool.h"

#define MIB ((uint64_t)1 << 20)
#define PG_MAX_STEPS 100000L

/* ---- small helpers ------------------------------------------------------ */

static int res_name_ok(const char *name)
{
    return name && name[0] && memchr(name, 0, LOOM_RES_NAME_MAX) != NULL;
}

static int find_res(const loom_pool *p, const char *name)
{
    for (int i = 0; i < p->nres; i++)
        if (strcmp(p->res[i].name, name) == 0)
            return i;
    return -1;
}

/* The number of whole GPUs g asks for (capped at LOOM_POOL_MAX_GPUS + 1, which
 * never fits), or -1 if g >= 1 is not a whole number. */
static int whole_gpus(double g)
{
    if (g > LOOM_POOL_MAX_GPUS + 1.0)
        return floor(g) == g ? LOOM_POOL_MAX_GPUS + 1 : -1;
    double n = round(g);
    if (fabs(g - n) > LOOM_POOL_EPS)
        return -1;
    return (int)n;
}

static int is_fractional(double g)
{
    return g > 0 && g < 1;
}

/* Add d to *used, never past [0, total]. */
static void add_clamped(double *used, double d, double total)
{
    *used += d;
    if (*used < LOOM_POOL_EPS)
        *used = 0;
    if (*used > total - LOOM_POOL_EPS)
        *used = total;
}

/* "1024 MiB", "1.5 MiB" or "100 bytes". */
static void fmt_bytes(char *out, size_t len, uint64_t n)
{
    if (n < MIB)
        loom__snprintf(out, len, "%llu bytes", (unsigned long long)n);
    else if (n % MIB == 0)
        loom__snprintf(out, len, "%llu MiB", (unsigned long long)(n / MIB));
    else
        loom__snprintf(out, len, "%.1f MiB", (double)n / (double)MIB);
}

/* The idle form of p: its totals, nothing used. */
static void pool_idle(const loom_pool *p, loom_pool *out)
{
    *out = *p;
    out->cpus_used = 0;
    out->memory_used = 0;
    for (int i = 0; i < out->ngpus; i++) {
        out->gpu_free[i] = out->gpu_share[i];
        out->gpu_mem_free[i] = out->gpu_memory;
    }
    for (int i = 0; i < out->nres; i++)
        out->res_used[i] = 0;
}

/* ---- pools -------------------------------------------------------------- */

void loom__pool_init(loom_pool *p, double cpus, uint64_t memory, int ngpus, uint64_t gpu_memory)
{
    memset(p, 0, sizeof *p);
    p->cpus = isfinite(cpus) && cpus > 0 ? cpus : 0;
    p->memory = memory;
    p->ngpus = ngpus < 0 ? 0 : ngpus > LOOM_POOL_MAX_GPUS ? LOOM_POOL_MAX_GPUS : ngpus;
    p->gpu_memory = gpu_memory;
    for (int i = 0; i < p->ngpus; i++) {
        p->gpu_index[i] = i;
        p->gpu_share[i] = 1;
        p->gpu_free[i] = 1;
        p->gpu_mem_free[i] = gpu_memory;
    }
}

int loom__pool_add_res(loom_pool *p, const char *name, double amount)
{
    if (!res_name_ok(name) || !isfinite(amount) || amount < 0)
        return LOOM_EINVAL;
    int i = find_res(p, name);
    if (i >= 0) {
        if (amount < p->res_used[i] - LOOM_POOL_EPS)
            return LOOM_EINVAL;
        p->res[i].amount = amount;
        return 0;
    }
    if (p->nres >= LOOM_POOL_MAX_RES)
        return LOOM_EFULL;
    i = p->nres++;
    loom__snprintf(p->res[i].name, sizeof p->res[i].name, "%s", name);
    p->res[i].amount = amount;
    p->res_used[i] = 0;
    return 0;
}

/* ---- requests ----------------------------------------------------------- */

static int check_res(const loom_request *r, int i, char *err, size_t errlen)
{
    const loom_res_amount *a = &r->res[i];
    if (memchr(a->name, 0, sizeof a->name) == NULL) {
        loom__snprintf(err, errlen, "custom resource %d: name longer than %d bytes", i,
                       LOOM_RES_NAME_MAX - 1);
        return LOOM_EINVAL;
    }
    if (!a->name[0]) {
        loom__snprintf(err, errlen, "custom resource %d has no name", i);
        return LOOM_EINVAL;
    }
    if (!isfinite(a->amount) || a->amount < 0) {
        loom__snprintf(err, errlen, "bad amount %g of resource '%s'", a->amount, a->name);
        return LOOM_EINVAL;
    }
    for (int j = 0; j < i; j++)
        if (strcmp(r->res[j].name, a->name) == 0) {
            loom__snprintf(err, errlen, "resource '%s' is asked for twice", a->name);
            return LOOM_EINVAL;
        }
    return 0;
}

int loom__request_check(const loom_request *r, char *err, size_t errlen)
{
    if (!r) {
        loom__snprintf(err, errlen, "no request");
        return LOOM_EINVAL;
    }
    if (!isfinite(r->cpus) || r->cpus < 0) {
        loom__snprintf(err, errlen, "bad CPU amount %g", r->cpus);
        return LOOM_EINVAL;
    }
    if (!isfinite(r->gpus) || r->gpus < 0) {
        loom__snprintf(err, errlen, "bad GPU amount %g", r->gpus);
        return LOOM_EINVAL;
    }
    if (r->gpus >= 1 && whole_gpus(r->gpus) < 0) {
        loom__snprintf(err, errlen, "GPUs must be a fraction below 1 or a whole number, not %g",
                       r->gpus);
        return LOOM_EINVAL;
    }
    if (r->gpu_memory > 0 && r->gpus == 0) {
        loom__snprintf(err, errlen, "GPU memory asked for without GPUs");
        return LOOM_EINVAL;
    }
    if (r->nres < 0 || r->nres > LOOM_POOL_MAX_RES) {
        loom__snprintf(err, errlen, "%d custom resources (at most %d)", r->nres,
                       LOOM_POOL_MAX_RES);
        return LOOM_EINVAL;
    }
    for (int i = 0; i < r->nres; i++) {
        int rc = check_res(r, i, err, errlen);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- fitting ------------------------------------------------------------ */

static int gpu_mem_ok(const loom_pool *p, int slot, const loom_request *r)
{
    return p->gpu_memory == 0 || p->gpu_mem_free[slot] >= r->gpu_memory;
}

/* The slot of the device a fraction goes to: the fitting one with the least
 * free (best fit), the lower device number on a tie; -1 if none. */
static int pick_fraction(const loom_pool *p, const loom_request *r)
{
    int best = -1;
    for (int i = 0; i < p->ngpus; i++) {
        if (p->gpu_free[i] < r->gpus - LOOM_POOL_EPS || !gpu_mem_ok(p, i, r))
            continue;
        if (best < 0 || p->gpu_free[i] < p->gpu_free[best] - LOOM_POOL_EPS ||
            (p->gpu_free[i] <= p->gpu_free[best] + LOOM_POOL_EPS &&
             p->gpu_index[i] < p->gpu_index[best]))
            best = i;
    }
    return best;
}

static int whole_free(const loom_pool *p, int slot, const loom_request *r)
{
    return p->gpu_free[slot] >= 1 - LOOM_POOL_EPS && gpu_mem_ok(p, slot, r);
}

/* Up to want fully free devices, lowest device numbers first, into slots;
 * returns how many were found. */
static int pick_whole(const loom_pool *p, const loom_request *r, int want, int *slots)
{
    int n = 0, last = -1;
    while (n < want) {
        int best = -1;
        for (int i = 0; i < p->ngpus; i++)
            if (p->gpu_index[i] > last && whole_free(p, i, r) &&
                (best < 0 || p->gpu_index[i] < p->gpu_index[best]))
                best = i;
        if (best < 0)
            break;
        slots[n++] = best;
        last = p->gpu_index[best];
    }
    return n;
}

/* The GPU slots r would get in p: their number, or -1 when r's GPUs do not fit. */
static int pick_gpus(const loom_pool *p, const loom_request *r, int *slots)
{
    if (r->gpus <= 0)
        return 0;
    if (is_fractional(r->gpus)) {
        slots[0] = pick_fraction(p, r);
        return slots[0] < 0 ? -1 : 1;
    }
    int want = whole_gpus(r->gpus);
    if (want < 0 || want > LOOM_POOL_MAX_GPUS)
        return -1;
    return pick_whole(p, r, want, slots) == want ? want : -1;
}

static int count_whole_free(const loom_pool *p, const loom_request *r)
{
    int n = 0;
    for (int i = 0; i < p->ngpus; i++)
        n += whole_free(p, i, r);
    return n;
}

/* " free" when judging what is free now, "" when judging totals. */
static const char *free_word(int idle)
{
    return idle ? "" : " free";
}

static int explain_gpus(const loom_pool *p, const loom_request *r, int idle, char *why,
                        size_t whylen)
{
    int slots[LOOM_POOL_MAX_GPUS];
    if (pick_gpus(p, r, slots) >= 0)
        return 1;
    if (p->ngpus == 0) {
        loom__snprintf(why, whylen, "needs %g GPU%s, the node has none", r->gpus,
                       r->gpus > 1 ? "s" : "");
        return 0;
    }
    if (p->gpu_memory && r->gpu_memory > p->gpu_memory) {
        char want[32], have[32];
        fmt_bytes(want, sizeof want, r->gpu_memory);
        fmt_bytes(have, sizeof have, p->gpu_memory);
        loom__snprintf(why, whylen, "needs %s of memory on each GPU, the node's GPUs have %s",
                       want, have);
        return 0;
    }
    char mem[64] = "";
    if (p->gpu_memory && r->gpu_memory) {
        char bytes[32];
        fmt_bytes(bytes, sizeof bytes, r->gpu_memory);
        loom__snprintf(mem, sizeof mem, " with %s of memory%s", bytes,
                       is_fractional(r->gpus) ? "" : " each");
    }
    if (is_fractional(r->gpus))
        loom__snprintf(why, whylen, "needs %g of a GPU%s, no GPU on the node has that much%s",
                       r->gpus, mem, free_word(idle));
    else
        loom__snprintf(why, whylen, "needs %g GPU%s%s, the node has %d%s", r->gpus,
                       r->gpus > 1 ? "s" : "", mem, count_whole_free(p, r), free_word(idle));
    return 0;
}

static int explain_res(const loom_pool *p, const loom_res_amount *a, int idle, char *why,
                       size_t whylen)
{
    if (a->amount <= 0)
        return 1;
    int i = find_res(p, a->name);
    if (i < 0) {
        loom__snprintf(why, whylen, "needs %g of resource '%s', the node has none", a->amount,
                       a->name);
        return 0;
    }
    double avail = p->res[i].amount - p->res_used[i];
    if (a->amount <= avail + LOOM_POOL_EPS)
        return 1;
    loom__snprintf(why, whylen, "needs %g of resource '%s', the node has %g%s", a->amount,
                   a->name, avail, free_word(idle));
    return 0;
}

/* explain_fit for a request already checked (loom__request_check). */
static int explain_fit_checked(const loom_pool *p, const loom_request *r, int idle, char *why,
                               size_t whylen)
{
    double cpus = p->cpus - p->cpus_used;
    if (r->cpus > cpus + LOOM_POOL_EPS) {
        loom__snprintf(why, whylen, "needs %g CPU%s, the node has %g%s", r->cpus,
                       r->cpus == 1 ? "" : "s", cpus, free_word(idle));
        return 0;
    }
    uint64_t mem = p->memory > p->memory_used ? p->memory - p->memory_used : 0;
    if (r->memory > mem) {
        char want[32], have[32];
        fmt_bytes(want, sizeof want, r->memory);
        fmt_bytes(have, sizeof have, mem);
        loom__snprintf(why, whylen, "needs %s of memory, the node has %s%s", want, have,
                       free_word(idle));
        return 0;
    }
    if (!explain_gpus(p, r, idle, why, whylen))
        return 0;
    for (int i = 0; i < r->nres; i++)
        if (!explain_res(p, &r->res[i], idle, why, whylen))
            return 0;
    return 1;
}

/* Whether r fits in what p has free; when not, why names the first shortage
 * (worded for totals when idle). */
static int explain_fit(const loom_pool *p, const loom_request *r, int idle, char *why,
                       size_t whylen)
{
    if (loom__request_check(r, why, whylen) != 0)
        return 0;
    return explain_fit_checked(p, r, idle, why, whylen);
}

int loom__pool_fits(const loom_pool *p, const loom_request *r)
{
    return explain_fit(p, r, 0, NULL, 0);
}

int loom__pool_could_fit(const loom_pool *p, const loom_request *r, char *why, size_t whylen)
{
    loom_pool idle;
    pool_idle(p, &idle);
    if (!explain_fit(&idle, r, 1, why, whylen))
        return 0;
    loom__snprintf(why, whylen, "%s", "");
    return 1;
}

/* ---- taking and giving back --------------------------------------------- */

int loom__pool_take(loom_pool *p, const loom_request *r, loom_grant *g)
{
    memset(g, 0, sizeof *g);
    if (!loom__pool_fits(p, r))
        return LOOM_EFULL;
    int n = pick_gpus(p, r, g->gpu_slot);
    g->ngpus = n;
    for (int k = 0; k < n; k++) {
        int s = g->gpu_slot[k];
        g->gpu_frac[k] = is_fractional(r->gpus) ? r->gpus : 1;
        g->gpu_mem[k] = p->gpu_memory ? r->gpu_memory : 0;
        add_clamped(&p->gpu_free[s], -g->gpu_frac[k], p->gpu_share[s]);
        p->gpu_mem_free[s] -= g->gpu_mem[k];
    }
    add_clamped(&p->cpus_used, r->cpus, p->cpus);
    p->memory_used += r->memory;
    for (int i = 0; i < r->nres; i++) {
        int j = find_res(p, r->res[i].name);
        if (j >= 0)
            add_clamped(&p->res_used[j], r->res[i].amount, p->res[j].amount);
    }
    return 0;
}

void loom__pool_give(loom_pool *p, const loom_request *r, const loom_grant *g)
{
    if (loom__request_check(r, NULL, 0) != 0)
        return; /* never taken: loom__pool_take refuses invalid requests */
    for (int k = 0; k < g->ngpus && k < LOOM_POOL_MAX_GPUS; k++) {
        int s = g->gpu_slot[k];
        if (s < 0 || s >= p->ngpus)
            continue;
        add_clamped(&p->gpu_free[s], g->gpu_frac[k], p->gpu_share[s]);
        uint64_t room = p->gpu_memory > p->gpu_mem_free[s] ? p->gpu_memory - p->gpu_mem_free[s] : 0;
        p->gpu_mem_free[s] += g->gpu_mem[k] < room ? g->gpu_mem[k] : room;
    }
    add_clamped(&p->cpus_used, -r->cpus, p->cpus);
    p->memory_used -= r->memory < p->memory_used ? r->memory : p->memory_used;
    for (int i = 0; i < r->nres && i < LOOM_POOL_MAX_RES; i++) {
        int j = find_res(p, r->res[i].name);
        if (j >= 0)
            add_clamped(&p->res_used[j], -r->res[i].amount, p->res[j].amount);
    }
}

void loom__grant_gpu_ids(const loom_pool *p, const loom_grant *g, char *out, size_t outlen)
{
    size_t len = 0;
    if (outlen)
        out[0] = 0;
    for (int k = 0; k < g->ngpus && k < LOOM_POOL_MAX_GPUS; k++) {
        int s = g->gpu_slot[k];
        if (s < 0 || s >= p->ngpus || len >= outlen)
            continue;
        loom__snprintf(out + len, outlen - len, "%s%d", len ? "," : "", p->gpu_index[s]);
        len += strlen(out + len);
    }
}

double loom__pool_utilization(const loom_pool *p)
{
    double u = 0;
    if (p->cpus > 0)
        u = fmax(u, p->cpus_used / p->cpus);
    if (p->memory > 0)
        u = fmax(u, (double)p->memory_used / (double)p->memory);
    double share = 0, used = 0;
    for (int i = 0; i < p->ngpus; i++) {
        share += p->gpu_share[i];
        used += p->gpu_share[i] - p->gpu_free[i];
    }
    if (share > 0)
        u = fmax(u, used / share);
    return u < 0 ? 0 : u > 1 ? 1 : u;
}

int loom__pool_carve(loom_pool *node, const loom_request *r, loom_pool *bundle, loom_grant *g)
{
    int rc = loom__pool_take(node, r, g);
    if (rc)
        return rc;
    memset(bundle, 0, sizeof *bundle);
    bundle->cpus = r->cpus;
    bundle->memory = r->memory;
    bundle->ngpus = g->ngpus;
    bundle->gpu_memory = g->ngpus ? g->gpu_mem[0] : 0;
    for (int k = 0; k < g->ngpus; k++) {
        bundle->gpu_index[k] = node->gpu_index[g->gpu_slot[k]];
        bundle->gpu_share[k] = g->gpu_frac[k];
        bundle->gpu_free[k] = g->gpu_frac[k];
        bundle->gpu_mem_free[k] = g->gpu_mem[k];
    }
    for (int i = 0; i < r->nres; i++)
        if (r->res[i].amount > 0)
            bundle->res[bundle->nres++] = r->res[i];
    return 0;
}

/* ---- choosing a node ---------------------------------------------------- */

/* r was checked once by loom__choose_node, not once per node: on a
 * thousand nodes the check was most of a placement's time. */
static int usable(const loom_candidate *c, const loom_request *r)
{
    return c->eligible && c->pool && explain_fit_checked(c->pool, r, 0, NULL, 0);
}

static double utilization_after(const loom_pool *p, const loom_request *r)
{
    loom_pool copy = *p;
    loom_grant g;
    loom__pool_take(&copy, r, &g);
    return loom__pool_utilization(&copy);
}

/* The fitting candidate holding most argument bytes (ties: less utilized,
 * then earlier); -1 if none holds any. */
static int choose_local(const loom_candidate *c, int n, const loom_request *r)
{
    int best = -1;
    double best_u = 0;
    for (int i = 0; i < n; i++) {
        if (c[i].local_bytes == 0 || !usable(&c[i], r))
            continue;
        double u = loom__pool_utilization(c[i].pool);
        if (best < 0 || c[i].local_bytes > c[best].local_bytes ||
            (c[i].local_bytes == c[best].local_bytes && u < best_u - LOOM_POOL_EPS)) {
            best = i;
            best_u = u;
        }
    }
    return best;
}

/* The first fitting candidate that stays below LOOM_PACK_THRESHOLD. */
static int choose_pack(const loom_candidate *c, int n, const loom_request *r)
{
    for (int i = 0; i < n; i++)
        if (usable(&c[i], r) && utilization_after(c[i].pool, r) < LOOM_PACK_THRESHOLD)
            return i;
    return -1;
}

/* The least utilized fitting candidate; among equals the (*rr)-th, counting
 * round-robin, when rr is given, else the first. */
static int choose_least(const loom_candidate *c, int n, const loom_request *r, uint32_t *rr)
{
    int best = -1, ties = 0;
    double best_u = 0;
    for (int i = 0; i < n; i++) {
        if (!usable(&c[i], r))
            continue;
        double u = loom__pool_utilization(c[i].pool);
        if (best < 0 || u < best_u - LOOM_POOL_EPS) {
            best = i;
            best_u = u;
            ties = 1;
        } else if (u <= best_u + LOOM_POOL_EPS) {
            ties++;
        }
    }
    if (best < 0 || !rr || ties == 1)
        return best;
    uint32_t want = *rr % (uint32_t)ties;
    for (int i = best; i < n; i++)
        if (usable(&c[i], r) && loom__pool_utilization(c[i].pool) <= best_u + LOOM_POOL_EPS &&
            want-- == 0)
            return i;
    return best;
}

static int choose_default(const loom_candidate *c, int n, const loom_request *r)
{
    int i = choose_local(c, n, r);
    if (i < 0)
        i = choose_pack(c, n, r);
    if (i < 0)
        i = choose_least(c, n, r, NULL);
    return i;
}

int loom__choose_node(const loom_candidate *c, int n, const loom_request *r, int strategy,
                      uint32_t affinity_node, int soft, uint32_t *rr)
{
    if (!c || n <= 0 || !r || loom__request_check(r, NULL, 0) != 0)
        return -1;
    if (strategy == LOOM_STRATEGY_SPREAD) {
        int i = choose_least(c, n, r, rr);
        if (i >= 0 && rr)
            (*rr)++;
        return i;
    }
    if (strategy == LOOM_STRATEGY_NODE) {
        for (int i = 0; i < n; i++)
            if (c[i].node_id == affinity_node && usable(&c[i], r))
                return i;
        if (!soft)
            return -1;
    }
    return choose_default(c, n, r);
}

/* ---- placement groups --------------------------------------------------- */

typedef struct pg_search {
    const loom_pool *const *pools;
    int npools;
    const loom_request *b;
    int nb;
    int idle;
    int *assign;                     /* node of each bundle, -1 while unplaced */
    int order[LOOM_PG_MAX_BUNDLES];  /* bundle indexes, largest first */
    long steps;
    int gave_up;
} pg_search;

enum { PG_DISTINCT, PG_USED_FIRST, PG_FEWEST_FIRST };

static const char *pg_names[] = {"PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"};

const char *loom__pg_strategy_name(int strategy)
{
    if (strategy < 0 || strategy >= (int)(sizeof pg_names / sizeof pg_names[0]))
        return "UNKNOWN";
    return pg_names[strategy];
}

int loom__pg_strategy_parse(const char *s)
{
    for (int i = 0; s && i < (int)(sizeof pg_names / sizeof pg_names[0]); i++)
        if (strcasecmp(s, pg_names[i]) == 0)
            return i;
    return -1;
}

/* Whether a is a bigger bundle than b: by CPUs, then GPUs, then memory. */
static int bundle_bigger(const loom_request *a, const loom_request *b)
{
    if (a->cpus != b->cpus)
        return a->cpus > b->cpus;
    if (a->gpus != b->gpus)
        return a->gpus > b->gpus;
    return a->memory > b->memory;
}

/* Bundles largest first; equal ones keep their index order. */
static void pg_sort(pg_search *x)
{
    for (int i = 0; i < x->nb; i++) {
        int j = i;
        while (j > 0 && bundle_bigger(&x->b[i], &x->b[x->order[j - 1]])) {
            x->order[j] = x->order[j - 1];
            j--;
        }
        x->order[j] = i;
    }
}

static void pg_base(const pg_search *x, int node, loom_pool *out)
{
    if (x->idle)
        pool_idle(x->pools[node], out);
    else
        *out = *x->pools[node];
}

/* Whether bundle `extra` (-1: none) and the bundles already on node fit on it
 * together, taken in index order as the caller will carve them. */
static int pg_fits_on(pg_search *x, int node, int extra)
{
    loom_pool p;
    loom_grant g;
    x->steps++;
    pg_base(x, node, &p);
    for (int j = 0; j < x->nb; j++)
        if ((x->assign[j] == node || j == extra) && loom__pool_take(&p, &x->b[j], &g) != 0)
            return 0;
    return 1;
}

static int pg_count_on(const pg_search *x, int node)
{
    int n = 0;
    for (int j = 0; j < x->nb; j++)
        n += x->assign[j] == node;
    return n;
}

static int pg_place_from(pg_search *x, int k, int mode);

/* Try order[k] on each node holding lo..hi bundles, in array order. */
static int pg_try_nodes(pg_search *x, int k, int mode, int lo, int hi)
{
    int b = x->order[k];
    for (int node = 0; node < x->npools && !x->gave_up; node++) {
        int count = pg_count_on(x, node);
        if (count < lo || count > hi)
            continue;
        if (x->steps >= PG_MAX_STEPS) {
            x->gave_up = 1;
            break;
        }
        if (!pg_fits_on(x, node, b))
            continue;
        x->assign[b] = node;
        if (pg_place_from(x, k + 1, mode))
            return 1;
        x->assign[b] = -1;
    }
    return 0;
}

static int pg_most_on_a_node(const pg_search *x)
{
    int most = 0;
    for (int j = 0; j < x->nb; j++)
        if (x->assign[j] >= 0) {
            int c = pg_count_on(x, x->assign[j]);
            most = c > most ? c : most;
        }
    return most;
}

/* Depth-first search placing order[k..] (bounded by PG_MAX_STEPS). */
static int pg_place_from(pg_search *x, int k, int mode)
{
    if (k == x->nb)
        return 1;
    if (mode == PG_DISTINCT)
        return pg_try_nodes(x, k, mode, 0, 0);
    if (mode == PG_USED_FIRST)
        return pg_try_nodes(x, k, mode, 1, x->nb) ||
               (!x->gave_up && pg_try_nodes(x, k, mode, 0, 0));
    int most = pg_most_on_a_node(x);
    for (int level = 0; level <= most && !x->gave_up; level++)
        if (pg_try_nodes(x, k, mode, level, level))
            return 1;
    return 0;
}

static int pg_search_all(pg_search *x, int mode)
{
    for (int j = 0; j < x->nb; j++)
        x->assign[j] = -1;
    x->steps = 0;
    x->gave_up = 0;
    return pg_place_from(x, 0, mode);
}

/* A node that holds every bundle, or -1. */
static int pg_one_node(pg_search *x)
{
    for (int node = 0; node < x->npools; node++) {
        for (int j = 0; j < x->nb; j++)
            x->assign[j] = node;
        if (pg_fits_on(x, node, -1))
            return node;
    }
    for (int j = 0; j < x->nb; j++)
        x->assign[j] = -1;
    return -1;
}

static int pg_node_holds_one(const pg_search *x, int node)
{
    loom_pool p;
    pg_base(x, node, &p);
    for (int j = 0; j < x->nb; j++)
        if (loom__pool_fits(&p, &x->b[j]))
            return 1;
    return 0;
}

static int pg_nodes_holding_one(const pg_search *x)
{
    int n = 0;
    for (int node = 0; node < x->npools; node++)
        n += pg_node_holds_one(x, node);
    return n;
}

/* LOOM_EFULL naming the first bundle no node can hold on its own; 0 if each
 * fits somewhere. */
static int pg_check_each(const pg_search *x, char *why, size_t whylen)
{
    for (int k = 0; k < x->nb; k++) {
        int b = x->order[k], fits = 0;
        char reason[160] = "";
        for (int node = 0; node < x->npools && !fits; node++) {
            loom_pool p;
            pg_base(x, node, &p);
            fits = explain_fit(&p, &x->b[b], x->idle, node ? NULL : reason,
                               node ? 0 : sizeof reason);
        }
        if (!fits) {
            loom__snprintf(why, whylen, "no node can hold bundle %d (%s)", b,
                           x->npools ? reason : "there are no nodes");
            return LOOM_EFULL;
        }
    }
    return 0;
}

static int pg_fail(const pg_search *x, int strategy, char *why, size_t whylen)
{
    if (x->gave_up)
        loom__snprintf(why, whylen, "%s: no placement of the %d bundles found in %ld steps",
                       loom__pg_strategy_name(strategy), x->nb, PG_MAX_STEPS);
    else if (strategy == LOOM_PG_STRICT_SPREAD)
        loom__snprintf(why, whylen, "STRICT_SPREAD: the %d bundles do not fit on %d different nodes",
                       x->nb, x->nb);
    else
        loom__snprintf(why, whylen, "%s: the %d bundles do not fit on the nodes together",
                       loom__pg_strategy_name(strategy), x->nb);
    return LOOM_EFULL;
}

static int pg_strict_spread(pg_search *x, char *why, size_t whylen)
{
    int holding = pg_nodes_holding_one(x);
    if (holding < x->nb) {
        loom__snprintf(why, whylen, "STRICT_SPREAD needs %d nodes, %d can hold a bundle", x->nb,
                       holding);
        return LOOM_EFULL;
    }
    return pg_search_all(x, PG_DISTINCT) ? 0 : pg_fail(x, LOOM_PG_STRICT_SPREAD, why, whylen);
}

static int pg_spread(pg_search *x, char *why, size_t whylen)
{
    if (pg_nodes_holding_one(x) >= x->nb && pg_search_all(x, PG_DISTINCT))
        return 0;
    return pg_search_all(x, PG_FEWEST_FIRST) ? 0 : pg_fail(x, LOOM_PG_SPREAD, why, whylen);
}

static int pg_pack(pg_search *x, int strict, char *why, size_t whylen)
{
    if (pg_one_node(x) >= 0)
        return 0;
    if (strict) {
        loom__snprintf(why, whylen, "STRICT_PACK: no node can hold all %d bundles together",
                       x->nb);
        return LOOM_EFULL;
    }
    return pg_search_all(x, PG_USED_FIRST) ? 0 : pg_fail(x, LOOM_PG_PACK, why, whylen);
}

static int pg_check_args(const loom_pool *const *pools, int npools, const loom_request *bundles,
                         int nb, int strategy, char *why, size_t whylen)
{
    if (nb < 0 || nb > LOOM_PG_MAX_BUNDLES || (nb > 0 && !bundles) || npools < 0 ||
        (npools > 0 && !pools)) {
        loom__snprintf(why, whylen, "%d bundles (at most %d) on %d nodes", nb,
                       LOOM_PG_MAX_BUNDLES, npools);
        return LOOM_EINVAL;
    }
    if (strategy < LOOM_PG_PACK || strategy > LOOM_PG_STRICT_SPREAD) {
        loom__snprintf(why, whylen, "unknown placement strategy %d", strategy);
        return LOOM_EINVAL;
    }
    for (int i = 0; i < npools; i++)
        if (!pools[i]) {
            loom__snprintf(why, whylen, "node %d has no pool", i);
            return LOOM_EINVAL;
        }
    for (int b = 0; b < nb; b++) {
        char err[160];
        if (loom__request_check(&bundles[b], err, sizeof err) != 0) {
            loom__snprintf(why, whylen, "bundle %d: %s", b, err);
            return LOOM_EINVAL;
        }
    }
    return 0;
}

int loom__pg_place(const loom_pool *const *pools, int npools, const loom_request *bundles, int nb,
                   int strategy, int idle, int *assign, char *why, size_t whylen)
{
    for (int b = 0; assign && b < nb; b++)
        assign[b] = -1;
    loom__snprintf(why, whylen, "%s", "");
    if (!assign)
        return LOOM_EINVAL;
    int rc = pg_check_args(pools, npools, bundles, nb, strategy, why, whylen);
    if (rc || nb == 0)
        return rc;
    pg_search x = {.pools = pools, .npools = npools, .b = bundles, .nb = nb, .idle = idle,
                   .assign = assign};
    pg_sort(&x);
    rc = pg_check_each(&x, why, whylen);
    if (rc)
        return rc;
    switch (strategy) {
    case LOOM_PG_STRICT_PACK: rc = pg_pack(&x, 1, why, whylen); break;
    case LOOM_PG_PACK: rc = pg_pack(&x, 0, why, whylen); break;
    case LOOM_PG_STRICT_SPREAD: rc = pg_strict_spread(&x, why, whylen); break;
    default: rc = pg_spread(&x, why, whylen); break;
    }
    if (rc)
        for (int b = 0; b < nb; b++)
            assign[b] = -1;
    return rc;
}
