/* runtime/curve.h — ZeroMQ CURVE on loom's cluster sockets: the key scheme,
 * setting a socket up as a CURVE server or client, the ZAP handler that says
 * which client keys a server lets in, and the grant a daemon hands each of
 * its executors.
 *
 * Key scheme.  Every key comes from the cluster secret (the one file a node
 * needs today, runtime/secret.c) through HMAC-SHA256 with a distinct label,
 * so there is still one thing to copy to a node, and no key ever travels:
 *   server  the head's ROUTER and every daemon's data port (CURVE servers);
 *   node    the client key of anyone who holds the secret: daemons, drivers;
 *   task    the client key of task code (loom_task_client in executors):
 *           the head lets it in as a driver only, never as a node.
 * HMAC is a PRF, so knowing one derived key (an executor's task key, which
 * task code can read) says nothing about the secret or the other keys: task
 * code can neither join as a node nor pose as the head or a daemon.  A
 * Curve25519 secret key may be any 32 bytes; its public key comes from
 * zmq_curve_public.  Servers answer ZAP (inproc://zeromq.zap.01 in their zmq
 * context, a thread of its own) with 200 only for the allowed public keys,
 * so a peer without them is refused during the handshake, before any
 * message; a plaintext (NULL mechanism) peer fails the handshake. */
#ifndef LOOM_RUNTIME_CURVE_H
#define LOOM_RUNTIME_CURVE_H
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#define LOOM_CURVE_Z85 40            /* a key as Z85 text, without the NUL */
#define LOOM_CURVE_DOMAIN "loom"     /* the ZAP domain of loom's servers */
#define LOOM_CURVE_USER_NODE "node"  /* ZAP user ids: a holder of the secret */
#define LOOM_CURVE_USER_TASK "task"  /* task code, driver rights only */

typedef struct loom_curve_pair {
    char pub[LOOM_CURVE_Z85 + 1];
    char sec[LOOM_CURVE_Z85 + 1];
} loom_curve_pair;

typedef struct loom_curve_keys {
    loom_curve_pair server, node, task;
} loom_curve_keys;

/* What a client needs: the server's public key and its own pair. */
typedef struct loom_curve_client {
    char server_pub[LOOM_CURVE_Z85 + 1];
    loom_curve_pair self;
} loom_curve_client;

/* Derive the cluster's keys from the secret (64 hex).  0 or LOOM_EAUTH. */
int loom__curve_derive(const char *secret_hex, loom_curve_keys *out);
/* The client keys of a holder of the secret (server public + node pair). */
int loom__curve_node_client(const char *secret_hex, loom_curve_client *out);
/* A fresh random pair (for a collective group).  0 or LOOM_EIO. */
int loom__curve_random_pair(loom_curve_pair *out);
/* The pair whose secret key is sec (Z85).  0 or LOOM_EINVAL. */
int loom__curve_pair_from_secret(const char *sec, loom_curve_pair *out);

/* Make sock a CURVE server with pair's secret key (before bind). */
int loom__curve_server(void *sock, const loom_curve_pair *pair);
/* Make sock a CURVE client of the server with public key server_pub (before
 * connect). */
int loom__curve_client(void *sock, const char *server_pub, const loom_curve_pair *self);

/* The ZAP handler of one zmq context: lets in the clients whose public keys
 * are listed (with the user id a message's "User-Id" property then shows)
 * and refuses every other.  Start it before the first CURVE server socket
 * of the context binds; stop it after every such socket is closed and
 * before zmq_ctx_term. */
typedef struct loom_curve_allow {
    const char *pub;                 /* Z85 */
    const char *user;
} loom_curve_allow;
#define LOOM_CURVE_ALLOW_MAX 4
typedef struct loom_curve_zap loom_curve_zap;
int loom__curve_zap_start(void *zctx, const loom_curve_allow *allow, int n, loom_curve_zap **out);
void loom__curve_zap_stop(loom_curve_zap **z);
/* Clients the handler refused so far (for tests and logs). */
uint64_t loom__curve_zap_refused(const loom_curve_zap *z);

/* Events a socket monitor should ask for to see CURVE handshakes end. */
#define LOOM_CURVE_HS_EVENTS (ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | \
                              ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
/* A monitor event (its number): +1 a handshake succeeded, -1 one failed (the
 * server refused our keys, or closed the connection during the handshake,
 * which is what a server that cannot open our hello does), 0 other. */
int loom__curve_handshake_event(unsigned event);
/* Handshakes failing this many times in a row, with none succeeding, mean
 * the server refuses our keys: a wrong cluster secret. */
#define LOOM_CURVE_REFUSALS 3

/* An executor's grant, written by its daemon into the pipe on the
 * executor's fd 3: a random token that the daemon accepts in that
 * executor's HELLO on the node's ipc socket (and nowhere else), and the
 * task client keys for loom_task_client.  Never the cluster secret. */
typedef struct loom_exec_grant {
    char token[65];                  /* 32 random bytes as hex */
    loom_curve_client task;
} loom_exec_grant;
#define LOOM_EXEC_GRANT_LEN (64 + 1 + LOOM_CURVE_Z85 + 1 + LOOM_CURVE_Z85)
/* "TOKEN SERVERPUB TASKSEC" into out (LOOM_EXEC_GRANT_LEN + 1 bytes). */
void loom__exec_grant_format(const loom_exec_grant *g, char *out);
/* Parse what loom__exec_grant_format wrote.  0 or LOOM_EINVAL. */
int loom__exec_grant_parse(const char *text, size_t len, loom_exec_grant *g);
#endif
