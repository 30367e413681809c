/* gateway/gateway.c — the gateway's core (see gateway.h): the bounded request
 * queue, the worker threads and their clients, health, /metrics (refreshed
 * from the head's status by a stats thread), routing, replies.
 *
 * Threads: the HTTP server's loop thread calls on_request, which answers
 * health and /metrics itself and queues everything else; `workers` threads
 * take requests from the queue; one stats thread asks the head for its state
 * every STATS_PERIOD_MS.  The queue, the stop flag and the readiness flag are
 * under g->mu; the metrics registry has its own lock. */
#include "gateway/gateway_internal.h"

#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/deploy.h"
#include "runtime/log.h"
#include "runtime/util.h"

#define DEFAULT_WORKERS 16   /* requests a batch can gather at once */
#define MAX_WORKERS 64
#define DEFAULT_QUEUE 256
#define STATS_PERIOD_MS 2000
#define MAX_BODY ((size_t)64 << 20)
#define JSON_MAX_DEPTH 64             /* nesting of a JSON body */
#define JSON_MAX_ELEMENTS 1000000     /* values and keys in a JSON body */
#define BIG_BODY ((size_t)256 << 10)  /* JSON bodies over this are parsed two at a time */
#define BIG_PARSES 2
#define RATE_USERS 256                /* users whose request rate is tracked */
#define DEFAULT_RATE 1000             /* requests per second per user, on average (a model's
                                         clients may call it often); bursts of twice that */

typedef struct gw_item {
    const loom_http_request *req;
    loom_http_reply *rep;
} gw_item;

struct loom_gateway {
    loom_http_server *http;
    loom_metrics *metrics;
    char *host, *state_dir, *secret, *lib_dir;
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* work queued, or stop (workers wait on it) */
    pthread_cond_t stats_cv;    /* stop or kick (the stats thread waits on it) */
    int kicked;                 /* refresh now: the head has just started listening */
    gw_item *queue;             /* ring of queue_max items */
    int queue_max, qhead, qlen;
    int stopping;
    int ready;                  /* the last connection attempt to the head worked */
    int auth;                   /* bearer tokens required */
    int per_user;               /* workers one user may hold at once (auth on) */
    int oidc;                   /* OIDC tokens taken (gw_oidc_start) */
    struct { char user[GW_USER_MAX]; int n; } *busy;   /* nworkers slots: who holds workers */
    int big_parses;             /* JSON bodies over BIG_BODY being handled */
    double rate, burst;         /* per-user request rate limit (auth on) */
    struct rate_bucket { char user[GW_USER_MAX]; double tokens; int64_t last_us; } *buckets;   /* RATE_USERS */
    pthread_cond_t big_cv;
    gw_worker *workers;
    pthread_t *threads;
    int nworkers, nstarted;
    pthread_t stats;
    int stats_started;
    gw_worker stats_worker;
};

/* ---- replies ------------------------------------------------------------ */

void gw_reply_json(loom_http_reply *rep, int status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        loom_http_reply_error(rep, 500, "out of memory", NULL);
        return;
    }
    loom_http_reply_send(rep, status, "application/json", text, strlen(text), NULL);
    free(text);
}

void gw_reply_error(loom_http_reply *rep, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    loom__verrf(msg, sizeof(msg), status, fmt, ap);
    va_end(ap);
    loom_http_reply_error(rep, status, msg, status == 503 || status == 429 ? "Retry-After: 1\r\n" : NULL);
}

int gw_status_of(int rc)
{
    switch (rc) {
    case LOOM_OK: return 200;
    case LOOM_EINVAL: return 400;
    case LOOM_ENOTFOUND: return 404;
    case LOOM_EAUTH: return 403;
    case LOOM_ETIMEOUT: return 504;
    case LOOM_ECONN: return 503;
    case LOOM_ESTOREFULL: return 507;
    default: return 500;
    }
}

