/* tests/test_collective.c — collective groups (loom/collective.h) among
 * forked processes that meet through a directory rendezvous.  Every operation
 * on every dtype and reduction is checked bit for bit against results
 * computed here (reductions as a left fold in rank order), with odd counts (0,
 * 1, fewer than the members, not divisible by them), in-place forms, buffers
 * large enough to be cut into many chunks, broadcasts from every root and
 * long sequences of operations, for 1 to 4 members.  Failures: a member that
 * never joins or stops answering (LOOM_ETIMEOUT, then LOOM_ESTATE), malformed
 * messages (LOOM_EPROTO), bad arguments, and backend selection (explicit NCCL
 * without a GPU is LOOM_ENOTFOUND; AUTO then picks the CPU).  Members report
 * through their exit status; every wait is bounded. */
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>
#include "loom/collective.h"
#include "runtime/util.h"
#include "testutil.h"

#define MAX_MEMBERS 8
#define GROUP_LIMIT_MS 90000     /* a whole group run, before its members are killed */

static char rv_dir[4096];
static int nccl_usable;          /* explicit NCCL worked in this process's test */

static const int dtypes[] = { LOOM_DT_F32, LOOM_DT_F64, LOOM_DT_I32, LOOM_DT_I64, LOOM_DT_U8 };
static const int ops[] = { LOOM_OP_SUM, LOOM_OP_PROD, LOOM_OP_MIN, LOOM_OP_MAX };
#define NDTYPES (int)(sizeof(dtypes) / sizeof(dtypes[0]))
#define NOPS (int)(sizeof(ops) / sizeof(ops[0]))

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* ---- data ----------------------------------------------------------------- */

/* Member r's element i for a reduction op: small integers, so every fold is
 * exact in every dtype (products of up to 8 members stay below 2^13). */
static long value(int op, int r, size_t i)
{
    size_t u = i * 2654435761u + (size_t)r * 40503u;
    switch (op) {
    case LOOM_OP_SUM: return (long)(u % 41) - 20;
    case LOOM_OP_PROD: return (long)(u % 3) + 1 - (u % 7 == 0 ? 4 : 0);   /* -3..3, no 0 */
    default: return (long)(u % 101) - 50;
    }
}

static void put_elem(int dt, void *buf, size_t i, long v)
{
    switch (dt) {
    case LOOM_DT_F32: ((float *)buf)[i] = (float)v; break;
    case LOOM_DT_F64: ((double *)buf)[i] = (double)v; break;
    case LOOM_DT_I32: ((int32_t *)buf)[i] = (int32_t)v; break;
    case LOOM_DT_I64: ((int64_t *)buf)[i] = (int64_t)v; break;
    default: ((uint8_t *)buf)[i] = (uint8_t)v; break;
    }
}

static void fill(int dt, int op, int r, void *buf, size_t count, size_t salt)
{
    for (size_t i = 0; i < count; i++) {
        long v = value(op, r, i + salt);
        if (op == LOOM_OP_PROD && v == 0) v = 1;
        put_elem(dt, buf, i, v);
    }
}

#define COMBINE(T, UT) do {                                                   \
        T *a_ = acc; const T *b_ = x;                                         \
        for (size_t i = 0; i < n; i++) {                                      \
            T a = a_[i], b = b_[i];                                           \
            switch (op) {                                                     \
            case LOOM_OP_SUM: a_[i] = (T)(UT)((UT)a + (UT)b); break;          \
            case LOOM_OP_PROD: a_[i] = (T)(UT)((UT)a * (UT)b); break;         \
            case LOOM_OP_MIN: a_[i] = a < b ? a : b; break;                   \
            default: a_[i] = a > b ? a : b; break;                            \
            }                                                                 \
        }                                                                     \
    } while (0)

/* acc = acc op x, elementwise. */
static void combine(int dt, int op, void *acc, const void *x, size_t n)
{
    switch (dt) {
    case LOOM_DT_F32: COMBINE(float, float); break;
    case LOOM_DT_F64: COMBINE(double, double); break;
    case LOOM_DT_I32: COMBINE(int32_t, uint32_t); break;
    case LOOM_DT_I64: COMBINE(int64_t, uint64_t); break;
    default: COMBINE(uint8_t, uint8_t); break;
    }
}

/* What a reduction over world members gives: the rank-order left fold. */
static void expected_fold(int dt, int op, int world, void *out, size_t count, size_t salt)
{
    size_t es = loom_dtype_size(dt);
    void *tmp = malloc(count * es + 1);
    REQUIRE(tmp);
    fill(dt, op, 0, out, count, salt);
    for (int r = 1; r < world; r++) {
        fill(dt, op, r, tmp, count, salt);
        combine(dt, op, out, tmp, count);
    }
    free(tmp);
}

