/* examples/gpu_tasks.c — GPU example tasks that build and run without CUDA:
 * libcudart and libcublas are opened with dlopen on first use, and every task
 * computes on the CPU when no GPU is visible (the result says which was used
 * and why).
 *
 *   matmul(n, seed)       two n x n float matrices from a fixed PRNG,
 *                         multiplied with cublasSgemm or a blocked CPU loop
 *   saxpy(n, a [, lib])   y = a*x + y with the real CUDA kernel in
 *                         libloom_cuda_kernels.so (examples/saxpy_kernel.cu,
 *                         found next to this library unless lib names it)
 *   actor GpuWorker(n)    a vector of n ones on the GPU (or host):
 *                         scale(a) -> sum after x *= a; info() -> where it lives
 *
 * Build: cc -shared -fPIC gpu_tasks.c $(pkg-config --cflags --libs loom) -ldl -o libloom_gpu_examples.so */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <loom/task.h>

#define MATMUL_MAX_N 8192
#define VECTOR_MAX_N (1 << 28)
#define KERNELS_LIB "libloom_cuda_kernels.so"

/* ---- CUDA, loaded at run time ----------------------------------------------- */

enum { MEMCPY_H2D = 1, MEMCPY_D2H = 2, BLAS_OP_N = 0 };

typedef struct cuda_api {
    int devices;        /* visible devices (0: none, or cudart missing) */
    int blas;           /* cuBLAS loaded */
    char why[256];      /* why devices or blas is 0 */
    int (*get_count)(int *);
    const char *(*errstr)(int);
    int (*malloc)(void **, size_t);
    int (*free)(void *);
    int (*memcpy)(void *, const void *, size_t, int);
    int (*sync)(void);
    int (*blas_create)(void **);
    int (*blas_destroy)(void *);
    int (*sgemm)(void *, int, int, int, int, int, const float *, const float *, int, const float *,
                 int, const float *, float *, int);
    int (*sscal)(void *, int, const float *, float *, int);
    int (*sdot)(void *, int, const float *, int, const float *, int, float *);
} cuda_api;

static cuda_api cuda;
static pthread_once_t cuda_once = PTHREAD_ONCE_INIT;

static void *open_first(const char *const *names)
{
    for (int i = 0; names[i]; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h) return h;
    }
    return NULL;
}

/* Libraries stay loaded for the life of the executor: CUDA is not safe to
 * unload once initialised. */
static void cuda_load(void)
{
    static const char *const rt_names[] = {"libcudart.so", "libcudart.so.13", "libcudart.so.12",
                                           "/usr/local/cuda/lib64/libcudart.so", NULL};
    static const char *const blas_names[] = {"libcublas.so", "libcublas.so.13", "libcublas.so.12",
                                             "/usr/local/cuda/lib64/libcublas.so", NULL};
    void *rt = open_first(rt_names);
    if (!rt) {
        snprintf(cuda.why, sizeof(cuda.why), "libcudart not found");
        return;
    }
    cuda.get_count = (int (*)(int *))dlsym(rt, "cudaGetDeviceCount");
    cuda.errstr = (const char *(*)(int))dlsym(rt, "cudaGetErrorString");
    cuda.malloc = (int (*)(void **, size_t))dlsym(rt, "cudaMalloc");
    cuda.free = (int (*)(void *))dlsym(rt, "cudaFree");
    cuda.memcpy = (int (*)(void *, const void *, size_t, int))dlsym(rt, "cudaMemcpy");
    cuda.sync = (int (*)(void))dlsym(rt, "cudaDeviceSynchronize");
    if (!cuda.get_count || !cuda.errstr || !cuda.malloc || !cuda.free || !cuda.memcpy || !cuda.sync) {
        snprintf(cuda.why, sizeof(cuda.why), "libcudart lacks cudaMalloc/cudaMemcpy/...");
        return;
    }
    int n = 0, rc = cuda.get_count(&n);
    if (rc || n <= 0) {
        snprintf(cuda.why, sizeof(cuda.why), "cudaGetDeviceCount: %s",
                 rc ? cuda.errstr(rc) : "no devices");
        return;
    }
    cuda.devices = n;
    void *blas = open_first(blas_names);
    if (!blas) {
        snprintf(cuda.why, sizeof(cuda.why), "libcublas not found");
        return;
    }
    cuda.blas_create = (int (*)(void **))dlsym(blas, "cublasCreate_v2");
    cuda.blas_destroy = (int (*)(void *))dlsym(blas, "cublasDestroy_v2");
    cuda.sgemm = (int (*)(void *, int, int, int, int, int, const float *, const float *, int,
                          const float *, int, const float *, float *, int))dlsym(blas, "cublasSgemm_v2");
    cuda.sscal = (int (*)(void *, int, const float *, float *, int))dlsym(blas, "cublasSscal_v2");
    cuda.sdot = (int (*)(void *, int, const float *, int, const float *, int, float *))dlsym(
        blas, "cublasSdot_v2");
    if (!cuda.blas_create || !cuda.blas_destroy || !cuda.sgemm || !cuda.sscal || !cuda.sdot) {
        snprintf(cuda.why, sizeof(cuda.why), "libcublas lacks cublasCreate_v2/cublasSgemm_v2/...");
        return;
    }
    cuda.blas = 1;
}

