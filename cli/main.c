/* cli/main.c — the `loom` command: main() finds the command in the table
 * (cli/commands.c), answers --help from it, parses the options it names and
 * runs it.  The user commands are here: start and stop clusters, submit
 * graphs written in JSON, look at status, results and logs, tokens and the
 * kv table; tune, infer and slurm have their own files, and the processes
 * loom starts itself (_head, _node, executor) are in cli/procs.c. */
#include <errno.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>
#include <jansson.h>
#include "api/graph_internal.h"
#include "api/graph_json.h"
#include "cli/cli.h"
#include "loom/loom.h"
#include "loom/value.h"
#include "runtime/spawn.h"
#include "runtime/util.h"
#include "gateway/gateway.h"
#include "cli/tune_cmd.h"
#include "cli/infer_cmd.h"
#include "cli/slurm_cmd.h"

/* ---- start / stop ------------------------------------------------------- */

static int head_running(const char *sd)
{
    char path[4200];
    loom__snprintf(path, sizeof(path), "%s/head.lock", sd);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return 0;
    int busy = flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd);
    return busy;
}


static int write_pid(const char *sd, pid_t pid, const char *what)
{
    char path[4200];
    loom__snprintf(path, sizeof(path), "%s/pids", sd);
    loom__mkdir_p(path);
    loom__snprintf(path, sizeof(path), "%s/pids/%d", sd, (int)pid);
    return loom__write_file(path, what, strlen(what), 0600);
}