static int same(const void *a, const void *b, size_t bytes)
{
    return bytes == 0 || memcmp(a, b, bytes) == 0;
}

/* fork, with a child that starts counting its own failures. */
static pid_t fork_child(void)
{
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        loom_test_failures = 0;
        loom_test_checks = 0;
    }
    return pid;
}

/* ---- groups of forked members --------------------------------------------- */

typedef void (*member_fn)(loom_collective *g, void *arg);

static void member_main(int world, int rank, const char *name, const loom_collective_opts *opts,
                        member_fn fn, void *arg)
{
    loom_rendezvous rv;
    loom_rendezvous_dir(&rv, rv_dir);
    loom_collective *g = NULL;
    int rc = loom_collective_init(&rv, name, world, rank, opts, &g);
    if (rc) {
        fprintf(stderr, "%s rank %d: init: %s: %s\n", name, rank, loom_strerror(rc),
                loom_collective_error(NULL));
        exit(2);
    }
    CHECK(loom_collective_rank(g) == rank);
    CHECK(loom_collective_world(g) == world);
    CHECK(strcmp(loom_collective_error(g), "") == 0);
    fn(g, arg);
    loom_collective_destroy(&g);
    CHECK(g == NULL);
    exit(loom_test_failures ? 1 : 0);
}

/* Wait for the members (killing them at the deadline); how many failed. */
static int wait_members(pid_t *pids, int n, int64_t limit_ms)
{
    int64_t deadline = loom__now_ms() + limit_ms;
    int failed = 0, left = n;
    while (left > 0) {
        for (int i = 0; i < n; i++) {
            if (pids[i] <= 0) continue;
            int st = 0;
            pid_t w = waitpid(pids[i], &st, WNOHANG);
            if (w == 0) continue;
            if (w < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                fprintf(stderr, "member %d failed (status %#x)\n", i, st);
                failed++;
            }
            pids[i] = 0;
            left--;
        }
        if (left > 0 && loom__now_ms() > deadline) {
            for (int i = 0; i < n; i++) {
                if (pids[i] <= 0) continue;
                fprintf(stderr, "member %d still running after %lld ms: killed\n", i,
                        (long long)limit_ms);
                kill(pids[i], SIGKILL);
                waitpid(pids[i], NULL, 0);
                pids[i] = 0;
                failed++;
                left--;
            }
        }
        if (left > 0) sleep_ms(5);
    }
    return failed;
}

static pid_t fork_member(int world, int rank, const char *name, const loom_collective_opts *opts,
                         member_fn fn, void *arg)
{
    pid_t pid = fork_child();
    if (pid == 0) member_main(world, rank, name, opts, fn, arg);
    return pid;
}

/* Run fn on every member of a fresh CPU group of `world`; members that failed. */
static int run_group(int world, const char *name, member_fn fn, void *arg)
{
    loom_collective_opts opts = { .backend = LOOM_COLL_CPU, .timeout_ms = 30000 };
    pid_t pids[MAX_MEMBERS];
    for (int r = 0; r < world; r++) pids[r] = fork_member(world, r, name, &opts, fn, arg);
    int64_t t0 = loom__now_ms();
    int failed = wait_members(pids, world, GROUP_LIMIT_MS);
    printf("  %-28s world %d: %s (%lld ms)\n", name, world, failed ? "FAILED" : "ok",
           (long long)(loom__now_ms() - t0));
    return failed;
}

/* ---- what members do ------------------------------------------------------- */

static void check_allreduce(loom_collective *g, int dt, int op, size_t count, size_t salt)
{
    int n = loom_collective_world(g), r = loom_collective_rank(g);
    size_t es = loom_dtype_size(dt);
    uint8_t *buf = malloc(count * es + 1), *want = malloc(count * es + 1);
    REQUIRE(buf && want);
    fill(dt, op, r, buf, count, salt);
    expected_fold(dt, op, n, want, count, salt);
    CHECK_RC(loom_allreduce(g, buf, count, dt, op), 0);
    if (!same(buf, want, count * es)) {
        fprintf(stderr, "allreduce dtype %d op %d count %zu: wrong result on rank %d\n", dt, op,
                count, r);
        CHECK(0);
    }
    free(buf);
    free(want);
}

