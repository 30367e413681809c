/* runtime/curve.c — the CURVE key scheme, CURVE socket options, the ZAP
 * handler thread and executors' grants (see runtime/curve.h). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <zmq.h>
#include "loom/loom.h"
#include "runtime/curve.h"
#include "runtime/ids.h"
#include "runtime/log.h"
#include "runtime/secret.h"
#include "runtime/util.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_POLL_MS 100
#define ZAP_LOG_EVERY_MS 10000

/* Labels of the derived keys: one per role, versioned. */
#define LABEL_SERVER "loom curve v1: server"
#define LABEL_NODE "loom curve v1: node client"
#define LABEL_TASK "loom curve v1: task client"

/* ---- keys ------------------------------------------------------------- */

int loom__curve_pair_from_secret(const char *sec, loom_curve_pair *out)
{
    if (!sec || strlen(sec) != LOOM_CURVE_Z85) return LOOM_EINVAL;
    memcpy(out->sec, sec, LOOM_CURVE_Z85 + 1);
    if (zmq_curve_public(out->pub, out->sec) != 0) return LOOM_EINVAL;
    return LOOM_OK;
}

/* The pair whose secret key is HMAC-SHA256(secret, label). */
static int derive_pair(const char *secret_hex, const char *label, loom_curve_pair *out)
{
    uint8_t raw[32];
    unsigned len = 0;
    if (!HMAC(EVP_sha256(), secret_hex, (int)strlen(secret_hex), (const uint8_t *)label, strlen(label), raw,
              &len) || len != sizeof(raw))
        return LOOM_EAUTH;
    char sec[LOOM_CURVE_Z85 + 1];
    int rc = zmq_z85_encode(sec, raw, sizeof(raw)) ? loom__curve_pair_from_secret(sec, out) : LOOM_EAUTH;
    memset(raw, 0, sizeof(raw));
    memset(sec, 0, sizeof(sec));
    return rc;
}

int loom__curve_derive(const char *secret_hex, loom_curve_keys *out)
{
    if (!secret_hex || strlen(secret_hex) != LOOM_SECRET_HEX) return LOOM_EAUTH;
    int rc = derive_pair(secret_hex, LABEL_SERVER, &out->server);
    if (!rc) rc = derive_pair(secret_hex, LABEL_NODE, &out->node);
    if (!rc) rc = derive_pair(secret_hex, LABEL_TASK, &out->task);
    return rc;
}

int loom__curve_node_client(const char *secret_hex, loom_curve_client *out)
{
    loom_curve_keys k;
    int rc = loom__curve_derive(secret_hex, &k);
    if (!rc) {
        memcpy(out->server_pub, k.server.pub, sizeof(out->server_pub));
        out->self = k.node;
    }
    memset(&k, 0, sizeof(k));
    return rc;
}

int loom__curve_random_pair(loom_curve_pair *out)
{
    return zmq_curve_keypair(out->pub, out->sec) == 0 ? LOOM_OK : LOOM_EIO;
}

/* ---- sockets ------------------------------------------------------------ */

int loom__curve_server(void *sock, const loom_curve_pair *pair)
{
    int one = 1;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof(one)) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, pair->sec, LOOM_CURVE_Z85 + 1) != 0 ||
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, LOOM_CURVE_DOMAIN, strlen(LOOM_CURVE_DOMAIN)) != 0)
        return LOOM_EIO;
    return LOOM_OK;
}

int loom__curve_client(void *sock, const char *server_pub, const loom_curve_pair *self)
{
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server_pub, LOOM_CURVE_Z85 + 1) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, self->pub, LOOM_CURVE_Z85 + 1) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, self->sec, LOOM_CURVE_Z85 + 1) != 0)
        return LOOM_EIO;
    return LOOM_OK;
}

int loom__curve_handshake_event(unsigned event)
{
    if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) return 1;
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL || event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
        event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
        return -1;
    return 0;
}

/* ---- the ZAP handler ------------------------------------------------------ */

struct loom_curve_zap {
    void *rep;                       /* bound to ZAP_ENDPOINT; used by the thread only */
    pthread_t thread;
    int stop;                        /* __atomic */
    uint64_t refused;                /* __atomic */
    int n;
    uint8_t keys[LOOM_CURVE_ALLOW_MAX][32];
    char users[LOOM_CURVE_ALLOW_MAX][16];
    int64_t logged_at;
};

/* Constant time over the key; the index of the matching entry or -1. */
static int zap_lookup(const loom_curve_zap *z, const uint8_t *key)
{
    int found = -1;
    for (int i = 0; i < z->n; i++) {
        unsigned diff = 0;
        for (int j = 0; j < 32; j++) diff |= (unsigned)(z->keys[i][j] ^ key[j]);
        if (diff == 0) found = i;
    }
    return found;
}

static void zap_send(void *rep, const char *s, size_t n, int more)
{
    zmq_send(rep, s, n, more ? ZMQ_SNDMORE : 0);
}

/* One request: version, request id, domain, address, identity, mechanism,
 * credentials (CURVE: the client's 32-byte public key).  Anything else is
 * refused. */
