/* tests/test_http.c — the gateway's HTTP server (gateway/http.c) on
 * 127.0.0.1, driven by raw TCP sockets (requests written from RFC 9112's
 * grammar) and by the curl binary: keep-alive, pipelining, chunked bodies,
 * 100-continue, HEAD, HTTP/1.0, the refusals (400, 413, 417, 431, 408, 503,
 * 504), a client gone before its answer, 200 concurrent clients, metrics, and
 * stopping with connections open and handlers still working.  TLS: a CA and
 * a server certificate made at run time with the openssl command, then curl
 * and an OpenSSL client against a TLS server (verification, keep-alive,
 * pipelining, bodies, downgrades, plaintext and garbage on the TLS port, a
 * stalled handshake, close_notify). */
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "loom/loom.h"
#include "runtime/util.h"
#include "gateway/http.h"
#include "testutil.h"

/* ---- the handler under test ---- */

#define MAX_NEVER 64
static pthread_mutex_t never_mu = PTHREAD_MUTEX_INITIALIZER;
static loom_http_reply *never[MAX_NEVER];
static int nnever;
static atomic_int slow_running;
static atomic_int bad_header_rc = 1;

typedef struct slow_job {
    loom_http_reply *rep;
    int ms;
    char body[64];
} slow_job;

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static void *slow_main(void *arg)
{
    slow_job *j = arg;
    sleep_ms(j->ms);
    loom_http_reply_send(j->rep, 200, "text/plain", j->body, strlen(j->body), NULL);
    free(j);
    atomic_fetch_sub(&slow_running, 1);
    return NULL;
}

/* Answer from another thread after ?ms= milliseconds with "slow:<body>". */
static void start_slow(const loom_http_request *req, loom_http_reply *rep)
{
    char ms[16] = "300";
    loom_http_query_get(req, "ms", ms, sizeof ms);
    slow_job *j = calloc(1, sizeof(*j));
    REQUIRE(j);
    j->rep = rep;
    j->ms = atoi(ms);
    snprintf(j->body, sizeof j->body, "slow:%.*s", (int)(req->body_len < 40 ? req->body_len : 40),
             req->body);
    atomic_fetch_add(&slow_running, 1);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    REQUIRE(pthread_create(&t, &attr, slow_main, j) == 0);
    pthread_attr_destroy(&attr);
}

static void echo(const loom_http_request *req, loom_http_reply *rep)
{
    char a[256] = "";
    int arc = loom_http_query_get(req, "a", a, sizeof a);
    const char *xt = loom_http_header_get(req, "x-test");
    json_t *j = json_pack("{s:s,s:s,s:s,s:s%,s:s,s:s,s:i,s:i}", "method", req->method, "path",
                          req->path, "query", req->query, "body", req->body, req->body_len,
                          "a", arc >= 0 ? a : "", "x-test", xt ? xt : "", "nheaders",
                          req->nheaders, "minor", req->http_minor);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (s) loom_http_reply_send(rep, 200, "application/json", s, strlen(s), "X-Echo: 1\r\n");
    else loom_http_reply_error(rep, 500, "json", NULL);
    free(s);
    json_decref(j);
}

static void handler(void *ud, const loom_http_request *req, loom_http_reply *rep)
{
    (void)ud;
    if (strcmp(req->path, "/never") == 0) {
        pthread_mutex_lock(&never_mu);
        if (nnever < MAX_NEVER) never[nnever++] = rep;
        else loom_http_reply_send(rep, 500, NULL, NULL, 0, NULL);
        pthread_mutex_unlock(&never_mu);
    } else if (strcmp(req->path, "/slow") == 0) {
        start_slow(req, rep);
    } else if (strcmp(req->path, "/health") == 0) {
        loom_http_reply_send(rep, 200, "text/plain", "ok", 2, NULL);
    } else if (strcmp(req->path, "/status") == 0) {
        char code[8] = "200";
        loom_http_query_get(req, "code", code, sizeof code);
        loom_http_reply_send(rep, atoi(code), "text/plain", "status", 6, NULL);
    } else if (strcmp(req->path, "/badhdr") == 0) {
        atomic_store(&bad_header_rc, loom_http_reply_send(rep, 200, "text/plain", "x", 1,
                                                          "Bad Header\r\n"));
    } else if (strcmp(req->path, "/error") == 0) {
        loom_http_reply_error(rep, 422, "bad \"thing\"\n", NULL);
    } else if (strcmp(req->path, "/big") == 0) {
        size_t n = (size_t)3 << 20;
        char *b = malloc(n);
        REQUIRE(b);
        for (size_t i = 0; i < n; i++) b[i] = (char)('a' + i % 26);
        loom_http_reply_send(rep, 200, "application/octet-stream", b, n, NULL);
        free(b);
    } else {
        echo(req, rep);
    }
}

static int is_health(const loom_http_request *req)
{
    return strcmp(req->path, "/health") == 0;
}

/* ---- a raw client, reading answers as RFC 9112 frames them ---- */

typedef struct client {
    int fd;
    SSL *ssl;                    /* a TLS client: reads and writes go through it */
    char *buf;
    size_t len, cap;
} client;

typedef struct resp {
    int status;
    char head[8192];             /* status line and header lines */
    char *body;
    size_t body_len;
} resp;

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(0x7f000001);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) { close(fd); return -1; }
    struct timeval tv = { 10, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void client_open(client *c, int port)
{
    memset(c, 0, sizeof(*c));
    c->fd = connect_to(port);
    REQUIRE(c->fd >= 0);
}

static void client_close(client *c)
{
    SSL_free(c->ssl);
    if (c->fd >= 0) close(c->fd);
    free(c->buf);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}

static int send_str(client *c, const char *s)
{
    size_t n = strlen(s), off = 0;
    while (off < n) {
        size_t w = 0;
        ssize_t k = !c->ssl ? send(c->fd, s + off, n - off, MSG_NOSIGNAL)
                  : SSL_write_ex(c->ssl, s + off, n - off, &w) == 1 ? (ssize_t)w : -1;
        if (k <= 0) return -1;
        off += (size_t)k;
    }
    return 0;
}

/* Read more bytes into the buffer: >0 got some, 0 EOF, -1 error or timeout. */
static int fill(client *c)
{
    if (c->cap - c->len < 65536) {
        c->cap = c->cap ? c->cap * 2 : 131072;
        c->buf = realloc(c->buf, c->cap + 1);
        REQUIRE(c->buf);
    }
    ssize_t k;
    if (c->ssl) {
        size_t got = 0;
        k = SSL_read_ex(c->ssl, c->buf + c->len, c->cap - c->len, &got) == 1 ? (ssize_t)got
            : SSL_get_error(c->ssl, 0) == SSL_ERROR_ZERO_RETURN ? 0 : -1;   /* 0: close_notify */
        ERR_clear_error();
    } else {
        k = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
    }
    if (k < 0) return -1;
    c->len += (size_t)k;
    c->buf[c->len] = 0;
    return k > 0 ? 1 : 0;
}

static void consume(client *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
    c->buf[c->len] = 0;
}

/* A header's value from a response head (case-insensitive name), or NULL. */
static const char *hdr(const resp *r, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ' || *v == '\t') v++;
            const char *e = strstr(v, "\r\n");
            size_t n = e ? (size_t)(e - v) : strlen(v);
            if (n >= cap) n = cap - 1;
            memcpy(out, v, n);
            out[n] = 0;
            return out;
        }
    }
    return NULL;
}