/* The loaded API when a device is visible and cuBLAS is there; otherwise NULL
 * and *why says what is missing. */
static const cuda_api *cuda_blas(const char **why)
{
    pthread_once(&cuda_once, cuda_load);
    *why = cuda.why;
    return cuda.devices && cuda.blas ? &cuda : NULL;
}

static int cuda_visible(const char **why)
{
    pthread_once(&cuda_once, cuda_load);
    *why = cuda.why;
    return cuda.devices > 0;
}

/* ---- helpers ------------------------------------------------------------------ */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* splitmix64: the same matrices for the same seed on every machine. */
static uint64_t next_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void fill_uniform(float *x, size_t n, uint64_t *state)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)(next_rand(state) >> 40) * (1.0f / 16777216.0f);
}

static const char *gpu_ids(const loom_task_ctx *ctx)
{
    const char *ids = loom_task_gpu_ids(ctx);
    return ids ? ids : "";
}

static int return_map(loom_task_ctx *ctx, loom_pack *p)
{
    if (!p) return loom_task_fail(ctx, "out of memory");
    int rc = loom_task_return_pack(ctx, p);
    loom_pack_destroy(&p);
    return rc;
}

static void pack_kv_str(loom_pack *p, const char *k, const char *v)
{
    loom_pack_cstr(p, k);
    loom_pack_cstr(p, v);
}

static void pack_kv_f64(loom_pack *p, const char *k, double v)
{
    loom_pack_cstr(p, k);
    loom_pack_f64(p, v);
}

static void pack_kv_i64(loom_pack *p, const char *k, int64_t v)
{
    loom_pack_cstr(p, k);
    loom_pack_i64(p, v);
}

/* ---- matmul ------------------------------------------------------------------- */

#define BLOCK 64

/* c = a * b, row-major n x n, cache-blocked i-k-j loops. */
static void matmul_cpu(const float *a, const float *b, float *c, int n)
{
    memset(c, 0, (size_t)n * (size_t)n * sizeof(float));
    for (int ii = 0; ii < n; ii += BLOCK)
        for (int kk = 0; kk < n; kk += BLOCK)
            for (int jj = 0; jj < n; jj += BLOCK) {
                int ie = ii + BLOCK < n ? ii + BLOCK : n;
                int ke = kk + BLOCK < n ? kk + BLOCK : n;
                int je = jj + BLOCK < n ? jj + BLOCK : n;
                for (int i = ii; i < ie; i++) {
                    float *ci = c + (size_t)i * (size_t)n;
                    for (int k = kk; k < ke; k++) {
                        float aik = a[(size_t)i * (size_t)n + (size_t)k];
                        const float *bk = b + (size_t)k * (size_t)n;
                        for (int j = jj; j < je; j++) ci[j] += aik * bk[j];
                    }
                }
            }
}

/* c = a * b on the GPU; *ms is the time of one sgemm after a warm-up run.
 * Returns 0, or -1 with err set. */
