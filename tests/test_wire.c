/* tests/test_wire.c — the wire codec: every message type round-trips, and
 * every malformed frame (truncated, wrong version, unknown type, wrong field
 * count, wrong field types, trailing bytes) is rejected with LOOM_EPROTO. */
#include <string.h>
#include "runtime/hmap.h"
#include "runtime/ids.h"
#include "runtime/wire.h"
#include "testutil.h"
#include "wire_golden.h"

static loom_pack *pk;
static const char *corpus_dir; /* --write-corpus DIR: save one frame per type */

static void save_frame(int type)
{
    if (!corpus_dir) return;
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s.bin", corpus_dir, loom__msg_type_name(type));
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(loom_pack_data(pk), 1, loom_pack_size(pk), f);
    fclose(f);
}

static int roundtrip(const loom_msg *m, loom_msg *out)
{
    REQUIRE(loom__wire_encode(m, pk) == 0);
    char err[256];
    return loom__wire_decode(loom_pack_data(pk), loom_pack_size(pk), out, err, sizeof(err));
}

static void make_task(loom_wire_task *t, loom_wire_arg *args, loom_wire_loc *locs)
{
    static char *argv[] = {"sh", "-c", "echo hi"};
    static char *env[] = {"A=1"};
    static char *outs[] = {"out.txt"};
    memset(t, 0, sizeof(*t));
    memset(t->task_id, 7, 16);
    t->kind = LOOM_TASK_COMMAND;
    t->name = "cmd";
    t->function = "";
    t->argv = argv;
    t->argc = 3;
    t->env = env;
    t->nenv = 1;
    t->cwd = "/tmp";
    t->outputs = outs;
    t->noutputs = 1;
    t->num_cpus = 1.5;
    t->memory = 1 << 20;
    memset(&args[0], 0, sizeof(args[0]));
    args[0].kind = LOOM_WARG_VALUE;
    args[0].value.p = (const uint8_t *)"abc";
    args[0].value.n = 3;
    memset(&args[1], 0, sizeof(args[1]));
    args[1].kind = LOOM_WARG_REF;
    memset(args[1].ref.id, 9, LOOM_ID_LEN);
    args[1].size = 123456;
    locs[0].node = 3;
    locs[0].addr = "127.0.0.1:5000";
    args[1].locs = locs;
    args[1].nlocs = 1;
    t->args = args;
    t->nargs = 2;
    static loom_wire_res res[] = {{"nvlink", 1}, {"tpu", 0.5}};
    static loom_wire_label labels[] = {{"zone", "a"}, {"gpu", ""}};
    t->num_gpus = 0.25;
    t->gpu_memory = 1 << 30;
    t->res = res;
    t->nres = 2;
    t->labels = labels;
    t->nlabels = 2;
    t->strategy = LOOM_SCHED_NODE;
    t->affinity_node = 4;
    t->soft = 1;
    t->has_pg = 1;
    memset(t->pg, 0xAB, 16);
    t->bundle = 2;
    t->gpu_ids = "0";
}

