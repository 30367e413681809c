/* scheduler/head_usage.c — accounting and quotas: who used how much of the
 * cluster, and who may use more.
 *
 * Usage is what grants held: a task (or an actor, for its whole life) that
 * held C CPUs, G GPUs and M bytes of memory for S seconds is charged C*S
 * CPU-seconds, G*S GPU-seconds and M*S/2^30 GiB-seconds, to its job, to the
 * job's user and to the job's project.  The user and project come from the
 * job's label, "USER" or "USER|PROJECT" (the gateway sets it; jobs submitted
 * with the cluster's keys and no label are the cluster's own, user "").
 *
 * Charges gather in memory (one accumulator per user, project and job) and
 * are written into the key-value table every second, by the head's tick, so
 * they survive a restart (at most the last second is lost to a crash):
 *   usage/d/YYYYMMDD   one line per user ("u NAME k=v ...") and project ("p ...")
 *                      with what they used that UTC day
 *   usage/j/JOB        the job's totals (dropped with the job)
 * Text lines, not JSON: the head parses and writes them without a JSON
 * library, and `loom kv get` shows them as they are.
 *
 * Quotas are key-value records too, "quota/u/USER" or "quota/p/PROJECT":
 * "tasks=N cpus=C gpus=G cpu_hours_per_day=H gpu_hours_per_day=H" (any
 * subset; `loom quota set`).  The scheduler does not start a task whose
 * user or project would go over a limit of running work, or whose
 * CPU-/GPU-hours for the day are used up: it waits in the queue (and the
 * gateway refuses new jobs of such a user with 429 at submission). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "runtime/log.h"
#include "runtime/util.h"
#include "scheduler/head_internal.h"

#define USAGE_KEY_MAX 160

enum { U_USER = 'u', U_PROJECT = 'p', U_JOB = 'j' };

typedef struct counters {
    double tasks, cpu_s, gpu_s, mem_gib_s;
} counters;

/* One user's, project's or job's accumulator. */
typedef struct acc {
    char key[USAGE_KEY_MAX];     /* "u:alice", "p:proj-x", "j:JOBID" */
    counters delta;              /* charged, not yet written */
    counters day;                /* written for `day` (users and projects) */
    int day_id;                  /* YYYYMMDD that `day` is of; 0: not loaded */
    int dirty;
    double run_tasks, run_cpus, run_gpus;   /* held now */
    int64_t kept_tasks;          /* users: tasks the head keeps for them (not freed yet) */
} acc;

struct head_usage {
    loom_hmap accs;              /* key -> acc */
};

static int today(void)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    return (tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday;
}

/* The user and project of a job's label "USER[|PROJECT]". */
static void split_label(const char *label, char *user, size_t ucap, char *project, size_t pcap)
{
    const char *bar = label ? strchr(label, '|') : NULL;
    size_t n = bar ? (size_t)(bar - label) : label ? strlen(label) : 0;
    if (n >= ucap) n = ucap - 1;
    memcpy(user, label ? label : "", n);
    user[n] = 0;
    loom__snprintf(project, pcap, "%s", bar ? bar + 1 : "");
}

static struct head_usage *usage_of(head *h)
{
    if (!h->usage) h->usage = calloc(1, sizeof(*h->usage));
    return h->usage;
}

static acc *acc_get(head *h, int kind, const char *name)
{
    struct head_usage *u = usage_of(h);
    if (!u) return NULL;
    char key[USAGE_KEY_MAX];
    loom__snprintf(key, sizeof(key), "%c:%s", kind, name);
    uint8_t k[32];   /* names are longer than the map's keys may be: by their hash */
    loom__head_name_key(key, k);
    acc *a = loom__hmap_get(&u->accs, k, sizeof(k));
    if (a) return a;
    a = calloc(1, sizeof(*a));
    if (!a) return NULL;
    memcpy(a->key, key, strlen(key) + 1);
    if (loom__hmap_put(&u->accs, k, sizeof(k), a) != 0) {
        free(a);
        return NULL;
    }
    return a;
}

/* ---- text records ---------------------------------------------------------- */

/* The value of "name=" in a line of k=v words (NAN when absent). */
static double field0(const char *line, const char *name)
{
    double v = loom__kv_field(line, name);
    return isnan(v) ? 0 : v;
}

