/* cli/main.c — the `loom` command: start and stop clusters, submit graphs
 * written in JSON, look at status, results and logs.  It is also the program
 * behind the head (`loom _head`), node daemons (`loom _node`) and executors
 * (`loom executor`), so one binary is all a machine needs. */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <jansson.h>
#include "api/graph_internal.h"
#include "api/graph_json.h"
#include "loom/loom.h"
#include "loom/value.h"
#include "runtime/log.h"
#include "runtime/secret.h"
#include "runtime/spawn.h"
#include "runtime/util.h"
#include "scheduler/head.h"
#include "worker/daemon.h"
#include "gateway/gateway.h"
#include "cli/tune_cmd.h"
#include "cli/infer_cmd.h"
#include "cli/slurm_cmd.h"

#define MAX_OPTS 32

typedef struct opts {
    const char *key[MAX_OPTS];
    const char *val[MAX_OPTS];
    int n;
    const char *pos[MAX_OPTS];
    int npos;
} opts;

static const char *usage_text =
    "usage: loom COMMAND [options]\n"
    "\n"
    "clusters:\n"
    "  start --head [--port P (default: any free port)] [--bind HOST] [--num-cpus N] [--store-bytes B] [--no-node] [--block]\n"
    "        [--http-port P] [--http-bind HOST] [--http-lib-dir DIR] [--http-auth]\n"
    "        [--http-workers N (16)] [--http-queue N (256): beyond, 429 with Retry-After]\n"
    "        start a head (and a node daemon on this machine) in the background; with\n"
    "        --http-port, the head also serves the HTTP gateway (jobs REST, health, metrics)\n"
    "  start --address HOST:PORT [--bind HOST] [--advertise HOST] [--num-cpus N]\n"
    "        [--store-bytes B] [--memory B] [--block]   start a node daemon that joins HOST:PORT\n"
    "     node options (with either): --num-gpus N (default: the GPUs found), --gpu-memory B,\n"
    "        --resources NAME=AMOUNT,...  --labels KEY=VALUE,...\n"
    "  stop                         stop the head and daemons started from this state dir\n"
    "  status [--json]              nodes, resources and task counts\n"
    "  actors [--json]              actors and their states\n"
    "  drain NODE                   place nothing new on node NODE (an id from status);\n"
    "                               it reads 'drained' once idle\n"
    "  kill-actor ID|NAME           kill an actor\n"
    "\n"
    "work:\n"
    "  submit GRAPH.json [--wait] [--timeout S]   submit a graph; prints the job id\n"
    "  jobs [--label L] [--offset N] [--limit N] [--json]   jobs, newest first\n"
    "  job JOB                      the job's tasks and their states (JSON)\n"
    "  get JOB TASK[:OUTPUT] [--json] [--timeout S]   print a task's result\n"
    "  get REF [--json]             print an object by its 40-hex ref\n"
    "  logs JOB TASK                print a task's stdout and stderr\n"
    "  cancel JOB [TASK]            cancel a job's tasks (or one of them)\n"
    "  token create --user NAME [--admin] | token revoke TOKEN\n"
    "                               bearer tokens for the HTTP gateway's --http-auth\n"
    "  kv put KEY VALUE | kv get KEY [--timeout S] | kv del KEY\n"
    "                               the cluster's key-value table (kept across head restarts)\n"
    "  delete JOB                   cancel what still runs and free the job's results\n"
    "\n"
    "batch inference (shard/README.md):\n"
    "  infer --model NAME[:VERSION] --input DATASET --output DIR [--shard-size N (1000)]\n"
    "        [--max-in-flight K (8)] [--params JSON] [--num-cpus C] [--num-gpus G]\n"
    "        [--straggler-factor F (4)] [--no-cache] [--quiet]\n"
    "                               run a registered model over a dataset (.npy, .csv, .jsonl or a\n"
    "                               directory of them), one task per shard; results are cached in\n"
    "                               the cluster and a run is resumed by running it again\n"
    "\n"
    "Slurm (README: Running on an HPC cluster):\n"
    "  slurm start [--http-port P] [--job-dir DIR] [--wait S] [--block] [-- DRIVER ARGS...]\n"
    "                               inside an allocation: head on the first node, a daemon per node\n"
    "                               (srun), CPUs/GPUs from Slurm; runs DRIVER with LOOM_ADDRESS set and\n"
    "                               stops the cluster after it (no driver: leaves it running)\n"
    "  slurm submit --nodes N --time T [--gpus-per-node G] [--cpus-per-node C] [--mem M]\n"
    "        [--partition P] [--account A] [--name NAME] [--exclusive] [--http-port P] [--dry-run]\n"
    "        -- DRIVER ARGS...       write JOBDIR/job.sbatch (kept) and submit it; prints the job id\n"
    "  slurm status [JOB] [--json]  jobs with their state, head address and driver exit code\n"
    "  slurm cancel JOB             scancel and wait until the job has left the queue\n"
    "     job dirs: --dir BASE (default: $LOOM_SLURM_DIR or ./loom-slurm), one per job: BASE/JOBID\n"
    "\n"
    "sweeps (tune/README.md):\n"
    "  tune run SWEEP.json [--output DIR] [--quiet] [--gateway HOST:PORT]   run a hyperparameter\n"
    "                               sweep with a live view; prints its id, the best trial and where\n"
    "                               results are; its \"register\" uses the cluster's HTTP gateway\n"
    "  tune status [SWEEP] [--json] the sweeps stored in the cluster, or one with its trials\n"
    "  tune stop SWEEP              stop a sweep's trials and end it\n"
    "  tune resume SWEEP            drive a sweep again after its driver or head stopped\n"
    "\n"
    "common options: --address HOST:PORT (default: $LOOM_ADDRESS, else the running\n"
    "  cluster in the state dir), --state-dir DIR (default: $LOOM_STATE_DIR or /tmp/loom-UID),\n"
    "  --secret-file FILE (default: STATE_DIR/secret)\n";

static int usage(void)
{
    fputs(usage_text, stderr);
    return 2;
}

static int parse_opts(int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof(*o));
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "--", 2) && argv[i][2]) {
            if (o->n >= MAX_OPTS) return -1;
            o->key[o->n] = argv[i] + 2;
            o->val[o->n] = (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) ? argv[++i] : "";
            o->n++;
        } else {
            if (o->npos >= MAX_OPTS) return -1;
            o->pos[o->npos++] = argv[i];
        }
    }
    return 0;
}

static const char *opt(const opts *o, const char *key)
{
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->key[i], key)) return o->val[i];
    return NULL;
}

static int opt_int(const opts *o, const char *key, int def)
{
    const char *v = opt(o, key);
    return v && *v ? atoi(v) : def;
}

/* "512M", "2G", "1048576" -> bytes; 0 on a bad value */
static uint64_t parse_bytes(const char *s)
{
    if (!s || !*s) return 0;
    char *end;
    double v = strtod(s, &end);
    if (v < 0) return 0;
    switch (*end) {
    case 'k': case 'K': v *= 1024; break;
    case 'm': case 'M': v *= 1024.0 * 1024; break;
    case 'g': case 'G': v *= 1024.0 * 1024 * 1024; break;
    case 't': case 'T': v *= 1024.0 * 1024 * 1024 * 1024; break;
    case 0: break;
    default: return 0;
    }
    return (uint64_t)v;
}

static const char *state_dir(const opts *o, char *buf, size_t len)
{
    const char *sd = opt(o, "state-dir");
    if (sd && *sd) {
        loom_snprintf(buf, len, "%s", sd);
        return buf;
    }
    return loom_default_state_dir(buf, len);
}

