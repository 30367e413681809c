/* cli/slurm_cmd.c — loom clusters inside Slurm allocations.
 *
 *   loom slurm start  [-- DRIVER ARGS...]   in an allocation (sbatch, salloc):
 *       the head as a one-task job step on the first node, a node daemon per
 *       node as a second step (both `srun --overlap`), then the driver with
 *       LOOM_ADDRESS set; when the driver ends (or without one, when
 *       `loom stop` or the allocation's end says so) the steps are stopped.
 *   loom slurm submit --nodes N ... -- DRIVER ARGS...   writes an sbatch
 *       script into the job's directory (kept) and submits it.
 *   loom slurm status [JOB] / loom slurm cancel JOB
 *
 * A job's directory (default ./loom-slurm/JOBID, on the shared filesystem the
 * nodes see) is the cluster's state dir for the CLI: the head's address (a
 * port chosen per cluster), the secret, `env` to source, and logs/ with the
 * head's and each daemon's log.  What must stay node-local (the head's LMDB,
 * daemons' work dirs) goes to $TMPDIR/loom-UID/slurm-JOBID-PID-head and
 * -node-PID, which the head and the daemons remove when they stop. */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>
#include "cli/cli.h"
#include "cli/slurm_cmd.h"
#include "loom/loom.h"
#include "runtime/hostlist.h"
#include "runtime/secret.h"
#include "runtime/spawn.h"
#include "runtime/util.h"

#define SL_MAX_OPTS 32
#define SL_MAX_NODES 4096

typedef struct sl_opts {
    const char *key[SL_MAX_OPTS], *val[SL_MAX_OPTS];
    int n;
    const char *pos[SL_MAX_OPTS];
    int npos;
    char **driver; /* after "--" (NULL-terminated) or NULL */
} sl_opts;

/* options that take no value */
static const char *const sl_flags[] = {"json", "block", "dry-run", "quiet", "exclusive", NULL};

static int is_flag(const char *k)
{
    for (int i = 0; sl_flags[i]; i++)
        if (!strcmp(sl_flags[i], k)) return 1;
    return 0;
}

static int sl_parse(int argc, char **argv, sl_opts *o)
{
    memset(o, 0, sizeof(*o));
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--")) {
            if (i + 1 < argc) o->driver = argv + i + 1;
            return 0;
        }
        if (!strncmp(argv[i], "--", 2)) {
            if (o->n >= SL_MAX_OPTS) {
                fprintf(stderr, "loom slurm: too many options\n");
                return -1;
            }
            const char *k = argv[i] + 2;
            o->key[o->n] = k;
            if (is_flag(k)) {
                o->val[o->n++] = "";
                continue;
            }
            if (i + 1 >= argc) {
                fprintf(stderr, "loom slurm: --%s is not an option here, or wants a value\n", k);
                return -1;
            }
            o->val[o->n++] = argv[++i];
        } else {
            if (o->npos >= SL_MAX_OPTS) {
                fprintf(stderr, "loom slurm: too many arguments\n");
                return -1;
            }
            o->pos[o->npos++] = argv[i];
        }
    }
    return 0;
}

static const char *sl_opt(const sl_opts *o, const char *k)
{
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->key[i], k)) return o->val[i];
    return NULL;
}

/* Only the options that the command table (cli/commands.c) gives "slurm OP"
 * are known to it: a typo is an error. */
static int sl_check(const sl_opts *o, const char *op)
{
    char name[64];
    loom__snprintf(name, sizeof(name), "slurm %s", op);
    const cli_cmd *c = cli_lookup(name);
    for (int i = 0; i < o->n; i++) {
        if (c && cli_option_kind(c, o->key[i], strlen(o->key[i])) >= 0) continue;
        fprintf(stderr, "loom slurm %s: unknown option --%s (see 'loom slurm %s --help')\n", op, o->key[i], op);
        return -1;
    }
    return 0;
}

/* ---- running Slurm's commands ------------------------------------------- */

/* Run argv (found on PATH), its stdout into out (NUL-terminated, cut at
 * outlen-1), its stderr into err; killed after timeout_s.  Returns the exit
 * status, or -1 when it could not run or was killed. */
/* Read what a non-blocking pipe holds now into dst (kept to len-1 bytes;
 * the rest is read and dropped, so the writer never blocks). */
static void drain(int fd, char *dst, size_t len, size_t *n)
{
    char buf[4096];
    ssize_t r;
    while ((r = read(fd, buf, sizeof(buf))) > 0)
        for (ssize_t i = 0; i < r && dst && *n + 1 < len; i++) dst[(*n)++] = buf[i];
}

static int run_capture(char *const argv[], char *out, size_t outlen, char *err, size_t errlen, int timeout_s)
{
    int po[2], pe[2];
    if (out && outlen) out[0] = 0;
    if (err && errlen) err[0] = 0;
    if (pipe(po) || pipe(pe)) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(po[0]);
        close(pe[0]);
        execvp(argv[0], argv);
        fprintf(stderr, "cannot run %s: %s", argv[0], strerror(errno));
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    fcntl(po[0], F_SETFL, O_NONBLOCK);
    fcntl(pe[0], F_SETFL, O_NONBLOCK);
    size_t no = 0, ne = 0;
    int64_t deadline = loom__now_ms() + (int64_t)timeout_s * 1000;
    int status = -1, done = 0;
    while (!done) {
        drain(po[0], out, outlen, &no);
        drain(pe[0], err, errlen, &ne);
        int st;
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) {
            status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
            done = 1;
        } else if (loom__now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            done = 1;
        } else {
            usleep(20000);
        }
    }
    drain(po[0], out, outlen, &no);
    drain(pe[0], err, errlen, &ne);
    if (out && outlen) out[no] = 0;
    if (err && errlen) err[ne] = 0;
    close(po[0]);
    close(pe[0]);
    return status;
}

