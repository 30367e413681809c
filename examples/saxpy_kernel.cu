/* examples/saxpy_kernel.cu — a real CUDA kernel for the GPU examples: built
 * with nvcc into libloom_cuda_kernels.so (only where the CUDA toolkit is
 * installed) and opened at run time by the `saxpy` task in gpu_tasks.c, so
 * the task library itself needs no CUDA to build.  The CUDA runtime is linked
 * statically, so the library needs only the driver (libcuda.so.1) to run. */
#include <cuda_runtime.h>

__global__ static void saxpy_kernel(int n, float a, const float *x, float *y)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
        y[i] = a * x[i] + y[i];
}

/* y = a*x + y on the current device, for host arrays of n floats.  Returns 0,
 * or the cudaError_t of the first call that failed (y is then unchanged). */
extern "C" int loom_saxpy_gpu(int n, float a, const float *x, float *y)
{
    if (n <= 0) return 0;
    float *dx = nullptr, *dy = nullptr;
    size_t bytes = (size_t)n * sizeof(float);
    cudaError_t rc = cudaMalloc(&dx, bytes);
    if (rc == cudaSuccess) rc = cudaMalloc(&dy, bytes);
    if (rc == cudaSuccess) rc = cudaMemcpy(dx, x, bytes, cudaMemcpyHostToDevice);
    if (rc == cudaSuccess) rc = cudaMemcpy(dy, y, bytes, cudaMemcpyHostToDevice);
    if (rc == cudaSuccess) {
        int threads = 256;
        int blocks = (n + threads - 1) / threads;
        if (blocks > 65535) blocks = 65535;
        saxpy_kernel<<<blocks, threads>>>(n, a, dx, dy);
        rc = cudaGetLastError();
    }
    if (rc == cudaSuccess) rc = cudaMemcpy(y, dy, bytes, cudaMemcpyDeviceToHost);
    cudaFree(dx);
    cudaFree(dy);
    return (int)rc;
}

/* The message for a code returned above. */
extern "C" const char *loom_cuda_error_string(int rc)
{
    return cudaGetErrorString((cudaError_t)rc);
}
