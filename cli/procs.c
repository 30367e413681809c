/* cli/procs.c — the processes loom starts itself, behind hidden commands:
 * the head (`loom _head`, from `loom start --head`), node daemons (`loom
 * _node`, from `loom start`, `loom slurm start` and loom_init's local
 * clusters) and executors (`loom executor`, from a daemon), so one binary is
 * all a machine needs.  `loom start --block` runs a head or daemon here in the
 * foreground. */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include "cli/cli.h"
#include "loom/loom.h"
#include "api/client_internal.h"
#include "runtime/curve.h"
#include "runtime/log.h"
#include "runtime/secret.h"
#include "runtime/util.h"
#include "scheduler/head.h"
#include "worker/daemon.h"
#include "gateway/gateway.h"

/* ---- internal process entry points -------------------------------------- */

/* One head per state dir: its tables (head.lmdb) and address file belong to
 * one head.  The head holds an flock on STATE_DIR/head.lock for as long as it
 * runs (the descriptor is never closed; the kernel drops the lock at exit). */
static int lock_head_state(const char *sd)
{
    char path[4200];
    loom__snprintf(path, sizeof(path), "%s/head.lock", sd);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return -1;
    }
    return 0;
}

/* The gateway turns ready as soon as its head listens (they share this process). */
static void head_listening(void *arg, const char *addr)
{
    (void)addr;
    loom_gateway_head_listening(arg);
}

/* A head holds a socket per node, driver and HTTP connection: 1,024 files
 * (the usual soft limit) would let a crowd of idle HTTP connections make it
 * fail to accept anything, health checks included.  Raise the soft limit to
 * the hard one (at most 65,536). */
static void raise_file_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 65536 ? 65536 : rl.rlim_max;
    if (rl.rlim_cur >= want) return;
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) LOG_WARN("cannot raise the open-files limit to %lu", (unsigned long)want);
}

