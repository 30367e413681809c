/* scheduler/pool.h — the head's resource arithmetic: a pool of CPUs, memory,
 * GPUs (per device, shareable in fractions) and custom resources; requests
 * against it; fitting, taking and giving back exactly what was taken;
 * choosing a node for a request under a scheduling strategy; placing the
 * bundles of a placement group on nodes atomically.
 *
 * Pure functions over plain structs: no I/O, no allocation, no globals, so
 * each rule is unit-tested on its own (tests/test_pool.c).  A node has one
 * pool; a placement-group bundle is a pool carved out of its node's pool, and
 * tasks placed in the bundle take from the bundle's pool instead. */
#ifndef LOOM_SCHEDULER_POOL_H
#define LOOM_SCHEDULER_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "loom/loom.h"   /* error codes, LOOM_PG_* strategies */

#define LOOM_POOL_MAX_GPUS 16
#define LOOM_POOL_MAX_RES 16
#define LOOM_RES_NAME_MAX 64
#define LOOM_POOL_EPS 1e-9
#define LOOM_PACK_THRESHOLD 0.5   /* default strategy: a node this busy is "busy" */
#define LOOM_PG_MAX_BUNDLES 256   /* loom__pg_place works in fixed space */

typedef struct loom_res_amount {
    char name[LOOM_RES_NAME_MAX];   /* NUL-terminated */
    double amount;
} loom_res_amount;

typedef struct loom_pool {
    double cpus, cpus_used;
    uint64_t memory, memory_used;
    int ngpus;
    int gpu_index[LOOM_POOL_MAX_GPUS];      /* device numbers on the node (CUDA_VISIBLE_DEVICES) */
    double gpu_share[LOOM_POOL_MAX_GPUS];   /* fraction of each device this pool owns:
                                               1 on a node, the fraction granted in a bundle */
    double gpu_free[LOOM_POOL_MAX_GPUS];    /* fraction of each device still free, 0..share */
    uint64_t gpu_memory;                    /* bytes per device (0: unknown / not checked) */
    uint64_t gpu_mem_free[LOOM_POOL_MAX_GPUS];
    int nres;
    loom_res_amount res[LOOM_POOL_MAX_RES]; /* custom resources: totals */
    double res_used[LOOM_POOL_MAX_RES];
} loom_pool;

typedef struct loom_request {
    double cpus;
    uint64_t memory;
    double gpus;            /* 0, a fraction in (0,1), or a whole number >= 1 */
    uint64_t gpu_memory;    /* bytes of device memory wanted on each GPU granted */
    int nres;
    loom_res_amount res[LOOM_POOL_MAX_RES];
} loom_request;

/* What loom__pool_take took, so loom__pool_give returns exactly that. */
typedef struct loom_grant {
    int ngpus;
    int gpu_slot[LOOM_POOL_MAX_GPUS];       /* slots in the pool's gpu arrays */
    double gpu_frac[LOOM_POOL_MAX_GPUS];
    uint64_t gpu_mem[LOOM_POOL_MAX_GPUS];
} loom_grant;

/* Initialise a node's pool: cpus, memory, ngpus devices numbered 0..ngpus-1
 * each of gpu_memory bytes, all free, no custom resources. */
void loom__pool_init(loom_pool *p, double cpus, uint64_t memory, int ngpus, uint64_t gpu_memory);
/* Add a custom resource, or set the total of one already there (not below
 * what is in use); LOOM_EINVAL for a bad name or amount, LOOM_EFULL when
 * LOOM_POOL_MAX_RES are already defined. */
int loom__pool_add_res(loom_pool *p, const char *name, double amount);

/* Check a request on its own: no negative or non-finite amounts, gpus >= 1
 * whole, gpu_memory only with gpus > 0, resource names non-empty and unique.
 * 0 or LOOM_EINVAL with the reason in err. */
int loom__request_check(const loom_request *r, char *err, size_t errlen);

/* Whether r fits in what p has free now. */
int loom__pool_fits(const loom_pool *p, const loom_request *r);
/* Whether r would fit in p if p were idle (its totals).  When not, why names
 * the first resource that is short, e.g. "needs 2 GPUs, the node has 1"
 * or "needs 0.5 of resource 'nvlink', the node has none" ("" when it fits).
 * An invalid request fits nowhere (why: loom__request_check's reason). */