static int matmul_gpu(const cuda_api *cu, const float *a, const float *b, float *c, int n,
                      double *ms, char *err, size_t errlen)
{
    size_t bytes = (size_t)n * (size_t)n * sizeof(float);
    void *da = NULL, *db = NULL, *dc = NULL, *blas = NULL;
    const char *step = NULL; /* the call that failed */
    int rc = 0, blas_rc = 0;
#define CUDA_STEP(call) do { if (!step && (rc = (call))) step = #call; } while (0)
#define BLAS_STEP(call) do { if (!step && (blas_rc = (call))) step = #call; } while (0)
    CUDA_STEP(cu->malloc(&da, bytes));
    CUDA_STEP(cu->malloc(&db, bytes));
    CUDA_STEP(cu->malloc(&dc, bytes));
    CUDA_STEP(cu->memcpy(da, a, bytes, MEMCPY_H2D));
    CUDA_STEP(cu->memcpy(db, b, bytes, MEMCPY_H2D));
    BLAS_STEP(cu->blas_create(&blas));
    const float one = 1.0f, zero = 0.0f;
    /* cuBLAS is column-major: row-major C = A*B is column-major C^T = B^T*A^T. */
    for (int run = 0; run < 2 && !step; run++) {
        double t0 = now_ms();
        BLAS_STEP(cu->sgemm(blas, BLAS_OP_N, BLAS_OP_N, n, n, n, &one, db, n, da, n, &zero, dc, n));
        CUDA_STEP(cu->sync());
        *ms = now_ms() - t0;
    }
    CUDA_STEP(cu->memcpy(c, dc, bytes, MEMCPY_D2H));
#undef CUDA_STEP
#undef BLAS_STEP
    if (blas) cu->blas_destroy(blas);
    cu->free(da);
    cu->free(db);
    cu->free(dc);
    if (rc) snprintf(err, errlen, "%s: %s", step, cu->errstr(rc));
    else if (blas_rc) snprintf(err, errlen, "%s: cublasStatus %d", step, blas_rc);
    return step ? -1 : 0;
}

/* matmul(n, seed) -> {device, gpu_ids, n, checksum, ms, gflops[, why]} */
LOOM_TASK(matmul)
{
    int64_t n, seed;
    if (loom_task_arg_i64(ctx, 0, &n) || loom_task_arg_i64(ctx, 1, &seed))
        return loom_task_fail(ctx, "matmul: want n and seed as msgpack integers");
    if (n < 1 || n > MATMUL_MAX_N)
        return loom_task_fail(ctx, "matmul: n = %lld is out of range (1..%d)", (long long)n, MATMUL_MAX_N);
    size_t elems = (size_t)n * (size_t)n;
    float *a = malloc(elems * sizeof(float)), *b = malloc(elems * sizeof(float));
    float *c = malloc(elems * sizeof(float));
    if (!a || !b || !c) {
        free(a);
        free(b);
        free(c);
        return loom_task_fail(ctx, "matmul: out of memory for three %lldx%lld matrices", (long long)n,
                              (long long)n);
    }
    uint64_t state = (uint64_t)seed;
    fill_uniform(a, elems, &state);
    fill_uniform(b, elems, &state);

    const char *why;
    const cuda_api *cu = cuda_blas(&why);
    char err[256] = "";
    double ms = 0;
    int on_gpu = cu && matmul_gpu(cu, a, b, c, (int)n, &ms, err, sizeof(err)) == 0;
    if (!on_gpu) {
        if (cu) why = err; /* the GPU failed: say how, and compute anyway */
        double t0 = now_ms();
        matmul_cpu(a, b, c, (int)n);
        ms = now_ms() - t0;
    }
    double checksum = 0;
    for (size_t i = 0; i < elems; i++) checksum += c[i];
    free(a);
    free(b);
    free(c);

    double flops = 2.0 * (double)n * (double)n * (double)n;
    loom_pack *p = loom_pack_new();
    if (p) {
        loom_pack_map(p, on_gpu ? 6 : 7);
        pack_kv_str(p, "device", on_gpu ? "gpu" : "cpu");
        pack_kv_str(p, "gpu_ids", gpu_ids(ctx));
        pack_kv_i64(p, "n", n);
        pack_kv_f64(p, "checksum", checksum);
        pack_kv_f64(p, "ms", ms);
        pack_kv_f64(p, "gflops", ms > 0 ? flops / (ms * 1e6) : 0);
        if (!on_gpu) pack_kv_str(p, "why", why);
    }
    return return_map(ctx, p);
}

