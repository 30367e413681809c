/* bench/loom_scale.c — how the head scales with the number of tasks (issue 5,
 * "Scale"): its memory per pending task, and the submit-to-finish time of
 * graphs of 10k, 100k and 1M no-op tasks (is it linear?).
 *
 *   loom_scale [--pending N] [--sizes N,N,...] [--cpus C] [--json FILE]
 *              [--sim-nodes N,N,... [--sim-tasks T]]
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
 *   sim-nodes for each N (e.g. 10,100,1000; alone unless --sizes/--pending
 *             are given too): a head with one real daemon (it holds the
 *             task library) and N simulated nodes of 1 CPU (bench/simnodes.c:
 *             real sockets and messages, tasks finished at once, label
 *             sim=1); T no-op tasks (default 20,000) asking for label sim=1
 *             with the SPREAD strategy, so every placement chooses among the
 *             N: tasks/s ("sim_N_nodes_tasks_per_s") and the ratio to the
 *             first N; the head's CPU while only the N heartbeat (3 s), and
 *             its RSS
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <loom/loom.h>
#include <loom/value.h>
#include "bench/simnodes.h"
#include "runtime/secret.h"
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
    char addr[512];         /* the head's HOST:PORT */
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
    char path[4200];
    snprintf(path, sizeof path, "%s/address", cl->state);
    FILE *f = fopen(path, "r");
    if (f) {
        if (!fgets(cl->addr, sizeof cl->addr, f)) cl->addr[0] = 0;
        fclose(f);
    }
    cl->addr[strcspn(cl->addr, "\n")] = 0;
    loom_connect_opts co = {.state_dir = cl->state};
    if (cl->hpid <= 0 || !cl->addr[0] || loom_connect(cl->addr, &co, &cl->c) ||
        loom_library_load(cl->c, LOOM_EXAMPLES_LIB, &cl->lib)) {
        fprintf(stderr, "loom_scale: cannot use the cluster in %s\n", cl->state);
        cluster_stop(cl);
        return 1;
    }
    return 0;
}