static void check_reduce_scatter(loom_collective *g, int dt, int op, size_t count, int in_place)
{
    int n = loom_collective_world(g), r = loom_collective_rank(g);
    size_t es = loom_dtype_size(dt), all = count * (size_t)n;
    uint8_t *send = malloc(all * es + 1), *recv = malloc(count * es + 1), *want = malloc(all * es + 1);
    REQUIRE(send && recv && want);
    fill(dt, op, r, send, all, 3);
    expected_fold(dt, op, n, want, all, 3);
    uint8_t *out = in_place ? send + (size_t)r * count * es : recv;
    CHECK_RC(loom_reduce_scatter(g, send, count, dt, op, out), 0);
    if (!same(out, want + (size_t)r * count * es, count * es)) {
        fprintf(stderr, "reduce_scatter dtype %d op %d count %zu%s: wrong on rank %d\n", dt, op,
                count, in_place ? " in place" : "", r);
        CHECK(0);
    }
    free(send);
    free(recv);
    free(want);
}

static void check_allgather(loom_collective *g, int dt, size_t count, int in_place)
{
    int n = loom_collective_world(g), r = loom_collective_rank(g);
    size_t es = loom_dtype_size(dt), all = count * (size_t)n;
    uint8_t *send = malloc(count * es + 1), *recv = malloc(all * es + 1), *want = malloc(all * es + 1);
    REQUIRE(send && recv && want);
    memset(recv, 0xab, all * es);
    for (int p = 0; p < n; p++) fill(dt, LOOM_OP_MAX, p, want + (size_t)p * count * es, count, 5);
    uint8_t *in = in_place ? recv + (size_t)r * count * es : send;
    fill(dt, LOOM_OP_MAX, r, in, count, 5);
    CHECK_RC(loom_allgather(g, in, count, dt, recv), 0);
    if (!same(recv, want, all * es)) {
        fprintf(stderr, "allgather dtype %d count %zu%s: wrong on rank %d\n", dt, count,
                in_place ? " in place" : "", r);
        CHECK(0);
    }
    free(send);
    free(recv);
    free(want);
}

static void check_broadcast(loom_collective *g, int dt, size_t count, int root)
{
    int r = loom_collective_rank(g);
    size_t es = loom_dtype_size(dt);
    uint8_t *buf = malloc(count * es + 1), *want = malloc(count * es + 1);
    REQUIRE(buf && want);
    fill(dt, LOOM_OP_MIN, root, want, count, 11);
    if (r == root) memcpy(buf, want, count * es);
    else memset(buf, 0x5c, count * es);
    CHECK_RC(loom_broadcast(g, buf, count, dt, root), 0);
    if (!same(buf, want, count * es)) {
        fprintf(stderr, "broadcast dtype %d count %zu root %d: wrong on rank %d\n", dt, count,
                root, r);
        CHECK(0);
    }
    free(buf);
    free(want);
}

/* Floats whose sums depend on the order they are added in. */
static float wild_f32(int r, size_t i)
{
    uint32_t u = (uint32_t)(i * 2654435761u) ^ (uint32_t)(r * 97 + 1) * 2246822519u;
    return ldexpf((float)(u & 0xffffff) / 16777216.0f - 0.5f, (int)((u >> 24) % 48) - 24);
}

static void check_rank_order(loom_collective *g)
{
    int n = loom_collective_world(g), r = loom_collective_rank(g);
    size_t count = 50021;
    float *buf = malloc(count * sizeof(float)), *want = malloc(count * sizeof(float));
    double *dbuf = malloc(count * sizeof(double)), *dwant = malloc(count * sizeof(double));
    REQUIRE(buf && want && dbuf && dwant);
    for (size_t i = 0; i < count; i++) {
        buf[i] = wild_f32(r, i);
        dbuf[i] = (double)wild_f32(r, i) * (1.0 + 1e-9 * (double)r);
        want[i] = wild_f32(0, i);
        dwant[i] = (double)wild_f32(0, i);
        for (int p = 1; p < n; p++) {
            want[i] = want[i] + wild_f32(p, i);
            dwant[i] = dwant[i] + (double)wild_f32(p, i) * (1.0 + 1e-9 * (double)p);
        }
    }
    CHECK_RC(loom_allreduce(g, buf, count, LOOM_DT_F32, LOOM_OP_SUM), 0);
    CHECK_RC(loom_allreduce(g, dbuf, count, LOOM_DT_F64, LOOM_OP_SUM), 0);
    CHECK(memcmp(buf, want, count * sizeof(float)) == 0);
    CHECK(memcmp(dbuf, dwant, count * sizeof(double)) == 0);
    free(buf);
    free(want);
    free(dbuf);
    free(dwant);
}

