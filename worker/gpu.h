/* worker/gpu.h — GPU discovery on a node, at run time: libcudart (and NVML
 * where present) are loaded with dlopen, so one binary runs on machines with
 * and without GPUs and needs no CUDA at build time.  A daemon started with
 * --num-gpus N reports N GPUs whatever is installed (testing GPU scheduling
 * on machines without GPUs). */
#ifndef LOOM_WORKER_GPU_H
#define LOOM_WORKER_GPU_H
#include <stddef.h>
#include <stdint.h>

#define LOOM_MAX_GPUS 16

typedef struct loom_gpu_info {
    int count;                        /* devices seen (0: none) */
    uint64_t memory[LOOM_MAX_GPUS];   /* total bytes per device */
    char name[LOOM_MAX_GPUS][96];     /* e.g. "NVIDIA H100 80GB HBM3" */
    char source[32];                  /* "nvml", "cudart", "none" */
    char driver[64];                  /* driver version if known */
    char why[256];                    /* when count is 0: why (no library, no device, error) */
} loom_gpu_info;

/* Discover the GPUs this process can see (respects CUDA_VISIBLE_DEVICES).
 * Never fails: with no library or device, count is 0 and why says so. */
void loom__gpu_discover(loom_gpu_info *out);

#endif