static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\r')) s[--n] = 0;
}

/* ---- the job's directory ------------------------------------------------ */

static const char *base_dir(const sl_opts *o, char *buf, size_t len)
{
    const char *b = sl_opt(o, "dir");
    if (!b || !*b) b = getenv("LOOM_SLURM_DIR");
    if (b && *b) {
        loom__snprintf(buf, len, "%s", b);
    } else {
        char cwd[4000];
        if (!getcwd(cwd, sizeof(cwd))) loom__snprintf(cwd, sizeof(cwd), ".");
        loom__snprintf(buf, len, "%s/loom-slurm", cwd);
    }
    return buf;
}

/* A job id as Slurm prints it: digits, maybe with _ or + (arrays, het jobs). */
static int valid_job_id(const char *s)
{
    if (!s || !*s || strlen(s) > 40) return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || *p == '_' || *p == '+')) return 0;
    return 1;
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[4200];
    loom__snprintf(path, sizeof(path), "%s/%s", dir, name);
    loom__write_file(path, text, strlen(text), 0600);
}

/* "8(x2),4" (SLURM_JOB_CPUS_PER_NODE) -> the fewest CPUs of any node: 4 */
static int min_cpus_per_node(const char *spec)
{
    int best = 0;
    for (const char *p = spec; p && *p;) {
        int v = atoi(p);
        if (v > 0 && (!best || v < best)) best = v;
        const char *comma = strchr(p, ',');
        p = comma ? comma + 1 : NULL;
    }
    return best;
}

/* The address other nodes reach HOST at: Slurm's NodeAddr, else HOST. */
static void node_addr(const char *host, char *out, size_t len)
{
    loom__snprintf(out, len, "%s", host);
    char text[8192], err[512];
    char *argv[] = {"scontrol", "show", "node", "-o", (char *)host, NULL};
    if (run_capture(argv, text, sizeof(text), err, sizeof(err), 20) != 0) return;
    const char *a = strstr(text, "NodeAddr=");
    if (!a) return;
    a += 9;
    size_t n = strcspn(a, " \n");
    if (n && n < len) {
        memcpy(out, a, n);
        out[n] = 0;
    }
}

/* ---- stopping ----------------------------------------------------------- */

static volatile sig_atomic_t got_signal;

static void on_stop_signal(int sig)
{
    got_signal = sig;
}

static void catch_stop_signals(void)
{
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

/* SIGTERM to the tasks of this job's loom steps (the head, the daemons),
 * which then stop their executors, remove their node-local dirs and exit.
 * (A signal to srun itself would make it kill the step at once.) */
int slurm_signal_steps(const char *job, int sig)
{
    char out[8192], err[1024], signame[32];
    char *q[] = {"squeue", "-h", "-s", "-j", (char *)job, "-o", "%i %j", NULL};
    if (run_capture(q, out, sizeof(out), err, sizeof(err), 30) != 0) return -1;
    loom__snprintf(signame, sizeof(signame), "--signal=%d", sig);
    int found = 0;
    for (char *save = NULL, *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *sp = strchr(line, ' ');
        if (!sp) continue;
        *sp = 0;
        if (strcmp(sp + 1, "loom-head") && strcmp(sp + 1, "loom-nodes")) continue;
        /* one step at a time: a step that ends meanwhile fails only its own scancel */
        char *argv[] = {"scancel", signame, line, NULL};
        if (run_capture(argv, NULL, 0, err, sizeof(err), 30) == 0) found++;
    }
    return found ? 0 : -1;
}

/* The steps' tasks are asked to stop (above); srun exits after them.  What
 * has not after grace_ms is killed, and Slurm kills the rest. */
static void stop_steps(const char *job, pid_t *pids, int n, int grace_ms)
{
    if (slurm_signal_steps(job, SIGINT) != 0)
        for (int i = 0; i < n; i++)
            if (pids[i] > 0) kill(pids[i], SIGTERM);
    int64_t deadline = loom__now_ms() + grace_ms;
    for (;;) {
        int alive = 0;
        for (int i = 0; i < n; i++) {
            if (pids[i] <= 0) continue;
            int st;
            if (waitpid(pids[i], &st, WNOHANG) == 0) alive++;
            else pids[i] = 0; /* exited and reaped (or not ours) */
        }
        if (!alive) return;
        if (loom__now_ms() > deadline) break;
        usleep(100000);
    }
    for (int i = 0; i < n; i++)
        if (pids[i] > 0) {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], NULL, 0);
            pids[i] = 0;
        }
}

static int child_alive(pid_t pid)
{
    int st;
    return waitpid(pid, &st, WNOHANG) == 0;
}

/* ---- start -------------------------------------------------------------- */

typedef struct sl_cluster {
    char job[64], jobdir[4096], localdir[4096], head_host[256], addr[512];
    char **hosts;
    size_t nhosts;
    pid_t steps[2]; /* srun of the head, srun of the daemons */
} sl_cluster;

static void print_log_tail(const char *path, int lines)
{
    char *text = NULL;
    size_t n = 0;
    if (loom__read_file(path, (size_t)1 << 20, &text, &n)) return;
    const char *p = text + n;
    int seen = 0;
    while (p > text && seen <= lines)
        if (*--p == '\n') seen++;
    fprintf(stderr, "loom slurm: last lines of %s:\n%s\n", path, p == text ? p : p + 1);
    free(text);
}