static void m_everything(loom_collective *g, void *arg)
{
    (void)arg;
    int n = loom_collective_world(g);
    CHECK(loom_collective_backend(g) == LOOM_COLL_CPU);
    size_t counts[] = { 0, 1, (size_t)n - 1, (size_t)n + 1, 7, 1000, 300001 };
    for (int d = 0; d < NDTYPES; d++)
        for (int o = 0; o < NOPS; o++)
            for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++)
                check_allreduce(g, dtypes[d], ops[o], counts[c], c * 101);
    size_t rs_counts[] = { 0, 1, 3, 1000, 140001 };
    for (int d = 0; d < NDTYPES; d++)
        for (int o = 0; o < NOPS; o++)
            for (size_t c = 0; c < sizeof(rs_counts) / sizeof(rs_counts[0]); c++)
                check_reduce_scatter(g, dtypes[d], ops[o], rs_counts[c], 0);
    check_reduce_scatter(g, LOOM_DT_F32, LOOM_OP_SUM, 1000, 1);
    check_reduce_scatter(g, LOOM_DT_I64, LOOM_OP_PROD, 140001, 1);
    for (int d = 0; d < NDTYPES; d++)
        for (size_t c = 0; c < sizeof(rs_counts) / sizeof(rs_counts[0]); c++)
            check_allgather(g, dtypes[d], rs_counts[c], 0);
    check_allgather(g, LOOM_DT_F64, 1000, 1);
    check_allgather(g, LOOM_DT_U8, 140001, 1);
    size_t bc_counts[] = { 0, 1, 13, 300007 };
    for (int root = 0; root < n; root++)
        for (int d = 0; d < NDTYPES; d++)
            for (size_t c = 0; c < sizeof(bc_counts) / sizeof(bc_counts[0]); c++)
                check_broadcast(g, dtypes[d], bc_counts[c], root);
    check_rank_order(g);
    for (int i = 0; i < 5; i++) CHECK_RC(loom_barrier(g), 0);
}

/* 16 Mi floats: many chunks per block. */
static void m_large(loom_collective *g, void *arg)
{
    (void)arg;
    int n = loom_collective_world(g), r = loom_collective_rank(g);
    size_t count = (size_t)16 << 20;
    float *buf = malloc(count * sizeof(float));
    REQUIRE(buf);
    for (size_t i = 0; i < count; i++) buf[i] = (float)value(LOOM_OP_SUM, r, i);
    int64_t t0 = loom__now_ms();
    CHECK_RC(loom_allreduce(g, buf, count, LOOM_DT_F32, LOOM_OP_SUM), 0);
    int64_t t1 = loom__now_ms();
    size_t bad = 0;
    for (size_t i = 0; i < count; i++) {
        long want = 0;
        for (int p = 0; p < n; p++) want += value(LOOM_OP_SUM, p, i);
        if (buf[i] != (float)want) bad++;
    }
    CHECK(bad == 0);
    /* broadcast from the last member, over the same buffer */
    for (size_t i = 0; i < count; i++) buf[i] = r == n - 1 ? (float)(i % 1000003) : -1.0f;
    CHECK_RC(loom_broadcast(g, buf, count, LOOM_DT_F32, n - 1), 0);
    bad = 0;
    for (size_t i = 0; i < count; i++) bad += buf[i] != (float)(i % 1000003);
    CHECK(bad == 0);
    if (r == 0)
        printf("    allreduce of 64 MiB among %d: %lld ms\n", n, (long long)(t1 - t0));
    free(buf);
}

/* Hundreds of small operations of every kind, back to back. */
static void m_sequence(loom_collective *g, void *arg)
{
    (void)arg;
    int n = loom_collective_world(g), r = loom_collective_rank(g);
    for (int i = 0; i < 400; i++) {
        int64_t v[17], gathered[17 * MAX_MEMBERS];
        size_t count = (size_t)(i % 17);
        switch (i % 4) {
        case 0:
            for (size_t k = 0; k < count; k++) v[k] = i + r + (int64_t)k;
            CHECK_RC(loom_allreduce(g, v, count, LOOM_DT_I64, LOOM_OP_SUM), 0);
            for (size_t k = 0; k < count; k++)
                CHECK(v[k] == (int64_t)n * (i + (int64_t)k) + (int64_t)n * (n - 1) / 2);
            break;
        case 1:
            CHECK_RC(loom_barrier(g), 0);
            break;
        case 2:
            for (size_t k = 0; k < count; k++) v[k] = r == i % n ? i * 1000 + (int64_t)k : -1;
            CHECK_RC(loom_broadcast(g, v, count, LOOM_DT_I64, i % n), 0);
            for (size_t k = 0; k < count; k++) CHECK(v[k] == i * 1000 + (int64_t)k);
            break;
        default:
            for (size_t k = 0; k < count; k++) v[k] = r * 100 + (int64_t)k;
            CHECK_RC(loom_allgather(g, v, count, LOOM_DT_I64, gathered), 0);
            for (int p = 0; p < n; p++)
                for (size_t k = 0; k < count; k++)
                    CHECK(gathered[(size_t)p * count + k] == p * 100 + (int64_t)k);
            break;
        }
    }
}

