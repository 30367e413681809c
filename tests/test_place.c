/* tests/test_place.c — the head's placement decisions (scheduler/head_place.c)
 * without starting a process: a `head` built in memory with nodes (CPUs,
 * memory, labels, GPUs, custom resources) and tasks with requests, handed
 * to loom__head_place (where a task runs now) and loom__head_infeasible_reason (why it
 * never could).  Covers the default pack-then-spread policy, SPREAD, hard
 * and soft node affinity, labels, whole and fractional GPUs, custom
 * resources, draining and dead nodes, and the infeasible reasons' text;
 * and that an actor's calls wait while its node rejoins a restarted head.
 * The resource arithmetic itself is tests/test_pool.c's. */
#include "scheduler/head_internal.h"

#include "loom/loom.h"
#include "tests/testutil.h"

#include <stdint.h>

#define GIB ((uint64_t)1 << 30)

/* ---- a cluster in memory ------------------------------------------------ */

typedef struct node_desc {
    uint32_t id;
    double cpus;
    uint64_t memory;
    uint32_t gpus;
    const char *label_key, *label_value; /* NULL: none */
    const char *res_name;                /* NULL: none */
    double res_amount;
} node_desc;

static node *add_node(head *h, const node_desc *d)
{
    node *n = calloc(1, sizeof(*n));
    REQUIRE(n);
    loom_wire_node w;
    memset(&w, 0, sizeof(w));
    loom_wire_label label = {(char *)d->label_key, (char *)d->label_value};
    loom_wire_res res = {(char *)d->res_name, d->res_amount};
    w.id = d->id;
    w.num_cpus = d->cpus;
    w.memory = d->memory;
    w.num_gpus = d->gpus;
    w.gpu_memory = d->gpus ? 16 * GIB : 0;
    if (d->label_key) {
        w.labels = &label;
        w.nlabels = 1;
    }
    if (d->res_name) {
        w.res = &res;
        w.nres = 1;
    }
    n->id = d->id;
    n->alive = 1;
    REQUIRE(loom__head_node_init_resources(h, n, &w) == 0);
    REQUIRE(loom__hmap_put(&h->nodes, &n->id, sizeof(n->id), n) == 0);
    return n;
}

static void free_cluster(head *h)
{
    for (int i = 0; i < h->nnode_list; i++) {
        loom__head_node_info_free(&h->node_list[i]->info);
        free(h->node_list[i]);
    }
    free(h->node_list);
    free(h->cands);
    loom__head_labels_cache_free(h);
    loom__hmap_free(&h->nodes);
    loom__hmap_free(&h->pgs);
    memset(h, 0, sizeof(*h));
}

/* The default cluster: two plain nodes, one labelled with a custom
 * resource, one with GPUs. */
static void default_cluster(head *h)
{
    memset(h, 0, sizeof(*h));
    node_desc d[] = {
        {1, 4, 8 * GIB, 0, NULL, NULL, NULL, 0},
        {2, 4, 8 * GIB, 0, NULL, NULL, NULL, 0},
        {3, 8, 16 * GIB, 0, "zone", "us-east", "tpu", 4},
        {4, 8, 32 * GIB, 2, NULL, NULL, NULL, 0},
    };
    for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); i++) add_node(h, &d[i]);
}

static task new_task(double cpus, uint64_t memory)
{
    task t;
    memset(&t, 0, sizeof(t));
    t.spec.name = "t";
    t.spec.num_cpus = cpus;
    t.spec.memory = memory;
    t.spec.bundle = -1;
    t.bundle = -1;
    return t;
}

/* Where t runs now (its node id; 0: nowhere), taking what it asks for when
 * take is set, as ASSIGN would. */
static uint32_t place_take(head *h, task *t, int take)
{
    loom_request r;
    loom__head_spec_request(&t->spec, &r);
    loom_pool *pool = NULL;
    int bundle = 7;
    node *n = loom__head_place(h, t, &r, &pool, &bundle);
    if (!n) return 0;
    CHECK(bundle == -1);
    CHECK(pool == &n->pool);
    if (take) {
        loom_grant g;
        CHECK_RC(loom__pool_take(pool, &r, &g), 0);
    }
    return n->id;
}

static uint32_t place_only(head *h, task *t)
{
    return place_take(h, t, 0);
}

/* 1 when t is infeasible, with the reason in why. */
static int infeasible(head *h, task *t, char *why, size_t whylen)
{
    loom_request r;
    loom__head_spec_request(&t->spec, &r);
    return loom__head_infeasible_reason(h, t, &r, why, whylen);
}

