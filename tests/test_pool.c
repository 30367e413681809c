/* tests/test_pool.c — the head's resource arithmetic (scheduler/pool.h):
 * requests and their checks, fractional and whole GPUs, GPU memory, custom
 * resources, exact give-back under random take/give sequences, the could_fit
 * messages, carving bundles, every node-choosing strategy and every
 * placement-group strategy (with brute force as the judge on small random
 * clusters). */
#include "scheduler/pool.h"

#include "loom/loom.h"
#include "tests/testutil.h"

#include <math.h>
#include <stdint.h>

#define MIB ((uint64_t)1 << 20)
#define GIB ((uint64_t)1 << 30)

/* ---- helpers ------------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void) /* xorshift64 with a fixed seed: reproducible */
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

static loom_request req(double cpus, uint64_t memory, double gpus)
{
    loom_request r;
    memset(&r, 0, sizeof r);
    r.cpus = cpus;
    r.memory = memory;
    r.gpus = gpus;
    return r;
}

static void req_res(loom_request *r, const char *name, double amount)
{
    snprintf(r->res[r->nres].name, sizeof r->res[r->nres].name, "%s", name);
    r->res[r->nres++].amount = amount;
}

/* Field by field, exactly (no epsilon): give-back must be exact. */
static int pool_equal(const loom_pool *a, const loom_pool *b)
{
    if (a->cpus != b->cpus || a->cpus_used != b->cpus_used || a->memory != b->memory ||
        a->memory_used != b->memory_used || a->ngpus != b->ngpus ||
        a->gpu_memory != b->gpu_memory || a->nres != b->nres)
        return 0;
    for (int i = 0; i < a->ngpus; i++)
        if (a->gpu_index[i] != b->gpu_index[i] || a->gpu_share[i] != b->gpu_share[i] ||
            a->gpu_free[i] != b->gpu_free[i] || a->gpu_mem_free[i] != b->gpu_mem_free[i])
            return 0;
    for (int i = 0; i < a->nres; i++)
        if (strcmp(a->res[i].name, b->res[i].name) != 0 || a->res[i].amount != b->res[i].amount ||
            a->res_used[i] != b->res_used[i])
            return 0;
    return 1;
}

static const char *ids(const loom_pool *p, const loom_grant *g)
{
    static char buf[128];
    loom__grant_gpu_ids(p, g, buf, sizeof buf);
    return buf;
}

static int near(double a, double b)
{
    return fabs(a - b) < 1e-9;
}

/* ---- pools and requests ------------------------------------------------- */

static void test_init_and_add_res(void)
{
    loom_pool p;
    loom__pool_init(&p, 8, 16 * GIB, 2, 40 * GIB);
    CHECK(p.cpus == 8 && p.cpus_used == 0 && p.memory == 16 * GIB && p.memory_used == 0);
    CHECK(p.ngpus == 2 && p.gpu_index[0] == 0 && p.gpu_index[1] == 1);
    CHECK(p.gpu_free[0] == 1 && p.gpu_share[1] == 1 && p.gpu_mem_free[1] == 40 * GIB);
    CHECK(p.nres == 0);
    CHECK(loom__pool_utilization(&p) == 0);

    loom_pool big;
    loom__pool_init(&big, 1, 0, LOOM_POOL_MAX_GPUS + 5, 0);
    CHECK(big.ngpus == LOOM_POOL_MAX_GPUS);
    loom__pool_init(&big, 1, 0, -3, 0);
    CHECK(big.ngpus == 0);

    CHECK_RC(loom__pool_add_res(&p, "nvlink", 2), 0);
    CHECK(p.nres == 1 && strcmp(p.res[0].name, "nvlink") == 0 && p.res[0].amount == 2);
    CHECK_RC(loom__pool_add_res(&p, "nvlink", 4), 0); /* raise: still one entry */
    CHECK(p.nres == 1 && p.res[0].amount == 4);
    CHECK_RC(loom__pool_add_res(&p, NULL, 1), LOOM_EINVAL);
    CHECK_RC(loom__pool_add_res(&p, "", 1), LOOM_EINVAL);
    CHECK_RC(loom__pool_add_res(&p, "x", -1), LOOM_EINVAL);
    CHECK_RC(loom__pool_add_res(&p, "x", NAN), LOOM_EINVAL);
    CHECK_RC(loom__pool_add_res(&p, "x", INFINITY), LOOM_EINVAL);
    char long_name[LOOM_RES_NAME_MAX + 1];
    memset(long_name, 'a', LOOM_RES_NAME_MAX);
    long_name[LOOM_RES_NAME_MAX] = 0;
    CHECK_RC(loom__pool_add_res(&p, long_name, 1), LOOM_EINVAL);
    long_name[LOOM_RES_NAME_MAX - 1] = 0; /* the longest that fits */
    CHECK_RC(loom__pool_add_res(&p, long_name, 1), 0);
    CHECK(p.nres == 2);

    for (int i = p.nres; i < LOOM_POOL_MAX_RES; i++) {
        char name[16];
        snprintf(name, sizeof name, "r%d", i);
        CHECK_RC(loom__pool_add_res(&p, name, 1), 0);
    }
    CHECK(p.nres == LOOM_POOL_MAX_RES);
    CHECK_RC(loom__pool_add_res(&p, "one-too-many", 1), LOOM_EFULL);
    CHECK_RC(loom__pool_add_res(&p, "nvlink", 8), 0); /* existing ones can still change */

    /* Not below what is in use. */
    loom_pool q;
    loom__pool_init(&q, 4, 0, 0, 0);
    CHECK_RC(loom__pool_add_res(&q, "tpu", 2), 0);
    loom_request r = req(0, 0, 0);
    req_res(&r, "tpu", 1.5);
    loom_grant g;
    CHECK_RC(loom__pool_take(&q, &r, &g), 0);
    CHECK_RC(loom__pool_add_res(&q, "tpu", 1), LOOM_EINVAL);
    CHECK_RC(loom__pool_add_res(&q, "tpu", 1.5), 0);
    CHECK(!loom__pool_fits(&q, &r));
}

static void check_bad(const loom_request *r, const char *word)
{
    char err[128] = "";
    CHECK_RC(loom__request_check(r, err, sizeof err), LOOM_EINVAL);
    CHECK(strstr(err, word) != NULL);
    if (!strstr(err, word))
        fprintf(stderr, "  error was \"%s\", wanted \"%s\" in it\n", err, word);
    CHECK(!loom__pool_fits(&(loom_pool){.cpus = 1000, .memory = 1000 * GIB}, r));
}

static void test_request_check(void)
{
    char err[128];
    loom_request r = req(2, GIB, 0.5);
    r.gpu_memory = GIB;
    req_res(&r, "nvlink", 1);
    req_res(&r, "zero", 0);
    CHECK_RC(loom__request_check(&r, err, sizeof err), 0);
    r = req(0, 0, 0);
    CHECK_RC(loom__request_check(&r, err, sizeof err), 0);
    r = req(0, 0, 3);
    CHECK_RC(loom__request_check(&r, err, sizeof err), 0);
    r = req(0, 0, 1);
    CHECK_RC(loom__request_check(&r, NULL, 0), 0);
    CHECK_RC(loom__request_check(NULL, err, sizeof err), LOOM_EINVAL);

    r = req(-1, 0, 0);
    check_bad(&r, "CPU");
    r = req(NAN, 0, 0);
    check_bad(&r, "CPU");
    r = req(INFINITY, 0, 0);
    check_bad(&r, "CPU");
    r = req(1, 0, -0.5);
    check_bad(&r, "GPU");
    r = req(1, 0, NAN);
    check_bad(&r, "GPU");
    r = req(1, 0, 1.5);
    check_bad(&r, "whole");
    r = req(1, 0, 2.25);
    check_bad(&r, "whole");
    r = req(1, 0, 0);
    r.gpu_memory = GIB;
    check_bad(&r, "without GPUs");
    r = req(1, 0, 0);
    req_res(&r, "", 1);
    check_bad(&r, "no name");
    r = req(1, 0, 0);
    req_res(&r, "a", -1);
    check_bad(&r, "'a'");
    r = req(1, 0, 0);
    req_res(&r, "a", NAN);
    check_bad(&r, "'a'");
    r = req(1, 0, 0);
    req_res(&r, "a", 1);
    req_res(&r, "b", 1);
    req_res(&r, "a", 2);
    check_bad(&r, "twice");
    r = req(1, 0, 0);
    r.nres = LOOM_POOL_MAX_RES + 1;
    check_bad(&r, "custom resources");
    r = req(1, 0, 0);
    r.nres = -1;
    check_bad(&r, "custom resources");
    r = req(1, 0, 0);
    r.nres = 1;
    memset(r.res[0].name, 'x', sizeof r.res[0].name); /* not NUL-terminated */
    r.res[0].amount = 1;
    check_bad(&r, "longer");
}