int gw_path_segment(const char *path, const char *prefix, char *out, size_t cap, const char **rest)
{
    size_t n = strlen(prefix);
    if (strncmp(path, prefix, n) != 0) return -1;
    const char *s = path + n, *e = strchr(s, '/');
    size_t len = e ? (size_t)(e - s) : strlen(s);
    if (len == 0 || len >= cap) return -1;
    memcpy(out, s, len);
    out[len] = 0;
    if (rest) *rest = s + len;
    return 0;
}

const char *gw_lib_dir(const loom_gateway *g)
{
    return g->lib_dir;
}

int gw_auth_on(const loom_gateway *g)
{
    return g->auth;
}

size_t gw_max_body(const loom_gateway *g)
{
    (void)g;
    return MAX_BODY;
}

loom_metrics *gw_metrics(loom_gateway *g)
{
    return g->metrics;
}

/* ---- clients -------------------------------------------------------------- */

static void set_ready(loom_gateway *g, int ready)
{
    pthread_mutex_lock(&g->mu);
    g->ready = ready;
    pthread_mutex_unlock(&g->mu);
}

/* Connects to the head named in the state dir's address file. */
static int connect_head(loom_gateway *g, loom_client **out)
{
    char path[4200], *addr = NULL;
    size_t len = 0;
    loom__snprintf(path, sizeof(path), "%s/address", g->state_dir);
    int rc = loom__read_file(path, 512, &addr, &len);
    if (rc) return LOOM_ECONN;
    while (len && (addr[len - 1] == '\n' || addr[len - 1] == ' ')) addr[--len] = 0;
    loom_connect_opts co = {.secret = g->secret, .state_dir = g->state_dir};
    rc = loom_connect(addr, &co, out);
    free(addr);
    set_ready(g, rc == LOOM_OK);
    return rc;
}

loom_client *gw_client(gw_worker *w, loom_http_reply *rep)
{
    if (w->c) return w->c;
    int rc = connect_head(w->gw, &w->c);
    if (rc) {
        w->c = NULL;
        if (rep) gw_reply_error(rep, 503, "the gateway cannot reach the cluster's head: %s", loom_strerror(rc));
    }
    return w->c;
}

void gw_client_check(gw_worker *w, int rc)
{
    if (rc == LOOM_ECONN && w->c) {
        loom_disconnect(&w->c);
        set_ready(w->gw, 0);
    }
}

/* ---- health and metrics (answered on the HTTP thread) ---------------------- */

static int is_loop_route(const loom_http_request *req)
{
    return !strcmp(req->path, "/v2/health/live") || !strcmp(req->path, "/v2/health/ready") ||
           !strcmp(req->path, "/metrics");
}

static void answer_on_loop(loom_gateway *g, const loom_http_request *req, loom_http_reply *rep)
{
    if (!strcmp(req->path, "/metrics")) {
        char *text = NULL;
        size_t len = 0;
        if (loom_metrics_render(g->metrics, &text, &len) != 0) {
            loom_http_reply_error(rep, 500, "cannot render the metrics", NULL);
            return;
        }
        loom_http_reply_send(rep, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, NULL);
        free(text);
        return;
    }
    if (!strcmp(req->path, "/v2/health/live")) {
        gw_reply_json(rep, 200, json_pack("{s:b}", "live", 1));
        return;
    }
    pthread_mutex_lock(&g->mu);
    int ready = g->ready && !g->stopping;
    pthread_mutex_unlock(&g->mu);
    gw_reply_json(rep, ready ? 200 : 503, json_pack("{s:b}", "ready", ready));
}

/* Refreshes the cluster gauges from the head's status JSON (every
 * STATS_PERIOD_MS; deployments' autoscaling runs on the same beat). */