static void counters_from(const char *line, counters *c)
{
    c->tasks = field0(line, "tasks");
    c->cpu_s = field0(line, "cpu_s");
    c->gpu_s = field0(line, "gpu_s");
    c->mem_gib_s = field0(line, "mem_gib_s");
}

static int counters_text(char *out, size_t cap, const counters *c)
{
    return snprintf(out, cap, "tasks=%.0f cpu_s=%.3f gpu_s=%.3f mem_gib_s=%.3f", c->tasks, c->cpu_s, c->gpu_s,
                    c->mem_gib_s);
}

static void add(counters *to, const counters *c)
{
    to->tasks += c->tasks;
    to->cpu_s += c->cpu_s;
    to->gpu_s += c->gpu_s;
    to->mem_gib_s += c->mem_gib_s;
}

static kv_entry *kv_find(head *h, const char *key)
{
    uint8_t k[32];
    loom__head_name_key(key, k);
    return loom__hmap_get(&h->kv, k, sizeof(k));
}

/* The line for "KIND NAME " in a day record (a malloc'd copy), or NULL. */
static char *day_line(head *h, int day, int kind, const char *name)
{
    char key[64], prefix[USAGE_KEY_MAX + 4];
    loom__snprintf(key, sizeof(key), "usage/d/%d", day);
    kv_entry *e = kv_find(h, key);
    if (!e) return NULL;
    int pn = snprintf(prefix, sizeof(prefix), "%c %s ", kind, name);
    for (size_t i = 0; i < e->len;) {
        const uint8_t *nl = memchr(e->val + i, '\n', e->len - i);
        size_t end = nl ? (size_t)(nl - e->val) : e->len;
        if (end - i > (size_t)pn && !memcmp(e->val + i, prefix, (size_t)pn)) {
            char *line = malloc(end - i + 1);
            if (line) {
                memcpy(line, e->val + i, end - i);
                line[end - i] = 0;
            }
            return line;
        }
        i = end + 1;
    }
    return NULL;
}

/* Loads what a user or project has used today from the day record. */
static void acc_load_day(head *h, acc *a)
{
    int d = today();
    if (a->day_id == d) return;
    memset(&a->day, 0, sizeof(a->day));
    a->day_id = d;
    char *line = day_line(h, d, a->key[0], a->key + 2);
    if (line) counters_from(line, &a->day);
    free(line);
}

/* ---- charging ------------------------------------------------------------------ */

static void hold(head *h, const char *label, const loom_request *r, double sign)
{
    char user[128], project[160];
    split_label(label, user, sizeof(user), project, sizeof(project));
    acc *as[2] = {acc_get(h, U_USER, user), project[0] ? acc_get(h, U_PROJECT, project) : NULL};
    for (int i = 0; i < 2; i++) {
        if (!as[i]) continue;
        as[i]->run_tasks = fmax(0, as[i]->run_tasks + sign);
        as[i]->run_cpus = fmax(0, as[i]->run_cpus + sign * r->cpus);
        as[i]->run_gpus = fmax(0, as[i]->run_gpus + sign * r->gpus);
    }
}

static void charge(head *h, const char *label, const char *job_id, const loom_request *r, int64_t since_ms)
{
    double s = (double)(loom__now_ms() - since_ms) / 1000.0;
    if (!(s > 0) || s > 1e9) s = 0;
    counters c = {1, r->cpus * s, r->gpus * s, (double)r->memory * s / 1073741824.0};
    char user[128], project[160];
    split_label(label, user, sizeof(user), project, sizeof(project));
    acc *as[3] = {acc_get(h, U_USER, user), project[0] ? acc_get(h, U_PROJECT, project) : NULL,
                  job_id ? acc_get(h, U_JOB, job_id) : NULL};
    for (int i = 0; i < 3; i++) {
        if (!as[i]) continue;
        add(&as[i]->delta, &c);
        as[i]->dirty = 1;
    }
}

void loom__head_usage_begin(head *h, task *t, const loom_request *r)
{
    free(t->acct);
    t->acct = strdup(t->job && t->job->label ? t->job->label : "");
    hold(h, t->acct ? t->acct : "", r, +1);
}

void loom__head_usage_end(head *h, task *t, const loom_request *r)
{
    const char *label = t->acct ? t->acct : t->job && t->job->label ? t->job->label : "";
    hold(h, label, r, -1);
    charge(h, label, t->job ? t->job->id : NULL, r, t->t_start);
    free(t->acct);
    t->acct = NULL;
}

