/* tests/fuzz/fuzz_safetensors.c — fuzz target for the safetensors reader
 * (serve/safetensors.c) and the MLP loader on top of it (serve/mlp.c): any
 * bytes are parsed within bounds; a file that parses has tensors inside the
 * input that tile its byte buffer, survives a write/read round trip with the
 * same tensors and metadata, and loads as an MLP or is refused cleanly. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "serve/mlp.h"
#include "serve/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_tensors(const uint8_t *data, size_t size, const loom_st_file *f)
{
    for (int i = 0; i < loom_st_count(f); i++) {
        const loom_tensor *t = loom_st_tensor(f, i);
        size_t nbytes;
        if (!t || loom_tensor_shape_size(t->dtype, t->ndim, t->shape, NULL, &nbytes) ||
            nbytes != t->nbytes)
            abort();
        if (nbytes && ((const uint8_t *)t->data < data ||
                       (const uint8_t *)t->data + nbytes > data + size))
            abort();
        if (loom_st_find(f, t->name) != t) abort();
    }
}

/* Write what was read and read it again: the same tensors and metadata. */
static void round_trip(const loom_st_file *f)
{
    int n = loom_st_count(f), nm = loom_st_metadata_count(f);
    loom_tensor *t = malloc(sizeof(loom_tensor) * (size_t)(n ? n : 1));
    const char **meta = malloc(sizeof(char *) * (size_t)(2 * nm + 1));
    if (!t || !meta) abort();
    for (int i = 0; i < n; i++) t[i] = *loom_st_tensor(f, i);
    for (int i = 0; i < nm; i++) loom_st_metadata_entry(f, i, &meta[2 * i], &meta[2 * i + 1]);
    void *buf = NULL;
    size_t len = 0;
    char err[256];
    if (loom_st_write(t, n, meta, nm, &buf, &len, err, sizeof err)) abort();
    loom_st_file *g = NULL;
    if (loom_st_open(buf, len, &g, err, sizeof err)) abort();
    if (loom_st_count(g) != n || loom_st_metadata_count(g) != nm) abort();
    for (int i = 0; i < n; i++) {
        const loom_tensor *a = loom_st_tensor(f, i), *b = loom_st_find(g, a->name);
        if (!b || b->dtype != a->dtype || b->nbytes != a->nbytes ||
            (a->nbytes && memcmp(a->data, b->data, a->nbytes)))
            abort();
    }
    loom_st_close(&g);
    free(buf);
    free(meta);
    free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    loom_st_file *f = NULL;
    char err[256];
    if (loom_st_open(data, size, &f, err, sizeof err)) {
        if (f) abort();
        return 0;
    }
    check_tensors(data, size, f);
    round_trip(f);
    loom_st_close(&f);
    loom_mlp *m = NULL;
    if (loom_mlp_load(data, size, &m, err, sizeof err) == 0) {
        float x[8] = {0}, p[64];
        if (loom_mlp_inputs(m) <= 8 && loom_mlp_outputs(m) <= 64 &&
            loom_mlp_forward_cpu(m, x, 1, p, err, sizeof err))
            abort();
        loom_mlp_destroy(&m);
    } else if (m) {
        abort();
    }
    return 0;
}
