/* gateway/http_parse.c — the socket-free half of the HTTP server (see
 * http_internal.h): a connection's bytes to complete requests through nodejs'
 * http-parser, the limits checked on the way (header bytes, body bytes,
 * version, Host, Expect), the request accessors of http.h, and the head of a
 * response.  No I/O, so the fuzz target drives exactly what a socket would.
 *
 * The parser is paused in on_message_complete: a caller feeding pipelined
 * requests gets one request per feed and the bytes after it stay unread, so
 * that requests are answered in order and one at a time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "loom/loom.h"
#include "gateway/http_internal.h"

#define BODY_FIRST_ALLOC 4096

/* ---- growable buffers ---- */

static int reserve(char **buf, size_t *cap, size_t need, size_t limit_hint)
{
    if (need <= *cap) return 0;
    size_t ncap = *cap ? *cap * 2 : 256;
    if (ncap < need) ncap = need;
    if (limit_hint && ncap > limit_hint && need <= limit_hint) ncap = limit_hint;
    char *p = realloc(*buf, ncap);
    if (!p) return LOOM_ENOMEM;
    *buf = p;
    *cap = ncap;
    return 0;
}

static int hbuf_append(loom_http_parse *p, const char *s, size_t n)
{
    if (reserve(&p->hbuf, &p->hcap, p->hlen + n + 1, 0) != 0) return LOOM_ENOMEM;
    if (n) memcpy(p->hbuf + p->hlen, s, n);
    p->hlen += n;
    return 0;
}

static int hbuf_nul(loom_http_parse *p)
{
    if (hbuf_append(p, "", 0) != 0) return LOOM_ENOMEM;
    p->hbuf[p->hlen++] = 0;
    return 0;
}

/* Fail the request with STATUS.  The callback returns -1 so that http-parser
 * stops at once (-1, not 1: on_headers_complete's 1 means "no body"). */
static int fail(loom_http_parse *p, int status)
{
    if (!p->fail) p->fail = status;
    return -1;
}

static int count_header_bytes(loom_http_parse *p, size_t n)
{
    p->header_bytes += n;
    return p->header_bytes > p->max_header_bytes ? fail(p, 431) : 0;
}

/* ---- http-parser callbacks ---- */

static int on_message_begin(http_parser *hp)
{
    loom_http_parse *p = hp->data;
    p->started = 1;
    return 0;
}

static int on_url(http_parser *hp, const char *at, size_t n)
{
    loom_http_parse *p = hp->data;
    if (count_header_bytes(p, n)) return -1;
    if (hbuf_append(p, at, n) != 0) return fail(p, 500);
    p->url_len += n;
    return 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t n)
{
    loom_http_parse *p = hp->data;
    if (count_header_bytes(p, n)) return -1;
    if (p->headers_done) return 0;              /* a trailer: counted, not kept */
    if (p->last_cb != 1) {                       /* a new header begins */
        if (p->last_cb == 0 && hbuf_nul(p) != 0) return fail(p, 500);   /* ends the target */
        if (p->last_cb == 2 && hbuf_nul(p) != 0) return fail(p, 500);   /* ends a value */
        if (p->nh >= LOOM_HTTP_MAX_HEADERS) return fail(p, 431);
        p->hoff[2 * p->nh] = p->hlen;
        p->hoff[2 * p->nh + 1] = 0;
        p->nh++;
        p->last_cb = 1;
    }
    return hbuf_append(p, at, n) != 0 ? fail(p, 500) : 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t n)
{
    loom_http_parse *p = hp->data;
    if (count_header_bytes(p, n)) return -1;
    if (p->headers_done) return 0;
    if (p->last_cb != 2) {
        if (p->last_cb != 1) return fail(p, 400);
        if (hbuf_nul(p) != 0) return fail(p, 500);                  /* ends the name */
        p->hoff[2 * (p->nh - 1) + 1] = p->hlen;
        p->last_cb = 2;
    }
    return hbuf_append(p, at, n) != 0 ? fail(p, 500) : 0;
}

