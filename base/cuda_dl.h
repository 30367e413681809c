/* base/cuda_dl.h — the one loader of NVIDIA's user-space libraries (libcudart,
 * libcublas, libnccl, and for GPU discovery NVML and the driver's libcuda)
 * with dlopen: each is opened at most once per process
 * (pthread_once), stays loaded (CUDA is not safe to unload once initialised),
 * and when it is absent says why.  Users resolve their own symbols with dlsym
 * on the handle; nothing here needs CUDA at build time. */
#ifndef LOOM_BASE_CUDA_DL_H
#define LOOM_BASE_CUDA_DL_H

typedef enum loom_cuda_lib {
    LOOM_CUDA_LIB_CUDART,  /* libcudart.so, .so.13, .so.12, /usr/local/cuda/lib64 */
    LOOM_CUDA_LIB_CUBLAS,  /* libcublas.so, .so.13, .so.12, /usr/local/cuda/lib64 */
    LOOM_CUDA_LIB_NCCL,    /* libnccl.so.2 */
    LOOM_CUDA_LIB_NVML,    /* libnvidia-ml.so.1, libnvidia-ml.so */
    LOOM_CUDA_LIB_DRIVER,  /* libcuda.so.1 */
    LOOM_CUDA_LIB_COUNT
} loom_cuda_lib;

/* The library's handle, or NULL.  *opened (when not NULL) gets the name that
 * opened it; *why (when not NULL) gets, on NULL, "<short name> not found: <the
 * last dlerror>" (short names: libcudart, libcublas, libnccl.so.2,
 * libnvidia-ml.so.1, libcuda.so.1). */
void *loom__cuda_dl(loom_cuda_lib lib, const char **opened, const char **why);
#endif