/* Bad arguments fail with LOOM_EINVAL and leave the group usable. */
static void m_bad_args(loom_collective *g, void *arg)
{
    (void)arg;
    float x[4] = { 1, 2, 3, 4 };
    CHECK_RC(loom_allreduce(g, x, 4, 99, LOOM_OP_SUM), LOOM_EINVAL);
    CHECK(strstr(loom_collective_error(g), "dtype") != NULL);
    CHECK_RC(loom_allreduce(g, x, 4, LOOM_DT_F32, 7), LOOM_EINVAL);
    CHECK_RC(loom_allreduce(g, NULL, 4, LOOM_DT_F32, LOOM_OP_SUM), LOOM_EINVAL);
    CHECK_RC(loom_allreduce(g, x, SIZE_MAX / 2, LOOM_DT_F32, LOOM_OP_SUM), LOOM_EINVAL);
    CHECK_RC(loom_broadcast(g, x, 4, LOOM_DT_F32, loom_collective_world(g)), LOOM_EINVAL);
    CHECK_RC(loom_broadcast(g, x, 4, LOOM_DT_F32, -1), LOOM_EINVAL);
    CHECK_RC(loom_allgather(g, x, SIZE_MAX / 2, LOOM_DT_F32, x), LOOM_EINVAL);
    CHECK_RC(loom_allreduce(g, x, 4, LOOM_DT_F32, LOOM_OP_SUM), 0);
    CHECK(x[0] == (float)loom_collective_world(g));
}

/* ---- failures --------------------------------------------------------------- */

/* Rank 2 of 3 never comes: the others give up within the timeout. */
static void test_never_joins(void)
{
    pid_t pids[2];
    for (int r = 0; r < 2; r++) {
        pids[r] = fork_child();
        if (pids[r] == 0) {
            loom_rendezvous rv;
            loom_rendezvous_dir(&rv, rv_dir);
            loom_collective_opts opts = { .backend = LOOM_COLL_CPU, .timeout_ms = 500 };
            loom_collective *g = (loom_collective *)(uintptr_t)1;   /* must become NULL */
            int64_t t0 = loom__now_ms();
            CHECK_RC(loom_collective_init(&rv, "absent", 3, r, &opts, &g), LOOM_ETIMEOUT);
            int64_t took = loom__now_ms() - t0;
            CHECK(g == NULL);
            CHECK(took >= 400 && took < 3000);
            CHECK(strstr(loom_collective_error(NULL), "rank 2") != NULL);
            exit(loom_test_failures ? 1 : 0);
        }
    }
    CHECK(wait_members(pids, 2, 20000) == 0);
}

/* Member 1 joins and leaves: member 0's next operation times out, and the
 * group refuses operations after that. */
static void test_stops_answering(void)
{
    pid_t pids[2];
    for (int r = 0; r < 2; r++) {
        pids[r] = fork_child();
        if (pids[r] != 0) continue;
        loom_rendezvous rv;
        loom_rendezvous_dir(&rv, rv_dir);
        loom_collective_opts opts = { .backend = LOOM_COLL_CPU, .timeout_ms = 500 };
        loom_collective *g = NULL;
        CHECK_RC(loom_collective_init(&rv, "quitter", 2, r, &opts, &g), 0);
        if (r == 0 && g) {
            float x[100] = { 0 };
            int64_t t0 = loom__now_ms();
            CHECK_RC(loom_allreduce(g, x, 100, LOOM_DT_F32, LOOM_OP_SUM), LOOM_ETIMEOUT);
            int64_t took = loom__now_ms() - t0;
            CHECK(took >= 400 && took < 3000);
            CHECK(strstr(loom_collective_error(g), "rank 1") != NULL);
            CHECK_RC(loom_barrier(g), LOOM_ESTATE);
            CHECK(strstr(loom_collective_error(g), "earlier failure") != NULL);
        }
        loom_collective_destroy(&g);
        exit(loom_test_failures ? 1 : 0);
    }
    CHECK(wait_members(pids, 2, 20000) == 0);
}

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* A message in the CPU backend's framing (see api/collective.c). */
static size_t frame(uint8_t *out, const char *group, uint64_t seq, uint32_t chunk, uint32_t src,
                    uint32_t kind, const void *payload, uint32_t len, uint32_t claimed_len)
{
    uint32_t magic = 0x4c434f4cu, h = fnv1a(group);
    memcpy(out, &magic, 4);
    memcpy(out + 4, &h, 4);
    memcpy(out + 8, &seq, 8);
    memcpy(out + 16, &chunk, 4);
    memcpy(out + 20, &src, 4);
    memcpy(out + 24, &kind, 4);
    memcpy(out + 28, &claimed_len, 4);
    memcpy(out + 32, payload, len);
    return 32 + (size_t)len;
}