static char *hstr(const loom_http_parse *p, size_t off)
{
    return p->hbuf + off;
}

/* The value of header NAME among those parsed so far (NULL if absent); *count
 * is how many there are. */
static const char *find_header(const loom_http_parse *p, const char *name, int *count)
{
    const char *v = NULL;
    int c = 0;
    for (int i = 0; i < p->nh; i++) {
        if (strcasecmp(hstr(p, p->hoff[2 * i]), name) != 0) continue;
        if (!v) v = hstr(p, p->hoff[2 * i + 1]);
        c++;
    }
    if (count) *count = c;
    return v;
}

/* tchar of RFC 9110 5.6.2 */
static int is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* http-parser lets blanks into field names; RFC 9112 5.1 wants a 400. */
static int valid_field_name(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (!is_tchar(*s)) return 0;
    return 1;
}

static void trim_value(char *v)
{
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t')) v[--n] = 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decode n bytes of s into out (room for n + 1).  '+' becomes a space
 * when plus_is_space.  -1 for a bad escape or a decoded NUL, else the length. */
static long percent_decode(const char *s, size_t n, char *out, int plus_is_space)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int hi = i + 1 < n ? hexval(s[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        out[k++] = c;
    }
    out[k] = 0;
    return (long)k;
}

/* Split the target into the decoded path and the raw query, appended to hbuf. */
static int split_target(loom_http_parse *p)
{
    const char *url = hstr(p, 0);
    size_t n = p->url_len;
    const char *path = "/", *query = "";
    size_t plen = 1, qlen = 0;
    if (n == 1 && url[0] == '*') {
        path = "*";
    } else {
        struct http_parser_url u;
        http_parser_url_init(&u);
        if (n > UINT16_MAX || http_parser_parse_url(url, n, 0, &u) != 0) return fail(p, 400);
        if (u.field_set & (1 << UF_PATH)) {
            path = url + u.field_data[UF_PATH].off;
            plen = u.field_data[UF_PATH].len;
        }
        if (u.field_set & (1 << UF_QUERY)) {
            query = url + u.field_data[UF_QUERY].off;
            qlen = u.field_data[UF_QUERY].len;
        }
    }
    /* copy first: appending may move hbuf, and path/query point into it */
    char *tmp = malloc(plen + qlen + 2);
    if (!tmp) return fail(p, 500);
    long dl = percent_decode(path, plen, tmp, 0);
    memcpy(tmp + plen + 1, query, qlen);
    tmp[plen + 1 + qlen] = 0;
    int rc = 0;
    if (dl < 0) {
        rc = fail(p, 400);
    } else {
        p->path_off = p->hlen;
        if (hbuf_append(p, tmp, (size_t)dl) != 0 || hbuf_nul(p) != 0) rc = fail(p, 500);
        p->query_off = p->hlen;
        if (!rc && (hbuf_append(p, tmp + plen + 1, qlen) != 0 || hbuf_nul(p) != 0))
            rc = fail(p, 500);
    }
    free(tmp);
    return rc;
}

static int body_expected(const http_parser *hp)
{
    return (hp->flags & F_CHUNKED) || ((hp->flags & F_CONTENTLENGTH) && hp->content_length > 0);
}

/* Expect: 100-continue is honoured; any other expectation fails (417). */
static int check_expect(loom_http_parse *p)
{
    const char *e = find_header(p, "expect", NULL);
    if (!e) return 0;
    if (strcasecmp(e, "100-continue") != 0) return fail(p, 417);
    if (p->hp.http_minor >= 1 && body_expected(&p->hp)) p->continue_due = 1;
    return 0;
}

static int on_headers_complete(http_parser *hp)
{
    loom_http_parse *p = hp->data;
    if (p->last_cb == 0 && hbuf_nul(p) != 0) return fail(p, 500);      /* no headers */
    if (p->last_cb == 2 && hbuf_nul(p) != 0) return fail(p, 500);
    p->headers_done = 1;
    for (int i = 0; i < p->nh; i++) {
        if (!valid_field_name(hstr(p, p->hoff[2 * i]))) return fail(p, 400);
        trim_value(hstr(p, p->hoff[2 * i + 1]));
    }
    if (hp->http_major != 1) return fail(p, 505);
    if (hp->method == HTTP_CONNECT) return fail(p, 501);
    int nhost = 0;
    find_header(p, "host", &nhost);
    if (nhost > 1 || (hp->http_minor >= 1 && nhost == 0)) return fail(p, 400);
    if ((hp->flags & F_CONTENTLENGTH) && hp->content_length > p->max_body_bytes)
        return fail(p, 413);
    if (split_target(p) || check_expect(p)) return -1;
    p->head = hp->method == HTTP_HEAD;
    if (p->admission && body_expected(hp)) {
        p->admit_wait = 1;
        http_parser_pause(hp, 1);
    }
    return 0;
}

static int on_body(http_parser *hp, const char *at, size_t n)
{
    loom_http_parse *p = hp->data;
    if (n > p->max_body_bytes - p->blen) return fail(p, 413);
    size_t hint = (hp->flags & F_CONTENTLENGTH) ? p->blen + n + (size_t)hp->content_length + 1 : 0;
    size_t need = p->blen + n + 1;
    if (p->bcap == 0 && need < BODY_FIRST_ALLOC && !hint) need = BODY_FIRST_ALLOC;
    if (reserve(&p->body, &p->bcap, need, hint) != 0) return fail(p, 500);
    memcpy(p->body + p->blen, at, n);
    p->blen += n;
    return 0;
}

static int on_message_complete(http_parser *hp)
{
    loom_http_parse *p = hp->data;
    p->keep_alive = http_should_keep_alive(hp) && !hp->upgrade;
    p->got = 1;
    http_parser_pause(hp, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- the parse API ---- */

static void reset_message(loom_http_parse *p)
{
    p->header_bytes = 0;
    p->hlen = p->url_len = 0;
    p->nh = p->last_cb = p->headers_done = 0;
    p->path_off = p->query_off = 0;
    p->blen = 0;
    p->started = p->got = p->continue_due = 0;
    p->keep_alive = p->head = 0;
    p->admit_wait = 0;
    p->max_body_bytes = p->default_max_body;
}

void loom_http_parse_init(loom_http_parse *p, size_t max_header_bytes, size_t max_body_bytes)
{
    memset(p, 0, sizeof(*p));
    http_parser_init(&p->hp, HTTP_REQUEST);
    p->hp.data = p;
    p->max_header_bytes = max_header_bytes;
    p->max_body_bytes = p->default_max_body = max_body_bytes;
}

void loom_http_parse_want_admission(loom_http_parse *p)
{
    p->admission = 1;
}

void loom_http_parse_head(loom_http_parse *p, const char *remote, loom_http_request *r)
{
    memset(r, 0, sizeof(*r));
    for (int i = 0; i < p->nh; i++) {
        p->view[i].name = p->hbuf + p->hoff[2 * i];
        p->view[i].value = p->hbuf + p->hoff[2 * i + 1];
    }
    r->method = http_method_str((enum http_method)p->hp.method);
    r->target = p->hbuf;
    r->path = p->hbuf + p->path_off;
    r->query = p->hbuf + p->query_off;
    r->headers = p->view;
    r->nheaders = p->nh;
    r->body = "";
    r->remote = remote ? remote : "";
    r->http_minor = p->hp.http_minor;
}

int loom_http_parse_admitted(loom_http_parse *p, size_t max_body)
{
    if (max_body && max_body < p->default_max_body) p->max_body_bytes = max_body;
    p->admit_wait = 0;
    if ((p->hp.flags & F_CONTENTLENGTH) && p->hp.content_length > p->max_body_bytes) {
        p->fail = 413;
        return 413;
    }
    http_parser_pause(&p->hp, 0);
    return 0;
}

void loom_http_parse_free(loom_http_parse *p)
{
    free(p->hbuf);
    free(p->body);
    p->hbuf = p->body = NULL;
    p->hcap = p->bcap = 0;
}

int loom_http_parse_feed(loom_http_parse *p, const char *data, size_t len, size_t *used)
{
    *used = 0;
    if (p->fail) return LOOM_HTTP_FAILED;
    if (p->got) return LOOM_HTTP_GOT_REQUEST;
    if (p->admit_wait) return LOOM_HTTP_GOT_HEAD;
    if (len == 0) return LOOM_HTTP_NEED_MORE;    /* http-parser reads 0 bytes as EOF */
    size_t n = http_parser_execute(&p->hp, &settings, data, len);
    *used = n;
    if (p->got) return LOOM_HTTP_GOT_REQUEST;
    if (p->admit_wait && !p->fail) return LOOM_HTTP_GOT_HEAD;
    enum http_errno e = HTTP_PARSER_ERRNO(&p->hp);
    if (e != HPE_OK || n != len || p->fail) {
        if (!p->fail) p->fail = e == HPE_HEADER_OVERFLOW ? 431 : 400;
        return LOOM_HTTP_FAILED;
    }
    return LOOM_HTTP_NEED_MORE;
}

void loom_http_parse_take(loom_http_parse *p, const char *remote, loom_http_msg *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->remote, sizeof out->remote, "%s", remote ? remote : "");
    /* the headers array lives after the strings, in one allocation with them */
    size_t strings = (p->hlen + 15) & ~(size_t)15;
    size_t total = strings + (size_t)p->nh * sizeof(loom_http_header);
    char *block = realloc(p->hbuf, total ? total : 1);
    if (!block) {
        /* keep the old buffer: the request goes out without its headers */
        block = p->hbuf;
        total = 0;
    }
    p->hbuf = NULL;
    p->hcap = 0;
    out->strings = block;
    out->headers = total ? (loom_http_header *)(void *)(block + strings) : NULL;
    for (int i = 0; out->headers && i < p->nh; i++) {
        out->headers[i].name = block + p->hoff[2 * i];
        out->headers[i].value = block + p->hoff[2 * i + 1];
    }
    out->body = p->body ? p->body : strdup("");
    if (out->body) out->body[p->blen] = 0;
    p->body = NULL;
    p->bcap = 0;
    out->keep_alive = p->keep_alive;
    out->head = p->head;
    loom_http_request *r = &out->req;
    r->method = http_method_str((enum http_method)p->hp.method);
    r->target = block;
    r->path = block + p->path_off;
    r->query = block + p->query_off;
    r->headers = out->headers;
    r->nheaders = out->headers ? p->nh : 0;
    r->body = out->body ? out->body : "";
    r->body_len = out->body ? p->blen : 0;
    r->remote = out->remote;
    r->http_minor = p->hp.http_minor;
    reset_message(p);
    http_parser_pause(&p->hp, 0);
}

void loom_http_msg_free(loom_http_msg *m)
{
    if (!m) return;
    free(m->strings);
    free(m->body);
    m->strings = m->body = NULL;
    m->headers = NULL;
}

int loom_http_parse_status(const loom_http_parse *p)
{
    return p->fail ? p->fail : 400;
}

int loom_http_parse_continue_due(loom_http_parse *p)
{
    if (p->admit_wait) return 0;   /* 100 Continue only once admitted */
    int due = p->continue_due && !p->fail;
    p->continue_due = 0;
    return due;
}

int loom_http_parse_started(const loom_http_parse *p)
{
    return p->started;
}

/* ---- request accessors (http.h) ---- */

const char *loom_http_header_get(const loom_http_request *r, const char *name)
{
    if (!r || !name) return NULL;
    for (int i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0) return r->headers[i].value;
    return NULL;
}

int loom_http_query_get(const loom_http_request *r, const char *key, char *out, size_t cap)
{
    if (!r || !key || !out || cap == 0) return LOOM_EINVAL;
    size_t klen = strlen(key);
    const char *q = r->query ? r->query : "";
    while (*q) {                                  /* one parameter per turn */
        const char *end = strchr(q, '&');
        size_t n = end ? (size_t)(end - q) : strlen(q);
        const char *eq = memchr(q, '=', n);
        size_t kn = eq ? (size_t)(eq - q) : n;
        char kbuf[256];
        long kd = kn < sizeof kbuf ? percent_decode(q, kn, kbuf, 1) : -1;
        if (kd >= 0 && (size_t)kd == klen && memcmp(kbuf, key, klen) == 0) {
            const char *v = eq ? eq + 1 : q + n;
            size_t vn = (size_t)(q + n - v);
            char *tmp = malloc(vn + 1);
            if (!tmp) return LOOM_ENOMEM;
            long vd = percent_decode(v, vn, tmp, 1);
            int rc = vd < 0 ? LOOM_EINVAL : (size_t)vd >= cap ? LOOM_ETOOBIG : (int)vd;
            if (rc >= 0) memcpy(out, tmp, (size_t)vd + 1);
            free(tmp);
            return rc;
        }
        q += n;
        if (*q == '&') q++;
    }
    return LOOM_ENOTFOUND;
}

/* ---- response heads ---- */

const char *loom_http_reason(int status)
{
    const char *s = http_status_str((enum http_status)status);
    return s && s[0] != '<' ? s : "";
}

int loom_http_status_has_body(int status)
{
    return status >= 200 && status != 204 && status != 304;
}

/* Header names the server writes itself. */
static int is_reserved(const char *name, size_t n)
{
    static const char *const own[] = { "content-length", "transfer-encoding", "connection", "date" };
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
        if (strlen(own[i]) == n && strncasecmp(own[i], name, n) == 0) return 1;
    return 0;
}

/* Extra headers: ("token: value\r\n")*, values without CR, LF or other CTLs
 * but HTAB. */
static int valid_extra(const char *s)
{
    while (*s) {
        size_t n = 0;
        while (is_tchar(s[n])) n++;
        if (n == 0 || s[n] != ':' || is_reserved(s, n)) return 0;
        s += n + 1;
        while (*s && *s != '\r') {
            unsigned char c = (unsigned char)*s;
            if ((c < 32 && c != '\t') || c == 127) return 0;
            s++;
        }
        if (s[0] != '\r' || s[1] != '\n') return 0;
        s += 2;
    }
    return 1;
}

static int valid_content_type(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 32 && c != '\t') || c == 127) return 0;
    }
    return 1;
}

