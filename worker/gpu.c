/* worker/gpu.c — find the GPUs of this node at run time, with dlopen only
 * (the libraries are opened by base/cuda_dl.c, once per process): no
 * CUDA header or library is needed to build loom, and the same binary runs on
 * machines with and without GPUs.
 *
 * Three sources, tried in order; the first that answers is believed:
 *   1. NVML (libnvidia-ml.so.1): names, memory and driver version without
 *      creating a CUDA context.  NVML numbers devices physically and ignores
 *      CUDA_VISIBLE_DEVICES, so the list is filtered here the way CUDA would
 *      (indices or GPU-UUID prefixes, in the order given, stopping at the first
 *      entry that names no device).  A list with MIG entries is left to 2.
 *   2. The CUDA driver API (libcuda.so.1): cuDeviceTotalMem needs no context
 *      and the driver applies CUDA_VISIBLE_DEVICES itself.
 *   3. libcudart, for the count and its error message; memory comes from
 *      cudaMemGetInfo (this creates a context, so it is the last resort; in
 *      practice cudart only works where libcuda.so.1 does).
 * cudaGetDeviceProperties is not used: struct cudaDeviceProp changes between
 * CUDA versions.  Libraries are kept loaded once opened (unloading libcuda
 * after cuInit is not safe).  Nothing here fails: count 0 and `why` instead. */
#include "base/cuda_dl.h"
#include "worker/gpu.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- CUDA_VISIBLE_DEVICES ------------------------------------------------ */

#define VIS_MAX 64

typedef struct visible_list {
    int set;               /* the variable is set */
    int n;                 /* entries before the first unusable one */
    int has_mig;           /* a MIG-... entry: only CUDA can resolve it */
    char entry[VIS_MAX][96];
} visible_list;

static void trim(char *s)
{
    size_t n = strlen(s), i = 0;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
    while (s[i] == ' ' || s[i] == '\t') i++;
    memmove(s, s + i, n - i + 1);
}