/* ---- GPUs --------------------------------------------------------------- */

static void test_fractional_packing(void)
{
    loom_pool p;
    loom__pool_init(&p, 16, 0, 2, 0);
    loom_request quarter = req(0, 0, 0.25);
    loom_grant g[5];
    for (int i = 0; i < 4; i++) {
        CHECK_RC(loom__pool_take(&p, &quarter, &g[i]), 0);
        CHECK(g[i].ngpus == 1 && g[i].gpu_slot[0] == 0 && g[i].gpu_frac[0] == 0.25);
        CHECK(strcmp(ids(&p, &g[i]), "0") == 0);
    }
    CHECK(p.gpu_free[0] == 0 && p.gpu_free[1] == 1);
    CHECK_RC(loom__pool_take(&p, &quarter, &g[4]), 0); /* the fifth: the next device */
    CHECK(g[4].gpu_slot[0] == 1 && strcmp(ids(&p, &g[4]), "1") == 0);
    CHECK(near(p.gpu_free[1], 0.75));

    /* Best fit: the device with the least free that still fits. */
    loom__pool_give(&p, &quarter, &g[0]);
    loom__pool_give(&p, &quarter, &g[1]); /* dev0: 0.5 free, dev1: 0.75 free */
    loom_request r = req(0, 0, 0.5);
    loom_grant h;
    CHECK_RC(loom__pool_take(&p, &r, &h), 0);
    CHECK(h.gpu_slot[0] == 0 && p.gpu_free[0] == 0);
    r = req(0, 0, 0.8); /* fits nowhere now */
    loom_pool before = p;
    CHECK(!loom__pool_fits(&p, &r));
    CHECK_RC(loom__pool_take(&p, &r, &h), LOOM_EFULL);
    CHECK(pool_equal(&p, &before));
    CHECK(h.ngpus == 0);
    r = req(0, 0, 0.75);
    CHECK_RC(loom__pool_take(&p, &r, &h), 0);
    CHECK(h.gpu_slot[0] == 1 && p.gpu_free[1] == 0);

    /* Ten tenths fill one device exactly despite rounding. */
    loom_pool q;
    loom__pool_init(&q, 1, 0, 2, 0);
    loom_request tenth = req(0, 0, 0.1);
    loom_grant t[11];
    for (int i = 0; i < 10; i++)
        CHECK_RC(loom__pool_take(&q, &tenth, &t[i]), 0);
    CHECK(q.gpu_free[0] == 0 && q.gpu_free[1] == 1);
    CHECK_RC(loom__pool_take(&q, &tenth, &t[10]), 0);
    CHECK(t[10].gpu_slot[0] == 1);
    for (int i = 0; i <= 10; i++)
        loom__pool_give(&q, &tenth, &t[i]);
    CHECK(q.gpu_free[0] == 1 && q.gpu_free[1] == 1);

    /* No GPUs at all. */
    loom_pool none;
    loom__pool_init(&none, 4, 0, 0, 0);
    CHECK(!loom__pool_fits(&none, &quarter));
}

static void test_whole_gpus(void)
{
    loom_pool p;
    loom__pool_init(&p, 16, 0, 4, 0);
    loom_request two = req(0, 0, 2), one = req(0, 0, 1), half = req(0, 0, 0.5);
    loom_grant g2, g1, gh, gx;
    CHECK_RC(loom__pool_take(&p, &two, &g2), 0);
    CHECK(g2.ngpus == 2 && strcmp(ids(&p, &g2), "0,1") == 0);
    CHECK(g2.gpu_frac[0] == 1 && g2.gpu_frac[1] == 1);
    CHECK_RC(loom__pool_take(&p, &half, &gh), 0); /* ties: the lower device */
    CHECK(strcmp(ids(&p, &gh), "2") == 0);
    CHECK_RC(loom__pool_take(&p, &one, &g1), 0); /* a whole one skips the shared device */
    CHECK(strcmp(ids(&p, &g1), "3") == 0);
    loom_pool before = p;
    CHECK(!loom__pool_fits(&p, &one));
    CHECK_RC(loom__pool_take(&p, &one, &gx), LOOM_EFULL);
    CHECK(pool_equal(&p, &before));
    loom__pool_give(&p, &two, &g2);
    loom_request three = req(0, 0, 3);
    CHECK(!loom__pool_fits(&p, &three));
    CHECK(loom__pool_could_fit(&p, &three, NULL, 0));
    CHECK_RC(loom__pool_take(&p, &two, &g2), 0);
    CHECK(strcmp(ids(&p, &g2), "0,1") == 0);
    loom_request many = req(0, 0, 17);
    CHECK(!loom__pool_could_fit(&p, &many, NULL, 0));
    loom_request huge = req(0, 0, 1e300);
    CHECK(!loom__pool_could_fit(&p, &huge, NULL, 0));

    /* "Lowest-numbered" is by device number, not by slot. */
    loom_pool q;
    loom__pool_init(&q, 1, 0, 4, 0);
    int devs[4] = {3, 1, 2, 0};
    memcpy(q.gpu_index, devs, sizeof devs);
    CHECK_RC(loom__pool_take(&q, &two, &gx), 0);
    CHECK(strcmp(ids(&q, &gx), "0,1") == 0);
    CHECK(gx.gpu_slot[0] == 3 && gx.gpu_slot[1] == 1);
    CHECK_RC(loom__pool_take(&q, &half, &gh), 0);
    CHECK(strcmp(ids(&q, &gh), "2") == 0);

    /* The ids string never overflows. */
    char small[4];
    loom__grant_gpu_ids(&q, &gx, small, sizeof small);
    CHECK(strlen(small) < sizeof small && strncmp(small, "0,1", 3) == 0);
    loom_grant empty = {0};
    CHECK(strcmp(ids(&q, &empty), "") == 0);
}

static void test_mixed(void)
{
    loom_pool p;
    loom__pool_init(&p, 8, 32 * GIB, 2, 0);
    loom_request a = req(4, 16 * GIB, 1), b = req(2, 8 * GIB, 0.5), c = req(3, GIB, 0);
    loom_grant ga, gb, gc;
    CHECK_RC(loom__pool_take(&p, &a, &ga), 0);
    CHECK_RC(loom__pool_take(&p, &b, &gb), 0);
    CHECK(strcmp(ids(&p, &ga), "0") == 0 && strcmp(ids(&p, &gb), "1") == 0);
    CHECK(p.cpus_used == 6 && p.memory_used == 24 * GIB);
    loom_pool before = p;
    CHECK_RC(loom__pool_take(&p, &c, &gc), LOOM_EFULL); /* CPUs short */
    CHECK(pool_equal(&p, &before));
    loom_request d = req(1, 9 * GIB, 0); /* memory short */
    CHECK_RC(loom__pool_take(&p, &d, &gc), LOOM_EFULL);
    loom_request e = req(1, GIB, 1); /* no whole GPU free */
    CHECK_RC(loom__pool_take(&p, &e, &gc), LOOM_EFULL);
    CHECK(pool_equal(&p, &before));
    loom_request f = req(2, 8 * GIB, 0.5); /* exactly what is left */
    CHECK_RC(loom__pool_take(&p, &f, &gc), 0);
    CHECK(p.cpus_used == 8 && p.memory_used == 32 * GIB && p.gpu_free[1] == 0);
    CHECK(loom__pool_utilization(&p) == 1);
    loom__pool_give(&p, &f, &gc);
    loom__pool_give(&p, &b, &gb);
    loom__pool_give(&p, &a, &ga);
    loom_pool fresh;
    loom__pool_init(&fresh, 8, 32 * GIB, 2, 0);
    CHECK(pool_equal(&p, &fresh));
    loom_request nan_cpus = req(NAN, 0, 0); /* never taken: giving it back changes nothing */
    loom_grant nothing = {0};
    loom__pool_give(&p, &nan_cpus, &nothing);
    CHECK(pool_equal(&p, &fresh));
}