static void test_task_roundtrip(void)
{
    loom_wire_task t;
    loom_wire_arg args[2];
    loom_wire_loc locs[1];
    make_task(&t, args, locs);
    loom_msg m, d;
    loom__msg_init(&m, LOOM_MSG_SUBMIT, 77);
    m.job_name = "job";
    m.detached = 1;
    m.tasks = &t;
    m.ntasks = 1;
    CHECK_RC(roundtrip(&m, &d), 0);
    CHECK(d.type == LOOM_MSG_SUBMIT && d.req == 77 && d.detached == 1 && !strcmp(d.job_name, "job"));
    REQUIRE(d.ntasks == 1);
    loom_wire_task *x = &d.tasks[0];
    CHECK(x->kind == LOOM_TASK_COMMAND && x->argc == 3 && !strcmp(x->argv[2], "echo hi"));
    CHECK(x->nenv == 1 && !strcmp(x->env[0], "A=1") && !strcmp(x->cwd, "/tmp"));
    CHECK(x->noutputs == 1 && !strcmp(x->outputs[0], "out.txt"));
    CHECK(x->num_cpus == 1.5 && x->memory == 1 << 20);
    CHECK(x->num_gpus == 0.25 && x->gpu_memory == 1 << 30 && x->nres == 2 && x->res[1].amount == 0.5);
    CHECK(!strcmp(x->res[0].name, "nvlink") && x->nlabels == 2 && !strcmp(x->labels[0].value, "a"));
    CHECK(x->strategy == LOOM_SCHED_NODE && x->affinity_node == 4 && x->soft && x->has_pg);
    CHECK(x->pg[15] == 0xAB && x->bundle == 2 && !strcmp(x->gpu_ids, "0") && x->actor_op == 0);
    REQUIRE(x->nargs == 2);
    CHECK(x->args[0].kind == LOOM_WARG_VALUE && x->args[0].value.n == 3 && !memcmp(x->args[0].value.p, "abc", 3));
    CHECK(x->args[1].kind == LOOM_WARG_REF && x->args[1].size == 123456 && x->args[1].ref.id[5] == 9);
    CHECK(x->args[1].nlocs == 1 && x->args[1].locs[0].node == 3 && !strcmp(x->args[1].locs[0].addr, "127.0.0.1:5000"));
    /* deep copy survives freeing the message */
    loom_arena a = {0};
    loom_wire_task copy;
    CHECK_RC(loom__wire_task_copy(&a, &copy, x), 0);
    loom__msg_free(&d);
    CHECK(!strcmp(copy.argv[0], "sh") && copy.args[0].value.n == 3 && !memcmp(copy.args[0].value.p, "abc", 3));
    CHECK(copy.nres == 2 && !strcmp(copy.res[1].name, "tpu") && !strcmp(copy.labels[0].key, "zone"));
    loom__arena_free(&a);
}

static void test_actor_task(void)
{
    loom_wire_task t;
    memset(&t, 0, sizeof(t));
    memset(t.task_id, 3, 16);
    t.kind = LOOM_TASK_FUNCTION;
    t.name = t.function = "add";
    t.actor_op = LOOM_ACTOR_CALL;
    memset(t.actor, 5, 16);
    t.bundle = -1;
    loom_msg m, d;
    loom__msg_init(&m, LOOM_MSG_SUBMIT, 1);
    m.job_name = "j";
    m.tasks = &t;
    m.ntasks = 1;
    CHECK_RC(roundtrip(&m, &d), 0);
    CHECK(d.ntasks == 1 && d.tasks[0].actor_op == LOOM_ACTOR_CALL && d.tasks[0].actor[7] == 5);
    CHECK(d.tasks[0].bundle == -1 && !d.tasks[0].has_pg);
    loom__msg_free(&d);
    /* a call needs no library, a creation does; names with "__" are refused */
    t.actor_op = LOOM_ACTOR_CREATE;
    CHECK(roundtrip(&m, &d) == LOOM_EPROTO);
    t.actor_op = LOOM_ACTOR_CALL;
    t.function = "a__b";
    CHECK(roundtrip(&m, &d) == LOOM_EPROTO);
    t.function = "add";
    t.num_gpus = 1.5;
    CHECK(roundtrip(&m, &d) == LOOM_EPROTO);
    t.num_gpus = 2;
    CHECK_RC(roundtrip(&m, &d), 0);
    loom__msg_free(&d);
    t.num_gpus = 0;
    t.gpu_memory = 10;
    CHECK(roundtrip(&m, &d) == LOOM_EPROTO);
}

