/* serve/mlp.c — the MLP of serve/mlp.h: loading and checking its layers out
 * of a safetensors artifact, and the forward pass.  Each layer is one
 * matrix product (cblas_sgemm on the CPU, cuBLAS on the GPU through
 * serve/mlp_cuda.c) followed by the same host epilogue on both devices:
 * bias, then the activation (or the softmax of the last layer), so the two
 * paths differ only in how the products are summed. */
#include "serve/mlp.h"
#include "serve/serve_internal.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/loom.h"
#include "serve/mlp_cuda.h"
#include "serve/safetensors.h"

struct loom_mlp {
    int nlayers;
    int width[LOOM_MLP_MAX_LAYERS + 1];
    float *w[LOOM_MLP_MAX_LAYERS];   /* [width[i+1], width[i]] */
    float *b[LOOM_MLP_MAX_LAYERS];   /* [width[i+1]] */
    loom_mlp_act act;
    int nmeta;
    char **meta;                     /* key, value, … (owned) */
    loom_mlp_cuda *cuda;             /* NULL: CPU */
    pthread_mutex_t cuda_lock;
};

void loom_mlp_destroy(loom_mlp **pm)
{
    if (!pm || !*pm) return;
    loom_mlp *m = *pm;
    loom_mlp_cuda_destroy(&m->cuda);
    for (int i = 0; i < m->nlayers; i++) {
        free(m->w[i]);
        free(m->b[i]);
    }
    for (int i = 0; i < 2 * m->nmeta; i++) free(m->meta[i]);
    free(m->meta);
    pthread_mutex_destroy(&m->cuda_lock);
    free(m);
    *pm = NULL;
}

/* ---- loading ----------------------------------------------------------------- */

static int is_float(loom_tensor_dtype dt)
{
    return dt == LOOM_DTYPE_FP32 || dt == LOOM_DTYPE_FP64 || dt == LOOM_DTYPE_FP16 ||
           dt == LOOM_DTYPE_BF16;
}

/* A float tensor of the given shape (ndim 1 or 2) copied to a new array. */
static int copy_param(const loom_st_file *f, const char *name, int ndim, int64_t d0, int64_t d1,
                      float **out, char *err, size_t errlen)
{
    const loom_tensor *t = loom_st_find(f, name);
    if (!t) return serve_fail(LOOM_EINVAL, err, errlen, "MLP artifact lacks tensor '%s'", name);
    if (!is_float(t->dtype))
        return serve_fail(LOOM_EINVAL, err, errlen, "tensor '%s' is %s, want a float type", name,
                    loom_tensor_dtype_name(t->dtype));
    if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1)) {
        char want[64];
        if (ndim == 2) snprintf(want, sizeof(want), "[%lld, %lld]", (long long)d0, (long long)d1);
        else snprintf(want, sizeof(want), "[%lld]", (long long)d0);
        return serve_fail(LOOM_EINVAL, err, errlen, "tensor '%s' has %d dims of which the first is "
                    "%lld, want %s", name, t->ndim, t->ndim ? (long long)t->shape[0] : 0LL, want);
    }
    *out = malloc(t->nbytes ? t->nbytes / loom_tensor_dtype_size(t->dtype) * sizeof(float) : 1);
    if (!*out) return serve_fail(LOOM_ENOMEM, err, errlen, "out of memory");
    loom_tensor_to_f32(t, *out);
    return 0;
}

/* The widths from the weights' shapes: layer i's weight is [out, in]. */
static int read_widths(loom_mlp *m, const loom_st_file *f, char *err, size_t errlen)
{
    char name[64];
    for (int i = 0;; i++) {
        snprintf(name, sizeof(name), "layers.%d.weight", i);
        const loom_tensor *t = loom_st_find(f, name);
        if (!t) break;
        if (i == LOOM_MLP_MAX_LAYERS)
            return serve_fail(LOOM_ETOOBIG, err, errlen, "more than %d layers", LOOM_MLP_MAX_LAYERS);
        if (t->ndim != 2 || t->shape[0] < 1 || t->shape[1] < 1 ||
            t->shape[0] > LOOM_MLP_MAX_WIDTH || t->shape[1] > LOOM_MLP_MAX_WIDTH)
            return serve_fail(LOOM_EINVAL, err, errlen, "'%s' must be [out, in] with 1..%d each", name,
                        LOOM_MLP_MAX_WIDTH);
        if (i == 0) m->width[0] = (int)t->shape[1];
        else if (t->shape[1] != m->width[i])
            return serve_fail(LOOM_EINVAL, err, errlen, "'%s' takes %lld inputs, layer %d gives %d",
                        name, (long long)t->shape[1], i - 1, m->width[i]);
        m->width[i + 1] = (int)t->shape[0];
        m->nlayers = i + 1;
    }
    if (!m->nlayers)
        return serve_fail(LOOM_EINVAL, err, errlen, "not an MLP artifact: no tensor 'layers.0.weight'");
    return 0;
}