static void refresh_stats(loom_gateway *g, gw_worker *w)
{
    loom_client *c = gw_client(w, NULL);
    if (!c) return;
    char *text = NULL;
    int rc = loom_status_json(c, &text);
    gw_client_check(w, rc);
    if (rc) return;
    json_t *st = json_loads(text, 0, NULL);
    free(text);
    if (!st) return;
    json_t *tasks = json_object_get(st, "tasks");
    const char *k;
    json_t *v;
    json_object_foreach(tasks, k, v) {
        if (!json_is_number(v)) continue;
        char labels[128];
        loom_metrics_labels(labels, sizeof(labels), "state", k, NULL);
        loom_metrics_gauge_set(g->metrics, "loom_tasks", "tasks the head has seen, by state", labels,
                               json_number_value(v));
    }
    json_t *nodes = json_object_get(st, "nodes");
    double alive = 0, used = 0, cap = 0;
    size_t i;
    json_array_foreach(nodes, i, v) {
        const char *state = json_string_value(json_object_get(v, "state"));
        if (state && strcmp(state, "dead") != 0) alive++;
        used += json_number_value(json_object_get(v, "store_used"));
        cap += json_number_value(json_object_get(v, "store_capacity"));
    }
    loom_metrics_gauge_set(g->metrics, "loom_nodes_alive", "nodes alive", NULL, alive);
    loom_metrics_gauge_set(g->metrics, "loom_object_store_bytes", "object store bytes in use, all nodes", NULL,
                           used);
    loom_metrics_gauge_set(g->metrics, "loom_object_store_capacity_bytes", "object store capacity, all nodes",
                           NULL, cap);
    json_decref(st);
}

/* Today's usage per user as gauges (the head's day record; bounded by the
 * number of users). */
static void refresh_usage_gauges(loom_gateway *g, loom_client *c)
{
    char *json = NULL, err[128];
    if (loom_gateway_usage_report(c, NULL, "user", NULL, NULL, &json, err, sizeof(err)) != 0) return;
    json_t *doc = json_loads(json, 0, NULL);
    free(json);
    const char *user;
    json_t *e;
    static const char *const keys[][3] = {
        {"cpu_hours", "loom_usage_cpu_hours", "CPU-hours used today (UTC), by user"},
        {"gpu_hours", "loom_usage_gpu_hours", "GPU-hours used today (UTC), by user"},
        {"memory_gib_hours", "loom_usage_memory_gib_hours", "memory GiB-hours held today (UTC), by user"},
        {"tasks", "loom_usage_tasks", "tasks and actors finished today (UTC), by user"},
        {"requests", "loom_usage_requests", "gateway requests today (UTC), by user"},
        {"bytes_stored", "loom_usage_bytes_stored", "model registry bytes stored, by user"},
    };
    json_object_foreach(json_object_get(doc, "usage"), user, e) {
        char labels[160];
        loom_metrics_labels(labels, sizeof(labels), "user", user, NULL);
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
            loom_metrics_gauge_set(g->metrics, keys[i][1], keys[i][2], labels,
                                   json_number_value(json_object_get(e, keys[i][0])));
    }
    json_decref(doc);
}

static void *stats_main(void *arg)
{
    loom_gateway *g = arg;
    for (;;) {
        pthread_mutex_lock(&g->mu);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += STATS_PERIOD_MS / 1000;
        while (!g->stopping && !g->kicked && pthread_cond_timedwait(&g->stats_cv, &g->mu, &until) == 0) {}
        g->kicked = 0;
        int stop = g->stopping;
        pthread_mutex_unlock(&g->mu);
        if (stop) break;
        refresh_stats(g, &g->stats_worker);
        if (gw_client(&g->stats_worker, NULL)) {
            gw_deploy_tick(g->stats_worker.c, g->metrics);
            if (g->auth) {   /* per-user figures need users (and cost the head a few reads) */
                gw_usage_flush(g->stats_worker.c);
                refresh_usage_gauges(g, g->stats_worker.c);
            }
        }
    }
    if (g->stats_worker.c) loom_disconnect(&g->stats_worker.c);
    return NULL;
}

/* The head starts after its gateway (they share a process): the first
 * connection attempt fails, and without this the gateway would stay unready
 * until the next stats round, up to STATS_PERIOD_MS later.  One extra round
 * now; the rounds' period (the autoscaler's beat) does not change. */