void loom__head_usage_actor_end(head *h, const char *label, const loom_request *r, int64_t since_ms)
{
    hold(h, label, r, -1);
    charge(h, label, NULL, r, since_ms);
}

/* ---- quotas --------------------------------------------------------------------- */

/* kind/name's quota record as text into q (1025 bytes); 0 if there is none. */
static int quota_text(head *h, int kind, const char *name, char q[1025])
{
    char key[USAGE_KEY_MAX + 16];
    loom__snprintf(key, sizeof(key), "quota/%c/%s", kind, name);
    kv_entry *e = kv_find(h, key);
    if (!e || !e->len || e->len > 1024) return 0;
    memcpy(q, e->val, e->len);
    q[e->len] = 0;
    return 1;
}

/* Would starting r put kind/name over its quota?  1 (and why) if so. */
static int over(head *h, int kind, const char *name, const loom_request *r, char *why, size_t whylen)
{
    char q[1025];
    if (!quota_text(h, kind, name, q)) return 0;
    acc *a = acc_get(h, kind, name);
    if (!a) return 0;
    acc_load_day(h, a);
    const char *who = kind == U_USER ? "user" : "project";
    double lim;
    if (!isnan(lim = loom__kv_field(q, "tasks")) && a->run_tasks + 1 > lim)
        return loom__snprintf(why, whylen, "%s %s runs %.0f tasks (quota: %.0f)", who, name, a->run_tasks, lim), 1;
    if (!isnan(lim = loom__kv_field(q, "cpus")) && a->run_cpus + r->cpus > lim + 1e-9)
        return loom__snprintf(why, whylen, "%s %s holds %g CPUs (quota: %g)", who, name, a->run_cpus, lim), 1;
    if (!isnan(lim = loom__kv_field(q, "gpus")) && r->gpus > 0 && a->run_gpus + r->gpus > lim + 1e-9)
        return loom__snprintf(why, whylen, "%s %s holds %g GPUs (quota: %g)", who, name, a->run_gpus, lim), 1;
    if (!isnan(lim = loom__kv_field(q, "cpu_hours_per_day")) && (a->day.cpu_s + a->delta.cpu_s) / 3600.0 >= lim)
        return loom__snprintf(why, whylen, "%s %s used its %g CPU-hours for today", who, name, lim), 1;
    if (!isnan(lim = loom__kv_field(q, "gpu_hours_per_day")) && r->gpus > 0 && (a->day.gpu_s + a->delta.gpu_s) / 3600.0 >= lim)
        return loom__snprintf(why, whylen, "%s %s used its %g GPU-hours for today", who, name, lim), 1;
    return 0;
}

int loom__head_usage_allows(head *h, const task *t, const loom_request *r, char *why, size_t whylen)
{
    if (!t->job || !t->job->label || !t->job->label[0]) return 1;   /* the cluster's own work */
    char user[128], project[160];
    split_label(t->job->label, user, sizeof(user), project, sizeof(project));
    if (over(h, U_USER, user, r, why, whylen)) return 0;
    if (project[0] && over(h, U_PROJECT, project, r, why, whylen)) return 0;
    return 1;
}

/* ---- tasks kept per user ---------------------------------------------------------- */

int loom__head_usage_keep_tasks(head *h, const char *label, uint32_t n, char *why, size_t whylen)
{
    if (!label || !label[0]) return 0;   /* the cluster's own work */
    char user[128], project[160];
    split_label(label, user, sizeof(user), project, sizeof(project));
    acc *a = acc_get(h, U_USER, user);
    if (!a) return LOOM_ENOMEM;
    int64_t most = LOOM_HEAD_TASKS_PER_USER;   /* or the user's quota's kept_tasks, if lower */
    char q[1025];
    if (quota_text(h, U_USER, user, q)) {
        double lim = loom__kv_field(q, "kept_tasks");
        if (!isnan(lim) && lim < (double)most) most = (int64_t)lim;
    }
    if (a->kept_tasks + (int64_t)n > most) {
        loom__snprintf(why, whylen, "user %s already has %lld tasks kept by the head (at most %lld, finished ones "
                       "until their job is deleted): delete old jobs first", user, (long long)a->kept_tasks,
                       (long long)most);
        return LOOM_EFULL;
    }
    a->kept_tasks += n;
    return 0;
}

