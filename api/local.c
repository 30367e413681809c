/* api/local.c — start and stop an embedded local cluster (see local.h). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "api/local.h"
#include "runtime/secret.h"
#include "runtime/spawn.h"
#include "runtime/util.h"

#define MAX_LOCAL_NODES 64

struct loom_local {
    char dir[4096];          /* state: head tables, logs, node dirs */
    pid_t head;
    pid_t nodes[MAX_LOCAL_NODES];
    int nnodes;
};

static void fmt_u64(char *buf, size_t len, unsigned long long v)
{
    loom__snprintf(buf, len, "%llu", v);
}

static int start_head(loom_local *l, const char *bin, int hb_timeout_ms, char *addr, size_t addrlen, char *err,
                      size_t errlen)
{
    char log[4200], hb[32];
    loom__snprintf(log, sizeof(log), "%s/head.log", l->dir);
    loom__snprintf(hb, sizeof(hb), "%d", hb_timeout_ms > 0 ? hb_timeout_ms : 10000);
    char *argv[] = {(char *)bin, "_head", "--port", "0", "--state-dir", l->dir, "--ready-fd", "3",
                    "--heartbeat-timeout-ms", hb, NULL};
    int fd;
    if (loom__spawn(argv, NULL, log, 0, &l->head, &fd)) {
        loom__snprintf(err, errlen, "cannot start the head (%s)", bin);
        return LOOM_ESYS;
    }
    if (loom__spawn_wait_ready(fd, l->head, 15000, addr, addrlen)) {
        loom__snprintf(err, errlen, "the local head did not start; see %s", log);
        return LOOM_ECONN;
    }
    return LOOM_OK;
}

static int start_node(loom_local *l, const char *bin, int i, const char *addr, const loom_connect_opts *o,
                      char *err, size_t errlen)
{
    char nodedir[4200], log[4300], cpus[32], store[32], secretenv[4300];
    loom__snprintf(nodedir, sizeof(nodedir), "%s/node%d", l->dir, i);
    loom__snprintf(log, sizeof(log), "%s/node%d.log", l->dir, i);
    loom__snprintf(secretenv, sizeof(secretenv), "LOOM_SECRET_FILE=%s/secret", l->dir);
    long ncpu = o && o->num_cpus > 0 ? o->num_cpus : sysconf(_SC_NPROCESSORS_ONLN);
    loom__snprintf(cpus, sizeof(cpus), "%ld", ncpu);
    fmt_u64(store, sizeof(store), o && o->store_bytes ? (unsigned long long)o->store_bytes : 1ull << 30);
    /* no --store-dir: the daemon names its memory tier (/dev/shm/loom-UID/node-PID)
       and removes it when it stops, even when the driver died without stopping it */
    char *argv[24] = {(char *)bin, "_node", "--address", (char *)addr, "--node-dir", nodedir,
                      "--num-cpus", cpus, "--store-bytes", store, "--ready-fd", "3", NULL};
    int n = 12;
    char gpus[32], gmem[32];
    const loom_node_spec *spec = o && o->nodes ? &o->nodes[i] : NULL;
    if (spec && spec->num_gpus >= 0) {
        loom__snprintf(gpus, sizeof(gpus), "%d", spec->num_gpus);
        argv[n++] = "--num-gpus";
        argv[n++] = gpus;
    }
    if (spec && spec->gpu_memory) {
        fmt_u64(gmem, sizeof(gmem), (unsigned long long)spec->gpu_memory);
        argv[n++] = "--gpu-memory";
        argv[n++] = gmem;
    }
    if (spec && spec->resources) {
        argv[n++] = "--resources";
        argv[n++] = (char *)spec->resources;
    }
    if (spec && spec->labels) {
        argv[n++] = "--labels";
        argv[n++] = (char *)spec->labels;
    }
    argv[n] = NULL;
    char *env[] = {secretenv, NULL};
    int fd;
    char line[256];
    if (loom__spawn(argv, env, log, 0, &l->nodes[i], &fd)) {
        loom__snprintf(err, errlen, "cannot start node daemon %d", i);
        return LOOM_ESYS;
    }
    l->nnodes = i + 1;
    if (loom__spawn_wait_ready(fd, l->nodes[i], 15000, line, sizeof(line))) {
        loom__snprintf(err, errlen, "local node daemon %d did not join; see %s", i, log);
        return LOOM_ECONN;
    }
    return LOOM_OK;
}