/* The group's CURVE keys, "PUB SEC" in the rendezvous (api/collective.c),
 * set on the fake member's sockets as a real member would. */
static void use_group_keys(loom_rendezvous *rv, const char *group, void *pull, void *push)
{
    char key[256], pub[41], sec[41];
    snprintf(key, sizeof(key), "loom/coll/%s/curve", group);
    void *val = NULL;
    size_t len = 0;
    REQUIRE(rv->get(rv->arg, key, 10000, &val, &len) == 0 && len == 81);
    memcpy(pub, val, 40);
    memcpy(sec, (char *)val + 41, 40);
    pub[40] = sec[40] = 0;
    free(val);
    int one = 1;
    REQUIRE(zmq_setsockopt(pull, ZMQ_CURVE_SERVER, &one, sizeof(one)) == 0);
    REQUIRE(zmq_setsockopt(pull, ZMQ_CURVE_SECRETKEY, sec, 41) == 0);
    REQUIRE(zmq_setsockopt(push, ZMQ_CURVE_SERVERKEY, pub, 41) == 0);
    REQUIRE(zmq_setsockopt(push, ZMQ_CURVE_PUBLICKEY, pub, 41) == 0);
    REQUIRE(zmq_setsockopt(push, ZMQ_CURVE_SECRETKEY, sec, 41) == 0);
}

/* A fake member 1 of a group of 2 that says `junk` (before or after a proper
 * hello); member 0 must fail with LOOM_EPROTO, not crash or hang.  With
 * keys 0 it speaks plaintext: its junk must never reach member 0, whose
 * join then times out. */