static void test_every_type(void)
{
    for (int type = 1; type < LOOM_MSG_TYPE_MAX; type++) {
        loom_msg m, d;
        loom__msg_init(&m, type, 5);
        loom_wire_task t;
        loom_wire_arg args[2];
        loom_wire_loc locs[1];
        loom_wire_res nres[] = {{"nvlink", 2}};
        loom_wire_label nlab[] = {{"zone", "b"}};
        loom_wire_node node = {.id = 1, .hostname = "h", .data_addr = "a:1", .store_dir = "/s",
                               .spill_dir = "/p", .num_cpus = 2, .memory = 3, .capacity = 4,
                               .num_gpus = 2, .gpu_memory = 80, .res = nres, .nres = 1,
                               .labels = nlab, .nlabels = 1};
        loom_wire_bundle bundle = {.num_cpus = 1, .num_gpus = 0.5, .res = nres, .nres = 1};
        m.bundles = &bundle;
        m.nbundles = 1;
        loom_wire_output out = {.index = 0, .size = 2, .value = {(const uint8_t *)"ok", 2}};
        loom_ref refs[2];
        memset(refs, 1, sizeof(refs));
        make_task(&t, args, locs);
        m.role = LOOM_ROLE_DRIVER;
        m.secret = m.hostname = m.name = m.text = "x"; /* every type: all string slots */
        m.refs = refs;
        m.nrefs = 2;
        m.locs = locs;
        m.nlocs = 1;
        m.tasks = &t;
        m.ntasks = 1;
        m.outputs = &out;
        m.noutputs = 1;
        m.nodes = &node;
        m.nnodes = 1;
        if (type == LOOM_MSG_CHUNK || type == LOOM_MSG_PUSH) {
            m.offset = 0;
            m.total = 2;
            m.data.p = (const uint8_t *)"ok";
            m.data.n = 2;
        }
        int rc = roundtrip(&m, &d);
        CHECK_RC(rc, 0);
        if (rc) {
            fprintf(stderr, "  type %s\n", loom__msg_type_name(type));
            continue;
        }
        CHECK(d.type == type && d.req == 5);
        save_frame(type);
        /* every strict prefix of the frame is rejected, never read past */
        size_t n = loom_pack_size(pk);
        uint8_t *copy = malloc(n);
        memcpy(copy, loom_pack_data(pk), n);
        for (size_t cut = 0; cut < n; cut++) {
            loom_msg x;
            uint8_t *prefix = malloc(cut ? cut : 1);
            memcpy(prefix, copy, cut);
            int r = loom__wire_decode(prefix, cut, &x, NULL, 0);
            CHECK(r == LOOM_EPROTO);
            if (!r) loom__msg_free(&x);
            free(prefix);
        }
        free(copy);
        loom__msg_free(&d);
    }
}

/* ---- golden frames ---------------------------------------------------------
 * For every message type, a message with distinctive values in all its fields
 * and the exact bytes protocol version 1 encodes it to (tests/wire_golden.h,
 * written by `test_wire --write-golden FILE` from the codec of the time the
 * frames were recorded).  Encoding must give exactly those bytes, decoding them
 * must give back the same fields: a change to the codec that moves a byte on
 * the wire fails here. */

typedef struct golden_parts {
    loom_wire_task tasks[2];
    loom_wire_arg args[2];
    loom_wire_loc arg_locs[1];
    loom_wire_loc locs[2];
    loom_ref refs[2];
    loom_wire_output outputs[2];
    loom_wire_node nodes[2];
    loom_wire_bundle bundles[2];
} golden_parts;

static void golden_actor_task(loom_wire_task *t)
{
    memset(t, 0, sizeof(*t));
    for (int i = 0; i < 16; i++) t->task_id[i] = (uint8_t)(0x30 + i);
    t->kind = LOOM_TASK_FUNCTION;
    t->name = "counter";
    t->lib.kind = LOOM_WARG_REF;
    for (int i = 0; i < LOOM_ID_LEN; i++) t->lib.ref.id[i] = (uint8_t)(0x50 + i);
    t->lib.size = 4242;
    t->function = "Counter";
    t->cwd = "";
    t->num_cpus = 0.5;
    t->memory = 777;
    t->bundle = -1;
    t->gpu_ids = "1,2";
    t->max_retries = 5;
    t->retry_on_error = 1;
    t->actor_op = LOOM_ACTOR_CREATE;
    for (int i = 0; i < 16; i++) t->actor[i] = (uint8_t)(0x60 + i);
    t->max_concurrency = 4;
    t->detached = 1;
    t->actor_name = "cnt";
    t->max_restarts = 7;
    t->max_task_retries = 3;
}

/* Fill every member of m with a distinctive value, within what each type's
 * decoder accepts. */
