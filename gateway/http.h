/* gateway/http.h — the HTTP/1.1 server the gateway sits on: libuv on its own
 * thread, nodejs' http-parser for the bytes, one handler for every request.
 *
 * What it does for the handler: keep-alive (HTTP/1.0 closes unless it asks
 * for keep-alive), pipelined requests answered in order, Content-Length and
 * chunked request bodies, Expect: 100-continue, HEAD answered without body,
 * Date and Content-Length on every reply.  What it refuses before the handler
 * sees anything: malformed requests (400, closed), headers over
 * max_header_bytes (431), bodies over max_body_bytes (413, without reading
 * them), a request not complete within request_timeout_ms (408), more than
 * max_connections connections or max_inflight requests in the handler at once
 * (503 with Retry-After).  A handler that does not answer within
 * handler_timeout_ms gets a 504 sent for it; its later answer is dropped.
 *
 * Threads: the handler runs on the server's thread and must not block; it may
 * answer at once or later from any thread (loom_http_reply_send). */
#ifndef LOOM_GATEWAY_HTTP_H
#define LOOM_GATEWAY_HTTP_H
#include <stddef.h>
#include "gateway/metrics.h"

typedef struct loom_http_header {
    const char *name, *value;    /* name as sent; value without surrounding blanks */
} loom_http_header;

/* One request.  Every string is NUL-terminated; the body is too (body[body_len]
 * is 0), though it may hold NULs itself.  Valid until its reply is sent. */
typedef struct loom_http_request {
    const char *method;          /* "GET", "POST", ... */
    const char *path;            /* percent-decoded, without the query */
    const char *query;           /* raw, after '?'; "" if none */
    const char *target;          /* the request target as sent */
    const loom_http_header *headers;
    int nheaders;
    const char *body;
    size_t body_len;
    const char *remote;          /* peer "ip:port" */
    int http_minor;              /* HTTP/1.<minor> */
} loom_http_request;

/* Header value by name (case-insensitive), the first if repeated; NULL if absent. */
const char *loom_http_header_get(const loom_http_request *r, const char *name);
/* The value of query parameter KEY, decoded (%XX and '+'), into out (cap bytes,
 * NUL-terminated).  Returns its length, LOOM_ENOTFOUND, LOOM_ETOOBIG (does not
 * fit) or LOOM_EINVAL (bad escape, or a decoded NUL). */
int loom_http_query_get(const loom_http_request *r, const char *key, char *out, size_t cap);

/* One request awaiting its answer. */
typedef struct loom_http_reply loom_http_reply;
typedef void (*loom_http_handler)(void *ud, const loom_http_request *req, loom_http_reply *rep);

/* Answer a request: status (200..599), content type (NULL: none), body
 * (copied; ignored for HEAD, 204 and 304), extra headers as complete
 * "Name: value\r\n" lines or NULL.  Callable from any thread, exactly once per
 * reply — also after loom_http_stop, which then only frees it; neither rep
 * nor its request may be used afterwards.  Returns 0; LOOM_EINVAL for a bad
 * status or malformed extra headers, and LOOM_ENOMEM, after having answered
 * 500 instead (the reply is consumed either way). */
int loom_http_reply_send(loom_http_reply *rep, int status, const char *content_type,
                         const void *body, size_t len, const char *extra_headers);
/* Answer with the JSON body {"error": msg}. */
int loom_http_reply_error(loom_http_reply *rep, int status, const char *msg,
                          const char *extra_headers);

/* Admission (optional, loom_http_opts.admit): the server calls admit on its
 * thread once the headers of a request WITH a body are in, before reading any
 * of the body, with the headers (head->body is empty) and a ticket.  The
 * ticket must be answered exactly once, at once or later, from any thread:
 * status 0 admits the request, whose body may then be at most max_body bytes
 * (0: the server's max_body_bytes; more than that is not allowed); any other
 * status (401, 403, 413, 429, 503) refuses it with {"error": msg} and the
 * extra headers, and the connection closes without reading the body.  While
 * a ticket is unanswered the server reads nothing more from the connection;
 * the request's timeout still runs (408). */
typedef void (*loom_http_admit_fn)(void *ud, const loom_http_request *head, loom_http_reply *ticket);
int loom_http_admit(loom_http_reply *ticket, int status, size_t max_body, const char *msg,
                    const char *extra_headers);

typedef struct loom_http_server loom_http_server;

/* Options; zero fields take the defaults in brackets. */
typedef struct loom_http_opts {
    const char *host;            /* [127.0.0.1]; IPv4 or IPv6 literal */
    int port;                    /* 0: an ephemeral port, see loom_http_port */
    size_t max_header_bytes;     /* request line + headers [16 KiB] -> 431 */
    size_t max_body_bytes;       /* [64 MiB] -> 413 */
    size_t max_body_total;       /* with admission: admitted bodies held at once,
                                    counted by Content-Length (chunked: by
                                    max_body_bytes) [1 GiB]; beyond: 503 */
    int request_timeout_ms;      /* whole request must arrive within it [30 s] -> 408 */
    int handler_timeout_ms;      /* handler must answer within it [60 s] -> 504 */
    int idle_timeout_ms;         /* keep-alive idle close, and the time an answer
                                    may take to be written out [60 s] */
    int max_connections;         /* [1024]; beyond, the connection idle longest
                                    (no request in progress) is closed to make room;
                                    when none is idle: 503 + Retry-After: 1, closed */
    int max_conns_per_client;    /* connections from one address [128]; beyond:
                                    429 + Retry-After: 1, closed */
    int max_inflight;            /* requests in the handler [256]; beyond: 503 +
                                    Retry-After: 1.  A request counts until it is
                                    answered, its 504 sent or its client gone */
    loom_http_handler handler;   /* required */
    void *ud;
    /* optional: admission of bodies (see loom_http_admit_fn) */
    loom_http_admit_fn admit;
    /* optional: requests exempt from max_inflight (health checks) */
    int (*is_priority)(const loom_http_request *req);
    /* optional, borrowed (must outlive the server): the server records
     * loom_http_requests_total{code}, loom_http_request_seconds (histogram),
     * loom_http_connections and loom_http_inflight (gauges) in it */
    loom_metrics *metrics;
    /* optional: TLS.  PEM files, the certificate chain (leaf first) and its
     * private key, read at start.  When set, the port speaks only TLS (1.2
     * minimum; no plaintext fallback: a plain HTTP request is closed
     * unanswered).  A handshake must complete within request_timeout_ms; a
     * failed or late one closes the connection and, with metrics, counts in
     * loom_http_tls_handshake_failures_total{reason}.  The limits'
     * connection-level refusals (max_connections, max_conns_per_client) then
     * close without an answer instead of 503/429. */
    const char *tls_cert, *tls_key;
    /* optional: where loom_http_start writes why it failed (NUL-terminated;
     * "" on success) */
    char *error;
    size_t error_cap;
} loom_http_opts;

/* Start listening and serving on a thread of its own; returns once the socket
 * listens.  0, LOOM_EINVAL (no handler, bad host; a TLS certificate or key
 * that cannot be loaded, or a key that does not match its certificate),
 * LOOM_EIO (cannot bind or listen: port in use), LOOM_ESYS, LOOM_ENOMEM; the
 * reason in o->error when given. */
int loom_http_start(const loom_http_opts *o, loom_http_server **out);
/* The port it listens on. */
int loom_http_port(const loom_http_server *s);
/* Close every connection, join the thread and free the server; *s becomes
 * NULL.  NULL-safe.  Replies not yet sent stay valid: sending one then frees it. */
void loom_http_stop(loom_http_server **s);
#endif
