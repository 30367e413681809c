/* gateway/http_internal.h — the socket-free layers of the HTTP server, for
 * http.c and its fuzz target (tests/fuzz/fuzz_http.c):
 *   loom_http_parse  one connection's request parser: bytes in, complete
 *                    requests (or the error status to answer) out;
 *   loom_http_head   the head of a response (status line and headers).
 * Not part of the gateway's API. */
#ifndef LOOM_GATEWAY_HTTP_INTERNAL_H
#define LOOM_GATEWAY_HTTP_INTERNAL_H
#include <stddef.h>
#include <stdint.h>
#include <http_parser.h>
#include "gateway/http.h"

#define LOOM_HTTP_MAX_HEADERS 100       /* more is a 431 */

/* One complete request and the memory it points into (owned). */
typedef struct loom_http_msg {
    loom_http_request req;
    char *strings;               /* target, header names and values, path, query */
    loom_http_header *headers;
    char *body;                  /* NUL-terminated */
    int keep_alive;              /* the client allows another request after it */
    int head;                    /* HEAD: the answer has no body */
    char remote[64];
} loom_http_msg;
void loom_http_msg_free(loom_http_msg *m);

/* What loom_http_parse_feed found. */
enum {
    LOOM_HTTP_NEED_MORE = 0,     /* every byte consumed, the request is not complete */
    LOOM_HTTP_GOT_REQUEST = 1,   /* a request is complete: take it */
    LOOM_HTTP_FAILED = 2,        /* answer loom_http_parse_status() and close */
    LOOM_HTTP_GOT_HEAD = 3       /* (admission on) the headers of a request with a
                                    body are in: loom_http_parse_head, then
                                    loom_http_parse_admitted before feeding more */
};

typedef struct loom_http_parse {
    http_parser hp;
    size_t max_header_bytes, max_body_bytes;
    size_t header_bytes;         /* counted against max_header_bytes */
    char *hbuf;                  /* target \0 (name \0 value \0)* path \0 query \0 */
    size_t hlen, hcap;
    size_t url_len;
    size_t hoff[2 * LOOM_HTTP_MAX_HEADERS];   /* name, value offsets in hbuf */
    int nh;
    int last_cb;                 /* 0 none, 1 header field, 2 header value */
    int headers_done;
    size_t path_off, query_off;
    char *body;
    size_t blen, bcap;
    int started;                 /* a byte of the current request has been seen */
    int got;                     /* the request is complete (parser paused) */
    int fail;                    /* the status to answer, once failed */
    int continue_due;            /* send 100 Continue before reading the body */
    int keep_alive, head;
    int admission;               /* stop at the headers of a request with a body */
    int admit_wait;              /* stopped there, until loom_http_parse_admitted */
    size_t default_max_body;     /* max_body_bytes between requests */
    loom_http_header view[LOOM_HTTP_MAX_HEADERS];   /* loom_http_parse_head's headers */
} loom_http_parse;

/* A parser for one connection's requests (no allocation until bytes come). */
void loom_http_parse_init(loom_http_parse *p, size_t max_header_bytes, size_t max_body_bytes);
void loom_http_parse_free(loom_http_parse *p);
/* Parse up to len bytes; stops after a complete request.  *used is what it
 * consumed.  Once LOOM_HTTP_GOT_REQUEST, it consumes nothing until the
 * request is taken; once LOOM_HTTP_FAILED, never again. */
int loom_http_parse_feed(loom_http_parse *p, const char *data, size_t len, size_t *used);
/* Admission: stop at the headers of every request with a body. */
void loom_http_parse_want_admission(loom_http_parse *p);
/* After LOOM_HTTP_GOT_HEAD: a view of the request so far (no body), valid
 * until the next call on p. */
void loom_http_parse_head(loom_http_parse *p, const char *remote, loom_http_request *out);
/* The request is admitted with at most max_body bytes of body (0: the
 * default; never more than it).  0, or 413 when its Content-Length is over. */
int loom_http_parse_admitted(loom_http_parse *p, size_t max_body);
/* Move the complete request into *out (with remote as its peer) and get
 * ready for the next one. */
void loom_http_parse_take(loom_http_parse *p, const char *remote, loom_http_msg *out);
/* The status a failed parse answers: 400, 413, 417, 431, 501 or 505. */
int loom_http_parse_status(const loom_http_parse *p);
/* 1 once, right after the headers of a request that expects 100-continue. */
int loom_http_parse_continue_due(loom_http_parse *p);
/* 1 if part of a request has come (a timeout then answers 408). */
int loom_http_parse_started(const loom_http_parse *p);

/* The head of a response up to, not including, the Connection header and the
 * blank line: status line, Date, Content-Type, Content-Length (not for 1xx,
 * 204, 304) and the extra header lines.  *out is malloc'd.  LOOM_EINVAL for a
 * status outside 100..599 or malformed extra headers, LOOM_ENOMEM. */
int loom_http_head(char **out, size_t *len, int status, const char *content_type,
                   size_t body_len, const char *extra_headers);
/* Whether a response with this status carries a body at all. */
int loom_http_status_has_body(int status);
/* RFC 9110's name for a status ("" if it has none). */
const char *loom_http_reason(int status);
#endif