/* One response: status-line CRLF *(field-line CRLF) CRLF [body of
 * Content-Length octets; none for HEAD, 1xx, 204, 304].  0 or -1. */
static int read_response(client *c, resp *r, int head_request)
{
    memset(r, 0, sizeof(*r));
    char *end = NULL;
    for (int i = 0; i < 1000 && !(end = c->buf ? strstr(c->buf, "\r\n\r\n") : NULL); i++)
        if (fill(c) <= 0) return -1;
    if (!end) return -1;
    size_t hl = (size_t)(end - c->buf) + 2;
    if (hl >= sizeof r->head) return -1;
    memcpy(r->head, c->buf, hl);
    r->head[hl] = 0;
    consume(c, hl + 2);
    if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1) return -1;
    char v[32];
    size_t blen = 0;
    int has_body = !head_request && r->status >= 200 && r->status != 204 && r->status != 304;
    if (has_body && hdr(r, "content-length", v, sizeof v)) blen = strtoull(v, NULL, 10);
    for (int i = 0; i < 100000 && c->len < blen; i++)
        if (fill(c) <= 0) return -1;
    r->body = malloc(blen + 1);
    REQUIRE(r->body);
    memcpy(r->body, c->buf, blen);
    r->body[blen] = 0;
    r->body_len = blen;
    consume(c, blen);
    return 0;
}

static void resp_free(resp *r)
{
    free(r->body);
    r->body = NULL;
}

/* 1 if the server closes the connection (EOF or reset) within the timeout. */
static int closed_by_server(client *c)
{
    for (int i = 0; i < 100; i++) {
        ssize_t k = recv(c->fd, (char[256]){ 0 }, 256, 0);
        if (k == 0) return 1;
        if (k < 0) return errno == ECONNRESET;
    }
    return 0;
}

/* 1 if anything (an answer, EOF, a reset) comes within ms. */
static int closed_by_server_within(client *c, int ms)
{
    struct pollfd p = { .fd = c->fd, .events = POLLIN };
    return poll(&p, 1, ms) > 0;
}

/* Send a request and read its answer; the status, -1 on failure. */
static int roundtrip(client *c, const char *req, resp *r)
{
    if (send_str(c, req) != 0) return -1;
    return read_response(c, r, strncmp(req, "HEAD ", 5) == 0) == 0 ? r->status : -1;
}

static json_t *body_json(const resp *r)
{
    return json_loadb(r->body ? r->body : "", r->body_len, 0, NULL);
}

static const char *jstr(json_t *j, const char *key)
{
    const char *s = json_string_value(json_object_get(j, key));
    return s ? s : "";
}

/* ---- the tests ---- */