int cmd_head(const opts *o)
{
    char sd[4096], secret_path[4200], secret[LOOM_SECRET_HEX + 1];
    state_dir(o, sd, sizeof(sd));
    loom__log_init("head");
    raise_file_limit();
    char why[512];
    if (prepare_state_dir(sd, why, sizeof(why))) {
        LOG_ERROR("%s", why);
        return 1;
    }
    if (lock_head_state(sd)) {
        LOG_ERROR("another head is running with the state dir %s (stop it with `loom stop --state-dir %s`)",
                  sd, sd);
        return 1;
    }
    if (opt(o, "secret-file") && *opt(o, "secret-file"))
        loom__snprintf(secret_path, sizeof(secret_path), "%s", opt(o, "secret-file"));
    else
        loom__snprintf(secret_path, sizeof(secret_path), "%s/secret", sd);
    const char *db_dir = opt(o, "db-dir");
    if (db_dir && (!*db_dir || loom__mkdir_p(db_dir))) {
        LOG_ERROR("cannot make the database dir '%s': %s", db_dir, strerror(errno));
        return 1;
    }
    int rc = loom__secret_load(secret_path, secret);
    if (rc == LOOM_ENOTFOUND) rc = loom__secret_create(secret_path, secret);
    if (rc) {
        LOG_ERROR("cannot use the cluster secret %s: %s", secret_path, loom_strerror(rc));
        return 1;
    }
    /* a head restarted with its state dir keeps the port its daemons and
       drivers know (--port 0 asks for any free port the first time) */
    int port = opt_int(o, "port", 0);
    char addrpath[4200], *prev = NULL;
    size_t plen = 0;
    loom__snprintf(addrpath, sizeof(addrpath), "%s/address", sd);
    if (port == 0 && loom__read_file(addrpath, 512, &prev, &plen) == 0) {
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
    const char *auth = opt(o, "http-auth");
    if (auth && *auth && strcmp(auth, "tokens") && strcmp(auth, "none")) {
        LOG_ERROR("--http-auth is tokens (the default) or none, not '%s'", auth);
        return 1;
    }
    if (opt(o, "http-port")) {
        char gerr[600] = "";
        loom_gateway_opts go = {
            .host = opt(o, "http-bind") ? opt(o, "http-bind") : "127.0.0.1",
            .port = opt_int(o, "http-port", 0),
            .state_dir = sd,
            .secret = secret,
            .lib_dir = opt(o, "http-lib-dir"),
            .auth = !auth || strcmp(auth, "none") != 0,
            .workers = opt_int(o, "http-workers", 0),
            .queue_max = opt_int(o, "http-queue", 0),
            .rate_per_user = opt(o, "http-rate") ? (atof(opt(o, "http-rate")) > 0 ? atof(opt(o, "http-rate")) : -1) : 0,
            .oidc = {
                .issuer = opt(o, "oidc-issuer"), .audience = opt(o, "oidc-audience"), .jwks_file = opt(o, "oidc-jwks"),
                .user_claim = opt(o, "oidc-user-claim"), .groups_claim = opt(o, "oidc-groups-claim"),
                .run_group = opt(o, "oidc-run-group"), .admin_group = opt(o, "oidc-admin-group"),
            },
            .tls_cert = opt(o, "tls-cert"),
            .tls_key = opt(o, "tls-key"),
            .error = gerr,
            .error_cap = sizeof gerr,
        };
        rc = loom_gateway_start(&go, &gw);
        if (rc == LOOM_EAUTH) {
            LOG_ERROR("--http-auth=none lets anyone who reaches the gateway act as an admin: it may listen on "
                      "loopback addresses only, not %s", go.host);
            return 1;
        }
        if (rc) {
            LOG_ERROR("cannot start the HTTP gateway on %s:%d: %s", go.host, go.port,
                      gerr[0] ? gerr : loom_strerror(rc));
            return 1;
        }
        char gpath[4200], gaddr[300];
        loom__snprintf(gpath, sizeof(gpath), "%s/http_address", sd);
        loom__snprintf(gaddr, sizeof(gaddr), "%s:%d", go.host, loom_gateway_port(gw));
        loom__write_file(gpath, gaddr, strlen(gaddr), 0600);
        /* http_address stays HOST:PORT; clients read the scheme beside it */
        const char *scheme = go.tls_cert ? "https" : "http";
        loom__snprintf(gpath, sizeof(gpath), "%s/http_scheme", sd);
        loom__write_file(gpath, scheme, strlen(scheme), 0600);
        LOG_INFO("HTTP gateway listening on %s://%s", scheme, gaddr);
    }
    ho.on_listening = head_listening;
    ho.on_listening_arg = gw;
    rc = loom__head_run(&ho);
    loom_gateway_stop(&gw);
    if (db_dir && opt(o, "db-temp")) loom__rm_rf(db_dir); /* a Slurm cluster's tables end with it */
    return rc ? 1 : 0;
}

static int read_secret_for_node(const opts *o, char *secret)
{
    const char *file = opt(o, "secret-file");
    if (!file) file = getenv("LOOM_SECRET_FILE");
    char path[4200], sd[4096];
    if (!file) {
        loom__snprintf(path, sizeof(path), "%s/secret", state_dir(o, sd, sizeof(sd)));
        file = path;
    }
    const char *env = getenv("LOOM_SECRET");
    if (env && strlen(env) == LOOM_SECRET_HEX) {
        memcpy(secret, env, LOOM_SECRET_HEX + 1);
        return 0;
    }
    int rc = loom__secret_load(file, secret);
    if (rc) LOG_ERROR("cannot read the cluster secret from %s: %s (copy the head's secret file there,"
                      " mode 0600, or set LOOM_SECRET_FILE)", file, loom_strerror(rc));
    return rc;
}

/* Check the node options before starting anything, so a mistake is reported
 * by the command itself (not only in a daemon's log). */
int check_node_opts(const opts *o)
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
    int rc = loom__parse_resources(opt(o, "resources"), &a, &res, &n, err, sizeof(err));
    if (!rc) rc = loom__parse_labels(opt(o, "labels"), &a, &labels, &n, err, sizeof(err));
    loom__arena_free(&a);
    if (rc) {
        fprintf(stderr, "loom: %s\n", err);
        return 1;
    }
    return 0;
}


/* Wait until PATH holds the head's "HOST:PORT" (written by a head that may
 * start after this daemon), saying so every 10 s; at most wait_s seconds. */