static void golden_msg(int type, loom_msg *m, golden_parts *g)
{
    static loom_wire_res res[] = {{"nvlink", 2}, {"tpu", 0.75}};
    static loom_wire_label labels[] = {{"zone", "b"}, {"rack", ""}};
    loom__msg_init(m, type, 0x1234567);
    make_task(&g->tasks[0], g->args, g->arg_locs);
    golden_actor_task(&g->tasks[1]);
    g->locs[0] = (loom_wire_loc){.node = 11, .addr = "10.0.0.1:7001"};
    g->locs[1] = (loom_wire_loc){.node = 12, .addr = "10.0.0.2:7002"};
    memset(&g->refs[0], 0x11, sizeof(g->refs[0]));
    memset(&g->refs[1], 0x22, sizeof(g->refs[1]));
    g->outputs[0] = (loom_wire_output){.index = 0, .size = 2, .value = {(const uint8_t *)"ok", 2}};
    g->outputs[1] = (loom_wire_output){.index = 3, .size = 1u << 24};
    g->nodes[0] = (loom_wire_node){.id = 1, .hostname = "h1", .data_addr = "a:1", .store_dir = "/s1",
                                   .spill_dir = "/p1", .num_cpus = 2.5, .memory = 3, .capacity = 4,
                                   .num_gpus = 2, .gpu_memory = 80, .res = res, .nres = 2,
                                   .labels = labels, .nlabels = 2};
    g->nodes[1] = (loom_wire_node){.id = 2, .hostname = "h2", .data_addr = "a:2", .store_dir = "/s2",
                                   .spill_dir = "", .num_cpus = 64, .memory = 5ull << 33,
                                   .capacity = 6ull << 34};
    g->bundles[0] = (loom_wire_bundle){.num_cpus = 1, .num_gpus = 0.5, .res = res, .nres = 1};
    g->bundles[1] = (loom_wire_bundle){.num_cpus = 0, .memory = 1u << 30, .num_gpus = 2,
                                       .gpu_memory = 9};
    m->code = -1234567;
    m->role = LOOM_ROLE_NODE;
    /* The scalar slots are shared by many types: each is written through one
     * of its names (all of a slot's names are the same member), whatever the
     * type, and the schema picks the ones the type carries. */
    m->pid = 0xBEEF01;                  /* = assigned_id, node */
    m->detached = 3;                    /* = keep, strategy */
    m->store_used = 0x0102030405ull;    /* = size, output, log_size, offset, wait_ms */
    m->running = 0x0A0B0C0D0Eull;       /* = length, total, limit */
    m->secret = "s3cret";
    m->hostname = "host-h";
    m->name = "name-n";                 /* = job_name, job, key */
    m->text = "text-t";                 /* = label, task_name */
    for (int i = 0; i < LOOM_ID_LEN; i++) m->ref.id[i] = (uint8_t)(0x40 + i);
    m->data = (loom_bytes){(const uint8_t *)"data-bytes", 10};
    m->refs = g->refs;
    m->nrefs = 2;
    m->locs = g->locs;
    m->nlocs = 2;
    m->tasks = g->tasks;
    m->ntasks = type == LOOM_MSG_ASSIGN || type == LOOM_MSG_RUN ? 1 : 2;
    m->outputs = g->outputs;
    m->noutputs = 2;
    m->nodes = g->nodes;
    m->nnodes = type == LOOM_MSG_HELLO ? 1 : 2;
    m->bundles = g->bundles;
    m->nbundles = 2;
    if (type == LOOM_MSG_PUT_DONE) m->size = m->data.n;   /* inline bytes match the size */
}

static char *to_hex(const uint8_t *p, size_t n)
{
    char *s = malloc(2 * n + 1);
    REQUIRE(s);
    for (size_t i = 0; i < n; i++) snprintf(s + 2 * i, 3, "%02x", p[i]);
    s[2 * n] = 0;
    return s;
}

