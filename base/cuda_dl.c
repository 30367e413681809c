/* base/cuda_dl.c — open libcudart, libcublas, libnccl, NVML and libcuda once
 * (see cuda_dl.h). */
#include "base/cuda_dl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

typedef struct lib_slot {
    const char *short_name;
    const char *const *names;     /* candidates, NULL-terminated */
    pthread_once_t once;
    void *handle;
    const char *opened;
    char why[256];
} lib_slot;

static const char *const cudart_names[] = {"libcudart.so", "libcudart.so.13", "libcudart.so.12",
                                           "/usr/local/cuda/lib64/libcudart.so", NULL};
static const char *const cublas_names[] = {"libcublas.so", "libcublas.so.13", "libcublas.so.12",
                                           "/usr/local/cuda/lib64/libcublas.so", NULL};
static const char *const nccl_names[] = {"libnccl.so.2", NULL};
static const char *const nvml_names[] = {"libnvidia-ml.so.1", "libnvidia-ml.so", NULL};
static const char *const driver_names[] = {"libcuda.so.1", NULL};

static lib_slot slots[LOOM_CUDA_LIB_COUNT] = {
    [LOOM_CUDA_LIB_CUDART] = {"libcudart", cudart_names, PTHREAD_ONCE_INIT, NULL, NULL, ""},
    [LOOM_CUDA_LIB_CUBLAS] = {"libcublas", cublas_names, PTHREAD_ONCE_INIT, NULL, NULL, ""},
    [LOOM_CUDA_LIB_NCCL] = {"libnccl.so.2", nccl_names, PTHREAD_ONCE_INIT, NULL, NULL, ""},
    [LOOM_CUDA_LIB_NVML] = {"libnvidia-ml.so.1", nvml_names, PTHREAD_ONCE_INIT, NULL, NULL, ""},
    [LOOM_CUDA_LIB_DRIVER] = {"libcuda.so.1", driver_names, PTHREAD_ONCE_INIT, NULL, NULL, ""},
};

static void open_slot(lib_slot *s)
{
    char last[200] = "?";   /* the last dlerror, for why */
    for (int i = 0; s->names[i] && !s->handle; i++) {
        s->handle = dlopen(s->names[i], RTLD_NOW | RTLD_LOCAL);
        if (s->handle) {
            s->opened = s->names[i];
            return;
        }
        const char *e = dlerror();
        if (e) snprintf(last, sizeof(last), "%s", e);
    }
    snprintf(s->why, sizeof(s->why), "%s not found: %s", s->short_name, last);
}

static void open_cudart(void) { open_slot(&slots[LOOM_CUDA_LIB_CUDART]); }
static void open_cublas(void) { open_slot(&slots[LOOM_CUDA_LIB_CUBLAS]); }
static void open_nccl(void) { open_slot(&slots[LOOM_CUDA_LIB_NCCL]); }
static void open_nvml(void) { open_slot(&slots[LOOM_CUDA_LIB_NVML]); }
static void open_driver(void) { open_slot(&slots[LOOM_CUDA_LIB_DRIVER]); }

void *loom__cuda_dl(loom_cuda_lib lib, const char **opened, const char **why)
{
    static void (*const openers[LOOM_CUDA_LIB_COUNT])(void) = {open_cudart, open_cublas, open_nccl,
                                                                         open_nvml, open_driver};
    if ((int)lib < 0 || lib >= LOOM_CUDA_LIB_COUNT) {
        if (why) *why = "no such library";
        return NULL;
    }
    lib_slot *s = &slots[lib];
    pthread_once(&s->once, openers[lib]);
    if (opened) *opened = s->opened;
    if (why) *why = s->handle ? "" : s->why;
    return s->handle;
}
