/* tune/register.c — register a sweep's best model in the model registry.
 *
 * The registry is served by the HTTP gateway (gateway/registry.c), so the
 * sweep registers the way any user does: POST /v1/models/NAME with the
 * artifact as the body and its lineage in the query — the sweep and trial
 * that produced it (produced_by), the trial's config (parameters), the
 * dataset, and the objective it reached (tags).  A small HTTP/1.1 client over
 * a TCP socket; the gateway is a head's, reached on its address
 * ("HOST:PORT" or "http://HOST:PORT"). */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "tune/tune_internal.h"

#define REPLY_MAX (1 << 20)

/* Percent-encode s into out (RFC 3986 unreserved characters kept). */
static int url_encode(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        int keep = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
                   ch == '_' || ch == '.' || ch == '~';
        if (n + 4 > cap) return -1;
        if (keep) out[n++] = (char)ch;
        else {
            out[n++] = '%';
            out[n++] = hex[ch >> 4];
            out[n++] = hex[ch & 15];
        }
    }
    out[n] = 0;
    return 0;
}

static int connect_to(const char *address, char *err, size_t errlen)
{
    if (!strncmp(address, "http://", 7)) address += 7;
    char host[256], port[16];
    const char *colon = strrchr(address, ':');
    if (!colon || (size_t)(colon - address) >= sizeof(host) || strlen(colon + 1) >= sizeof(port)) {
        snprintf(err, errlen, "gateway address '%s': want HOST:PORT", address);
        return -1;
    }
    memcpy(host, address, (size_t)(colon - address));
    host[colon - address] = 0;
    snprintf(port, sizeof(port), "%s", colon + 1);
    char *slash = strchr(port, '/');
    if (slash) *slash = 0;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int g = getaddrinfo(host, port, &hints, &ai);
    if (g) {
        snprintf(err, errlen, "gateway %s:%s: %s", host, port, gai_strerror(g));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = 60};
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen)) {
        snprintf(err, errlen, "gateway %s:%s: %s", host, port, strerror(errno));
        if (fd >= 0) close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static int send_all(int fd, const void *p, size_t n)
{
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p = (const char *)p + k;
        n -= (size_t)k;
    }
    return 0;
}

/* POST body to path; *status and the reply body (malloc'd, NUL-ended). */
static int http_post(const char *address, const char *path, const char *token, const void *body, size_t len,
                     int *status, char **reply, char *err, size_t errlen)
{
    int fd = connect_to(address, err, errlen);
    if (fd < 0) return LOOM_ECONN;
    char head[16384], auth[600] = "";
    if (token && *token) snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", token);
    int hn = snprintf(head, sizeof(head),
                      "POST %s HTTP/1.1\r\nHost: loom\r\nContent-Type: application/octet-stream\r\n"
                      "Content-Length: %zu\r\n%sConnection: close\r\n\r\n",
                      path, len, auth);
    if (hn < 0 || (size_t)hn >= sizeof(head)) {
        close(fd);
        snprintf(err, errlen, "the request line is too long");
        return LOOM_ETOOBIG;
    }
    if (send_all(fd, head, (size_t)hn) || send_all(fd, body, len)) {
        snprintf(err, errlen, "sending to the gateway: %s", strerror(errno));
        close(fd);
        return LOOM_EIO;
    }
    char *buf = malloc(REPLY_MAX + 1);
    size_t n = 0;
    ssize_t k;
    while (buf && n < REPLY_MAX && (k = recv(fd, buf + n, REPLY_MAX - n, 0)) > 0) n += (size_t)k;
    close(fd);
    if (!buf) return LOOM_ENOMEM;
    buf[n] = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", status) != 1) {
        snprintf(err, errlen, "the gateway's answer is not HTTP");
        free(buf);
        return LOOM_EPROTO;
    }
    char *b = strstr(buf, "\r\n\r\n");
    *reply = strdup(b ? b + 4 : "");
    free(buf);
    return *reply ? LOOM_OK : LOOM_ENOMEM;
}

/* Append "&key=encoded(value)" to q. */
static int add_query(char *q, size_t cap, const char *key, const char *value)
{
    char enc[8192];
    if (!value || url_encode(value, enc, sizeof(enc))) return -1;
    size_t n = strlen(q);
    int k = snprintf(q + n, cap - n, "%s%s=%s", n ? "&" : "", key, enc);
    return k < 0 || (size_t)k >= cap - n ? -1 : 0;
}

