/* api/client_internal.h — what the files of the driver side share (client.c:
 * messages to the head, connecting, tasks, graphs, inspection; client_obj.c:
 * the data port, put/get/wait/release; client_actor.c: actors, placement
 * groups, nodes, the key-value table): the client's state and the helpers
 * one file calls in another.  Not a public interface. */
#ifndef LOOM_API_CLIENT_INTERNAL_H
#define LOOM_API_CLIENT_INTERNAL_H
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>
#include "api/local.h"
#include "objectstore/store.h"
#include "runtime/curve.h"
#include "runtime/hmap.h"
#include "runtime/secret.h"
#include "runtime/wire.h"
#include "loom/loom.h"
#include "loom/value.h"

#define REQUEST_TIMEOUT_MS 30000

/* Connect to the head at address (HOST:PORT) with these CURVE keys instead
 * of the cluster secret: how task code's client (loom_task_client) in an
 * executor connects, with the task key of its grant (runtime/curve.h). */
int loom__connect_with_keys(const char *address, const loom_curve_client *keys, loom_client **out);

/* What the client knows about an object it subscribed to. */
typedef struct ready_info {
    int done;
    int code;
    char *text;
    uint64_t size;
    uint8_t *value;          /* inline copy, or NULL */
    loom_wire_loc *locs;     /* addr strings owned */
    uint32_t nlocs;
    int subscribed;
    int waited;              /* times it appears in the refs of the loom_wait running now */
    int64_t sub_ms;          /* when its subscription was last sent */
    int views;               /* loom_values pointing at value */
    int dropped;             /* released while views > 0: freed by the last loom_value_release */
    int own_put;             /* ready because this client put it (the head has not answered):
                                a refusal of the put still becomes its error */
} ready_info;

/* A submission (loom_submit) or put (loom_put) sent without waiting and not
 * answered yet: kept to be sent again if the connection closes or the head
 * restarts, and to record the head's refusal as the result's error. */
typedef struct unacked {
    uint64_t req;             /* 0: answered (a hole until the front moves past it) */
    loom_ref out;             /* the task's result, or the put object */
    uint8_t *data;            /* the encoded SUBMIT or PUT_DONE */
    size_t len;
} unacked;

/* at most this many submissions and puts in flight; past it they wait for answers */
#define MAX_UNACKED 8192

struct loom_client {
    void *zctx, *sock;
    void *mon;                /* PAIR: sock's monitor events (closed connections) */
    unsigned disconnects;     /* connections to the head closed so far */
    int hs_failures;          /* CURVE handshakes failed since the last that worked */
    loom_pack *out;
    uint64_t next_req;
    loom_curve_client curve;  /* its CURVE keys: the node key (from the secret), or an executor's task key */
    char address[512];
    char hostname[256];
    uint32_t id;
    loom_hmap ready;          /* ref -> ready_info */
    loom_store *store;        /* the co-located node's store, if any */
    uint32_t store_node;
    char home_addr[300];      /* a node's data port, for remote put/get */
    uint32_t home_node;
    void *data_sock;          /* DEALER to home_addr or a fetch peer (lazy) */
    char data_sock_addr[300];
    loom_local *local;        /* a local cluster this client started */
    int64_t store_wait_ms;    /* backpressure: how long a put waits for room */
    int need_hello;           /* the head answered "say hello" (it restarted) */
    int64_t last_resub_ms;    /* when unfinished subscriptions were last sent again */
    unacked *ua;              /* submissions and puts in flight: [ua_first, nua) */
    int ua_first, nua, cap_ua, ua_live;
    unsigned ua_closes;       /* disconnects when they were last sent again */
    long wait_done;           /* refs of the running loom_wait that became ready (mark_done) */
    char last_error[2048];
};

struct loom_value {
    const void *data;
    size_t len;
    loom_client *c;
    ready_info *pin;          /* the inline copy it points at (kept alive by views) */
    loom_store_view view;     /* zero-copy */
    void *owned;              /* a copy */
};

/* client.c */
/* Record why rc happened (loom_last_error); returns rc. */
int loom__client_set_error(loom_client *c, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void loom__client_ready_free(ready_info *r);
/* Free r unless loom_values still point at its inline copy. */
void loom__client_ready_drop(ready_info *r);
ready_info *loom__client_ready_get(loom_client *c, const loom_ref *ref, int create);
void loom__client_mark_done(loom_client *c, ready_info *r);
int loom__client_send_msg(loom_client *c, loom_msg *m);
int loom__client_request_within(loom_client *c, loom_msg *m, int want_type, int64_t timeout_ms, zmq_msg_t *f,
                                loom_msg *reply);
int loom__client_request(loom_client *c, loom_msg *m, int want_type, zmq_msg_t *f, loom_msg *reply);
int loom__client_pump(loom_client *c, int64_t deadline);
int loom__client_subscribe(loom_client *c, const loom_ref *refs, int n);
int loom__client_rejoin(loom_client *c);
/* HELLO to the head; its WELCOME lists the nodes (finds the home node again). */
int loom__client_say_hello(loom_client *c);
/* A put under a ref the caller chose (loom_put draws a random one; a
 * library's is its digest).  keep: content-addressed, waits for the head. */
int loom__client_put_with_ref(loom_client *c, const loom_ref *ref, const void *data, size_t len, int keep);
int loom__client_send_unacked(loom_client *c, loom_msg *m, const loom_ref *out);
/* Submit g without waiting for the head (as loom_submit): a refusal becomes
 * the error of out, a ref of g. */
int loom__client_graph_send_unacked(loom_client *c, loom_graph *g, const loom_submit_opts *opts, const loom_ref *out);
int loom__client_info_json(loom_client *c, loom_msg *m, char **json);

#endif