static void fake_member(const char *group, int after_hello, int keys)
{
    loom_rendezvous rv;
    loom_rendezvous_dir(&rv, rv_dir);
    void *ctx = zmq_ctx_new(), *pull = zmq_socket(ctx, ZMQ_PULL), *push = zmq_socket(ctx, ZMQ_PUSH);
    if (keys) use_group_keys(&rv, group, pull, push);
    REQUIRE(zmq_bind(pull, "tcp://127.0.0.1:*") == 0);
    char ep[256];
    size_t eplen = sizeof(ep);
    REQUIRE(zmq_getsockopt(pull, ZMQ_LAST_ENDPOINT, ep, &eplen) == 0);
    char rec[300], key[256];
    snprintf(rec, sizeof(rec), "127.0.0.1\n%s,0", strrchr(ep, ':') + 1);
    snprintf(key, sizeof(key), "loom/coll/%s/1", group);
    REQUIRE(rv.put(rv.arg, key, rec, strlen(rec)) == 0);
    snprintf(key, sizeof(key), "loom/coll/%s/0", group);
    void *val = NULL;
    size_t len = 0;
    REQUIRE(rv.get(rv.arg, key, 10000, &val, &len) == 0);
    char *ports = memchr(val, '\n', len);
    REQUIRE(ports);
    char *comma = strchr(ports, ',');
    REQUIRE(comma);
    snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%d", atoi(comma + 1));
    free(val);
    REQUIRE(zmq_connect(push, ep) == 0);
    uint8_t msg[256];
    if (after_hello) {
        uint32_t hello[2] = { 2, 0 };
        size_t n = frame(msg, group, 0, 0, 1, 1, hello, sizeof(hello), sizeof(hello));
        REQUIRE(zmq_send(push, msg, n, 0) == (int)n);
        /* operation 1, reduce-scatter part: claims 64 bytes, carries 8 */
        n = frame(msg, group, 1, 0, 1, 2, hello, sizeof(hello), 64);
        REQUIRE(zmq_send(push, msg, n, 0) == (int)n);
    } else {
        REQUIRE(zmq_send(push, "junk", 4, 0) == 4);
    }
    sleep_ms(1500);     /* let member 0 read it before the connection goes */
    int zero = 0;
    zmq_setsockopt(push, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(pull, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_close(push);
    zmq_close(pull);
    zmq_ctx_term(ctx);
    exit(0);
}

static void test_malformed(int after_hello, int keys)
{
    const char *group = !keys ? "stranger" : after_hello ? "liar" : "garbler";
    pid_t pids[2];
    pids[1] = fork_child();
    if (pids[1] == 0) fake_member(group, after_hello, keys);
    pids[0] = fork_child();
    if (pids[0] == 0) {
        loom_rendezvous rv;
        loom_rendezvous_dir(&rv, rv_dir);
        loom_collective_opts opts = { .backend = LOOM_COLL_CPU, .timeout_ms = 5000 };
        loom_collective *g = NULL;
        int rc = loom_collective_init(&rv, group, 2, 0, &opts, &g);
        if (!keys) {
            /* a plaintext peer's hello and junk never get through CURVE */
            CHECK_RC(rc, LOOM_ETIMEOUT);
            CHECK(g == NULL);
        } else if (!after_hello) {
            CHECK_RC(rc, LOOM_EPROTO);
            CHECK(strstr(loom_collective_error(NULL), "unexpected message") != NULL);
        } else {
            CHECK_RC(rc, 0);
            float x[4] = { 1, 2, 3, 4 };
            if (g) CHECK_RC(loom_allreduce(g, x, 4, LOOM_DT_F32, LOOM_OP_SUM), LOOM_EPROTO);
            CHECK(x[0] == 1);
            loom_collective_destroy(&g);
        }
        exit(loom_test_failures ? 1 : 0);
    }
    CHECK(wait_members(pids, 2, 20000) == 0);
}

/* Explicit NCCL: LOOM_ENOTFOUND with a reason where there is no GPU or NCCL;
 * AUTO then picks the CPU.  Where NCCL works (one member per GPU), a group of
 * one runs every operation through it, on host buffers. */
static void m_auto(loom_collective *g, void *arg)
{
    int *want = arg;
    CHECK(loom_collective_backend(g) == *want);
    float x[3] = { 1, 2, 3 };
    CHECK_RC(loom_allreduce(g, x, 3, LOOM_DT_F32, LOOM_OP_SUM), 0);
    CHECK(x[2] == 3.0f * (float)loom_collective_world(g));
}

static void test_backends(void)
{
    loom_rendezvous rv;
    loom_rendezvous_dir(&rv, rv_dir);
    loom_collective_opts opts = { .backend = LOOM_COLL_NCCL, .timeout_ms = 20000 };
    /* in a child: CUDA must not be initialised in the parent before it forks */
    pid_t pid = fork_child();
    if (pid == 0) {
        loom_collective *g = NULL;
        int rc = loom_collective_init(&rv, "nccl1", 1, 0, &opts, &g);
        if (rc == LOOM_ENOTFOUND) {
            const char *why = loom_collective_error(NULL);
            printf("  explicit NCCL: %s\n", why);
            CHECK(strstr(why, "not found") || strstr(why, "no GPU"));
            CHECK(g == NULL);
            exit(loom_test_failures ? 1 : 3);   /* 3: NCCL unavailable */
        }
        CHECK_RC(rc, 0);
        if (g) {
            printf("  explicit NCCL: available; one member on the GPU\n");
            CHECK(loom_collective_backend(g) == LOOM_COLL_NCCL);
            for (int d = 0; d < NDTYPES; d++)
                for (int o = 0; o < NOPS; o++) check_allreduce(g, dtypes[d], ops[o], 1001, 0);
            check_reduce_scatter(g, LOOM_DT_F32, LOOM_OP_SUM, 1000, 0);
            check_allgather(g, LOOM_DT_I32, 1000, 0);
            check_broadcast(g, LOOM_DT_F64, 1000, 0);
            CHECK_RC(loom_barrier(g), 0);
        }
        loom_collective_destroy(&g);
        exit(loom_test_failures ? 1 : 0);
    }
    int st = 0;
    int64_t deadline = loom__now_ms() + 60000;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (loom__now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            break;
        }
        sleep_ms(5);
    }
    CHECK(WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 3));
    nccl_usable = WIFEXITED(st) && WEXITSTATUS(st) == 0;

    /* AUTO: rank 0 decides, the others follow. */
    int want = nccl_usable ? LOOM_COLL_NCCL : LOOM_COLL_CPU;
    loom_collective_opts auto_opts = { .backend = LOOM_COLL_AUTO, .timeout_ms = 20000 };
    int members = nccl_usable ? 1 : 2;   /* NCCL wants one GPU per member */
    pid_t pids[2];
    for (int r = 0; r < members; r++)
        pids[r] = fork_member(members, r, "auto", &auto_opts, m_auto, &want);
    CHECK(wait_members(pids, members, 60000) == 0);
}

