/* runtime/zloop.h — ZeroMQ sockets inside a libuv loop.
 *
 * ZMQ_FD is edge-triggered: it signals only when ZMQ_EVENTS changes, and any
 * zmq_send/zmq_recv on the socket can consume that edge.  So a watch drains
 * every message whenever the fd fires, re-checks ZMQ_EVENTS before the loop
 * blocks (uv_prepare), and keeps an idle handle running while messages remain
 * after a bounded batch.  A watched socket is read only through its watch. */
#ifndef LOOM_RUNTIME_ZLOOP_H
#define LOOM_RUNTIME_ZLOOP_H
#include <uv.h>
#include <zmq.h>

#define LOOM_ZMAX_FRAMES 4

/* Called once per received message; frames[0..n) are closed after it returns.
 * A ROUTER's frames[0] is the peer's identity. */
typedef void (*loom_zmsg_cb)(void *arg, zmq_msg_t *frames, int n);

typedef struct loom_zwatch loom_zwatch;
int loom__zwatch_start(uv_loop_t *loop, void *zsock, loom_zmsg_cb cb, void *arg,
                       loom_zwatch **out);
/* Call fn(arg) after each batch of messages (up to a few hundred read in
 * one go): the place for work done once per batch, not per message. */
void loom__zwatch_after_batch(loom_zwatch *w, void (*fn)(void *arg));
/* Stops watching; the handles close on the next loop turn.  Sets *w NULL. */
void loom__zwatch_stop(loom_zwatch **w);

/* Send a multipart message: an optional identity frame then the payload.
 * Non-blocking on ROUTER (a message to an unknown or slow peer is dropped,
 * returns LOOM_EIO). */
int loom__zsend(void *sock, const void *ident, size_t ident_len, const void *data, size_t len);

/* Encode m with scratch and send it (see loom__zsend). */
struct loom_msg;
struct loom_pack;
int loom__zsend_msg(void *sock, const void *ident, size_t ident_len, const struct loom_msg *m,
                    struct loom_pack *scratch);

/* Apply loom's usual options to a fresh socket: linger 0, high-water marks,
 * ROUTER_MANDATORY for routers, bounded max message size (LOOM_MAX_FRAME). */
#define LOOM_MAX_FRAME ((int64_t)1 << 30)
void loom__zsock_setup(void *sock, int type);
#endif