int loom__pool_could_fit(const loom_pool *p, const loom_request *r, char *why, size_t whylen);

/* Take r from p (fractional GPUs: best fit, the fitting device with least
 * free; whole GPUs: the lowest-numbered free devices).  0, or LOOM_EFULL and p
 * unchanged. */
int loom__pool_take(loom_pool *p, const loom_request *r, loom_grant *g);
/* Give back what loom__pool_take(p, r, g) took. */
void loom__pool_give(loom_pool *p, const loom_request *r, const loom_grant *g);
/* The device numbers a grant holds, comma-separated ("0,2"), "" for none. */
void loom__grant_gpu_ids(const loom_pool *p, const loom_grant *g, char *out, size_t outlen);

/* How busy p is: the largest used fraction over CPUs, GPUs and memory (0..1). */
double loom__pool_utilization(const loom_pool *p);

/* Carve a bundle out of a node's pool: take r from node (as loom__pool_take)
 * and make *bundle a pool whose totals are exactly r, whose GPUs are the
 * granted devices (gpu_index copied from the node, gpu_share = gpu_free = the
 * fraction granted, gpu_memory = gpu_mem_free = the device memory granted)
 * and whose custom resources are r's.  0 or LOOM_EFULL. */
int loom__pool_carve(loom_pool *node, const loom_request *r, loom_pool *bundle, loom_grant *g);

/* ---- choosing a node ---------------------------------------------------- */

enum { LOOM_STRATEGY_DEFAULT = 0, LOOM_STRATEGY_SPREAD = 1, LOOM_STRATEGY_NODE = 2 };

typedef struct loom_candidate {
    uint32_t node_id;
    const loom_pool *pool;
    uint64_t local_bytes;   /* bytes of the request's arguments already on the node */
    int eligible;           /* 0: excluded (dead, labels do not match) */
} loom_candidate;

/* Pick a candidate for r (index into c, or -1 when none fits now):
 *  DEFAULT: among eligible candidates r fits, the one holding most argument
 *    bytes if any holds some; else the first (in array order) whose
 *    utilization stays below LOOM_PACK_THRESHOLD after taking r (pack);
 *    else the least utilized (spread).
 *  SPREAD: the least utilized fitting candidate; ties go round-robin using
 *    *rr (advanced on each pick).
 *  NODE: the candidate with node_id == affinity_node if it fits; if it does
 *    not, -1 when hard (soft == 0), or DEFAULT's choice when soft. */
int loom__choose_node(const loom_candidate *c, int n, const loom_request *r, int strategy,
                      uint32_t affinity_node, int soft, uint32_t *rr);

/* ---- placement groups --------------------------------------------------- */

/* Strategies are loom.h's LOOM_PG_PACK, _SPREAD, _STRICT_PACK, _STRICT_SPREAD. */

/* Place nb bundles on nodes (pools[i] for node i) all at once: assign[b] is
 * the node index of bundle b.  Does not change the pools (the caller carves
 * them after).  idle = 1 judges against totals (could this ever be placed?).
 *  PACK: all on one node if one can hold them, else as few nodes as possible
 *    (greedy: fill the node that already holds bundles first).
 *  SPREAD: each bundle on a node holding no other bundle if possible, else
 *    on any node with room.
 *  STRICT_PACK: all on one node, or fail.
 *  STRICT_SPREAD: every bundle on a different node, or fail.
 * Bundles are tried largest first; a small backtracking search (bounded) for
 * the strict strategies.  Bundles sharing a node are accounted in index order,
 * so carving each node's bundles in index order reproduces the placement.
 * 0; LOOM_EFULL with the reason in why; LOOM_EINVAL for a bad strategy, a bad
 * bundle or more than LOOM_PG_MAX_BUNDLES (assign is then all -1). */
int loom__pg_place(const loom_pool *const *pools, int npools, const loom_request *bundles, int nb,
                   int strategy, int idle, int *assign, char *why, size_t whylen);

/* Name of a PG strategy ("PACK", …) and back (-1 if unknown). */
const char *loom__pg_strategy_name(int strategy);
int loom__pg_strategy_parse(const char *s);

#endif
