/* gateway/usage.c — usage reports, quotas at submission, request counts.
 *
 * The head accounts for what tasks and actors held (scheduler/head_usage.c:
 * day records "usage/d/YYYYMMDD" in the key-value table, one text line per
 * user "u NAME tasks=.. cpu_s=.. gpu_s=.. mem_gib_s=.." and per project "p
 * ...").  This file adds what only the gateway sees — requests per user,
 * kept in "usage/r/YYYYMMDD" ("u NAME requests=N"), written by the stats
 * thread — and bytes stored in the model registry (summed from the registry
 * when a report is asked for), and answers:
 *   GET /v1/usage[?since=YYYY-MM-DD][&by=user|project]   (a user sees their
 *       own line and their projects'; an admin sees everyone's)
 *   loom usage [--since DATE] [--by user|project]        (the same report)
 * Quotas ("quota/u/USER", "quota/p/PROJECT": `loom quota set`) are enforced
 * by the head for running work; here, a new job of a user or project whose
 * CPU- or GPU-hours for the day are used up is refused with 429. */
#include "gateway/gateway_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/util.h"
#include "serve/registry_store.h"

#define MAX_DAYS 366              /* a report covers at most a year */
#define MAX_REQ_USERS 256         /* users whose requests are counted between flushes */

/* ---- dates ------------------------------------------------------------------- */

static int day_of(time_t t)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    return (tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday;
}

/* "YYYY-MM-DD" to the time of its start (UTC); -1 if malformed. */
static time_t parse_date(const char *s)
{
    int y, m, d;
    char tail;
    if (sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 || y < 2000 || y > 9999 || m < 1 || m > 12 || d < 1 ||
        d > 31)
        return -1;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d};
    return timegm(&tm);
}

/* ---- text records ---------------------------------------------------------------- */

static double field0(const char *line, const char *name)
{
    double v = loom__kv_field(line, name);
    return isnan(v) ? 0 : v;
}

static char *kv_text(loom_client *c, const char *key, int *rc)
{
    void *data = NULL;
    size_t len = 0;
    *rc = loom_kv_get(c, key, 0, &data, &len);
    if (*rc) return NULL;
    char *s = realloc(data, len + 1);
    if (!s) {
        free(data);
        *rc = LOOM_ENOMEM;
        return NULL;
    }
    s[len] = 0;
    return s;
}

/* ---- reports ------------------------------------------------------------------------ */

/* Who a report may show: everyone (admin), or one user and their projects. */
typedef struct viewer {
    const char *user;            /* NULL: everyone */
    const char *projects;        /* "a,b" */
} viewer;

static int in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, name, n)) return 1;
        p += len + (e ? 1 : 0);
    }
    return 0;
}

static int may_see(const viewer *v, char kind, const char *name)
{
    if (!v->user) return 1;
    return kind == 'u' ? !strcmp(name, v->user) : in_list(v->projects, name);
}

static json_t *entry(json_t *out, const char *name)
{
    json_t *e = json_object_get(out, name);
    if (e) return e;
    e = json_pack("{s:f,s:f,s:f,s:f,s:f,s:f}", "tasks", 0.0, "cpu_hours", 0.0, "gpu_hours", 0.0, "memory_gib_hours",
                  0.0, "requests", 0.0, "bytes_stored", 0.0);
    json_object_set_new(out, name, e);
    return e;
}

static void bump(json_t *e, const char *key, double by)
{
    json_object_set_new(e, key, json_real(json_number_value(json_object_get(e, key)) + by));
}

/* Adds the lines of one day's record of kind ('u' or 'p') to out. */
static void add_day(json_t *out, const char *text, char kind, const viewer *v, int requests)
{
    char name[200];
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        if (p[0] == kind && p[1] == ' ' && sscanf(p + 2, "%199s", name) == 1 && may_see(v, kind, name)) {
            char line[600];
            size_t n = nl ? (size_t)(nl - p) : strlen(p);
            if (n >= sizeof(line)) n = sizeof(line) - 1;
            memcpy(line, p, n);
            line[n] = 0;
            json_t *e = entry(out, name[0] == 0 ? "(cluster)" : name);
            if (requests) {
                bump(e, "requests", field0(line, "requests"));
            } else {
                bump(e, "tasks", field0(line, "tasks"));
                bump(e, "cpu_hours", field0(line, "cpu_s") / 3600.0);
                bump(e, "gpu_hours", field0(line, "gpu_s") / 3600.0);
                bump(e, "memory_gib_hours", field0(line, "mem_gib_s") / 3600.0);
            }
        }
        p = nl ? nl + 1 : NULL;
    }
}

