/* examples/digits_mlp.c — train the model that the MLP runtime serves
 * (serve/runtime_mlp.c): a 64-H-10 ReLU MLP on scikit-learn's handwritten
 * digits, the dataset Debian's python3-sklearn ships
 * (scripts/get_digits.sh fetches it), written as a safetensors artifact; and
 * check an artifact through serve/mlp.c's forward pass, the one the runtime
 * uses, so that training and serving agree on the number they report.
 *
 *   digits_mlp train --data DIR|digits.csv --out model.safetensors
 *                    [--hidden 64] [--epochs 60] [--lr 0.05] [--seed 1]
 *                    [--split-seed 42] [--min-accuracy A]
 *   digits_mlp eval  --model model.safetensors --data DIR|digits.csv
 *                    [--split-seed 42] [--min-accuracy A]
 *
 * Split: the 1797 rows shuffled with --split-seed (default 42); the first
 * 360 (20%) are the held-out test set, the rest the training set (eval uses
 * the same seed).  A random split, as scikit-learn's train_test_split makes:
 * the contiguous tail that examples/dp_model.h tests on (rows 1500..1796)
 * comes from other writers and caps this MLP near 0.93.  Training:
 * mini-batch SGD (32 rows) with momentum 0.9, weight decay 1e-4 and a cosine
 * learning-rate schedule, in float64 on pixels scaled to [0,1]; fixed seeds
 * give the same model every run.  The saved first layer absorbs the 1/16
 * scaling, so the served model takes the
 * raw 0..16 grey levels a client has.  Exit status: 0, 1 when the accuracy
 * is under --min-accuracy, 2 on usage or I/O errors. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dp_model.h"
#include "serve/mlp.h"
#include "serve/safetensors.h"

#define BATCH 32
#define MOMENTUM 0.9
#define DECAY 1e-4
#define MAX_HIDDEN 1024
#define TEST_ROWS 360 /* 20% of 1797 */

typedef struct options {
    const char *cmd, *data, *out, *model;
    int hidden, epochs;
    double lr, min_accuracy;
    uint64_t seed, split_seed;
} options;

/* The network in float64: W1 [h][64], b1 [h], W2 [10][h], b2 [10]. */
typedef struct net {
    int h;
    double *w1, *b1, *w2, *b2;
} net;

static void usage(void)
{
    fprintf(stderr,
            "usage: digits_mlp train --data DIR|digits.csv --out model.safetensors\n"
            "                        [--hidden 64] [--epochs 60] [--lr 0.05] [--seed 1]\n"
            "                        [--split-seed 42] [--min-accuracy A]\n"
            "       digits_mlp eval --model model.safetensors --data DIR|digits.csv\n"
            "                        [--split-seed 42] [--min-accuracy A]\n");
    exit(2);
}

static void parse_options(int argc, char **argv, options *o)
{
    *o = (options){.hidden = 64, .epochs = 60, .lr = 0.05, .seed = 1, .split_seed = 42};
    if (argc < 2) usage();
    o->cmd = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        if (!strcmp(a, "--data")) o->data = v;
        else if (!strcmp(a, "--out")) o->out = v;
        else if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--hidden")) o->hidden = atoi(v);
        else if (!strcmp(a, "--epochs")) o->epochs = atoi(v);
        else if (!strcmp(a, "--lr")) o->lr = atof(v);
        else if (!strcmp(a, "--seed")) o->seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--split-seed")) o->split_seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--min-accuracy")) o->min_accuracy = atof(v);
        else usage();
        i++;
    }
    int train = !strcmp(o->cmd, "train"), eval = !strcmp(o->cmd, "eval");
    if (!o->data || (!train && !eval) || (train && !o->out) || (eval && !o->model) ||
        o->hidden < 1 || o->hidden > MAX_HIDDEN || o->epochs < 1 || !(o->lr > 0))
        usage();
}