static int connect_cli(const opts *o, loom_client **c)
{
    char sd[4096];
    loom_connect_opts co = {0};
    co.state_dir = state_dir(o, sd, sizeof(sd));
    co.secret_file = opt(o, "secret-file");
    const char *addr = opt(o, "address");
    if (!addr || !*addr) addr = getenv("LOOM_ADDRESS");
    if (!addr || !*addr) {
        char path[4200];
        struct stat st;
        loom_snprintf(path, sizeof(path), "%s/address", sd);
        if (stat(path, &st) != 0) {
            fprintf(stderr, "loom: no cluster is running here (no %s); start one with `loom start --head`"
                            " or pass --address HOST:PORT\n", path);
            return LOOM_ECONN;
        }
    }
    int rc = loom_connect(addr, &co, c);
    if (rc) fprintf(stderr, "loom: cannot connect: %s\n", loom_strerror(rc));
    return rc;
}

/* ---- internal process entry points -------------------------------------- */

/* One head per state dir: its tables (head.lmdb) and address file belong to
 * one head.  The head holds an flock on STATE_DIR/head.lock for as long as it
 * runs (the descriptor is never closed; the kernel drops the lock at exit). */
static int lock_head_state(const char *sd)
{
    char path[4200];
    loom_snprintf(path, sizeof(path), "%s/head.lock", sd);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return -1;
    }
    return 0;
}

static int head_running(const char *sd)
{
    char path[4200];
    loom_snprintf(path, sizeof(path), "%s/head.lock", sd);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return 0;
    int busy = flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd);
    return busy;
}

static void head_listening(void *arg, const char *addr)
{
    (void)addr;
    loom_gateway_head_listening(arg);
}

static int cmd_head(const opts *o)
{
    char sd[4096], secret_path[4200], secret[LOOM_SECRET_HEX + 1];
    state_dir(o, sd, sizeof(sd));
    loom_log_init("head");
    if (loom_mkdir_p(sd)) {
        LOG_ERROR("cannot make state dir %s: %s", sd, strerror(errno));
        return 1;
    }
    chmod(sd, 0700);
    if (lock_head_state(sd)) {
        LOG_ERROR("another head is running with the state dir %s (stop it with `loom stop --state-dir %s`)",
                  sd, sd);
        return 1;
    }
    if (opt(o, "secret-file") && *opt(o, "secret-file"))
        loom_snprintf(secret_path, sizeof(secret_path), "%s", opt(o, "secret-file"));
    else
        loom_snprintf(secret_path, sizeof(secret_path), "%s/secret", sd);
    const char *db_dir = opt(o, "db-dir");
    if (db_dir && (!*db_dir || loom_mkdir_p(db_dir))) {
        LOG_ERROR("cannot make the database dir '%s': %s", db_dir, strerror(errno));
        return 1;
    }
    int rc = loom_secret_load(secret_path, secret);
    if (rc == LOOM_ENOTFOUND) rc = loom_secret_create(secret_path, secret);
    if (rc) {
        LOG_ERROR("cannot use the cluster secret %s: %s", secret_path, loom_strerror(rc));
        return 1;
    }
    /* a head restarted with its state dir keeps the port its daemons and
       drivers know (--port 0 asks for any free port the first time) */
    int port = opt_int(o, "port", 0);
    char addrpath[4200], *prev = NULL;
    size_t plen = 0;
    loom_snprintf(addrpath, sizeof(addrpath), "%s/address", sd);
    if (port == 0 && loom_read_file(addrpath, 512, &prev, &plen) == 0) {
        const char *colon = strrchr(prev, ':');
        if (colon && atoi(colon + 1) > 0) port = atoi(colon + 1);
    }
    free(prev);
    loom_head_opts ho = {
        .bind_host = opt(o, "bind") ? opt(o, "bind") : "127.0.0.1",
        .port = port,
        .state_dir = sd,
        .db_dir = db_dir,
        .advertise_host = opt(o, "advertise"),
        .secret = secret,
        .heartbeat_timeout_ms = opt_int(o, "heartbeat-timeout-ms", 10000),
        .ready_fd = opt_int(o, "ready-fd", -1),
    };
    loom_gateway *gw = NULL;
    if (opt(o, "http-port")) {
        loom_gateway_opts go = {
            .host = opt(o, "http-bind") ? opt(o, "http-bind") : "127.0.0.1",
            .port = opt_int(o, "http-port", 0),
            .state_dir = sd,
            .secret = secret,
            .lib_dir = opt(o, "http-lib-dir"),
            .auth = opt(o, "http-auth") != NULL,
            .workers = opt_int(o, "http-workers", 0),
            .queue_max = opt_int(o, "http-queue", 0),
        };
        rc = loom_gateway_start(&go, &gw);
        if (rc) {
            LOG_ERROR("cannot start the HTTP gateway on %s:%d: %s", go.host, go.port, loom_strerror(rc));
            return 1;
        }
        char gpath[4200], gaddr[300];
        loom_snprintf(gpath, sizeof(gpath), "%s/http_address", sd);
        loom_snprintf(gaddr, sizeof(gaddr), "%s:%d", go.host, loom_gateway_port(gw));
        loom_write_file(gpath, gaddr, strlen(gaddr), 0600);
        LOG_INFO("HTTP gateway listening on http://%s", gaddr);
    }
    ho.on_listening = head_listening;
    ho.on_listening_arg = gw;
    rc = loom_head_run(&ho);
    loom_gateway_stop(&gw);
    if (db_dir && opt(o, "db-temp")) loom_rm_rf(db_dir); /* a Slurm cluster's tables end with it */
    return rc ? 1 : 0;
}

static int read_secret_for_node(const opts *o, char *secret)
{
    const char *file = opt(o, "secret-file");
    if (!file) file = getenv("LOOM_SECRET_FILE");
    char path[4200], sd[4096];
    if (!file) {
        loom_snprintf(path, sizeof(path), "%s/secret", state_dir(o, sd, sizeof(sd)));
        file = path;
    }
    const char *env = getenv("LOOM_SECRET");
    if (env && strlen(env) == LOOM_SECRET_HEX) {
        memcpy(secret, env, LOOM_SECRET_HEX + 1);
        return 0;
    }
    int rc = loom_secret_load(file, secret);
    if (rc) LOG_ERROR("cannot read the cluster secret from %s: %s (copy the head's secret file there,"
                      " mode 0600, or set LOOM_SECRET_FILE)", file, loom_strerror(rc));
    return rc;
}

/* Check the node options before starting anything, so a mistake is reported
 * by the command itself (not only in a daemon's log). */
static int check_node_opts(const opts *o)
{
    const char *g = opt(o, "num-gpus");
    if (g) {
        char *end;
        long v = strtol(g, &end, 10);
        if (!*g || *end || v < 0 || v > 16) {
            fprintf(stderr, "loom: --num-gpus wants a whole number from 0 to 16, not '%s'\n", g);
            return 1;
        }
    }
    const char *gm = opt(o, "gpu-memory");
    if (gm && !parse_bytes(gm)) {
        fprintf(stderr, "loom: --gpu-memory wants a size such as 16G, not '%s'\n", gm);
        return 1;
    }
    const char *cpus = opt(o, "num-cpus");
    if (cpus) {
        char *end;
        double v = strtod(cpus, &end);
        if (!*cpus || *end || !(v > 0 && v <= 1024)) {
            fprintf(stderr, "loom: --num-cpus wants a number above 0 and up to 1024, not '%s'\n", cpus);
            return 1;
        }
    }
    loom_arena a = {0};
    loom_wire_res *res;
    loom_wire_label *labels;
    uint32_t n;
    char err[300];
    int rc = loom_parse_resources(opt(o, "resources"), &a, &res, &n, err, sizeof(err));
    if (!rc) rc = loom_parse_labels(opt(o, "labels"), &a, &labels, &n, err, sizeof(err));
    loom_arena_free(&a);
    if (rc) {
        fprintf(stderr, "loom: %s\n", err);
        return 1;
    }
    return 0;
}