/* An entry CUDA accepts: a non-negative index, GPU-... or MIG-... */
static int entry_ok(const char *e)
{
    if (!strncmp(e, "GPU-", 4) || !strncmp(e, "MIG-", 4)) return e[4] != 0;
    if (!*e) return 0;
    for (const char *p = e; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    return 1;
}

static void visible_parse(visible_list *v)
{
    memset(v, 0, sizeof(*v));
    const char *env = getenv("CUDA_VISIBLE_DEVICES");
    if (!env) return;
    v->set = 1;
    const char *p = env;
    while (*p && v->n < VIS_MAX) {
        size_t len = strcspn(p, ",");
        char e[96];
        snprintf(e, sizeof(e), "%.*s", (int)(len < sizeof(e) - 1 ? len : sizeof(e) - 1), p);
        trim(e);
        if (!entry_ok(e)) break; /* CUDA ignores the rest of the list */
        if (!strncmp(e, "MIG-", 4)) v->has_mig = 1;
        memcpy(v->entry[v->n++], e, sizeof(e));
        p += len;
        if (*p == ',') p++;
    }
}

/* ---- helpers -------------------------------------------------------------- */

/* Append "; msg" to out->why. */
static void why_add(loom_gpu_info *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void why_add(loom_gpu_info *out, const char *fmt, ...)
{
    size_t used = strlen(out->why);
    if (used + 3 >= sizeof(out->why)) return;
    if (used) {
        memcpy(out->why + used, "; ", 3);
        used += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->why + used, sizeof(out->why) - used, fmt, ap);
    va_end(ap);
}

static void set_source(loom_gpu_info *out, const char *s)
{
    snprintf(out->source, sizeof(out->source), "%s", s);
}

/* Forget devices a source listed before it failed half way. */
static void drop_devices(loom_gpu_info *out)
{
    out->count = 0;
    memset(out->memory, 0, sizeof(out->memory));
    memset(out->name, 0, sizeof(out->name));
    out->driver[0] = 0;
}

/* ---- NVML ------------------------------------------------------------------ */

typedef struct nvml_memory { unsigned long long total, free, used; } nvml_memory;
typedef void *nvml_device;

typedef struct nvml_api {
    int (*init)(void);
    int (*shutdown)(void);
    const char *(*error_string)(int);
    int (*count)(unsigned *);
    int (*by_index)(unsigned, nvml_device *);
    int (*memory)(nvml_device, nvml_memory *);
    int (*name)(nvml_device, char *, unsigned);
    int (*uuid)(nvml_device, char *, unsigned);
    int (*driver)(char *, unsigned);
} nvml_api;

static const char *nvml_err(const nvml_api *a, int rc)
{
    const char *s = a->error_string ? a->error_string(rc) : NULL;
    return s ? s : "unknown error";
}

/* The physical index named by a CUDA_VISIBLE_DEVICES entry, or -1. */
static int nvml_resolve(const nvml_api *a, unsigned physical, const char *e)
{
    if (e[0] >= '0' && e[0] <= '9') {
        long i = strtol(e, NULL, 10);
        return i < (long)physical ? (int)i : -1;
    }
    if (!a->uuid) return -1;
    int found = -1;
    for (unsigned i = 0; i < physical; i++) {
        nvml_device d;
        char uuid[96] = "";
        if (a->by_index(i, &d) || a->uuid(d, uuid, sizeof(uuid))) continue;
        if (!strncmp(uuid, e, strlen(e))) {
            if (found >= 0) return -1; /* an ambiguous prefix names nothing */
            found = (int)i;
        }
    }
    return found;
}

/* 0: answered (out filled, possibly with 0 devices); -1: try the next source. */
static int try_nvml(loom_gpu_info *out, const visible_list *vis)
{
    void *h = loom__cuda_dl(LOOM_CUDA_LIB_NVML, NULL, NULL);
    if (!h) {
        why_add(out, "libnvidia-ml.so.1 not found");
        return -1;
    }
    nvml_api a = {
        .init = (int (*)(void))dlsym(h, "nvmlInit_v2"),
        .shutdown = (int (*)(void))dlsym(h, "nvmlShutdown"),
        .error_string = (const char *(*)(int))dlsym(h, "nvmlErrorString"),
        .count = (int (*)(unsigned *))dlsym(h, "nvmlDeviceGetCount_v2"),
        .by_index = (int (*)(unsigned, nvml_device *))dlsym(h, "nvmlDeviceGetHandleByIndex_v2"),
        .memory = (int (*)(nvml_device, nvml_memory *))dlsym(h, "nvmlDeviceGetMemoryInfo"),
        .name = (int (*)(nvml_device, char *, unsigned))dlsym(h, "nvmlDeviceGetName"),
        .uuid = (int (*)(nvml_device, char *, unsigned))dlsym(h, "nvmlDeviceGetUUID"),
        .driver = (int (*)(char *, unsigned))dlsym(h, "nvmlSystemGetDriverVersion"),
    };
    if (!a.init || !a.shutdown || !a.count || !a.by_index || !a.memory) {
        why_add(out, "libnvidia-ml.so.1 lacks nvmlInit_v2/nvmlDeviceGetCount_v2/...");
        return -1;
    }
    if (vis->has_mig) {
        why_add(out, "nvml: CUDA_VISIBLE_DEVICES names MIG devices");
        return -1;
    }
    int rc = a.init();
    if (rc) {
        why_add(out, "nvmlInit: %s", nvml_err(&a, rc));
        return -1;
    }
    unsigned physical = 0;
    rc = a.count(&physical);
    if (rc) {
        why_add(out, "nvmlDeviceGetCount: %s", nvml_err(&a, rc));
        a.shutdown();
        return -1;
    }
    int pick[LOOM_MAX_GPUS], n = 0;
    if (vis->set) {
        for (int i = 0; i < vis->n && n < LOOM_MAX_GPUS; i++) {
            int p = nvml_resolve(&a, physical, vis->entry[i]);
            if (p < 0) break; /* as CUDA: the list ends at the first bad entry */
            int dup = 0;
            for (int j = 0; j < n; j++) dup |= pick[j] == p;
            if (dup) break;
            pick[n++] = p;
        }
    } else {
        for (unsigned i = 0; i < physical && n < LOOM_MAX_GPUS; i++) pick[n++] = (int)i;
    }
    for (int i = 0; i < n; i++) {
        nvml_device d;
        nvml_memory m = {0};
        rc = a.by_index((unsigned)pick[i], &d);
        if (!rc) rc = a.memory(d, &m);
        if (rc) {
            why_add(out, "nvml device %d: %s", pick[i], nvml_err(&a, rc));
            drop_devices(out);
            a.shutdown();
            return -1;
        }
        out->memory[out->count] = m.total;
        if (!a.name || a.name(d, out->name[out->count], sizeof(out->name[0])) || !out->name[out->count][0])
            snprintf(out->name[out->count], sizeof(out->name[0]), "GPU %d", pick[i]);
        out->count++;
    }
    char drv[96] = "";
    if (a.driver && !a.driver(drv, sizeof(drv))) snprintf(out->driver, sizeof(out->driver), "%.*s", (int)sizeof(out->driver) - 1, drv);
    if (!out->count) {
        out->why[0] = 0;
        if (!physical) why_add(out, "nvml: no GPUs on this machine");
        else why_add(out, "nvml: %u GPUs, none of them in CUDA_VISIBLE_DEVICES=\"%s\"", physical,
                     getenv("CUDA_VISIBLE_DEVICES"));
    }
    set_source(out, "nvml");
    a.shutdown();
    return 0;
}

/* ---- CUDA driver API --------------------------------------------------------- */

static void driver_version_str(char *buf, size_t n, int v)
{
    snprintf(buf, n, "CUDA %d.%d", v / 1000, (v % 1000) / 10);
}

static int try_cuda_driver(loom_gpu_info *out)
{
    void *h = loom__cuda_dl(LOOM_CUDA_LIB_DRIVER, NULL, NULL);
    if (!h) {
        why_add(out, "libcuda.so.1 not found");
        return -1;
    }
    int (*init)(unsigned) = (int (*)(unsigned))dlsym(h, "cuInit");
    int (*count)(int *) = (int (*)(int *))dlsym(h, "cuDeviceGetCount");
    int (*get)(int *, int) = (int (*)(int *, int))dlsym(h, "cuDeviceGet");
    int (*total)(size_t *, int) = (int (*)(size_t *, int))dlsym(h, "cuDeviceTotalMem_v2");
    int (*name)(char *, int, int) = (int (*)(char *, int, int))dlsym(h, "cuDeviceGetName");
    int (*version)(int *) = (int (*)(int *))dlsym(h, "cuDriverGetVersion");
    int (*errstr)(int, const char **) = (int (*)(int, const char **))dlsym(h, "cuGetErrorString");
    if (!init || !count || !get || !total) {
        why_add(out, "libcuda.so.1 lacks cuInit/cuDeviceGetCount/cuDeviceTotalMem_v2");
        return -1;
    }
    int rc = init(0), n = 0;
    if (!rc) rc = count(&n);
    if (rc) {
        const char *s = NULL;
        if (!errstr || errstr(rc, &s) || !s) s = "unknown error";
        why_add(out, "cuInit: %s (CUresult %d)", s, rc);
        /* "no device" is an answer; anything else may still work through cudart */
        if (rc != 100 /* CUDA_ERROR_NO_DEVICE */) return -1;
        n = 0;
    }
    if (n > LOOM_MAX_GPUS) n = LOOM_MAX_GPUS;
    for (int i = 0; i < n; i++) {
        int dev = 0;
        size_t bytes = 0;
        if (get(&dev, i) || total(&bytes, dev) || !bytes) {
            why_add(out, "cuDeviceTotalMem: device %d failed", i);
            drop_devices(out);
            return -1;
        }
        out->memory[i] = bytes;
        if (!name || name(out->name[i], (int)sizeof(out->name[0]), dev) || !out->name[i][0])
            snprintf(out->name[i], sizeof(out->name[0]), "CUDA device %d", i);
        out->count++;
    }
    int v = 0;
    if (version && !version(&v) && v) driver_version_str(out->driver, sizeof(out->driver), v);
    if (out->count) out->why[0] = 0;
    set_source(out, "cuda");
    return 0;
}

/* ---- libcudart ----------------------------------------------------------------- */

static int try_cudart(loom_gpu_info *out)
{
    const char *opened = NULL;
    void *h = loom__cuda_dl(LOOM_CUDA_LIB_CUDART, &opened, NULL);
    if (!h) {
        why_add(out, "libcudart not found");
        return -1;
    }
    int (*count)(int *) = (int (*)(int *))dlsym(h, "cudaGetDeviceCount");
    int (*set)(int) = (int (*)(int))dlsym(h, "cudaSetDevice");
    int (*meminfo)(size_t *, size_t *) = (int (*)(size_t *, size_t *))dlsym(h, "cudaMemGetInfo");
    int (*version)(int *) = (int (*)(int *))dlsym(h, "cudaDriverGetVersion");
    const char *(*errstr)(int) = (const char *(*)(int))dlsym(h, "cudaGetErrorString");
    if (!count || !set || !meminfo) {
        why_add(out, "%s lacks cudaGetDeviceCount/cudaSetDevice/cudaMemGetInfo", opened);
        return -1;
    }
    int n = 0, rc = count(&n);
    if (rc) {
        why_add(out, "cudaGetDeviceCount: %s", errstr ? errstr(rc) : "failed");
        set_source(out, "none");
        return 0;
    }
    if (n > LOOM_MAX_GPUS) n = LOOM_MAX_GPUS;
    for (int i = 0; i < n; i++) {
        size_t fr = 0, tot = 0;
        rc = set(i);
        if (!rc) rc = meminfo(&fr, &tot);
        if (rc || !tot) {
            why_add(out, "cudaMemGetInfo on device %d: %s", i, errstr && rc ? errstr(rc) : "no memory");
            drop_devices(out);
            set_source(out, "none");
            return 0;
        }
        out->memory[i] = tot;
        snprintf(out->name[i], sizeof(out->name[0]), "CUDA device %d", i);
        out->count++;
    }
    int v = 0;
    if (version && !version(&v) && v) driver_version_str(out->driver, sizeof(out->driver), v);
    if (out->count) out->why[0] = 0;
    else why_add(out, "cudaGetDeviceCount: no devices");
    set_source(out, "cudart");
    return 0;
}

/* ---- entry --------------------------------------------------------------------- */

void loom__gpu_discover(loom_gpu_info *out)
{
    memset(out, 0, sizeof(*out));
    set_source(out, "none");
    visible_list vis;
    visible_parse(&vis);
    if (vis.set && vis.n == 0) {
        snprintf(out->why, sizeof(out->why), "CUDA_VISIBLE_DEVICES=\"%s\" hides every GPU",
                 getenv("CUDA_VISIBLE_DEVICES"));
        return;
    }
    if (try_nvml(out, &vis) == 0) return;
    if (try_cuda_driver(out) == 0) return;
    if (try_cudart(out) == 0) return;
    drop_devices(out);
    set_source(out, "none");
    if (!out->why[0]) snprintf(out->why, sizeof(out->why), "no GPU library answered");
}