static int has(const char *text, const char *part)
{
    if (strstr(text, part)) return 1;
    fprintf(stderr, "  \"%s\" lacks \"%s\"\n", text, part);
    return 0;
}

/* ---- tests -------------------------------------------------------------- */

static void test_request(void)
{
    task t = new_task(1.5, 2 * GIB);
    loom_wire_res res[2] = {{"tpu", 2}, {"fpga", 0.5}};
    t.spec.num_gpus = 0.25;
    t.spec.gpu_memory = GIB;
    t.spec.res = res;
    t.spec.nres = 2;
    loom_request r;
    loom__head_spec_request(&t.spec, &r);
    CHECK(r.cpus == 1.5 && r.memory == 2 * GIB && r.gpus == 0.25 && r.gpu_memory == GIB);
    CHECK(r.nres == 2 && !strcmp(r.res[0].name, "tpu") && r.res[0].amount == 2);
    CHECK(!strcmp(r.res[1].name, "fpga") && r.res[1].amount == 0.5);
}

static void test_fits_free_node(void)
{
    head h;
    default_cluster(&h);
    task t = new_task(1, GIB);
    CHECK(place_only(&h, &t) == 1); /* the first node that stays below the pack threshold */
    /* a node with no free CPUs is passed over */
    loom_request all = {.cpus = 4};
    loom_grant g;
    CHECK_RC(loom__pool_take(&h.node_list[0]->pool, &all, &g), 0);
    CHECK(place_only(&h, &t) == 2);
    /* too much memory for nodes 1-3 */
    task big = new_task(1, 20 * GIB);
    CHECK(place_only(&h, &big) == 4);
    /* dead, draining and reconciling nodes are not candidates */
    h.node_list[1]->draining = 1;
    CHECK(place_only(&h, &t) == 3);
    h.node_list[2]->alive = 0;
    CHECK(place_only(&h, &t) == 4);
    h.node_list[3]->reconciling = 1;
    CHECK(place_only(&h, &t) == 0);
    free_cluster(&h);
}

static void test_pack_and_spread(void)
{
    head h;
    default_cluster(&h);
    /* default: pack node 1 while it stays below the threshold (half its
     * CPUs busy), then the next node */
    task t = new_task(0.5, 0);
    for (int i = 0; i < 3; i++) CHECK(place_take(&h, &t, 1) == 1); /* 1.5 of 4 */
    CHECK(place_take(&h, &t, 1) == 2);                              /* 2 of 4 is not below */
    CHECK(place_take(&h, &t, 1) == 2);
    free_cluster(&h);

    /* default, every node past the threshold: the least utilized */
    default_cluster(&h);
    loom_request busy[4] = {{.cpus = 3}, {.cpus = 2}, {.cpus = 7}, {.cpus = 5}};
    loom_grant g;
    for (int i = 0; i < 4; i++) CHECK_RC(loom__pool_take(&h.node_list[i]->pool, &busy[i], &g), 0);
    CHECK(place_only(&h, &t) == 2); /* 2.5 of 4 busy after it: the least */
    free_cluster(&h);

    /* SPREAD: the least utilized node each time, so no node gets a second
     * task before every node has one */
    default_cluster(&h);
    task s = new_task(1, 0);
    s.spec.strategy = LOOM_SCHED_SPREAD;
    int seen[5] = {0};
    for (int i = 0; i < 4; i++) {
        uint32_t id = place_take(&h, &s, 1);
        REQUIRE(id >= 1 && id <= 4);
        seen[id]++;
    }
    CHECK(seen[1] == 1 && seen[2] == 1 && seen[3] == 1 && seen[4] == 1);
    free_cluster(&h);
}