/* ---- saxpy (the real CUDA kernel) ------------------------------------------------ */

typedef int (*saxpy_fn)(int, float, const float *, float *);
typedef const char *(*kernel_errstr_fn)(int);

/* The kernels library: the path given, else KERNELS_LIB next to this one. */
static void *open_kernels(const char *given, size_t given_len, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (given) {
        snprintf(path, sizeof(path), "%.*s", (int)(given_len < sizeof(path) - 1 ? given_len : sizeof(path) - 1),
                 given);
    } else {
        Dl_info info;
        if (!dladdr((void *)open_kernels, &info) || !info.dli_fname) {
            snprintf(err, errlen, "dladdr: cannot tell where the task library is");
            return NULL;
        }
        const char *slash = strrchr(info.dli_fname, '/');
        int dir = slash ? (int)(slash - info.dli_fname) : 1;
        snprintf(path, sizeof(path), "%.*s/%s", dir, slash ? info.dli_fname : ".", KERNELS_LIB);
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) snprintf(err, errlen, "%s", dlerror());
    return h;
}

/* saxpy(n, a [, kernels library path]) -> {device, gpu_ids, n, checksum[, why]}
 * with x[i] = i % 17 and y[i] = i % 5, so checksum = sum(a*x[i] + y[i]). */
LOOM_TASK(saxpy)
{
    int64_t n;
    double a;
    if (loom_task_arg_i64(ctx, 0, &n) || loom_task_arg_f64(ctx, 1, &a))
        return loom_task_fail(ctx, "saxpy: want n (integer) and a (number)");
    if (n < 1 || n > VECTOR_MAX_N)
        return loom_task_fail(ctx, "saxpy: n = %lld is out of range (1..%d)", (long long)n, VECTOR_MAX_N);
    const char *lib = NULL;
    size_t lib_len = 0;
    if (loom_task_nargs(ctx) > 2 && loom_task_arg_str(ctx, 2, &lib, &lib_len))
        return loom_task_fail(ctx, "saxpy: argument 2 should be the path of %s", KERNELS_LIB);

    float *x = malloc((size_t)n * sizeof(float)), *y = malloc((size_t)n * sizeof(float));
    if (!x || !y) {
        free(x);
        free(y);
        return loom_task_fail(ctx, "saxpy: out of memory");
    }
    for (int64_t i = 0; i < n; i++) {
        x[i] = (float)(i % 17);
        y[i] = (float)(i % 5);
    }

    const char *why;
    char err[512] = "";
    int on_gpu = 0;
    if (cuda_visible(&why)) {
        void *k = open_kernels(lib, lib_len, err, sizeof(err));
        saxpy_fn fn = k ? (saxpy_fn)dlsym(k, "loom_saxpy_gpu") : NULL;
        kernel_errstr_fn kerr = k ? (kernel_errstr_fn)dlsym(k, "loom_cuda_error_string") : NULL;
        if (k && !fn) snprintf(err, sizeof(err), "%s has no loom_saxpy_gpu", KERNELS_LIB);
        int rc = fn ? fn((int)n, (float)a, x, y) : -1;
        if (fn && rc) snprintf(err, sizeof(err), "loom_saxpy_gpu: %s", kerr ? kerr(rc) : "CUDA error");
        on_gpu = rc == 0;
        why = err; /* the kernels library stays loaded, like CUDA itself */
    }
    if (!on_gpu)
        for (int64_t i = 0; i < n; i++) y[i] = (float)a * x[i] + y[i];
    double checksum = 0;
    for (int64_t i = 0; i < n; i++) checksum += y[i];
    free(x);
    free(y);

    loom_pack *p = loom_pack_new();
    if (p) {
        loom_pack_map(p, on_gpu ? 4 : 5);
        pack_kv_str(p, "device", on_gpu ? "gpu" : "cpu");
        pack_kv_str(p, "gpu_ids", gpu_ids(ctx));
        pack_kv_i64(p, "n", n);
        pack_kv_f64(p, "checksum", checksum);
        if (!on_gpu) pack_kv_str(p, "why", why);
    }
    return return_map(ctx, p);
}

/* ---- actor GpuWorker ---------------------------------------------------------------- */