/* The head's CPU seconds so far (utime + stime from /proc). */
static double cpu_s(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* T no-op tasks on N simulated nodes (see the file's comment); prints one
 * line, adds to the JSON; 0 or 1 (failed).  *first: the tasks/s of the
 * first N, for the ratio. */
static int sim_run(int nodes, int tasks, double *first, FILE *js, const char **sep)
{
    cluster cl;
    if (cluster_start(&cl, 1)) return 1;
    char path[4200], secret[LOOM_SECRET_HEX + 1];
    snprintf(path, sizeof path, "%s/secret", cl.state);
    int rc = loom__secret_load(path, secret);
    simnodes *sim = NULL;
    double t0 = now_s();
    if (rc || simnodes_start(cl.addr, secret, nodes, 1.0, &sim)) {
        printf("sim_%d_nodes FAILED (could not start the simulated nodes)\n", nodes);
        cluster_stop(&cl);
        return 1;
    }
    double join_s = now_s() - t0;
    /* the head's load while the nodes only heartbeat */
    usleep(500000);
    double c0 = cpu_s(cl.hpid), w0 = now_s();
    usleep(3000000);
    double idle_cpu = (cpu_s(cl.hpid) - c0) / (now_s() - w0);
    /* placement: each task asks for a simulated node, spread */
    loom_label sim_label = {"sim", "1"};
    loom_task_opts o = {.num_cpus = 1, .strategy = LOOM_SCHED_SPREAD, .labels = &sim_label, .nlabels = 1};
    loom_ref *refs = calloc((size_t)tasks, sizeof(loom_ref));
    int failed = !refs;
    t0 = now_s();
    for (int base = 0; !failed && base < tasks; base += CHUNK) {
        int m = tasks - base < CHUNK ? tasks - base : CHUNK;
        loom_graph *g;
        if (loom_graph_new(&g)) { failed = 1; break; }
        for (int i = 0; i < m; i++) loom_graph_task(g, cl.lib, "noop", &o);
        failed = loom_graph_submit(cl.c, g, &(loom_submit_opts){.job_name = "sim"}, NULL) != 0;
        for (int i = 0; !failed && i < m; i++) failed = loom_graph_ref(g, i, 0, &refs[base + i]) != 0;
        loom_graph_destroy(&g);
    }
    int done = failed ? -1 : loom_wait(cl.c, refs, tasks, tasks, 600000, NULL);
    double dt = now_s() - t0;
    long hr = rss_kib(cl.hpid);
    if (done != tasks) {
        printf("sim_%d_nodes FAILED (%d of %d tasks done: %s)\n", nodes, done < 0 ? 0 : done, tasks,
               loom_last_error(cl.c));
        failed = 1;
    } else {
        double rate = tasks / dt;
        if (*first <= 0) *first = rate;
        printf("sim_%d_nodes_tasks_per_s %.0f per_s (%.2fx the rate on the first size; %llu run by the simulated "
               "nodes; joined in %.1f s; head idle CPU %.1f%% with only heartbeats; head RSS %.0f MiB)\n",
               nodes, rate, rate / *first, (unsigned long long)simnodes_tasks_done(sim), join_s, idle_cpu * 100,
               hr / 1024.0);
        if (js) {
            fprintf(js, "%s\"sim_%d_nodes_tasks_per_s\": %.1f, \"sim_%d_nodes_head_idle_cpu\": %.4f", *sep, nodes,
                    rate, nodes, idle_cpu);
            *sep = ", ";
        }
    }
    if (refs) release_all(cl.c, refs, tasks);
    free(refs);
    simnodes_stop(&sim);
    cluster_stop(&cl);
    return failed;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* one line per figure, as it comes */
    long pending = 1000000;
    long sizes[MAX_SIZES] = {10000, 100000, 1000000};
    int nsizes = 3, cpus = 2;
    const char *json = NULL;
    long sim[MAX_SIZES];
    int nsim = 0, sim_tasks = 20000, sizes_given = 0, pending_given = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--pending") && i + 1 < argc) {
            pending = atol(argv[++i]);
            pending_given = 1;
        } else if (!strcmp(argv[i], "--sim-nodes") && i + 1 < argc) {
            for (char *s = argv[++i], *end; *s && nsim < MAX_SIZES; s = *end ? end + 1 : end) {
                sim[nsim] = strtol(s, &end, 10);
                if (sim[nsim] > 0 && sim[nsim] <= 20000) nsim++;
                if (end == s) break;
            }
        } else if (!strcmp(argv[i], "--sim-tasks") && i + 1 < argc) {
            sim_tasks = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--sizes") && i + 1 < argc) {
            sizes_given = 1;
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
            fprintf(stderr, "usage: loom_scale [--pending N] [--sizes N,N,...] [--cpus C] [--json FILE] "
                            "[--sim-nodes N,N,... [--sim-tasks T]]\n");
            return 2;
        }
    }
    if (pending < 0 || pending > 10000000 || cpus < 1 || cpus > 256 || sim_tasks < 1 || sim_tasks > 10000000) {
        fprintf(stderr, "loom_scale: --pending 0..10000000, --cpus 1..256, --sim-tasks 1..10000000\n");
        return 2;
    }
    if (nsim > 0) {   /* the simulated nodes alone, unless the others were asked for too */
        if (!sizes_given) nsizes = 0;
        if (!pending_given) pending = 0;
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

    if (pending > 0) cluster_stop(&cl);

    double sim_first = 0;
    for (int k = 0; k < nsim; k++) failed |= sim_run((int)sim[k], sim_tasks, &sim_first, js, &sep);

    if (js) {
        fputs("}\n", js);
        fclose(js);
    }
    return failed;
}
