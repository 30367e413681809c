/* gateway/metrics.c — the Prometheus metrics registry (see metrics.h).
 *
 * Owns the families, their series and the text exposition format.  One mutex
 * guards the whole registry: updates are a lookup and an add, and rendering
 * is rare (a scrape every few seconds), so a single lock is both simplest and
 * fast enough.  Families and series are found by linear search: a family has
 * a handful of series in practice, and LOOM_METRICS_MAX_SERIES bounds it. */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/buf.h"
#include "loom/loom.h"
#include "gateway/metrics.h"

enum { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM };
static const char *const kind_names[] = { "counter", "gauge", "histogram" };

static const double default_buckets[] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10
};

typedef struct series {
    char *labels;                /* "" for none */
    double value;                /* counter, gauge; histogram: sum */
    unsigned long long count;    /* histogram observations */
    unsigned long long *bucket;  /* histogram: per bucket (not cumulative) */
} series;

typedef struct family {
    char *name, *help;
    int kind;
    double *bounds;              /* histogram upper bounds (without +Inf) */
    int nbounds;
    series *s;
    int ns, cap;
} family;

struct loom_metrics {
    pthread_mutex_t mu;
    family *f;
    int nf, cap;
};

loom_metrics *loom_metrics_new(void)
{
    loom_metrics *m = calloc(1, sizeof(*m));
    if (!m) return NULL;
    if (pthread_mutex_init(&m->mu, NULL) != 0) { free(m); return NULL; }
    return m;
}

static void family_free(family *f)
{
    for (int i = 0; i < f->ns; i++) {
        free(f->s[i].labels);
        free(f->s[i].bucket);
    }
    free(f->s);
    free(f->name);
    free(f->help);
    free(f->bounds);
}

void loom_metrics_free(loom_metrics **pm)
{
    if (!pm || !*pm) return;
    loom_metrics *m = *pm;
    *pm = NULL;
    for (int i = 0; i < m->nf; i++) family_free(&m->f[i]);
    free(m->f);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* ---- validation ---- */

static int is_name_start(char c, int colon_ok)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon_ok && c == ':');
}

static int is_name_char(char c, int colon_ok)
{
    return is_name_start(c, colon_ok) || (c >= '0' && c <= '9');
}

/* Length of a valid name at s (0 if none). */
static size_t name_span(const char *s, int colon_ok)
{
    if (!is_name_start(s[0], colon_ok)) return 0;
    size_t n = 1;
    while (is_name_char(s[n], colon_ok)) n++;
    return n;
}

static int valid_metric_name(const char *name)
{
    if (!name) return 0;
    size_t n = name_span(name, 1);
    return n > 0 && name[n] == 0;
}

/* labels := pair ("," pair)* ; pair := name "=" '"' (char | \\ | \" | \n)* '"'
 * (at most MAX_LABEL_PAIRS pairs) */
#define MAX_LABEL_PAIRS 64
static int valid_labels(const char *s)
{
    if (!s || !*s) return 1;
    for (int pairs = 0; pairs < MAX_LABEL_PAIRS; pairs++) {
        size_t n = name_span(s, 0);
        if (n == 0 || s[n] != '=' || s[n + 1] != '"') return 0;
        s += n + 2;
        while (*s != '"') {
            if (*s == 0 || *s == '\n') return 0;
            if (*s == '\\') {
                if (s[1] != '\\' && s[1] != '"' && s[1] != 'n') return 0;
                s++;
            }
            s++;
        }
        s++;
        if (*s == 0) return 1;
        if (*s != ',') return 0;
        s++;
    }
    return 0;
}

static int valid_bounds(const double *b, int n)
{
    if (n < 0 || n > LOOM_METRICS_MAX_BUCKETS) return 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(b[i])) return 0;
        if (i > 0 && !(b[i] > b[i - 1])) return 0;
    }
    return 1;
}

/* ---- lookup (mutex held) ---- */

static family *find_family(loom_metrics *m, const char *name)
{
    for (int i = 0; i < m->nf; i++)
        if (strcmp(m->f[i].name, name) == 0) return &m->f[i];
    return NULL;
}

static int grow(void **arr, int *cap, int need, size_t elem, int max)
{
    if (need <= *cap) return LOOM_OK;
    if (need > max) return LOOM_EFULL;
    int ncap = *cap ? *cap * 2 : 8;
    if (ncap > max) ncap = max;
    void *p = realloc(*arr, (size_t)ncap * elem);
    if (!p) return LOOM_ENOMEM;
    *arr = p;
    *cap = ncap;
    return LOOM_OK;
}

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