typedef struct gpu_worker {
    int64_t n;
    int on_gpu;
    float *x;      /* n floats: device memory when on_gpu, else host */
    float *ones;   /* device: n ones, so that sum(x) = dot(x, ones) */
    void *blas;    /* cuBLAS handle when on_gpu */
} gpu_worker;

static void gpu_worker_free(gpu_worker *w)
{
    if (!w) return;
    if (w->on_gpu) {
        if (w->blas) cuda.blas_destroy(w->blas);
        cuda.free(w->x);
        cuda.free(w->ones);
    } else {
        free(w->x);
    }
    free(w);
}

/* Put n ones on the device in x and ones; 0 or -1 (and w->x/ones may be set). */
static int gpu_worker_upload(const cuda_api *cu, gpu_worker *w, const float *host)
{
    size_t bytes = (size_t)w->n * sizeof(float);
    if (cu->malloc((void **)&w->x, bytes) || cu->malloc((void **)&w->ones, bytes)) return -1;
    if (cu->memcpy(w->x, host, bytes, MEMCPY_H2D) || cu->memcpy(w->ones, host, bytes, MEMCPY_H2D))
        return -1;
    return cu->blas_create(&w->blas) ? -1 : 0;
}

/* GpuWorker(n): a vector of n ones. */
LOOM_ACTOR_INIT(GpuWorker)
{
    int64_t n;
    if (loom_task_arg_i64(ctx, 0, &n) || n < 1 || n > VECTOR_MAX_N)
        return loom_task_fail(ctx, "GpuWorker: want the vector length (1..%d) as argument 0", VECTOR_MAX_N);
    gpu_worker *w = calloc(1, sizeof(*w));
    float *host = malloc((size_t)n * sizeof(float));
    if (!w || !host) {
        free(w);
        free(host);
        return loom_task_fail(ctx, "GpuWorker: out of memory");
    }
    w->n = n;
    for (int64_t i = 0; i < n; i++) host[i] = 1.0f;
    const char *why;
    const cuda_api *cu = cuda_blas(&why);
    if (cu) {
        w->on_gpu = 1;
        if (gpu_worker_upload(cu, w, host)) {
            gpu_worker_free(w);
            free(host);
            return loom_task_fail(ctx, "GpuWorker: could not set up %lld floats on the GPU", (long long)n);
        }
        free(host);
    } else {
        w->x = host;
    }
    loom_actor_set_state(ctx, w);
    return 0;
}

/* scale(a) -> sum of the vector after multiplying it by a */
LOOM_ACTOR_METHOD(GpuWorker, scale)
{
    gpu_worker *w = loom_actor_state(ctx);
    double a;
    if (!w) return loom_task_fail(ctx, "GpuWorker: not initialised");
    if (loom_task_arg_f64(ctx, 0, &a)) return loom_task_fail(ctx, "scale: want a number");
    float af = (float)a;
    double sum = 0;
    if (w->on_gpu) {
        float dot = 0;
        int rc = cuda.sscal(w->blas, (int)w->n, &af, w->x, 1);
        if (!rc) rc = cuda.sdot(w->blas, (int)w->n, w->x, 1, w->ones, 1, &dot);
        if (rc) return loom_task_fail(ctx, "scale: cuBLAS status %d", rc);
        sum = dot;
    } else {
        for (int64_t i = 0; i < w->n; i++) sum += (w->x[i] *= af);
    }
    return loom_task_return_f64(ctx, sum);
}

/* info() -> {device, gpu_ids, cuda_visible_devices, n} */
LOOM_ACTOR_METHOD(GpuWorker, info)
{
    gpu_worker *w = loom_actor_state(ctx);
    if (!w) return loom_task_fail(ctx, "GpuWorker: not initialised");
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
    loom_pack *p = loom_pack_new();
    if (p) {
        loom_pack_map(p, 4);
        pack_kv_str(p, "device", w->on_gpu ? "gpu" : "cpu");
        pack_kv_str(p, "gpu_ids", gpu_ids(ctx));
        pack_kv_str(p, "cuda_visible_devices", cvd ? cvd : "");
        pack_kv_i64(p, "n", w->n);
    }
    return return_map(ctx, p);
}

LOOM_ACTOR_DESTROY(GpuWorker)
{
    gpu_worker_free(state);
}
