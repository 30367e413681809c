/* gateway/metrics.h — a thread-safe registry of Prometheus metrics (counters,
 * gauges, histograms with labels) rendered in the text exposition format 0.0.4
 * for GET /metrics.
 *
 * A metric family is created by its first use (name, help and type are fixed
 * then); a series is one label set of a family.  Labels are a string in the
 * exposition syntax, e.g.  code="200",route="infer"  (NULL or "" for none),
 * checked on use: names [a-zA-Z_][a-zA-Z0-9_]*, values quoted with \\ \" \n as
 * the only escapes.  The same labels in another order are another series.
 * loom_metrics_labels() builds such a string from raw values, escaping them.
 *
 * Every function returns 0 or a negative LOOM_E* code: LOOM_EINVAL for a bad
 * name, labels, value or a type/bucket mismatch with the existing family,
 * LOOM_EFULL past LOOM_METRICS_MAX_FAMILIES families or
 * LOOM_METRICS_MAX_SERIES series in one family (a bound on label cardinality),
 * LOOM_ENOMEM. */
#ifndef LOOM_GATEWAY_METRICS_H
#define LOOM_GATEWAY_METRICS_H
#include <stddef.h>

#define LOOM_METRICS_MAX_FAMILIES 1024
#define LOOM_METRICS_MAX_SERIES 4096
#define LOOM_METRICS_MAX_BUCKETS 64

typedef struct loom_metrics loom_metrics;

/* A new empty registry (NULL on OOM); loom_metrics_free frees it and NULLs *m. */
loom_metrics *loom_metrics_new(void);
void loom_metrics_free(loom_metrics **m);

/* Counter: add v (finite, >= 0) to the series. */
int loom_metrics_counter_add(loom_metrics *m, const char *name, const char *help,
                             const char *labels, double v);
/* Gauge: set it to v, or add v (may be negative) to it. */
int loom_metrics_gauge_set(loom_metrics *m, const char *name, const char *help,
                           const char *labels, double v);
int loom_metrics_gauge_add(loom_metrics *m, const char *name, const char *help,
                           const char *labels, double v);
/* Histogram: count v in the buckets (upper bounds, strictly increasing and
 * finite; +Inf is implied).  buckets NULL means Prometheus' defaults
 * (0.005 ... 10).  The family's buckets are those of its first observation;
 * a later call with other buckets is LOOM_EINVAL. */
int loom_metrics_histogram_observe(loom_metrics *m, const char *name, const char *help,
                                   const char *labels, const double *buckets,
                                   int nbuckets, double v);

/* The current value of a counter or gauge series, or a histogram series'
 * count (LOOM_ENOTFOUND if the series does not exist). */
int loom_metrics_value(loom_metrics *m, const char *name, const char *labels, double *out);

/* Render every family as text format 0.0.4 (content type
 * LOOM_METRICS_CONTENT_TYPE).  *text is NUL-terminated, malloc'd, the
 * caller's to free; *len excludes the NUL. */
#define LOOM_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
int loom_metrics_render(loom_metrics *m, char **text, size_t *len);

/* Build a label string from name/value pairs ending in NULL:
 *   loom_metrics_labels(buf, sizeof buf, "route", route, "code", "200", NULL)
 * gives  route="...",code="200"  with the values escaped.  LOOM_EINVAL for a
 * bad name, LOOM_ETOOBIG if it does not fit in cap. */
int loom_metrics_labels(char *out, size_t cap, ...) __attribute__((sentinel));
#endif
