/* examples/dp_model.c — the MLP, its gradient and the digits CSV reader of the
 * data-parallel example (see dp_model.h).  Plain loops in float64, no
 * threads: the per-sample gradients are summed in row order, so a run is
 * bit-for-bit reproducible on one machine and two runs differ only where the
 * rows are summed in another grouping (shards). */
#include "dp_model.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Offsets of the parameter blocks in the weight vector. */
#define OFF_W1 0
#define OFF_B1 (OFF_W1 + DP_HID * DP_IN)
#define OFF_W2 (OFF_B1 + DP_HID)
#define OFF_B2 (OFF_W2 + DP_OUT * DP_HID)

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* One CSV line into 64 pixels and a label; -1 if it is not that. */
static int parse_row(char *line, double *x, uint8_t *y)
{
    char *p = line;
    for (int k = 0; k <= DP_IN; k++) {
        errno = 0;
        char *end;
        double v = strtod(p, &end);
        if (end == p || errno) return -1;
        p = end;
        if (k < DP_IN) {
            if (!(v >= 0 && v <= 16)) return -1;
            x[k] = v / 16.0;
            if (*p++ != ',') return -1;
        } else {
            if (v != (int)v || v < 0 || v >= DP_OUT) return -1;
            *y = (uint8_t)v;
        }
    }
    while (*p == '\r' || *p == '\n' || *p == ' ') p++;
    return *p ? -1 : 0;
}

int dp_data_load(const char *path, int begin, int end, dp_data *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (end < 0) end = DP_ROWS;
    if (begin < 0 || begin > end || end > DP_ROWS) {
        set_err(err, errlen, "rows [%d, %d) out of range", begin, end);
        return -1;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        set_err(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    out->x = malloc(sizeof(double) * DP_IN * (size_t)(end > begin ? end - begin : 1));
    out->y = malloc((size_t)(end > begin ? end - begin : 1));
    if (!out->x || !out->y) {
        fclose(f);
        dp_data_free(out);
        set_err(err, errlen, "out of memory");
        return -1;
    }
    char line[1024];
    double x[DP_IN];
    uint8_t y = 0;
    int row = 0;
    while (row < end && fgets(line, sizeof(line), f)) {
        if (parse_row(line, x, &y)) {
            set_err(err, errlen, "%s: line %d is not 64 pixels (0..16) and a label (0..9)",
                    path, row + 1);
            fclose(f);
            dp_data_free(out);
            return -1;
        }
        if (row >= begin) {
            memcpy(out->x + (size_t)out->n * DP_IN, x, sizeof(x));
            out->y[out->n++] = y;
        }
        row++;
    }
    fclose(f);
    if (row < end) {
        set_err(err, errlen, "%s: %d rows, want %d (is it scikit-learn's digits.csv?)", path, row,
                end);
        dp_data_free(out);
        return -1;
    }
    return 0;
}

void dp_data_free(dp_data *d)
{
    free(d->x);
    free(d->y);
    memset(d, 0, sizeof(*d));
}

void dp_shard_range(int rank, int world, int *begin, int *end)
{
    *begin = (int)((int64_t)rank * DP_TRAIN_ROWS / world);
    *end = (int)((int64_t)(rank + 1) * DP_TRAIN_ROWS / world);
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-a, a). */
static double uniform(uint64_t *s, double a)
{
    double u = (double)(splitmix64(s) >> 11) * 0x1.0p-53;
    return (2 * u - 1) * a;
}

void dp_init(double *w, uint64_t seed)
{
    uint64_t s = seed;
    double a1 = sqrt(6.0 / (DP_IN + DP_HID)), a2 = sqrt(6.0 / (DP_HID + DP_OUT));
    memset(w, 0, sizeof(double) * DP_NPARAMS);
    for (int i = 0; i < DP_HID * DP_IN; i++) w[OFF_W1 + i] = uniform(&s, a1);
    for (int i = 0; i < DP_OUT * DP_HID; i++) w[OFF_W2 + i] = uniform(&s, a2);
}

/* Hidden activations h and output logits z of one input. */
static void forward(const double *w, const double *x, double *h, double *z)
{
    for (int j = 0; j < DP_HID; j++) {
        const double *row = w + OFF_W1 + j * DP_IN;
        double a = w[OFF_B1 + j];
        for (int k = 0; k < DP_IN; k++) a += row[k] * x[k];
        h[j] = tanh(a);
    }
    for (int c = 0; c < DP_OUT; c++) {
        const double *row = w + OFF_W2 + c * DP_HID;
        double a = w[OFF_B2 + c];
        for (int j = 0; j < DP_HID; j++) a += row[j] * h[j];
        z[c] = a;
    }
}

void dp_grad_sum(const double *w, const dp_data *d, double *acc)
{
    memset(acc, 0, sizeof(double) * DP_ACC_LEN);
    double h[DP_HID], z[DP_OUT], dz[DP_OUT], da[DP_HID];
    for (int i = 0; i < d->n; i++) {
        const double *x = d->x + (size_t)i * DP_IN;
        int y = d->y[i];
        forward(w, x, h, z);
        /* softmax cross-entropy, stable: loss = logsumexp(z) - z[y] */
        double m = z[0], s = 0;
        for (int c = 1; c < DP_OUT; c++) m = z[c] > m ? z[c] : m;
        for (int c = 0; c < DP_OUT; c++) s += (dz[c] = exp(z[c] - m));
        for (int c = 0; c < DP_OUT; c++) dz[c] /= s;
        acc[DP_ACC_LOSS] += m + log(s) - z[y];
        dz[y] -= 1;
        /* output layer, then back through tanh */
        for (int j = 0; j < DP_HID; j++) da[j] = 0;
        for (int c = 0; c < DP_OUT; c++) {
            const double *row = w + OFF_W2 + c * DP_HID;
            double *g = acc + OFF_W2 + c * DP_HID;
            for (int j = 0; j < DP_HID; j++) {
                g[j] += dz[c] * h[j];
                da[j] += row[j] * dz[c];
            }
            acc[OFF_B2 + c] += dz[c];
        }
        for (int j = 0; j < DP_HID; j++) {
            double dj = da[j] * (1 - h[j] * h[j]);
            double *g = acc + OFF_W1 + j * DP_IN;
            for (int k = 0; k < DP_IN; k++) g[k] += dj * x[k];
            acc[OFF_B1 + j] += dj;
        }
    }
    acc[DP_ACC_COUNT] = d->n;
}

double dp_apply(double *w, const double *acc, double lr)
{
    double n = acc[DP_ACC_COUNT];
    for (int i = 0; i < DP_NPARAMS; i++) w[i] -= lr * (acc[i] / n);
    return acc[DP_ACC_LOSS] / n;
}

double dp_accuracy(const double *w, const dp_data *d)
{
    double h[DP_HID], z[DP_OUT];
    int right = 0;
    for (int i = 0; i < d->n; i++) {
        forward(w, d->x + (size_t)i * DP_IN, h, z);
        int best = 0;
        for (int c = 1; c < DP_OUT; c++)
            if (z[c] > z[best]) best = c;
        right += best == d->y[i];
    }
    return d->n ? (double)right / d->n : 0;
}

int dp_train_steps(double *w, const dp_data *d, int steps, double lr, double *loss)
{
    double *acc = malloc(sizeof(double) * DP_ACC_LEN);
    if (!acc) return -1;
    for (int s = 0; s < steps; s++) {
        dp_grad_sum(w, d, acc);
        double l = dp_apply(w, acc, lr);
        if (loss) *loss = l;
    }
    free(acc);
    return 0;
}