void loom_gateway_head_listening(loom_gateway *g)
{
    if (!g) return;
    pthread_mutex_lock(&g->mu);
    g->kicked = 1;
    pthread_cond_broadcast(&g->stats_cv);
    pthread_mutex_unlock(&g->mu);
}

/* ---- routing ------------------------------------------------------------------ */

/* One user holds at most g->per_user workers at once (auth on), so that a
 * user whose requests are slow (deployments being made, long results)
 * cannot keep everyone else's requests waiting.  0, or -1 with a 429 sent. */
static int user_enter(loom_gateway *g, const char *user, loom_http_reply *rep)
{
    if (!g->auth) return 0;
    int free_slot = -1, held = 0, slot = -1;
    pthread_mutex_lock(&g->mu);
    for (int i = 0; i < g->nworkers; i++) {
        if (g->busy[i].n && !strcmp(g->busy[i].user, user)) slot = i;
        else if (!g->busy[i].n && free_slot < 0) free_slot = i;
    }
    if (slot < 0) slot = free_slot;   /* a free slot exists: this worker is not counted yet */
    held = g->busy[slot].n;
    if (held < g->per_user) {
        loom__snprintf(g->busy[slot].user, sizeof(g->busy[slot].user), "%s", user);
        g->busy[slot].n++;
    }
    pthread_mutex_unlock(&g->mu);
    if (held < g->per_user) return 0;
    loom_metrics_counter_add(g->metrics, "loom_gateway_rejected_total", "requests refused: queue full", NULL, 1);
    gw_reply_error(rep, 429, "user %s already has %d requests in progress; retry later", user, held);
    return -1;
}

static void user_leave(loom_gateway *g, const char *user)
{
    if (!g->auth) return;
    pthread_mutex_lock(&g->mu);
    for (int i = 0; i < g->nworkers; i++)
        if (g->busy[i].n && !strcmp(g->busy[i].user, user)) {
            g->busy[i].n--;
            break;
        }
    pthread_mutex_unlock(&g->mu);
}

/* Request rate per user: a token bucket of g->burst requests refilled at
 * g->rate per second (auth on; a user's "requests_per_second" quota is not
 * consulted here: one rate for all keeps the check free of lookups).  The
 * least recently seen user's bucket is reused for a new one.  0, or -1 with
 * a 429 sent. */
static int rate_ok(loom_gateway *g, const char *user, loom_http_reply *rep)
{
    if (!g->auth || g->rate <= 0) return 0;
    int64_t now = loom__now_us();
    pthread_mutex_lock(&g->mu);
    struct rate_bucket *b = NULL, *oldest = &g->buckets[0];
    for (int i = 0; i < RATE_USERS && !b; i++) {
        if (!strcmp(g->buckets[i].user, user) && g->buckets[i].last_us) b = &g->buckets[i];
        else if (g->buckets[i].last_us < oldest->last_us) oldest = &g->buckets[i];
    }
    if (!b) {
        b = oldest;
        loom__snprintf(b->user, sizeof(b->user), "%s", user);
        b->tokens = g->burst;
        b->last_us = now;
    }
    b->tokens += (double)(now - b->last_us) / 1e6 * g->rate;
    if (b->tokens > g->burst) b->tokens = g->burst;
    b->last_us = now;
    int ok = b->tokens >= 1;
    if (ok) b->tokens -= 1;
    pthread_mutex_unlock(&g->mu);
    if (ok) return 0;
    loom_metrics_counter_add(g->metrics, "loom_gateway_rate_limited_total", "requests refused: a user's rate limit",
                             NULL, 1);
    loom_http_reply_error(rep, 429, "too many requests from this user; slow down", "Retry-After: 1\r\n");
    return -1;
}

/* Does a JSON text stay within JSON_MAX_DEPTH and JSON_MAX_ELEMENTS?  A
 * linear scan before the parser, whose memory is some 40 times the text's:
 * what it would build is bounded before it builds it. */