/* PATH lookup (loom__spawn runs a path, not a name) */
static int find_in_path(const char *name, char *out, size_t len)
{
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *p = path; *p;) {
        size_t n = strcspn(p, ":");
        if (n) {
            loom__snprintf(out, len, "%.*s/%s", (int)n, p, name);
            if (access(out, X_OK) == 0) return 0;
        }
        p += n;
        if (*p == ':') p++;
    }
    return -1;
}

static int start_step(sl_cluster *c, char **argv, const char *what, pid_t *pid)
{
    char log[4300], srun[4300];
    if (find_in_path(argv[0], srun, sizeof(srun))) {
        fprintf(stderr, "loom slurm: no %s on PATH (is this a Slurm node?)\n", argv[0]);
        return 1;
    }
    argv[0] = srun;
    loom__snprintf(log, sizeof(log), "%s/logs/srun-%s.log", c->jobdir, what);
    int fd = -1;
    /* its own session: a signal to this process group (a terminal's ^C) must
       not reach srun, which would kill the step instead of stopping it */
    if (loom__spawn(argv, NULL, log, 1, pid, &fd)) {
        fprintf(stderr, "loom slurm: cannot run srun for the %s\n", what);
        return 1;
    }
    if (fd >= 0) close(fd);
    return 0;
}

static void push(char **argv, int *n, const char *a)
{
    argv[(*n)++] = (char *)a;
}

static void push2(char **argv, int *n, const char *opt, const char *val)
{
    push(argv, n, opt);
    push(argv, n, val);
}

static int launch_head(sl_cluster *c, const sl_opts *o)
{
    char nodelist[300], out[4300], db[4300];
    loom__snprintf(nodelist, sizeof(nodelist), "--nodelist=%s", c->hosts[0]);
    loom__snprintf(out, sizeof(out), "--output=%s/logs/head.log", c->jobdir);
    loom__snprintf(db, sizeof(db), "%s-head", c->localdir);
    char *argv[48];
    int n = 0;
    push(argv, &n, "srun");
    push(argv, &n, "--nodes=1");
    push(argv, &n, "--ntasks=1");
    push(argv, &n, nodelist);
    push(argv, &n, "--overlap");
    push(argv, &n, "--cpu-bind=none");
    push(argv, &n, "--kill-on-bad-exit=1");
    push(argv, &n, "--job-name=loom-head");
    push(argv, &n, out);
    push(argv, &n, (char *)loom__binary_path());
    push(argv, &n, "_head");
    push2(argv, &n, "--state-dir", c->jobdir);
    push2(argv, &n, "--db-dir", db);
    push(argv, &n, "--db-temp");
    push2(argv, &n, "--bind", "0.0.0.0");
    push2(argv, &n, "--advertise", c->head_host);
    push2(argv, &n, "--port", sl_opt(o, "port") ? sl_opt(o, "port") : "0");
    if (sl_opt(o, "http-port")) {
        push2(argv, &n, "--http-port", sl_opt(o, "http-port"));
        push2(argv, &n, "--http-bind", sl_opt(o, "http-bind") ? sl_opt(o, "http-bind") : "0.0.0.0");
        if (sl_opt(o, "tls-cert")) push2(argv, &n, "--tls-cert", sl_opt(o, "tls-cert"));
        if (sl_opt(o, "tls-key")) push2(argv, &n, "--tls-key", sl_opt(o, "tls-key"));
    }
    argv[n] = NULL;
    return start_step(c, argv, "head", &c->steps[0]);
}

/* GPUs the job has per node: SLURM_GPUS_ON_NODE (batch scripts), else
 * SLURM_GPUS_PER_NODE ("2" or "a100:2"; salloc shells) */
static int job_gpus_per_node(void)
{
    const char *g = getenv("SLURM_GPUS_ON_NODE");
    if (g && atoi(g) > 0) return atoi(g);
    g = getenv("SLURM_GPUS_PER_NODE");
    if (!g) return 0;
    const char *colon = strrchr(g, ':');
    return atoi(colon ? colon + 1 : g);
}

static int launch_daemons(sl_cluster *c, const sl_opts *o)
{
    char nodes[64], tasks[64], cpus[64], gpus[64], af[4300], nd[4300];
    loom__snprintf(nodes, sizeof(nodes), "--nodes=%zu", c->nhosts);
    loom__snprintf(tasks, sizeof(tasks), "--ntasks=%zu", c->nhosts);
    loom__snprintf(af, sizeof(af), "%s/address", c->jobdir);
    loom__snprintf(nd, sizeof(nd), "%s-node", c->localdir);
    char *argv[64];
    int n = 0;
    push(argv, &n, "srun");
    push(argv, &n, nodes);
    push(argv, &n, tasks);
    push(argv, &n, "--ntasks-per-node=1");
    push(argv, &n, "--overlap");
    push(argv, &n, "--cpu-bind=none");
    push(argv, &n, "--kill-on-bad-exit=0");
    push(argv, &n, "--job-name=loom-nodes");
    /* the daemon may use all the CPUs and GPUs the job has on its node */
    int ncpu = min_cpus_per_node(getenv("SLURM_JOB_CPUS_PER_NODE"));
    if (ncpu > 0) {
        loom__snprintf(cpus, sizeof(cpus), "--cpus-per-task=%d", ncpu);
        push(argv, &n, cpus);
    }
    int ngpu = job_gpus_per_node();
    if (ngpu > 0) {
        loom__snprintf(gpus, sizeof(gpus), "--gpus-per-node=%d", ngpu);
        push(argv, &n, gpus);
    }
    push(argv, &n, (char *)loom__binary_path());
    push(argv, &n, "_node");
    push(argv, &n, "--slurm");
    push2(argv, &n, "--address-file", af);
    push2(argv, &n, "--wait-head", sl_opt(o, "wait") ? sl_opt(o, "wait") : "300");
    push2(argv, &n, "--state-dir", c->jobdir);
    push2(argv, &n, "--node-dir-base", nd);
    push2(argv, &n, "--bind", "0.0.0.0");
    push2(argv, &n, "--advertise", "auto");
    static const char *pass[] = {"num-cpus", "num-gpus", "store-bytes", "memory", "resources", "labels", NULL};
    char keys[8][64];
    for (int i = 0; pass[i]; i++)
        if (sl_opt(o, pass[i])) {
            loom__snprintf(keys[i], sizeof(keys[i]), "--%s", pass[i]);
            push2(argv, &n, keys[i], sl_opt(o, pass[i]));
        }
    argv[n] = NULL;
    return start_step(c, argv, "nodes", &c->steps[1]);
}