static void test_keep_alive(int port)
{
    client c;
    client_open(&c, port);
    resp r;
    CHECK(roundtrip(&c, "GET /one?x=1&a=b%20c+d HTTP/1.1\r\nHost: t\r\nX-Test: yes\r\n\r\n", &r) == 200);
    char v[128];
    CHECK(hdr(&r, "date", v, sizeof v) && strstr(v, " GMT"));
    CHECK(hdr(&r, "content-length", v, sizeof v) && (size_t)atoi(v) == r.body_len);
    CHECK(hdr(&r, "content-type", v, sizeof v) && strcmp(v, "application/json") == 0);
    CHECK(hdr(&r, "x-echo", v, sizeof v) && strcmp(v, "1") == 0);
    CHECK(hdr(&r, "connection", v, sizeof v) == NULL);
    json_t *j = body_json(&r);
    CHECK(j && strcmp(jstr(j, "method"), "GET") == 0);
    CHECK(j && strcmp(jstr(j, "path"), "/one") == 0);
    CHECK(j && strcmp(jstr(j, "query"), "x=1&a=b%20c+d") == 0);
    CHECK(j && strcmp(jstr(j, "a"), "b c d") == 0);
    CHECK(j && strcmp(jstr(j, "x-test"), "yes") == 0);
    json_decref(j);
    resp_free(&r);
    /* the same socket, a second request: a percent-encoded path */
    CHECK(roundtrip(&c, "POST /two%2Fthree%20x HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody", &r) == 200);
    j = body_json(&r);
    CHECK(j && strcmp(jstr(j, "path"), "/two/three x") == 0);
    CHECK(j && strcmp(jstr(j, "body"), "body") == 0);
    CHECK(j && strcmp(jstr(j, "method"), "POST") == 0);
    json_decref(j);
    resp_free(&r);
    /* Connection: close from the client: answered, then closed */
    CHECK(roundtrip(&c, "GET /three HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &r) == 200);
    CHECK(hdr(&r, "connection", v, sizeof v) && strcasecmp(v, "close") == 0);
    resp_free(&r);
    CHECK(closed_by_server(&c));
    client_close(&c);
}

static void test_pipelining(int port)
{
    client c;
    client_open(&c, port);
    CHECK(send_str(&c, "GET /p1 HTTP/1.1\r\nHost: t\r\n\r\n"
                       "GET /slow?ms=150 HTTP/1.1\r\nHost: t\r\n\r\n"
                       "POST /p3 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
                       "HEAD /p4 HTTP/1.1\r\nHost: t\r\n\r\n"
                       "GET /p5 HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
    const char *want[] = { "/p1", "slow", "/p3", NULL, "/p5" };
    for (int i = 0; i < 5; i++) {
        resp r;
        CHECK(read_response(&c, &r, i == 3) == 0);
        CHECK(r.status == 200);
        if (i == 1) {
            CHECK(r.body && strcmp(r.body, "slow:") == 0);
        } else if (i == 3) {
            CHECK(r.body_len == 0);
        } else {
            json_t *j = body_json(&r);
            CHECK(j && strcmp(jstr(j, "path"), want[i]) == 0);
            if (i == 2) CHECK(j && strcmp(jstr(j, "body"), "abc") == 0);
            json_decref(j);
        }
        resp_free(&r);
    }
    client_close(&c);
}

static void test_chunked(int port)
{
    client c;
    client_open(&c, port);
    /* chunked request body in pieces, with a chunk extension and a trailer */
    CHECK(send_str(&c, "POST /chunks HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel") == 0);
    sleep_ms(30);
    CHECK(send_str(&c, "lo\r\n7;ext=1\r\n, world\r\n") == 0);
    sleep_ms(30);
    CHECK(send_str(&c, "0\r\nX-Trailer: t\r\n\r\n") == 0);
    resp r;
    CHECK(read_response(&c, &r, 0) == 0 && r.status == 200);
    json_t *j = body_json(&r);
    CHECK(j && strcmp(jstr(j, "body"), "hello, world") == 0);
    json_decref(j);
    resp_free(&r);
    /* a chunked body over max_body_bytes (64 KiB here): 413, closed */
    CHECK(send_str(&c, "POST /chunks HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n") == 0);
    char chunk[8208];
    memset(chunk, 'x', sizeof chunk);
    snprintf(chunk, 8, "2000\r\n");
    chunk[6] = 'x';
    memcpy(chunk + 6 + 0x2000, "\r\n", 2);
    chunk[6 + 0x2000 + 2] = 0;
    int sent_fail = 0;
    for (int i = 0; i < 12 && !sent_fail; i++) sent_fail = send_str(&c, chunk) != 0;
    CHECK(read_response(&c, &r, 0) == 0 && r.status == 413);
    resp_free(&r);
    CHECK(closed_by_server(&c));
    client_close(&c);
}

static void test_continue(int port)
{
    client c;
    client_open(&c, port);
    CHECK(send_str(&c, "PUT /cont HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n") == 0);
    resp r;
    CHECK(read_response(&c, &r, 0) == 0 && r.status == 100);
    resp_free(&r);
    CHECK(send_str(&c, "12345") == 0);
    CHECK(read_response(&c, &r, 0) == 0 && r.status == 200);
    json_t *j = body_json(&r);
    CHECK(j && strcmp(jstr(j, "body"), "12345") == 0);
    json_decref(j);
    resp_free(&r);
    /* too big: 413 at once, no 100 Continue, the body never sent */
    CHECK(roundtrip(&c, "PUT /cont HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 100000000\r\n\r\n", &r) == 413);
    char v[64];
    CHECK(hdr(&r, "connection", v, sizeof v) && strcasecmp(v, "close") == 0);
    resp_free(&r);
    CHECK(closed_by_server(&c));
    client_close(&c);
    /* an expectation the server cannot meet */
    client_open(&c, port);
    CHECK(roundtrip(&c, "PUT /cont HTTP/1.1\r\nHost: t\r\nExpect: something\r\nContent-Length: 1\r\n\r\nx", &r) == 417);
    resp_free(&r);
    client_close(&c);
}

static void test_head_and_statuses(int port)
{
    client c;
    client_open(&c, port);
    resp g, h;
    CHECK(roundtrip(&c, "GET /status?code=200 HTTP/1.1\r\nHost: t\r\n\r\n", &g) == 200);
    CHECK(roundtrip(&c, "HEAD /status?code=200 HTTP/1.1\r\nHost: t\r\n\r\n", &h) == 200);
    char gv[32] = "", hv[32] = "";
    hdr(&g, "content-length", gv, sizeof gv);
    hdr(&h, "content-length", hv, sizeof hv);
    CHECK(strcmp(gv, hv) == 0 && atoi(gv) > 0);
    /* the HEAD answer had no body: the next answer parses cleanly */
    resp r;
    CHECK(roundtrip(&c, "GET /after-head HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 200);
    json_t *j = body_json(&r);
    CHECK(j && strcmp(jstr(j, "path"), "/after-head") == 0);
    json_decref(j);
    resp_free(&r);
    resp_free(&g);
    resp_free(&h);
    /* 204: no Content-Length, no body */
    CHECK(roundtrip(&c, "GET /status?code=204 HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 204);
    char v[64];
    CHECK(hdr(&r, "content-length", v, sizeof v) == NULL);
    resp_free(&r);
    CHECK(roundtrip(&c, "GET /status?code=418 HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 418);
    CHECK(strcmp(r.body, "status") == 0);
    resp_free(&r);
    /* a handler's bad status or bad extra headers: 500 instead, EINVAL to it */
    CHECK(roundtrip(&c, "GET /status?code=99 HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 500);
    resp_free(&r);
    CHECK(roundtrip(&c, "GET /badhdr HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 500);
    CHECK(atomic_load(&bad_header_rc) == LOOM_EINVAL);
    resp_free(&r);
    /* the JSON error helper escapes */
    CHECK(roundtrip(&c, "GET /error HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 422);
    j = body_json(&r);
    CHECK(j && strcmp(jstr(j, "error"), "bad \"thing\"\n") == 0);
    json_decref(j);
    resp_free(&r);
    /* a large answer */
    CHECK(roundtrip(&c, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 200);
    CHECK(r.body_len == (size_t)3 << 20 && r.body[0] == 'a' && r.body[r.body_len - 1] == 'a' + ((3 << 20) - 1) % 26);
    resp_free(&r);
    client_close(&c);
}

static void test_http10(int port)
{
    client c;
    client_open(&c, port);
    resp r;
    char v[64];
    CHECK(roundtrip(&c, "GET /ten HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &r) == 200);
    CHECK(hdr(&r, "connection", v, sizeof v) && strcasecmp(v, "keep-alive") == 0);
    resp_free(&r);
    CHECK(roundtrip(&c, "GET /ten2 HTTP/1.0\r\n\r\n", &r) == 200);
    CHECK(hdr(&r, "connection", v, sizeof v) && strcasecmp(v, "close") == 0);
    json_t *j = body_json(&r);
    CHECK(j && json_integer_value(json_object_get(j, "minor")) == 0);
    json_decref(j);
    resp_free(&r);
    CHECK(closed_by_server(&c));
    client_close(&c);
}

/* A request the server refuses with STATUS and then closes. */
static void expect_refusal(int port, const char *req, int status)
{
    client c;
    client_open(&c, port);
    resp r;
    int got = roundtrip(&c, req, &r);
    if (got != status) fprintf(stderr, "refusal: got %d want %d for %.60s\n", got, status, req);
    CHECK(got == status);
    char v[64];
    CHECK(hdr(&r, "connection", v, sizeof v) && strcasecmp(v, "close") == 0);
    CHECK(hdr(&r, "date", v, sizeof v) != NULL);
    CHECK(hdr(&r, "content-length", v, sizeof v) != NULL);
    resp_free(&r);
    CHECK(closed_by_server(&c));
    client_close(&c);
}

static void test_refusals(int port)
{
    expect_refusal(port, "GARBAGE\r\n\r\n", 400);
    expect_refusal(port, "GET / HTTP/1.1\r\n\r\n", 400);                       /* no Host */
    expect_refusal(port, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    expect_refusal(port, "GET /a%zz HTTP/1.1\r\nHost: t\r\n\r\n", 400);
    expect_refusal(port, "GET /a%00b HTTP/1.1\r\nHost: t\r\n\r\n", 400);
    expect_refusal(port, "GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n", 400);
    expect_refusal(port, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
    expect_refusal(port, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400);
    expect_refusal(port, "GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505);
    expect_refusal(port, "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501);
    /* 413 from Content-Length alone, the body never sent */
    expect_refusal(port, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n", 413);
    /* 431: headers over max_header_bytes (4 KiB here) */
    char big[8192];
    int n = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: t\r\nX-Big: ");
    memset(big + n, 'y', 6000);
    strcpy(big + n + 6000, "\r\n\r\n");
    expect_refusal(port, big, 431);
    /* 431: too many header fields */
    char many[8192];
    n = snprintf(many, sizeof many, "GET / HTTP/1.1\r\nHost: t\r\n");
    for (int i = 0; i < 120; i++) n += snprintf(many + n, sizeof many - (size_t)n, "A%d: 1\r\n", i);
    snprintf(many + n, sizeof many - (size_t)n, "\r\n");
    expect_refusal(port, many, 431);
    /* binary garbage */
    char bin[300];
    for (int i = 0; i < 299; i++) bin[i] = (char)(1 + (i * 37) % 255);
    bin[299] = 0;
    expect_refusal(port, bin, 400);
}

static void test_request_timeout(int port)
{
    client c;
    client_open(&c, port);
    CHECK(send_str(&c, "GET /half HTTP/1.1\r\nHost: t\r\n") == 0);
    resp r;
    CHECK(read_response(&c, &r, 0) == 0 && r.status == 408);   /* request_timeout 1 s */
    resp_free(&r);
    CHECK(closed_by_server(&c));
    client_close(&c);
    /* a body that stops arriving */
    client_open(&c, port);
    CHECK(send_str(&c, "POST /half HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n12345") == 0);
    CHECK(read_response(&c, &r, 0) == 0 && r.status == 408);
    resp_free(&r);
    client_close(&c);
}

static void test_handler_timeout(int port)
{
    client c;
    client_open(&c, port);
    resp r;
    CHECK(roundtrip(&c, "GET /never HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 504);   /* 700 ms */
    resp_free(&r);
    /* the connection stays usable */
    CHECK(roundtrip(&c, "GET /after-504 HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 200);
    resp_free(&r);
    /* a handler answering after its 504: dropped, the next answer is ours */
    CHECK(roundtrip(&c, "GET /slow?ms=1000 HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 504);
    resp_free(&r);
    sleep_ms(400);                   /* the late answer arrives meanwhile */
    CHECK(roundtrip(&c, "GET /next HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 200);
    json_t *j = body_json(&r);
    CHECK(j && strcmp(jstr(j, "path"), "/next") == 0);
    json_decref(j);
    resp_free(&r);
    client_close(&c);
}

static void test_client_gone(int port)
{
    /* the client closes while the handler works; the answer comes later */
    for (int i = 0; i < 5; i++) {
        client c;
        client_open(&c, port);
        CHECK(send_str(&c, "GET /slow?ms=100 HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
        if (i % 2) {                 /* a reset instead of a FIN */
            struct linger lg = { 1, 0 };
            setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        sleep_ms(20);
        client_close(&c);
    }
    /* a client gone mid-request */
    client c;
    client_open(&c, port);
    CHECK(send_str(&c, "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc") == 0);
    client_close(&c);
    sleep_ms(300);
    client_open(&c, port);
    resp r;
    CHECK(roundtrip(&c, "GET /still-alive HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 200);
    resp_free(&r);
    client_close(&c);
}

static void test_inflight_limit(int port)
{
    /* max_inflight is 2: two slow requests fill it */
    client a, b, c, h;
    client_open(&a, port);
    client_open(&b, port);
    CHECK(send_str(&a, "GET /slow?ms=1500 HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
    CHECK(send_str(&b, "GET /slow?ms=1500 HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
    sleep_ms(200);
    client_open(&c, port);
    resp r;
    CHECK(roundtrip(&c, "GET /echo HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 503);
    char v[32];
    CHECK(hdr(&r, "retry-after", v, sizeof v) && strcmp(v, "1") == 0);
    resp_free(&r);
    /* the connection survives its 503 */
    CHECK(roundtrip(&c, "GET /echo HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 503);
    resp_free(&r);
    /* health checks are exempt */
    client_open(&h, port);
    CHECK(roundtrip(&h, "GET /health HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 200);
    CHECK(strcmp(r.body, "ok") == 0);
    resp_free(&r);
    CHECK(read_response(&a, &r, 0) == 0 && r.status == 200);
    resp_free(&r);
    CHECK(read_response(&b, &r, 0) == 0 && r.status == 200);
    resp_free(&r);
    /* room again */
    CHECK(roundtrip(&c, "GET /echo HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 200);
    resp_free(&r);
    client_close(&a);
    client_close(&b);
    client_close(&c);
    client_close(&h);
}

static void test_connection_limit(int port)
{
    /* max_connections is 2, max_conns_per_client 3 */
    client a, b, c, d;
    client_open(&a, port);
    client_open(&b, port);
    resp r;
    CHECK(roundtrip(&a, "GET /a HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 200);
    resp_free(&r);
    sleep_ms(20);
    CHECK(roundtrip(&b, "GET /b HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 200);
    resp_free(&r);
    /* full of idle connections: the one idle longest (a) makes room */
    client_open(&c, port);
    CHECK(roundtrip(&c, "GET /c HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 200);
    resp_free(&r);
    CHECK(closed_by_server(&a));
    client_close(&a);
    /* b and c busy with a request each: no room, 503 without asking */
    CHECK(send_str(&b, "GET /slow?ms=1500 HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
    CHECK(send_str(&c, "GET /x HTTP/1.1\r\nHo") == 0);   /* a request begun */
    sleep_ms(100);
    client_open(&d, port);
    CHECK(read_response(&d, &r, 0) == 0 && r.status == 503);
    char v[32];
    CHECK(hdr(&r, "retry-after", v, sizeof v) && strcmp(v, "1") == 0);
    CHECK(hdr(&r, "connection", v, sizeof v) && strcasecmp(v, "close") == 0);
    resp_free(&r);
    CHECK(closed_by_server(&d));
    client_close(&d);
    client_close(&c);
    /* once the server has seen c's close, there is room again */
    int st = -1;
    for (int i = 0; i < 50 && st != 200; i++) {
        sleep_ms(100);
        client_open(&d, port);
        st = roundtrip(&d, "GET /d HTTP/1.1\r\nHost: t\r\n\r\n", &r);
        resp_free(&r);
        client_close(&d);
    }
    CHECK(st == 200);
    client_close(&b);
}

/* One address may hold max_conns_per_client (3) connections: a fourth makes
 * the address's idle connection that waited longest close; when none of its
 * connections is idle, the fourth gets 429, and the others go on. */
static void test_per_client_limit(int port)
{
    client k[5];
    resp r;
    for (int i = 0; i < 3; i++) {
        client_open(&k[i], port);
        CHECK(roundtrip(&k[i], "GET /k HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 200);
        resp_free(&r);
        sleep_ms(10);
    }
    client_open(&k[3], port);
    CHECK(roundtrip(&k[3], "GET /k3 HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 200);
    resp_free(&r);
    CHECK(closed_by_server(&k[0]));      /* idle longest: made room */
    /* k[1..3] each in the middle of a request: no room for a fifth */
    for (int i = 1; i < 4; i++) CHECK(send_str(&k[i], "GET /busy HTTP/1.1\r\nHo") == 0);
    sleep_ms(100);
    client_open(&k[4], port);
    CHECK(read_response(&k[4], &r, 0) == 0 && r.status == 429);
    resp_free(&r);
    CHECK(closed_by_server(&k[4]));
    CHECK(send_str(&k[1], "st: t\r\n\r\n") == 0);
    CHECK(read_response(&k[1], &r, 0) == 0 && r.status == 200);
    resp_free(&r);
    for (int i = 0; i < 5; i++) client_close(&k[i]);
}

/* ---- admission: bodies are not read before the admit callback says so ---- */

static atomic_int admit_calls;
static atomic_int admit_with_body;    /* counted on the server's thread, checked on ours */

/* Admits requests whose X-Token is "good" (with a 16-byte limit when
 * X-Limit is set), refuses the others with 401; "later" answers from
 * another thread after 100 ms. */
static void *admit_later(void *arg)
{
    sleep_ms(100);
    loom_http_admit(arg, 0, 0, NULL, NULL);
    return NULL;
}

static void admit_cb(void *ud, const loom_http_request *head, loom_http_reply *ticket)
{
    (void)ud;
    atomic_fetch_add(&admit_calls, 1);
    const char *t = loom_http_header_get(head, "X-Token");
    if (head->body_len != 0) atomic_fetch_add(&admit_with_body, 1);
    if (t && !strcmp(t, "later")) {
        pthread_t th;
        REQUIRE(pthread_create(&th, NULL, admit_later, ticket) == 0);
        pthread_detach(th);
    } else if (t && !strcmp(t, "good")) {
        loom_http_admit(ticket, 0, loom_http_header_get(head, "X-Limit") ? 16 : 0, NULL, NULL);
    } else {
        loom_http_admit(ticket, 401, 0, "no", "WWW-Authenticate: Bearer\r\n");
    }
}

static void test_admission(void)
{
    loom_http_opts o = { .handler = handler, .port = 0, .admit = admit_cb, .max_body_bytes = 1 << 20,
                         .max_body_total = 2 << 20 };
    loom_http_server *s = NULL;
    CHECK_RC(loom_http_start(&o, &s), 0);
    REQUIRE(s);
    int port = loom_http_port(s);
    client c;
    resp r;
    /* a GET has no body: no admission */
    client_open(&c, port);
    CHECK(roundtrip(&c, "GET /g HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 200);
    resp_free(&r);
    CHECK(atomic_load(&admit_calls) == 0);
    /* admitted: the body is read and handled; the connection stays */
    CHECK(roundtrip(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nX-Token: good\r\nContent-Length: 5\r\n\r\nhello", &r) == 200);
    CHECK(strstr(r.body, "hello") != NULL);
    resp_free(&r);
    CHECK(roundtrip(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nX-Token: later\r\nContent-Length: 5\r\n\r\nworld", &r) == 200);
    CHECK(strstr(r.body, "world") != NULL);
    resp_free(&r);
    client_close(&c);
    /* refused on the headers: 401 at once, the body never sent, connection closed */
    client_open(&c, port);
    CHECK(send_str(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n") == 0);
    CHECK(read_response(&c, &r, 0) == 0 && r.status == 401);
    char v[64];
    CHECK(hdr(&r, "www-authenticate", v, sizeof v));
    resp_free(&r);
    CHECK(closed_by_server(&c));
    client_close(&c);
    /* Expect: 100-continue: no 100 before the verdict; a refused one gets the 401 instead */
    client_open(&c, port);
    CHECK(send_str(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n") == 0);
    CHECK(read_response(&c, &r, 0) == 0 && r.status == 401);
    resp_free(&r);
    client_close(&c);
    /* admitted with a smaller limit: a Content-Length over it is 413 */
    client_open(&c, port);
    CHECK(roundtrip(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nX-Token: good\r\nX-Limit: 1\r\nContent-Length: 17\r\n\r\n"
                        "12345678901234567", &r) == 413);
    resp_free(&r);
    client_close(&c);
    /* the total of admitted bodies is bounded: two 1 MB bodies being sent use
       the 2 MB budget, a third gets 503; once one is done there is room */
    client a, b;
    client_open(&a, port);
    client_open(&b, port);
    client_open(&c, port);
    const char *big = "POST /echo HTTP/1.1\r\nHost: t\r\nX-Token: good\r\nContent-Length: 1000000\r\n\r\nx";
    CHECK(send_str(&a, big) == 0);
    CHECK(send_str(&b, big) == 0);
    sleep_ms(100);
    CHECK(send_str(&c, big) == 0);
    CHECK(read_response(&c, &r, 0) == 0 && r.status == 503);
    resp_free(&r);
    client_close(&c);
    client_close(&a);                /* a gone mid-body: its reservation is returned */
    sleep_ms(100);
    client_open(&c, port);
    CHECK(send_str(&c, big) == 0);
    CHECK(!closed_by_server_within(&c, 200));   /* admitted: no 503 this time */
    client_close(&c);
    client_close(&b);
    sleep_ms(100);
    client_open(&c, port);
    CHECK(roundtrip(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nX-Token: good\r\nContent-Length: 2\r\n\r\nok", &r) == 200);
    resp_free(&r);
    client_close(&c);
    /* a client gone while its ticket waits: the late verdict finds no connection */
    client_open(&c, port);
    CHECK(send_str(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nX-Token: later\r\nContent-Length: 5\r\n\r\n") == 0);
    sleep_ms(20);
    client_close(&c);
    sleep_ms(200);
    loom_http_stop(&s);
    CHECK(atomic_load(&admit_with_body) == 0);
}

#define NTHREADS 200
static int g_port;
static atomic_int concurrent_ok;

static void *one_client(void *arg)
{
    int i = (int)(intptr_t)arg;
    client c;
    client_open(&c, g_port);
    char req[256];
    snprintf(req, sizeof req, "POST /slow?ms=50 HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\nreq-%03d",
             4 + 3, i);
    resp r;
    char want[32];
    snprintf(want, sizeof want, "slow:req-%03d", i);
    if (roundtrip(&c, req, &r) == 200 && strcmp(r.body, want) == 0)
        atomic_fetch_add(&concurrent_ok, 1);
    resp_free(&r);
    client_close(&c);
    return NULL;
}

static void test_concurrent(int port)
{
    g_port = port;
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        REQUIRE(pthread_create(&t[i], NULL, one_client, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < NTHREADS; i++) pthread_join(t[i], NULL);
    CHECK(atomic_load(&concurrent_ok) == NTHREADS);
    if (atomic_load(&concurrent_ok) != NTHREADS)
        fprintf(stderr, "concurrent: %d of %d ok\n", atomic_load(&concurrent_ok), NTHREADS);
}

/* ---- curl ---- */

static int have_curl(void)
{
    return system("curl --version >/dev/null 2>&1") == 0;
}

/* Run a curl command line; its stdout into out. */
static int run_curl(const char *cmd, char *out, size_t cap)
{
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = 0;
    return pclose(f);
}

static void test_curl(int port)
{
    if (!have_curl()) {
        printf("curl not found: skipping the curl part\n");
        return;
    }
    char cmd[1024], out[65536];
    /* GET with a query, a header */
    snprintf(cmd, sizeof cmd, "curl -sS -H 'X-Test: curl' 'http://127.0.0.1:%d/c/get?a=%%41%%42' 2>&1", port);
    CHECK(run_curl(cmd, out, sizeof out) == 0);
    json_t *j = json_loads(out, 0, NULL);
    CHECK(j && strcmp(jstr(j, "path"), "/c/get") == 0 && strcmp(jstr(j, "a"), "AB") == 0 &&
          strcmp(jstr(j, "x-test"), "curl") == 0);
    json_decref(j);
    /* POST, chunked POST, and a 200 KiB body with Expect: 100-continue */
    snprintf(cmd, sizeof cmd, "curl -sS --data-binary 'hello curl' 'http://127.0.0.1:%d/c/post' 2>&1", port);
    CHECK(run_curl(cmd, out, sizeof out) == 0);
    j = json_loads(out, 0, NULL);
    CHECK(j && strcmp(jstr(j, "body"), "hello curl") == 0 && strcmp(jstr(j, "method"), "POST") == 0);
    json_decref(j);
    snprintf(cmd, sizeof cmd, "printf 'chunked body' | curl -sS -H 'Transfer-Encoding: chunked' "
             "--data-binary @- 'http://127.0.0.1:%d/c/chunked' 2>&1", port);
    CHECK(run_curl(cmd, out, sizeof out) == 0);
    j = json_loads(out, 0, NULL);
    CHECK(j && strcmp(jstr(j, "body"), "chunked body") == 0);
    json_decref(j);
    snprintf(cmd, sizeof cmd, "head -c 50000 /dev/zero | tr '\\0' 'z' | curl -sS -H 'Expect: 100-continue' "
             "--data-binary @- -w ' %%{http_code}' -o /dev/null 'http://127.0.0.1:%d/c/expect' 2>&1", port);
    CHECK(run_curl(cmd, out, sizeof out) == 0);
    CHECK(strstr(out, "200") != NULL);
    /* over the body limit */
    snprintf(cmd, sizeof cmd, "head -c 200000 /dev/zero | curl -sS --data-binary @- -o /dev/null "
             "-w '%%{http_code}' 'http://127.0.0.1:%d/c/big' 2>&1", port);
    run_curl(cmd, out, sizeof out);
    CHECK(strstr(out, "413") != NULL);
    /* HEAD, HTTP/1.0 */
    snprintf(cmd, sizeof cmd, "curl -sS -I 'http://127.0.0.1:%d/c/head' 2>&1", port);
    CHECK(run_curl(cmd, out, sizeof out) == 0);
    CHECK(strncmp(out, "HTTP/1.1 200", 12) == 0 && strcasestr(out, "content-length:") != NULL);
    snprintf(cmd, sizeof cmd, "curl -sS --http1.0 'http://127.0.0.1:%d/c/ten' 2>&1", port);
    CHECK(run_curl(cmd, out, sizeof out) == 0);
    j = json_loads(out, 0, NULL);
    CHECK(j && json_integer_value(json_object_get(j, "minor")) == 0);
    json_decref(j);
    /* two URLs on one connection: the second makes no new connection */
    snprintf(cmd, sizeof cmd, "curl -sS -o /dev/null -o /dev/null -w '%%{http_code}:%%{num_connects} ' "
             "'http://127.0.0.1:%d/c/1' 'http://127.0.0.1:%d/c/2' 2>&1", port, port);
    CHECK(run_curl(cmd, out, sizeof out) == 0);
    CHECK(strcmp(out, "200:1 200:0 ") == 0);
    if (strcmp(out, "200:1 200:0 ") != 0) fprintf(stderr, "curl keep-alive: %s\n", out);
}

static void test_metrics(loom_metrics *m)
{
    char *text = NULL;
    CHECK_RC(loom_metrics_render(m, &text, NULL), 0);
    REQUIRE(text);
    CHECK(strstr(text, "# TYPE loom_http_requests_total counter\n") != NULL);
    CHECK(strstr(text, "loom_http_requests_total{code=\"200\"} ") != NULL);
    CHECK(strstr(text, "loom_http_requests_total{code=\"504\"} ") != NULL);
    CHECK(strstr(text, "loom_http_requests_total{code=\"400\"} ") != NULL);
    CHECK(strstr(text, "# TYPE loom_http_request_seconds histogram\n") != NULL);
    CHECK(strstr(text, "loom_http_request_seconds_bucket{le=\"+Inf\"} ") != NULL);
    CHECK(strstr(text, "# TYPE loom_http_connections gauge\n") != NULL);
    CHECK(strstr(text, "# TYPE loom_http_inflight gauge\n") != NULL);
    free(text);
    double inflight = -1;
    CHECK_RC(loom_metrics_value(m, "loom_http_inflight", NULL, &inflight), 0);
    CHECK(inflight == 0);
}

/* Stop with an idle connection, a half-sent request and a handler at work. */
static void test_stop_with_open_connections(void)
{
    loom_http_opts o = { .handler = handler, .port = 0 };
    loom_http_server *s = NULL;
    CHECK_RC(loom_http_start(&o, &s), 0);
    REQUIRE(s);
    int port = loom_http_port(s);
    client idle, half, busy, slow;
    client_open(&idle, port);
    client_open(&half, port);
    client_open(&busy, port);
    client_open(&slow, port);
    CHECK(send_str(&half, "GET / HTTP/1.1\r\nHost") == 0);
    CHECK(send_str(&busy, "GET /never HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
    CHECK(send_str(&slow, "GET /slow?ms=200 HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
    sleep_ms(100);
    int64_t t0 = loom__now_ms();
    loom_http_stop(&s);
    CHECK(s == NULL);
    CHECK(loom__now_ms() - t0 < 2000);
    CHECK(closed_by_server(&idle));
    CHECK(closed_by_server(&half));
    CHECK(closed_by_server(&busy));
    CHECK(closed_by_server(&slow));
    client_close(&idle);
    client_close(&half);
    client_close(&busy);
    client_close(&slow);
    loom_http_stop(&s);              /* NULL-safe */
    /* the port is free again: nothing listens */
    CHECK(connect_to(port) < 0);
}

static void test_start_errors(void)
{
    loom_http_server *s = NULL;
    loom_http_opts o = { .port = 0 };
    CHECK_RC(loom_http_start(&o, &s), LOOM_EINVAL);               /* no handler */
    o.handler = handler;
    o.host = "not an address";
    CHECK_RC(loom_http_start(&o, &s), LOOM_EINVAL);
    o.host = "127.0.0.1";
    loom_http_server *a = NULL;
    CHECK_RC(loom_http_start(&o, &a), 0);
    REQUIRE(a);
    o.port = loom_http_port(a);
    CHECK_RC(loom_http_start(&o, &s), LOOM_EIO);                  /* in use */
    loom_http_stop(&a);
    o.port = 0;
    o.host = "::1";
    int rc = loom_http_start(&o, &a);
    CHECK(rc == 0 || rc == LOOM_EIO);                              /* no IPv6 in some sandboxes */
    loom_http_stop(&a);
}

/* ---- TLS ---- */

static char tls_dir[64];

/* A CA, a server certificate for 127.0.0.1 and localhost signed by it, and a
 * key of no certificate, in a fresh directory.  0, or -1 (no openssl). */
static int make_test_pki(void)
{
    snprintf(tls_dir, sizeof tls_dir, "/tmp/loom-test-tls-XXXXXX");
    if (!mkdtemp(tls_dir)) return -1;
    char cmd[3072];
    snprintf(cmd, sizeof cmd,
             "cd %s && exec >log 2>&1 && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "  -subj /CN=loom-test-ca -keyout ca.key -out ca.pem "
             "  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign && "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost "
             "  -keyout server.key -out server.csr && "
             "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nbasicConstraints=CA:FALSE\\n"
             "extendedKeyUsage=serverAuth\\n' >ext.cnf && "
             "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
             "  -extfile ext.cnf -out server.pem && "
             "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out other.key",
             tls_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void remove_test_pki(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tls_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", tls_dir);
}

static const char *pki(const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", tls_dir, name);
    return out;
}

/* An OpenSSL client context: versions min..max (0: library defaults), the
 * test CA trusted (verify=1) or nothing trusted (verify=0: no checks). */
static SSL_CTX *tls_client_ctx(int min, int max, int verify)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    REQUIRE(ctx);
    if (min) {
        /* let this client offer old versions: the server must refuse them */
        SSL_CTX_set_security_level(ctx, 0);
        SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0");
        SSL_CTX_set_min_proto_version(ctx, min);
    }
    if (max) SSL_CTX_set_max_proto_version(ctx, max);
    char ca[128];
    if (verify) {
        REQUIRE(SSL_CTX_load_verify_locations(ctx, pki("ca.pem", ca, sizeof ca), NULL) == 1);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    return ctx;
}

/* Connect and complete a handshake: 0, or -1 when it fails. */
static int tls_client_open(client *c, int port, SSL_CTX *ctx)
{
    client_open(c, port);
    c->ssl = SSL_new(ctx);
    REQUIRE(c->ssl);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set1_host(c->ssl, "127.0.0.1");
    int ok = SSL_connect(c->ssl) == 1;
    ERR_clear_error();
    return ok ? 0 : -1;
}

/* Read raw bytes until the server closes (EOF or reset): 1 if it did within
 * ms; what came before is in got (NUL-terminated). */
static int raw_until_closed(int fd, int ms, char *got, size_t cap)
{
    size_t n = 0;
    got[0] = 0;
    int64_t end = loom__now_ms() + ms;
    while (loom__now_ms() < end) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 50) <= 0) continue;
        char b[4096];
        ssize_t k = recv(fd, b, sizeof b, 0);
        if (k == 0 || (k < 0 && errno == ECONNRESET)) return 1;
        if (k < 0) return 0;
        size_t take = (size_t)k < cap - 1 - n ? (size_t)k : cap - 1 - n;
        memcpy(got + n, b, take);
        n += take;
        got[n] = 0;
    }
    return 0;
}

static void test_tls_start_errors(void)
{
    char cert[128], key[128], other[128], err[512];
    pki("server.pem", cert, sizeof cert);
    pki("server.key", key, sizeof key);
    pki("other.key", other, sizeof other);
    loom_http_opts o = { .handler = handler, .tls_cert = cert, .tls_key = other,
                         .error = err, .error_cap = sizeof err };
    loom_http_server *s = NULL;
    CHECK_RC(loom_http_start(&o, &s), LOOM_EINVAL);               /* key of another cert */
    CHECK(s == NULL && strstr(err, "does not match") != NULL);
    o.tls_key = "/nonexistent/key.pem";
    CHECK_RC(loom_http_start(&o, &s), LOOM_EINVAL);
    CHECK(strstr(err, "private key") && strstr(err, "/nonexistent/key.pem"));
    o.tls_key = key;
    o.tls_cert = key;                                              /* a key is not a certificate */
    CHECK_RC(loom_http_start(&o, &s), LOOM_EINVAL);
    CHECK(strstr(err, "certificate") != NULL);
    o.tls_cert = cert;
    o.tls_key = NULL;                                              /* half of a pair */
    CHECK_RC(loom_http_start(&o, &s), LOOM_EINVAL);
    CHECK(err[0] != 0);
    o.tls_key = key;
    CHECK_RC(loom_http_start(&o, &s), 0);
    CHECK(s && err[0] == 0);
    loom_http_stop(&s);
}

static void test_tls_curl(int port)
{
    if (!have_curl()) {
        printf("curl not found: skipping the TLS curl part\n");
        return;
    }
    char cmd[1024], out[65536], ca[128];
    pki("ca.pem", ca, sizeof ca);
    /* GET: verified against the test CA, by address and by name */
    snprintf(cmd, sizeof cmd, "curl -sS --max-time 10 --cacert %s -H 'X-Test: tls' "
             "'https://127.0.0.1:%d/t/get?a=%%41' 2>&1", ca, port);
    CHECK(run_curl(cmd, out, sizeof out) == 0);
    json_t *j = json_loads(out, 0, NULL);
    CHECK(j && strcmp(jstr(j, "path"), "/t/get") == 0 && strcmp(jstr(j, "a"), "A") == 0 &&
          strcmp(jstr(j, "x-test"), "tls") == 0);
    json_decref(j);
    snprintf(cmd, sizeof cmd, "curl -sS --max-time 10 --cacert %s -o /dev/null -w '%%{http_code}' "
             "'https://localhost:%d/t/name' 2>&1", ca, port);
    CHECK(run_curl(cmd, out, sizeof out) == 0 && strcmp(out, "200") == 0);
    /* POST bodies: plain, and 50 KB with Expect: 100-continue */
    snprintf(cmd, sizeof cmd, "curl -sS --max-time 10 --cacert %s --data-binary 'hello tls' "
             "'https://127.0.0.1:%d/t/post' 2>&1", ca, port);
    CHECK(run_curl(cmd, out, sizeof out) == 0);
    j = json_loads(out, 0, NULL);
    CHECK(j && strcmp(jstr(j, "body"), "hello tls") == 0 && strcmp(jstr(j, "method"), "POST") == 0);
    json_decref(j);
    snprintf(cmd, sizeof cmd, "head -c 50000 /dev/zero | tr '\\0' 'z' | curl -sS --max-time 10 --cacert %s "
             "-H 'Expect: 100-continue' --data-binary @- -w '%%{http_code}' -o /dev/null "
             "'https://127.0.0.1:%d/t/expect' 2>&1", ca, port);
    CHECK(run_curl(cmd, out, sizeof out) == 0 && strcmp(out, "200") == 0);
    /* keep-alive: the second URL makes no new connection */
    snprintf(cmd, sizeof cmd, "curl -sS --max-time 10 --cacert %s -o /dev/null -o /dev/null "
             "-w '%%{http_code}:%%{num_connects} ' 'https://127.0.0.1:%d/t/1' 'https://127.0.0.1:%d/t/2' 2>&1",
             ca, port, port);
    CHECK(run_curl(cmd, out, sizeof out) == 0 && strcmp(out, "200:1 200:0 ") == 0);
    /* TLS 1.2 alone works; 1.3 is the default */
    snprintf(cmd, sizeof cmd, "curl -sS --max-time 10 --cacert %s --tlsv1.2 --tls-max 1.2 -o /dev/null "
             "-w '%%{http_code}' 'https://127.0.0.1:%d/t/12' 2>&1", ca, port);
    CHECK(run_curl(cmd, out, sizeof out) == 0 && strcmp(out, "200") == 0);
    /* an unknown CA fails; a downgrade to TLS 1.1 fails; plain http gets nothing */
    snprintf(cmd, sizeof cmd, "curl -sS --max-time 10 -o /dev/null 'https://127.0.0.1:%d/t/x' 2>/dev/null", port);
    CHECK(run_curl(cmd, out, sizeof out) != 0);
    snprintf(cmd, sizeof cmd, "curl -sS --max-time 10 --cacert %s --tlsv1.1 --tls-max 1.1 -o /dev/null "
             "'https://127.0.0.1:%d/t/x' 2>/dev/null", ca, port);
    CHECK(run_curl(cmd, out, sizeof out) != 0);
    snprintf(cmd, sizeof cmd, "curl -sS --max-time 10 -o /dev/null -w '%%{http_code}' "
             "'http://127.0.0.1:%d/t/x' 2>/dev/null", port);
    CHECK(run_curl(cmd, out, sizeof out) != 0 && strcmp(out, "000") == 0);
}

/* The server itself refuses TLS 1.0 and 1.1, even from a client that offers
 * nothing newer and accepts any cipher. */
static void test_tls_downgrade(int port)
{
    int old[] = { TLS1_VERSION, TLS1_1_VERSION };
    for (int i = 0; i < 2; i++) {
        SSL_CTX *ctx = tls_client_ctx(old[i], old[i], 0);
        client c;
        CHECK(tls_client_open(&c, port, ctx) != 0);
        client_close(&c);
        SSL_CTX_free(ctx);
    }
    SSL_CTX *ctx = tls_client_ctx(TLS1_VERSION, TLS1_2_VERSION, 1);   /* offers 1.0-1.2: gets 1.2 */
    client c;
    CHECK(tls_client_open(&c, port, ctx) == 0);
    CHECK(c.ssl && SSL_version(c.ssl) == TLS1_2_VERSION);
    CHECK(c.ssl && SSL_get_current_compression(c.ssl) == NULL);
    client_close(&c);
    SSL_CTX_free(ctx);
}

/* Keep-alive, pipelining, an answer from another thread, a 3 MiB answer
 * (many records, partial socket writes), and Connection: close ending in
 * close_notify — over one verified connection. */
static void test_tls_client(int port)
{
    SSL_CTX *ctx = tls_client_ctx(0, 0, 1);
    client c;
    CHECK(tls_client_open(&c, port, ctx) == 0);
    CHECK(send_str(&c, "GET /p1 HTTP/1.1\r\nHost: t\r\n\r\n"
                       "GET /slow?ms=100 HTTP/1.1\r\nHost: t\r\n\r\n"
                       "POST /p3 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
                       "GET /p4 HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
    const char *want[] = { "/p1", "slow", "/p3", "/p4" };
    for (int i = 0; i < 4; i++) {
        resp r;
        CHECK(read_response(&c, &r, 0) == 0 && r.status == 200);
        if (i == 1) {
            CHECK(r.body && strcmp(r.body, "slow:") == 0);
        } else {
            json_t *j = body_json(&r);
            CHECK(j && strcmp(jstr(j, "path"), want[i]) == 0);
            if (i == 2) CHECK(j && strcmp(jstr(j, "body"), "abc") == 0);
            json_decref(j);
        }
        resp_free(&r);
    }
    resp r;
    CHECK(roundtrip(&c, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 200);
    CHECK(r.body_len == (size_t)3 << 20 && r.body && r.body[0] == 'a' && r.body[25] == 'z');
    resp_free(&r);
    CHECK(roundtrip(&c, "GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &r) == 200);
    resp_free(&r);
    CHECK(fill(&c) == 0);            /* close_notify, not a bare EOF */
    client_close(&c);
    SSL_CTX_free(ctx);
}

/* Plaintext, garbage and silence on the TLS port: closed, no HTTP answer,
 * and the server goes on serving. */
static void test_tls_bad_clients(int port, loom_metrics *m)
{
    char got[8192];
    client c;
    client_open(&c, port);
    CHECK(send_str(&c, "GET / HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
    CHECK(raw_until_closed(c.fd, 3000, got, sizeof got) == 1);
    CHECK(strstr(got, "HTTP/") == NULL);
    client_close(&c);
    /* a handshake record's header, then random bytes */
    client_open(&c, port);
    unsigned char junk[600] = { 0x16, 0x03, 0x01, 0x02, 0x00 };
    srand(7);
    for (size_t i = 5; i < sizeof junk; i++) junk[i] = (unsigned char)rand();
    CHECK(send(c.fd, junk, sizeof junk, MSG_NOSIGNAL) == (ssize_t)sizeof junk);
    CHECK(raw_until_closed(c.fd, 3000, got, sizeof got) == 1);
    client_close(&c);
    /* random bytes where records should be, after a completed handshake */
    SSL_CTX *ctx = tls_client_ctx(0, 0, 1);
    CHECK(tls_client_open(&c, port, ctx) == 0);
    junk[0] = 0x17, junk[1] = 0x03, junk[2] = 0x03, junk[3] = 0x01, junk[4] = 0x00;
    CHECK(send(c.fd, junk, 261, MSG_NOSIGNAL) == 261);
    CHECK(raw_until_closed(c.fd, 3000, got, sizeof got) == 1);
    client_close(&c);
    /* a client that stops mid-handshake is closed after request_timeout_ms (1 s) */
    client_open(&c, port);
    CHECK(send(c.fd, junk, 5, MSG_NOSIGNAL) == 5);       /* a record header, no record */
    int64_t t0 = loom__now_ms();
    CHECK(raw_until_closed(c.fd, 5000, got, sizeof got) == 1);
    int64_t took = loom__now_ms() - t0;
    CHECK(took >= 700 && took < 4000);
    client_close(&c);
    /* still serving */
    CHECK(tls_client_open(&c, port, ctx) == 0);
    resp r;
    CHECK(roundtrip(&c, "GET /after HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 200);
    resp_free(&r);
    client_close(&c);
    SSL_CTX_free(ctx);
    double v = 0;
    CHECK_RC(loom_metrics_value(m, "loom_http_tls_handshake_failures_total", "reason=\"timeout\"", &v), 0);
    CHECK(v >= 1);
    CHECK_RC(loom_metrics_value(m, "loom_http_tls_handshake_failures_total", "reason=\"error\"", &v), 0);
    CHECK(v >= 2);
}

static void test_tls(void)
{
    if (make_test_pki() != 0) {
        printf("openssl command failed (see %s/log): skipping the TLS part\n", tls_dir);
        return;
    }
    test_tls_start_errors();
    char cert[128], key[128];
    loom_metrics *m = loom_metrics_new();
    REQUIRE(m);
    loom_http_opts o = {
        .handler = handler, .request_timeout_ms = 1000, .handler_timeout_ms = 2000,
        .idle_timeout_ms = 5000, .metrics = m, .max_body_bytes = 64 << 10,
        .tls_cert = pki("server.pem", cert, sizeof cert), .tls_key = pki("server.key", key, sizeof key),
    };
    loom_http_server *s = NULL;
    CHECK_RC(loom_http_start(&o, &s), 0);
    REQUIRE(s);
    int port = loom_http_port(s);
    test_tls_curl(port);
    test_tls_downgrade(port);
    test_tls_client(port);
    test_tls_bad_clients(port, m);
    loom_http_stop(&s);
    loom_metrics_free(&m);
    remove_test_pki();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    loom_metrics *m = loom_metrics_new();
    REQUIRE(m);
    loom_http_opts o = {
        .host = "127.0.0.1", .port = 0, .handler = handler,
        .max_header_bytes = 4096, .max_body_bytes = 64 << 10,
        .request_timeout_ms = 1000, .handler_timeout_ms = 700, .idle_timeout_ms = 5000,
        .max_inflight = 1000, .metrics = m,
    };
    loom_http_server *s = NULL;
    CHECK_RC(loom_http_start(&o, &s), 0);
    REQUIRE(s);
    int port = loom_http_port(s);
    CHECK(port > 0);

    test_keep_alive(port);
    test_pipelining(port);
    test_chunked(port);
    test_continue(port);
    test_head_and_statuses(port);
    test_http10(port);
    test_refusals(port);
    test_request_timeout(port);
    test_handler_timeout(port);
    test_client_gone(port);
    test_curl(port);
    test_metrics(m);

    loom_http_opts o2 = { .handler = handler, .max_inflight = 2, .is_priority = is_health };
    loom_http_server *s2 = NULL;
    CHECK_RC(loom_http_start(&o2, &s2), 0);
    REQUIRE(s2);
    test_inflight_limit(loom_http_port(s2));
    loom_http_stop(&s2);

    /* default timeouts: a loaded machine must not turn slow answers into 504s */
    loom_http_opts o4 = { .handler = handler, .metrics = m, .max_conns_per_client = NTHREADS + 8 };
    loom_http_server *s4 = NULL;
    CHECK_RC(loom_http_start(&o4, &s4), 0);
    REQUIRE(s4);
    test_concurrent(loom_http_port(s4));
    loom_http_stop(&s4);

    loom_http_opts o3 = { .handler = handler, .max_connections = 2, .max_conns_per_client = 3 };
    loom_http_server *s3 = NULL;
    CHECK_RC(loom_http_start(&o3, &s3), 0);
    REQUIRE(s3);
    test_connection_limit(loom_http_port(s3));
    loom_http_stop(&s3);
    loom_http_opts o5 = { .handler = handler, .max_conns_per_client = 3 };
    loom_http_server *s5 = NULL;
    CHECK_RC(loom_http_start(&o5, &s5), 0);
    REQUIRE(s5);
    test_per_client_limit(loom_http_port(s5));
    loom_http_stop(&s5);
    test_admission();

    test_stop_with_open_connections();
    test_start_errors();
    test_tls();

    loom_http_stop(&s);
    /* replies never answered: sending them after the stop only frees them */
    pthread_mutex_lock(&never_mu);
    for (int i = 0; i < nnever; i++)
        CHECK_RC(loom_http_reply_send(never[i], 200, NULL, "late", 4, NULL), 0);
    nnever = 0;
    pthread_mutex_unlock(&never_mu);
    for (int i = 0; i < 500 && atomic_load(&slow_running) > 0; i++) sleep_ms(10);
    CHECK(atomic_load(&slow_running) == 0);
    loom_metrics_free(&m);
    return TEST_DONE();
}