static int read_activations(loom_mlp *m, const loom_st_file *f, char *err, size_t errlen)
{
    const char *act = loom_st_metadata(f, "activation");
    if (!act || !strcmp(act, "relu")) m->act = LOOM_MLP_RELU;
    else if (!strcmp(act, "tanh")) m->act = LOOM_MLP_TANH;
    else return serve_fail(LOOM_EINVAL, err, errlen, "activation '%s': want relu or tanh", act);
    const char *out = loom_st_metadata(f, "output_activation");
    if (out && strcmp(out, "softmax"))
        return serve_fail(LOOM_EINVAL, err, errlen, "output_activation '%s': only softmax is supported",
                    out);
    return 0;
}

static int copy_metadata(loom_mlp *m, const loom_st_file *f, char *err, size_t errlen)
{
    int n = loom_st_metadata_count(f);
    m->meta = calloc(2 * (size_t)n + 1, sizeof(char *));
    if (!m->meta) return serve_fail(LOOM_ENOMEM, err, errlen, "out of memory");
    for (int i = 0; i < n; i++) {
        const char *k, *v;
        loom_st_metadata_entry(f, i, &k, &v);
        m->meta[2 * i] = strdup(k);
        m->meta[2 * i + 1] = strdup(v);
        m->nmeta++;
        if (!m->meta[2 * i] || !m->meta[2 * i + 1])
            return serve_fail(LOOM_ENOMEM, err, errlen, "out of memory");
    }
    return 0;
}

static int load_layers(loom_mlp *m, const loom_st_file *f, char *err, size_t errlen)
{
    int rc = read_widths(m, f, err, errlen);
    if (!rc) rc = read_activations(m, f, err, errlen);
    for (int i = 0; !rc && i < m->nlayers; i++) {
        char wn[64], bn[64];
        snprintf(wn, sizeof(wn), "layers.%d.weight", i);
        snprintf(bn, sizeof(bn), "layers.%d.bias", i);
        rc = copy_param(f, wn, 2, m->width[i + 1], m->width[i], &m->w[i], err, errlen);
        if (!rc) rc = copy_param(f, bn, 1, m->width[i + 1], 0, &m->b[i], err, errlen);
    }
    if (!rc && loom_st_count(f) != 2 * m->nlayers)
        rc = serve_fail(LOOM_EINVAL, err, errlen,
                  "MLP artifact has %d tensors, want layers.{0..%d}.weight and .bias only",
                  loom_st_count(f), m->nlayers - 1);
    if (!rc) rc = copy_metadata(m, f, err, errlen);
    return rc;
}

int loom_mlp_load(const void *buf, size_t len, loom_mlp **out, char *err, size_t errlen)
{
    *out = NULL;
    loom_st_file *f = NULL;
    int rc = loom_st_open(buf, len, &f, err, errlen);
    if (rc) return rc;
    loom_mlp *m = calloc(1, sizeof(*m));
    if (!m) {
        loom_st_close(&f);
        return serve_fail(LOOM_ENOMEM, err, errlen, "out of memory");
    }
    pthread_mutex_init(&m->cuda_lock, NULL);
    rc = load_layers(m, f, err, errlen);
    loom_st_close(&f);
    if (rc) {
        loom_mlp_destroy(&m);
        return rc;
    }
    *out = m;
    return 0;
}

/* ---- accessors ----------------------------------------------------------------- */

int loom_mlp_layers(const loom_mlp *m) { return m->nlayers; }
int loom_mlp_inputs(const loom_mlp *m) { return m->width[0]; }
int loom_mlp_outputs(const loom_mlp *m) { return m->width[m->nlayers]; }
loom_mlp_act loom_mlp_activation(const loom_mlp *m) { return m->act; }
const char *loom_mlp_device(const loom_mlp *m) { return m->cuda ? "cuda" : "cpu"; }

int loom_mlp_width(const loom_mlp *m, int i)
{
    return i >= 0 && i <= m->nlayers ? m->width[i] : 0;
}

const char *loom_mlp_activation_name(const loom_mlp *m)
{
    return m->act == LOOM_MLP_TANH ? "tanh" : "relu";
}

const char *loom_mlp_meta(const loom_mlp *m, const char *key)
{
    for (int i = 0; key && i < m->nmeta; i++)
        if (!strcmp(m->meta[2 * i], key)) return m->meta[2 * i + 1];
    return NULL;
}

int loom_mlp_meta_count(const loom_mlp *m) { return m->nmeta; }

int loom_mlp_meta_entry(const loom_mlp *m, int i, const char **key, const char **value)
{
    if (i < 0 || i >= m->nmeta) return LOOM_EINVAL;
    *key = m->meta[2 * i];
    *value = m->meta[2 * i + 1];
    return 0;
}

const char *loom_mlp_input_name(const loom_mlp *m)
{
    const char *s = loom_mlp_meta(m, "input_name");
    return s && *s ? s : "input";
}