/* Write tests/wire_golden.h: one hex string per type, the current encoding. */
static int write_golden(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    fprintf(f, "/* tests/wire_golden.h — the bytes of protocol version 1: for each message\n"
               " * type, how golden_msg() in test_wire.c encodes (written by\n"
               " * `test_wire --write-golden`; never regenerate it to make a codec change\n"
               " * pass: a change here is a protocol change). */\n"
               "static const char *const wire_golden[] = {\n");
    for (int type = 1; type < LOOM_MSG_TYPE_MAX; type++) {
        loom_msg m;
        golden_parts g;
        golden_msg(type, &m, &g);
        REQUIRE(loom__wire_encode(&m, pk) == 0);
        char *hex = to_hex(loom_pack_data(pk), loom_pack_size(pk));
        fprintf(f, "    [%d] = /* %s */\n", type, loom__msg_type_name(type));
        size_t len = strlen(hex);
        for (size_t i = 0; i < len; i += 96)
            fprintf(f, "        \"%.*s\"%s\n", (int)(len - i < 96 ? len - i : 96), hex + i,
                    i + 96 >= len ? "," : "");
        free(hex);
    }
    fprintf(f, "};\n");
    return fclose(f) != 0;
}

static size_t from_hex(const char *hex, uint8_t **out)
{
    size_t n = strlen(hex) / 2;
    uint8_t *p = malloc(n ? n : 1);
    REQUIRE(p);
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        REQUIRE(sscanf(hex + 2 * i, "%2x", &v) == 1);
        p[i] = (uint8_t)v;
    }
    *out = p;
    return n;
}

/* A decoded scalar is the value built or, for a member its type does not
 * carry, zero.  Generic over the types: each shared slot is compared through
 * one of its names (see golden_msg). */
#define SAME_OR_ZERO(d, m, f) ((d)->f == (m)->f || (d)->f == 0)

static void check_golden_fields(const loom_msg *m, const loom_msg *d)
{
    CHECK(d->type == m->type && d->req == m->req);
    CHECK(SAME_OR_ZERO(d, m, code) && SAME_OR_ZERO(d, m, role) && SAME_OR_ZERO(d, m, pid));
    CHECK(SAME_OR_ZERO(d, m, detached) && SAME_OR_ZERO(d, m, store_used) && SAME_OR_ZERO(d, m, running));
    CHECK(!d->secret || !strcmp(d->secret, m->secret));
    CHECK(!d->hostname || !strcmp(d->hostname, m->hostname));
    CHECK(!d->name || !strcmp(d->name, m->name));
    CHECK(!d->text || !strcmp(d->text, m->text));
    CHECK(!d->data.n || (d->data.n == m->data.n && !memcmp(d->data.p, m->data.p, m->data.n)));
    CHECK(SAME_OR_ZERO(d, m, nrefs) && SAME_OR_ZERO(d, m, nlocs) && SAME_OR_ZERO(d, m, ntasks));
    CHECK(SAME_OR_ZERO(d, m, noutputs) && SAME_OR_ZERO(d, m, nnodes) && SAME_OR_ZERO(d, m, nbundles));
}

/* The per-message names of the shared members read what golden_msg() wrote
 * through one name per shared slot. */
static void check_golden_names(const loom_msg *d)
{
    const uint64_t u0 = 0x0102030405ull, u1 = 0x0A0B0C0D0Eull;
    switch (d->type) {
    case LOOM_MSG_HELLO: CHECK(d->pid == 0xBEEF01 && d->role == LOOM_ROLE_NODE); break;
    case LOOM_MSG_WELCOME: CHECK(d->assigned_id == 0xBEEF01); break;
    case LOOM_MSG_HEARTBEAT: CHECK(d->store_used == u0 && d->running == u1); break;
    case LOOM_MSG_SUBMIT:
        CHECK(!strcmp(d->job_name, "name-n") && d->detached == 3 && !strcmp(d->label, "text-t"));
        break;
    case LOOM_MSG_SUBMITTED: case LOOM_MSG_JOB_INFO: case LOOM_MSG_JOB_DELETE:
        CHECK(!strcmp(d->job, "name-n"));
        break;
    case LOOM_MSG_PUT_DONE: CHECK(d->size == 10 && d->node == 0xBEEF01 && d->keep == 3); break;
    case LOOM_MSG_OBJ_READY: case LOOM_MSG_OBJ_ADDED: CHECK(d->size == u0); break;
    case LOOM_MSG_JOB_REF:
        CHECK(!strcmp(d->job, "name-n") && !strcmp(d->task_name, "text-t") && d->output == u0);
        break;
    case LOOM_MSG_TASK_DONE: CHECK(d->log_size == u0 && !strcmp(d->text, "text-t")); break;
    case LOOM_MSG_FETCH: CHECK(d->offset == u0 && d->length == u1); break;
    case LOOM_MSG_CHUNK: case LOOM_MSG_PUSH: CHECK(d->offset == u0 && d->total == u1); break;
    case LOOM_MSG_KV_PUT: case LOOM_MSG_KV_DEL: CHECK(!strcmp(d->key, "name-n")); break;
    case LOOM_MSG_KV_GET: CHECK(!strcmp(d->key, "name-n") && d->wait_ms == u0); break;
    case LOOM_MSG_PG_CREATE: CHECK(!strcmp(d->name, "name-n") && d->strategy == 3); break;
    case LOOM_MSG_DRAIN: CHECK(d->node == 0xBEEF01); break;
    case LOOM_MSG_JOBS: CHECK(!strcmp(d->label, "text-t") && d->offset == u0 && d->limit == u1); break;
    default: break;
    }
}

