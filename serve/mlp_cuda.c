/* serve/mlp_cuda.c — an MLP's weights on the GPU and its matrix products with
 * cuBLAS (serve/mlp_cuda.h).  No CUDA header is needed: the few entry points
 * used are declared here with the stable C ABI of libcudart and libcublas
 * (enum values from driver_types.h and cublas_api.h), and looked up with
 * dlsym; the libraries are opened by base/cuda_dl.c, once per process.
 *
 * What runs where: weights live on the device from loom_mlp_cuda_new to
 * destroy; each layer uploads its input, runs one cublasSgemm and downloads
 * its output; bias, activation and softmax run on the host (serve/mlp.c).
 * A fused device epilogue needs a kernel (nvcc or NVRTC), which the project
 * does not build yet; for the small models this runtime serves, the copies
 * are a few KiB per batch. */
#include "base/cuda_dl.h"
#include "serve/mlp_cuda.h"
#include "serve/serve_internal.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/loom.h"

enum { MEMCPY_H2D = 1, MEMCPY_D2H = 2, BLAS_OP_N = 0, BLAS_OP_T = 1 };

typedef struct cuda_api {
    int ok;
    char why[256];
    int (*get_count)(int *);
    int (*set_device)(int);
    const char *(*errstr)(int);
    int (*malloc)(void **, size_t);
    int (*free)(void *);
    int (*memcpy)(void *, const void *, size_t, int);
    int (*blas_create)(void **);
    int (*blas_destroy)(void *);
    int (*sgemm)(void *, int, int, int, int, int, const float *, const float *, int, const float *,
                 int, const float *, float *, int);
} cuda_api;

static cuda_api cuda;
static pthread_once_t cuda_once = PTHREAD_ONCE_INIT;

struct loom_mlp_cuda {
    int nlayers;
    int width[65];
    float **w;              /* device weights, one per layer */
    void *blas;             /* cublasHandle_t */
    float *dx, *dy;         /* device activations, grown on demand */
    size_t dx_cap, dy_cap;  /* in floats */
};

#define SYM(lib, field, name) (*(void **)&cuda.field = dlsym(lib, name))

/* Libraries stay loaded for the life of the process: CUDA is not safe to
 * unload once initialised. */
static void cuda_load(void)
{
    void *rt = loom__cuda_dl(LOOM_CUDA_LIB_CUDART, NULL, NULL);
    if (!rt) {
        snprintf(cuda.why, sizeof(cuda.why), "libcudart not found");
        return;
    }
    if (!SYM(rt, get_count, "cudaGetDeviceCount") || !SYM(rt, set_device, "cudaSetDevice") ||
        !SYM(rt, errstr, "cudaGetErrorString") || !SYM(rt, malloc, "cudaMalloc") ||
        !SYM(rt, free, "cudaFree") || !SYM(rt, memcpy, "cudaMemcpy")) {
        snprintf(cuda.why, sizeof(cuda.why), "libcudart lacks cudaMalloc/cudaMemcpy/...");
        return;
    }
    int n = 0, rc = cuda.get_count(&n);
    if (rc || n <= 0) {
        snprintf(cuda.why, sizeof(cuda.why), "cudaGetDeviceCount: %s",
                 rc ? cuda.errstr(rc) : "no devices");
        return;
    }
    void *blas = loom__cuda_dl(LOOM_CUDA_LIB_CUBLAS, NULL, NULL);
    if (!blas) {
        snprintf(cuda.why, sizeof(cuda.why), "libcublas not found");
        return;
    }
    if (!SYM(blas, blas_create, "cublasCreate_v2") || !SYM(blas, blas_destroy, "cublasDestroy_v2") ||
        !SYM(blas, sgemm, "cublasSgemm_v2")) {
        snprintf(cuda.why, sizeof(cuda.why), "libcublas lacks cublasCreate_v2/cublasSgemm_v2");
        return;
    }
    cuda.ok = 1;
}

static int cuda_fail(char *err, size_t errlen, const char *what, int rc)
{
    return serve_fail(LOOM_ESYS, err, errlen, "%s: %s", what, cuda.errstr(rc));
}

void loom_mlp_cuda_destroy(loom_mlp_cuda **pc)
{
    if (!pc || !*pc) return;
    loom_mlp_cuda *c = *pc;
    for (int i = 0; c->w && i < c->nlayers; i++)
        if (c->w[i]) cuda.free(c->w[i]);
    free(c->w);
    if (c->dx) cuda.free(c->dx);
    if (c->dy) cuda.free(c->dy);
    if (c->blas) cuda.blas_destroy(c->blas);
    free(c);
    *pc = NULL;
}