static void test_gpu_memory(void)
{
    loom_pool p;
    loom__pool_init(&p, 8, 0, 2, 16 * GIB);
    loom_request big = req(0, 0, 0.25), small = req(0, 0, 0.25);
    big.gpu_memory = 10 * GIB;
    small.gpu_memory = 4 * GIB;
    loom_grant g1, g2, g3, g4;
    CHECK_RC(loom__pool_take(&p, &big, &g1), 0);
    CHECK(g1.gpu_slot[0] == 0 && g1.gpu_mem[0] == 10 * GIB && p.gpu_mem_free[0] == 6 * GIB);
    CHECK_RC(loom__pool_take(&p, &big, &g2), 0); /* dev0 has the fraction, not the memory */
    CHECK(g2.gpu_slot[0] == 1);
    CHECK_RC(loom__pool_take(&p, &small, &g3), 0); /* best fit (tie: device 0), memory ok */
    CHECK(g3.gpu_slot[0] == 0 && p.gpu_mem_free[0] == 2 * GIB);
    loom_request whole = req(0, 0, 1);
    whole.gpu_memory = 16 * GIB;
    CHECK(!loom__pool_fits(&p, &whole));
    CHECK(loom__pool_could_fit(&p, &whole, NULL, 0));
    whole.gpu_memory = 17 * GIB;
    char why[160];
    CHECK(!loom__pool_could_fit(&p, &whole, why, sizeof why));
    CHECK(strcmp(why, "needs 17408 MiB of memory on each GPU, "
                      "the node's GPUs have 16384 MiB") == 0);
    loom_request two = req(0, 0, 2);
    two.gpu_memory = 8 * GIB;
    CHECK_RC(loom__pool_take(&p, &two, &g4), LOOM_EFULL);
    CHECK(!loom__pool_fits(&p, &two));
    CHECK(!loom__pool_could_fit(&(loom_pool){0}, &two, NULL, 0));
    loom__pool_give(&p, &small, &g3);
    loom__pool_give(&p, &big, &g2);
    loom__pool_give(&p, &big, &g1);
    CHECK(p.gpu_mem_free[0] == 16 * GIB && p.gpu_mem_free[1] == 16 * GIB);
    CHECK_RC(loom__pool_take(&p, &two, &g4), 0);
    CHECK(g4.gpu_mem[0] == 8 * GIB && g4.gpu_mem[1] == 8 * GIB && p.gpu_mem_free[1] == 8 * GIB);

    /* Unknown device memory (0): not checked, nothing accounted. */
    loom_pool q;
    loom__pool_init(&q, 8, 0, 1, 0);
    loom_request huge = req(0, 0, 0.5);
    huge.gpu_memory = 1000 * GIB;
    CHECK_RC(loom__pool_take(&q, &huge, &g1), 0);
    CHECK(g1.gpu_mem[0] == 0 && q.gpu_mem_free[0] == 0);
    CHECK_RC(loom__pool_take(&q, &huge, &g2), 0);
    CHECK(q.gpu_free[0] == 0);
}

static void test_custom_res(void)
{
    loom_pool p;
    loom__pool_init(&p, 8, 0, 0, 0);
    CHECK_RC(loom__pool_add_res(&p, "nvlink", 1), 0);
    CHECK_RC(loom__pool_add_res(&p, "disk", 100), 0);
    loom_request r = req(1, 0, 0);
    req_res(&r, "nvlink", 0.5);
    loom_grant g1, g2, g3;
    CHECK_RC(loom__pool_take(&p, &r, &g1), 0);
    CHECK_RC(loom__pool_take(&p, &r, &g2), 0);
    CHECK(p.res_used[0] == 1 && p.res_used[1] == 0);
    CHECK_RC(loom__pool_take(&p, &r, &g3), LOOM_EFULL);
    char why[160];
    CHECK(!loom__pool_fits(&p, &r));
    CHECK(loom__pool_could_fit(&p, &r, why, sizeof why) && why[0] == 0);

    loom_request other = req(0, 0, 0);
    req_res(&other, "disk", 40);
    req_res(&other, "fpga", 1);
    CHECK(!loom__pool_fits(&p, &other));
    CHECK(!loom__pool_could_fit(&p, &other, why, sizeof why));
    CHECK(strcmp(why, "needs 1 of resource 'fpga', the node has none") == 0);
    loom_request zero = req(0, 0, 0);
    req_res(&zero, "fpga", 0); /* none of something missing: fits */
    CHECK(loom__pool_fits(&p, &zero));
    CHECK_RC(loom__pool_take(&p, &zero, &g3), 0);
    loom__pool_give(&p, &zero, &g3);

    loom_request disk = req(0, 0, 0);
    req_res(&disk, "disk", 60);
    CHECK_RC(loom__pool_take(&p, &disk, &g3), 0);
    CHECK(!loom__pool_fits(&p, &disk));
    loom__pool_give(&p, &disk, &g3);
    loom__pool_give(&p, &r, &g2);
    loom__pool_give(&p, &r, &g1);
    CHECK(p.res_used[0] == 0 && p.res_used[1] == 0);
}

static void check_why(const loom_pool *p, const loom_request *r, const char *want)
{
    char why[200];
    CHECK(!loom__pool_could_fit(p, r, why, sizeof why));
    CHECK(strcmp(why, want) == 0);
    if (strcmp(why, want) != 0)
        fprintf(stderr, "  why was \"%s\", want \"%s\"\n", why, want);
}

static void test_could_fit_messages(void)
{
    loom_pool p;
    loom__pool_init(&p, 2, 512 * MIB, 1, 0);
    loom_request r = req(0, 0, 2);
    check_why(&p, &r, "needs 2 GPUs, the node has 1");
    r = req(0, 0, 0);
    req_res(&r, "nvlink", 0.5);
    check_why(&p, &r, "needs 0.5 of resource 'nvlink', the node has none");
    r = req(4, 0, 0);
    check_why(&p, &r, "needs 4 CPUs, the node has 2");
    r = req(1, 1024 * MIB, 0);
    check_why(&p, &r, "needs 1024 MiB of memory, the node has 512 MiB");
    r = req(1, 1536 * MIB / 2 + MIB / 2, 0);
    check_why(&p, &r, "needs 768.5 MiB of memory, the node has 512 MiB");
    r = req(0, 0, 1.5);
    check_why(&p, &r, "GPUs must be a fraction below 1 or a whole number, not 1.5");
    CHECK_RC(loom__pool_add_res(&p, "nvlink", 0.25), 0);
    r = req(0, 0, 0);
    req_res(&r, "nvlink", 0.5);
    check_why(&p, &r, "needs 0.5 of resource 'nvlink', the node has 0.25");

    loom_pool none;
    loom__pool_init(&none, 2, 0, 0, 0);
    r = req(0, 0, 0.5);
    check_why(&none, &r, "needs 0.5 GPU, the node has none");
    r = req(0, 0, 2);
    check_why(&none, &r, "needs 2 GPUs, the node has none");

    /* The first shortage is named: CPUs before memory before GPUs. */
    r = req(4, 1024 * MIB, 2);
    check_why(&p, &r, "needs 4 CPUs, the node has 2");

    /* A busy node could still fit: could_fit judges totals; why is emptied. */
    loom_grant g;
    r = req(2, 512 * MIB, 1);
    CHECK_RC(loom__pool_take(&p, &r, &g), 0);
    char why[64] = "stale";
    CHECK(!loom__pool_fits(&p, &r));
    CHECK(loom__pool_could_fit(&p, &r, why, sizeof why));
    CHECK(why[0] == 0);
    CHECK(loom__pool_could_fit(&p, &r, NULL, 0));

    /* A tiny buffer is cut, never overrun. */
    char tiny[8];
    r = req(4, 0, 0);
    CHECK(!loom__pool_could_fit(&p, &r, tiny, sizeof tiny));
    CHECK(strcmp(tiny, "needs 4") == 0);
}