const char *loom_mlp_output_name(const loom_mlp *m)
{
    const char *s = loom_mlp_meta(m, "output_name");
    return s && *s ? s : "probabilities";
}

int loom_mlp_argmax(const float *row, int k)
{
    int best = 0;
    for (int c = 1; c < k; c++)
        if (row[c] > row[best]) best = c;
    return best;
}

/* ---- GPU ------------------------------------------------------------------------- */

int loom_mlp_use_cuda(loom_mlp *m, char *why, size_t whylen)
{
    if (m->cuda) return 0;
    return loom_mlp_cuda_new(m->nlayers, m->width, (const float *const *)m->w, &m->cuda, why,
                             whylen);
}

/* ---- forward ------------------------------------------------------------------- */

/* Stable softmax of one row in place. */
static void softmax_row(float *z, int k)
{
    float mx = z[0];
    for (int c = 1; c < k; c++) mx = z[c] > mx ? z[c] : mx;
    double s = 0;
    for (int c = 0; c < k; c++) s += (z[c] = expf(z[c] - mx));
    for (int c = 0; c < k; c++) z[c] = (float)(z[c] / s);
}

/* y[n, out] += bias, then the hidden activation or, for the last layer, the
 * softmax. */
static void epilogue(const loom_mlp *m, int layer, float *y, size_t n)
{
    int out = m->width[layer + 1];
    const float *b = m->b[layer];
    int last = layer == m->nlayers - 1;
    for (size_t r = 0; r < n; r++) {
        float *row = y + r * (size_t)out;
        for (int j = 0; j < out; j++) row[j] += b[j];
        if (last) softmax_row(row, out);
        else if (m->act == LOOM_MLP_TANH)
            for (int j = 0; j < out; j++) row[j] = tanhf(row[j]);
        else
            for (int j = 0; j < out; j++) row[j] = row[j] > 0 ? row[j] : 0;
    }
}

static int max_width(const loom_mlp *m)
{
    int w = 0;
    for (int i = 0; i <= m->nlayers; i++) w = m->width[i] > w ? m->width[i] : w;
    return w;
}

/* Two scratch buffers of n * widest layer floats (one block). */
static int scratch(const loom_mlp *m, int64_t n, float **buf, char *err, size_t errlen)
{
    size_t w = (size_t)max_width(m);
    if (n < 0 || n > INT32_MAX || (size_t)n > LOOM_MLP_MAX_BATCH_BYTES / (2 * w * sizeof(float)))
        return serve_fail(LOOM_ETOOBIG, err, errlen, "batch of %lld rows is too large for this model",
                    (long long)n);
    *buf = malloc(2 * (size_t)n * w * sizeof(float) + 1);
    return *buf ? 0 : serve_fail(LOOM_ENOMEM, err, errlen, "out of memory");
}

typedef int (*layer_fn)(const loom_mlp *m, int layer, const float *x, int64_t n, float *y,
                        char *err, size_t errlen);

static int cpu_layer(const loom_mlp *m, int layer, const float *x, int64_t n, float *y,
                     char *err, size_t errlen)
{
    int in = m->width[layer], out = m->width[layer + 1];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, out, in, 1.0f, x, in,
                m->w[layer], in, 0.0f, y, out);
    return 0;
}

static int cuda_layer(const loom_mlp *m, int layer, const float *x, int64_t n, float *y,
                      char *err, size_t errlen)
{
    return loom_mlp_cuda_layer(m->cuda, layer, x, n, y, err, errlen);
}

/* The layers in turn, ping-ponging between the two halves of the scratch
 * buffer; the last writes into probs. */
static int run_layers(const loom_mlp *m, layer_fn fn, const float *x, int64_t n, float *probs,
                      char *err, size_t errlen)
{
    if (n == 0) return 0;
    float *buf;
    int rc = scratch(m, n, &buf, err, errlen);
    if (rc) return rc;
    float *half[2] = {buf, buf + (size_t)n * (size_t)max_width(m)};
    const float *in = x;
    for (int i = 0; !rc && i < m->nlayers; i++) {
        float *y = i == m->nlayers - 1 ? probs : half[i % 2];
        rc = fn(m, i, in, n, y, err, errlen);
        if (!rc) epilogue(m, i, y, (size_t)n);
        in = y;
    }
    free(buf);
    return rc;
}

int loom_mlp_forward_cpu(const loom_mlp *m, const float *x, int64_t n, float *probs, char *err,
                         size_t errlen)
{
    return run_layers(m, cpu_layer, x, n, probs, err, errlen);
}

int loom_mlp_forward(loom_mlp *m, const float *x, int64_t n, float *probs, char *err,
                     size_t errlen)
{
    if (!m->cuda) return loom_mlp_forward_cpu(m, x, n, probs, err, errlen);
    pthread_mutex_lock(&m->cuda_lock);
    int rc = run_layers(m, cuda_layer, x, n, probs, err, errlen);
    pthread_mutex_unlock(&m->cuda_lock);
    return rc;
}