/* --data names the CSV or the directory get_digits.sh filled. */
static void csv_path(const char *data, char *out, size_t cap)
{
    struct stat st;
    if (!stat(data, &st) && S_ISDIR(st.st_mode)) snprintf(out, cap, "%s/digits.csv", data);
    else snprintf(out, cap, "%s", data);
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void shuffle(int *idx, int n, uint64_t *s)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(splitmix64(s) % (uint64_t)(i + 1));
        int t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

/* Rows idx[0..n) of all into a new dp_data. */
static int take_rows(const dp_data *all, const int *idx, int n, dp_data *out)
{
    out->n = n;
    out->x = malloc(sizeof(double) * DP_IN * (size_t)n);
    out->y = malloc((size_t)n);
    if (!out->x || !out->y) {
        dp_data_free(out);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        memcpy(out->x + (size_t)i * DP_IN, all->x + (size_t)idx[i] * DP_IN, sizeof(double) * DP_IN);
        out->y[i] = all->y[idx[i]];
    }
    return 0;
}

/* The held-out split: all 1797 rows shuffled with split_seed, the first
 * TEST_ROWS of them the test set, the rest the training set. */
static int load_split(const options *o, dp_data *tr, dp_data *te)
{
    char path[4096], err[512];
    csv_path(o->data, path, sizeof(path));
    dp_data all;
    if (dp_data_load(path, 0, -1, &all, err, sizeof(err))) {
        fprintf(stderr, "digits_mlp: %s (fetch the data with scripts/get_digits.sh DIR)\n", err);
        return -1;
    }
    int idx[DP_ROWS], rc = 0;
    for (int i = 0; i < DP_ROWS; i++) idx[i] = i;
    uint64_t s = o->split_seed;
    shuffle(idx, DP_ROWS, &s);
    memset(tr, 0, sizeof(*tr));
    if (take_rows(&all, idx, TEST_ROWS, te) || take_rows(&all, idx + TEST_ROWS, DP_ROWS - TEST_ROWS, tr)) {
        fprintf(stderr, "digits_mlp: out of memory\n");
        dp_data_free(te);
        rc = -1;
    }
    dp_data_free(&all);
    return rc;
}

/* ---- training ------------------------------------------------------------------ */

static double uniform(uint64_t *s, double a)
{
    return (2 * ((double)(splitmix64(s) >> 11) * 0x1.0p-53) - 1) * a;
}

static size_t net_size(int h)
{
    return (size_t)h * DP_IN + (size_t)h + (size_t)DP_OUT * (size_t)h + DP_OUT;
}

/* Point the four blocks into one array p of net_size(h) doubles. */
static void net_view(net *n, int h, double *p)
{
    n->h = h;
    n->w1 = p;
    n->b1 = n->w1 + (size_t)h * DP_IN;
    n->w2 = n->b1 + h;
    n->b2 = n->w2 + (size_t)DP_OUT * (size_t)h;
}

/* He init for the ReLU layer, Glorot for the output layer, zero biases. */
static void net_init(net *n, uint64_t seed)
{
    uint64_t s = seed;
    memset(n->w1, 0, sizeof(double) * net_size(n->h));
    double a1 = sqrt(6.0 / DP_IN), a2 = sqrt(6.0 / (n->h + DP_OUT));
    for (size_t i = 0; i < (size_t)n->h * DP_IN; i++) n->w1[i] = uniform(&s, a1);
    for (size_t i = 0; i < (size_t)DP_OUT * (size_t)n->h; i++) n->w2[i] = uniform(&s, a2);
}

/* Hidden activations h and softmax probabilities p of one input. */
static void net_forward(const net *n, const double *x, double *h, double *p)
{
    for (int j = 0; j < n->h; j++) {
        const double *row = n->w1 + (size_t)j * DP_IN;
        double a = n->b1[j];
        for (int k = 0; k < DP_IN; k++) a += row[k] * x[k];
        h[j] = a > 0 ? a : 0;
    }
    double mx = -INFINITY, s = 0;
    for (int c = 0; c < DP_OUT; c++) {
        const double *row = n->w2 + (size_t)c * (size_t)n->h;
        double a = n->b2[c];
        for (int j = 0; j < n->h; j++) a += row[j] * h[j];
        p[c] = a;
        mx = a > mx ? a : mx;
    }
    for (int c = 0; c < DP_OUT; c++) s += (p[c] = exp(p[c] - mx));
    for (int c = 0; c < DP_OUT; c++) p[c] /= s;
}

/* g (same layout as the net) += the cross-entropy gradient of one row;
 * returns its loss.  h, p and dh are scratch of the net's width. */
static double net_backward(const net *n, net *g, const double *x, int y, double *h, double *p,
                           double *dh)
{
    net_forward(n, x, h, p);
    double loss = -log(p[y] > 1e-300 ? p[y] : 1e-300);
    p[y] -= 1; /* now dL/dz */
    memset(dh, 0, sizeof(double) * (size_t)n->h);
    for (int c = 0; c < DP_OUT; c++) {
        const double *row = n->w2 + (size_t)c * (size_t)n->h;
        double *grow = g->w2 + (size_t)c * (size_t)n->h;
        for (int j = 0; j < n->h; j++) {
            grow[j] += p[c] * h[j];
            dh[j] += row[j] * p[c];
        }
        g->b2[c] += p[c];
    }
    for (int j = 0; j < n->h; j++) {
        if (h[j] <= 0) continue;
        double *grow = g->w1 + (size_t)j * DP_IN;
        for (int k = 0; k < DP_IN; k++) grow[k] += dh[j] * x[k];
        g->b1[j] += dh[j];
    }
    return loss;
}

/* A scratch block for training: gradient, velocity, per-row buffers. */
typedef struct trainer {
    double *grad, *vel, *h, *p, *dh;
    int *order;
} trainer;

static void trainer_free(trainer *t)
{
    free(t->grad);
    free(t->vel);
    free(t->h);
    free(t->p);
    free(t->dh);
    free(t->order);
}

static int trainer_init(trainer *t, int h, int rows)
{
    size_t np = net_size(h);
    t->grad = calloc(np, sizeof(double));
    t->vel = calloc(np, sizeof(double));
    t->h = calloc((size_t)h, sizeof(double));
    t->p = calloc(DP_OUT, sizeof(double));
    t->dh = calloc((size_t)h, sizeof(double));
    t->order = calloc((size_t)rows, sizeof(int));
    if (!t->grad || !t->vel || !t->h || !t->p || !t->dh || !t->order) return -1;
    for (int i = 0; i < rows; i++) t->order[i] = i;
    return 0;
}

/* One epoch of mini-batch SGD with momentum; returns the mean loss. */
static double train_epoch(net *n, trainer *t, const dp_data *d, double lr, uint64_t *rng)
{
    size_t np = net_size(n->h);
    net g;
    net_view(&g, n->h, t->grad);
    double *w = n->w1, loss = 0;
    shuffle(t->order, d->n, rng);
    for (int b = 0; b < d->n; b += BATCH) {
        int e = b + BATCH < d->n ? b + BATCH : d->n;
        memset(t->grad, 0, sizeof(double) * np);
        for (int i = b; i < e; i++) {
            int r = t->order[i];
            loss += net_backward(n, &g, d->x + (size_t)r * DP_IN, d->y[r], t->h, t->p, t->dh);
        }
        for (size_t k = 0; k < np; k++) {
            t->vel[k] = MOMENTUM * t->vel[k] - lr * (t->grad[k] / (e - b) + DECAY * w[k]);
            w[k] += t->vel[k];
        }
    }
    return loss / d->n;
}

static double net_accuracy(const net *n, const dp_data *d, double *h)
{
    double p[DP_OUT];
    int right = 0;
    for (int i = 0; i < d->n; i++) {
        net_forward(n, d->x + (size_t)i * DP_IN, h, p);
        int best = 0;
        for (int c = 1; c < DP_OUT; c++) best = p[c] > p[best] ? c : best;
        right += best == d->y[i];
    }
    return d->n ? (double)right / d->n : 0;
}

static int train(net *n, const options *o, const dp_data *tr)
{
    trainer t = {0};
    if (trainer_init(&t, n->h, tr->n)) {
        trainer_free(&t);
        return -1;
    }
    uint64_t rng = o->seed ^ 0x5eedull;
    for (int ep = 0; ep < o->epochs; ep++) {
        double lr = o->lr * 0.5 * (1 + cos(M_PI * ep / o->epochs));
        double loss = train_epoch(n, &t, tr, lr, &rng);
        if (ep % 10 == 0 || ep == o->epochs - 1)
            fprintf(stderr, "epoch %3d  lr %.4f  loss %.4f\n", ep, lr, loss);
    }
    trainer_free(&t);
    return 0;
}

/* ---- the artifact ------------------------------------------------------------------ */

/* The float32 tensors of the artifact; layer 0 absorbs the 1/16 input
 * scaling, so the served model takes raw 0..16 grey levels. */
static int write_artifact(const net *n, const char *path, double accuracy, const options *o)
{
    int h = n->h, rc = -1;
    size_t n1 = (size_t)h * DP_IN, n2 = (size_t)DP_OUT * (size_t)h;
    float *p = malloc(sizeof(float) * net_size(h));
    if (!p) return -1;
    float *w1 = p, *b1 = w1 + n1, *w2 = b1 + h, *b2 = w2 + n2;
    for (size_t i = 0; i < n1; i++) w1[i] = (float)(n->w1[i] / 16.0);
    for (int i = 0; i < h; i++) b1[i] = (float)n->b1[i];
    for (size_t i = 0; i < n2; i++) w2[i] = (float)n->w2[i];
    for (int i = 0; i < DP_OUT; i++) b2[i] = (float)n->b2[i];
    loom_tensor t[4];
    int64_t s1[2] = {h, DP_IN}, s2[1] = {h}, s3[2] = {DP_OUT, h}, s4[1] = {DP_OUT};
    char err[256], acc[32], hidden[16], epochs[16], seed[32], split[128];
    snprintf(acc, sizeof(acc), "%.4f", accuracy);
    snprintf(hidden, sizeof(hidden), "%d", h);
    snprintf(epochs, sizeof(epochs), "%d", o->epochs);
    snprintf(seed, sizeof(seed), "%llu", (unsigned long long)o->seed);
    snprintf(split, sizeof(split), "rows shuffled with splitmix64 seed %llu: first %d test, %d train",
             (unsigned long long)o->split_seed, TEST_ROWS, DP_ROWS - TEST_ROWS);
    const char *meta[] = {
        "name", "digits-mlp",
        "activation", "relu",
        "output_activation", "softmax",
        "input_name", "pixels",
        "output_name", "probabilities",
        "input", "8x8 grey levels 0..16, row-major, as sklearn.datasets.load_digits",
        "labels", "0,1,2,3,4,5,6,7,8,9",
        "dataset", "sklearn digits (python3-sklearn)",
        "dataset_file", "sklearn/datasets/data/digits.csv.gz",
        "split", split,
        "test_accuracy", acc,
        "hidden", hidden,
        "epochs", epochs,
        "seed", seed,
        "training", "examples/digits_mlp.c: SGD, batch 32, momentum 0.9, weight decay 1e-4, "
                    "cosine schedule",
    };
    void *buf = NULL;
    size_t len = 0;
    if (loom_tensor_set(&t[0], "layers.0.weight", LOOM_DTYPE_FP32, 2, s1, w1, err, sizeof(err)) ||
        loom_tensor_set(&t[1], "layers.0.bias", LOOM_DTYPE_FP32, 1, s2, b1, err, sizeof(err)) ||
        loom_tensor_set(&t[2], "layers.1.weight", LOOM_DTYPE_FP32, 2, s3, w2, err, sizeof(err)) ||
        loom_tensor_set(&t[3], "layers.1.bias", LOOM_DTYPE_FP32, 1, s4, b2, err, sizeof(err)) ||
        loom_st_write(t, 4, meta, (int)(sizeof(meta) / sizeof(meta[0]) / 2), &buf, &len, err,
                      sizeof(err))) {
        fprintf(stderr, "digits_mlp: writing the artifact: %s\n", err);
        free(p);
        return -1;
    }
    FILE *f = fopen(path, "wb");
    if (f && fwrite(buf, 1, len, f) == len && fclose(f) == 0) rc = 0;
    else {
        fprintf(stderr, "digits_mlp: %s: %s\n", path, strerror(errno));
        if (f) fclose(f);
    }
    free(buf);
    free(p);
    return rc;
}

static int read_file(const char *path, void **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int bad = 0;
    for (;;) {
        if (n == cap) {
            char *nb = realloc(buf, cap = cap ? 2 * cap : 65536);
            if (!nb) {
                bad = 1;
                break;
            }
            buf = nb;
        }
        size_t want = cap - n, got = fread(buf + n, 1, want, f);
        n += got;
        if (got < want) break;
    }
    bad |= ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        errno = errno ? errno : ENOMEM;
        return -1;
    }
    *data = buf;
    *len = n;
    return 0;
}