/* ---- exact give-back ---------------------------------------------------- */

typedef struct held {
    loom_request r;
    loom_grant g;
} held;

static loom_request random_request(void)
{
    static const double fracs[] = {0.1, 0.2, 0.25, 1.0 / 3, 0.5, 0.7, 0.05};
    loom_request r = req(rng_below(5) * 0.25 + rng_below(3) * 0.1, (uint64_t)rng_below(5) * GIB,
                         0);
    switch (rng_below(4)) {
    case 0: r.gpus = fracs[rng_below(7)]; break;
    case 1: r.gpus = 1 + rng_below(2); break;
    default: break;
    }
    if (r.gpus > 0 && rng_below(2))
        r.gpu_memory = (uint64_t)rng_below(6) * GIB;
    if (rng_below(3) == 0)
        req_res(&r, "a", rng_below(4) * 0.3);
    if (rng_below(4) == 0)
        req_res(&r, "b", 0.125 * rng_below(5));
    return r;
}

/* What the held grants add up to must be what the pool shows as used. */
static int pool_consistent(const loom_pool *p, const held *h, int n)
{
    double cpus = 0, gpu[LOOM_POOL_MAX_GPUS] = {0}, a = 0, b = 0;
    uint64_t mem = 0, gmem[LOOM_POOL_MAX_GPUS] = {0};
    for (int i = 0; i < n; i++) {
        cpus += h[i].r.cpus;
        mem += h[i].r.memory;
        for (int k = 0; k < h[i].g.ngpus; k++) {
            gpu[h[i].g.gpu_slot[k]] += h[i].g.gpu_frac[k];
            gmem[h[i].g.gpu_slot[k]] += h[i].g.gpu_mem[k];
        }
        for (int k = 0; k < h[i].r.nres; k++)
            *(strcmp(h[i].r.res[k].name, "a") == 0 ? &a : &b) += h[i].r.res[k].amount;
    }
    if (fabs(p->cpus_used - cpus) > 1e-6 || p->memory_used != mem || p->cpus_used < 0 ||
        p->cpus_used > p->cpus || p->memory_used > p->memory)
        return 0;
    for (int i = 0; i < p->ngpus; i++)
        if (fabs(1 - p->gpu_free[i] - gpu[i]) > 1e-6 || p->gpu_free[i] < 0 ||
            p->gpu_free[i] > 1 || p->gpu_mem_free[i] != p->gpu_memory - gmem[i])
            return 0;
    return fabs(p->res_used[0] - a) < 1e-6 && fabs(p->res_used[1] - b) < 1e-6 &&
           p->res_used[0] >= 0 && p->res_used[1] >= 0;
}

static void test_give_back_property(void)
{
    loom_pool p, initial;
    loom__pool_init(&p, 6, 24 * GIB, 4, 16 * GIB);
    CHECK_RC(loom__pool_add_res(&p, "a", 3), 0);
    CHECK_RC(loom__pool_add_res(&p, "b", 1.5), 0);
    initial = p;
    held h[64];
    int n = 0, takes = 0, refused = 0, bad = 0, drains = 0;
    for (int iter = 0; iter < 20000; iter++) {
        if (n < 64 && (n == 0 || rng_below(5) < 3)) {
            h[n].r = random_request();
            loom_pool before = p;
            int fits = loom__pool_fits(&p, &h[n].r);
            int rc = loom__pool_take(&p, &h[n].r, &h[n].g);
            if (rc == 0 && fits) {
                n++;
                takes++;
            } else {
                refused++;
                bad += rc != LOOM_EFULL || fits || !pool_equal(&p, &before);
            }
        } else {
            int i = rng_below(n);
            loom__pool_give(&p, &h[i].r, &h[i].g);
            h[i] = h[--n];
        }
        bad += !pool_consistent(&p, h, n);
        if (iter % 2500 == 2499) { /* drain in random order: back exactly where it began */
            while (n > 0) {
                int i = rng_below(n);
                loom__pool_give(&p, &h[i].r, &h[i].g);
                h[i] = h[--n];
            }
            bad += !pool_equal(&p, &initial);
            drains++;
        }
    }
    while (n > 0) {
        loom__pool_give(&p, &h[n - 1].r, &h[n - 1].g);
        n--;
    }
    CHECK(bad == 0);
    CHECK(pool_equal(&p, &initial));
    CHECK(drains == 8);
    CHECK(takes > 5000 && refused > 1000); /* both paths really exercised */
}

static void test_utilization(void)
{
    loom_pool p;
    loom__pool_init(&p, 4, 8 * GIB, 4, 0);
    loom_grant g;
    loom_request r = req(2, 0, 0);
    CHECK_RC(loom__pool_take(&p, &r, &g), 0);
    CHECK(near(loom__pool_utilization(&p), 0.5));
    r = req(0, 6 * GIB, 0);
    CHECK_RC(loom__pool_take(&p, &r, &g), 0);
    CHECK(near(loom__pool_utilization(&p), 0.75));
    r = req(0, 0, 3.0);
    CHECK_RC(loom__pool_take(&p, &r, &g), 0);
    r = req(0, 0, 0.5);
    CHECK_RC(loom__pool_take(&p, &r, &g), 0);
    CHECK(near(loom__pool_utilization(&p), 3.5 / 4));

    loom_pool empty; /* nothing to divide by */
    loom__pool_init(&empty, 0, 0, 0, 0);
    CHECK(loom__pool_utilization(&empty) == 0);
    loom_pool gpus_only;
    loom__pool_init(&gpus_only, 0, 0, 2, 0);
    r = req(0, 0, 1);
    CHECK_RC(loom__pool_take(&gpus_only, &r, &g), 0);
    CHECK(near(loom__pool_utilization(&gpus_only), 0.5));
}

/* ---- bundles ------------------------------------------------------------ */