/* The last ERROR line of a log, to say why a process did not start. */
static void print_last_error(const char *log)
{
    char *text = NULL;
    size_t n = 0;
    if (loom__read_file(log, (size_t)1 << 20, &text, &n)) return;
    char *last = NULL;
    /* runtime/log.c writes "... error: message" */
    for (char *p = text; (p = strstr(p, " error: ")); p++) last = p;
    if (!last)
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
    if (loom__spawn(argv, NULL, log, 1, &pid, &fd)) {
        fprintf(stderr, "loom: cannot start the %s\n", what);
        return 1;
    }
    int rc = loom__spawn_wait_ready(fd, pid, 20000, line, len);
    if (rc == LOOM_ETIMEOUT && !strcmp(what, "node daemon") && kill(pid, 0) == 0) {
        /* its head is not up (yet): the daemon keeps trying in the background */
        write_pid(sd, pid, what);
        loom__snprintf(line, len, "a node daemon (pid %d) still waiting for its head", (int)pid);
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
    loom__snprintf(logs, sizeof(logs), "%s/logs", sd);
    loom__mkdir_p(logs);
    loom__snprintf(log, sizeof(log), "%s/logs/node-%d.log", sd, (int)getpid());
    char *argv[40];
    int n = 0;
    argv[n++] = (char *)loom__binary_path();
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

int cmd_start(const opts *o)
{
    char sd[4096];
    state_dir(o, sd, sizeof(sd));
    if (check_node_opts(o)) return 2;
    if (opt(o, "block")) return opt(o, "head") ? cmd_head(o) : cmd_node(o);
    char why[512];
    if (prepare_state_dir(sd, why, sizeof(why))) {
        fprintf(stderr, "loom: %s\n", why);
        return 1;
    }
    if (!opt(o, "head")) {
        if (!opt(o, "address") || !*opt(o, "address")) return cli_usage_error(o->cmd);
        return start_node_from(o, sd, opt(o, "address"));
    }
    if (head_running(sd)) {
        fprintf(stderr, "loom: a head is already running from %s; stop it first with `loom stop --state-dir %s`"
                        " (or use another --state-dir)\n", sd, sd);
        return 1;
    }
    char log[4200], addr[512], logs[4200];
    loom__snprintf(logs, sizeof(logs), "%s/logs", sd);
    loom__mkdir_p(logs);
    loom__snprintf(log, sizeof(log), "%s/logs/head.log", sd);
    char *argv[80];
    int n = 0;
    argv[n++] = (char *)loom__binary_path();
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
    push_arg(argv, &n, "--http-auth", opt(o, "http-auth") && *opt(o, "http-auth") ? opt(o, "http-auth") : NULL);
    push_arg(argv, &n, "--http-workers", opt(o, "http-workers"));
    push_arg(argv, &n, "--http-queue", opt(o, "http-queue"));
    push_arg(argv, &n, "--http-rate", opt(o, "http-rate"));
    push_arg(argv, &n, "--tls-cert", opt(o, "tls-cert"));
    push_arg(argv, &n, "--tls-key", opt(o, "tls-key"));
    static const char *const oidc_opts[] = {"oidc-issuer", "oidc-audience", "oidc-jwks", "oidc-user-claim",
                                            "oidc-groups-claim", "oidc-run-group", "oidc-admin-group"};
    static char oidc_flags[7][24];
    for (int i = 0; i < 7; i++) {
        snprintf(oidc_flags[i], sizeof(oidc_flags[i]), "--%s", oidc_opts[i]);
        push_arg(argv, &n, oidc_flags[i], opt(o, oidc_opts[i]));
    }
    push_arg(argv, &n, "--ready-fd", "3");
    argv[n] = NULL;
    if (start_background(sd, argv, log, addr, sizeof(addr), "head")) return 1;
    printf("loom: head listening on %s (state: %s, log: %s)\n", addr, sd, log);
    if (opt(o, "http-port")) {
        char gpath[4200], *gaddr = NULL, *scheme = NULL;
        size_t glen = 0, slen = 0;
        loom__snprintf(gpath, sizeof(gpath), "%s/http_scheme", sd);
        if (loom__read_file(gpath, 16, &scheme, &slen) != 0) scheme = NULL;
        loom__snprintf(gpath, sizeof(gpath), "%s/http_address", sd);
        if (loom__read_file(gpath, 300, &gaddr, &glen) == 0)
            printf("loom: HTTP gateway on %s://%s\n", scheme && !strcmp(scheme, "https") ? "https" : "http", gaddr);
        free(gaddr);
        free(scheme);
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
    loom__snprintf(dir, sizeof(dir), "%s/pids", sd);
    int64_t deadline = loom__now_ms() + ms;
    while (loom__now_ms() < deadline) {
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

int cmd_stop(const opts *o)
{
    char sd[4096], dir[4200];
    state_dir(o, sd, sizeof(sd));
    /* pids are this host's: a cluster started by `loom slurm start` elsewhere is not */
    char hpath[4200], host[256], *started_on = NULL;
    loom__snprintf(hpath, sizeof(hpath), "%s/slurm_host", sd);
    if (loom__read_file(hpath, 255, &started_on, NULL) == 0 && !gethostname(host, sizeof(host)) &&
        strcmp(started_on, host)) {
        char jpath[4200], *job = NULL;
        loom__snprintf(jpath, sizeof(jpath), "%s/slurm_job", sd);
        loom__read_file(jpath, 60, &job, NULL);
        fprintf(stderr, "loom: the cluster in %s was started on %s; run `loom stop` there, or end Slurm job %s"
                        " with `loom slurm cancel %s`\n", sd, started_on, job ? job : "?", job ? job : "JOB");
        free(job);
        free(started_on);
        return 1;
    }
    if (started_on) { /* srun kills a step it is signalled to stop: ask the step's tasks */
        char jpath[4200], *job = NULL;
        loom__snprintf(jpath, sizeof(jpath), "%s/slurm_job", sd);
        if (loom__read_file(jpath, 60, &job, NULL) == 0 && slurm_signal_steps(job, SIGINT) == 0)
            wait_pids_gone(sd, 15000); /* srun exits after its tasks */
        free(job);
    }
    free(started_on);
    loom__snprintf(dir, sizeof(dir), "%s/pids", sd);
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
        loom__snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        pid_t pid = (pid_t)atoi(e->d_name);
        if (pid <= 0) continue;
        if (loom__read_file(path, 64, &what, NULL) == 0) {
            loom__snprintf(kinds[n], sizeof(kinds[n]), "%s", what);
            free(what);
        } else {
            loom__snprintf(kinds[n], sizeof(kinds[n]), "process");
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
            loom__stop_process(pids[i], 5000);
            printf("loom: stopped %s (pid %d)\n", kinds[i], (int)pids[i]);
        }
    char addr[4200];
    loom__snprintf(addr, sizeof(addr), "%s/address", sd);
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
    loom__snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
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
        loom__snprintf(cpus, sizeof(cpus), "%g/%g", json_number_value(json_object_get(n, "cpus_used")),
                       json_number_value(json_object_get(n, "cpus")));
        loom__snprintf(mem, sizeof(mem), "%s/%s", mu, mt);
        loom__snprintf(store, sizeof(store), "%s/%s", su, st);
        char gpus[32], extra[512] = "";
        loom__snprintf(gpus, sizeof(gpus), "%g/%lld", json_number_value(json_object_get(n, "gpus_used")),
                       (long long)json_integer_value(json_object_get(n, "gpus")));
        const char *k;
        json_t *val;
        json_object_foreach(json_object_get(n, "resources"), k, val) {
            size_t used = strlen(extra);
            loom__snprintf(extra + used, sizeof(extra) - used, "%s%s=%g/%g", used ? " " : "", k,
                           json_number_value(json_array_get(val, 1)), json_number_value(json_array_get(val, 0)));
        }
        json_object_foreach(json_object_get(n, "labels"), k, val) {
            size_t used = strlen(extra);
            loom__snprintf(extra + used, sizeof(extra) - used, "%s%s:%s", used ? " " : "", k, json_string_value(val));
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

int cmd_actors(const opts *o)
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

int cmd_drain(const opts *o)
{
    if (o->npos < 1) return cli_usage_error(o->cmd);
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

int cmd_kill_actor(const opts *o)
{
    if (o->npos < 1) return cli_usage_error(o->cmd);
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
/* loom token create --user NAME [--run] [--project P,...] [--admin] | loom token revoke TOKEN */
int cmd_token(const opts *o)
{
    const char *op = o->npos ? o->pos[0] : "";
    int create = !strcmp(op, "create");
    if (!create && strcmp(op, "revoke")) {
        fprintf(stderr, "loom: token: say create --user NAME [--run] [--admin], or revoke TOKEN\n");
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
    loom_gateway_token_opts to = {
        .user = opt(o, "user"), .admin = opt(o, "admin") != NULL, .run = opt(o, "run") != NULL,
        .projects = opt(o, "project"),
    };
    int rc = create ? loom_gateway_token_create(c, &to, token) : loom_gateway_token_revoke(c, o->pos[1]);
    if (rc == LOOM_EINVAL)
        fprintf(stderr, "loom: token: a user or project name is 1-63 bytes of letters, digits and . _ @ + -"
                        " (at most 16 projects)\n");
    else if (rc == LOOM_ENOTFOUND) fprintf(stderr, "loom: token revoke: no such token\n");
    else if (rc) fprintf(stderr, "loom: token %s: %s\n", op, loom_last_error(c));
    else if (create) printf("%s\n", token);
    else printf("loom: token revoked (the gateway stops taking it within 5 s)\n");
    loom_disconnect(&c);
    return rc ? 1 : 0;
}

/* loom usage [--since DATE] [--by user|project] [--json] */
int cmd_usage(const opts *o)
{
    loom_client *c;
    if (connect_cli(o, &c)) return 1;
    char *json = NULL, err[256] = "";
    int rc = loom_gateway_usage_report(c, opt(o, "since"), opt(o, "by"), NULL, NULL, &json, err, sizeof(err));
    if (rc) fprintf(stderr, "loom: usage: %s\n", err[0] ? err : loom_last_error(c));
    loom_disconnect(&c);
    if (rc) return 1;
    if (opt(o, "json")) {
        printf("%s\n", json);
        free(json);
        return 0;
    }
    json_t *doc = json_loads(json, 0, NULL);
    free(json);
    printf("usage from %s to %s (UTC days), by %s\n", json_string_value(json_object_get(doc, "since")),
           json_string_value(json_object_get(doc, "until")), json_string_value(json_object_get(doc, "by")));
    printf("%-24s %8s %11s %11s %13s %9s %14s\n", "NAME", "TASKS", "CPU-HOURS", "GPU-HOURS", "MEM-GiB-HOURS",
           "REQUESTS", "BYTES-STORED");
    const char *name;
    json_t *e;
    json_object_foreach(json_object_get(doc, "usage"), name, e) {
        printf("%-24s %8.0f %11.4f %11.4f %13.4f %9.0f %14.0f\n", name,
               json_number_value(json_object_get(e, "tasks")), json_number_value(json_object_get(e, "cpu_hours")),
               json_number_value(json_object_get(e, "gpu_hours")),
               json_number_value(json_object_get(e, "memory_gib_hours")),
               json_number_value(json_object_get(e, "requests")), json_number_value(json_object_get(e, "bytes_stored")));
    }
    json_decref(doc);
    return 0;
}

/* loom quota set|show --user U | --project P [limits] */
int cmd_quota(const opts *o)
{
    const char *op = o->npos ? o->pos[0] : "";
    const char *user = opt(o, "user"), *project = opt(o, "project");
    if ((strcmp(op, "set") && strcmp(op, "show")) || !user == !project) {
        fprintf(stderr, "loom: quota: say set or show, with --user U or --project P\n");
        return 2;
    }
    const char *name = user ? user : project;
    if (!*name || strlen(name) > 128 || strpbrk(name, " \n,|")) {
        fprintf(stderr, "loom: quota: a bad name '%s'\n", name);
        return 2;
    }
    char key[200], text[512] = "";
    snprintf(key, sizeof(key), "quota/%c/%s", user ? 'u' : 'p', name);
    static const char *const limits[][2] = {{"tasks", "tasks"}, {"cpus", "cpus"}, {"gpus", "gpus"},
                                            {"cpu-hours-per-day", "cpu_hours_per_day"},
                                            {"gpu-hours-per-day", "gpu_hours_per_day"}, {"replicas", "replicas"},
                                            {"stored-bytes", "stored_bytes"}, {"kept-tasks", "kept_tasks"}};
    size_t len = 0;
    for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
        const char *v = opt(o, limits[i][0]);
        if (!v) continue;
        char *end = NULL;
        double d = strtod(v, &end);
        if (!*v || *end || !(d >= 0) || d > 1e12) {
            fprintf(stderr, "loom: quota: --%s wants a number >= 0, not '%s'\n", limits[i][0], v);
            return 2;
        }
        len += (size_t)snprintf(text + len, sizeof(text) - len, d == (double)(long long)d ? "%s%s=%.0f" : "%s%s=%g",
                                len ? " " : "", limits[i][1], d);
    }
    loom_client *c;
    if (connect_cli(o, &c)) return 1;
    int rc;
    if (!strcmp(op, "show")) {
        void *data = NULL;
        size_t n = 0;
        rc = loom_kv_get(c, key, 0, &data, &n);
        if (rc == LOOM_ENOTFOUND) printf("%s %s: no quota\n", user ? "user" : "project", name), rc = 0;
        else if (!rc) printf("%s %s: %.*s\n", user ? "user" : "project", name, (int)n, (char *)data);
        free(data);
    } else {
        rc = len ? loom_kv_put(c, key, text, len) : loom_kv_del(c, key);
        if (rc == LOOM_ENOTFOUND) rc = 0;
        if (!rc) printf(len ? "loom: quota of %s %s: %s\n" : "loom: quota of %s %s removed%s\n",
                        user ? "user" : "project", name, text);
    }
    if (rc) fprintf(stderr, "loom: quota: %s\n", loom_last_error(c));
    loom_disconnect(&c);
    return rc ? 1 : 0;
}

int cmd_kv(const opts *o)
{
    if (o->npos < 2) return cli_usage_error(o->cmd);
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

int cmd_infer(const opts *o)
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

int cmd_tune(const opts *o)
{
    if (o->npos < 1) return cli_usage_error(o->cmd);
    const char *op = o->pos[0];
    tune_cli_opts to = {.arg = o->npos > 1 ? o->pos[1] : NULL, .output = opt(o, "output"),
                        .quiet = opt(o, "quiet") != NULL, .json = opt(o, "json") != NULL};
    if (!to.arg && strcmp(op, "status")) {
        fprintf(stderr, "loom tune %s: give %s\n", op, !strcmp(op, "run") ? "a sweep spec (JSON file)" : "a sweep id");
        return 2;
    }
    char sd[4096], gpath[4200], gw[300] = "";
    loom__snprintf(gpath, sizeof(gpath), "%s/http_address", state_dir(o, sd, sizeof(sd)));
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

int cmd_status(const opts *o)
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
    loom__snprintf(buf, len, "%s", path);
    char *slash = strrchr(buf, '/');
    if (slash) *slash = 0;
    else loom__snprintf(buf, len, ".");
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

int cmd_submit(const opts *o)
{
    if (o->npos < 1) return cli_usage_error(o->cmd);
    const char *file = o->pos[0];
    char *text;
    size_t len;
    if (loom__read_file(file, (size_t)1 << 30, &text, &len)) {
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
    int rc = loom__graph_from_json(text, len, dir_of(file, base, sizeof(base)), upload_lib, c, &g, err, sizeof(err));
    char json_name[256] = "";
    if (!rc) loom__graph_json_name(text, len, json_name, sizeof(json_name));
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
    loom__snprintf(task, sizeof(task), "%s", o->pos[1]);
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

static int get_or_logs(const opts *o, int logs)
{
    if (o->npos < 1) return cli_usage_error(o->cmd);
    loom_client *c;
    if (connect_cli(o, &c)) return 1;
    loom_ref ref;
    int rc = resolve_ref(c, o, logs, &ref);
    if (rc == LOOM_EINVAL) {
        loom_disconnect(&c);
        return cli_usage_error(o->cmd);
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
        loom__snprintf(hex, sizeof(hex), "%.*s", 2 * LOOM_ID_LEN, p);
        if (strlen(hex) != 2 * LOOM_ID_LEN || p[2 * LOOM_ID_LEN] != '"' || loom_ref_from_hex(hex, &ref))
            continue;
        rc = loom_cancel(c, ref);
        if (rc == LOOM_ENOTFOUND) rc = 0;
    }
    free(json);
    return rc;
}

/* loom jobs [--label L] [--offset N] [--limit N] [--json]: newest first. */
int cmd_jobs(const opts *o)
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
                loom__snprintf(states + n, sizeof(states) - n, "%s%s %lld", n ? ", " : "", k,
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

static int job_op(const opts *o, const char *what)
{
    if (o->npos < 1) return cli_usage_error(o->cmd);
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

int cmd_get(const opts *o)
{
    return get_or_logs(o, 0);
}

int cmd_logs(const opts *o)
{
    return get_or_logs(o, 1);
}

int cmd_job(const opts *o)
{
    return job_op(o, "job");
}

int cmd_cancel(const opts *o)
{
    return job_op(o, "cancel");
}

int cmd_delete(const opts *o)
{
    return job_op(o, "delete");
}

int cmd_slurm(const opts *o)
{
    return slurm_cli(o->argc, o->argv); /* a driver's argv follows "--" */
}

int cmd_version(const opts *o)
{
    (void)o;
    printf("loom %s\n", LOOM_VERSION_STRING);
    return 0;
}

/* The command argv names ("--help" and "-h" are `help`, "--version" is
 * `version`) and in *used how many words named it; NULL (said, with the
 * usage) when there is none. */
static const cli_cmd *command_of(int argc, char **argv, int *used)
{
    const cli_cmd *c = cli_find(argc, argv, used);
    if (c) return c;
    *used = 1;
    if (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h")) return cli_lookup("help");
    if (!strcmp(argv[0], "--version")) return cli_lookup("version");
    fprintf(stderr, "loom: unknown command '%s'\n", argv[0]);
    cli_print_usage(stderr);
    return NULL;
}

/* loom COMMAND [SUB] [ARGS...]: --help or -h anywhere before a lone "--"
 * prints the command's help and runs nothing. */
int main(int argc, char **argv)
{
    if (argc < 2) {
        cli_print_usage(stderr);
        return 2;
    }
    int used = 0;
    const cli_cmd *c = command_of(argc - 1, argv + 1, &used);
    if (!c) return 2;
    if (cli_wants_help(argc - 1 - used, argv + 1 + used)) {
        cli_print_help(c, stdout);
        return 0;
    }
    /* a subcommand's handler is its group's: it reads the operation from pos[0] */
    int first = strchr(c->name, ' ') ? used - 1 : used;
    opts o;
    int rc = parse_opts(c, argc - 1 - first, argv + 1 + first, &o);
    if (rc) return rc;
    /* not for slurm: the drivers it runs would inherit SIGPIPE ignored */
    if (!(c->flags & CLI_RAW)) signal(SIGPIPE, SIG_IGN);
    return c->run(&o);
}
