/* bench/coll_bench.c — allreduce bandwidth of loom's CPU collective backend
 * (loom/collective.h): WORLD forked processes on this machine join a group
 * through a directory rendezvous and allreduce float buffers of 1 MiB to
 * MAX_MIB MiB.  Prints, per size, the time of one allreduce (the slowest
 * member's mean over the timed iterations) and the bandwidths as nccl-tests
 * define them: algbw = bytes / time, busbw = algbw * 2(n-1)/n (what each
 * member's link carries; comparable across member counts).  GB = 1e9 bytes.
 *
 *   coll_bench [WORLD (default 2)] [MAX_MIB (default 64)]
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "loom/collective.h"
#include "runtime/util.h"

#define WARMUP 2

static int member(const char *dir, int world, int rank, size_t max_mib)
{
    loom_rendezvous rv;
    loom_rendezvous_dir(&rv, dir);
    loom_collective_opts opts = { .backend = LOOM_COLL_CPU, .timeout_ms = 60000 };
    loom_collective *g = NULL;
    int rc = loom_collective_init(&rv, "coll_bench", world, rank, &opts, &g);
    if (rc) {
        fprintf(stderr, "rank %d: %s: %s\n", rank, loom_strerror(rc), loom_collective_error(NULL));
        return 1;
    }
    size_t max_count = (max_mib << 20) / sizeof(float);
    float *buf = malloc(max_count * sizeof(float));
    if (!buf) return 1;
    for (size_t i = 0; i < max_count; i++) buf[i] = (float)(i % 7);
    if (rank == 0)
        printf("%d processes, CPU backend over tcp://127.0.0.1\n%10s %8s %12s %12s %12s\n",
               world, "bytes", "iters", "time_us", "algbw_GB/s", "busbw_GB/s");
    for (size_t mib = 1; mib <= max_mib && !rc; mib *= 2) {
        size_t count = (mib << 20) / sizeof(float), bytes = count * sizeof(float);
        int iters = (int)((size_t)(1024u << 20) / bytes);
        iters = iters < 5 ? 5 : iters > 100 ? 100 : iters;
        for (int i = 0; i < WARMUP && !rc; i++)
            rc = loom_allreduce(g, buf, count, LOOM_DT_F32, LOOM_OP_SUM);
        if (!rc) rc = loom_barrier(g);
        int64_t t0 = loom__now_us();
        for (int i = 0; i < iters && !rc; i++)
            rc = loom_allreduce(g, buf, count, LOOM_DT_F32, LOOM_OP_SUM);
        double us = (double)(loom__now_us() - t0) / iters;
        if (!rc) rc = loom_allreduce(g, &us, 1, LOOM_DT_F64, LOOM_OP_MAX);
        if (!rc && rank == 0) {
            double algbw = (double)bytes / (us * 1e-6) / 1e9;
            printf("%10zu %8d %12.1f %12.3f %12.3f\n", bytes, iters, us, algbw,
                   algbw * 2.0 * (world - 1) / world);
            fflush(stdout);
        }
    }
    if (rc) fprintf(stderr, "rank %d: %s: %s\n", rank, loom_strerror(rc), loom_collective_error(g));
    loom_collective_destroy(&g);
    free(buf);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    int world = argc > 1 ? atoi(argv[1]) : 2;
    size_t max_mib = argc > 2 ? (size_t)atol(argv[2]) : 64;
    if (world < 1 || world > 64 || max_mib < 1) {
        fprintf(stderr, "usage: coll_bench [WORLD 1..64] [MAX_MIB]\n");
        return 2;
    }
    char dir[4096];
    if (loom__make_temp_dir(NULL, "loom-coll-bench", dir, sizeof(dir))) {
        perror("temp dir");
        return 1;
    }
    pid_t pids[64];
    for (int r = 0; r < world; r++) {
        fflush(NULL);
        pids[r] = fork();
        if (pids[r] < 0) {
            perror("fork");
            return 1;
        }
        if (pids[r] == 0) _exit(member(dir, world, r, max_mib));
    }
    int failed = 0;
    for (int r = 0; r < world; r++) {
        int st = 0;
        if (waitpid(pids[r], &st, 0) != pids[r] || !WIFEXITED(st) || WEXITSTATUS(st)) failed++;
    }
    loom__rm_rf(dir);
    return failed ? 1 : 0;
}