/* The family NAME of KIND, created if new; *out NULL with the error. */
static int get_family(loom_metrics *m, const char *name, const char *help, int kind,
                      const double *bounds, int nbounds, family **out)
{
    family *f = find_family(m, name);
    if (f) {
        if (f->kind != kind) return LOOM_EINVAL;
        if (kind == KIND_HISTOGRAM &&
            (f->nbounds != nbounds ||
             memcmp(f->bounds, bounds, (size_t)nbounds * sizeof(double)) != 0))
            return LOOM_EINVAL;
        *out = f;
        return LOOM_OK;
    }
    int rc = grow((void **)&m->f, &m->cap, m->nf + 1, sizeof(family), LOOM_METRICS_MAX_FAMILIES);
    if (rc) return rc;
    family nf = { .kind = kind, .nbounds = nbounds };
    nf.name = strdup(name);
    nf.help = dup_or_empty(help);
    if (kind == KIND_HISTOGRAM && nbounds > 0) {
        nf.bounds = malloc((size_t)nbounds * sizeof(double));
        if (nf.bounds) memcpy(nf.bounds, bounds, (size_t)nbounds * sizeof(double));
    }
    if (!nf.name || !nf.help || (kind == KIND_HISTOGRAM && nbounds > 0 && !nf.bounds)) {
        family_free(&nf);
        return LOOM_ENOMEM;
    }
    m->f[m->nf] = nf;
    *out = &m->f[m->nf++];
    return LOOM_OK;
}

static int get_series(family *f, const char *labels, series **out)
{
    const char *key = labels ? labels : "";
    for (int i = 0; i < f->ns; i++)
        if (strcmp(f->s[i].labels, key) == 0) { *out = &f->s[i]; return LOOM_OK; }
    int rc = grow((void **)&f->s, &f->cap, f->ns + 1, sizeof(series), LOOM_METRICS_MAX_SERIES);
    if (rc) return rc;
    series ns = { 0 };
    ns.labels = strdup(key);
    if (f->kind == KIND_HISTOGRAM)
        ns.bucket = calloc((size_t)f->nbounds + 1, sizeof(*ns.bucket));
    if (!ns.labels || (f->kind == KIND_HISTOGRAM && !ns.bucket)) {
        free(ns.labels);
        free(ns.bucket);
        return LOOM_ENOMEM;
    }
    f->s[f->ns] = ns;
    *out = &f->s[f->ns++];
    return LOOM_OK;
}

enum { OP_ADD, OP_SET };

static int update(loom_metrics *m, const char *name, const char *help, const char *labels,
                  int kind, int op, double v)
{
    if (!m || !valid_metric_name(name) || !valid_labels(labels) || isnan(v)) return LOOM_EINVAL;
    pthread_mutex_lock(&m->mu);
    family *f = NULL;
    series *s = NULL;
    int rc = get_family(m, name, help, kind, NULL, 0, &f);
    if (rc == 0) rc = get_series(f, labels, &s);
    if (rc == 0) s->value = op == OP_SET ? v : s->value + v;
    pthread_mutex_unlock(&m->mu);
    return rc;
}

int loom_metrics_counter_add(loom_metrics *m, const char *name, const char *help,
                             const char *labels, double v)
{
    if (!isfinite(v) || v < 0) return LOOM_EINVAL;
    return update(m, name, help, labels, KIND_COUNTER, OP_ADD, v);
}

int loom_metrics_gauge_set(loom_metrics *m, const char *name, const char *help,
                           const char *labels, double v)
{
    return update(m, name, help, labels, KIND_GAUGE, OP_SET, v);
}

int loom_metrics_gauge_add(loom_metrics *m, const char *name, const char *help,
                           const char *labels, double v)
{
    if (!isfinite(v)) return LOOM_EINVAL;
    return update(m, name, help, labels, KIND_GAUGE, OP_ADD, v);
}