/* Bytes of model artifacts stored, by owner (or by project). */
static void add_stored(loom_client *c, json_t *out, char kind, const viewer *v)
{
    int rc;
    json_t *idx = loom_registry_kv_json(c, "registry/index", &rc);
    size_t i, k;
    json_t *name, *ver;
    json_array_foreach(idx, i, name) {
        char key[300];
        loom_registry_model_key(key, sizeof(key), json_string_value(name));
        json_t *rec = loom_registry_kv_json(c, key, &rc);
        json_array_foreach(json_object_get(rec, "versions"), k, ver) {
            const char *who = json_string_value(json_object_get(ver, kind == 'u' ? "owner" : "project"));
            if (!who || (!who[0] && kind == 'p') || !may_see(v, kind, who)) continue;
            bump(entry(out, who[0] ? who : "(cluster)"), "bytes_stored",
                 json_number_value(json_object_get(ver, "size")));
        }
        json_decref(rec);
    }
    json_decref(idx);
}

int loom_gateway_usage_report(loom_client *c, const char *since, const char *by, const char *user,
                              const char *projects, char **json, char *err, size_t errcap)
{
    if (!c || !json) return LOOM_EINVAL;
    *json = NULL;
    char kind = by && !strcmp(by, "project") ? 'p' : 'u';
    if (by && strcmp(by, "user") && strcmp(by, "project")) {
        loom__snprintf(err, errcap, "by is user or project");
        return LOOM_EINVAL;
    }
    time_t now = time(NULL), from = since && *since ? parse_date(since) : now;
    if (from < 0 || from > now || now - from > (time_t)MAX_DAYS * 86400) {
        loom__snprintf(err, errcap, "since is a date YYYY-MM-DD within the last %d days", MAX_DAYS);
        return LOOM_EINVAL;
    }
    viewer v = {user, projects};
    json_t *out = json_object();
    int rc = LOOM_OK;
    for (time_t t = from; day_of(t) <= day_of(now) && rc == LOOM_OK; t += 86400) {
        char key[64];
        for (int requests = 0; requests < 2 && rc == LOOM_OK; requests++) {
            loom__snprintf(key, sizeof(key), requests ? "usage/r/%d" : "usage/d/%d", day_of(t));
            int krc;
            char *text = kv_text(c, key, &krc);
            if (text) add_day(out, text, kind, &v, requests);
            else if (krc != LOOM_ENOTFOUND) rc = krc;
            free(text);
        }
    }
    if (!rc) add_stored(c, out, kind, &v);
    char from_s[16], to_s[16];
    strftime(from_s, sizeof(from_s), "%Y-%m-%d", gmtime(&from));
    strftime(to_s, sizeof(to_s), "%Y-%m-%d", gmtime(&now));
    json_t *doc = json_pack("{s:s,s:s,s:s,s:o}", "since", from_s, "until", to_s, "by",
                            kind == 'u' ? "user" : "project", "usage", out);
    if (!rc) *json = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(8)) : NULL;
    json_decref(doc);
    if (rc) loom__snprintf(err, errcap, "cannot read the usage records: %s", loom_strerror(rc));
    return rc ? rc : *json ? LOOM_OK : LOOM_ENOMEM;
}

/* GET /v1/usage */
static void usage_route(gw_worker *w, const loom_http_request *req, loom_http_reply *rep)
{
    loom_client *c = gw_client(w, rep);
    if (!c) return;
    char since[32] = "", by[16] = "user", err[200] = "";
    loom_http_query_get(req, "since", since, sizeof(since));
    loom_http_query_get(req, "by", by, sizeof(by));
    char *text = NULL;
    int rc = loom_gateway_usage_report(c, since, by, w->admin ? NULL : w->user, w->projects, &text, err,
                                       sizeof(err));
    if (rc) {
        gw_client_check(w, rc);
        gw_reply_error(rep, rc == LOOM_EINVAL ? 400 : gw_status_of(rc), "%s", err);
        return;
    }
    loom_http_reply_send(rep, 200, "application/json", text, strlen(text), NULL);
    free(text);
}

int gw_usage_route(gw_worker *w, const loom_http_request *req, loom_http_reply *rep)
{
    if (strcmp(req->path, "/v1/usage") != 0) return 0;
    if (strcmp(req->method, "GET") != 0) gw_reply_error(rep, 405, "use GET /v1/usage");
    else usage_route(w, req, rep);
    return 1;
}

/* ---- quotas at submission ------------------------------------------------------------- */

double gw_quota_field(loom_client *c, char kind, const char *name, const char *field)
{
    char key[300];
    loom__snprintf(key, sizeof(key), "quota/%c/%s", kind, name);
    int rc;
    char *q = c ? kv_text(c, key, &rc) : NULL;
    double v = q ? loom__kv_field(q, field) : NAN;
    free(q);
    return v;
}