int gw_json_bounded(const char *p, size_t len, char *err, size_t errcap)
{
    size_t elements = 0;
    int depth = 0, in_str = 0, esc = 0, in_scalar = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = p[i];
        if (in_str) {
            if (esc) esc = 0;
            else if (ch == '\\') esc = 1;
            else if (ch == '"') in_str = 0;
            continue;
        }
        int scalar = ch == '-' || (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || ch == '.' ||
                     ch == '+' || (ch >= 'A' && ch <= 'Z');
        if (ch == '"' || ch == '{' || ch == '[' || (scalar && !in_scalar)) elements++;
        in_scalar = scalar;
        if (ch == '"') in_str = 1;
        else if (ch == '{' || ch == '[') depth++;
        else if (ch == '}' || ch == ']') depth--;
        if (depth > JSON_MAX_DEPTH) {
            loom__snprintf(err, errcap, "the JSON body nests deeper than %d levels", JSON_MAX_DEPTH);
            return 0;
        }
        if (elements > JSON_MAX_ELEMENTS) {
            loom__snprintf(err, errcap, "the JSON body has more than %d values", JSON_MAX_ELEMENTS);
            return 0;
        }
    }
    return 1;
}

/* POST /v2/models/{m}[/versions/{v}]/infer */
static int is_infer(const loom_http_request *req)
{
    size_t n = strlen(req->path);
    return !strcmp(req->method, "POST") && !strncmp(req->path, "/v2/models/", 11) && n > 6 &&
           !strcmp(req->path + n - 6, "/infer");
}

static int has_json_body(const loom_http_request *req)
{
    if (!req->body_len) return 0;
    const char *ct = loom_http_header_get(req, "Content-Type");
    if (ct && strstr(ct, "json")) return 1;
    return !strncmp(req->path, "/v1/jobs", 8) || !strncmp(req->path, "/v1/deployments", 15) ||
           !strncmp(req->path, "/v2/", 4);
}

/* Large JSON bodies are parsed BIG_PARSES at a time; after one, memory the
 * parser freed goes back to the system (glibc keeps it otherwise). */
static void big_enter(loom_gateway *g)
{
    pthread_mutex_lock(&g->mu);
    while (g->big_parses >= BIG_PARSES && !g->stopping) pthread_cond_wait(&g->big_cv, &g->mu);
    g->big_parses++;
    pthread_mutex_unlock(&g->mu);
}

static void big_leave(loom_gateway *g)
{
    pthread_mutex_lock(&g->mu);
    g->big_parses--;
    pthread_cond_signal(&g->big_cv);
    pthread_mutex_unlock(&g->mu);
    malloc_trim(0);
}

static void route(gw_worker *w, const loom_http_request *req, loom_http_reply *rep)
{
    loom_gateway *g = w->gw;
    if (gw_authenticate(w, req, rep)) return;
    char err[128];
    int json = has_json_body(req);
    if (json && !gw_json_bounded(req->body, req->body_len, err, sizeof(err))) {
        gw_reply_error(rep, 413, "%s", err);
        return;
    }
    char user[GW_USER_MAX];
    loom__snprintf(user, sizeof(user), "%s", w->user);
    if (rate_ok(g, user, rep)) return;
    /* inference is exempt from the per-user share of workers: dynamic batching
       gathers one client's concurrent requests across workers, and each
       deployment bounds its own queue (503 beyond) */
    int capped = !is_infer(req);
    if (capped && user_enter(g, user, rep)) return;
    int big = json && req->body_len > BIG_BODY;
    if (big) big_enter(g);
    if (g->auth) gw_usage_count_request(user);
    if (!gw_jobs_route(w, req, rep) && !gw_registry_route(w, req, rep) && !gw_kserve_route(w, req, rep) &&
        !gw_usage_route(w, req, rep))
        gw_reply_error(rep, 404, "no route for %s %s", req->method, req->path);
    if (big) big_leave(g);
    if (capped) user_leave(g, user);
}

