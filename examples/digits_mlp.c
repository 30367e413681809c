/* examples/digits_mlp.c — train the model that the MLP runtime serves
 * (serve/runtime_mlp.c): a 64-H-10 ReLU MLP on scikit-learn's handwritten
 * digits, the dataset Debian's python3-sklearn ships
 * (scripts/get_digits.sh fetches it), written as a safetensors artifact; and
 * check an artifact through serve/mlp.c's forward pass, the one the runtime
 * uses, so that training and serving agree on the number they report.  It is
 * also a command trial of a sweep (tune/README.md, "Protocol of command
 * trials"): --report prints a result line per epoch, checkpoints and resumes.
 *
 *   digits_mlp train --data DIR|digits.csv --out model.safetensors
 *                    [--hidden 64] [--epochs 60] [--lr 0.05] [--seed 1]
 *                    [--split-seed 42] [--min-accuracy A]
 *                    [--batch 32] [--momentum 0.9] [--weight-decay 1e-4]
 *                    [--val-rows N] [--report]
 *   digits_mlp eval  --model model.safetensors --data DIR|digits.csv
 *                    [--split-seed 42] [--min-accuracy A]
 *
 * Split: the 1797 rows shuffled with --split-seed (default 42); the first
 * 360 (20%) are the held-out test set, the rest (1437) the training set (eval
 * uses the same seed); --val-rows N (default 0) holds out the last N rows of
 * that training set as a validation set and trains on the other 1437 - N.
 * A random split, as scikit-learn's train_test_split makes: the contiguous
 * tail that examples/dp_model.h tests on (rows 1500..1796) comes from other
 * writers and caps this MLP near 0.93.  Training: mini-batch SGD (--batch
 * rows, 1..1437) with momentum (--momentum, in [0,1)), weight decay
 * (--weight-decay) and a cosine learning-rate schedule over --epochs, in
 * float64 on pixels scaled to [0,1]; fixed seeds give the same model every
 * run.  The saved first layer absorbs the 1/16 scaling, so the served model
 * takes the raw 0..16 grey levels a client has.
 *
 * As a sweep trial (--report; needs --val-rows > 0, makes --out optional):
 * after each epoch a line on stdout, flushed,
 *
 *   loom-tune {"t": EPOCH, "accuracy": VAL_ACC, "loss": TRAIN_LOSS}
 *
 * EPOCH counting from 1, VAL_ACC the accuracy on the validation rows,
 * TRAIN_LOSS the epoch's mean training loss (numbers printed so that they
 * read back to the same double).  With --out the artifact is written after
 * the last epoch, before the last line, which also carries "test_accuracy"
 * (the artifact's, through serve/mlp.c) and "artifact" (the --out path).
 * When LOOM_TUNE_CHECKPOINT_DIR is set, the whole training state is written
 * to $LOOM_TUNE_CHECKPOINT_DIR/ckpt.bin (a temporary file, then renamed)
 * before each line, and the line says "checkpoint": "ckpt.bin".  When
 * LOOM_TUNE_RESUME names such a file, training goes on from the epoch after
 * it, and every later line is bit for bit the one a run never stopped would
 * have printed with the same flags (lr, momentum, weight decay, batch and
 * epochs may differ from the run that wrote it; the hidden width, the split
 * and the number of training rows may not).  The checkpoint (native byte
 * order): "LOOMDGCK", version 1, 0x01020304, the hidden width, epochs done,
 * training rows, --split-seed, the sampling RNG state, the last epoch's loss,
 * the weights, the momentum buffers, the order the rows were last shuffled
 * into, and an FNV-1a 64 checksum of everything before it.
 *
 * Exit status: 0, 1 when the accuracy is under --min-accuracy, 2 on usage or
 * I/O errors (a checkpoint that is not one, or not for this run, among them). */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dp_model.h"
#include "serve/mlp.h"
#include "serve/safetensors.h"

#define BATCH 32
#define MOMENTUM 0.9
#define DECAY 1e-4
#define MAX_HIDDEN 1024
#define TEST_ROWS 360 /* 20% of 1797 */
#define TRAIN_ROWS (DP_ROWS - TEST_ROWS)
#define CKPT_NAME "ckpt.bin"