static void zap_answer(loom_curve_zap *z)
{
    zmq_msg_t f[8];
    int n = 0, more = 1;
    while (more && n < 8) {
        zmq_msg_init(&f[n]);
        if (zmq_msg_recv(&f[n], z->rep, 0) < 0) {
            zmq_msg_close(&f[n]);
            break;
        }
        more = zmq_msg_more(&f[n]);
        n++;
    }
    while (more) { /* too many frames: drain the rest */
        zmq_msg_t x;
        zmq_msg_init(&x);
        if (zmq_msg_recv(&x, z->rep, 0) < 0) more = 0;
        else more = zmq_msg_more(&x);
        zmq_msg_close(&x);
    }
    int who = -1;
    if (n == 7 && zmq_msg_size(&f[5]) == 5 && !memcmp(zmq_msg_data(&f[5]), "CURVE", 5) &&
        zmq_msg_size(&f[6]) == 32)
        who = zap_lookup(z, zmq_msg_data(&f[6]));
    if (n >= 2) {
        zap_send(z->rep, "1.0", 3, 1);
        zmq_send(z->rep, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE);
        zap_send(z->rep, who >= 0 ? "200" : "400", 3, 1);
        zap_send(z->rep, who >= 0 ? "OK" : "not a key of this cluster", who >= 0 ? 2 : 25, 1);
        zap_send(z->rep, who >= 0 ? z->users[who] : "", who >= 0 ? strlen(z->users[who]) : 0, 1);
        zap_send(z->rep, "", 0, 0);
    }
    if (who < 0) {
        __atomic_add_fetch(&z->refused, 1, __ATOMIC_RELAXED);
        int64_t now = loom__now_ms();
        if (now - z->logged_at >= ZAP_LOG_EVERY_MS) { /* a refused peer retries: say it now and then */
            char addr[64] = "?";
            if (n >= 4) loom__snprintf(addr, sizeof(addr), "%.*s", (int)zmq_msg_size(&f[3]), (char *)zmq_msg_data(&f[3]));
            LOG_WARN("refused a connection from %s: its CURVE key is not one of this cluster's (%llu refused so far)",
                     addr, (unsigned long long)__atomic_load_n(&z->refused, __ATOMIC_RELAXED));
            z->logged_at = now;
        }
    }
    for (int i = 0; i < n; i++) zmq_msg_close(&f[i]);
}

static void *zap_thread(void *arg)
{
    loom_curve_zap *z = arg;
    while (!__atomic_load_n(&z->stop, __ATOMIC_ACQUIRE)) {
        zmq_pollitem_t pi = {z->rep, 0, ZMQ_POLLIN, 0};
        int r = zmq_poll(&pi, 1, ZAP_POLL_MS);
        if (r < 0 && errno == ETERM) break;
        if (r > 0) zap_answer(z);
    }
    return NULL;
}

int loom__curve_zap_start(void *zctx, const loom_curve_allow *allow, int n, loom_curve_zap **out)
{
    *out = NULL;
    if (n < 1 || n > LOOM_CURVE_ALLOW_MAX) return LOOM_EINVAL;
    loom_curve_zap *z = calloc(1, sizeof(*z));
    if (!z) return LOOM_ENOMEM;
    z->n = n;
    z->logged_at = -ZAP_LOG_EVERY_MS;
    for (int i = 0; i < n; i++) {
        if (!allow[i].pub || strlen(allow[i].pub) != LOOM_CURVE_Z85 || !zmq_z85_decode(z->keys[i], allow[i].pub)) {
            free(z);
            return LOOM_EINVAL;
        }
        loom__snprintf(z->users[i], sizeof(z->users[i]), "%s", allow[i].user ? allow[i].user : "");
    }
    z->rep = zmq_socket(zctx, ZMQ_REP);
    int zero = 0;
    if (z->rep) zmq_setsockopt(z->rep, ZMQ_LINGER, &zero, sizeof(zero));
    if (!z->rep || zmq_bind(z->rep, ZAP_ENDPOINT) != 0) {
        if (z->rep) zmq_close(z->rep);
        free(z);
        return LOOM_EIO;
    }
    if (pthread_create(&z->thread, NULL, zap_thread, z) != 0) {
        zmq_close(z->rep);
        free(z);
        return LOOM_ESYS;
    }
    *out = z;
    return LOOM_OK;
}

void loom__curve_zap_stop(loom_curve_zap **pz)
{
    loom_curve_zap *z = *pz;
    if (!z) return;
    *pz = NULL;
    __atomic_store_n(&z->stop, 1, __ATOMIC_RELEASE);
    pthread_join(z->thread, NULL);
    zmq_close(z->rep);
    memset(z->keys, 0, sizeof(z->keys));
    free(z);
}

uint64_t loom__curve_zap_refused(const loom_curve_zap *z)
{
    return z ? __atomic_load_n(&z->refused, __ATOMIC_RELAXED) : 0;
}

/* ---- executors' grants ------------------------------------------------------ */

void loom__exec_grant_format(const loom_exec_grant *g, char *out)
{
    loom__snprintf(out, LOOM_EXEC_GRANT_LEN + 1, "%.64s %.40s %.40s", g->token, g->task.server_pub,
                   g->task.self.sec);
}

int loom__exec_grant_parse(const char *text, size_t len, loom_exec_grant *g)
{
    if (len != LOOM_EXEC_GRANT_LEN || text[64] != ' ' || text[64 + 1 + LOOM_CURVE_Z85] != ' ')
        return LOOM_EINVAL;
    memcpy(g->token, text, 64);
    g->token[64] = 0;
    memcpy(g->task.server_pub, text + 65, LOOM_CURVE_Z85);
    g->task.server_pub[LOOM_CURVE_Z85] = 0;
    char sec[LOOM_CURVE_Z85 + 1];
    memcpy(sec, text + 66 + LOOM_CURVE_Z85, LOOM_CURVE_Z85);
    sec[LOOM_CURVE_Z85] = 0;
    int rc = loom__curve_pair_from_secret(sec, &g->task.self);
    memset(sec, 0, sizeof(sec));
    uint8_t check[32];
    if (!rc && !zmq_z85_decode(check, g->task.server_pub)) rc = LOOM_EINVAL;
    return rc;
}