/* Give key a value unless the command line did (for values found elsewhere). */
static void opt_default(opts *o, const char *key, const char *val)
{
    if (!val || !*val || opt(o, key) || o->n >= MAX_OPTS) return;
    o->key[o->n] = key;
    o->val[o->n++] = val;
}

/* Wait until PATH holds the head's "HOST:PORT" (written by a head that may
 * start after this daemon), saying so every 10 s; at most wait_s seconds. */
static int wait_address_file(const char *path, int wait_s, char *addr, size_t len)
{
    int64_t start = loom_now_ms(), said = 0;
    for (;;) {
        char *text = NULL;
        size_t n = 0;
        if (loom_read_file(path, 512, &text, &n) == 0) {
            while (n && (text[n - 1] == '\n' || text[n - 1] == ' ')) text[--n] = 0;
            const char *colon = strrchr(text, ':');
            int ok = colon && colon != text && atoi(colon + 1) > 0 && n < len;
            if (ok) loom_snprintf(addr, len, "%s", text);
            free(text);
            if (ok) return 0;
        }
        int64_t now = loom_now_ms();
        if (now - start >= (int64_t)wait_s * 1000) {
            LOG_ERROR("no head address appeared in %s within %d s: did the head start? (its log is beside"
                      " that file, in logs/head.log)", path, wait_s);
            return LOOM_ETIMEOUT;
        }
        if (now - said >= 10000) {
            LOG_INFO("waiting for the head's address in %s (%lld s so far; up to %d s)", path,
                     (long long)((now - start) / 1000), wait_s);
            said = now;
        }
        usleep(200000);
    }
}

/* The local address on the route to the head (--advertise auto): what the
 * other nodes can reach this one at, whatever the hostname resolves to. */
static int address_toward(const char *head, char *out, size_t len)
{
    char host[256];
    const char *colon = strrchr(head, ':');
    if (!colon || colon == head || (size_t)(colon - head) >= sizeof(host)) return LOOM_EINVAL;
    memcpy(host, head, (size_t)(colon - head));
    host[colon - head] = 0;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_DGRAM}, *ai = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0 || !ai) return LOOM_ENOTFOUND;
    int rc = LOOM_ECONN, fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in me;
    socklen_t mlen = sizeof(me);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
        getsockname(fd, (struct sockaddr *)&me, &mlen) == 0 && inet_ntop(AF_INET, &me.sin_addr, out, (socklen_t)len))
        rc = LOOM_OK;
    if (fd >= 0) close(fd);
    freeaddrinfo(ai);
    return rc;
}

/* Under Slurm (--slurm): what the allocation gave this node, unless the
 * command line says otherwise.  Buffers are static: one daemon per process. */
static void node_opts_from_slurm(opts *o)
{
    static char mem[32], labels[600];
    opt_default(o, "num-cpus", getenv("SLURM_CPUS_ON_NODE"));
    opt_default(o, "num-gpus", getenv("SLURM_GPUS_ON_NODE"));
    const char *mb = getenv("SLURM_MEM_PER_NODE");
    if (mb && atoll(mb) > 0) {
        loom_snprintf(mem, sizeof(mem), "%lldM", atoll(mb));
        opt_default(o, "memory", mem);
    }
    const char *node = getenv("SLURMD_NODENAME"), *job = getenv("SLURM_JOB_ID");
    if (node && job && strlen(node) < 200 && strlen(job) < 40) {
        const char *user = opt(o, "labels");
        loom_snprintf(labels, sizeof(labels), "%s%sslurm_node=%s,slurm_job=%s", user ? user : "", user && *user ? "," : "",
                      node, job);
        for (int i = 0; i < o->n; i++)
            if (!strcmp(o->key[i], "labels")) o->val[i] = labels;
        opt_default(o, "labels", labels);
    }
}

/* Under Slurm each daemon logs to STATE_DIR/logs/node-SLURMNODE.log (srun's
 * %N is the host name, which several slurmd's on one host share). */
static void log_to_node_file(const opts *o)
{
    const char *node = getenv("SLURMD_NODENAME");
    char sd[4096], path[4400];
    if (!node || !*node || strchr(node, '/')) return;
    loom_snprintf(path, sizeof(path), "%s/logs/node-%s.log", state_dir(o, sd, sizeof(sd)), node);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return;
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
}

/* Node-local work dirs of Slurm daemons that were killed (BASE-PID, PID
 * gone: Slurm SIGKILLs what outlives an allocation) are removed by the next
 * daemon that starts on the node. */