static int wait_head_address(sl_cluster *c, int wait_s)
{
    char path[4300], log[4300];
    loom__snprintf(path, sizeof(path), "%s/address", c->jobdir);
    loom__snprintf(log, sizeof(log), "%s/logs/head.log", c->jobdir);
    int64_t deadline = loom__now_ms() + (int64_t)wait_s * 1000;
    while (loom__now_ms() < deadline && !got_signal) {
        char *text = NULL;
        size_t n = 0;
        if (loom__read_file(path, 500, &text, &n) == 0 && n && strchr(text, ':')) {
            chomp(text);
            loom__snprintf(c->addr, sizeof(c->addr), "%s", text);
            free(text);
            return 0;
        }
        free(text);
        if (!child_alive(c->steps[0])) {
            fprintf(stderr, "loom slurm: the head's job step ended before it listened\n");
            print_log_tail(log, 10);
            loom__snprintf(log, sizeof(log), "%s/logs/srun-head.log", c->jobdir);
            print_log_tail(log, 10);
            return 1;
        }
        usleep(100000);
    }
    fprintf(stderr, "loom slurm: the head did not write %s within %d s; see %s\n", path, wait_s, log);
    return 1;
}

static int count_alive_nodes(loom_client *cl)
{
    char *json = NULL;
    if (loom_status_json(cl, &json)) return -1;
    json_t *root = json_loads(json, 0, NULL);
    free(json);
    int alive = 0;
    size_t i;
    json_t *nd;
    json_array_foreach(json_object_get(root, "nodes"), i, nd) {
        const char *st = json_string_value(json_object_get(nd, "state"));
        if (st && !strcmp(st, "alive")) alive++;
    }
    json_decref(root);
    return alive;
}

static int wait_nodes(sl_cluster *c, int wait_s)
{
    loom_connect_opts co = {.state_dir = c->jobdir};
    loom_client *cl = NULL;
    int rc = loom_connect(c->addr, &co, &cl);
    if (rc) {
        fprintf(stderr, "loom slurm: cannot connect to the head at %s: %s\n", c->addr, loom_strerror(rc));
        return 1;
    }
    int64_t start = loom__now_ms(), said = start, deadline = start + (int64_t)wait_s * 1000;
    int alive = 0;
    while (!got_signal) {
        alive = count_alive_nodes(cl);
        if (alive >= (int)c->nhosts) break;
        if (!child_alive(c->steps[1])) {
            fprintf(stderr, "loom slurm: the daemons' job step ended (%d of %zu had joined); logs in %s/logs\n",
                    alive, c->nhosts, c->jobdir);
            break;
        }
        int64_t now = loom__now_ms();
        if (now > deadline) {
            fprintf(stderr, "loom slurm: %d of %zu node daemons joined within %d s; logs in %s/logs\n", alive,
                    c->nhosts, wait_s, c->jobdir);
            break;
        }
        if (now - said >= 10000) {
            fprintf(stderr, "loom slurm: %d of %zu node daemons joined so far...\n", alive, c->nhosts);
            said = now;
        }
        usleep(200000);
    }
    loom_disconnect(&cl);
    return alive >= (int)c->nhosts ? 0 : 1;
}

/* JOBDIR/env: what a driver needs, for `source` */
static void write_env_file(const sl_cluster *c)
{
    char text[16384], http[600] = "";
    char path[4300], *h = NULL;
    size_t hn = 0;
    loom__snprintf(path, sizeof(path), "%s/http_address", c->jobdir);
    if (loom__read_file(path, 500, &h, &hn) == 0) {
        chomp(h);
        const char *port = strrchr(h, ':');
        loom__snprintf(http, sizeof(http), "export LOOM_HTTP_ADDRESS=%s:%s\n", c->head_host, port ? port + 1 : "0");
    }
    free(h);
    loom__snprintf(text, sizeof(text),
                   "# the loom cluster of Slurm job %s: source this file to use it\n"
                   "export LOOM_ADDRESS=%s\nexport LOOM_STATE_DIR=%s\nexport LOOM_SECRET_FILE=%s/secret\n%s",
                   c->job, c->addr, c->jobdir, c->jobdir, http);
    write_text(c->jobdir, "env", text);
}