static void test_init_args(void)
{
    loom_rendezvous rv;
    loom_rendezvous_dir(&rv, rv_dir);
    loom_collective *g = NULL;
    loom_collective_opts bad = { .backend = 7 };
    CHECK_RC(loom_collective_init(&rv, "x", 0, 0, NULL, &g), LOOM_EINVAL);
    CHECK_RC(loom_collective_init(&rv, "x", 2, 2, NULL, &g), LOOM_EINVAL);
    CHECK_RC(loom_collective_init(&rv, "x", 2, -1, NULL, &g), LOOM_EINVAL);
    CHECK_RC(loom_collective_init(&rv, NULL, 1, 0, NULL, &g), LOOM_EINVAL);
    CHECK_RC(loom_collective_init(&rv, "", 1, 0, NULL, &g), LOOM_EINVAL);
    CHECK_RC(loom_collective_init(NULL, "x", 1, 0, NULL, &g), LOOM_EINVAL);
    CHECK_RC(loom_collective_init(&rv, "x", 1, 0, &bad, &g), LOOM_EINVAL);
    CHECK_RC(loom_collective_init(&rv, "x", 1, 0, NULL, NULL), LOOM_EINVAL);
    CHECK(g == NULL);
    CHECK(loom_collective_error(NULL)[0] != 0);
    loom_collective_destroy(&g);
    loom_collective_destroy(NULL);
    CHECK(loom_dtype_size(LOOM_DT_F64) == 8 && loom_dtype_size(LOOM_DT_U8) == 1);
    CHECK(loom_dtype_size(-1) == 0);
}

static void test_dir_rendezvous(void)
{
    loom_rendezvous rv;
    loom_rendezvous_dir(&rv, rv_dir);
    CHECK(rv.arg == (void *)rv_dir);
    CHECK_RC(rv.put(rv.arg, "a/b/c", "xyz", 3), 0);
    void *val = NULL;
    size_t len = 0;
    CHECK_RC(rv.get(rv.arg, "a/b/c", 0, &val, &len), 0);
    CHECK(len == 3 && val && memcmp(val, "xyz", 3) == 0);
    free(val);
    val = NULL;
    int64_t t0 = loom__now_ms();
    CHECK_RC(rv.get(rv.arg, "a/b/missing", 100, &val, &len), LOOM_ETIMEOUT);
    int64_t took = loom__now_ms() - t0;
    CHECK(took >= 90 && took < 2000);
    CHECK(val == NULL);
    CHECK_RC(rv.put(rv.arg, "..", "x", 1), LOOM_EINVAL);
    CHECK_RC(rv.put(rv.arg, "", "x", 1), LOOM_EINVAL);
}

int main(void)
{
    REQUIRE(loom__make_temp_dir(NULL, "loom-coll-test", rv_dir, sizeof(rv_dir)) == 0);
    printf("rendezvous in %s\n", rv_dir);
    test_init_args();
    test_dir_rendezvous();
    test_backends();

    CHECK(run_group(1, "everything-1", m_everything, NULL) == 0);
    CHECK(run_group(2, "everything-2", m_everything, NULL) == 0);
    CHECK(run_group(3, "everything-3", m_everything, NULL) == 0);
    CHECK(run_group(4, "everything-4", m_everything, NULL) == 0);
    CHECK(run_group(2, "large-2", m_large, NULL) == 0);
    CHECK(run_group(3, "large-3", m_large, NULL) == 0);
    CHECK(run_group(4, "large-4", m_large, NULL) == 0);
    CHECK(run_group(1, "sequence-1", m_sequence, NULL) == 0);
    CHECK(run_group(3, "sequence-3", m_sequence, NULL) == 0);
    CHECK(run_group(4, "sequence-4", m_sequence, NULL) == 0);
    CHECK(run_group(1, "bad-args-1", m_bad_args, NULL) == 0);
    CHECK(run_group(2, "bad-args-2", m_bad_args, NULL) == 0);

    test_never_joins();
    test_stops_answering();
    test_malformed(0, 1);
    test_malformed(1, 1);
    test_malformed(0, 0);

    loom__rm_rf(rv_dir);
    return TEST_DONE();
}