static void test_carve(void)
{
    loom_pool node, node0, bundle;
    loom__pool_init(&node, 8, 32 * GIB, 4, 16 * GIB);
    CHECK_RC(loom__pool_add_res(&node, "nvlink", 2), 0);
    node0 = node;
    loom_request br = req(4, 8 * GIB, 2);
    br.gpu_memory = 4 * GIB;
    req_res(&br, "nvlink", 1);
    req_res(&br, "unused", 0);
    loom_grant bg;
    CHECK_RC(loom__pool_carve(&node, &br, &bundle, &bg), 0);
    CHECK(bundle.cpus == 4 && bundle.cpus_used == 0 && bundle.memory == 8 * GIB);
    CHECK(bundle.ngpus == 2 && bundle.gpu_index[0] == 0 && bundle.gpu_index[1] == 1);
    CHECK(bundle.gpu_free[0] == 1 && bundle.gpu_share[1] == 1);
    CHECK(bundle.gpu_memory == 4 * GIB && bundle.gpu_mem_free[1] == 4 * GIB);
    CHECK(bundle.nres == 1 && strcmp(bundle.res[0].name, "nvlink") == 0 &&
          bundle.res[0].amount == 1);
    CHECK(node.cpus_used == 4 && node.memory_used == 8 * GIB && node.res_used[0] == 1);
    CHECK(node.gpu_free[0] == 0 && node.gpu_free[1] == 0 && node.gpu_mem_free[0] == 12 * GIB);
    CHECK(strcmp(ids(&node, &bg), "0,1") == 0);

    /* Tasks inside the bundle take from the bundle. */
    loom_pool bundle0 = bundle;
    loom_request t1 = req(1, GIB, 1), th = req(1, GIB, 0.5);
    th.gpu_memory = GIB;
    loom_grant g1, g2, g3, gx;
    CHECK_RC(loom__pool_take(&bundle, &t1, &g1), 0);
    CHECK(strcmp(ids(&bundle, &g1), "0") == 0);
    CHECK_RC(loom__pool_take(&bundle, &th, &g2), 0);
    CHECK_RC(loom__pool_take(&bundle, &th, &g3), 0);
    CHECK(strcmp(ids(&bundle, &g2), "1") == 0 && strcmp(ids(&bundle, &g3), "1") == 0);
    CHECK_RC(loom__pool_take(&bundle, &th, &gx), LOOM_EFULL);
    loom_request more = req(2, 0, 0);
    CHECK_RC(loom__pool_take(&bundle, &more, &gx), LOOM_EFULL); /* 3 of 4 CPUs used */
    loom_request link = req(0, 0, 0);
    req_res(&link, "nvlink", 1);
    CHECK_RC(loom__pool_take(&bundle, &link, &gx), 0);
    CHECK_RC(loom__pool_take(&bundle, &link, &gx), LOOM_EFULL);
    loom__pool_give(&bundle, &link, &gx);
    loom_request three = req(0, 0, 3);
    check_why(&bundle, &three, "needs 3 GPUs, the node has 2");
    loom_request mem = req(0, 0, 0.5);
    mem.gpu_memory = 5 * GIB;
    check_why(&bundle, &mem, "needs 5120 MiB of memory on each GPU, the node's GPUs have 4096 MiB");
    loom__pool_give(&bundle, &th, &g3);
    loom__pool_give(&bundle, &th, &g2);
    loom__pool_give(&bundle, &t1, &g1);
    CHECK(pool_equal(&bundle, &bundle0));

    /* A fractional bundle owns part of a device: whole GPUs never fit in it. */
    loom_request fr = req(1, 0, 0.5);
    loom_pool fb;
    loom_grant fg, q1, q2;
    CHECK_RC(loom__pool_carve(&node, &fr, &fb, &fg), 0);
    CHECK(strcmp(ids(&node, &fg), "2") == 0);
    CHECK(fb.ngpus == 1 && fb.gpu_index[0] == 2 && fb.gpu_share[0] == 0.5 && fb.gpu_free[0] == 0.5);
    CHECK(fb.gpu_memory == 0); /* the bundle asked for no device memory */
    loom_request quarter = req(0, 0, 0.25), one = req(0, 0, 1);
    CHECK_RC(loom__pool_take(&fb, &quarter, &q1), 0);
    CHECK_RC(loom__pool_take(&fb, &quarter, &q2), 0);
    CHECK(strcmp(ids(&fb, &q1), "2") == 0 && fb.gpu_free[0] == 0);
    CHECK_RC(loom__pool_take(&fb, &quarter, &gx), LOOM_EFULL);
    CHECK(near(loom__pool_utilization(&fb), 1));
    loom__pool_give(&fb, &quarter, &q1);
    loom__pool_give(&fb, &quarter, &q2);
    CHECK(fb.gpu_free[0] == 0.5);
    CHECK(!loom__pool_fits(&fb, &one));
    check_why(&fb, &one, "needs 1 GPU, the node has 0");
    loom_request bigger = req(0, 0, 0.75);
    CHECK(!loom__pool_could_fit(&fb, &bigger, NULL, 0));

    /* A carve that does not fit changes nothing. */
    loom_pool before = node, nb;
    loom_request toomuch = req(1, 0, 2);
    CHECK_RC(loom__pool_carve(&node, &toomuch, &nb, &gx), LOOM_EFULL);
    CHECK(pool_equal(&node, &before));

    loom__pool_give(&node, &fr, &fg);
    loom__pool_give(&node, &br, &bg);
    CHECK(pool_equal(&node, &node0));
}

/* ---- choosing a node ---------------------------------------------------- */

static void use_cpus(loom_pool *p, double cpus)
{
    loom_request r = req(cpus, 0, 0);
    loom_grant g;
    REQUIRE(loom__pool_take(p, &r, &g) == 0);
}

static void test_choose_default(void)
{
    loom_pool p[4];
    for (int i = 0; i < 4; i++)
        loom__pool_init(&p[i], 8, 0, 0, 0);
    loom_candidate c[4];
    for (int i = 0; i < 4; i++)
        c[i] = (loom_candidate){.node_id = 10 + (uint32_t)i, .pool = &p[i], .eligible = 1};
    loom_request one = req(1, 0, 0);
    uint32_t rr = 0;

    /* Pack: the first node while it stays below the threshold. */
    CHECK(loom__choose_node(c, 4, &one, LOOM_STRATEGY_DEFAULT, 0, 0, &rr) == 0);
    use_cpus(&p[0], 2); /* 2 -> 3 of 8: still below */
    CHECK(loom__choose_node(c, 4, &one, LOOM_STRATEGY_DEFAULT, 0, 0, &rr) == 0);
    use_cpus(&p[0], 1); /* 3 -> 4 of 8 would reach 0.5: busy */
    CHECK(loom__choose_node(c, 4, &one, LOOM_STRATEGY_DEFAULT, 0, 0, &rr) == 1);
    c[1].eligible = 0; /* never an ineligible one */
    CHECK(loom__choose_node(c, 4, &one, LOOM_STRATEGY_DEFAULT, 0, 0, &rr) == 2);
    c[1].eligible = 1;
    CHECK(rr == 0); /* DEFAULT does not touch the round robin */

    /* All busy: the least utilized. */
    use_cpus(&p[1], 6);
    use_cpus(&p[2], 4);
    use_cpus(&p[3], 7);
    CHECK(loom__choose_node(c, 4, &one, LOOM_STRATEGY_DEFAULT, 0, 0, &rr) == 0); /* 3/8 */
    use_cpus(&p[0], 2);                                                          /* 5/8 */
    CHECK(loom__choose_node(c, 4, &one, LOOM_STRATEGY_DEFAULT, 0, 0, &rr) == 2);  /* 4/8 */
    loom_request five = req(5, 0, 0);
    CHECK(loom__choose_node(c, 4, &five, LOOM_STRATEGY_DEFAULT, 0, 0, &rr) == -1);

    /* Locality first, even onto a busier node. */
    c[3].local_bytes = 100;
    c[1].local_bytes = 50;
    CHECK(loom__choose_node(c, 4, &one, LOOM_STRATEGY_DEFAULT, 0, 0, &rr) == 3);
    c[1].local_bytes = 100; /* tie: the less utilized */
    CHECK(loom__choose_node(c, 4, &one, LOOM_STRATEGY_DEFAULT, 0, 0, &rr) == 1);
    loom_request two = req(2, 0, 0); /* node 3 has 1 CPU left: holding data is not enough */
    CHECK(loom__choose_node(c, 4, &two, LOOM_STRATEGY_DEFAULT, 0, 0, &rr) == 1);
    c[1].eligible = 0;
    CHECK(loom__choose_node(c, 4, &two, LOOM_STRATEGY_DEFAULT, 0, 0, &rr) == 2);
    c[1].eligible = 1;
    c[1].local_bytes = c[3].local_bytes = 0;
    CHECK(loom__choose_node(c, 4, &one, LOOM_STRATEGY_DEFAULT, 0, 0, &rr) == 2);

    /* Nothing to choose from. */
    CHECK(loom__choose_node(c, 0, &one, LOOM_STRATEGY_DEFAULT, 0, 0, &rr) == -1);
    loom_candidate nopool = {.node_id = 1, .pool = NULL, .eligible = 1};
    CHECK(loom__choose_node(&nopool, 1, &one, LOOM_STRATEGY_DEFAULT, 0, 0, &rr) == -1);

    /* GPUs count toward "busy". */
    loom_pool gp[2];
    loom__pool_init(&gp[0], 64, 0, 2, 0);
    loom__pool_init(&gp[1], 64, 0, 2, 0);
    loom_candidate gc[2] = {{.node_id = 1, .pool = &gp[0], .eligible = 1},
                            {.node_id = 2, .pool = &gp[1], .eligible = 1}};
    loom_request g1 = req(1, 0, 1);
    loom_grant g;
    CHECK(loom__choose_node(gc, 2, &g1, LOOM_STRATEGY_DEFAULT, 0, 0, &rr) == 0);
    CHECK_RC(loom__pool_take(&gp[0], &g1, &g), 0); /* now 1 of 2 GPUs: a second would be 1.0 */
    CHECK(loom__choose_node(gc, 2, &g1, LOOM_STRATEGY_DEFAULT, 0, 0, &rr) == 1);
    loom_request q = req(1, 0, 0.25);
    CHECK(loom__choose_node(gc, 2, &q, LOOM_STRATEGY_DEFAULT, 0, 0, &rr) == 1);
}