int loom_metrics_histogram_observe(loom_metrics *m, const char *name, const char *help,
                                   const char *labels, const double *buckets,
                                   int nbuckets, double v)
{
    if (!buckets) {
        buckets = default_buckets;
        nbuckets = (int)(sizeof(default_buckets) / sizeof(default_buckets[0]));
    }
    if (!m || !valid_metric_name(name) || !valid_labels(labels) || isnan(v) ||
        !valid_bounds(buckets, nbuckets))
        return LOOM_EINVAL;
    pthread_mutex_lock(&m->mu);
    family *f = NULL;
    series *s = NULL;
    int rc = get_family(m, name, help, KIND_HISTOGRAM, buckets, nbuckets, &f);
    if (rc == 0) rc = get_series(f, labels, &s);
    if (rc == 0) {
        int b = 0;
        while (b < f->nbounds && v > f->bounds[b]) b++;
        s->bucket[b]++;          /* index nbounds is the +Inf bucket */
        s->count++;
        s->value += v;
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

int loom_metrics_value(loom_metrics *m, const char *name, const char *labels, double *out)
{
    if (!m || !name || !out) return LOOM_EINVAL;
    const char *key = labels ? labels : "";
    int rc = LOOM_ENOTFOUND;
    pthread_mutex_lock(&m->mu);
    family *f = find_family(m, name);
    for (int i = 0; f && i < f->ns; i++) {
        if (strcmp(f->s[i].labels, key) != 0) continue;
        *out = f->kind == KIND_HISTOGRAM ? (double)f->s[i].count : f->s[i].value;
        rc = LOOM_OK;
        break;
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

/* ---- rendering ---- */

/* The text goes into a loom_buf (base/buf.h): out of memory is sticky. */

/* A sample value: shortest decimal that reads back exactly; +Inf, -Inf, NaN. */
static void format_number(char *buf, size_t cap, double v)
{
    if (isnan(v)) { snprintf(buf, cap, "NaN"); return; }
    if (isinf(v)) { snprintf(buf, cap, v > 0 ? "+Inf" : "-Inf"); return; }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

/* HELP text escapes backslash and newline. */
static void render_help(loom_buf *o, const family *f)
{
    loom__buf_appendf(o, "# HELP %s ", f->name);
    for (const char *h = f->help; *h && !o->oom; h++) {
        if (*h == '\\') loom__buf_appendf(o, "\\\\");
        else if (*h == '\n') loom__buf_appendf(o, "\\n");
        else loom__buf_appendf(o, "%c", *h);
    }
    loom__buf_appendf(o, "\n# TYPE %s %s\n", f->name, kind_names[f->kind]);
}

/* name{labels,extra} value — either part of the braces may be empty. */
static void render_sample(loom_buf *o, const char *name, const char *suffix, const char *labels,
                          const char *extra, double v)
{
    char num[40];
    format_number(num, sizeof num, v);
    int has_l = labels && *labels, has_e = extra && *extra;
    if (!has_l && !has_e) { loom__buf_appendf(o, "%s%s %s\n", name, suffix, num); return; }
    loom__buf_appendf(o, "%s%s{%s%s%s} %s\n", name, suffix, has_l ? labels : "",
                      has_l && has_e ? "," : "", has_e ? extra : "", num);
}

static void render_histogram(loom_buf *o, const family *f, const series *s)
{
    unsigned long long cum = 0;
    char le[64], num[40];
    for (int b = 0; b <= f->nbounds; b++) {
        cum += s->bucket[b];
        if (b < f->nbounds) format_number(num, sizeof num, f->bounds[b]);
        else snprintf(num, sizeof num, "+Inf");
        snprintf(le, sizeof le, "le=\"%s\"", num);
        render_sample(o, f->name, "_bucket", s->labels, le, (double)cum);
    }
    render_sample(o, f->name, "_sum", s->labels, NULL, s->value);
    render_sample(o, f->name, "_count", s->labels, NULL, (double)s->count);
}

int loom_metrics_render(loom_metrics *m, char **text, size_t *len)
{
    if (!m || !text) return LOOM_EINVAL;
    loom_buf o;
    loom_buf_init(&o);
    loom__buf_append(&o, "", 0); /* "" when there is nothing to render */
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->nf && !o.oom; i++) {
        const family *f = &m->f[i];
        render_help(&o, f);
        for (int k = 0; k < f->ns && !o.oom; k++) {
            if (f->kind == KIND_HISTOGRAM) render_histogram(&o, f, &f->s[k]);
            else render_sample(&o, f->name, "", f->s[k].labels, NULL, f->s[k].value);
        }
    }
    pthread_mutex_unlock(&m->mu);
    if (o.oom) { loom__buf_free(&o); return LOOM_ENOMEM; }
    *text = o.p;
    if (len) *len = o.len;
    return LOOM_OK;
}

/* ---- label building ---- */

static int put_char(char *out, size_t cap, size_t *n, char c)
{
    if (*n + 1 >= cap) return LOOM_ETOOBIG;
    out[(*n)++] = c;
    out[*n] = 0;
    return LOOM_OK;
}

static int put_escaped(char *out, size_t cap, size_t *n, const char *v)
{
    int rc = LOOM_OK;
    for (const char *p = v; *p && rc == 0; p++) {
        if (*p == '\\' || *p == '"') {
            rc = put_char(out, cap, n, '\\');
            if (rc == 0) rc = put_char(out, cap, n, *p);
        } else if (*p == '\n') {
            rc = put_char(out, cap, n, '\\');
            if (rc == 0) rc = put_char(out, cap, n, 'n');
        } else {
            rc = put_char(out, cap, n, *p);
        }
    }
    return rc;
}

int loom_metrics_labels(char *out, size_t cap, ...)
{
    if (!out || cap == 0) return LOOM_EINVAL;
    out[0] = 0;
    size_t n = 0;
    int rc = LOOM_OK;
    va_list ap;
    va_start(ap, cap);
    for (int i = 0; rc == 0 && i < MAX_LABEL_PAIRS; i++) {
        const char *name = va_arg(ap, const char *);
        if (!name) break;
        const char *value = va_arg(ap, const char *);
        size_t nl = name_span(name, 0);
        if (nl == 0 || name[nl] != 0 || !value) { rc = LOOM_EINVAL; break; }
        if (i > 0) rc = put_char(out, cap, &n, ',');
        for (size_t k = 0; rc == 0 && k < nl; k++) rc = put_char(out, cap, &n, name[k]);
        if (rc == 0) rc = put_char(out, cap, &n, '=');
        if (rc == 0) rc = put_char(out, cap, &n, '"');
        if (rc == 0) rc = put_escaped(out, cap, &n, value);
        if (rc == 0) rc = put_char(out, cap, &n, '"');
    }
    va_end(ap);
    if (rc) out[0] = 0;
    return rc;
}
