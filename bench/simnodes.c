/* bench/simnodes.c — light simulated nodes (see simnodes.h): N DEALER
 * sockets to the head in one process, served by one thread with zmq_poll.
 * Each node says HELLO with a node description (N CPUs, 1 GiB of memory and
 * store, the label sim=1, an address nobody fetches from), heartbeats every second, and
 * answers every ASSIGN with a TASK_DONE whose output 0 is msgpack nil. */
#include "bench/simnodes.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>
#include "loom/value.h"
#include "runtime/curve.h"
#include "runtime/ids.h"
#include "runtime/util.h"
#include "runtime/wire.h"
#include "runtime/zloop.h"

#define HEARTBEAT_MS 1000
#define WELCOME_WAIT_MS 60000

typedef struct simnode {
    void *sock;
    uint32_t id;          /* 0 until welcomed */
    int64_t next_hb;
} simnode;

struct simnodes {
    void *ctx;
    simnode *nodes;
    int n;
    double cpus;
    char hostname[64];
    loom_curve_keys keys;
    loom_pack *out;
    pthread_t thread;
    int running;          /* the serving thread runs */
    int stop;             /* set by simnodes_stop; __atomic */
    uint64_t done;        /* tasks finished; written by the thread, read under __atomic */
};

static void hello(simnodes *s, simnode *nd, int index)
{
    char addr[64], dir[64];
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", 1 + index % 60000);   /* never fetched from */
    snprintf(dir, sizeof dir, "/nonexistent/simnode-%d", index);
    loom_wire_label sim = {.key = "sim", .value = "1"};   /* tasks can ask for these nodes only */
    loom_wire_node self = {.id = nd->id, .hostname = s->hostname, .data_addr = addr, .store_dir = dir,
                           .spill_dir = dir, .num_cpus = s->cpus, .memory = (uint64_t)1 << 30,
                           .capacity = (uint64_t)1 << 30, .labels = &sim, .nlabels = 1};
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_HELLO, 1);
    m.role = LOOM_ROLE_NODE;
    m.secret = "";
    m.hostname = s->hostname;
    m.pid = (uint32_t)getpid();
    m.nodes = &self;
    m.nnodes = 1;
    loom__zsend_msg(nd->sock, NULL, 0, &m, s->out);
}

static void heartbeat(simnodes *s, simnode *nd)
{
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_HEARTBEAT, 0);
    loom__zsend_msg(nd->sock, NULL, 0, &m, s->out);
}

/* Finish an assigned task at once: output 0 is msgpack nil. */
static void finish(simnodes *s, simnode *nd, const loom_msg *assign)
{
    static const uint8_t nil = 0xc0;
    for (uint32_t i = 0; i < assign->ntasks; i++) {
        loom_wire_output out = {.index = 0, .size = 1, .value = {&nil, 1}};
        loom_msg m;
        loom__msg_init(&m, LOOM_MSG_TASK_DONE, 0);
        loom__ref_make(assign->tasks[i].task_id, 0, &m.ref);
        m.outputs = &out;
        m.noutputs = 1;
        loom__zsend_msg(nd->sock, NULL, 0, &m, s->out);
        __atomic_add_fetch(&s->done, 1, __ATOMIC_RELAXED);
    }
}

/* Read every message waiting on one node's socket. */
static void drain(simnodes *s, simnode *nd, int index)
{
    for (int k = 0; k < 1000; k++) {
        zmq_msg_t f;
        zmq_msg_init(&f);
        if (zmq_msg_recv(&f, nd->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&f);
            return;
        }
        loom_msg m;
        char err[256];
        if (loom__wire_decode(zmq_msg_data(&f), zmq_msg_size(&f), &m, err, sizeof err) == 0) {
            if (m.type == LOOM_MSG_WELCOME) nd->id = m.assigned_id;
            else if (m.type == LOOM_MSG_ASSIGN) finish(s, nd, &m);
            else if (m.type == LOOM_MSG_ERROR && m.code == LOOM_ESTATE) hello(s, nd, index);   /* the head restarted */
            loom__msg_free(&m);
        }
        zmq_msg_close(&f);
    }
}

/* One pass: poll every socket (up to 10 ms), serve what came, heartbeat
 * the nodes that are due. */