/* Every type encodes to its recorded bytes; the recorded bytes decode, and the
 * decoded message encodes to them again (so no field was lost or moved). */
static void test_golden(void)
{
    REQUIRE(sizeof(wire_golden) / sizeof(wire_golden[0]) == LOOM_MSG_TYPE_MAX);
    for (int type = 1; type < LOOM_MSG_TYPE_MAX; type++) {
        if (!wire_golden[type]) {
            fprintf(stderr, "  no golden frame for %s\n", loom__msg_type_name(type));
            CHECK(wire_golden[type] != NULL);
            continue;
        }
        loom_msg m, d;
        golden_parts g;
        golden_msg(type, &m, &g);
        REQUIRE(loom__wire_encode(&m, pk) == 0);
        char *hex = to_hex(loom_pack_data(pk), loom_pack_size(pk));
        if (strcmp(hex, wire_golden[type]))
            fprintf(stderr, "  %s encodes to\n    %s\n  want\n    %s\n", loom__msg_type_name(type), hex,
                    wire_golden[type]);
        CHECK(!strcmp(hex, wire_golden[type]));
        free(hex);
        uint8_t *frame;
        size_t n = from_hex(wire_golden[type], &frame);
        char err[256];
        int rc = loom__wire_decode(frame, n, &d, err, sizeof(err));
        CHECK_RC(rc, 0);
        if (rc) {
            fprintf(stderr, "  %s: %s\n", loom__msg_type_name(type), err);
            free(frame);
            continue;
        }
        check_golden_fields(&m, &d);
        check_golden_names(&d);
        REQUIRE(loom__wire_encode(&d, pk) == 0);
        CHECK(loom_pack_size(pk) == n && !memcmp(loom_pack_data(pk), frame, n));
        loom__msg_free(&d);
        free(frame);
    }
}