static void test_choose_spread(void)
{
    loom_pool p[3];
    loom_candidate c[3];
    for (int i = 0; i < 3; i++) {
        loom__pool_init(&p[i], 4, 0, 0, 0);
        c[i] = (loom_candidate){.node_id = (uint32_t)i + 1, .pool = &p[i], .eligible = 1};
    }
    loom_request one = req(1, 0, 0);
    uint32_t rr = 0;
    /* Equal nodes: round robin. */
    int seen[4];
    for (int k = 0; k < 4; k++)
        seen[k] = loom__choose_node(c, 3, &one, LOOM_STRATEGY_SPREAD, 0, 0, &rr);
    CHECK(seen[0] == 0 && seen[1] == 1 && seen[2] == 2 && seen[3] == 0);
    CHECK(rr == 4);
    /* The least utilized wins whatever rr says. */
    use_cpus(&p[0], 1);
    use_cpus(&p[2], 1);
    for (int k = 0; k < 3; k++)
        CHECK(loom__choose_node(c, 3, &one, LOOM_STRATEGY_SPREAD, 0, 0, &rr) == 1);
    /* Ties among the least utilized only (0 and 2 now, 1 is busier). */
    use_cpus(&p[1], 2);
    rr = 0;
    CHECK(loom__choose_node(c, 3, &one, LOOM_STRATEGY_SPREAD, 0, 0, &rr) == 0);
    CHECK(loom__choose_node(c, 3, &one, LOOM_STRATEGY_SPREAD, 0, 0, &rr) == 2);
    CHECK(loom__choose_node(c, 3, &one, LOOM_STRATEGY_SPREAD, 0, 0, &rr) == 0);
    c[2].eligible = 0;
    CHECK(loom__choose_node(c, 3, &one, LOOM_STRATEGY_SPREAD, 0, 0, &rr) == 0);
    c[2].eligible = 1;
    /* Spreading real load: takes alternate over the nodes evenly. */
    loom_pool e[3];
    for (int i = 0; i < 3; i++) {
        loom__pool_init(&e[i], 4, 0, 0, 0);
        c[i].pool = &e[i];
    }
    int count[3] = {0};
    for (int k = 0; k < 12; k++) {
        int i = loom__choose_node(c, 3, &one, LOOM_STRATEGY_SPREAD, 0, 0, &rr);
        REQUIRE(i >= 0);
        count[i]++;
        use_cpus(&e[i], 1);
    }
    CHECK(count[0] == 4 && count[1] == 4 && count[2] == 4);
    uint32_t before = rr;
    CHECK(loom__choose_node(c, 3, &one, LOOM_STRATEGY_SPREAD, 0, 0, &rr) == -1);
    CHECK(rr == before); /* no pick, no advance */
    CHECK(loom__choose_node(c, 3, &one, LOOM_STRATEGY_SPREAD, 0, 0, NULL) == -1);
    loom__pool_init(&e[1], 4, 0, 0, 0);
    CHECK(loom__choose_node(c, 3, &one, LOOM_STRATEGY_SPREAD, 0, 0, NULL) == 1);
}

static void test_choose_affinity(void)
{
    loom_pool p[3];
    loom_candidate c[3];
    for (int i = 0; i < 3; i++) {
        loom__pool_init(&p[i], 4, 0, 0, 0);
        c[i] = (loom_candidate){.node_id = 7 + (uint32_t)i, .pool = &p[i], .eligible = 1};
    }
    loom_request two = req(2, 0, 0);
    uint32_t rr = 0;
    CHECK(loom__choose_node(c, 3, &two, LOOM_STRATEGY_NODE, 9, 0, &rr) == 2);
    CHECK(loom__choose_node(c, 3, &two, LOOM_STRATEGY_NODE, 9, 1, &rr) == 2);
    use_cpus(&p[2], 3); /* node 9 cannot take it now */
    CHECK(loom__choose_node(c, 3, &two, LOOM_STRATEGY_NODE, 9, 0, &rr) == -1);
    CHECK(loom__choose_node(c, 3, &two, LOOM_STRATEGY_NODE, 9, 1, &rr) == 0); /* DEFAULT */
    c[1].local_bytes = 10;
    CHECK(loom__choose_node(c, 3, &two, LOOM_STRATEGY_NODE, 9, 1, &rr) == 1);
    c[1].local_bytes = 0;
    /* An ineligible affinity node is never chosen. */
    c[0].eligible = 0;
    CHECK(loom__choose_node(c, 3, &two, LOOM_STRATEGY_NODE, 7, 0, &rr) == -1);
    CHECK(loom__choose_node(c, 3, &two, LOOM_STRATEGY_NODE, 7, 1, &rr) == 1);
    c[0].eligible = 1;
    /* A node id nobody has. */
    CHECK(loom__choose_node(c, 3, &two, LOOM_STRATEGY_NODE, 99, 0, &rr) == -1);
    CHECK(loom__choose_node(c, 3, &two, LOOM_STRATEGY_NODE, 99, 1, &rr) == 0);
    CHECK(rr == 0);
}

/* ---- placement groups --------------------------------------------------- */

static int place(loom_pool *pools, int np, const loom_request *b, int nb, int strategy, int idle,
                 int *assign, char *why, size_t whylen)
{
    const loom_pool *ptrs[16];
    REQUIRE(np <= 16);
    for (int i = 0; i < np; i++)
        ptrs[i] = &pools[i];
    return loom__pg_place(ptrs, np, b, nb, strategy, idle, assign, why, whylen);
}

/* Carving each node's bundles in index order (as the head will) succeeds. */
static int carves(const loom_pool *pools, int np, const loom_request *b, int nb,
                  const int *assign, int idle)
{
    for (int node = 0; node < np; node++) {
        loom_pool p = pools[node], bundle;
        if (idle)
            loom__pool_init(&p, pools[node].cpus, pools[node].memory, pools[node].ngpus,
                            pools[node].gpu_memory);
        for (int i = 0; idle && i < pools[node].nres; i++)
            loom__pool_add_res(&p, pools[node].res[i].name, pools[node].res[i].amount);
        loom_grant g;
        for (int j = 0; j < nb; j++)
            if (assign[j] == node && loom__pool_carve(&p, &b[j], &bundle, &g) != 0)
                return 0;
    }
    return 1;
}

static int nodes_used(const int *assign, int nb)
{
    int n = 0;
    for (int j = 0; j < nb; j++) {
        int first = 1;
        for (int k = 0; k < j; k++)
            first &= assign[k] != assign[j];
        n += first;
    }
    return n;
}

static int all_unplaced(const int *assign, int nb)
{
    for (int j = 0; j < nb; j++)
        if (assign[j] != -1)
            return 0;
    return 1;
}