static void test_affinity(void)
{
    head h;
    default_cluster(&h);
    char why[1024];
    task t = new_task(1, 0);
    t.spec.strategy = LOOM_SCHED_NODE;
    t.spec.affinity_node = 2;
    CHECK(place_only(&h, &t) == 2);

    /* hard: node 2 busy means wait, not elsewhere (and it is not infeasible) */
    loom_request all = {.cpus = 4};
    loom_grant g;
    CHECK_RC(loom__pool_take(&h.node_list[1]->pool, &all, &g), 0);
    CHECK(place_only(&h, &t) == 0);
    CHECK(infeasible(&h, &t, why, sizeof(why)) == 0);
    /* soft: falls back to the default policy */
    t.spec.soft = 1;
    CHECK(place_only(&h, &t) == 1);
    t.spec.soft = 0;

    /* hard affinity to a node that can never run it */
    task big = new_task(6, 0);
    big.spec.strategy = LOOM_SCHED_NODE;
    big.spec.affinity_node = 2;
    CHECK(place_only(&h, &big) == 0);
    CHECK(infeasible(&h, &big, why, sizeof(why)) == 1);
    CHECK(has(why, "node 2 needs 6 CPUs, the node has 4"));
    big.spec.soft = 1; /* soft: any node with 6 CPUs will do */
    CHECK(infeasible(&h, &big, why, sizeof(why)) == 0);
    CHECK(place_only(&h, &big) == 3);

    t.spec.affinity_node = 9;
    CHECK(infeasible(&h, &t, why, sizeof(why)) == 1);
    CHECK(has(why, "it must run on node 9, which is not in the cluster"));
    t.spec.affinity_node = 1;
    h.node_list[0]->draining = 1;
    CHECK(place_only(&h, &t) == 0);
    CHECK(infeasible(&h, &t, why, sizeof(why)) == 1);
    CHECK(has(why, "it must run on node 1, which is draining"));
    h.node_list[0]->draining = 0;
    h.node_list[0]->alive = 0;
    CHECK(infeasible(&h, &t, why, sizeof(why)) == 1);
    CHECK(has(why, "it must run on node 1, which is dead"));

    /* hard affinity to a node without the labels asked for */
    loom_wire_label zone = {"zone", "us-east"};
    t.spec.affinity_node = 2;
    t.spec.labels = &zone;
    t.spec.nlabels = 1;
    CHECK(infeasible(&h, &t, why, sizeof(why)) == 1);
    CHECK(has(why, "it must run on node 2, which lacks the labels it asks for"));
    free_cluster(&h);
}

static void test_labels(void)
{
    head h;
    default_cluster(&h);
    char why[1024];
    task t = new_task(1, 0);
    loom_wire_label zone = {"zone", "us-east"};
    t.spec.labels = &zone;
    t.spec.nlabels = 1;
    CHECK(place_only(&h, &t) == 3);
    CHECK(infeasible(&h, &t, why, sizeof(why)) == 0);

    loom_wire_label other = {"zone", "eu-west"};
    t.spec.labels = &other;
    CHECK(place_only(&h, &t) == 0);
    CHECK(infeasible(&h, &t, why, sizeof(why)) == 1);
    CHECK(has(why, "no node has the labels zone=eu-west"));

    /* every label must match */
    loom_wire_label both[2] = {{"zone", "us-east"}, {"rack", "7"}};
    t.spec.labels = both;
    t.spec.nlabels = 2;
    CHECK(place_only(&h, &t) == 0);
    CHECK(infeasible(&h, &t, why, sizeof(why)) == 1);
    CHECK(has(why, "no node has the labels zone=us-east rack=7"));

    /* the labelled node is too small: the reason is about its CPUs */
    task big = new_task(16, 0);
    big.spec.labels = &zone;
    big.spec.nlabels = 1;
    CHECK(infeasible(&h, &big, why, sizeof(why)) == 1);
    CHECK(has(why, "node 3 needs 16 CPUs, the node has 8"));
    free_cluster(&h);
}

static void test_gpus(void)
{
    head h;
    default_cluster(&h);
    char why[1024];
    task t = new_task(0.5, 0);
    t.spec.num_gpus = 0.5;
    /* four halves of the two GPUs of node 4, then none left for now */
    for (int i = 0; i < 4; i++) CHECK(place_take(&h, &t, 1) == 4);
    CHECK(place_only(&h, &t) == 0);
    CHECK(infeasible(&h, &t, why, sizeof(why)) == 0);

    task whole = new_task(1, 0);
    whole.spec.num_gpus = 2;
    CHECK(place_only(&h, &whole) == 0); /* busy, but it could fit */
    CHECK(infeasible(&h, &whole, why, sizeof(why)) == 0);
    whole.spec.num_gpus = 3;
    CHECK(infeasible(&h, &whole, why, sizeof(why)) == 1);
    CHECK(has(why, "node 1 needs 3 GPUs, the node has none"));
    CHECK(has(why, "node 4 needs 3 GPUs"));
    free_cluster(&h);

    default_cluster(&h);
    task frac = new_task(1, 0);
    frac.spec.num_gpus = 0.25;
    CHECK(place_only(&h, &frac) == 4);
    frac.spec.gpu_memory = 64 * GIB; /* more than any GPU has */
    CHECK(place_only(&h, &frac) == 0);
    CHECK(infeasible(&h, &frac, why, sizeof(why)) == 1);
    CHECK(has(why, "node 4 needs"));
    free_cluster(&h);
}

