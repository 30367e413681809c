/* gateway/http_tls.h — the TLS layer of the HTTP server (tls.c), for http.c:
 * OpenSSL 3 over memory BIOs, so that the socket stays libuv's and OpenSSL
 * never touches it.  Ciphertext read from the socket is fed in
 * (loom_tls_feed), plaintext comes out (loom_tls_read, which also drives the
 * handshake); plaintext to send goes in (loom_tls_write, loom_tls_close_notify)
 * and the ciphertext it makes is taken out (loom_tls_take) for the caller to
 * write to the socket, in the order taken.  Not part of the gateway's API.
 *
 * Threads: a loom_tls (the SSL_CTX) is made and freed by the server's owner;
 * a session is used on one thread only (the server's loop). */
#ifndef LOOM_GATEWAY_HTTP_TLS_H
#define LOOM_GATEWAY_HTTP_TLS_H
#include <stddef.h>

typedef struct loom_tls loom_tls;                /* certificate, key, settings */
typedef struct loom_tls_session loom_tls_session;   /* one connection */

/* A server context from PEM files: the certificate chain (leaf first) and its
 * private key.  TLS 1.2 and 1.3 only, forward-secret AEAD ciphers, no
 * compression, no renegotiation.  0, or LOOM_EINVAL with the reason in err
 * (err_cap bytes, may be NULL/0) when a file cannot be read or the key does
 * not match the certificate; LOOM_ENOMEM. */
int loom_tls_new(const char *cert_file, const char *key_file, loom_tls **out, char *err, size_t err_cap);
/* NULL-safe; sessions hold their own reference and may outlive it. */
void loom_tls_free(loom_tls **t);

/* A session for one accepted connection (the server side); NULL: no memory. */
loom_tls_session *loom_tls_session_new(loom_tls *t);
void loom_tls_session_free(loom_tls_session **s);

/* What loom_tls_read found. */
enum {
    LOOM_TLS_AGAIN = 0,          /* no more plaintext until more ciphertext comes */
    LOOM_TLS_DATA = 1,           /* *got > 0 bytes of plaintext */
    LOOM_TLS_CLOSED = 2,         /* the peer sent close_notify: no more will come */
    LOOM_TLS_FAILED = 3          /* a protocol error (handshake or record): close */
};

/* Ciphertext from the peer.  0 or LOOM_ENOMEM. */
int loom_tls_feed(loom_tls_session *s, const char *data, size_t len);
/* Up to cap bytes of plaintext into buf; drives the handshake.  It may make
 * ciphertext to send (handshake, tickets, alerts): loom_tls_take after it. */
int loom_tls_read(loom_tls_session *s, char *buf, size_t cap, size_t *got);
/* 1 once the handshake is complete. */
int loom_tls_established(const loom_tls_session *s);
/* Encrypt all of data (after the handshake).  0, or LOOM_EIO. */
int loom_tls_write(loom_tls_session *s, const void *data, size_t len);
/* Say close_notify (once; later calls do nothing).  0 or LOOM_EIO. */
int loom_tls_close_notify(loom_tls_session *s);
/* Ciphertext waiting to be sent, in bytes. */
size_t loom_tls_pending(const loom_tls_session *s);
/* Move up to cap bytes of it into out; returns how many. */
size_t loom_tls_take(loom_tls_session *s, char *out, size_t cap);
#endif