static void test_rejections(void)
{
    loom_msg d;
    char err[256];
    /* not an array */
    loom_pack_reset(pk);
    loom_pack_i64(pk, 5);
    CHECK_RC(loom__wire_decode(loom_pack_data(pk), loom_pack_size(pk), &d, err, sizeof(err)), LOOM_EPROTO);
    /* wrong version */
    loom_pack_reset(pk);
    loom_pack_array(pk, 3);
    loom_pack_u64(pk, 99);
    loom_pack_u64(pk, LOOM_MSG_OK);
    loom_pack_u64(pk, 0);
    CHECK_RC(loom__wire_decode(loom_pack_data(pk), loom_pack_size(pk), &d, err, sizeof(err)), LOOM_EPROTO);
    CHECK(strstr(err, "version") != NULL);
    /* unknown type */
    loom_pack_reset(pk);
    loom_pack_array(pk, 3);
    loom_pack_u64(pk, LOOM_PROTO_VERSION);
    loom_pack_u64(pk, 9999);
    loom_pack_u64(pk, 0);
    CHECK_RC(loom__wire_decode(loom_pack_data(pk), loom_pack_size(pk), &d, err, sizeof(err)), LOOM_EPROTO);
    CHECK(strstr(err, "unknown message type") != NULL);
    /* wrong field count */
    loom_pack_reset(pk);
    loom_pack_array(pk, 4);
    loom_pack_u64(pk, LOOM_PROTO_VERSION);
    loom_pack_u64(pk, LOOM_MSG_OK);
    loom_pack_u64(pk, 0);
    loom_pack_u64(pk, 1);
    CHECK_RC(loom__wire_decode(loom_pack_data(pk), loom_pack_size(pk), &d, err, sizeof(err)), LOOM_EPROTO);
    /* wrong field type: CANCEL with a string instead of a 20-byte ref */
    loom_pack_reset(pk);
    loom_pack_array(pk, 4);
    loom_pack_u64(pk, LOOM_PROTO_VERSION);
    loom_pack_u64(pk, LOOM_MSG_CANCEL);
    loom_pack_u64(pk, 1);
    loom_pack_cstr(pk, "nope");
    CHECK_RC(loom__wire_decode(loom_pack_data(pk), loom_pack_size(pk), &d, err, sizeof(err)), LOOM_EPROTO);
    /* trailing bytes */
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_OK, 1);
    loom__wire_encode(&m, pk);
    loom_pack_u64(pk, 1);
    CHECK_RC(loom__wire_decode(loom_pack_data(pk), loom_pack_size(pk), &d, err, sizeof(err)), LOOM_EPROTO);
    CHECK(strstr(err, "trailing") != NULL);
    /* a huge array count in a tiny frame */
    loom_pack_reset(pk);
    loom_pack_array(pk, 4);
    loom_pack_u64(pk, LOOM_PROTO_VERSION);
    loom_pack_u64(pk, LOOM_MSG_RELEASE);
    loom_pack_u64(pk, 1);
    loom_pack_array(pk, 4000000);
    CHECK_RC(loom__wire_decode(loom_pack_data(pk), loom_pack_size(pk), &d, err, sizeof(err)), LOOM_EPROTO);
    /* a chunk whose data overruns its total */
    loom__msg_init(&m, LOOM_MSG_CHUNK, 1);
    m.offset = 5;
    m.total = 6;
    m.data.p = (const uint8_t *)"abc";
    m.data.n = 3;
    loom__wire_encode(&m, pk);
    CHECK_RC(loom__wire_decode(loom_pack_data(pk), loom_pack_size(pk), &d, err, sizeof(err)), LOOM_EPROTO);
    /* a command output that is a path */
    loom_wire_task t;
    loom_wire_arg args[2];
    loom_wire_loc locs[1];
    make_task(&t, args, locs);
    char *bad[] = {"../etc/passwd"};
    t.outputs = bad;
    loom__msg_init(&m, LOOM_MSG_RUN, 1);
    m.tasks = &t;
    m.ntasks = 1;
    loom__wire_encode(&m, pk);
    CHECK_RC(loom__wire_decode(loom_pack_data(pk), loom_pack_size(pk), &d, err, sizeof(err)), LOOM_EPROTO);
    /* a hello whose host name would forge a log line (the head logs it
       before it checks the secret), a terminal escape, or is too long */
    const char *hosts[] = {"evil\n2026-12-07 [INFO] node 1 joined", "x\x1b[2J", "a b", NULL};
    char longhost[300];
    memset(longhost, 'a', sizeof(longhost) - 1);
    longhost[sizeof(longhost) - 1] = 0;
    hosts[3] = longhost;
    loom_wire_node node = {.id = 1, .hostname = "node-1", .data_addr = "a:1", .store_dir = "/s", .spill_dir = "/p"};
    for (int i = 0; i < 4; i++) {
        loom__msg_init(&m, LOOM_MSG_HELLO, 1);
        m.role = LOOM_ROLE_NODE;
        m.secret = "s";
        m.hostname = (char *)hosts[i];
        loom__wire_encode(&m, pk);
        CHECK_RC(loom__wire_decode(loom_pack_data(pk), loom_pack_size(pk), &d, err, sizeof(err)), LOOM_EPROTO);
        CHECK(strstr(err, "hostname") != NULL);
        /* the same inside a node's description */
        loom__msg_init(&m, LOOM_MSG_HELLO, 1);
        m.role = LOOM_ROLE_NODE;
        m.secret = "s";
        m.hostname = "node-1";
        node.hostname = (char *)hosts[i];
        m.nodes = &node;
        m.nnodes = 1;
        loom__wire_encode(&m, pk);
        CHECK_RC(loom__wire_decode(loom_pack_data(pk), loom_pack_size(pk), &d, err, sizeof(err)), LOOM_EPROTO);
        CHECK(strstr(err, "node.hostname") != NULL);
    }
    /* host names as machines have them pass: names, IPv4, IPv6, empty (executors) */
    const char *good[] = {"gpu-node17.cluster.example.org", "127.0.0.1", "::1", "fe80::1", "ws_01", ""};
    for (int i = 0; i < 6; i++) {
        loom__msg_init(&m, LOOM_MSG_HELLO, 1);
        m.role = LOOM_ROLE_NODE;
        m.secret = "s";
        m.hostname = (char *)good[i];
        node.hostname = (char *)good[i];
        m.nodes = &node;
        m.nnodes = 1;
        loom__wire_encode(&m, pk);
        CHECK_RC(loom__wire_decode(loom_pack_data(pk), loom_pack_size(pk), &d, err, sizeof(err)), LOOM_OK);
        loom__msg_free(&d);
    }
}