static void set_driver_env(const sl_cluster *c)
{
    char secret[4300], path[4300], *h = NULL;
    size_t hn = 0;
    loom__snprintf(secret, sizeof(secret), "%s/secret", c->jobdir);
    setenv("LOOM_ADDRESS", c->addr, 1);
    setenv("LOOM_STATE_DIR", c->jobdir, 1);
    setenv("LOOM_SECRET_FILE", secret, 1);
    loom__snprintf(path, sizeof(path), "%s/http_address", c->jobdir);
    if (loom__read_file(path, 500, &h, &hn) == 0) {
        chomp(h);
        const char *port = strrchr(h, ':');
        char http[600];
        loom__snprintf(http, sizeof(http), "%s:%s", c->head_host, port ? port + 1 : "0");
        setenv("LOOM_HTTP_ADDRESS", http, 1);
    }
    free(h);
}

/* Run the driver in the foreground; a stop signal is passed on to it.  In a
 * batch job (no terminal) it gets a process group of its own, so the signal
 * reaches what it started too, and what it leaves running is ended with it
 * (a child reparented to init would escape Slurm's process tracking). */
static int run_driver(char **driver)
{
    int own_group = !isatty(STDIN_FILENO);
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) {
        if (own_group) setpgid(0, 0);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        execvp(driver[0], driver);
        fprintf(stderr, "loom slurm: cannot run the driver %s: %s\n", driver[0], strerror(errno));
        _exit(127);
    }
    if (own_group) setpgid(pid, pid); /* also here: no race with a signal before the child's own call */
    pid_t target = own_group ? -pid : pid;
    int st = 0, forwarded = 0;
    for (;;) {
        pid_t w = waitpid(pid, &st, 0);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) return 1;
        if (got_signal && !forwarded) {
            kill(target, SIGTERM);
            forwarded = 1;
        }
    }
    if (own_group) kill(-pid, SIGKILL); /* what the driver left behind */
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    return 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* Whether a head holds JOBDIR/head.lock (an flock; it works across the
 * nodes of the usual shared filesystems). */
static int head_holds_lock(const char *jobdir)
{
    char path[4300];
    loom__snprintf(path, sizeof(path), "%s/head.lock", jobdir);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return 0;
    int busy = flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd);
    return busy;
}

static int start_dirs(sl_cluster *c, const sl_opts *o)
{
    const char *jd = sl_opt(o, "job-dir");
    if (!jd || !*jd) jd = getenv("LOOM_SLURM_JOB_DIR");
    if (jd && *jd) {
        loom__snprintf(c->jobdir, sizeof(c->jobdir), "%s", jd);
    } else {
        char base[4096];
        loom__snprintf(c->jobdir, sizeof(c->jobdir), "%s/%s", base_dir(o, base, sizeof(base)), c->job);
    }
    const char *tmp = getenv("TMPDIR");
    /* unique per start: a job id may come again (another Slurm, a requeue) */
    loom__snprintf(c->localdir, sizeof(c->localdir), "%s/loom-%d/slurm-%s-%d", tmp && *tmp ? tmp : "/tmp",
                   (int)getuid(), c->job, (int)getpid());
    char logs[4200];
    loom__snprintf(logs, sizeof(logs), "%s/logs", c->jobdir);
    if (loom__mkdir_p(logs)) {
        fprintf(stderr, "loom slurm: cannot make %s: %s\n", logs, strerror(errno));
        return 1;
    }
    chmod(c->jobdir, 0700);
    char path[4300];
    loom__snprintf(path, sizeof(path), "%s/address", c->jobdir);
    struct stat st;
    if (stat(path, &st) == 0) {
        if (head_holds_lock(c->jobdir)) {
            fprintf(stderr, "loom slurm: a cluster already runs from %s; stop it with `loom stop --state-dir %s`"
                            " or use another --job-dir\n", c->jobdir, c->jobdir);
            return 1;
        }
        /* left by a run that was killed (a requeued or preempted job): not ours */
        fprintf(stderr, "loom slurm: removing the stale address file of an earlier run in %s\n", c->jobdir);
        unlink(path);
        loom__snprintf(path, sizeof(path), "%s/http_address", c->jobdir);
        unlink(path);
    }
    char secret[LOOM_SECRET_HEX + 1];
    loom__snprintf(path, sizeof(path), "%s/secret", c->jobdir);
    int rc = loom__secret_load(path, secret);
    if (rc == LOOM_ENOTFOUND) rc = loom__secret_create(path, secret);
    if (rc) {
        fprintf(stderr, "loom slurm: cannot make the cluster secret %s: %s\n", path, loom_strerror(rc));
        return 1;
    }
    char host[256];
    if (gethostname(host, sizeof(host))) loom__snprintf(host, sizeof(host), "?");
    write_text(c->jobdir, "slurm_host", host);
    write_text(c->jobdir, "slurm_job", c->job);
    return 0;
}

/* In the background (no driver, no --block): the steps outlive this command;
 * `loom stop` (on this host) or the allocation's end stops them. */
static void record_background(const sl_cluster *c)
{
    char dir[4300], path[4400];
    loom__snprintf(dir, sizeof(dir), "%s/pids", c->jobdir);
    loom__mkdir_p(dir);
    for (int i = 0; i < 2; i++) {
        loom__snprintf(path, sizeof(path), "%s/%d", dir, (int)c->steps[i]);
        const char *what = i ? "node daemons (srun)" : "head (srun)";
        loom__write_file(path, what, strlen(what), 0600);
    }
}