static void test_pg_pack(void)
{
    loom_pool p[3];
    for (int i = 0; i < 3; i++)
        loom__pool_init(&p[i], 4, 16 * GIB, 2, 0);
    loom_pool saved[3];
    memcpy(saved, p, sizeof p);
    loom_request b[4] = {req(2, GIB, 0), req(2, GIB, 0), req(2, GIB, 0), req(1, GIB, 0)};
    int a[5];
    char why[160];
    CHECK_RC(place(p, 3, b, 2, LOOM_PG_PACK, 0, a, why, sizeof why), 0);
    CHECK(a[0] == 0 && a[1] == 0);
    CHECK_RC(place(p, 3, b, 2, LOOM_PG_STRICT_PACK, 0, a, why, sizeof why), 0);
    CHECK(a[0] == 0 && a[1] == 0);
    /* Three of 2 CPUs on 4-CPU nodes: two nodes, the first one filled. */
    CHECK_RC(place(p, 3, b, 3, LOOM_PG_PACK, 0, a, why, sizeof why), 0);
    CHECK(a[0] == 0 && a[1] == 0 && a[2] == 1);
    CHECK_RC(place(p, 3, b, 4, LOOM_PG_PACK, 0, a, why, sizeof why), 0);
    CHECK(nodes_used(a, 4) == 2 && carves(p, 3, b, 4, a, 0));
    CHECK_RC(place(p, 3, b, 3, LOOM_PG_STRICT_PACK, 0, a, why, sizeof why), LOOM_EFULL);
    CHECK(strcmp(why, "STRICT_PACK: no node can hold all 3 bundles together") == 0);
    CHECK(all_unplaced(a, 3));
    CHECK(memcmp(saved, p, sizeof p) == 0); /* the pools are never changed */

    /* Busy now vs idle: node 0 is busy, idle = 1 ignores that. */
    use_cpus(&p[0], 3);
    CHECK_RC(place(p, 3, b, 2, LOOM_PG_STRICT_PACK, 0, a, why, sizeof why), 0);
    CHECK(a[0] == 1 && a[1] == 1);
    CHECK_RC(place(p, 3, b, 2, LOOM_PG_STRICT_PACK, 1, a, why, sizeof why), 0);
    CHECK(a[0] == 0 && a[1] == 0);
    CHECK_RC(place(p, 3, b, 4, LOOM_PG_PACK, 0, a, why, sizeof why), 0);
    CHECK(carves(p, 3, b, 4, a, 0) && a[3] != -1);

    /* Fractional GPUs pack onto one node's devices. */
    loom_request g[4] = {req(0, 0, 0.5), req(0, 0, 0.5), req(0, 0, 0.5), req(0, 0, 0.5)};
    CHECK_RC(place(p, 3, g, 4, LOOM_PG_STRICT_PACK, 0, a, why, sizeof why), 0);
    CHECK(a[0] == 0 && a[1] == 0 && a[2] == 0 && a[3] == 0 && carves(p, 3, g, 4, a, 0));
    loom_request g5[5] = {req(0, 0, 0.5), req(0, 0, 0.5), req(0, 0, 0.5), req(0, 0, 0.5),
                          req(0, 0, 0.5)};
    CHECK_RC(place(p, 3, g5, 5, LOOM_PG_PACK, 0, a, why, sizeof why), 0);
    CHECK(nodes_used(a, 5) == 2 && carves(p, 3, g5, 5, a, 0));
}

static void test_pg_spread(void)
{
    loom_pool p[3];
    for (int i = 0; i < 3; i++)
        loom__pool_init(&p[i], 4, 0, 0, 0);
    loom_request b[5] = {req(1, 0, 0), req(1, 0, 0), req(1, 0, 0), req(1, 0, 0), req(1, 0, 0)};
    int a[5];
    char why[160];
    CHECK_RC(place(p, 3, b, 3, LOOM_PG_SPREAD, 0, a, why, sizeof why), 0);
    CHECK(nodes_used(a, 3) == 3);
    CHECK_RC(place(p, 3, b, 3, LOOM_PG_STRICT_SPREAD, 0, a, why, sizeof why), 0);
    CHECK(nodes_used(a, 3) == 3);
    /* More bundles than nodes: SPREAD still places them, evenly. */
    CHECK_RC(place(p, 3, b, 5, LOOM_PG_SPREAD, 0, a, why, sizeof why), 0);
    CHECK(nodes_used(a, 5) == 3);
    int per[3] = {0};
    for (int j = 0; j < 5; j++)
        per[a[j]]++;
    CHECK(per[0] <= 2 && per[1] <= 2 && per[2] <= 2);
    CHECK_RC(place(p, 3, b, 5, LOOM_PG_STRICT_SPREAD, 0, a, why, sizeof why), LOOM_EFULL);
    CHECK(strcmp(why, "STRICT_SPREAD needs 5 nodes, 3 can hold a bundle") == 0);
    CHECK(all_unplaced(a, 5));
    /* A full node cannot hold a bundle. */
    use_cpus(&p[2], 4);
    CHECK_RC(place(p, 3, b, 3, LOOM_PG_STRICT_SPREAD, 0, a, why, sizeof why), LOOM_EFULL);
    CHECK(strcmp(why, "STRICT_SPREAD needs 3 nodes, 2 can hold a bundle") == 0);
    CHECK_RC(place(p, 3, b, 3, LOOM_PG_STRICT_SPREAD, 1, a, why, sizeof why), 0);
    CHECK_RC(place(p, 3, b, 3, LOOM_PG_SPREAD, 0, a, why, sizeof why), 0);
    CHECK(nodes_used(a, 3) == 2 && a[0] != 2 && a[1] != 2 && a[2] != 2);
}

static void test_pg_backtracking(void)
{
    /* Node 0 is first in array order and holds the big CPU bundle, but only
     * node 0 has the GPU the other bundle needs: greedy fails, the search
     * moves the big one to node 1. */
    loom_pool p[2];
    loom__pool_init(&p[0], 4, 0, 1, 0);
    loom__pool_init(&p[1], 4, 0, 0, 0);
    loom_request b[2] = {req(4, 0, 0), req(2, 0, 1)};
    int a[2];
    char why[160];
    CHECK_RC(place(p, 2, b, 2, LOOM_PG_STRICT_SPREAD, 0, a, why, sizeof why), 0);
    CHECK(a[0] == 1 && a[1] == 0);
    CHECK_RC(place(p, 2, b, 2, LOOM_PG_SPREAD, 0, a, why, sizeof why), 0);
    CHECK(a[0] == 1 && a[1] == 0);

    /* Three nodes can each hold a bundle, but two bundles need the one GPU. */
    loom_pool q[3];
    loom__pool_init(&q[0], 4, 0, 1, 0);
    loom__pool_init(&q[1], 8, 0, 0, 0);
    loom__pool_init(&q[2], 4, 0, 0, 0);
    loom_request c[3] = {req(1, 0, 1), req(1, 0, 1), req(1, 0, 0)};
    int a3[3];
    CHECK_RC(place(q, 3, c, 3, LOOM_PG_STRICT_SPREAD, 0, a3, why, sizeof why), LOOM_EFULL);
    CHECK(strcmp(why, "STRICT_SPREAD: the 3 bundles do not fit on 3 different nodes") == 0);
    CHECK(all_unplaced(a3, 3));
    CHECK_RC(place(q, 3, c, 3, LOOM_PG_SPREAD, 0, a3, why, sizeof why), LOOM_EFULL);
    CHECK(strstr(why, "SPREAD: the 3 bundles do not fit") == why);
    CHECK_RC(place(q, 3, c, 3, LOOM_PG_PACK, 0, a3, why, sizeof why), LOOM_EFULL);
    CHECK(strcmp(why, "PACK: the 3 bundles do not fit on the nodes together") == 0);

    /* A pigeonhole too big to settle: the search gives up within its bound. */
    loom_pool r[16];
    loom_request d[16];
    int ad[16];
    for (int i = 0; i < 16; i++) {
        loom__pool_init(&r[i], 1, 0, i < 10 ? 1 : 0, 0);
        d[i] = req(1, 0, i < 11 ? 1 : 0);
    }
    CHECK_RC(place(r, 16, d, 16, LOOM_PG_STRICT_SPREAD, 0, ad, why, sizeof why), LOOM_EFULL);
    CHECK(strcmp(why, "STRICT_SPREAD: no placement of the 16 bundles found in 100000 steps") == 0);
    CHECK(all_unplaced(ad, 16));
}