static int upload(float **dst, const float *src, size_t count, char *err, size_t errlen)
{
    int rc = cuda.malloc((void **)dst, count * sizeof(float));
    if (rc) {
        *dst = NULL;
        return cuda_fail(err, errlen, "cudaMalloc", rc);
    }
    rc = cuda.memcpy(*dst, src, count * sizeof(float), MEMCPY_H2D);
    return rc ? cuda_fail(err, errlen, "cudaMemcpy to the device", rc) : 0;
}

int loom_mlp_cuda_new(int nlayers, const int *width, const float *const *w, loom_mlp_cuda **out,
                      char *why, size_t whylen)
{
    *out = NULL;
    pthread_once(&cuda_once, cuda_load);
    if (!cuda.ok) return serve_fail(LOOM_ENOTFOUND, why, whylen, "%s", cuda.why);
    if (nlayers < 1 || nlayers > 64) return serve_fail(LOOM_EINVAL, why, whylen, "bad layer count");
    loom_mlp_cuda *c = calloc(1, sizeof(*c));
    if (!c || !(c->w = calloc((size_t)nlayers, sizeof(float *)))) {
        free(c);
        return serve_fail(LOOM_ENOMEM, why, whylen, "out of memory");
    }
    c->nlayers = nlayers;
    memcpy(c->width, width, sizeof(int) * (size_t)(nlayers + 1));
    int rc = cuda.set_device(0);
    if (rc) {
        rc = cuda_fail(why, whylen, "cudaSetDevice(0)", rc);
    } else if ((rc = cuda.blas_create(&c->blas)) != 0) {
        c->blas = NULL;
        rc = serve_fail(LOOM_ESYS, why, whylen, "cublasCreate: status %d", rc);
    }
    for (int i = 0; !rc && i < nlayers; i++)
        rc = upload(&c->w[i], w[i], (size_t)width[i] * (size_t)width[i + 1], why, whylen);
    if (rc) {
        loom_mlp_cuda_destroy(&c);
        return rc;
    }
    *out = c;
    return 0;
}

/* Make *buf hold at least count floats. */
static int reserve(float **buf, size_t *cap, size_t count, char *err, size_t errlen)
{
    if (*cap >= count) return 0;
    if (*buf) cuda.free(*buf);
    *buf = NULL;
    *cap = 0;
    int rc = cuda.malloc((void **)buf, count * sizeof(float));
    if (rc) {
        *buf = NULL;
        return cuda_fail(err, errlen, "cudaMalloc", rc);
    }
    *cap = count;
    return 0;
}

int loom_mlp_cuda_layer(loom_mlp_cuda *c, int layer, const float *x, int64_t n, float *y,
                        char *err, size_t errlen)
{
    if (layer < 0 || layer >= c->nlayers || n < 0 || n > INT32_MAX)
        return serve_fail(LOOM_EINVAL, err, errlen, "bad layer or batch");
    if (n == 0) return 0;
    int in = c->width[layer], out = c->width[layer + 1];
    size_t nx = (size_t)n * (size_t)in, ny = (size_t)n * (size_t)out;
    int rc = cuda.set_device(0); /* the current device is per host thread */
    if (rc) return cuda_fail(err, errlen, "cudaSetDevice(0)", rc);
    if ((rc = reserve(&c->dx, &c->dx_cap, nx, err, errlen)) ||
        (rc = reserve(&c->dy, &c->dy_cap, ny, err, errlen)))
        return rc;
    if ((rc = cuda.memcpy(c->dx, x, nx * sizeof(float), MEMCPY_H2D)))
        return cuda_fail(err, errlen, "cudaMemcpy to the device", rc);
    /* Row-major Y[n,out] = X[n,in] W^T is column-major Y^T = W X^T: W is
     * stored as a column-major in x out matrix, so op(A) = T. */
    const float one = 1.0f, zero = 0.0f;
    rc = cuda.sgemm(c->blas, BLAS_OP_T, BLAS_OP_N, out, (int)n, in, &one, c->w[layer], in, c->dx,
                    in, &zero, c->dy, out);
    if (rc) return serve_fail(LOOM_ESYS, err, errlen, "cublasSgemm: status %d", rc);
    if ((rc = cuda.memcpy(y, c->dy, ny * sizeof(float), MEMCPY_D2H)))
        return cuda_fail(err, errlen, "cudaMemcpy from the device", rc);
    return 0;
}
