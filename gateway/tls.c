/* gateway/tls.c — the HTTP server's TLS layer (see http_tls.h): the SSL_CTX
 * made from the certificate and key files at start, and one SSL per
 * connection between two memory BIOs.  It owns every OpenSSL object the
 * server uses and knows nothing of sockets or libuv; http.c moves the bytes.
 *
 * Settings: TLS 1.2 minimum (SSLv3, TLS 1.0 and 1.1 are refused, so a
 * downgrade fails the handshake), ECDHE with AES-GCM or ChaCha20-Poly1305 for
 * TLS 1.2 (OpenSSL's TLS 1.3 suites as they are), the server's cipher
 * preference, no compression, no renegotiation, session tickets on.
 *
 * OpenSSL's error queue is per thread: each call clears it first, and a
 * failure is read from it and cleared before returning. */
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include "loom/loom.h"
#include "runtime/util.h"
#include "gateway/http_tls.h"

#define TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!SHA1"

struct loom_tls {
    SSL_CTX *ctx;
};

struct loom_tls_session {
    SSL *ssl;
    BIO *rbio, *wbio;            /* owned by ssl */
    int sent_close_notify;
};

/* ---- the context ---- */

/* "what: OpenSSL's reason" into err, and clear the queue. */
static void set_error(char *err, size_t cap, const char *what, const char *file)
{
    unsigned long e = ERR_peek_last_error();
    char reason[256] = "";
    if (e) ERR_error_string_n(e, reason, sizeof reason);
    ERR_clear_error();
    if (!err || !cap) return;
    if (file)
        loom__snprintf(err, cap, "%s %s%s%s", what, file, *reason ? ": " : "", reason);
    else
        loom__snprintf(err, cap, "%s%s%s", what, *reason ? ": " : "", reason);
}

static int ctx_settings(SSL_CTX *ctx)
{
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) return 0;
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* idle connections give their record buffers back */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) == 1;
}

/* The private key from a PEM file; NULL when it cannot be read. */
static EVP_PKEY *read_key(const char *file)
{
    BIO *b = BIO_new_file(file, "r");
    if (!b) return NULL;
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    return k;
}

static int ctx_load(SSL_CTX *ctx, const char *cert, const char *key, char *err, size_t cap)
{
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        set_error(err, cap, "cannot load the TLS certificate (chain, PEM) from", cert);
        return LOOM_EINVAL;
    }
    EVP_PKEY *k = read_key(key);
    if (!k) {
        set_error(err, cap, "cannot load the TLS private key (PEM) from", key);
        return LOOM_EINVAL;
    }
    /* compared here, so that a key of another type says so too */
    int match = X509_check_private_key(SSL_CTX_get0_certificate(ctx), k) == 1;
    int used = match && SSL_CTX_use_PrivateKey(ctx, k) == 1 && SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(k);
    if (!used) {
        ERR_clear_error();
        if (err && cap)
            loom__snprintf(err, cap, "the TLS private key %s does not match the certificate %s", key, cert);
        return LOOM_EINVAL;
    }
    return LOOM_OK;
}

int loom_tls_new(const char *cert_file, const char *key_file, loom_tls **out, char *err, size_t err_cap)
{
    if (err && err_cap) err[0] = 0;
    if (!out) return LOOM_EINVAL;
    *out = NULL;
    if (!cert_file || !*cert_file || !key_file || !*key_file) {
        if (err && err_cap) loom__snprintf(err, err_cap, "TLS needs both a certificate and a private key file");
        return LOOM_EINVAL;
    }
    ERR_clear_error();
    loom_tls *t = calloc(1, sizeof(*t));
    if (!t) return LOOM_ENOMEM;
    t->ctx = SSL_CTX_new(TLS_server_method());
    int rc = t->ctx ? LOOM_OK : LOOM_ENOMEM;
    if (rc == 0 && !ctx_settings(t->ctx)) {
        set_error(err, err_cap, "cannot configure TLS", NULL);
        rc = LOOM_EINVAL;
    }
    if (rc == 0) rc = ctx_load(t->ctx, cert_file, key_file, err, err_cap);
    if (rc) {
        ERR_clear_error();
        loom_tls_free(&t);
        return rc;
    }
    *out = t;
    return LOOM_OK;
}

