/* bench/zmq_pingpong.c — the machine's floor for one message round trip: two
 * processes (fork) bounce a small message over zmq REQ/REP on ipc://, the same
 * transport and library loom uses within one machine.  Prints the mean µs per
 * round trip; 1e6 / that is the most sync round trips per second one client
 * can make, a ceiling for any request/reply metric.
 *
 *   zmq_pingpong [ROUND_TRIPS (default 20000)] [MSG_BYTES (default 64)] [ipc|tcp|curve]
 *
 * The round trips run in 5 batches and the figure is the median batch's mean:
 * on a small shared machine one batch can be slowed by a neighbour, and the
 * median is what a client can count on.  tcp uses 127.0.0.1 (what a loom
 * driver uses to reach the head); curve is tcp with ZeroMQ CURVE, as loom's
 * cluster sockets speak it (runtime/curve.h): fresh keypairs, no ZAP
 * handler (ZAP costs loom one inproc round trip per connection, not per
 * message).  Besides the round trip it prints the bytes moved per second
 * (both directions), the figure to read with large messages.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define BATCHES 5
#define WARMUP 100

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* CURVE keys (curve mode): the server's pair and the client's. */
static char server_pub[41], server_sec[41], client_pub[41], client_sec[41];
static int use_curve;

/* Binds ep (tcp: an ephemeral port, reported through the pipe fd). */
static int echo_server(const char *ep, int n, size_t size, int fd)
{
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_REP);
    int one = 1;
    if (use_curve && (zmq_setsockopt(s, ZMQ_CURVE_SERVER, &one, sizeof(one)) ||
                      zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, server_sec, 41)))
        return 1;
    if (zmq_bind(s, ep)) return 1;
    char bound[256] = "";
    size_t blen = sizeof(bound);
    zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, bound, &blen);
    if (write(fd, bound, sizeof(bound)) != (ssize_t)sizeof(bound)) return 1;
    close(fd);
    char *buf = malloc(size + 1);
    for (int i = 0; i < n + WARMUP; i++) {
        int k = zmq_recv(s, buf, size + 1, 0);
        if (k < 0 || zmq_send(s, buf, (size_t)k, 0) < 0) return 1;
    }
    free(buf);
    zmq_close(s);
    zmq_ctx_term(ctx);
    return 0;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 20000;
    size_t size = argc > 2 ? (size_t)atol(argv[2]) : 64;
    const char *kind = argc > 3 ? argv[3] : "ipc";
    use_curve = !strcmp(kind, "curve");
    int tcp = use_curve || !strcmp(kind, "tcp");
    if (!tcp && strcmp(kind, "ipc")) {
        fprintf(stderr, "usage: zmq_pingpong [ROUND_TRIPS] [MSG_BYTES] [ipc|tcp|curve]\n");
        return 2;
    }
    if (use_curve && (zmq_curve_keypair(server_pub, server_sec) || zmq_curve_keypair(client_pub, client_sec))) {
        fprintf(stderr, "zmq_pingpong: this libzmq has no CURVE\n");
        return 1;
    }
    if (n < BATCHES) n = BATCHES;
    n -= n % BATCHES;
    char dir[] = "/tmp/zmq_pingpong-" "XX" "XX" "XX", ep[256]; /* a mkdtemp template */
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    if (tcp) snprintf(ep, sizeof(ep), "tcp://127.0.0.1:*");
    else snprintf(ep, sizeof(ep), "ipc://%s/sock", dir);
    int pfd[2];
    if (pipe(pfd)) {
        perror("pipe");
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        close(pfd[0]);
        _exit(echo_server(ep, n, size, pfd[1]));
    }
    close(pfd[1]);
    if (read(pfd[0], ep, sizeof(ep)) != (ssize_t)sizeof(ep)) {
        fprintf(stderr, "zmq_pingpong: the echo process did not start\n");
        return 1;
    }
    close(pfd[0]);

    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_REQ);
    if (use_curve) {
        zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server_pub, 41);
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, client_pub, 41);
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, client_sec, 41);
    }
    zmq_connect(s, ep);
    char *buf = calloc(1, size + 1);
    double us[BATCHES], t0 = 0;
    int rc = 0, per = n / BATCHES;
    for (int i = 0; i < n + WARMUP; i++) {
        if (i >= WARMUP && (i - WARMUP) % per == 0) {
            if (i > WARMUP) us[(i - WARMUP) / per - 1] = (now() - t0) * 1e6 / per;
            t0 = now();
        }
        if (zmq_send(s, buf, size, 0) < 0 || zmq_recv(s, buf, size + 1, 0) < 0) {
            perror("zmq");
            rc = 1;
            break;
        }
    }
    us[BATCHES - 1] = (now() - t0) * 1e6 / per;
    qsort(us, BATCHES, sizeof(double), cmp);
    if (!rc)
        printf("zmq_%s_round_trip_us %.2f us (median of %d batches, min %.2f; %d round trips of %zu bytes, REQ/REP, 2 processes)\n",
               kind, us[BATCHES / 2], BATCHES, us[0], n, size);
    if (!rc)
        printf("zmq_%s_bytes_per_s %.1f MB/s (%zu bytes each way per round trip, median batch)\n", kind,
               2.0 * (double)size / us[BATCHES / 2], size);
    free(buf);
    zmq_close(s);
    zmq_ctx_term(ctx);
    if (rc) kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    char path[160];
    snprintf(path, sizeof(path), "%s/sock", dir);
    unlink(path);
    rmdir(dir);
    return rc;
}