static void test_custom_resources(void)
{
    head h;
    default_cluster(&h);
    char why[1024];
    task t = new_task(1, 0);
    loom_wire_res tpu = {"tpu", 2};
    t.spec.res = &tpu;
    t.spec.nres = 1;
    CHECK(place_take(&h, &t, 1) == 3);
    CHECK(place_take(&h, &t, 1) == 3);
    CHECK(place_only(&h, &t) == 0); /* all 4 taken */
    CHECK(infeasible(&h, &t, why, sizeof(why)) == 0);

    loom_wire_res lots = {"tpu", 8};
    t.spec.res = &lots;
    CHECK(infeasible(&h, &t, why, sizeof(why)) == 1);
    CHECK(has(why, "node 3 needs 8 of resource 'tpu', the node has 4"));
    CHECK(has(why, "node 1 needs 8 of resource 'tpu', the node has none"));
    free_cluster(&h);
}

static void test_infeasible_reasons(void)
{
    head h;
    char why[1024];
    memset(&h, 0, sizeof(h));
    task t = new_task(64, 0);
    /* no live node yet: daemons may still be joining */
    CHECK(infeasible(&h, &t, why, sizeof(why)) == 0);

    default_cluster(&h);
    CHECK(place_only(&h, &t) == 0);
    CHECK(infeasible(&h, &t, why, sizeof(why)) == 1);
    CHECK(has(why, "node 1 needs 64 CPUs, the node has 4; node 2 needs 64 CPUs"));
    CHECK(has(why, "node 4 needs 64 CPUs, the node has 8"));

    task mem = new_task(1, 64 * GIB);
    CHECK(infeasible(&h, &mem, why, sizeof(why)) == 1);
    CHECK(has(why, "node 1 needs 65536 MiB of memory, the node has 8192 MiB"));

    /* a draining node does not count */
    task mid = new_task(6, 0);
    CHECK(infeasible(&h, &mid, why, sizeof(why)) == 0);
    h.node_list[2]->draining = 1;
    h.node_list[3]->draining = 1;
    CHECK(infeasible(&h, &mid, why, sizeof(why)) == 1);
    CHECK(has(why, "node 1 needs 6 CPUs"));

    /* a placement group that is not there */
    task inpg = new_task(1, 0);
    inpg.spec.has_pg = 1;
    memset(inpg.spec.pg, 0xab, sizeof(inpg.spec.pg));
    CHECK(place_only(&h, &inpg) == 0);
    CHECK(infeasible(&h, &inpg, why, sizeof(why)) == 1);
    CHECK(has(why, "its placement group does not exist (removed?)"));
    free_cluster(&h);
}

/* A node that rejoined a restarted head and has not yet listed what it
 * still runs gets no actor call: one handed over before that list would be
 * missing from it, taken for lost, and run a second time. */
static void test_actor_calls_wait_for_rejoin(void)
{
    head h;
    default_cluster(&h);
    node *n = h.node_list[0];
    n->reconciling = 1;
    task *t = calloc(1, sizeof(*t));
    REQUIRE(t);
    t->id[0] = 7;
    t->state = T_QUEUED;
    t->caller = 1;
    t->spec.actor_op = LOOM_ACTOR_CALL;
    REQUIRE(loom__hmap_put(&h.tasks, t->id, 16, t) == 0);
    uint8_t calls[1][16];
    memcpy(calls[0], t->id, 16);
    actor a;
    memset(&a, 0, sizeof(a));
    a.state = A_ALIVE;
    a.node = n->id;
    a.cls = "Counter";
    a.name = "";
    a.calls = calls;
    a.ncalls = a.cap_calls = 1;
    loom__head_actor_dispatch(&h, &a);
    CHECK(t->state == T_QUEUED);
    CHECK(a.ncalls == 1);
    CHECK(a.running == 0);
    loom__hmap_free(&h.tasks);
    free(t);
    free_cluster(&h);
}

int main(void)
{
    test_request();
    test_fits_free_node();
    test_pack_and_spread();
    test_affinity();
    test_labels();
    test_gpus();
    test_custom_resources();
    test_infeasible_reasons();
    test_actor_calls_wait_for_rejoin();
    return TEST_DONE();
}
