/* tests/fuzz/fuzz_http.c — fuzz the HTTP server's request parsing
 * (gateway/http_parse.c): the input, after one control byte, is what a client
 * sends on one connection.  The control byte picks small or default limits,
 * admission (stop at the headers of a body, view them, admit with a smaller
 * or the default body limit) and how the bytes are cut into reads.  Every request the parser completes
 * is taken, checked for its invariants, looked up (headers, query) and
 * answered with a formatted head, as the server would. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "gateway/http_internal.h"

static void check_request(const loom_http_msg *m)
{
    const loom_http_request *r = &m->req;
    if (!r->method || !r->path || !r->query || !r->target || !r->body || !r->remote) abort();
    if (r->body[r->body_len] != 0) abort();
    for (int i = 0; i < r->nheaders; i++) {
        if (!r->headers[i].name || !r->headers[i].value) abort();
        if (loom_http_header_get(r, r->headers[i].name) == NULL) abort();
    }
    char v[64];
    loom_http_query_get(r, "a", v, sizeof v);
    loom_http_query_get(r, "", v, 1);
    char *head = NULL;
    size_t hl = 0;
    const char *ct = loom_http_header_get(r, "content-type");
    if (loom_http_head(&head, &hl, 200, ct, r->body_len, NULL) == 0) {
        if (hl == 0 || memcmp(head, "HTTP/1.1 200", 12) != 0) abort();
        free(head);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    unsigned ctl = data[0];
    const char *in = (const char *)data + 1;
    size -= 1;
    loom_http_parse p;
    loom_http_parse_init(&p, (ctl & 1) ? 200 : 16384, (ctl & 2) ? 40 : 1 << 20);
    if (ctl & 0x80) loom_http_parse_want_admission(&p);
    size_t step = ((ctl >> 2) & 0x1f) ? ((ctl >> 2) & 0x1f) : size;
    size_t off = 0;
    for (int guard = 0; off <= size && guard < 1 << 20; guard++) {
        size_t n = size - off < step ? size - off : step;
        size_t used = 0;
        int ev = loom_http_parse_feed(&p, in + off, n, &used);
        if (used > n) abort();
        off += used;
        loom_http_parse_continue_due(&p);
        if (ev == LOOM_HTTP_GOT_HEAD) {
            loom_http_request head;
            loom_http_parse_head(&p, "127.0.0.1:1", &head);
            if (!head.method || !head.path || !head.query || head.body_len) abort();
            for (int i = 0; i < head.nheaders; i++)
                if (!head.headers[i].name || !head.headers[i].value) abort();
            if (loom_http_parse_admitted(&p, (ctl & 0x40) ? 8 : 0) != 0) break;
        } else if (ev == LOOM_HTTP_GOT_REQUEST) {
            loom_http_msg m;
            loom_http_parse_take(&p, "127.0.0.1:1", &m);
            check_request(&m);
            int keep = m.keep_alive;
            loom_http_msg_free(&m);
            if (!keep) break;
        } else if (ev == LOOM_HTTP_FAILED) {
            int st = loom_http_parse_status(&p);
            if (st < 400 || st > 599) abort();
            char *head = NULL;
            size_t hl = 0;
            if (loom_http_head(&head, &hl, st, "application/json", 2, "Retry-After: 1\r\n") != 0)
                abort();
            free(head);
            break;
        } else {
            if (used != n) abort();
            if (off == size) break;
        }
    }
    loom_http_parse_free(&p);
    return 0;
}