/* IMF-fixdate (RFC 9110 5.6.7), independent of the locale. */
static void http_date(char *buf, size_t cap)
{
    static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    snprintf(buf, cap, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
             months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

int loom_http_head(char **out, size_t *len, int status, const char *content_type,
                   size_t body_len, const char *extra_headers)
{
    if (status < 100 || status > 599) return LOOM_EINVAL;
    if (extra_headers && !valid_extra(extra_headers)) return LOOM_EINVAL;
    if (content_type && !valid_content_type(content_type)) return LOOM_EINVAL;
    char date[64], clen[48] = "";
    http_date(date, sizeof date);
    if (loom_http_status_has_body(status))
        snprintf(clen, sizeof clen, "Content-Length: %zu\r\n", body_len);
    const char *ct = content_type && *content_type ? content_type : NULL;
    size_t cap = 128 + strlen(date) + strlen(clen) + (ct ? strlen(ct) + 16 : 0) +
                 (extra_headers ? strlen(extra_headers) : 0) + strlen(loom_http_reason(status));
    char *h = malloc(cap);
    if (!h) return LOOM_ENOMEM;
    int n = snprintf(h, cap, "HTTP/1.1 %d %s\r\nDate: %s\r\n%s%s%s%s%s", status,
                     loom_http_reason(status), date, ct ? "Content-Type: " : "", ct ? ct : "",
                     ct ? "\r\n" : "", clen, extra_headers ? extra_headers : "");
    if (n < 0 || (size_t)n >= cap) { free(h); return LOOM_EINVAL; }
    *out = h;
    *len = (size_t)n;
    return LOOM_OK;
}
