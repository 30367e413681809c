/* tests/fuzz/fuzz_tensor.c — fuzz target for the LTN1 tensor container
 * decoder (serve/tensor.c): any bytes are decoded within bounds; what decodes
 * has views inside the input whose sizes agree with their shapes, converts to
 * float without reading past them, and encodes back to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "serve/tensor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_views(const uint8_t *data, size_t size, const loom_tensor *t, int n)
{
    for (int i = 0; i < n; i++) {
        size_t nbytes;
        int64_t numel;
        if (loom_tensor_shape_size(t[i].dtype, t[i].ndim, t[i].shape, &numel, &nbytes) ||
            nbytes != t[i].nbytes)
            abort();
        if (nbytes) {
            const uint8_t *p = t[i].data;
            if (p < data || p + nbytes > data + size) abort();
        }
        /* read every element (bounded: the input holds them) */
        for (int64_t k = 0; k < numel && k < 4096; k++) (void)loom_tensor_get_f64(&t[i], (size_t)k);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    loom_tensor t[LOOM_TENSOR_MAX_COUNT];
    int n = 0;
    char err[256];
    if (loom_tensors_decode(data, size, t, LOOM_TENSOR_MAX_COUNT, &n, err, sizeof err)) {
        if (n != 0 || !err[0]) abort();
        return 0;
    }
    check_views(data, size, t, n);
    void *back = NULL;
    size_t len = 0;
    if (loom_tensors_encode_alloc(t, n, &back, &len, err, sizeof err)) abort();
    if (len != size || memcmp(back, data, size)) abort();   /* the encoding is canonical */
    free(back);
    return 0;
}