void loom_tls_free(loom_tls **pt)
{
    if (!pt || !*pt) return;
    SSL_CTX_free((*pt)->ctx);        /* sessions hold references of their own */
    free(*pt);
    *pt = NULL;
}

/* ---- sessions ---- */

loom_tls_session *loom_tls_session_new(loom_tls *t)
{
    if (!t) return NULL;
    ERR_clear_error();
    loom_tls_session *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->ssl = SSL_new(t->ctx);
    s->rbio = BIO_new(BIO_s_mem());
    s->wbio = BIO_new(BIO_s_mem());
    if (!s->ssl || !s->rbio || !s->wbio) {
        BIO_free(s->rbio);
        BIO_free(s->wbio);
        SSL_free(s->ssl);
        free(s);
        ERR_clear_error();
        return NULL;
    }
    /* an empty read BIO means "wait for more", not end of stream */
    BIO_set_mem_eof_return(s->rbio, -1);
    SSL_set_bio(s->ssl, s->rbio, s->wbio);    /* the SSL owns both now */
    SSL_set_accept_state(s->ssl);
    return s;
}

void loom_tls_session_free(loom_tls_session **ps)
{
    if (!ps || !*ps) return;
    SSL_free((*ps)->ssl);
    free(*ps);
    *ps = NULL;
}

int loom_tls_feed(loom_tls_session *s, const char *data, size_t len)
{
    ERR_clear_error();
    while (len > 0) {
        size_t n = 0;
        if (BIO_write_ex(s->rbio, data, len, &n) != 1 || n == 0) {
            ERR_clear_error();
            return LOOM_ENOMEM;
        }
        data += n;
        len -= n;
    }
    return LOOM_OK;
}

int loom_tls_read(loom_tls_session *s, char *buf, size_t cap, size_t *got)
{
    *got = 0;
    ERR_clear_error();
    if (SSL_read_ex(s->ssl, buf, cap, got) == 1) return *got ? LOOM_TLS_DATA : LOOM_TLS_AGAIN;
    int e = SSL_get_error(s->ssl, 0);
    ERR_clear_error();
    *got = 0;
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return LOOM_TLS_AGAIN;
    if (e == SSL_ERROR_ZERO_RETURN) return LOOM_TLS_CLOSED;
    return LOOM_TLS_FAILED;
}

int loom_tls_established(const loom_tls_session *s)
{
    return SSL_is_init_finished(s->ssl) ? 1 : 0;
}

int loom_tls_write(loom_tls_session *s, const void *data, size_t len)
{
    ERR_clear_error();
    const char *p = data;
    /* a memory BIO takes everything: each call writes whole records until
       all of it is in; the bound only guards against a stuck SSL */
    for (int guard = 0; len > 0 && guard < 1 << 20; guard++) {
        size_t n = 0;
        if (SSL_write_ex(s->ssl, p, len, &n) != 1) {
            ERR_clear_error();
            return LOOM_EIO;
        }
        p += n;
        len -= n;
    }
    return len ? LOOM_EIO : LOOM_OK;
}

int loom_tls_close_notify(loom_tls_session *s)
{
    if (s->sent_close_notify) return LOOM_OK;
    s->sent_close_notify = 1;
    ERR_clear_error();
    /* 0: sent, the peer's not yet seen; 1: both done; <0: failed */
    int rc = SSL_shutdown(s->ssl);
    ERR_clear_error();
    return rc >= 0 ? LOOM_OK : LOOM_EIO;
}

size_t loom_tls_pending(const loom_tls_session *s)
{
    return BIO_ctrl_pending(s->wbio);
}

size_t loom_tls_take(loom_tls_session *s, char *out, size_t cap)
{
    size_t n = 0;
    if (cap == 0 || BIO_read_ex(s->wbio, out, cap, &n) != 1) n = 0;
    ERR_clear_error();
    return n;
}