void loom__head_usage_tasks_gone(head *h, const char *label, uint32_t n)
{
    if (!label || !label[0] || !h->usage) return;
    char user[128], project[160];
    split_label(label, user, sizeof(user), project, sizeof(project));
    acc *a = acc_get(h, U_USER, user);
    if (a) a->kept_tasks = a->kept_tasks > (int64_t)n ? a->kept_tasks - (int64_t)n : 0;
}

/* ---- writing ------------------------------------------------------------------------- */

/* Replace (or add) the line of kind/name in the text of a day record. */
static char *day_with(const char *old, size_t oldlen, int kind, const char *name, const counters *c)
{
    char prefix[USAGE_KEY_MAX + 4], line[512];
    int pn = snprintf(prefix, sizeof(prefix), "%c %s ", kind, name);
    int ln = snprintf(line, sizeof(line), "%s", prefix);
    ln += counters_text(line + ln, sizeof(line) - (size_t)ln, c);
    char *out = malloc(oldlen + (size_t)ln + 2);
    if (!out) return NULL;
    size_t n = 0;
    for (size_t i = 0; i < oldlen;) {
        const char *nl = memchr(old + i, '\n', oldlen - i);
        size_t end = nl ? (size_t)(nl - old) : oldlen;
        if (!(end - i > (size_t)pn && !memcmp(old + i, prefix, (size_t)pn)) && end > i) {
            memcpy(out + n, old + i, end - i);
            n += end - i;
            out[n++] = '\n';
        }
        i = end + 1;
    }
    memcpy(out + n, line, (size_t)ln);
    n += (size_t)ln;
    out[n++] = '\n';
    out[n] = 0;
    return out;
}

static void flush_acc(head *h, acc *a, int d)
{
    if (a->key[0] == U_JOB) {
        char key[USAGE_KEY_MAX + 16], text[512];
        loom__snprintf(key, sizeof(key), "usage/j/%s", a->key + 2);
        counters total = a->delta;
        kv_entry *e = kv_find(h, key);
        if (e && e->len < sizeof(text)) {
            memcpy(text, e->val, e->len);
            text[e->len] = 0;
            counters old;
            counters_from(text, &old);
            add(&total, &old);
        }
        int n = counters_text(text, sizeof(text), &total);
        if (loom__head_kv_set(h, key, text, (size_t)n) == 0) memset(&a->delta, 0, sizeof(a->delta));
        return;
    }
    acc_load_day(h, a);
    counters total = a->day;
    add(&total, &a->delta);
    char key[64];
    loom__snprintf(key, sizeof(key), "usage/d/%d", d);
    kv_entry *e = kv_find(h, key);
    char *text = day_with(e ? (const char *)e->val : "", e ? e->len : 0, a->key[0], a->key + 2, &total);
    if (text && loom__head_kv_set(h, key, text, strlen(text)) == 0) {
        a->day = total;
        memset(&a->delta, 0, sizeof(a->delta));
    }
    free(text);
}

void loom__head_usage_flush(head *h)
{
    if (!h->usage) return;
    int d = today();
    size_t it = 0;
    void *v;
    acc *idle[64];
    int nidle = 0;
    while (loom__hmap_next(&h->usage->accs, &it, &v)) {
        acc *a = v;
        if (a->dirty) {
            flush_acc(h, a, d);
            a->dirty = 0;
        }
        /* a job's accumulator with nothing held and nothing pending goes */
        if (a->key[0] == U_JOB && !a->dirty && nidle < 64) idle[nidle++] = a;
    }
    for (int i = 0; i < nidle; i++) {
        uint8_t k[32];
        loom__head_name_key(idle[i]->key, k);
        free(loom__hmap_del(&h->usage->accs, k, sizeof(k)));
    }
}

void loom__head_usage_job_gone(head *h, const char *job_id)
{
    char key[USAGE_KEY_MAX + 16];
    loom__snprintf(key, sizeof(key), "j:%s", job_id);
    if (h->usage) {
        uint8_t k[32];
        loom__head_name_key(key, k);
        free(loom__hmap_del(&h->usage->accs, k, sizeof(k)));
    }
    loom__snprintf(key, sizeof(key), "usage/j/%s", job_id);
    loom__head_kv_unset(h, key);
}

void loom__head_usage_free(head *h)
{
    if (!h->usage) return;
    size_t it = 0;
    void *v;
    while (loom__hmap_next(&h->usage->accs, &it, &v)) free(v);
    loom__hmap_free(&h->usage->accs);
    free(h->usage);
    h->usage = NULL;
}