static int slurm_start(const sl_opts *o)
{
    if (sl_check(o, "start")) return 2;
    const char *job = getenv("SLURM_JOB_ID"), *nodelist = getenv("SLURM_JOB_NODELIST");
    if (!job || !*job || !nodelist || !*nodelist) {
        fprintf(stderr, "loom slurm start: not inside a Slurm allocation (no SLURM_JOB_ID or SLURM_JOB_NODELIST):"
                        " run it in an sbatch script or an salloc shell, or use `loom slurm submit`\n");
        return 2;
    }
    const char *step_tasks = getenv("SLURM_STEP_NUM_TASKS");
    if (step_tasks && atoi(step_tasks) > 1) {
        fprintf(stderr, "loom slurm start: runs once per allocation, not in each of the %s tasks of an srun: run it"
                        " from the batch script or the salloc shell (it starts the srun steps itself)\n", step_tasks);
        return 2;
    }
    sl_cluster c = {0};
    loom__snprintf(c.job, sizeof(c.job), "%s", job);
    char err[300];
    if (loom__hostlist_expand(nodelist, SL_MAX_NODES, &c.hosts, &c.nhosts, err, sizeof(err))) {
        fprintf(stderr, "loom slurm start: SLURM_JOB_NODELIST '%s': %s\n", nodelist, err);
        return 2;
    }
    int rc = 1, wait_s = sl_opt(o, "wait") ? atoi(sl_opt(o, "wait")) : 120;
    if (wait_s <= 0) wait_s = 120;
    if (start_dirs(&c, o)) goto out;
    node_addr(c.hosts[0], c.head_host, sizeof(c.head_host));
    int background = !o->driver && !sl_opt(o, "block");
    int64_t t0 = loom__now_ms();
    catch_stop_signals();
    /* daemons first: they wait for the address file the head writes */
    if (launch_daemons(&c, o) || launch_head(&c, o)) goto stop;
    if (wait_head_address(&c, wait_s) || wait_nodes(&c, wait_s)) goto stop;
    write_env_file(&c);
    printf("loom: cluster of Slurm job %s: head on %s at %s, %zu node daemon%s (up in %.2f s)\n", c.job, c.hosts[0],
           c.addr, c.nhosts, c.nhosts == 1 ? "" : "s", (double)(loom__now_ms() - t0) / 1000.0);
    printf("loom: job dir %s (logs in logs/); use it with: source %s/env\n", c.jobdir, c.jobdir);
    fflush(stdout);
    if (background) {
        record_background(&c);
        printf("loom: stop it with `loom stop --state-dir %s` (on this host), or it stops with the allocation\n",
               c.jobdir);
        rc = 0;
        goto out;
    }
    set_driver_env(&c);
    if (o->driver) {
        rc = run_driver(o->driver);
        char code[32];
        loom__snprintf(code, sizeof(code), "%d\n", rc);
        write_text(c.jobdir, "driver_exit", code);
        printf("loom: the driver exited with %d; stopping the cluster\n", rc);
    } else {
        while (!got_signal && child_alive(c.steps[0])) usleep(200000);
        rc = 0;
    }
stop:
    if (rc && !o->driver && got_signal) rc = 128 + (int)got_signal;
    stop_steps(c.job, c.steps, 2, 15000);
    {
        char path[4300];
        loom__snprintf(path, sizeof(path), "%s/address", c.jobdir);
        unlink(path);
    }
out:
    loom__hostlist_free(c.hosts, c.nhosts);
    return rc;
}

/* ---- submit ------------------------------------------------------------- */

/* 'arg' with ' inside written as '\'' : safe in any POSIX shell */
static void shell_quote(const char *s, char *out, size_t len)
{
    size_t n = 0;
    if (n + 1 < len) out[n++] = '\'';
    for (; *s && n + 5 < len; s++) {
        if (*s == '\'') {
            memcpy(out + n, "'\\''", 4);
            n += 4;
        } else {
            out[n++] = *s;
        }
    }
    if (n + 1 < len) out[n++] = '\'';
    out[n] = 0;
}

/* Slurm's own syntax is checked by sbatch; here only what would break the
 * script: values are one token of printable characters. */
static int plain_value(const char *what, const char *v)
{
    if (!v) return 0;
    if (!*v || strlen(v) > 200) goto bad;
    for (const char *p = v; *p; p++)
        if (*p <= ' ' || *p == '\'' || *p == '"' || *p == '\\' || *p == '$' || *p == '`' || *p == ';') goto bad;
    return 0;
bad:
    fprintf(stderr, "loom slurm submit: bad --%s '%s'\n", what, v);
    return -1;
}

static int positive(const char *what, const char *v, int required)
{
    if (!v) {
        if (!required) return 0;
        fprintf(stderr, "loom slurm submit: --%s is required\n", what);
        return -1;
    }
    char *end;
    long n = strtol(v, &end, 10);
    if (*v && !*end && n >= 0 && n <= 100000 && (n > 0 || !strcmp(what, "gpus-per-node"))) return 0;
    fprintf(stderr, "loom slurm submit: --%s wants a whole number%s, not '%s'\n", what,
            strcmp(what, "gpus-per-node") ? " above 0" : "", v);
    return -1;
}

