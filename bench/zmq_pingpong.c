/* bench/zmq_pingpong.c — the machine's floor for one message round trip: two
 * processes (fork) bounce a small message over zmq REQ/REP on ipc://, the same
 * transport and library loom uses within one machine.  Prints the mean µs per
 * round trip; 1e6 / that is the most sync round trips per second one client
 * can make, a ceiling for any request/reply metric.
 *
 *   zmq_pingpong [ROUND_TRIPS (default 20000)] [MSG_BYTES (default 64)]
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

static int echo_server(const char *ep, int n, size_t size)
{
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_REP);
    if (zmq_bind(s, ep)) return 1;
    char *buf = malloc(size + 1);
    for (int i = 0; i < n + 100; i++) {
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
    if (n < 1) n = 1;
    char dir[] = "/tmp/zmq_pingpong-XXXXXX", ep[128];
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(ep, sizeof(ep), "ipc://%s/sock", dir);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) _exit(echo_server(ep, n, size));

    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_REQ);
    zmq_connect(s, ep); /* ipc connect retries until the child has bound */
    char *buf = calloc(1, size + 1);
    double t0 = 0;
    int rc = 0;
    for (int i = 0; i < n + 100; i++) { /* the first 100 are a warm-up */
        if (i == 100) t0 = now();
        if (zmq_send(s, buf, size, 0) < 0 || zmq_recv(s, buf, size + 1, 0) < 0) {
            perror("zmq");
            rc = 1;
            break;
        }
    }
    double us = (now() - t0) * 1e6 / n;
    if (!rc) printf("zmq_ipc_round_trip_us %.2f us (%d round trips of %zu bytes, REQ/REP, 2 processes)\n", us, n, size);
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
