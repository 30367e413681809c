/* bench/loom_scale.c — how the head scales with the number of tasks (issue 5,
 * "Scale"): its memory per pending task, and the submit-to-finish time of
 * graphs of 10k, 100k and 1M no-op tasks (is it linear?).
 *
 *   loom_scale [--pending N] [--sizes N,N,...] [--cpus C] [--json FILE]
 *
 * It starts its own cluster with the `loom` CLI (a head and one node daemon
 * of C CPUs, default 2, in a temporary state dir), so that it can read the
 * head's memory from /proc, and stops it at the end.
 *
 *   sizes     for each size (default 10000,100000,1000000): that many
 *             independent no-op tasks, submitted in graphs of 50,000, then
 *             loom_wait for all; seconds from the first submit to the last
 *             result ("graph_N_noop_s"), tasks/s, and the time per task
 *             relative to the smallest size (1.0 = linear)
 *   pending   then N tasks (default 1,000,000) that wait on one task that
 *             sleeps, submitted in graphs of 50,000: the head's resident
 *             memory before and after, divided by N
 *             ("head_bytes_per_pending_task")
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <loom/loom.h>
#include <loom/value.h>
#include "runtime/util.h"

#ifndef LOOM_EXAMPLES_LIB
#define LOOM_EXAMPLES_LIB "libloom_examples.so"
#endif
#ifndef LOOM_CLI_BIN
#define LOOM_CLI_BIN "loom"
#endif

#define CHUNK 50000
#define MAX_SIZES 8

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The head's pid: the process of the state dir's pids whose command line is
 * "loom _head ...". */
static long head_pid(const char *state)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/pids", state);
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    long found = -1;
    while ((e = readdir(d)) && found < 0) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0) continue;
        char path[64], cmd[512];
        snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(cmd, 1, sizeof cmd - 1, f);
        fclose(f);
        for (size_t i = 0; i < n; i++)
            if (!cmd[i]) cmd[i] = ' ';
        cmd[n] = 0;
        if (strstr(cmd, " _head ")) found = pid;
    }
    closedir(d);
    return found;
}

static long rss_kib(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kib = strtol(line + 6, NULL, 10);
    fclose(f);
    return kib;
}

static int run_cli(const char *args)
{
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "%s %s >/dev/null", LOOM_CLI_BIN, args);
    return system(cmd);
}

/* Submit n tasks of function fn (each with the optional ref argument dep),
 * in graphs of CHUNK; their result refs go to refs. */
static int submit_many(loom_client *c, loom_ref lib, const char *fn, const loom_ref *dep, int n, loom_ref *refs)
{
    loom_pack *p = loom_pack_new();
    for (int base = 0; base < n; base += CHUNK) {
        int m = n - base < CHUNK ? n - base : CHUNK;
        loom_graph *g;
        if (loom_graph_new(&g)) return LOOM_ENOMEM;
        int *ids = malloc(sizeof(int) * (size_t)m);
        for (int i = 0; i < m; i++) {
            ids[i] = loom_graph_task(g, lib, fn, NULL);
            if (dep) {
                loom_graph_arg_ref(g, ids[i], *dep);
            } else {
                loom_pack_reset(p);
                loom_pack_i64(p, base + i);
                loom_graph_arg_value(g, ids[i], loom_pack_data(p), loom_pack_size(p));
            }
        }
        int rc = loom_graph_submit(c, g, &(loom_submit_opts){.job_name = "scale"}, NULL);
        for (int i = 0; !rc && i < m; i++) rc = loom_graph_ref(g, ids[i], 0, &refs[base + i]);
        free(ids);
        loom_graph_destroy(&g);
        if (rc) {
            fprintf(stderr, "loom_scale: submit: %s\n", loom_last_error(c));
            loom_pack_destroy(&p);
            return rc;
        }
    }
    loom_pack_destroy(&p);
    return LOOM_OK;
}

static void release_all(loom_client *c, const loom_ref *refs, int n)
{
    if (loom_release_many(c, refs, n)) fprintf(stderr, "loom_scale: release: %s\n", loom_last_error(c));
}

/* A cluster of one head and one daemon of `cpus` CPUs in a temporary state
 * dir, started and stopped with the CLI, and a client of it. */
typedef struct cluster {
    char state[4096];
    long hpid;
    loom_client *c;
    loom_ref lib;
} cluster;

static void cluster_stop(cluster *cl)
{
    char args[4400];
    loom_disconnect(&cl->c);
    snprintf(args, sizeof args, "stop --state-dir %s", cl->state);
    run_cli(args);
    if (loom__rm_rf(cl->state)) fprintf(stderr, "loom_scale: could not remove %s\n", cl->state);
}