/* Is kind/name's CPU- or GPU-hours quota for today used up?  1 with why. */
static int day_used_up(loom_client *c, char kind, const char *name, char *why, size_t cap)
{
    double cpu_h = gw_quota_field(c, kind, name, "cpu_hours_per_day");
    double gpu_h = gw_quota_field(c, kind, name, "gpu_hours_per_day");
    if (isnan(cpu_h) && isnan(gpu_h)) return 0;
    char key[300];
    int rc;
    loom__snprintf(key, sizeof(key), "usage/d/%d", day_of(time(NULL)));
    char *day = kv_text(c, key, &rc);
    char prefix[220];
    int pn = snprintf(prefix, sizeof(prefix), "%c %s ", kind, name);
    const char *line = NULL;
    for (const char *p = day; p && *p && !line; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, prefix, (size_t)pn)) line = p;
    double cpu = line ? field0(line, "cpu_s") / 3600 : 0, gpu = line ? field0(line, "gpu_s") / 3600 : 0;
    free(day);
    const char *who = kind == 'u' ? "user" : "project";
    if (!isnan(cpu_h) && cpu >= cpu_h) {
        loom__snprintf(why, cap, "%s %s has used its %g CPU-hours for today (%.2f); retry tomorrow (UTC)", who,
                       name, cpu_h, cpu);
        return 1;
    }
    if (!isnan(gpu_h) && gpu >= gpu_h) {
        loom__snprintf(why, cap, "%s %s has used its %g GPU-hours for today (%.2f); retry tomorrow (UTC)", who,
                       name, gpu_h, gpu);
        return 1;
    }
    return 0;
}

int gw_quota_check(gw_worker *w, const char *project, char *why, size_t cap)
{
    if (w->admin || !w->user[0] || !w->c) return 0;
    if (day_used_up(w->c, 'u', w->user, why, cap)) return 429;
    if (project && *project && day_used_up(w->c, 'p', project, why, cap)) return 429;
    return 0;
}

/* ---- requests per user ------------------------------------------------------------------ */

static pthread_mutex_t req_lock = PTHREAD_MUTEX_INITIALIZER;
typedef struct req_count {
    char user[GW_USER_MAX];
    double n;
} req_count;
static req_count req_counts[MAX_REQ_USERS];
static int nreq_counts;

void gw_usage_count_request(const char *user)
{
    pthread_mutex_lock(&req_lock);
    int i = 0;
    while (i < nreq_counts && strcmp(req_counts[i].user, user)) i++;
    if (i == nreq_counts && nreq_counts < MAX_REQ_USERS) {
        loom__snprintf(req_counts[i].user, sizeof(req_counts[i].user), "%s", user);
        req_counts[i].n = 0;
        nreq_counts++;
    }
    if (i < nreq_counts) req_counts[i].n++;
    pthread_mutex_unlock(&req_lock);
}

/* Adds the counted requests into today's "usage/r/" record (stats thread). */
void gw_usage_flush(loom_client *c)
{
    pthread_mutex_lock(&req_lock);
    int n = nreq_counts;
    req_count counts[MAX_REQ_USERS];
    memcpy(counts, req_counts, sizeof(counts[0]) * (size_t)n);
    nreq_counts = 0;
    pthread_mutex_unlock(&req_lock);
    if (!n || !c) return;
    char key[64];
    loom__snprintf(key, sizeof(key), "usage/r/%d", day_of(time(NULL)));
    int rc;
    char *old = kv_text(c, key, &rc);
    size_t cap = (old ? strlen(old) : 0) + (size_t)n * 128 + 1, len = 0;
    char *text = malloc(cap);
    if (!text) {
        free(old);
        return;
    }
    text[0] = 0;
    for (const char *p = old; p && *p;) {   /* keep the lines of users not counted now */
        const char *nl = strchr(p, '\n');
        size_t ln = nl ? (size_t)(nl - p) : strlen(p);
        char name[GW_USER_MAX + 8] = "";
        int mine = 0;
        if (sscanf(p, "u %70s", name) == 1)
            for (int i = 0; i < n; i++)
                if (!strcmp(counts[i].user, name)) {
                    counts[i].n += field0(p, "requests");
                    mine = 1;
                }
        if (!mine && ln) {
            memcpy(text + len, p, ln);
            len += ln;
            text[len++] = '\n';
        }
        p = nl ? nl + 1 : NULL;
    }
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(text + len, cap - len, "u %s requests=%.0f\n", counts[i].user, counts[i].n);
    loom_kv_put(c, key, text, len);
    free(old);
    free(text);
}