int tune_register_best(loom_client *c, const json_t *sweep, const json_t *trial, json_t **out, char *err,
                       size_t errlen)
{
    const json_t *spec = json_object_get(sweep, "spec"), *reg = json_object_get(spec, "register");
    const char *name = json_string_value(json_object_get(reg, "name"));
    const char *art = json_string_value(json_object_get(reg, "artifact"));
    const char *gw = json_string_value(json_object_get(reg, "gateway"));
    const char *token_env = json_string_value(json_object_get(reg, "token_env"));
    if (!name || !gw) {
        snprintf(err, errlen, "register: want \"name\" and a gateway (\"gateway\": \"HOST:PORT\", or a head "
                              "started with --http-port)");
        return LOOM_EINVAL;
    }
    const json_t *meta = NULL, *a;
    size_t i;
    json_array_foreach(json_object_get(trial, "artifacts"), i, a) {
        if (!art || !strcmp(json_string_value(json_object_get(a, "name")) ?: "", art)) meta = a;
    }
    if (!meta) {
        snprintf(err, errlen, "register: the best trial (%lld) kept no artifact%s%s",
                 (long long)json_integer_value(json_object_get(trial, "id")), art ? " named " : "", art ? art : "");
        return LOOM_ENOTFOUND;
    }
    void *data = NULL;
    size_t bytes = (size_t)json_integer_value(json_object_get(meta, "bytes"));
    const char *path = json_string_value(json_object_get(meta, "path"));
    const char *key = json_string_value(json_object_get(meta, "key"));
    int rc = path ? tune_read_file(path, TUNE_MAX_BLOB, &data, &bytes)  /* kept in the output */
                  : key ? loom_kv_get_blob(c, key, &data, &bytes) : LOOM_ENOTFOUND;
    if (rc) {
        snprintf(err, errlen, "register: cannot read the artifact: %s", loom_strerror(rc));
        return rc;
    }
    char q[32768] = "", produced[256], tags[512], url[40000];
    const char *metric = json_string_value(json_object_get(spec, "metric"));
    snprintf(produced, sizeof(produced), "loom tune: sweep %s trial %lld",
             json_string_value(json_object_get(sweep, "id")), (long long)json_integer_value(json_object_get(trial, "id")));
    snprintf(tags, sizeof(tags), "tune,sweep-%s,%s=%.6g", json_string_value(json_object_get(sweep, "id")),
             metric ? metric : "objective", json_number_value(json_object_get(trial, "best")));
    char *params = json_dumps(json_object_get(trial, "config"), JSON_COMPACT | JSON_SORT_KEYS);
    const json_t *data_refs = json_object_get(spec, "data");
    const char *dataset = json_string_value(json_array_get(data_refs, 0));
    const char *user = getenv("USER");
    int bad = add_query(q, sizeof(q), "produced_by", produced) || add_query(q, sizeof(q), "tags", tags) ||
              add_query(q, sizeof(q), "parameters", params ? params : "{}") ||
              add_query(q, sizeof(q), "framework", "loom-tune") ||
              (dataset && add_query(q, sizeof(q), "dataset", dataset)) ||
              (user && add_query(q, sizeof(q), "author", user)) ||
              (json_is_true(json_object_get(reg, "public")) && add_query(q, sizeof(q), "public", "1"));
    free(params);
    if (bad) {
        free(data);
        snprintf(err, errlen, "register: the metadata is too long");
        return LOOM_ETOOBIG;
    }
    snprintf(url, sizeof(url), "/v1/models/%s?%s", name, q);
    int status = 0;
    char *reply = NULL;
    rc = http_post(gw, url, token_env ? getenv(token_env) : NULL, data, bytes, &status, &reply, err, errlen);
    free(data);
    if (rc) return rc;
    json_t *r = json_loads(reply, 0, NULL);
    if (status != 201 || !json_is_object(r)) {
        snprintf(err, errlen, "register: the gateway answered %d: %.300s", status, reply);
        free(reply);
        json_decref(r);
        return LOOM_EIO;
    }
    free(reply);
    *out = r;
    return LOOM_OK;
}