static void test_pg_infeasible(void)
{
    loom_pool p[2];
    loom__pool_init(&p[0], 4, 8 * GIB, 1, 0);
    loom__pool_init(&p[1], 4, 8 * GIB, 1, 0);
    loom_request b[2] = {req(1, 0, 0), req(1, 0, 2)};
    int a[3] = {5, 5, 5};
    char why[160];
    for (int s = LOOM_PG_PACK; s <= LOOM_PG_STRICT_SPREAD; s++) {
        CHECK_RC(place(p, 2, b, 2, s, 1, a, why, sizeof why), LOOM_EFULL);
        CHECK(strcmp(why, "no node can hold bundle 1 (needs 2 GPUs, the node has 1)") == 0);
        CHECK(all_unplaced(a, 2));
    }
    /* Now (idle = 0): busy nodes are short of what is free. */
    loom_request c[1] = {req(3, 0, 0)};
    use_cpus(&p[0], 2);
    use_cpus(&p[1], 2);
    CHECK_RC(place(p, 2, c, 1, LOOM_PG_PACK, 0, a, why, sizeof why), LOOM_EFULL);
    CHECK(strcmp(why, "no node can hold bundle 0 (needs 3 CPUs, the node has 2 free)") == 0);
    CHECK_RC(place(p, 2, c, 1, LOOM_PG_PACK, 1, a, why, sizeof why), 0);

    /* No nodes at all, no bundles at all. */
    CHECK_RC(place(p, 0, c, 1, LOOM_PG_SPREAD, 1, a, why, sizeof why), LOOM_EFULL);
    CHECK(strcmp(why, "no node can hold bundle 0 (there are no nodes)") == 0);
    CHECK_RC(place(p, 0, c, 0, LOOM_PG_SPREAD, 1, a, why, sizeof why), 0);

    /* Bad arguments. */
    CHECK_RC(place(p, 2, c, 1, 4, 1, a, why, sizeof why), LOOM_EINVAL);
    CHECK(strcmp(why, "unknown placement strategy 4") == 0);
    CHECK_RC(place(p, 2, c, 1, -1, 1, a, why, sizeof why), LOOM_EINVAL);
    loom_request bad[2] = {req(1, 0, 0), req(1, 0, 1.5)};
    CHECK_RC(place(p, 2, bad, 2, LOOM_PG_PACK, 1, a, why, sizeof why), LOOM_EINVAL);
    CHECK(strstr(why, "bundle 1: ") == why);
    CHECK(all_unplaced(a, 2));
    CHECK_RC(place(p, 2, c, -1, LOOM_PG_PACK, 1, a, why, sizeof why), LOOM_EINVAL);
    static loom_request many[LOOM_PG_MAX_BUNDLES + 1];
    static int amany[LOOM_PG_MAX_BUNDLES + 1];
    CHECK_RC(place(p, 2, many, LOOM_PG_MAX_BUNDLES + 1, LOOM_PG_PACK, 1, amany, why, sizeof why),
             LOOM_EINVAL);
    CHECK(amany[LOOM_PG_MAX_BUNDLES] == -1);
    CHECK_RC(place(p, 2, many, LOOM_PG_MAX_BUNDLES, LOOM_PG_SPREAD, 1, amany, why, sizeof why), 0);
    CHECK(nodes_used(amany, LOOM_PG_MAX_BUNDLES) == 2);
    const loom_pool *holes[2] = {&p[0], NULL};
    CHECK_RC(loom__pg_place(holes, 2, c, 1, LOOM_PG_PACK, 1, a, why, sizeof why), LOOM_EINVAL);
    CHECK_RC(loom__pg_place(holes, 1, c, 1, LOOM_PG_PACK, 1, NULL, NULL, 0), LOOM_EINVAL);
    CHECK_RC(loom__pg_place(holes, 1, c, 1, LOOM_PG_PACK, 1, a, NULL, 0), 0);
}

/* Brute force over every assignment of nb <= 4 bundles to np <= 4 nodes:
 * whether one exists that carves in index order and meets the strategy. */
static int brute_force(const loom_pool *p, int np, const loom_request *b, int nb, int strategy)
{
    int a[4] = {0}, total = 1;
    for (int j = 0; j < nb; j++)
        total *= np;
    for (int code = 0; code < total; code++) {
        for (int j = 0, c = code; j < nb; j++, c /= np)
            a[j] = c % np;
        int used = nodes_used(a, nb);
        if (strategy == LOOM_PG_STRICT_PACK && used != 1)
            continue;
        if (strategy == LOOM_PG_STRICT_SPREAD && used != nb)
            continue;
        if (carves(p, np, b, nb, a, 0))
            return 1;
    }
    return 0;
}

static void test_pg_random_vs_brute_force(void)
{
    int placed = 0, refused = 0, bad = 0;
    for (int iter = 0; iter < 3000; iter++) {
        int np = 1 + rng_below(4), nb = 1 + rng_below(4);
        loom_pool p[4];
        loom_request b[4];
        for (int i = 0; i < np; i++) {
            loom__pool_init(&p[i], rng_below(5), (uint64_t)rng_below(3) * GIB, rng_below(3),
                            rng_below(2) ? 8 * GIB : 0);
            if (rng_below(3) == 0)
                loom__pool_add_res(&p[i], "x", rng_below(3));
            if (rng_below(3) == 0)
                use_cpus(&p[i], p[i].cpus / 2);
        }
        for (int j = 0; j < nb; j++) {
            static const double gpus[] = {0, 0, 0.25, 0.5, 0.75, 1, 2};
            b[j] = req(rng_below(3), (uint64_t)rng_below(2) * GIB, gpus[rng_below(7)]);
            if (b[j].gpus > 0 && rng_below(2))
                b[j].gpu_memory = (uint64_t)(1 + rng_below(4)) * 2 * GIB;
            if (rng_below(3) == 0)
                req_res(&b[j], "x", 1);
        }
        int strategy = rng_below(4), a[4];
        char why[200];
        int rc = place(p, np, b, nb, strategy, 0, a, why, sizeof why);
        int possible = brute_force(p, np, b, nb, strategy);
        if (rc == 0) {
            placed++;
            int used = nodes_used(a, nb);
            bad += !carves(p, np, b, nb, a, 0);
            bad += strategy == LOOM_PG_STRICT_PACK && used != 1;
            bad += strategy == LOOM_PG_STRICT_SPREAD && used != nb;
            /* SPREAD spreads fully whenever that is possible. */
            if (strategy == LOOM_PG_SPREAD && used < nb && nb <= np &&
                brute_force(p, np, b, nb, LOOM_PG_STRICT_SPREAD))
                bad++;
            /* PACK keeps to one node whenever that is possible. */
            if (strategy == LOOM_PG_PACK && used > 1 &&
                brute_force(p, np, b, nb, LOOM_PG_STRICT_PACK))
                bad++;
        } else {
            refused++;
            bad += rc != LOOM_EFULL || !all_unplaced(a, nb) || why[0] == 0;
            bad += possible; /* small cases: the search is complete */
        }
        if (bad) {
            fprintf(stderr, "iteration %d (strategy %s, %d nodes, %d bundles): rc %d, %s\n",
                    iter, loom__pg_strategy_name(strategy), np, nb, rc, why);
            break;
        }
    }
    CHECK(bad == 0);
    CHECK(placed > 300 && refused > 300);
}

static void test_pg_strategy_names(void)
{
    for (int s = LOOM_PG_PACK; s <= LOOM_PG_STRICT_SPREAD; s++)
        CHECK(loom__pg_strategy_parse(loom__pg_strategy_name(s)) == s);
    CHECK(strcmp(loom__pg_strategy_name(LOOM_PG_PACK), "PACK") == 0);
    CHECK(strcmp(loom__pg_strategy_name(LOOM_PG_SPREAD), "SPREAD") == 0);
    CHECK(strcmp(loom__pg_strategy_name(LOOM_PG_STRICT_PACK), "STRICT_PACK") == 0);
    CHECK(strcmp(loom__pg_strategy_name(LOOM_PG_STRICT_SPREAD), "STRICT_SPREAD") == 0);
    CHECK(strcmp(loom__pg_strategy_name(9), "UNKNOWN") == 0);
    CHECK(strcmp(loom__pg_strategy_name(-1), "UNKNOWN") == 0);
    CHECK(loom__pg_strategy_parse("strict_spread") == LOOM_PG_STRICT_SPREAD);
    CHECK(loom__pg_strategy_parse("bogus") == -1);
    CHECK(loom__pg_strategy_parse("") == -1);
    CHECK(loom__pg_strategy_parse(NULL) == -1);
}

int main(void)
{
    test_init_and_add_res();
    test_request_check();
    test_fractional_packing();
    test_whole_gpus();
    test_mixed();
    test_gpu_memory();
    test_custom_res();
    test_could_fit_messages();
    test_give_back_property();
    test_utilization();
    test_carve();
    test_choose_default();
    test_choose_spread();
    test_choose_affinity();
    test_pg_pack();
    test_pg_spread();
    test_pg_backtracking();
    test_pg_infeasible();
    test_pg_random_vs_brute_force();
    test_pg_strategy_names();
    return TEST_DONE();
}
