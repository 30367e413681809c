/* bench/memcpy_bw.c — the machine's floor for moving bytes: memcpy bandwidth
 * between two 256 MiB buffers (both touched first, so no page faults are
 * timed).  Any put of a large object copies it at least once, so this is a
 * ceiling for single_client_put_gigabytes.  GB = 1e9 bytes, like the peer.
 *
 * A second figure is the floor for a put into memory nobody has touched yet:
 * memcpy into a fresh shared mapping of a new /dev/shm file (the kernel
 * allocates and zeroes each page on the first write), which is what a store
 * pays when it cannot reuse pages of released objects.
 *
 *   memcpy_bw [MIB (default 256)] [REPEATS (default 8)]
 * Prints the median of REPEATS copies for each.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

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

/* One copy of len bytes into a new /dev/shm file's fresh shared mapping, in
 * GB/s; 0 if the file cannot be made. */
static double fresh_shm_copy(const unsigned char *src, size_t len)
{
    char path[64];
    snprintf(path, sizeof(path), "/dev/shm/loom-memcpy-bw-%d", (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) return 0;
    unlink(path);
    double rate = 0;
    if (ftruncate(fd, (off_t)len) == 0) {
        unsigned char *dst = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (dst != MAP_FAILED) {
            double t0 = now();
            memcpy(dst, src, len);
            rate = (double)len / 1e9 / (now() - t0);
            munmap(dst, len);
        }
    }
    close(fd);
    return rate;
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
    int fresh_reps = reps < 4 ? reps : 4;
    for (int r = 0; r < fresh_reps; r++) rates[r] = fresh_shm_copy(src, len);
    qsort(rates, (size_t)fresh_reps, sizeof(double), cmp);
    printf("memcpy_fresh_shm_gigabytes %.2f GB/s (median of %d copies of %zu MiB into new /dev/shm pages)\n",
           rates[fresh_reps / 2], fresh_reps, mib);
    free(src);
    free(dst);
    return 0;
}
