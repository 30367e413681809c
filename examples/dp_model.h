/* examples/dp_model.h — the model and data of the data-parallel training
 * example (dp_train.c, dp_tasks.c): a 64-32-10 tanh MLP with a softmax
 * cross-entropy loss, trained by full-batch gradient descent in float64 on
 * scikit-learn's handwritten digits (scripts/get_digits.sh).
 *
 * The same code runs in every Trainer actor (on its shard) and in the driver
 * (single-worker, on the whole training set), so the two runs differ only in
 * the order in which per-sample gradients are summed.
 *
 * Data: digits.csv has 1797 rows of 65 integers, 64 pixels (0..16) then the
 * label (0..9).  Pixels are scaled to [0,1].  Split, fixed: rows 0..1499 are
 * the training set, rows 1500..1796 the test set.  Shards of the training set
 * are contiguous: rank r of w gets rows [r*1500/w, (r+1)*1500/w).
 *
 * Parameters, one float64 vector of DP_NPARAMS: W1[32][64], b1[32],
 * W2[10][32], b2[10].  Init from a seed: W uniform in +-sqrt(6/(fan_in +
 * fan_out)) (Glorot) from splitmix64, biases zero — identical on every
 * process that uses the same seed.
 *
 * One step: dp_grad_sum fills acc (DP_ACC_LEN) with the gradient SUM over the
 * rows, then the loss sum and the row count; a distributed run all-reduces acc
 * (sum) across ranks; dp_apply divides by the count and moves the weights. */
#ifndef LOOM_EXAMPLES_DP_MODEL_H
#define LOOM_EXAMPLES_DP_MODEL_H

#include <stddef.h>
#include <stdint.h>

#define DP_IN 64
#define DP_HID 32
#define DP_OUT 10
#define DP_NPARAMS (DP_HID * DP_IN + DP_HID + DP_OUT * DP_HID + DP_OUT)   /* 2410 */
#define DP_ACC_LEN (DP_NPARAMS + 2)     /* gradient sum, loss sum, count */
#define DP_ACC_LOSS DP_NPARAMS
#define DP_ACC_COUNT (DP_NPARAMS + 1)

#define DP_ROWS 1797
#define DP_TRAIN_ROWS 1500

/* Rows of the dataset: x is n * DP_IN pixels in [0,1], y n labels. */
typedef struct dp_data {
    int n;
    double *x;
    uint8_t *y;
} dp_data;

/* Read rows [begin, end) of the CSV at path into *out (end -1: to the last
 * row).  0, or -1 with a message in err. Free with dp_data_free. */
int dp_data_load(const char *path, int begin, int end, dp_data *out, char *err, size_t errlen);
void dp_data_free(dp_data *d);

/* The rows of rank's shard of the training set. */
void dp_shard_range(int rank, int world, int *begin, int *end);

/* Deterministic init of w (DP_NPARAMS) from seed. */
void dp_init(double *w, uint64_t seed);

/* acc (DP_ACC_LEN) := sum over the rows of d of the loss gradient at w, then
 * the loss sum, then d->n. */
void dp_grad_sum(const double *w, const dp_data *d, double *acc);

/* w -= lr * acc / count; returns the mean loss acc[DP_ACC_LOSS] / count. */
double dp_apply(double *w, const double *acc, double lr);

/* Fraction of the rows of d that w classifies right. */
double dp_accuracy(const double *w, const dp_data *d);

/* steps of single-worker full-batch training on d; *loss gets the mean loss
 * of the last step (before its update).  0, or -1 out of memory. */
int dp_train_steps(double *w, const dp_data *d, int steps, double lr, double *loss);

#endif