static char *build_script(const sl_opts *o, const char *base)
{
    size_t cap = 65536, n = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
#define ADD(...) do { if (n < cap) { int w_ = snprintf(s + n, cap - n, __VA_ARGS__); n += w_ > 0 ? (size_t)w_ : 0; } } while (0)
    time_t now = time(NULL);
    char when[64];
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&now));
    const char *name = sl_opt(o, "name") ? sl_opt(o, "name") : "loom";
    ADD("#!/bin/bash\n# Written by `loom slurm submit` on %s and kept in the job's directory;\n"
        "# resubmit it with `sbatch` as it is.  `loom slurm start` starts a loom cluster on the\n"
        "# job's nodes (head on the first), runs the driver, then stops the cluster.\n", when);
    ADD("#SBATCH --job-name=%s\n#SBATCH --nodes=%s\n#SBATCH --ntasks-per-node=1\n", name, sl_opt(o, "nodes"));
    if (sl_opt(o, "cpus-per-node")) ADD("#SBATCH --cpus-per-task=%s\n", sl_opt(o, "cpus-per-node"));
    if (sl_opt(o, "gpus-per-node") && atoi(sl_opt(o, "gpus-per-node")) > 0)
        ADD("#SBATCH --gpus-per-node=%s\n", sl_opt(o, "gpus-per-node"));
    if (sl_opt(o, "mem")) ADD("#SBATCH --mem=%s\n", sl_opt(o, "mem"));
    ADD("#SBATCH --time=%s\n", sl_opt(o, "time"));
    if (sl_opt(o, "partition")) ADD("#SBATCH --partition=%s\n", sl_opt(o, "partition"));
    if (sl_opt(o, "account")) ADD("#SBATCH --account=%s\n", sl_opt(o, "account"));
    if (sl_opt(o, "exclusive")) ADD("#SBATCH --exclusive\n");
    ADD("#SBATCH --output=%s/%%j/slurm.out\n", base);
    ADD("#SBATCH --signal=B:TERM@30\n");
    char q[8300];
    shell_quote(base, q, sizeof(q));
    ADD("export LOOM_SLURM_JOB_DIR=%s/\"$SLURM_JOB_ID\"\n", q);
    shell_quote(loom__binary_path(), q, sizeof(q));
    ADD("exec %s slurm start", q);
    static const char *pass[] = {"http-port", "num-cpus", "num-gpus", "store-bytes", "wait", NULL};
    for (int i = 0; pass[i]; i++)
        if (sl_opt(o, pass[i])) {
            shell_quote(sl_opt(o, pass[i]), q, sizeof(q));
            ADD(" --%s %s", pass[i], q);
        }
    if (o->driver) {
        ADD(" --");
        for (char **a = o->driver; *a; a++) {
            shell_quote(*a, q, sizeof(q));
            ADD(" %s", q);
        }
    } else {
        ADD(" --block");
    }
    ADD("\n");
#undef ADD
    if (n >= cap) {
        free(s);
        return NULL;
    }
    return s;
}

static int slurm_submit(const sl_opts *o)
{
    if (sl_check(o, "submit")) return 2;
    if (positive("nodes", sl_opt(o, "nodes"), 1) || positive("gpus-per-node", sl_opt(o, "gpus-per-node"), 0) ||
        positive("cpus-per-node", sl_opt(o, "cpus-per-node"), 0))
        return 2;
    if (!sl_opt(o, "time")) {
        fprintf(stderr, "loom slurm submit: --time is required (as sbatch takes it: MINUTES, HH:MM:SS, D-HH)\n");
        return 2;
    }
    static const char *plain[] = {"time", "partition", "account", "name", "mem", NULL};
    for (int i = 0; plain[i]; i++)
        if (plain_value(plain[i], sl_opt(o, plain[i]))) return 2;
    if (o->npos) {
        fprintf(stderr, "loom slurm submit: unexpected '%s' (the driver comes after --)\n", o->pos[0]);
        return 2;
    }
    char base[4096], abs[4096];
    base_dir(o, base, sizeof(base));
    int dry = sl_opt(o, "dry-run") != NULL;
    if (!dry && loom__mkdir_p(base)) {
        fprintf(stderr, "loom slurm submit: cannot make %s: %s\n", base, strerror(errno));
        return 1;
    }
    if (!realpath(base, abs)) loom__snprintf(abs, sizeof(abs), "%s", base);
    char *script = build_script(o, abs);
    if (!script) {
        fprintf(stderr, "loom slurm submit: the driver's command line is too long\n");
        return 2;
    }
    if (dry) {
        fputs(script, stdout);
        free(script);
        return 0;
    }
    /* held until its directory (where its output goes) exists, then released */
    char tmp[4300];
    loom__snprintf(tmp, sizeof(tmp), "%s/.job-%d.sbatch", abs, (int)getpid());
    if (loom__write_file(tmp, script, strlen(script), 0700)) {
        fprintf(stderr, "loom slurm submit: cannot write %s\n", tmp);
        free(script);
        return 1;
    }
    free(script);
    char out[512], err[2048];
    char *sb[] = {"sbatch", "--parsable", "--hold", tmp, NULL};
    int st = run_capture(sb, out, sizeof(out), err, sizeof(err), 60);
    chomp(out);
    char *semi = strchr(out, ';'); /* "JOBID;CLUSTER" on federated sites */
    if (semi) *semi = 0;
    if (st != 0 || !valid_job_id(out)) {
        chomp(err);
        fprintf(stderr, "loom slurm submit: sbatch failed%s%s\n", *err ? ": " : "", err);
        unlink(tmp);
        return 1;
    }
    char jobdir[4300], kept[4400];
    loom__snprintf(jobdir, sizeof(jobdir), "%s/%s", abs, out);
    loom__snprintf(kept, sizeof(kept), "%s/job.sbatch", jobdir);
    int bad = loom__mkdir_p(jobdir) || rename(tmp, kept);
    char *rel[] = {"scontrol", "release", out, NULL};
    if (bad || run_capture(rel, NULL, 0, err, sizeof(err), 60) != 0) {
        chomp(err);
        fprintf(stderr, "loom slurm submit: cannot %s job %s%s%s; cancelling it\n",
                bad ? "make the directory of" : "release", out, *err ? ": " : "", err);
        char *cancel[] = {"scancel", out, NULL};
        run_capture(cancel, NULL, 0, NULL, 0, 60);
        unlink(tmp);
        return 1;
    }
    printf("%s\n", out);
    fprintf(stderr, "loom: submitted Slurm job %s; its directory is %s (script job.sbatch, output slurm.out,"
                    " logs/)\n", out, jobdir);
    return 0;
}