static int cluster_start(cluster *cl, int cpus)
{
    memset(cl, 0, sizeof(*cl));
    if (loom__make_temp_dir(NULL, "loom-scale", cl->state, sizeof cl->state)) {
        perror("loom_scale: a temporary state dir");
        return 1;
    }
    char args[4400];
    snprintf(args, sizeof args, "start --head --port 0 --num-cpus %d --state-dir %s", cpus, cl->state);
    if (run_cli(args) != 0) {
        fprintf(stderr, "loom_scale: could not start a cluster (%s %s)\n", LOOM_CLI_BIN, args);
        loom__rm_rf(cl->state);
        return 1;
    }
    cl->hpid = head_pid(cl->state);
    char addr[512] = "", path[4200];
    snprintf(path, sizeof path, "%s/address", cl->state);
    FILE *f = fopen(path, "r");
    if (f) {
        if (!fgets(addr, sizeof addr, f)) addr[0] = 0;
        fclose(f);
    }
    addr[strcspn(addr, "\n")] = 0;
    loom_connect_opts co = {.state_dir = cl->state};
    if (cl->hpid <= 0 || !addr[0] || loom_connect(addr, &co, &cl->c) ||
        loom_library_load(cl->c, LOOM_EXAMPLES_LIB, &cl->lib)) {
        fprintf(stderr, "loom_scale: cannot use the cluster in %s\n", cl->state);
        cluster_stop(cl);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* one line per figure, as it comes */
    long pending = 1000000;
    long sizes[MAX_SIZES] = {10000, 100000, 1000000};
    int nsizes = 3, cpus = 2;
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--pending") && i + 1 < argc) {
            pending = atol(argv[++i]);
        } else if (!strcmp(argv[i], "--sizes") && i + 1 < argc) {
            nsizes = 0;
            for (char *s = argv[++i], *end; *s && nsizes < MAX_SIZES; s = *end ? end + 1 : end) {
                sizes[nsizes] = strtol(s, &end, 10);
                if (sizes[nsizes] > 0) nsizes++;
                if (end == s) break;
            }
        } else if (!strcmp(argv[i], "--cpus") && i + 1 < argc) {
            cpus = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--json") && i + 1 < argc) {
            json = argv[++i];
        } else {
            fprintf(stderr, "usage: loom_scale [--pending N] [--sizes N,N,...] [--cpus C] [--json FILE]\n");
            return 2;
        }
    }
    if (pending < 0 || pending > 10000000 || cpus < 1 || cpus > 256) {
        fprintf(stderr, "loom_scale: --pending 0..10000000, --cpus 1..256\n");
        return 2;
    }
    int failed = 0;
    cluster cl;
    FILE *js = json ? fopen(json, "w") : NULL;
    if (js) fputc('{', js);
    const char *sep = "";

    /* submit-to-finish of graphs of no-op tasks (a cluster of their own:
       freeing a million results keeps a head busy for a while) */
    double first_per_task = 0;
    if (nsizes > 0 && cluster_start(&cl, cpus)) {
        failed = 1;
        nsizes = 0;
    }
    loom_client *c = cl.c;
    loom_ref lib = cl.lib;
    long hpid = cl.hpid;
    for (int s = 0; s < nsizes; s++) {
        int n = (int)sizes[s];
        loom_ref *refs = calloc((size_t)n, sizeof(loom_ref));
        if (!refs) {
            failed = 1;
            break;
        }
        double t0 = now_s();
        int rc = submit_many(c, lib, "noop", NULL, n, refs);
        int done = rc ? rc : loom_wait(c, refs, n, n, 3600000, NULL);
        double dt = now_s() - t0;
        long hr = rss_kib(hpid);
        if (done != n) {
            printf("graph_%d_noop_s FAILED (%d of %d done: %s)\n", n, done < 0 ? 0 : done, n, loom_last_error(c));
            failed = 1;
        } else {
            double per = dt / n;
            if (s == 0) first_per_task = per;
            printf("graph_%d_noop_s %.2f s (%.0f tasks/s, %.1f us per task, %.2fx the per-task time of %ld; head RSS "
                   "%.0f MiB)\n",
                   n, dt, n / dt, per * 1e6, first_per_task > 0 ? per / first_per_task : 1.0, sizes[0], hr / 1024.0);
            if (js) fprintf(js, "%s\"graph_%d_noop_s\": %.3f", sep, n, dt), sep = ", ";
        }
        release_all(c, refs, n);
        free(refs);
    }
    if (nsizes > 0) cluster_stop(&cl);

    /* memory per pending task, in a fresh cluster */
    if (pending > 0 && cluster_start(&cl, cpus)) {
        failed = 1;
        pending = 0;
    }
    c = cl.c;
    lib = cl.lib;
    hpid = cl.hpid;
    if (pending > 0) {
        loom_pack *p = loom_pack_new();
        loom_pack_i64(p, 600000);
        loom_arg a = loom_arg_value(loom_pack_data(p), loom_pack_size(p));
        loom_ref gate;
        int rc = loom_submit(c, lib, "sleep_ms", &a, 1, NULL, &gate);
        loom_pack_destroy(&p);
        usleep(500000);
        long before = rss_kib(hpid);
        loom_ref *refs = calloc((size_t)pending, sizeof(loom_ref));
        double t0 = now_s();
        if (!rc && refs) rc = submit_many(c, lib, "noop", &gate, (int)pending, refs);
        double dt = now_s() - t0;
        usleep(500000);
        long after = rss_kib(hpid);
        if (rc || before < 0 || after < 0) {
            printf("head_bytes_per_pending_task FAILED\n");
            failed = 1;
        } else {
            double per = (double)(after - before) * 1024.0 / (double)pending;
            printf("pending_tasks %ld (submitted in %.1f s, %.0f tasks/s); head RSS %.1f MiB -> %.1f MiB\n", pending,
                   dt, pending / dt, before / 1024.0, after / 1024.0);
            printf("head_bytes_per_pending_task %.0f bytes\n", per);
            if (js) fprintf(js, "%s\"head_bytes_per_pending_task\": %.0f", sep, per), sep = ", ";
        }
        free(refs); /* the cluster goes with everything in it */
    }

    if (js) {
        fputs("}\n", js);
        fclose(js);
    }
    if (pending > 0) cluster_stop(&cl);
    return failed;
}
