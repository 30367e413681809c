/* serve/mlp_cuda.h — the GPU half of serve/mlp.c: an MLP's weights resident
 * on the first visible device, and one layer's matrix product there with
 * cuBLAS.  libcudart and libcublas are opened with dlopen on first use, so
 * loom builds and runs without CUDA; every failure leaves a reason in why.
 *
 * Not thread-safe: the caller serialises calls on one handle (serve/mlp.c
 * holds a mutex).  Internal to serve/. */
#ifndef LOOM_SERVE_MLP_CUDA_H
#define LOOM_SERVE_MLP_CUDA_H

#include <stddef.h>
#include <stdint.h>

typedef struct loom_mlp_cuda loom_mlp_cuda;

/* Upload nlayers weight matrices: w[i] is [width[i+1], width[i]] row-major. */
int loom_mlp_cuda_new(int nlayers, const int *width, const float *const *w, loom_mlp_cuda **out,
                      char *why, size_t whylen);
/* Frees the device memory and the cuBLAS handle; NULL-safe, sets *c to NULL. */
void loom_mlp_cuda_destroy(loom_mlp_cuda **c);

/* y[n, out] := x[n, in] * W_layer^T, x and y in host memory. */
int loom_mlp_cuda_layer(loom_mlp_cuda *c, int layer, const float *x, int64_t n, float *y,
                        char *err, size_t errlen);

#endif