static void serve_once(simnodes *s, zmq_pollitem_t *items)
{
    if (zmq_poll(items, s->n, 10) < 0) return;
    int64_t now = loom__now_ms();
    for (int i = 0; i < s->n; i++) {
        simnode *nd = &s->nodes[i];
        if (items[i].revents & ZMQ_POLLIN) drain(s, nd, i);
        if (nd->id && now >= nd->next_hb) {
            heartbeat(s, nd);
            nd->next_hb = now + HEARTBEAT_MS;
        }
    }
}

static void *serve(void *arg)
{
    simnodes *s = arg;
    zmq_pollitem_t *items = calloc((size_t)s->n, sizeof(*items));
    if (!items) return NULL;
    for (int i = 0; i < s->n; i++) items[i] = (zmq_pollitem_t){.socket = s->nodes[i].sock, .events = ZMQ_POLLIN};
    while (!__atomic_load_n(&s->stop, __ATOMIC_RELAXED)) serve_once(s, items);
    free(items);
    return NULL;
}

static int welcomed(simnodes *s)
{
    int k = 0;
    for (int i = 0; i < s->n; i++) k += s->nodes[i].id != 0;
    return k;
}

static int connect_nodes(simnodes *s, const char *address)
{
    char ep[600];
    snprintf(ep, sizeof ep, "tcp://%s", address);
    for (int i = 0; i < s->n; i++) {
        void *z = zmq_socket(s->ctx, ZMQ_DEALER);
        if (!z) return -1;
        loom__zsock_setup(z, ZMQ_DEALER);
        s->nodes[i].sock = z;
        if (loom__curve_client(z, s->keys.server.pub, &s->keys.node) || zmq_connect(z, ep) != 0) return -1;
        hello(s, &s->nodes[i], i);
    }
    return 0;
}

int simnodes_start(const char *address, const char *secret_hex, int n, double cpus, simnodes **out)
{
    *out = NULL;
    simnodes *s = calloc(1, sizeof(*s));
    if (!s || n < 1 || n > 100000) {
        free(s);
        fprintf(stderr, "simnodes: 1 to 100000 nodes\n");
        return -1;
    }
    s->n = n;
    s->cpus = cpus;
    snprintf(s->hostname, sizeof s->hostname, "simnode");
    s->nodes = calloc((size_t)n, sizeof(simnode));
    s->out = loom_pack_new();
    s->ctx = zmq_ctx_new();
    int ok = s->nodes && s->out && s->ctx && loom__curve_derive(secret_hex, &s->keys) == 0;
    if (ok) zmq_ctx_set(s->ctx, ZMQ_MAX_SOCKETS, n + 64);
    if (!ok || connect_nodes(s, address)) {
        fprintf(stderr, "simnodes: cannot connect %d nodes to %s: %s\n", n, address, zmq_strerror(zmq_errno()));
        simnodes_stop(&s);
        return -1;
    }
    /* the HELLOs were sent at connect; serve until all are welcomed */
    zmq_pollitem_t *items = calloc((size_t)n, sizeof(*items));
    for (int i = 0; items && i < n; i++) items[i] = (zmq_pollitem_t){.socket = s->nodes[i].sock, .events = ZMQ_POLLIN};
    int64_t deadline = loom__now_ms() + WELCOME_WAIT_MS;
    while (items && welcomed(s) < n && loom__now_ms() < deadline) serve_once(s, items);
    free(items);
    if (welcomed(s) < n) {
        fprintf(stderr, "simnodes: %d of %d nodes welcomed in %d s\n", welcomed(s), n, WELCOME_WAIT_MS / 1000);
        simnodes_stop(&s);
        return -1;
    }
    if (pthread_create(&s->thread, NULL, serve, s) != 0) {
        simnodes_stop(&s);
        return -1;
    }
    s->running = 1;
    *out = s;
    return 0;
}

uint64_t simnodes_tasks_done(simnodes *s)
{
    return s ? __atomic_load_n(&s->done, __ATOMIC_RELAXED) : 0;
}

void simnodes_stop(simnodes **sp)
{
    simnodes *s = *sp;
    if (!s) return;
    if (s->running) {
        __atomic_store_n(&s->stop, 1, __ATOMIC_RELAXED);
        pthread_join(s->thread, NULL);
    }
    for (int i = 0; s->nodes && i < s->n; i++)
        if (s->nodes[i].sock) zmq_close(s->nodes[i].sock);
    if (s->ctx) zmq_ctx_term(s->ctx);
    loom_pack_destroy(&s->out);
    free(s->nodes);
    free(s);
    *sp = NULL;
}
