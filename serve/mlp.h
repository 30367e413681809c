/* serve/mlp.h — a multilayer perceptron loaded from a safetensors file, with
 * a forward pass on the CPU (cblas_sgemm, OpenBLAS) or on a GPU (cuBLAS,
 * opened with dlopen: see serve/mlp_cuda.h).
 *
 * The artifact:
 *   tensors   "layers.{i}.weight" [out_i, in_i] and "layers.{i}.bias" [out_i]
 *             for i = 0 .. L-1, L >= 1, in_{i+1} == out_i, float (F32; F16,
 *             BF16 and F64 are converted); no other tensors.
 *   __metadata__ (all optional)
 *     "activation"         of the hidden layers: "relu" (default) or "tanh"
 *     "output_activation"  of the last layer: "softmax" (default, outputs are
 *                          class probabilities) — the only one supported
 *     "input_name"         default "input"
 *     "output_name"        default "probabilities"
 *     anything else (name, dataset, accuracy, …) is kept and readable.
 *
 * y = softmax(W_{L-1} act(… act(W_0 x + b_0) …) + b_{L-1}), row by row of a
 * batch x [n, in].  Weights are copied out of the artifact (the buffer can go
 * once loom_mlp_load returns).  loom_mlp_forward may be called from several
 * threads at once (the GPU path serialises on a mutex).
 *
 * Errors: LOOM_EINVAL (bad artifact or input), LOOM_ETOOBIG, LOOM_ENOMEM,
 * LOOM_ESYS (a CUDA call failed), with a message in err. */
#ifndef LOOM_SERVE_MLP_H
#define LOOM_SERVE_MLP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LOOM_MLP_MAX_LAYERS 64
#define LOOM_MLP_MAX_WIDTH (1 << 20)
/* A batch's activations may take at most this many bytes. */
#define LOOM_MLP_MAX_BATCH_BYTES ((size_t)1 << 30)

typedef struct loom_mlp loom_mlp;

typedef enum loom_mlp_act { LOOM_MLP_RELU = 0, LOOM_MLP_TANH = 1 } loom_mlp_act;

/* Load from the bytes of a safetensors file.  Free with loom_mlp_destroy. */
int loom_mlp_load(const void *buf, size_t len, loom_mlp **out, char *err, size_t errlen);
/* Frees everything, device memory included; NULL-safe, sets *m to NULL. */
void loom_mlp_destroy(loom_mlp **m);

/* Move the forward pass to the first visible GPU: weights are uploaded once,
 * here.  On failure the model stays on the CPU and why says what is missing
 * ("libcudart not found", "cudaGetDeviceCount: no CUDA-capable device…"). */
int loom_mlp_use_cuda(loom_mlp *m, char *why, size_t whylen);
/* "cpu" or "cuda". */
const char *loom_mlp_device(const loom_mlp *m);

int loom_mlp_layers(const loom_mlp *m);
/* Width of layer boundary i: 0 is the input, loom_mlp_layers(m) the output. */
int loom_mlp_width(const loom_mlp *m, int i);
int loom_mlp_inputs(const loom_mlp *m);
int loom_mlp_outputs(const loom_mlp *m);
loom_mlp_act loom_mlp_activation(const loom_mlp *m);
const char *loom_mlp_activation_name(const loom_mlp *m);
/* The artifact's __metadata__ (copied): value of key, or NULL; entries by index. */
const char *loom_mlp_meta(const loom_mlp *m, const char *key);
int loom_mlp_meta_count(const loom_mlp *m);
int loom_mlp_meta_entry(const loom_mlp *m, int i, const char **key, const char **value);
const char *loom_mlp_input_name(const loom_mlp *m);
const char *loom_mlp_output_name(const loom_mlp *m);

/* probs[n * outputs] := the model on x[n * inputs] (row-major), on the model's
 * device.  n = 0 is allowed (nothing to do). */
int loom_mlp_forward(loom_mlp *m, const float *x, int64_t n, float *probs, char *err,
                     size_t errlen);
/* The same on the CPU whatever the device (the reference the GPU path is
 * checked against). */
int loom_mlp_forward_cpu(const loom_mlp *m, const float *x, int64_t n, float *probs, char *err,
                         size_t errlen);

/* Index of the largest of row[0..k) (the first one on ties). */
int loom_mlp_argmax(const float *row, int k);

#ifdef __cplusplus
}
#endif
#endif