/* ---- status / cancel ---------------------------------------------------- */

/* squeue's state of JOB ("RUNNING", "PENDING", ...): "" once it has left the
 * queue, "UNKNOWN" when squeue cannot be asked */
static void queue_state(const char *job, char *state, size_t len)
{
    char out[512], err[512];
    char *argv[] = {"squeue", "-h", "-j", (char *)job, "-o", "%T", NULL};
    int st = run_capture(argv, out, sizeof(out), err, sizeof(err), 30);
    if (st == 0) {
        chomp(out);
        char *nl = strchr(out, '\n');
        if (nl) *nl = 0;
        loom__snprintf(state, len, "%s", out);
    } else if (strstr(err, "Invalid job id")) {
        state[0] = 0; /* gone from the controller's memory too */
    } else {
        loom__snprintf(state, len, "UNKNOWN");
    }
}

static json_t *job_info(const char *base, const char *job)
{
    char dir[4300], path[4400], state[64], *text = NULL;
    size_t n = 0;
    loom__snprintf(dir, sizeof(dir), "%s/%s", base, job);
    queue_state(job, state, sizeof(state));
    json_t *j = json_pack("{s:s, s:s, s:s}", "job", job, "dir", dir, "state", *state ? state : "ENDED");
    static const char *files[] = {"address", "http_address", "driver_exit", NULL};
    for (int i = 0; files[i]; i++) {
        loom__snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        if (loom__read_file(path, 500, &text, &n) == 0) {
            chomp(text);
            json_object_set_new(j, files[i], json_string(text));
        }
        free(text);
        text = NULL;
    }
    return j;
}

static int slurm_status(const sl_opts *o)
{
    if (sl_check(o, "status")) return 2;
    char base[4096];
    base_dir(o, base, sizeof(base));
    json_t *all = json_array();
    if (o->npos) {
        if (!valid_job_id(o->pos[0])) {
            fprintf(stderr, "loom slurm status: '%s' is not a Slurm job id\n", o->pos[0]);
            json_decref(all);
            return 2;
        }
        json_array_append_new(all, job_info(base, o->pos[0]));
    } else {
        DIR *dp = opendir(base);
        struct dirent *e;
        int count = 0;
        while (dp && (e = readdir(dp)) && count < 1000)
            if (valid_job_id(e->d_name)) {
                json_array_append_new(all, job_info(base, e->d_name));
                count++;
            }
        if (dp) closedir(dp);
    }
    if (sl_opt(o, "json")) {
        char *s = json_dumps(all, JSON_COMPACT);
        printf("%s\n", s ? s : "[]");
        free(s);
    } else {
        printf("%-12s %-10s %-24s %-6s %s\n", "JOB", "STATE", "HEAD", "EXIT", "DIR");
        size_t i;
        json_t *j;
        json_array_foreach(all, i, j) {
            const char *a = json_string_value(json_object_get(j, "address"));
            const char *x = json_string_value(json_object_get(j, "driver_exit"));
            printf("%-12s %-10s %-24s %-6s %s\n", json_string_value(json_object_get(j, "job")),
                   json_string_value(json_object_get(j, "state")), a ? a : "-", x ? x : "-",
                   json_string_value(json_object_get(j, "dir")));
        }
    }
    json_decref(all);
    return 0;
}

static int slurm_cancel(const sl_opts *o)
{
    if (sl_check(o, "cancel")) return 2;
    if (o->npos != 1 || !valid_job_id(o->pos[0])) {
        fprintf(stderr, "loom slurm cancel: want one Slurm job id\n");
        return 2;
    }
    const char *job = o->pos[0];
    char err[1024];
    char *argv[] = {"scancel", (char *)job, NULL};
    if (run_capture(argv, NULL, 0, err, sizeof(err), 60) != 0) {
        chomp(err);
        fprintf(stderr, "loom slurm cancel: scancel %s failed%s%s\n", job, *err ? ": " : "", err);
        return 1;
    }
    int wait_s = sl_opt(o, "wait") ? atoi(sl_opt(o, "wait")) : 60;
    int64_t deadline = loom__now_ms() + (int64_t)wait_s * 1000;
    char state[64];
    for (;;) {
        queue_state(job, state, sizeof(state));
        if (!*state) break;
        if (!strcmp(state, "UNKNOWN")) {
            fprintf(stderr, "loom slurm cancel: squeue cannot tell whether job %s has ended\n", job);
            return 1;
        }
        if (loom__now_ms() > deadline) {
            fprintf(stderr, "loom slurm cancel: job %s is still %s after %d s\n", job, state, wait_s);
            return 1;
        }
        usleep(250000);
    }
    printf("loom: Slurm job %s cancelled and gone from the queue\n", job);
    return 0;
}

int slurm_cli(int argc, char **argv)
{
    if (argc < 1) {
        fprintf(stderr, "usage: loom slurm start|submit|status|cancel ... (see 'loom slurm --help')\n");
        return 2;
    }
    sl_opts o;
    if (sl_parse(argc - 1, argv + 1, &o)) return 2; /* it said what is wrong */
    const char *op = argv[0];
    if (!strcmp(op, "start")) return slurm_start(&o);
    if (!strcmp(op, "submit")) return slurm_submit(&o);
    if (!strcmp(op, "status")) return slurm_status(&o);
    if (!strcmp(op, "cancel")) return slurm_cancel(&o);
    fprintf(stderr, "loom slurm: unknown operation '%s' (start, submit, status, cancel)\n", op);
    return 2;
}