typedef struct options {
    const char *cmd, *data, *out, *model;
    int hidden, epochs, batch, val_rows, report;
    double lr, min_accuracy, momentum, decay;
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
            "                        [--batch 32] [--momentum 0.9] [--weight-decay 1e-4]\n"
            "                        [--val-rows N] [--report]\n"
            "       digits_mlp eval --model model.safetensors --data DIR|digits.csv\n"
            "                        [--split-seed 42] [--min-accuracy A]\n"
            "--report (a sweep trial, tune/README.md) needs --val-rows > 0 and makes --out\n"
            "optional; --min-accuracy in train needs --out; --val-rows 0..1436, --batch 1..1437.\n"
            "env with --report: LOOM_TUNE_CHECKPOINT_DIR (write ckpt.bin there after each\n"
            "epoch), LOOM_TUNE_RESUME (a ckpt.bin to go on from)\n");
    exit(2);
}

static void parse_options(int argc, char **argv, options *o)
{
    *o = (options){.hidden = 64, .epochs = 60, .lr = 0.05, .seed = 1, .split_seed = 42,
                   .batch = BATCH, .momentum = MOMENTUM, .decay = DECAY};
    if (argc < 2) usage();
    o->cmd = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--report")) {
            o->report = 1;
            continue;
        }
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
        else if (!strcmp(a, "--batch")) o->batch = atoi(v);
        else if (!strcmp(a, "--momentum")) o->momentum = atof(v);
        else if (!strcmp(a, "--weight-decay")) o->decay = atof(v);
        else if (!strcmp(a, "--val-rows")) o->val_rows = atoi(v);
        else usage();
        i++;
    }
    int train = !strcmp(o->cmd, "train"), eval = !strcmp(o->cmd, "eval");
    if (!o->data || (!train && !eval) || (eval && !o->model) || o->hidden < 1 ||
        o->hidden > MAX_HIDDEN || o->epochs < 1 || !(o->lr > 0))
        usage();
    if (train && (o->report ? o->val_rows < 1 : !o->out)) usage();
    if (train && !o->out && o->min_accuracy > 0) usage(); /* it checks the artifact */
    if (o->val_rows < 0 || o->val_rows > TRAIN_ROWS - 1 || o->batch < 1 || o->batch > TRAIN_ROWS ||
        !(o->momentum >= 0 && o->momentum < 1) || !(o->decay >= 0) || !isfinite(o->decay) ||
        !isfinite(o->lr))
        usage();
}

/* --data names the CSV or the directory get_digits.sh filled. */
static void csv_path(const char *data, char *out, size_t cap)
{
    struct stat st;
    if (!stat(data, &st) && S_ISDIR(st.st_mode)) snprintf(out, cap, "%s/digits.csv", data);
    else snprintf(out, cap, "%s", data);
}

/* v as a JSON number that reads back as the same double (null if it is
 * not finite, which JSON has no number for). */
static void json_number(char *out, size_t cap, double v)
{
    if (!isfinite(v)) {
        snprintf(out, cap, "null");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, v);
        if (strtod(out, NULL) == v) return;
    }
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
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
    out->x = malloc(sizeof(double) * DP_IN * (size_t)n + 1);
    out->y = malloc((size_t)n + 1);
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
 * TEST_ROWS of them the test set, the rest the training set, the last
 * o->val_rows of which are held out as the validation set va. */
