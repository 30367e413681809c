/* bench/memcpy_bw.c — the machine's floor for moving bytes: memcpy bandwidth
 * between two 256 MiB buffers (both touched first, so no page faults are
 * timed).  Any put of a large object copies it at least once, so this is a
 * ceiling for single_client_put_gigabytes.  GB = 1e9 bytes, like the peer.
 *
 *   memcpy_bw [MIB (default 256)] [REPEATS (default 8)]
 * Prints the median of REPEATS copies.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 256;
    int reps = argc > 2 ? atoi(argv[2]) : 8;
    if (mib < 1) mib = 1;
    if (reps < 1) reps = 1;
    if (reps > 64) reps = 64;
    size_t len = mib << 20;
    unsigned char *src = malloc(len), *dst = malloc(len);
    if (!src || !dst) {
        fprintf(stderr, "memcpy_bw: out of memory\n");
        return 1;
    }
    memset(src, 1, len);
    memset(dst, 0, len);
    double rates[64];
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        memcpy(dst, src, len);
        rates[r] = (double)len / 1e9 / (now() - t0);
        src[r] ^= dst[len - 1 - (size_t)r]; /* keep the copies observable */
    }
    qsort(rates, (size_t)reps, sizeof(double), cmp);
    printf("memcpy_gigabytes %.2f GB/s (median of %d copies of %zu MiB)\n", rates[reps / 2], reps, mib);
    free(src);
    free(dst);
    return 0;
}