static void remove_stale_node_dirs(const char *base)
{
    char dir[4200];
    loom_snprintf(dir, sizeof(dir), "%s", base);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return;
    *slash = 0;
    DIR *dp = opendir(dir);
    if (!dp) return;
    struct dirent *e;
    int seen = 0;
    while ((e = readdir(dp)) && seen++ < 10000) {
        const char *tail = strstr(e->d_name, "-node-");
        if (strncmp(e->d_name, "slurm-", 6) || !tail) continue;
        char *end;
        long pid = strtol(tail + 6, &end, 10);
        if (*end || pid <= 1 || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char path[4500];
        loom_snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (loom_rm_rf(path) == 0) LOG_INFO("removed the work dir of a daemon that is gone: %s", path);
    }
    closedir(dp);
}

static int cmd_node(const opts *given)
{
    loom_log_init("node");
    opts local = *given, *o = &local;
    if (opt(o, "slurm")) {
        log_to_node_file(o);
        node_opts_from_slurm(o);
    }
    if (check_node_opts(o)) return 2;
    char secret[LOOM_SECRET_HEX + 1], sd[4096], nodedir[4200], head[512], adv[64];
    const char *af = opt(o, "address-file");
    if (af && *af) {
        if (wait_address_file(af, opt_int(o, "wait-head", 600), head, sizeof(head))) return 1;
        opt_default(o, "address", head);
    }
    if (!opt(o, "address") || !*opt(o, "address")) {
        LOG_ERROR("--address HOST:PORT (or --address-file FILE) of the head is required");
        return 2;
    }
    const char *advertise = opt(o, "advertise");
    if (advertise && !strcmp(advertise, "auto")) {
        if (address_toward(opt(o, "address"), adv, sizeof(adv))) {
            LOG_ERROR("--advertise auto: no route to the head at %s", opt(o, "address"));
            return 1;
        }
        advertise = adv;
        LOG_INFO("advertising %s (the address on the route to the head)", adv);
    }
    if (read_secret_for_node(o, secret)) return 1;
    const char *nd = opt(o, "node-dir"), *ndb = opt(o, "node-dir-base");
    int own_node_dir = 0;
    if (!nd && ndb && *ndb) { /* --slurm: a node-local dir, removed at the end */
        remove_stale_node_dirs(ndb);
        loom_snprintf(nodedir, sizeof(nodedir), "%s-%d", ndb, (int)getpid());
        nd = nodedir;
        own_node_dir = 1;
    } else if (!nd) {
        char host[200];
        if (gethostname(host, sizeof(host))) loom_snprintf(host, sizeof(host), "node");
        loom_snprintf(nodedir, sizeof(nodedir), "%s/nodes/%s-%d", state_dir(o, sd, sizeof(sd)), host, (int)getpid());
        nd = nodedir;
    }
    loom_daemon_opts d = {
        .head_address = opt(o, "address"),
        .secret = secret,
        .bind_host = opt(o, "bind"),
        .advertise_host = advertise,
        .data_port = opt_int(o, "data-port", 0),
        .node_dir = nd,
        .store_dir = opt(o, "store-dir"),
        .num_cpus = opt(o, "num-cpus") ? atof(opt(o, "num-cpus")) : 0,
        .memory = parse_bytes(opt(o, "memory")),
        .store_bytes = parse_bytes(opt(o, "store-bytes")),
        .heartbeat_ms = opt_int(o, "heartbeat-ms", 1000),
        .ready_fd = opt_int(o, "ready-fd", -1),
        .num_gpus = opt_int(o, "num-gpus", -1),
        .gpu_memory = parse_bytes(opt(o, "gpu-memory")),
        .resources = opt(o, "resources"),
        .labels = opt(o, "labels"),
    };
    int rc = loom_daemon_run(&d);
    if (own_node_dir) loom_rm_rf(nd);
    return rc ? 1 : 0;
}

/* A task's client (loom_task_client): one per thread of the executor, made
 * on first use from the environment the daemon set (LOOM_ADDRESS) and the
 * cluster secret, and kept for the executor's life. */
static char exec_secret[LOOM_SECRET_HEX + 1];
static __thread loom_client *task_client;

static loom_client *connect_task_client(char *err, size_t errlen)
{
    if (task_client) return task_client;
    const char *addr = getenv("LOOM_ADDRESS");
    if (!addr || !*addr) {
        loom_snprintf(err, errlen, "LOOM_ADDRESS is not set in the executor");
        return NULL;
    }
    loom_connect_opts co = {.secret = exec_secret};
    loom_client *c = NULL;
    int rc = loom_connect(addr, &co, &c);
    if (rc) {
        loom_snprintf(err, errlen, "%s", loom_strerror(rc));
        return NULL;
    }
    task_client = c;
    return c;
}

static int cmd_executor(const opts *o)
{
    static char secret[LOOM_SECRET_HEX + 1];
    const char *env = getenv("LOOM_SECRET_EXEC");
    loom_snprintf(secret, sizeof(secret), "%s", env ? env : "");
    unsetenv("LOOM_SECRET_EXEC"); /* commands the executor runs need not see it */
    loom_executor_opts e = {
        .daemon_endpoint = opt(o, "ipc"),
        .secret = secret,
        .store_dir = opt(o, "store"),
        .spill_dir = opt(o, "spill"),
        .node_dir = opt(o, "node-dir"),
        .actor = opt(o, "actor"),
        .gpus = opt(o, "gpus"),
        .connect = connect_task_client,
    };
    loom_snprintf(exec_secret, sizeof(exec_secret), "%s", secret);
    if (!e.daemon_endpoint || !e.store_dir || !e.node_dir) return 2;
    return loom_executor_run(&e) ? 1 : 0;
}

/* ---- start / stop ------------------------------------------------------- */

static int write_pid(const char *sd, pid_t pid, const char *what)
{
    char path[4200];
    loom_snprintf(path, sizeof(path), "%s/pids", sd);
    loom_mkdir_p(path);
    loom_snprintf(path, sizeof(path), "%s/pids/%d", sd, (int)pid);
    return loom_write_file(path, what, strlen(what), 0600);
}

/* The last ERROR line of a log, to say why a process did not start. */
static void print_last_error(const char *log)
{
    char *text = NULL;
    size_t n = 0;
    if (loom_read_file(log, (size_t)1 << 20, &text, &n)) return;
    char *last = NULL;
    for (char *p = text; (p = strstr(p, "ERROR")); p++) last = p;
    if (last) {
        char *bol = last;
        while (bol > text && bol[-1] != '\n') bol--;
        char *eol = strchr(last, '\n');
        if (eol) *eol = 0;
        fprintf(stderr, "loom: %s\n", bol);
    }
    free(text);
}

/* Start `loom SUB args...` in the background and wait for its ready line. */
static int start_background(const char *sd, char **argv, const char *log, char *line, size_t len, const char *what)
{
    pid_t pid;
    int fd;
    if (loom_spawn(argv, NULL, log, 1, &pid, &fd)) {
        fprintf(stderr, "loom: cannot start the %s\n", what);
        return 1;
    }
    int rc = loom_spawn_wait_ready(fd, pid, 20000, line, len);
    if (rc == LOOM_ETIMEOUT && !strcmp(what, "node daemon") && kill(pid, 0) == 0) {
        /* its head is not up (yet): the daemon keeps trying in the background */
        write_pid(sd, pid, what);
        loom_snprintf(line, len, "a node daemon (pid %d) still waiting for its head", (int)pid);
        fprintf(stderr, "loom: the head did not answer within 20 s; the daemon keeps trying and joins when it"
                        " comes up (log: %s; `loom stop` stops it)\n", log);
        return 0;
    }
    if (rc) {
        fprintf(stderr, "loom: the %s did not start; its log is %s\n", what, log);
        print_last_error(log);
        return 1;
    }
    write_pid(sd, pid, what);
    return 0;
}

static void push_arg(char **argv, int *n, const char *k, const char *v)
{
    if (!v) return;
    argv[(*n)++] = (char *)k;
    argv[(*n)++] = (char *)v;
}

static int start_node_from(const opts *o, const char *sd, const char *addr)
{
    char log[4200], line[256], logs[4200];
    loom_snprintf(logs, sizeof(logs), "%s/logs", sd);
    loom_mkdir_p(logs);
    loom_snprintf(log, sizeof(log), "%s/logs/node-%d.log", sd, (int)getpid());
    char *argv[40];
    int n = 0;
    argv[n++] = (char *)loom_binary_path();
    argv[n++] = "_node";
    push_arg(argv, &n, "--address", addr);
    push_arg(argv, &n, "--state-dir", sd);
    push_arg(argv, &n, "--bind", opt(o, "bind"));
    push_arg(argv, &n, "--advertise", opt(o, "advertise"));
    push_arg(argv, &n, "--num-cpus", opt(o, "num-cpus"));
    push_arg(argv, &n, "--memory", opt(o, "memory"));
    push_arg(argv, &n, "--store-bytes", opt(o, "store-bytes"));
    push_arg(argv, &n, "--store-dir", opt(o, "store-dir"));
    push_arg(argv, &n, "--node-dir", opt(o, "node-dir"));
    push_arg(argv, &n, "--secret-file", opt(o, "secret-file"));
    push_arg(argv, &n, "--data-port", opt(o, "data-port"));
    push_arg(argv, &n, "--num-gpus", opt(o, "num-gpus"));
    push_arg(argv, &n, "--gpu-memory", opt(o, "gpu-memory"));
    push_arg(argv, &n, "--resources", opt(o, "resources"));
    push_arg(argv, &n, "--labels", opt(o, "labels"));
    push_arg(argv, &n, "--ready-fd", "3");
    argv[n] = NULL;
    if (start_background(sd, argv, log, line, sizeof(line), "node daemon")) return 1;
    if (!strncmp(line, "node ", 5)) printf("loom: %s joined the cluster at %s (log: %s)\n", line, addr, log);
    else printf("loom: %s at %s (log: %s)\n", line, addr, log);
    return 0;
}

static int cmd_start(const opts *o)
{
    char sd[4096];
    state_dir(o, sd, sizeof(sd));
    if (check_node_opts(o)) return 2;
    if (opt(o, "block")) return opt(o, "head") ? cmd_head(o) : cmd_node(o);
    if (loom_mkdir_p(sd)) {
        fprintf(stderr, "loom: cannot make %s: %s\n", sd, strerror(errno));
        return 1;
    }
    chmod(sd, 0700);
    if (!opt(o, "head")) {
        if (!opt(o, "address") || !*opt(o, "address")) return usage();
        return start_node_from(o, sd, opt(o, "address"));
    }
    if (head_running(sd)) {
        fprintf(stderr, "loom: a head is already running from %s; stop it first with `loom stop --state-dir %s`"
                        " (or use another --state-dir)\n", sd, sd);
        return 1;
    }
    char log[4200], addr[512], logs[4200];
    loom_snprintf(logs, sizeof(logs), "%s/logs", sd);
    loom_mkdir_p(logs);
    loom_snprintf(log, sizeof(log), "%s/logs/head.log", sd);
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)loom_binary_path();
    argv[n++] = "_head";
    push_arg(argv, &n, "--state-dir", sd);
    push_arg(argv, &n, "--port", opt(o, "port"));
    push_arg(argv, &n, "--bind", opt(o, "bind"));
    push_arg(argv, &n, "--advertise", opt(o, "advertise"));
    push_arg(argv, &n, "--db-dir", opt(o, "db-dir"));
    push_arg(argv, &n, "--secret-file", opt(o, "secret-file"));
    push_arg(argv, &n, "--heartbeat-timeout-ms", opt(o, "heartbeat-timeout-ms"));
    push_arg(argv, &n, "--http-port", opt(o, "http-port"));
    push_arg(argv, &n, "--http-bind", opt(o, "http-bind"));
    push_arg(argv, &n, "--http-lib-dir", opt(o, "http-lib-dir"));
    if (opt(o, "http-auth")) argv[n++] = "--http-auth";
    push_arg(argv, &n, "--http-workers", opt(o, "http-workers"));
    push_arg(argv, &n, "--http-queue", opt(o, "http-queue"));
    push_arg(argv, &n, "--ready-fd", "3");
    argv[n] = NULL;
    if (start_background(sd, argv, log, addr, sizeof(addr), "head")) return 1;
    printf("loom: head listening on %s (state: %s, log: %s)\n", addr, sd, log);
    if (opt(o, "http-port")) {
        char gpath[4200], *gaddr = NULL;
        size_t glen = 0;
        loom_snprintf(gpath, sizeof(gpath), "%s/http_address", sd);
        if (loom_read_file(gpath, 300, &gaddr, &glen) == 0) printf("loom: HTTP gateway on http://%s\n", gaddr);
        free(gaddr);
    }
    printf("loom: cluster secret in %s/secret: copy it (mode 0600) to nodes that join from other machines\n", sd);
    if (!opt(o, "no-node") && start_node_from(o, sd, addr)) return 1;
    printf("loom: join more nodes with: loom start --address %s\n", addr);
    return 0;
}