static int load_split(const options *o, dp_data *tr, dp_data *va, dp_data *te)
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
    int ntr = TRAIN_ROWS - o->val_rows;
    memset(tr, 0, sizeof(*tr));
    memset(va, 0, sizeof(*va));
    memset(te, 0, sizeof(*te));
    if (take_rows(&all, idx, TEST_ROWS, te) || take_rows(&all, idx + TEST_ROWS, ntr, tr) ||
        take_rows(&all, idx + TEST_ROWS + ntr, o->val_rows, va)) {
        fprintf(stderr, "digits_mlp: out of memory\n");
        dp_data_free(te);
        dp_data_free(tr);
        dp_data_free(va);
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
static double train_epoch(net *n, trainer *t, const dp_data *d, const options *o, double lr,
                          uint64_t *rng)
{
    size_t np = net_size(n->h);
    net g;
    net_view(&g, n->h, t->grad);
    double *w = n->w1, loss = 0, mom = o->momentum, decay = o->decay;
    int batch = o->batch;
    shuffle(t->order, d->n, rng);
    for (int b = 0; b < d->n; b += batch) {
        int e = b + batch < d->n ? b + batch : d->n;
        memset(t->grad, 0, sizeof(double) * np);
        for (int i = b; i < e; i++) {
            int r = t->order[i];
            loss += net_backward(n, &g, d->x + (size_t)r * DP_IN, d->y[r], t->h, t->p, t->dh);
        }
        for (size_t k = 0; k < np; k++) {
            t->vel[k] = mom * t->vel[k] - lr * (t->grad[k] / (e - b) + decay * w[k]);
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
    char err[256], acc[32], hidden[16], epochs[16], seed[32], split[192], training[256];
    snprintf(acc, sizeof(acc), "%.4f", accuracy);
    snprintf(hidden, sizeof(hidden), "%d", h);
    snprintf(epochs, sizeof(epochs), "%d", o->epochs);
    snprintf(seed, sizeof(seed), "%llu", (unsigned long long)o->seed);
    int ntr = TRAIN_ROWS - o->val_rows;
    if (o->val_rows)
        snprintf(split, sizeof(split),
                 "rows shuffled with splitmix64 seed %llu: first %d test, %d train, last %d "
                 "validation", (unsigned long long)o->split_seed, TEST_ROWS, ntr, o->val_rows);
    else
        snprintf(split, sizeof(split),
                 "rows shuffled with splitmix64 seed %llu: first %d test, %d train",
                 (unsigned long long)o->split_seed, TEST_ROWS, ntr);
    if (o->batch == BATCH && o->momentum == MOMENTUM && o->decay == DECAY) {
        snprintf(training, sizeof(training), "examples/digits_mlp.c: SGD, batch 32, momentum 0.9, "
                                             "weight decay 1e-4, cosine schedule");
    } else {
        char mom[40], decay[40];
        json_number(mom, sizeof(mom), o->momentum);
        json_number(decay, sizeof(decay), o->decay);
        snprintf(training, sizeof(training), "examples/digits_mlp.c: SGD, batch %d, momentum %s, "
                 "weight decay %s, cosine schedule", o->batch, mom, decay);
    }
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
        "training", training,
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

/* ---- a sweep trial: result lines, checkpoints --------------------------------------- */

/* Where training stands, besides the weights and the trainer's velocity and
 * row order: what a checkpoint holds with them. */
typedef struct progress {
    int epoch;    /* epochs done */
    uint64_t rng; /* the state of the row shuffler */
    double loss;  /* the mean training loss of the last epoch done */
} progress;

#define CKPT_MAGIC "LOOMDGCK"
#define CKPT_VERSION 1u
#define CKPT_ORDER 0x01020304u
/* magic, version, order, hidden, epoch, rows, pad, split seed, rng, loss */
#define CKPT_HEADER (8 + 4 * 6 + 8 * 3)

static uint64_t fnv1a64(const unsigned char *p, size_t n)
{
    uint64_t x = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) x = (x ^ p[i]) * 0x100000001b3ull;
    return x;
}

/* The last 8 bytes of a checkpoint: the FNV-1a 64 of the ones before. */
static int checksum_ok(const unsigned char *data, size_t len)
{
    uint64_t sum;
    if (len < 8) return 0;
    memcpy(&sum, data + len - 8, 8);
    return sum == fnv1a64(data, len - 8);
}

static size_t ckpt_size(int h, int rows)
{
    return CKPT_HEADER + 2 * sizeof(double) * net_size(h) + sizeof(int32_t) * (size_t)rows +
           sizeof(uint64_t);
}

static unsigned char *put(unsigned char *p, const void *v, size_t n)
{
    memcpy(p, v, n);
    return p + n;
}

static const unsigned char *get(const unsigned char *p, void *v, size_t n)
{
    memcpy(v, p, n);
    return p + n;
}

/* The whole training state to dir/ckpt.bin: written to a temporary file
 * next to it, then renamed over it, so that a reader sees all of one. */
static int save_checkpoint(const char *dir, const net *n, const trainer *t, int rows,
                           const progress *pr, const options *o)
{
    char path[4096], tmp[4096];
    if (snprintf(path, sizeof(path), "%s/" CKPT_NAME, dir) >= (int)sizeof(path) ||
        snprintf(tmp, sizeof(tmp), "%s/" CKPT_NAME ".tmp", dir) >= (int)sizeof(tmp)) {
        fprintf(stderr, "digits_mlp: LOOM_TUNE_CHECKPOINT_DIR is too long\n");
        return -1;
    }
    size_t np = net_size(n->h), len = ckpt_size(n->h, rows);
    unsigned char *buf = malloc(len), *p = buf;
    if (!buf) {
        fprintf(stderr, "digits_mlp: out of memory\n");
        return -1;
    }
    uint32_t u[3] = {CKPT_VERSION, CKPT_ORDER, 0};
    int32_t i[3] = {n->h, pr->epoch, rows};
    p = put(p, CKPT_MAGIC, 8);
    p = put(p, &u[0], 4);
    p = put(p, &u[1], 4);
    p = put(p, i, sizeof(i));
    p = put(p, &u[2], 4);
    p = put(p, &o->split_seed, 8);
    p = put(p, &pr->rng, 8);
    p = put(p, &pr->loss, 8);
    p = put(p, n->w1, sizeof(double) * np);
    p = put(p, t->vel, sizeof(double) * np);
    for (int r = 0; r < rows; r++) {
        int32_t v = t->order[r];
        p = put(p, &v, 4);
    }
    uint64_t sum = fnv1a64(buf, (size_t)(p - buf));
    put(p, &sum, 8);
    FILE *f = fopen(tmp, "wb");
    int rc = -1;
    if (f && fwrite(buf, 1, len, f) == len && fflush(f) == 0) {
        rc = fclose(f);
        f = NULL;
        if (!rc) rc = rename(tmp, path);
    }
    if (rc) {
        fprintf(stderr, "digits_mlp: writing the checkpoint %s: %s\n", path, strerror(errno));
        if (f) fclose(f);
        unlink(tmp);
    }
    free(buf);
    return rc ? -1 : 0;
}

/* Load the state save_checkpoint wrote into n, t (rows training rows) and
 * pr; it must be one made for this hidden width, split and training set. */
static int load_checkpoint(const char *path, net *n, trainer *t, int rows, progress *pr,
                           const options *o)
{
    void *data;
    size_t len;
    if (read_file(path, &data, &len)) {
        fprintf(stderr, "digits_mlp: cannot read the checkpoint %s (LOOM_TUNE_RESUME): %s\n",
                path, strerror(errno));
        return -1;
    }
    const unsigned char *p = data;
    uint32_t version = 0, order = 0, pad;
    int32_t i[3] = {0, 0, 0};
    uint64_t split = 0;
    const char *bad = NULL;
    char why[256];
    if (len < CKPT_HEADER || memcmp(p, CKPT_MAGIC, 8)) bad = "not a digits_mlp checkpoint";
    else {
        p = get(p + 8, &version, 4);
        p = get(p, &order, 4);
        p = get(p, i, sizeof(i));
        p = get(p, &pad, 4);
        p = get(p, &split, 8);
        p = get(p, &pr->rng, 8);
        p = get(p, &pr->loss, 8);
        bad = why;
        if (version != CKPT_VERSION)
            snprintf(why, sizeof(why), "version %u, this digits_mlp reads %u", version,
                     CKPT_VERSION);
        else if (order != CKPT_ORDER)
            snprintf(why, sizeof(why), "written on a machine of another byte order");
        else if (i[0] != n->h)
            snprintf(why, sizeof(why), "hidden width %d, this run has --hidden %d", i[0], n->h);
        else if (i[2] != rows)
            snprintf(why, sizeof(why), "%d training rows, this run has %d (--val-rows differs)",
                     i[2], rows);
        else if (split != o->split_seed)
            snprintf(why, sizeof(why), "--split-seed %llu, this run has %llu",
                     (unsigned long long)split, (unsigned long long)o->split_seed);
        else if (len != ckpt_size(n->h, rows))
            snprintf(why, sizeof(why), "%zu bytes, want %zu (truncated?)", len,
                     ckpt_size(n->h, rows));
        else if (!checksum_ok(data, len))
            snprintf(why, sizeof(why), "checksum mismatch (corrupt)");
        else if (i[1] < 0 || i[1] > o->epochs)
            snprintf(why, sizeof(why), "made after epoch %d, past --epochs %d", i[1], o->epochs);
        else
            bad = NULL;
    }
    if (bad) {
        fprintf(stderr, "digits_mlp: checkpoint %s (LOOM_TUNE_RESUME): %s\n", path, bad);
        free(data);
        return -1;
    }
    size_t np = net_size(n->h);
    pr->epoch = i[1];
    p = get(p, n->w1, sizeof(double) * np);
    p = get(p, t->vel, sizeof(double) * np);
    for (int r = 0; r < rows; r++) {
        int32_t v;
        p = get(p, &v, 4);
        if (v < 0 || v >= rows) {
            fprintf(stderr, "digits_mlp: checkpoint %s (LOOM_TUNE_RESUME): bad row order\n", path);
            free(data);
            return -1;
        }
        t->order[r] = v;
    }
    free(data);
    return 0;
}

/* The result line of the epoch pr->epoch; before it, when the sweep gave a
 * checkpoint directory, the checkpoint.  artifact (the last line, with
 * --out): "test_accuracy" and "artifact" too. */
static int report(const net *n, const trainer *t, const dp_data *tr, const dp_data *va,
                  const progress *pr, const options *o, const char *ckdir, double *h,
                  const char *artifact, double test_accuracy)
{
    if (ckdir && save_checkpoint(ckdir, n, t, tr->n, pr, o)) return -1;
    char acc[40], loss[40], test[40];
    json_number(acc, sizeof(acc), net_accuracy(n, va, h));
    json_number(loss, sizeof(loss), pr->loss);
    printf("loom-tune {\"t\": %d, \"accuracy\": %s, \"loss\": %s", pr->epoch, acc, loss);
    if (ckdir) printf(", \"checkpoint\": \"" CKPT_NAME "\"");
    if (artifact) {
        json_number(test, sizeof(test), test_accuracy);
        printf(", \"test_accuracy\": %s, \"artifact\": ", test);
        json_string(stdout, artifact);
    }
    printf("}\n");
    fflush(stdout);
    return 0;
}

/* Train from where pr stands (epoch 0, the seed's shuffler, for a fresh run)
 * to --epochs; with --report, a result line after each epoch but the last
 * (cmd_train prints that one, after the artifact). */
static int train(net *n, trainer *t, const options *o, const dp_data *tr, const dp_data *va,
                 progress *pr, const char *ckdir, double *h)
{
    while (pr->epoch < o->epochs) {
        int ep = pr->epoch;
        double lr = o->lr * 0.5 * (1 + cos(M_PI * ep / o->epochs));
        pr->loss = train_epoch(n, t, tr, o, lr, &pr->rng);
        pr->epoch = ep + 1;
        if (ep % 10 == 0 || ep == o->epochs - 1)
            fprintf(stderr, "epoch %3d  lr %.4f  loss %.4f\n", ep, lr, pr->loss);
        if (o->report && pr->epoch < o->epochs &&
            report(n, t, tr, va, pr, o, ckdir, h, NULL, 0))
            return -1;
    }
    return 0;
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static int cmd_train(const options *o)
{
    dp_data tr, va, te;
    if (load_split(o, &tr, &va, &te)) return 2;
    int rc = 2;
    double *params = calloc(net_size(o->hidden), sizeof(double));
    double *h = calloc((size_t)o->hidden, sizeof(double));
    const char *ckdir = o->report ? env("LOOM_TUNE_CHECKPOINT_DIR") : NULL;
    const char *resume = o->report ? env("LOOM_TUNE_RESUME") : NULL;
    progress pr = {.epoch = 0, .rng = o->seed ^ 0x5eedull, .loss = 0};
    trainer t = {0};
    net n;
    if (!params || !h || trainer_init(&t, o->hidden, tr.n)) {
        fprintf(stderr, "digits_mlp: out of memory\n");
        goto done;
    }
    net_view(&n, o->hidden, params);
    net_init(&n, o->seed);
    if (resume) {
        if (load_checkpoint(resume, &n, &t, tr.n, &pr, o)) goto done;
        fprintf(stderr, "digits_mlp: resuming from %s after epoch %d\n", resume, pr.epoch);
    }
    if (train(&n, &t, o, &tr, &va, &pr, ckdir, h)) goto done;
    double acc = net_accuracy(&n, &te, h);
    printf("trained 64-%d-10 relu MLP, %d epochs: train accuracy %.4f", o->hidden, o->epochs,
           net_accuracy(&n, &tr, h));
    if (va.n) printf(", validation accuracy %.4f", net_accuracy(&n, &va, h));
    printf(", test accuracy %.4f (float64)\n", acc);
    double served = 0;
    if (o->out) {
        if (write_artifact(&n, o->out, acc, o) || eval_artifact(o->out, &te, &served)) goto done;
        rc = served >= o->min_accuracy ? 0 : 1;
    } else {
        rc = 0;
    }
    if (o->report && report(&n, &t, &tr, &va, &pr, o, ckdir, h, o->out, served)) rc = 2;
done:
    trainer_free(&t);
    free(params);
    free(h);
    dp_data_free(&tr);
    dp_data_free(&va);
    dp_data_free(&te);
    return rc;
}

static int cmd_eval(const options *o)
{
    dp_data tr, va, te;
    if (load_split(o, &tr, &va, &te)) return 2;
    dp_data_free(&tr);
    dp_data_free(&va);
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
