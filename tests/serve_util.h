/* tests/serve_util.h — helpers of the serve tests (test_mlp.c,
 * test_api_model.c): a random MLP written as a safetensors artifact, and a
 * plain double-precision forward pass to check serve/mlp.c against. */
#ifndef LOOM_TEST_SERVE_UTIL_H
#define LOOM_TEST_SERVE_UTIL_H
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "serve/safetensors.h"

#define TS_MAX_LAYERS 8

/* A float MLP: widths[0..nl], weights [widths[i+1], widths[i]]. */
typedef struct ts_mlp {
    int nl;
    int width[TS_MAX_LAYERS + 1];
    float *w[TS_MAX_LAYERS], *b[TS_MAX_LAYERS];
    int tanh_act;
} ts_mlp;

static inline uint64_t ts_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-a, a). */
static inline float ts_uniform(uint64_t *s, float a)
{
    return (float)((2 * ((double)(ts_rand(s) >> 11) * 0x1.0p-53) - 1) * a);
}

static inline void ts_mlp_init(ts_mlp *m, int nl, const int *width, int tanh_act, uint64_t seed)
{
    memset(m, 0, sizeof(*m));
    m->nl = nl;
    m->tanh_act = tanh_act;
    memcpy(m->width, width, sizeof(int) * (size_t)(nl + 1));
    for (int i = 0; i < nl; i++) {
        size_t nw = (size_t)width[i] * (size_t)width[i + 1];
        m->w[i] = malloc(sizeof(float) * nw);
        m->b[i] = malloc(sizeof(float) * (size_t)width[i + 1]);
        if (!m->w[i] || !m->b[i]) abort();
        float a = 1.0f / sqrtf((float)width[i]);
        for (size_t k = 0; k < nw; k++) m->w[i][k] = ts_uniform(&seed, 2 * a);
        for (int k = 0; k < width[i + 1]; k++) m->b[i][k] = ts_uniform(&seed, 0.5f);
    }
}

static inline void ts_mlp_free(ts_mlp *m)
{
    for (int i = 0; i < m->nl; i++) {
        free(m->w[i]);
        free(m->b[i]);
    }
    memset(m, 0, sizeof(*m));
}

/* The artifact bytes (malloc'd) with the given extra metadata pairs. */
static inline void *ts_mlp_artifact(const ts_mlp *m, const char *const *extra, int nextra,
                                    size_t *len)
{
    loom_tensor t[2 * TS_MAX_LAYERS];
    char err[256];
    for (int i = 0; i < m->nl; i++) {
        char wn[64], bn[64];
        snprintf(wn, sizeof wn, "layers.%d.weight", i);
        snprintf(bn, sizeof bn, "layers.%d.bias", i);
        int64_t ws[2] = {m->width[i + 1], m->width[i]}, bs[1] = {m->width[i + 1]};
        if (loom_tensor_set(&t[2 * i], wn, LOOM_DTYPE_FP32, 2, ws, m->w[i], err, sizeof err) ||
            loom_tensor_set(&t[2 * i + 1], bn, LOOM_DTYPE_FP32, 1, bs, m->b[i], err, sizeof err))
            abort();
    }
    const char *meta[2 * 16];
    int nmeta = 0;
    meta[2 * nmeta] = "activation";
    meta[2 * nmeta++ + 1] = m->tanh_act ? "tanh" : "relu";
    for (int i = 0; i < nextra && nmeta < 16; i++, nmeta++) {
        meta[2 * nmeta] = extra[2 * i];
        meta[2 * nmeta + 1] = extra[2 * i + 1];
    }
    void *buf = NULL;
    if (loom_st_write(t, 2 * m->nl, meta, nmeta, &buf, len, err, sizeof err)) {
        fprintf(stderr, "loom_st_write: %s\n", err);
        abort();
    }
    return buf;
}

/* probs[n, out] of the model in double precision, returned as float. */
static inline void ts_mlp_reference(const ts_mlp *m, const float *x, int n, float *probs)
{
    double a[1024], z[1024];
    for (int r = 0; r < n; r++) {
        for (int k = 0; k < m->width[0]; k++) a[k] = x[(size_t)r * (size_t)m->width[0] + (size_t)k];
        for (int i = 0; i < m->nl; i++) {
            int in = m->width[i], out = m->width[i + 1];
            for (int j = 0; j < out; j++) {
                double s = m->b[i][j];
                for (int k = 0; k < in; k++) s += (double)m->w[i][(size_t)j * (size_t)in + (size_t)k] * a[k];
                z[j] = s;
            }
            if (i < m->nl - 1)
                for (int j = 0; j < out; j++) a[j] = m->tanh_act ? tanh(z[j]) : (z[j] > 0 ? z[j] : 0);
            else {
                double mx = z[0], s = 0;
                for (int j = 1; j < out; j++) mx = z[j] > mx ? z[j] : mx;
                for (int j = 0; j < out; j++) s += (a[j] = exp(z[j] - mx));
                for (int j = 0; j < out; j++) probs[(size_t)r * (size_t)out + (size_t)j] = (float)(a[j] / s);
            }
        }
    }
}

static inline double ts_max_abs_diff(const float *a, const float *b, size_t n)
{
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - (double)b[i]));
    return d;
}
#endif