/* Wait (up to ms) until no process recorded in STATE_DIR/pids is alive. */
static void wait_pids_gone(const char *sd, int ms)
{
    char dir[4200];
    loom_snprintf(dir, sizeof(dir), "%s/pids", sd);
    int64_t deadline = loom_now_ms() + ms;
    while (loom_now_ms() < deadline) {
        DIR *dp = opendir(dir);
        if (!dp) return;
        struct dirent *e;
        int alive = 0;
        while ((e = readdir(dp)))
            if (atoi(e->d_name) > 0 && kill((pid_t)atoi(e->d_name), 0) == 0) alive++;
        closedir(dp);
        if (!alive) return;
        usleep(100000);
    }
}

static int cmd_stop(const opts *o)
{
    char sd[4096], dir[4200];
    state_dir(o, sd, sizeof(sd));
    /* pids are this host's: a cluster started by `loom slurm start` elsewhere is not */
    char hpath[4200], host[256], *started_on = NULL;
    loom_snprintf(hpath, sizeof(hpath), "%s/slurm_host", sd);
    if (loom_read_file(hpath, 255, &started_on, NULL) == 0 && !gethostname(host, sizeof(host)) &&
        strcmp(started_on, host)) {
        char jpath[4200], *job = NULL;
        loom_snprintf(jpath, sizeof(jpath), "%s/slurm_job", sd);
        loom_read_file(jpath, 60, &job, NULL);
        fprintf(stderr, "loom: the cluster in %s was started on %s; run `loom stop` there, or end Slurm job %s"
                        " with `loom slurm cancel %s`\n", sd, started_on, job ? job : "?", job ? job : "JOB");
        free(job);
        free(started_on);
        return 1;
    }
    if (started_on) { /* srun kills a step it is signalled to stop: ask the step's tasks */
        char jpath[4200], *job = NULL;
        loom_snprintf(jpath, sizeof(jpath), "%s/slurm_job", sd);
        if (loom_read_file(jpath, 60, &job, NULL) == 0 && slurm_signal_steps(job, SIGINT) == 0)
            wait_pids_gone(sd, 15000); /* srun exits after its tasks */
        free(job);
    }
    free(started_on);
    loom_snprintf(dir, sizeof(dir), "%s/pids", sd);
    DIR *dp = opendir(dir);
    if (!dp) {
        fprintf(stderr, "loom: nothing to stop in %s\n", sd);
        return 0;
    }
    pid_t pids[256];
    char kinds[256][32];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp)) && n < 256) {
        if (e->d_name[0] == '.') continue;
        char path[4600], *what = NULL;
        loom_snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        pid_t pid = (pid_t)atoi(e->d_name);
        if (pid <= 0) continue;
        if (loom_read_file(path, 64, &what, NULL) == 0) {
            loom_snprintf(kinds[n], sizeof(kinds[n]), "%s", what);
            free(what);
        } else {
            loom_snprintf(kinds[n], sizeof(kinds[n]), "process");
        }
        unlink(path);
        pids[n++] = pid;
    }
    closedir(dp);
    /* daemons first, then the head */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n; i++) {
            int is_head = !strcmp(kinds[i], "head");
            if (is_head != pass || kill(pids[i], 0) != 0) continue;
            loom_stop_process(pids[i], 5000);
            printf("loom: stopped %s (pid %d)\n", kinds[i], (int)pids[i]);
        }
    char addr[4200];
    loom_snprintf(addr, sizeof(addr), "%s/address", sd);
    unlink(addr);
    return 0;
}

/* ---- status and jobs ---------------------------------------------------- */