static void *worker_main(void *arg)
{
    gw_worker *w = arg;
    loom_gateway *g = w->gw;
    for (;;) {
        pthread_mutex_lock(&g->mu);
        while (!g->stopping && g->qlen == 0) pthread_cond_wait(&g->cv, &g->mu);
        if (g->stopping) {
            pthread_mutex_unlock(&g->mu);
            break;
        }
        gw_item it = g->queue[g->qhead];
        g->qhead = (g->qhead + 1) % g->queue_max;
        g->qlen--;
        int depth = g->qlen;
        pthread_mutex_unlock(&g->mu);
        loom_metrics_gauge_set(g->metrics, "loom_gateway_queue_depth", "requests waiting for a worker", NULL,
                               (double)depth);
        route(w, it.req, it.rep);
    }
    if (w->c) loom_disconnect(&w->c);
    return NULL;
}

/* The HTTP thread's handler: health and metrics at once, the rest queued. */
static void on_request(void *ud, const loom_http_request *req, loom_http_reply *rep)
{
    loom_gateway *g = ud;
    if (is_loop_route(req)) {
        answer_on_loop(g, req, rep);
        return;
    }
    pthread_mutex_lock(&g->mu);
    int full = g->stopping || g->qlen >= g->queue_max;
    if (!full) {
        g->queue[(g->qhead + g->qlen) % g->queue_max] = (gw_item){req, rep};
        g->qlen++;
        pthread_cond_signal(&g->cv);
    }
    int depth = g->qlen;
    pthread_mutex_unlock(&g->mu);
    loom_metrics_gauge_set(g->metrics, "loom_gateway_queue_depth", "requests waiting for a worker", NULL,
                           (double)depth);
    if (full) {
        loom_metrics_counter_add(g->metrics, "loom_gateway_rejected_total", "requests refused: queue full", NULL,
                                 1);
        gw_reply_error(rep, 429, "the gateway is busy (%d requests queued); retry later", depth);
    }
}

static void on_admit(void *ud, const loom_http_request *head, loom_http_reply *ticket)
{
    gw_admit(ud, head, ticket);
}

/* ---- start and stop ----------------------------------------------------------- */