static int wait_address_file(const char *path, int wait_s, char *addr, size_t len)
{
    int64_t start = loom__now_ms(), said = 0;
    for (;;) {
        char *text = NULL;
        size_t n = 0;
        if (loom__read_file(path, 512, &text, &n) == 0) {
            while (n && (text[n - 1] == '\n' || text[n - 1] == ' ')) text[--n] = 0;
            const char *colon = strrchr(text, ':');
            int ok = colon && colon != text && atoi(colon + 1) > 0 && n < len;
            if (ok) loom__snprintf(addr, len, "%s", text);
            free(text);
            if (ok) return 0;
        }
        int64_t now = loom__now_ms();
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
        loom__snprintf(mem, sizeof(mem), "%lldM", atoll(mb));
        opt_default(o, "memory", mem);
    }
    const char *node = getenv("SLURMD_NODENAME"), *job = getenv("SLURM_JOB_ID");
    if (node && job && strlen(node) < 200 && strlen(job) < 40) {
        const char *user = opt(o, "labels");
        loom__snprintf(labels, sizeof(labels), "%s%sslurm_node=%s,slurm_job=%s", user ? user : "",
                       user && *user ? "," : "", node, job);
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
    loom__snprintf(path, sizeof(path), "%s/logs/node-%s.log", state_dir(o, sd, sizeof(sd)), node);
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
    loom__snprintf(dir, sizeof(dir), "%s", base);
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
        loom__snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (loom__rm_rf(path) == 0) LOG_INFO("removed the work dir of a daemon that is gone: %s", path);
    }
    closedir(dp);
}

int cmd_node(const opts *given)
{
    loom__log_init("node");
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
        loom__snprintf(nodedir, sizeof(nodedir), "%s-%d", ndb, (int)getpid());
        nd = nodedir;
        own_node_dir = 1;
    } else if (!nd) {
        char host[200];
        if (gethostname(host, sizeof(host))) loom__snprintf(host, sizeof(host), "node");
        loom__snprintf(nodedir, sizeof(nodedir), "%s/nodes/%s-%d", state_dir(o, sd, sizeof(sd)), host, (int)getpid());
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
    int rc = loom__daemon_run(&d);
    if (own_node_dir) loom__rm_rf(nd);
    return rc ? 1 : 0;
}

/* A task's client (loom_task_client): one per thread of the executor, made
 * on first use from the environment the daemon set (LOOM_ADDRESS) and the
 * task key of the executor's grant (runtime/curve.h: it may connect as a
 * driver only; the executor never holds the cluster secret), and kept for
 * the executor's life. */
static loom_exec_grant exec_grant;
static __thread loom_client *task_client;

static loom_client *connect_task_client(char *err, size_t errlen)
{
    if (task_client) return task_client;
    const char *addr = getenv("LOOM_ADDRESS");
    if (!addr || !*addr) {
        loom__snprintf(err, errlen, "LOOM_ADDRESS is not set in the executor");
        return NULL;
    }
    loom_client *c = NULL;
    int rc = loom__connect_with_keys(addr, &exec_grant.task, &c);
    if (rc) {
        loom__snprintf(err, errlen, "%s", loom_strerror(rc));
        return NULL;
    }
    task_client = c;
    return c;
}

/* Read the executor's grant (its token and task key, runtime/curve.h) from
 * the descriptor its daemon passed (a pipe it wrote the grant into) and
 * close it, so nothing the executor runs inherits it.  0, or -1 when it is
 * not there or malformed. */
static int read_grant_fd(const char *fdarg, loom_exec_grant *g)
{
    int fd = fdarg ? atoi(fdarg) : -1;
    if (fd < 3) return -1;
    char text[LOOM_EXEC_GRANT_LEN + 1];
    size_t n = 0;
    while (n < LOOM_EXEC_GRANT_LEN) {
        ssize_t r = read(fd, text + n, LOOM_EXEC_GRANT_LEN - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(fd);
    int rc = loom__exec_grant_parse(text, n, g);
    memset(text, 0, sizeof(text));
    return rc ? -1 : 0;
}

int cmd_executor(const opts *o)
{
    /* --secret-fd keeps its name; what comes through it is now the grant */
    if (read_grant_fd(opt(o, "secret-fd"), &exec_grant)) {
        LOG_ERROR("no grant on --secret-fd (the node daemon hands it over on fd 3)");
        return 1;
    }
    loom_executor_opts e = {
        .daemon_endpoint = opt(o, "ipc"),
        .token = exec_grant.token,
        .store_dir = opt(o, "store"),
        .spill_dir = opt(o, "spill"),
        .node_dir = opt(o, "node-dir"),
        .actor = opt(o, "actor"),
        .gpus = opt(o, "gpus"),
        .connect = connect_task_client,
    };
    if (!e.daemon_endpoint || !e.store_dir || !e.node_dir) return 2;
    return loom__executor_run(&e) ? 1 : 0;
}

