/* bench/mlp_predict_bench.c — the floor for serving a model: its forward pass
 * called in-process (serve/mlp.c on the CPU), no HTTP, no actor, no encoding.
 * bench/serve_bench.sh divides the gateway's latency by this figure.
 *
 *   mlp_predict_bench MODEL.safetensors [BATCH (1)] [CALLS (20000)]
 * Prints "predict_us_p50 X" and "predict_us_mean Y" for batches of BATCH rows. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/util.h"
#include "serve/mlp.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: mlp_predict_bench MODEL.safetensors [BATCH] [CALLS]\n");
        return 2;
    }
    int batch = argc > 2 ? atoi(argv[2]) : 1, calls = argc > 3 ? atoi(argv[3]) : 20000;
    if (batch < 1 || batch > 4096 || calls < 1 || calls > 10000000) {
        fprintf(stderr, "mlp_predict_bench: BATCH 1-4096, CALLS 1-10000000\n");
        return 2;
    }
    char *art = NULL, err[256];
    size_t len = 0;
    loom_mlp *m = NULL;
    if (loom__read_file(argv[1], (size_t)1 << 30, &art, &len) || loom_mlp_load(art, len, &m, err, sizeof(err))) {
        fprintf(stderr, "mlp_predict_bench: cannot load %s\n", argv[1]);
        free(art);
        return 1;
    }
    int in = loom_mlp_inputs(m), out = loom_mlp_outputs(m);
    float *x = calloc((size_t)batch * (size_t)in, sizeof(float));
    float *y = calloc((size_t)batch * (size_t)out, sizeof(float));
    double *us = calloc((size_t)calls, sizeof(double));
    int rc = x && y && us ? 0 : 1;
    for (int i = 0; !rc && i < batch * in; i++) x[i] = (float)(i % 17);
    double total = 0;
    for (int i = 0; !rc && i < calls; i++) {
        int64_t t0 = loom__now_us();
        rc = loom_mlp_forward(m, x, batch, y, err, sizeof(err));
        us[i] = (double)(loom__now_us() - t0);
        total += us[i];
    }
    if (!rc) {
        qsort(us, (size_t)calls, sizeof(double), cmp_double);
        printf("predict_us_p50 %.2f\npredict_us_mean %.2f\n", us[calls / 2], total / calls);
    } else {
        fprintf(stderr, "mlp_predict_bench: %s\n", err);
    }
    free(x);
    free(y);
    free(us);
    free(art);
    loom_mlp_destroy(&m);
    return rc ? 1 : 0;
}