/* 127.0.0.0/8, ::1 or "localhost": where --http-auth=none may listen. */
static int is_loopback(const char *host)
{
    return !strncmp(host, "127.", 4) || !strcmp(host, "::1") || !strcmp(host, "localhost");
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int start_threads(loom_gateway *g)
{
    for (int i = 0; i < g->nworkers; i++) {
        g->workers[i] = (gw_worker){.gw = g, .index = i};
        if (pthread_create(&g->threads[i], NULL, worker_main, &g->workers[i]) != 0) return LOOM_ENOMEM;
        g->nstarted++;
    }
    g->stats_worker = (gw_worker){.gw = g, .index = -1};
    if (pthread_create(&g->stats, NULL, stats_main, g) != 0) return LOOM_ENOMEM;
    g->stats_started = 1;
    return LOOM_OK;
}

int loom_gateway_start(const loom_gateway_opts *o, loom_gateway **out)
{
    if (o && o->error && o->error_cap) o->error[0] = 0;
    if (!o || !out || !o->state_dir || !o->secret || o->port < 0 || o->port > 65535) return LOOM_EINVAL;
    *out = NULL;
    if (!o->auth && !is_loopback(o->host ? o->host : "127.0.0.1")) return LOOM_EAUTH;
    loom_gateway *g = calloc(1, sizeof(*g));
    if (!g) return LOOM_ENOMEM;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    pthread_cond_init(&g->stats_cv, NULL);
    pthread_cond_init(&g->big_cv, NULL);
    g->nworkers = o->workers > 0 ? (o->workers < MAX_WORKERS ? o->workers : MAX_WORKERS) : DEFAULT_WORKERS;
    g->queue_max = o->queue_max > 0 ? o->queue_max : DEFAULT_QUEUE;
    g->host = strdup(o->host ? o->host : "127.0.0.1");
    g->state_dir = strdup(o->state_dir);
    g->secret = strdup(o->secret);
    g->lib_dir = dup_or_null(o->lib_dir);
    g->auth = o->auth != 0;
    g->per_user = g->nworkers / 4 > 1 ? g->nworkers / 4 : 1;
    g->busy = calloc((size_t)g->nworkers, sizeof(*g->busy));
    g->buckets = calloc(RATE_USERS, sizeof(*g->buckets));
    g->rate = o->rate_per_user > 0 ? o->rate_per_user : o->rate_per_user < 0 ? 0 : DEFAULT_RATE;
    g->burst = g->rate * 2;
    g->queue = calloc((size_t)g->queue_max, sizeof(gw_item));
    g->workers = calloc((size_t)g->nworkers, sizeof(gw_worker));
    g->threads = calloc((size_t)g->nworkers, sizeof(pthread_t));
    g->metrics = loom_metrics_new();
    int rc = g->host && g->state_dir && g->secret && (g->lib_dir || !o->lib_dir) && g->queue && g->workers &&
                     g->threads && g->metrics && g->busy && g->buckets
                 ? LOOM_OK : LOOM_ENOMEM;
    if (!rc) rc = start_threads(g);
    if (!rc && g->auth) rc = gw_admit_start(g);
    if (!rc && g->auth && o->oidc.issuer) {
        char err[300] = "";
        rc = gw_oidc_start(&o->oidc, err, sizeof(err));
        if (rc) LOG_ERROR("gateway: OIDC: %s", err);
        g->oidc = rc == 0;
    }
    if (!rc) {
        loom_http_opts ho = {
            .host = g->host, .port = o->port, .handler = on_request, .ud = g,
            .max_inflight = g->queue_max + g->nworkers + 64, .is_priority = is_loop_route, .metrics = g->metrics,
            .max_body_bytes = MAX_BODY, .admit = g->auth ? on_admit : NULL,
            .tls_cert = o->tls_cert, .tls_key = o->tls_key, .error = o->error, .error_cap = o->error_cap,
        };
        rc = loom_http_start(&ho, &g->http);
    }
    if (rc) {
        loom_gateway_stop(&g);
        return rc;
    }
    *out = g;
    return LOOM_OK;
}

int loom_gateway_port(const loom_gateway *g)
{
    return g && g->http ? loom_http_port(g->http) : -1;
}

void loom_gateway_stop(loom_gateway **gp)
{
    if (!gp || !*gp) return;
    loom_gateway *g = *gp;
    *gp = NULL;
    pthread_mutex_lock(&g->mu);
    g->stopping = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_cond_broadcast(&g->stats_cv);
    pthread_cond_broadcast(&g->big_cv);
    pthread_mutex_unlock(&g->mu);
    for (int i = 0; i < g->nstarted; i++) pthread_join(g->threads[i], NULL);
    if (g->auth) gw_admit_stop();
    if (g->oidc) gw_oidc_stop();
    if (g->stats_started) pthread_join(g->stats, NULL);
    for (; g->qlen > 0; g->qlen--, g->qhead = (g->qhead + 1) % g->queue_max)
        gw_reply_error(g->queue[g->qhead].rep, 503, "the gateway is stopping");
    loom_http_stop(&g->http);
    gw_deploy_free();
    loom_metrics_free(&g->metrics);
    free(g->queue);
    free(g->workers);
    free(g->threads);
    free(g->busy);
    free(g->buckets);
    free(g->host);
    free(g->state_dir);
    free(g->secret);
    free(g->lib_dir);
    pthread_cond_destroy(&g->cv);
    pthread_cond_destroy(&g->stats_cv);
    pthread_cond_destroy(&g->big_cv);
    pthread_mutex_destroy(&g->mu);
    free(g);
}