/* Accuracy of the artifact at path on d, through serve/mlp.c. */
static int eval_artifact(const char *path, const dp_data *d, double *accuracy)
{
    void *buf;
    size_t len;
    if (read_file(path, &buf, &len)) {
        fprintf(stderr, "digits_mlp: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    char err[512];
    loom_mlp *m = NULL;
    int rc = loom_mlp_load(buf, len, &m, err, sizeof(err));
    free(buf);
    if (rc) {
        fprintf(stderr, "digits_mlp: %s: %s\n", path, err);
        return -1;
    }
    float *x = malloc(sizeof(float) * DP_IN * (size_t)d->n + 1);
    float *probs = malloc(sizeof(float) * DP_OUT * (size_t)d->n + 1);
    rc = -1;
    if (x && probs && loom_mlp_inputs(m) == DP_IN && loom_mlp_outputs(m) == DP_OUT) {
        for (size_t i = 0; i < (size_t)d->n * DP_IN; i++) x[i] = (float)(d->x[i] * 16.0);
        rc = loom_mlp_forward(m, x, d->n, probs, err, sizeof(err));
        if (rc) fprintf(stderr, "digits_mlp: forward: %s\n", err);
    } else {
        fprintf(stderr, "digits_mlp: %s is not a 64-input 10-class model (or out of memory)\n",
                path);
    }
    if (!rc) {
        int right = 0;
        for (int i = 0; i < d->n; i++)
            right += loom_mlp_argmax(probs + (size_t)i * DP_OUT, DP_OUT) == d->y[i];
        *accuracy = (double)right / d->n;
        printf("test accuracy %.4f (%d/%d, %s, model %s)\n", *accuracy, right, d->n,
               loom_mlp_device(m), path);
    }
    free(x);
    free(probs);
    loom_mlp_destroy(&m);
    return rc;
}

static int cmd_train(const options *o)
{
    dp_data tr, te;
    if (load_split(o, &tr, &te)) return 2;
    int rc = 2;
    double *params = calloc(net_size(o->hidden), sizeof(double));
    double *h = calloc((size_t)o->hidden, sizeof(double));
    net n;
    if (params && h) {
        net_view(&n, o->hidden, params);
        net_init(&n, o->seed);
        if (!train(&n, o, &tr)) {
            double acc = net_accuracy(&n, &te, h);
            printf("trained 64-%d-10 relu MLP, %d epochs: train accuracy %.4f, test accuracy "
                   "%.4f (float64)\n", o->hidden, o->epochs, net_accuracy(&n, &tr, h), acc);
            double served = 0;
            if (!write_artifact(&n, o->out, acc, o) && !eval_artifact(o->out, &te, &served))
                rc = served >= o->min_accuracy ? 0 : 1;
        }
    } else {
        fprintf(stderr, "digits_mlp: out of memory\n");
    }
    free(params);
    free(h);
    dp_data_free(&tr);
    dp_data_free(&te);
    return rc;
}

static int cmd_eval(const options *o)
{
    dp_data tr, te;
    if (load_split(o, &tr, &te)) return 2;
    dp_data_free(&tr);
    double acc = 0;
    int rc = eval_artifact(o->model, &te, &acc) ? 2 : acc >= o->min_accuracy ? 0 : 1;
    if (rc == 1) fprintf(stderr, "digits_mlp: accuracy %.4f < %.4f\n", acc, o->min_accuracy);
    dp_data_free(&te);
    return rc;
}

int main(int argc, char **argv)
{
    options o;
    parse_options(argc, argv, &o);
    return !strcmp(o.cmd, "train") ? cmd_train(&o) : cmd_eval(&o);
}