static void human_bytes(uint64_t b, char *buf, size_t len)
{
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    loom_snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

/* The status JSON as a table for people (--json prints it raw). */
static void print_status(const char *text)
{
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    if (!root) {
        printf("%s\n", text);
        return;
    }
    json_t *nodes = json_object_get(root, "nodes"), *tasks = json_object_get(root, "tasks");
    printf("%-4s %-20s %-22s %-6s %-11s %-9s %-21s %-21s %-8s %s\n", "NODE", "HOST", "ADDRESS", "STATE", "CPUS",
           "GPUS", "MEMORY", "STORE", "RUNNING", "RESOURCES / LABELS");
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n) {
        char mu[32], mt[32], su[32], st[32], cpus[32], mem[64], store[64];
        human_bytes((uint64_t)json_integer_value(json_object_get(n, "memory_used")), mu, sizeof(mu));
        human_bytes((uint64_t)json_integer_value(json_object_get(n, "memory")), mt, sizeof(mt));
        human_bytes((uint64_t)json_integer_value(json_object_get(n, "store_used")), su, sizeof(su));
        human_bytes((uint64_t)json_integer_value(json_object_get(n, "store_capacity")), st, sizeof(st));
        loom_snprintf(cpus, sizeof(cpus), "%g/%g", json_number_value(json_object_get(n, "cpus_used")),
                      json_number_value(json_object_get(n, "cpus")));
        loom_snprintf(mem, sizeof(mem), "%s/%s", mu, mt);
        loom_snprintf(store, sizeof(store), "%s/%s", su, st);
        char gpus[32], extra[512] = "";
        loom_snprintf(gpus, sizeof(gpus), "%g/%lld", json_number_value(json_object_get(n, "gpus_used")),
                      (long long)json_integer_value(json_object_get(n, "gpus")));
        const char *k;
        json_t *val;
        json_object_foreach(json_object_get(n, "resources"), k, val) {
            size_t used = strlen(extra);
            loom_snprintf(extra + used, sizeof(extra) - used, "%s%s=%g/%g", used ? " " : "", k,
                          json_number_value(json_array_get(val, 1)), json_number_value(json_array_get(val, 0)));
        }
        json_object_foreach(json_object_get(n, "labels"), k, val) {
            size_t used = strlen(extra);
            loom_snprintf(extra + used, sizeof(extra) - used, "%s%s:%s", used ? " " : "", k, json_string_value(val));
        }
        printf("%-4lld %-20s %-22s %-6s %-11s %-9s %-21s %-21s %-8lld %s\n",
               (long long)json_integer_value(json_object_get(n, "id")),
               json_string_value(json_object_get(n, "hostname")), json_string_value(json_object_get(n, "address")),
               json_string_value(json_object_get(n, "state")), cpus, gpus, mem, store,
               (long long)json_integer_value(json_object_get(n, "running")), extra);
    }
    json_t *total = json_object_get(root, "total");
    printf("tasks: %lld waiting, %lld queued, %lld running, %lld finished, %lld failed (kept);"
           " %lld finished and %lld failed since the head started; %lld objects\n",
           (long long)json_integer_value(json_object_get(tasks, "waiting")),
           (long long)json_integer_value(json_object_get(tasks, "queued")),
           (long long)json_integer_value(json_object_get(tasks, "running")),
           (long long)json_integer_value(json_object_get(tasks, "finished")),
           (long long)json_integer_value(json_object_get(tasks, "failed")),
           (long long)json_integer_value(json_object_get(total, "finished")),
           (long long)json_integer_value(json_object_get(total, "failed")),
           (long long)json_integer_value(json_object_get(root, "objects")));
    json_t *actors = json_object_get(root, "actors"), *pgs = json_object_get(root, "placement_groups");
    printf("actors: %lld alive, %lld pending, %lld dead; placement groups: %lld created, %lld pending, %lld infeasible\n",
           (long long)json_integer_value(json_object_get(actors, "alive")),
           (long long)json_integer_value(json_object_get(actors, "pending")),
           (long long)json_integer_value(json_object_get(actors, "dead")),
           (long long)json_integer_value(json_object_get(pgs, "created")),
           (long long)json_integer_value(json_object_get(pgs, "pending")),
           (long long)json_integer_value(json_object_get(pgs, "infeasible")));
    json_t *inf = json_object_get(root, "infeasible");
    if (json_integer_value(json_object_get(inf, "count")) > 0) {
        printf("infeasible requests: %lld; the latest:\n", (long long)json_integer_value(json_object_get(inf, "count")));
        size_t j;
        json_t *msg;
        json_array_foreach(json_object_get(inf, "recent"), j, msg) printf("  %s\n", json_string_value(msg));
    }
    json_decref(root);
}

static int cmd_actors(const opts *o)
{
    loom_client *c;
    if (connect_cli(o, &c)) return 1;
    char *json = NULL;
    int rc = loom_actors_json(c, &json);
    if (rc) {
        fprintf(stderr, "loom: actors: %s\n", loom_last_error(c));
    } else if (opt(o, "json")) {
        printf("%s\n", json);
    } else {
        json_error_t jerr;
        json_t *root = json_loads(json, 0, &jerr);
        printf("%-32s %-16s %-20s %-8s %-5s %-9s %-8s %-8s %s\n", "ACTOR", "CLASS", "NAME", "STATE", "NODE",
               "LIFETIME", "WAITING", "DONE", "ERROR");
        size_t i;
        json_t *a;
        json_array_foreach(root, i, a) {
            printf("%-32s %-16s %-20s %-8s %-5lld %-9s %-8lld %-8lld %s\n", json_string_value(json_object_get(a, "id")),
                   json_string_value(json_object_get(a, "class")), json_string_value(json_object_get(a, "name")),
                   json_string_value(json_object_get(a, "state")), (long long)json_integer_value(json_object_get(a, "node")),
                   json_is_true(json_object_get(a, "detached")) ? "detached" : "job",
                   (long long)json_integer_value(json_object_get(a, "calls_waiting")),
                   (long long)json_integer_value(json_object_get(a, "calls_done")),
                   json_string_value(json_object_get(a, "error")));
        }
        json_decref(root);
    }
    free(json);
    loom_disconnect(&c);
    return rc ? 1 : 0;
}

static int cmd_drain(const opts *o)
{
    if (o->npos < 1) return usage();
    char *end;
    long id = strtol(o->pos[0], &end, 10);
    if (*end || id < 1 || id > UINT32_MAX) {
        fprintf(stderr, "loom: drain: '%s' is not a node id (see loom status)\n", o->pos[0]);
        return 2;
    }
    loom_client *c;
    if (connect_cli(o, &c)) return 1;
    int rc = loom_node_drain(c, (uint32_t)id);
    if (rc) fprintf(stderr, "loom: drain %ld: %s\n", id, loom_last_error(c));
    else printf("loom: node %ld is draining; `loom status` shows it 'drained' once nothing runs there\n", id);
    loom_disconnect(&c);
    return rc ? 1 : 0;
}

static int cmd_kill_actor(const opts *o)
{
    if (o->npos < 1) return usage();
    loom_client *c;
    if (connect_cli(o, &c)) return 1;
    loom_actor a;
    int rc = loom_actor_from_hex(o->pos[0], &a) == 0 ? LOOM_OK : loom_actor_lookup(c, o->pos[0], &a);
    if (!rc) rc = loom_actor_kill(c, a);
    if (rc) fprintf(stderr, "loom: kill-actor %s: %s\n", o->pos[0], loom_last_error(c));
    loom_disconnect(&c);
    return rc ? 1 : 0;
}

/* loom kv put KEY VALUE | get KEY [--timeout S] | del KEY */
/* loom token create --user NAME [--admin] | loom token revoke TOKEN */
static int cmd_token(const opts *o)
{
    const char *op = o->npos ? o->pos[0] : "";
    int create = !strcmp(op, "create");
    if (!create && strcmp(op, "revoke")) {
        fprintf(stderr, "loom: token: say create --user NAME [--admin], or revoke TOKEN\n");
        return 2;
    }
    if (create && (!opt(o, "user") || !*opt(o, "user"))) {
        fprintf(stderr, "loom: token create: give the user: --user NAME\n");
        return 2;
    }
    if (!create && o->npos < 2) {
        fprintf(stderr, "loom: token revoke: give the TOKEN\n");
        return 2;
    }
    loom_client *c;
    if (connect_cli(o, &c)) return 1;
    char token[LOOM_GATEWAY_TOKEN_LEN];
    int rc = create ? loom_gateway_token_create(c, opt(o, "user"), opt(o, "admin") != NULL, token)
                    : loom_gateway_token_revoke(c, o->pos[1]);
    if (rc == LOOM_EINVAL) fprintf(stderr, "loom: token: a user name is 1-63 bytes\n");
    else if (rc == LOOM_ENOTFOUND) fprintf(stderr, "loom: token revoke: no such token\n");
    else if (rc) fprintf(stderr, "loom: token %s: %s\n", op, loom_last_error(c));
    else if (create) printf("%s\n", token);
    else printf("loom: token revoked (the gateway stops taking it within 5 s)\n");
    loom_disconnect(&c);
    return rc ? 1 : 0;
}