/* Local clusters still running, stopped (and their files removed) at exit
 * when a driver returns from main without loom_disconnect. */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static loom_local *live[MAX_LOCAL_NODES];
static int live_n, atexit_set;
static pid_t live_owner;      /* a forked child that exits must not stop its parent's clusters */

static void stop_live_at_exit(void)
{
    if (getpid() != live_owner) return;
    for (;;) {
        pthread_mutex_lock(&live_lock);
        loom_local *l = live_n ? live[live_n - 1] : NULL;
        pthread_mutex_unlock(&live_lock);
        if (!l) return;
        loom__local_stop(&l);
    }
}

static void live_add(loom_local *l)
{
    pthread_mutex_lock(&live_lock);
    if (live_n < MAX_LOCAL_NODES) live[live_n++] = l;
    live_owner = getpid();
    if (!atexit_set) atexit_set = atexit(stop_live_at_exit) == 0;
    pthread_mutex_unlock(&live_lock);
}

static void live_remove(loom_local *l)
{
    pthread_mutex_lock(&live_lock);
    for (int i = 0; i < live_n; i++)
        if (live[i] == l) {
            live[i] = live[--live_n];
            break;
        }
    pthread_mutex_unlock(&live_lock);
}

int loom__local_start(const loom_connect_opts *o, loom_local **out, char *address, size_t addrlen,
                      char secret[65], char *err, size_t errlen)
{
    loom_local *l = calloc(1, sizeof(*l));
    if (!l) return LOOM_ENOMEM;
    char base[4096];
    if (o && o->state_dir) loom__mkdir_p(o->state_dir);
    if (loom__make_temp_dir(o ? o->state_dir : NULL, o && o->state_dir ? "local" : "loom-local", base,
                            sizeof(base))) {
        loom__snprintf(err, errlen, "cannot make a state directory like %s", base);
        free(l);
        return LOOM_ESYS;
    }
    loom__snprintf(l->dir, sizeof(l->dir), "%s", base);
    char path[4200];
    loom__snprintf(path, sizeof(path), "%s/secret", l->dir);
    int rc = loom__secret_create(path, secret);
    const char *bin = loom__binary_path();
    int n = o && o->num_nodes > 0 ? o->num_nodes : 1;
    if (n > MAX_LOCAL_NODES) n = MAX_LOCAL_NODES;
    if (!rc) rc = start_head(l, bin, o ? o->heartbeat_timeout_ms : 0, address, addrlen, err, errlen);
    for (int i = 0; !rc && i < n; i++) rc = start_node(l, bin, i, address, o, err, errlen);
    if (rc) {
        loom__local_stop(&l);
        return rc;
    }
    *out = l;
    live_add(l);
    return LOOM_OK;
}

int loom__local_num_nodes(const loom_local *l)
{
    return l ? l->nnodes : 0;
}

void loom__local_stop(loom_local **pl)
{
    if (!pl || !*pl) return;
    loom_local *l = *pl;
    *pl = NULL;
    live_remove(l);
    for (int i = 0; i < l->nnodes; i++)
        if (l->nodes[i] > 0) kill(l->nodes[i], SIGTERM);
    for (int i = 0; i < l->nnodes; i++) loom__stop_process(l->nodes[i], 5000);
    loom__stop_process(l->head, 5000);
    if (!getenv("LOOM_KEEP_LOCAL")) loom__rm_rf(l->dir);
    free(l);
}