static void test_hmap(void)
{
    loom_hmap m = {0};
    uint8_t key[20];
    for (int i = 0; i < 10000; i++) {
        memset(key, 0, sizeof(key));
        memcpy(key, &i, sizeof(i));
        REQUIRE(loom__hmap_put(&m, key, sizeof(key), (void *)(intptr_t)(i + 1)) == 0);
    }
    CHECK(m.count == 10000);
    int bad = 0;
    for (int i = 0; i < 10000; i += 2) {
        memset(key, 0, sizeof(key));
        memcpy(key, &i, sizeof(i));
        bad += loom__hmap_del(&m, key, sizeof(key)) != (void *)(intptr_t)(i + 1);
    }
    for (int i = 0; i < 10000; i++) {
        memset(key, 0, sizeof(key));
        memcpy(key, &i, sizeof(i));
        void *v = loom__hmap_get(&m, key, sizeof(key));
        bad += (i % 2 == 0) ? v != NULL : v != (void *)(intptr_t)(i + 1);
    }
    CHECK(bad == 0);
    CHECK(m.count == 5000);
    size_t it = 0, seen = 0;
    void *v;
    while (loom__hmap_next(&m, &it, &v)) seen++;
    CHECK(seen == 5000);
    uint8_t big[LOOM_HMAP_KEY_MAX + 1] = {0};
    CHECK_RC(loom__hmap_put(&m, big, sizeof(big), NULL), LOOM_EINVAL);
    loom__hmap_free(&m);
}

static void test_ids(void)
{
    uint8_t tid[16];
    loom__random_bytes(tid, 16);
    loom_ref r, back;
    loom__ref_make(tid, 0x01020304, &r);
    CHECK(loom__ref_index(&r) == 0x01020304);
    char hex[41];
    loom_ref_to_hex(&r, hex);
    CHECK(strlen(hex) == 40);
    CHECK_RC(loom_ref_from_hex(hex, &back), 0);
    CHECK(!memcmp(&r, &back, sizeof(r)));
    CHECK_RC(loom_ref_from_hex("zz", &back), LOOM_EINVAL);
    hex[39] = 'g';
    CHECK_RC(loom_ref_from_hex(hex, &back), LOOM_EINVAL);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--write-corpus")) corpus_dir = argv[2];
    pk = loom_pack_new();
    if (argc == 3 && !strcmp(argv[1], "--write-golden")) {
        int rc = write_golden(argv[2]);
        loom_pack_destroy(&pk);
        return rc;
    }
    test_task_roundtrip();
    test_actor_task();
    test_every_type();
    test_golden();
    test_rejections();
    test_hmap();
    test_ids();
    loom_pack_destroy(&pk);
    return TEST_DONE();
}