static int cmd_kv(const opts *o)
{
    if (o->npos < 2) return usage();
    const char *op = o->pos[0], *key = o->pos[1];
    if (strcmp(op, "put") && strcmp(op, "get") && strcmp(op, "del")) {
        fprintf(stderr, "loom: kv: unknown operation '%s' (put, get or del)\n", op);
        return 2;
    }
    if (!strcmp(op, "put") && o->npos < 3) {
        fprintf(stderr, "loom: kv put: give a KEY and a VALUE\n");
        return 2;
    }
    loom_client *c;
    if (connect_cli(o, &c)) return 1;
    int rc;
    if (!strcmp(op, "put")) {
        rc = loom_kv_put(c, key, o->pos[2], strlen(o->pos[2]));
    } else if (!strcmp(op, "del")) {
        rc = loom_kv_del(c, key);
    } else {
        int64_t timeout = opt(o, "timeout") ? (int64_t)(atof(opt(o, "timeout")) * 1000) : 0;
        void *data = NULL;
        size_t len = 0;
        rc = loom_kv_get(c, key, timeout, &data, &len);
        if (!rc) {
            fwrite(data, 1, len, stdout);
            if (len && ((char *)data)[len - 1] != '\n') putchar('\n');
        }
        free(data);
    }
    if (rc) fprintf(stderr, "loom: kv %s %s: %s\n", op, key, loom_last_error(c));
    loom_disconnect(&c);
    return rc ? 1 : 0;
}

static int cmd_infer(const opts *o)
{
    infer_cli_opts io = {.model = opt(o, "model"), .input = opt(o, "input"), .output = opt(o, "output"),
                         .params = opt(o, "params"), .no_cache = opt(o, "no-cache") != NULL,
                         .quiet = opt(o, "quiet") != NULL};
    const char *v;
    if ((v = opt(o, "shard-size"))) io.shard_size = strtoll(v, NULL, 10);
    if ((v = opt(o, "max-in-flight"))) io.max_in_flight = atoi(v);
    if ((v = opt(o, "num-cpus"))) io.num_cpus = atof(v);
    if ((v = opt(o, "num-gpus"))) io.num_gpus = atof(v);
    if ((v = opt(o, "straggler-factor"))) io.straggler_factor = atof(v);
    if (!io.model || !*io.model || !io.input || !*io.input || !io.output || !*io.output) {
        fprintf(stderr, "loom infer: give --model NAME[:VERSION], --input DATASET and --output DIR\n");
        return 2;
    }
    if ((opt(o, "shard-size") && io.shard_size <= 0) || (opt(o, "max-in-flight") && io.max_in_flight <= 0)) {
        fprintf(stderr, "loom infer: --shard-size and --max-in-flight must be positive\n");
        return 2;
    }
    loom_client *c;
    if (connect_cli(o, &c)) return 1;
    int rc = infer_cli(c, &io);
    loom_disconnect(&c);
    return rc;
}

static int cmd_tune(const opts *o)
{
    if (o->npos < 1) return usage();
    const char *op = o->pos[0];
    tune_cli_opts to = {.arg = o->npos > 1 ? o->pos[1] : NULL, .output = opt(o, "output"),
                        .quiet = opt(o, "quiet") != NULL, .json = opt(o, "json") != NULL};
    if (!to.arg && strcmp(op, "status")) {
        fprintf(stderr, "loom tune %s: give %s\n", op, !strcmp(op, "run") ? "a sweep spec (JSON file)" : "a sweep id");
        return 2;
    }
    char sd[4096], gpath[4200], gw[300] = "";
    loom_snprintf(gpath, sizeof(gpath), "%s/http_address", state_dir(o, sd, sizeof(sd)));
    FILE *gf = fopen(gpath, "r");
    if (gf) {
        if (fgets(gw, sizeof(gw), gf)) gw[strcspn(gw, "\r\n")] = 0;
        fclose(gf);
    }
    to.gateway = opt(o, "gateway") ? opt(o, "gateway") : gw[0] ? gw : NULL;
    loom_client *c;
    if (connect_cli(o, &c)) return 1;
    int rc = tune_cli(c, op, &to);
    loom_disconnect(&c);
    return rc;
}

static int cmd_status(const opts *o)
{
    loom_client *c;
    if (connect_cli(o, &c)) return 1;
    char *json = NULL;
    int rc = loom_status_json(c, &json);
    if (rc) {
        fprintf(stderr, "loom: status: %s\n", loom_last_error(c));
    } else if (opt(o, "json")) {
        printf("%s\n", json);
    } else {
        print_status(json);
    }
    free(json);
    loom_disconnect(&c);
    return rc ? 1 : 0;
}

static int upload_lib(void *arg, const char *path, loom_ref *out)
{
    return loom_library_load(arg, path, out);
}

static char *dir_of(const char *path, char *buf, size_t len)
{
    loom_snprintf(buf, len, "%s", path);
    char *slash = strrchr(buf, '/');
    if (slash) *slash = 0;
    else loom_snprintf(buf, len, ".");
    return buf;
}

static int print_value(loom_value *v, int as_json)
{
    if (as_json) {
        char *json;
        if (loom_msgpack_to_json(loom_value_data(v), loom_value_size(v), &json) == 0) {
            printf("%s\n", json);
            free(json);
            return 0;
        }
        fprintf(stderr, "loom: the value is not msgpack; printing its bytes\n");
    }
    fwrite(loom_value_data(v), 1, loom_value_size(v), stdout);
    return 0;
}

static int cmd_submit(const opts *o)
{
    if (o->npos < 1) return usage();
    const char *file = o->pos[0];
    char *text;
    size_t len;
    if (loom_read_file(file, (size_t)1 << 30, &text, &len)) {
        fprintf(stderr, "loom: cannot read %s: %s\n", file, strerror(errno));
        return 1;
    }
    loom_client *c;
    if (connect_cli(o, &c)) {
        free(text);
        return 1;
    }
    char base[4096], err[512];
    loom_graph *g = NULL;
    int rc = loom_graph_from_json(text, len, dir_of(file, base, sizeof(base)), upload_lib, c, &g, err, sizeof(err));
    char json_name[256] = "";
    if (!rc) loom_graph_json_name(text, len, json_name, sizeof(json_name));
    free(text);
    if (rc) {
        fprintf(stderr, "loom: %s: %s\n", file, err);
        loom_disconnect(&c);
        return 1;
    }
    char job[LOOM_JOB_ID_LEN];
    /* --name, else the document's "name" */
    const char *name = opt(o, "name") && *opt(o, "name") ? opt(o, "name") : json_name[0] ? json_name : NULL;
    loom_submit_opts so = {.job_name = name, .detached = 1};
    rc = loom_graph_submit(c, g, &so, job);
    if (rc) {
        fprintf(stderr, "loom: submit: %s\n", loom_last_error(c));
    } else {
        printf("%s\n", job);
        fflush(stdout);
        if (opt(o, "wait")) {
            int n = loom_graph_size(g);
            loom_ref *refs = calloc((size_t)n, sizeof(loom_ref));
            for (int i = 0; refs && i < n; i++) loom_graph_ref(g, i, 0, &refs[i]);
            int64_t timeout = opt(o, "timeout") ? (int64_t)(atof(opt(o, "timeout")) * 1000) : -1;
            int done = refs ? loom_wait(c, refs, n, n, timeout, NULL) : LOOM_ENOMEM;
            int failed = 0;
            for (int i = 0; refs && i < n && done == n; i++) {
                loom_value *v;
                int r = loom_get(c, refs[i], 0, &v);
                if (r) {
                    failed++;
                    fprintf(stderr, "loom: task '%s' failed: %s\n", loom_graph_node_name(g, i), loom_last_error(c));
                }
                loom_value_release(&v);
            }
            free(refs);
            if (done < n) {
                fprintf(stderr, "loom: %d of %d tasks done before the timeout\n", done < 0 ? 0 : done, n);
                rc = LOOM_ETIMEOUT;
            } else if (failed) {
                rc = LOOM_ETASK;
            } else {
                fprintf(stderr, "loom: all %d tasks finished\n", n);
            }
        }
    }
    loom_graph_destroy(&g);
    loom_disconnect(&c);
    return rc ? 1 : 0;
}

/* JOB TASK[:OUTPUT] or a 40-hex ref -> ref */
static int resolve_ref(loom_client *c, const opts *o, int log, loom_ref *ref)
{
    if (o->npos == 1 && loom_ref_from_hex(o->pos[0], ref) == 0) return 0;
    if (o->npos < 2) return LOOM_EINVAL;
    char task[512];
    loom_snprintf(task, sizeof(task), "%s", o->pos[1]);
    int output = 0;
    char *colon = strrchr(task, ':');
    if (colon) {
        *colon = 0;
        output = atoi(colon + 1);
    }
    int rc = loom_job_ref(c, o->pos[0], task, log ? -1 : output, ref);
    if (rc) fprintf(stderr, "loom: %s\n", loom_last_error(c));
    return rc;
}

static int cmd_get(const opts *o, int logs)
{
    if (o->npos < 1) return usage();
    loom_client *c;
    if (connect_cli(o, &c)) return 1;
    loom_ref ref;
    int rc = resolve_ref(c, o, logs, &ref);
    if (rc == LOOM_EINVAL) {
        loom_disconnect(&c);
        return usage();
    }
    if (!rc && logs) {
        char *text;
        size_t n;
        rc = loom_logs(c, ref, &text, &n);
        if (!rc) {
            fwrite(text, 1, n, stdout);
            free(text);
        } else {
            fprintf(stderr, "loom: logs: %s\n", loom_last_error(c));
        }
    } else if (!rc) {
        int64_t timeout = opt(o, "timeout") ? (int64_t)(atof(opt(o, "timeout")) * 1000) : -1;
        loom_value *v;
        rc = loom_get(c, ref, timeout, &v);
        if (rc) fprintf(stderr, "loom: get: %s: %s\n", loom_strerror(rc), loom_last_error(c));
        else print_value(v, opt(o, "json") != NULL);
        loom_value_release(&v);
    }
    loom_disconnect(&c);
    return rc ? 1 : 0;
}

/* Cancel every task of a job but keep the job, so `loom job` still shows what
 * was cancelled (`loom delete` is what forgets a job).  The refs are read from
 * the job's JSON: `"ref":"` can only be a key there, as JSON escapes every
 * quote inside a string.  Tasks already finished and freed are skipped. */
static int cancel_job_tasks(loom_client *c, const char *job_id)
{
    char *json;
    int rc = loom_job_json(c, job_id, &json);
    if (rc) return rc;
    static const char key[] = "\"ref\":\"";
    for (const char *p = strstr(json, key); p && !rc; p = strstr(p, key)) {
        p += sizeof(key) - 1;
        char hex[2 * LOOM_ID_LEN + 1];
        loom_ref ref;
        loom_snprintf(hex, sizeof(hex), "%.*s", 2 * LOOM_ID_LEN, p);
        if (strlen(hex) != 2 * LOOM_ID_LEN || p[2 * LOOM_ID_LEN] != '"' || loom_ref_from_hex(hex, &ref))
            continue;
        rc = loom_cancel(c, ref);
        if (rc == LOOM_ENOTFOUND) rc = 0;
    }
    free(json);
    return rc;
}

/* loom jobs [--label L] [--offset N] [--limit N] [--json]: newest first. */
static int cmd_jobs(const opts *o)
{
    loom_client *c;
    if (connect_cli(o, &c)) return 1;
    char *text = NULL;
    int rc = loom_jobs_json(c, opt(o, "label"), (uint64_t)opt_int(o, "offset", 0), (uint64_t)opt_int(o, "limit", 100),
                            &text);
    if (rc) fprintf(stderr, "loom: jobs: %s\n", loom_last_error(c));
    json_t *j = rc || opt(o, "json") ? NULL : json_loads(text, 0, NULL);
    if (!rc && !j) printf("%s\n", text);
    if (j) {
        printf("%-16s %-20s %-12s %6s  %s\n", "JOB", "NAME", "LABEL", "TASKS", "STATES");
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(j, "jobs"), i, e) {
            char states[160] = "";
            const char *k;
            json_t *v;
            json_object_foreach(json_object_get(e, "states"), k, v) if (json_integer_value(v)) {
                size_t n = strlen(states);
                loom_snprintf(states + n, sizeof(states) - n, "%s%s %lld", n ? ", " : "", k,
                              (long long)json_integer_value(v));
            }
            printf("%-16s %-20s %-12s %6lld  %s\n", json_string_value(json_object_get(e, "id")),
                   json_string_value(json_object_get(e, "name")), json_string_value(json_object_get(e, "label")),
                   (long long)json_integer_value(json_object_get(e, "tasks")), states);
        }
        printf("(%lld of %lld jobs from %lld)\n", (long long)json_array_size(json_object_get(j, "jobs")),
               (long long)json_integer_value(json_object_get(j, "total")),
               (long long)json_integer_value(json_object_get(j, "offset")));
        json_decref(j);
    }
    free(text);
    loom_disconnect(&c);
    return rc ? 1 : 0;
}

static int cmd_job(const opts *o, const char *what)
{
    if (o->npos < 1) return usage();
    loom_client *c;
    if (connect_cli(o, &c)) return 1;
    int rc;
    if (!strcmp(what, "job")) {
        char *json;
        rc = loom_job_json(c, o->pos[0], &json);
        if (!rc) {
            printf("%s\n", json);
            free(json);
        }
    } else if (!strcmp(what, "delete")) {
        rc = loom_job_delete(c, o->pos[0]);
    } else { /* cancel */
        loom_ref ref;
        if (o->npos >= 2) {
            rc = resolve_ref(c, o, 0, &ref);
            if (!rc) rc = loom_cancel(c, ref);
        } else {
            rc = cancel_job_tasks(c, o->pos[0]);
        }
    }
    if (rc) fprintf(stderr, "loom: %s: %s\n", what, loom_last_error(c));
    loom_disconnect(&c);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) return usage();
    const char *cmd = argv[1];
    if (!strcmp(cmd, "slurm")) return slurm_cli(argc - 2, argv + 2); /* a driver's argv follows "--" */
    opts o;
    if (parse_opts(argc - 2, argv + 2, &o)) {
        fprintf(stderr, "loom: too many arguments\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (!strcmp(cmd, "_head")) return cmd_head(&o);
    if (!strcmp(cmd, "_node")) return cmd_node(&o);
    if (!strcmp(cmd, "executor")) return cmd_executor(&o);
    if (!strcmp(cmd, "actors")) return cmd_actors(&o);
    if (!strcmp(cmd, "kill-actor")) return cmd_kill_actor(&o);
    if (!strcmp(cmd, "drain")) return cmd_drain(&o);
    if (!strcmp(cmd, "kv")) return cmd_kv(&o);
    if (!strcmp(cmd, "tune")) return cmd_tune(&o);
    if (!strcmp(cmd, "infer")) return cmd_infer(&o);
    if (!strcmp(cmd, "token")) return cmd_token(&o);
    if (!strcmp(cmd, "jobs")) return cmd_jobs(&o);
    if (!strcmp(cmd, "start")) return cmd_start(&o);
    if (!strcmp(cmd, "stop")) return cmd_stop(&o);
    if (!strcmp(cmd, "status")) return cmd_status(&o);
    if (!strcmp(cmd, "submit")) return cmd_submit(&o);
    if (!strcmp(cmd, "get")) return cmd_get(&o, 0);
    if (!strcmp(cmd, "logs")) return cmd_get(&o, 1);
    if (!strcmp(cmd, "job") || !strcmp(cmd, "cancel") || !strcmp(cmd, "delete")) return cmd_job(&o, cmd);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("loom %s\n", LOOM_VERSION_STRING);
        return 0;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        fputs(usage_text, stdout);
        return 0;
    }
    fprintf(stderr, "loom: unknown command '%s'\n", cmd);
    return usage();
}
