/* tune/trial.c — the trial side of a sweep, and the key-value helpers the
 * controller shares.
 *
 * A trial is started with two arguments: its config (JSON) and its context
 * (JSON: sweep id, trial number, attempt, the checkpoint to resume from, and
 * for command trials the command).  It reports through the cluster's
 * key-value table (layout in tune_internal.h): a report is a key the
 * controller polls, the answer a key the trial waits on.  A checkpoint or an
 * artifact is a blob (loom_kv_put_blob) written before the report that names
 * it.
 *
 * The task function tune_command of this library runs a command trial: it
 * starts the command and translates its protocol (lines on stdout, or a Unix
 * socket; tune/README.md) into reports. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/file.h"
#include "loom/task.h"
#include "loom/tune.h"
#include "tune/tune_internal.h"

/* ---- shared helpers ------------------------------------------------------ */

int tune_kv_put_json(loom_client *c, const char *key, const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT);
    if (!s) return LOOM_ENOMEM;
    int rc = loom_kv_put(c, key, s, strlen(s));
    free(s);
    return rc;
}

int tune_kv_get_json(loom_client *c, const char *key, int64_t timeout_ms, json_t **out)
{
    void *data = NULL;
    size_t len = 0;
    int rc = loom_kv_get(c, key, timeout_ms, &data, &len);
    if (rc) return rc;
    json_error_t e;
    *out = json_loadb(data, len, 0, &e);
    free(data);
    return *out ? LOOM_OK : LOOM_EPROTO;
}

int tune_read_file(const char *path, size_t max, void **data, size_t *len)
{
    char *buf = NULL;
    int rc = loom__file_read(path, max, &buf, len);
    if (rc) return rc == -EFBIG ? LOOM_ETOOBIG : rc == -ENOMEM ? LOOM_ENOMEM : LOOM_EIO;
    *data = buf;
    return LOOM_OK;
}

/* ---- the trial ------------------------------------------------------------ */

struct loom_tune_trial {
    loom_task_ctx *ctx;
    loom_client *c;
    json_t *config, *context;
    char *config_text;
    char sweep[64];
    int64_t id, attempt, seq;
    char base[TUNE_KEY_MAX];   /* tune/s/<S>/t/<N>/a<A> */
    void *ckpt;
    size_t ckpt_len;
    double ckpt_t, last_t;
};

static int arg_json(loom_task_ctx *ctx, int i, json_t **out)
{
    const void *d;
    size_t n;
    if (loom_task_arg(ctx, i, &d, &n)) return LOOM_EINVAL;
    json_error_t e;
    *out = json_loadb(d, n, 0, &e);
    return *out ? LOOM_OK : LOOM_EINVAL;
}

/* Fetch the checkpoint the context names (a resumed trial). */
static int load_resume(loom_tune_trial *t)
{
    json_t *r = json_object_get(t->context, "resume");
    if (!json_is_object(r)) return LOOM_OK;
    const char *key = json_string_value(json_object_get(r, "key"));
    if (!key) return LOOM_EPROTO;
    int rc = loom_kv_get_blob(t->c, key, &t->ckpt, &t->ckpt_len);
    if (rc) return rc;
    t->ckpt_t = json_number_value(json_object_get(r, "t"));
    t->last_t = t->ckpt_t;
    return LOOM_OK;
}

/* Report seq 0: the trial is running (the controller starts its clock). */
static int announce_start(loom_tune_trial *t)
{
    char key[TUNE_KEY_MAX + 32], host[256] = "";
    gethostname(host, sizeof(host) - 1);
    json_t *v = json_pack("{s:b, s:s, s:i, s:I}", "started", 1, "host", host, "pid", (int)getpid(),
                          "time_ms", (json_int_t)loom__wall_ms());
    if (!v) return LOOM_ENOMEM;
    snprintf(key, sizeof(key), "%s/r/0", t->base);
    int rc = tune_kv_put_json(t->c, key, v);
    json_decref(v);
    return rc;
}

int loom_tune_trial_open(loom_task_ctx *ctx, loom_tune_trial **out)
{
    if (!ctx || !out) return LOOM_EINVAL;
    *out = NULL;
    loom_tune_trial *t = calloc(1, sizeof(*t));
    if (!t) return LOOM_ENOMEM;
    t->ctx = ctx;
    int rc = LOOM_EINVAL;
    if (loom_task_nargs(ctx) < 2 || arg_json(ctx, 0, &t->config) || arg_json(ctx, 1, &t->context) ||
        !json_is_object(t->config))
        goto fail;
    const char *sweep = json_string_value(json_object_get(t->context, "sweep"));
    t->id = json_integer_value(json_object_get(t->context, "trial"));
    t->attempt = json_integer_value(json_object_get(t->context, "attempt"));
    if (!sweep || strlen(sweep) >= sizeof(t->sweep) || t->id < 0 || t->attempt < 1) goto fail;
    snprintf(t->sweep, sizeof(t->sweep), "%s", sweep);
    snprintf(t->base, sizeof(t->base), "tune/s/%s/t/%lld/a%lld", t->sweep, (long long)t->id,
             (long long)t->attempt);
    rc = LOOM_ENOMEM;
    if (!(t->config_text = json_dumps(t->config, JSON_COMPACT | JSON_SORT_KEYS))) goto fail;
    rc = LOOM_ECONN;
    if (!(t->c = loom_task_client(ctx))) goto fail;
    if ((rc = load_resume(t)) || (rc = announce_start(t))) goto fail;
    *out = t;
    return LOOM_OK;
fail:
    loom_tune_trial_close(&t);
    return rc;
}

void loom_tune_trial_close(loom_tune_trial **pt)
{
    if (!pt || !*pt) return;
    loom_tune_trial *t = *pt;
    json_decref(t->config);
    json_decref(t->context);
    free(t->config_text);
    free(t->ckpt);
    free(t);
    *pt = NULL;
}

const char *loom_tune_trial_config(const loom_tune_trial *t) { return t ? t->config_text : NULL; }

int loom_tune_trial_pg(const loom_tune_trial *t, loom_pg *out)
{
    if (!t || !out) return LOOM_EINVAL;
    const char *hex = json_string_value(json_object_get(t->context, "placement_group"));
    if (!hex || strlen(hex) != 32) return LOOM_ENOTFOUND;
    for (int i = 0; i < 16; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) return LOOM_EPROTO;
        out->id[i] = (uint8_t)v;
    }
    return LOOM_OK;
}
const char *loom_tune_trial_sweep(const loom_tune_trial *t) { return t ? t->sweep : NULL; }
int64_t loom_tune_trial_id(const loom_tune_trial *t) { return t ? t->id : -1; }

static int param(const loom_tune_trial *t, const char *name, json_t **v)
{
    if (!t || !name) return LOOM_EINVAL;
    *v = json_object_get(t->config, name);
    return *v ? LOOM_OK : LOOM_ENOTFOUND;
}

int loom_tune_trial_f64(const loom_tune_trial *t, const char *name, double *out)
{
    json_t *v;
    int rc = param(t, name, &v);
    if (rc) return rc;
    if (!json_is_number(v)) return LOOM_EINVAL;
    *out = json_number_value(v);
    return LOOM_OK;
}

int loom_tune_trial_i64(const loom_tune_trial *t, const char *name, int64_t *out)
{
    json_t *v;
    int rc = param(t, name, &v);
    if (rc) return rc;
    if (!json_is_integer(v)) return LOOM_EINVAL;
    *out = json_integer_value(v);
    return LOOM_OK;
}

int loom_tune_trial_str(const loom_tune_trial *t, const char *name, const char **out)
{
    json_t *v;
    int rc = param(t, name, &v);
    if (rc) return rc;
    if (!json_is_string(v)) return LOOM_EINVAL;
    *out = json_string_value(v);
    return LOOM_OK;
}

int loom_tune_trial_checkpoint(const loom_tune_trial *t, const void **data, size_t *len, double *at)
{
    if (!t || !data || !len) return LOOM_EINVAL;
    *data = t->ckpt;
    *len = t->ckpt_len;
    if (at) *at = t->ckpt_t;
    return LOOM_OK;
}

/* Wait for the controller's answer to report seq. */
static int await_answer(loom_tune_trial *t, int64_t seq)
{
    char key[TUNE_KEY_MAX + 32];
    snprintf(key, sizeof(key), "%s/d/%lld", t->base, (long long)seq);
    int64_t give_up = loom__wall_ms() + TUNE_ANSWER_WAIT_MS;
    while (loom__wall_ms() < give_up) {
        void *d = NULL;
        size_t n = 0;
        int rc = loom_kv_get(t->c, key, 10000, &d, &n);
        if (rc == LOOM_ETIMEOUT || rc == LOOM_ENOTFOUND) continue;
        if (rc) { /* the head is restarting: try again shortly */
            usleep(200 * 1000);
            continue;
        }
        int answer = n == 4 && !memcmp(d, "stop", 4)    ? LOOM_TUNE_STOP
                     : n == 5 && !memcmp(d, "pause", 5) ? LOOM_TUNE_PAUSE
                                                         : LOOM_TUNE_CONTINUE;
        free(d);
        loom_kv_del(t->c, key);
        return answer;
    }
    return LOOM_ETIMEOUT;
}

/* Put report v (its checkpoint already stored) as the next seq and wait. */
static int send_report(loom_tune_trial *t, json_t *v)
{
    char key[TUNE_KEY_MAX + 32];
    int64_t seq = t->seq;
    json_object_set_new(v, "time_ms", json_integer(loom__wall_ms()));
    snprintf(key, sizeof(key), "%s/r/%lld", t->base, (long long)seq);
    int rc = tune_kv_put_json(t->c, key, v);
    if (rc) return rc;
    return await_answer(t, seq);
}

/* The report of step with metrics (an object, taken) and an optional
 * checkpoint and artifact. */
static int report_full(loom_tune_trial *t, double step, json_t *metrics, const void *ckpt,
                       size_t ckpt_len, const char *art_name, const void *art, size_t art_len)
{
    if (!json_is_object(metrics)) {
        json_decref(metrics);
        return LOOM_EINVAL;
    }
    int64_t seq = ++t->seq;
    json_t *v = json_pack("{s:f, s:o}", "t", step, "metrics", metrics);
    if (!v) return LOOM_ENOMEM;
    char key[TUNE_KEY_MAX + 32];
    int rc = LOOM_OK;
    if (ckpt && ckpt_len) {
        snprintf(key, sizeof(key), "%s/c/%lld", t->base, (long long)seq);
        if (!(rc = loom_kv_put_blob(t->c, key, ckpt, ckpt_len)))
            json_object_set_new(v, "ckpt", json_pack("{s:s, s:I}", "key", key, "bytes", (json_int_t)ckpt_len));
    }
    if (!rc && art_name) rc = loom_tune_trial_artifact(t, art_name, art, art_len);
    if (!rc && art_name) json_object_set_new(v, "artifact", json_string(art_name));
    if (!rc) rc = send_report(t, v);
    json_decref(v);
    return rc;
}

int loom_tune_trial_report(loom_tune_trial *t, double step, const char *metrics_json,
                           const void *ckpt, size_t ckpt_len)
{
    if (!t || !metrics_json || ckpt_len > TUNE_MAX_BLOB || (ckpt_len && !ckpt)) return LOOM_EINVAL;
    json_error_t e;
    json_t *m = json_loads(metrics_json, 0, &e);
    if (!m) return LOOM_EINVAL;
    return report_full(t, step, m, ckpt, ckpt_len, NULL, NULL, 0);
}

/* Artifact names become key parts and file names: keep them plain. */
static int plain_name(const char *s)
{
    if (!s || !*s || strlen(s) > 128 || !strcmp(s, ".") || !strcmp(s, "..")) return 0;
    for (; *s; s++)
        if (!(*s == '.' || *s == '-' || *s == '_' || (*s >= '0' && *s <= '9') ||
              (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
            return 0;
    return 1;
}

int loom_tune_trial_artifact(loom_tune_trial *t, const char *name, const void *data, size_t len)
{
    if (!t || !plain_name(name) || len > TUNE_MAX_BLOB || (len && !data)) return LOOM_EINVAL;
    char prefix[TUNE_KEY_MAX + 32], key[TUNE_KEY_MAX + 64], sha[65];
    snprintf(prefix, sizeof(prefix), "tune/s/%s/t/%lld/art/%s", t->sweep, (long long)t->id, name);
    int rc = loom_kv_put_blob(t->c, prefix, data, len);
    if (rc) return rc;
    loom_sha256_hex(data, len, sha);
    json_t *v = json_pack("{s:s, s:s, s:I, s:s}", "name", name, "key", prefix, "bytes", (json_int_t)len, "sha256", sha);
    if (!v) return LOOM_ENOMEM;
    snprintf(key, sizeof(key), "%s/meta", prefix);
    rc = tune_kv_put_json(t->c, key, v);
    json_decref(v);
    return rc;
}

/* ---- the command runner ---------------------------------------------------- */

#define LINE_MAX_BYTES (1 << 20)
#define TAIL_BYTES 400

typedef struct line_buf {
    char *p;
    size_t n, cap;
} line_buf;

typedef struct runner {
    loom_tune_trial *t;
    char dir[PATH_MAX], ckdir[PATH_MAX + 16], sock_path[PATH_MAX + 16], workdir[PATH_MAX + 16];
    pid_t pid;
    int out_fd, err_fd, listen_fd, conn_fd;
    line_buf out, err, sock;
    char tail[TAIL_BYTES + 1];
    int64_t reports;
    int decision;  /* LOOM_TUNE_* once stopped or paused, else -1 */
    char failure[512];
} runner;

/* argv[i] with every {name} replaced by the config's value. */
static char *substitute(const char *arg, const json_t *config)
{
    size_t cap = strlen(arg) + 64, n = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    for (const char *p = arg; *p;) {
        const char *close = *p == '{' ? strchr(p, '}') : NULL;
        char name[128], *text = NULL;
        const char *val = NULL;
        if (close && (size_t)(close - p - 1) < sizeof(name) && close > p + 1) {
            memcpy(name, p + 1, (size_t)(close - p - 1));
            name[close - p - 1] = 0;
            json_t *v = json_object_get(config, name);
            if (json_is_string(v)) val = json_string_value(v);
            else if (v) val = text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(17));
        }
        size_t add = val ? strlen(val) : 1;
        if (n + add + 1 > cap) {
            cap = (n + add + 1) * 2;
            char *nb = realloc(out, cap);
            if (!nb) {
                free(text);
                free(out);
                return NULL;
            }
            out = nb;
        }
        if (val) {
            memcpy(out + n, val, add);
            p = close + 1;
        } else {
            out[n] = *p++;
        }
        n += add;
        free(text);
    }
    out[n] = 0;
    return out;
}

static void child_exec(runner *r, char **argv, int out_w, int err_w, const json_t *cmd)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(out_w, 1);
    dup2(err_w, 2);
    char num[32];
    setenv("LOOM_TUNE_CONFIG", r->t->config_text, 1);
    setenv("LOOM_TUNE_SWEEP", r->t->sweep, 1);
    snprintf(num, sizeof(num), "%lld", (long long)r->t->id);
    setenv("LOOM_TUNE_TRIAL", num, 1);
    snprintf(num, sizeof(num), "%lld", (long long)r->t->attempt);
    setenv("LOOM_TUNE_ATTEMPT", num, 1);
    setenv("LOOM_TUNE_CHECKPOINT_DIR", r->ckdir, 1);
    setenv("LOOM_TUNE_SOCKET", r->sock_path, 1);
    if (r->t->ckpt) {
        char path[PATH_MAX + 32];
        snprintf(path, sizeof(path), "%s/resume.ckpt", r->dir);
        setenv("LOOM_TUNE_RESUME", path, 1);
        snprintf(num, sizeof(num), "%.17g", r->t->ckpt_t);
        setenv("LOOM_TUNE_RESUME_T", num, 1);
    }
    json_t *env = json_object_get(cmd, "env");
    size_t i;
    json_t *e;
    json_array_foreach(env, i, e) if (json_is_string(e)) putenv(strdup(json_string_value(e)));
    const char *cwd = json_string_value(json_object_get(cmd, "cwd"));
    if (!cwd) cwd = r->workdir; /* a fresh directory of its own */
    if (chdir(cwd)) {
        fprintf(stderr, "tune: cannot enter %s: %s\n", cwd, strerror(errno));
        _exit(127);
    }
    execvp(argv[0], argv);
    fprintf(stderr, "tune: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

static int write_all(int fd, const void *p, size_t n)
{
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p = (const char *)p + k;
        n -= (size_t)k;
    }
    return 0;
}

/* The trial's private directory: checkpoints, the resume file, the socket. */
static int runner_dirs(runner *r)
{
    snprintf(r->dir, sizeof(r->dir), "%s/loom-tune-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(r->dir)) return LOOM_ESYS;
    snprintf(r->ckdir, sizeof(r->ckdir), "%s/ckpt", r->dir);
    snprintf(r->sock_path, sizeof(r->sock_path), "%s/sock", r->dir);
    snprintf(r->workdir, sizeof(r->workdir), "%s/work", r->dir);
    if (mkdir(r->ckdir, 0700) || mkdir(r->workdir, 0700)) return LOOM_ESYS;
    if (r->t->ckpt) {
        char path[PATH_MAX + 32];
        snprintf(path, sizeof(path), "%s/resume.ckpt", r->dir);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) return LOOM_ESYS;
        int bad = write_all(fd, r->t->ckpt, r->t->ckpt_len);
        close(fd);
        if (bad) return LOOM_EIO;
    }
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(r->sock_path) >= sizeof(a.sun_path)) return LOOM_EINVAL;
    strcpy(a.sun_path, r->sock_path);
    r->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (r->listen_fd < 0 || bind(r->listen_fd, (struct sockaddr *)&a, sizeof(a)) ||
        listen(r->listen_fd, 4))
        return LOOM_ESYS;
    return LOOM_OK;
}

static void remove_tree(const char *dir)
{
    char path[PATH_MAX + 32];
    const char *names[] = {"resume.ckpt", "sock"};
    for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    pid_t p = fork(); /* the checkpoint directory holds what the trial wrote */
    if (p == 0) {
        execlp("rm", "rm", "-rf", "--", dir, (char *)NULL);
        _exit(127);
    }
    if (p > 0) waitpid(p, NULL, 0);
}

/* A file the trial names in a report: relative to base, or absolute. */
static int read_named(const char *base, const char *name, void **data, size_t *len)
{
    char path[PATH_MAX * 2];
    if (name[0] == '/') snprintf(path, sizeof(path), "%s", name);
    else snprintf(path, sizeof(path), "%s/%s", base, name);
    return tune_read_file(path, TUNE_MAX_BLOB, data, len);
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* One report line of the protocol: the decision, or a negative error. */
static int runner_report(runner *r, const char *text, size_t len)
{
    json_error_t e;
    json_t *o = json_loadb(text, len, 0, &e);
    if (!json_is_object(o)) {
        json_decref(o);
        fprintf(stderr, "tune: ignored a report that is not a JSON object: %.*s\n", (int)(len > 200 ? 200 : len), text);
        return LOOM_TUNE_CONTINUE;
    }
    r->reports++;
    json_t *tv = json_object_get(o, "t");
    double step = json_is_number(tv) ? json_number_value(tv) : (double)r->reports;
    void *ck = NULL, *art = NULL;
    size_t cklen = 0, artlen = 0;
    const char *ckname = json_string_value(json_object_get(o, "checkpoint"));
    const char *artpath = json_string_value(json_object_get(o, "artifact"));
    char artname[160] = "";
    int rc = LOOM_OK;
    if (ckname && (rc = read_named(r->ckdir, ckname, &ck, &cklen)))
        fprintf(stderr, "tune: cannot read checkpoint %s: %s\n", ckname, loom_strerror(rc));
    if (artpath) {
        const json_t *cmd = json_object_get(r->t->context, "command");
        const char *dir = json_string_value(json_object_get(cmd, "cwd"));
        if ((rc = read_named(dir ? dir : r->workdir, artpath, &art, &artlen)))
            fprintf(stderr, "tune: cannot read artifact %s: %s\n", artpath, loom_strerror(rc));
        snprintf(artname, sizeof(artname), "%s", base_name(artpath));
        if (!plain_name(artname)) snprintf(artname, sizeof(artname), "artifact");
    }
    json_object_del(o, "t");
    json_object_del(o, "checkpoint");
    json_object_del(o, "artifact");
    rc = report_full(r->t, step, o, ck, cklen, art ? artname : NULL, art, artlen);
    free(ck);
    free(art);
    return rc;
}

/* Append bytes to a line buffer; returns -1 when a line is too long. */
static int line_add(line_buf *b, const char *p, size_t n)
{
    if (b->n + n > LINE_MAX_BYTES) return -1;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *nb = realloc(b->p, cap);
        if (!nb) return -1;
        b->p = nb;
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
    return 0;
}

static void keep_tail(runner *r, const char *p, size_t n)
{
    size_t have = strlen(r->tail);
    if (n >= TAIL_BYTES) {
        memcpy(r->tail, p + n - TAIL_BYTES, TAIL_BYTES);
        r->tail[TAIL_BYTES] = 0;
        return;
    }
    if (have + n > TAIL_BYTES) {
        memmove(r->tail, r->tail + (have + n - TAIL_BYTES), TAIL_BYTES - n);
        have = TAIL_BYTES - n;
    }
    memcpy(r->tail + have, p, n);
    r->tail[have + n] = 0;
}

/* Signal the command while it runs.  Once reaped its pid is -1, and kill(-1)
 * would signal every process the runner may signal (all of them, as root):
 * report lines can still arrive after the exit, from the pipe's buffer. */
static void signal_child(runner *r, int sig)
{
    if (r->pid > 0) kill(r->pid, sig);
}

static void end_child(runner *r, int decision)
{
    r->decision = decision;
    signal_child(r, SIGKILL);
    signal_child(r, SIGCONT);
}

/* Complete lines of the command's stdout: log them, act on reports. */
static void stdout_lines(runner *r)
{
    static const char tag[] = "loom-tune ";
    char *start = r->out.p, *nl;
    while (r->decision < 0 && (nl = memchr(start, '\n', r->out.n - (size_t)(start - r->out.p)))) {
        size_t len = (size_t)(nl - start);
        fwrite(start, 1, len + 1, stdout);
        fflush(stdout);
        if (len > sizeof(tag) - 1 && !memcmp(start, tag, sizeof(tag) - 1)) {
            signal_child(r, SIGSTOP);
            int d = runner_report(r, start + sizeof(tag) - 1, len - (sizeof(tag) - 1));
            if (d < 0) {
                snprintf(r->failure, sizeof(r->failure), "reporting failed: %s", loom_strerror(d));
                end_child(r, LOOM_TUNE_STOP);
            } else if (d != LOOM_TUNE_CONTINUE) {
                end_child(r, d);
            } else {
                signal_child(r, SIGCONT);
            }
        }
        start = nl + 1;
    }
    size_t rest = r->out.n - (size_t)(start - r->out.p);
    memmove(r->out.p, start, rest);
    r->out.n = rest;
}

/* Complete lines on the socket: each is a report, answered with a line. */
static void socket_lines(runner *r)
{
    char *start = r->sock.p, *nl;
    while ((nl = memchr(start, '\n', r->sock.n - (size_t)(start - r->sock.p)))) {
        int d = runner_report(r, start, (size_t)(nl - start));
        const char *answer = d == LOOM_TUNE_STOP ? "stop\n" : d == LOOM_TUNE_PAUSE ? "pause\n" : "continue\n";
        if (d < 0) {
            snprintf(r->failure, sizeof(r->failure), "reporting failed: %s", loom_strerror(d));
            answer = "stop\n";
            d = LOOM_TUNE_STOP;
        }
        write_all(r->conn_fd, answer, strlen(answer));
        start = nl + 1;
        if (d != LOOM_TUNE_CONTINUE) {
            r->decision = d; /* it may exit by itself; killed after a grace */
            break;
        }
    }
    size_t rest = r->sock.n - (size_t)(start - r->sock.p);
    memmove(r->sock.p, start, rest);
    r->sock.n = rest;
}

/* Read what is there on fd into b; 0 at EOF, 1 when more may come. */
static int pump(int fd, line_buf *b, runner *r, int is_err)
{
    char buf[65536];
    ssize_t k = read(fd, buf, sizeof(buf));
    if (k < 0 && (errno == EINTR || errno == EAGAIN)) return 1;
    if (k <= 0) return 0;
    if (is_err) {
        fwrite(buf, 1, (size_t)k, stderr);
        fflush(stderr);
        keep_tail(r, buf, (size_t)k);
        return 1;
    }
    if (line_add(b, buf, (size_t)k)) {
        if (b == &r->out) { /* a line without end: log it as it is */
            fwrite(b->p, 1, b->n, stdout);
            b->n = 0;
            if (line_add(b, buf, (size_t)k)) b->n = 0;
        } else {
            snprintf(r->failure, sizeof(r->failure), "a report line on the socket is over 1 MiB");
            end_child(r, LOOM_TUNE_STOP);
            b->n = 0;
        }
    }
    return 1;
}

/* Wait for the command, reading its output, answering its reports. */
static void runner_loop(runner *r)
{
    int64_t grace_end = 0;
    int out_open = 1, err_open = 1;
    while (out_open || err_open || r->pid > 0) {
        struct pollfd p[4];
        int n = 0, i_out = -1, i_err = -1, i_lis = -1, i_con = -1;
        if (out_open) p[i_out = n++] = (struct pollfd){r->out_fd, POLLIN, 0};
        if (err_open) p[i_err = n++] = (struct pollfd){r->err_fd, POLLIN, 0};
        if (r->conn_fd < 0 && r->decision < 0) p[i_lis = n++] = (struct pollfd){r->listen_fd, POLLIN, 0};
        if (r->conn_fd >= 0) p[i_con = n++] = (struct pollfd){r->conn_fd, POLLIN, 0};
        /* once its output is closed, only its exit is awaited: look often */
        poll(p, (nfds_t)n, out_open || err_open ? 100 : 2);
        if (i_out >= 0 && p[i_out].revents && !(out_open = pump(r->out_fd, &r->out, r, 0)) && r->out.n)
            line_add(&r->out, "\n", 1);
        if (i_out >= 0 && r->out.n) stdout_lines(r);
        if (i_err >= 0 && p[i_err].revents) err_open = pump(r->err_fd, NULL, r, 1);
        if (i_lis >= 0 && p[i_lis].revents) r->conn_fd = accept4(r->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (i_con >= 0 && p[i_con].revents) {
            if (!pump(r->conn_fd, &r->sock, r, 0)) {
                close(r->conn_fd);
                r->conn_fd = -2; /* one connection per trial */
            } else if (r->decision < 0) {
                socket_lines(r);
            }
        }
        if (r->pid > 0) {
            int st;
            pid_t w = waitpid(r->pid, &st, WNOHANG);
            if (w == r->pid) {
                if (r->decision < 0 && !r->failure[0]) {
                    if (WIFEXITED(st) && WEXITSTATUS(st) != 0)
                        snprintf(r->failure, sizeof(r->failure), "command exited with status %d: %s",
                                 WEXITSTATUS(st), r->tail);
                    else if (WIFSIGNALED(st))
                        snprintf(r->failure, sizeof(r->failure), "command killed by signal %d: %s",
                                 WTERMSIG(st), r->tail);
                }
                r->pid = -1;
            }
        }
        if (r->decision >= 0 && r->pid > 0) {
            if (!grace_end) grace_end = loom__wall_ms() + 5000;
            else if (loom__wall_ms() > grace_end) end_child(r, r->decision);
        }
        if (r->pid < 0 && r->decision >= 0) break; /* its pipes may be held by its children */
    }
}

static int runner_start(runner *r, const json_t *cmd)
{
    json_t *argv_j = json_object_get(cmd, "argv");
    size_t argc = json_array_size(argv_j);
    if (!argc || argc > 4096) return LOOM_EINVAL;
    char **argv = calloc(argc + 1, sizeof(char *));
    int rc = argv ? LOOM_OK : LOOM_ENOMEM;
    for (size_t i = 0; !rc && i < argc; i++) {
        const char *a = json_string_value(json_array_get(argv_j, i));
        if (!a) rc = LOOM_EINVAL;
        else if (!(argv[i] = substitute(a, r->t->config))) rc = LOOM_ENOMEM;
    }
    int o[2] = {-1, -1}, e[2] = {-1, -1};
    if (!rc && (pipe2(o, O_CLOEXEC) || pipe2(e, O_CLOEXEC))) rc = LOOM_ESYS;
    if (!rc) {
        fflush(stdout);
        fflush(stderr);
        r->pid = fork();
        if (r->pid == 0) child_exec(r, argv, o[1], e[1], cmd);
        if (r->pid < 0) rc = LOOM_ESYS;
    }
    if (o[1] >= 0) close(o[1]);
    if (e[1] >= 0) close(e[1]);
    r->out_fd = o[0];
    r->err_fd = e[0];
    for (size_t i = 0; argv && i < argc; i++) free(argv[i]);
    free(argv);
    return rc;
}

/* Run the trial's command (context "command": {"argv", "env", "cwd"}). */
LOOM_TASK(tune_command)
{
    runner r = {.pid = -1, .out_fd = -1, .err_fd = -1, .listen_fd = -1, .conn_fd = -1, .decision = -1};
    int rc = loom_tune_trial_open(ctx, &r.t);
    if (rc) return loom_task_fail(ctx, "tune_command: not a trial of a sweep (%s)", loom_strerror(rc));
    const json_t *cmd = json_object_get(r.t->context, "command");
    if (!json_is_object(cmd)) rc = LOOM_EINVAL;
    if (!rc) rc = runner_dirs(&r);
    if (!rc) rc = runner_start(&r, cmd);
    if (!rc) runner_loop(&r);
    int out_rc;
    if (rc) out_rc = loom_task_fail(ctx, "tune_command: cannot start the trial: %s (%s)", loom_strerror(rc),
                                    strerror(errno));
    else if (r.failure[0]) out_rc = loom_task_fail(ctx, "%s", r.failure);
    else {
        char res[128];
        snprintf(res, sizeof(res), "{\"reports\": %lld, \"ended\": \"%s\"}", (long long)r.reports,
                 r.decision == LOOM_TUNE_STOP ? "stopped" : r.decision == LOOM_TUNE_PAUSE ? "paused" : "finished");
        out_rc = loom_task_return(ctx, res, strlen(res));
    }
    if (r.pid > 0) {
        kill(r.pid, SIGKILL);
        waitpid(r.pid, NULL, 0);
    }
    int fds[] = {r.out_fd, r.err_fd, r.listen_fd, r.conn_fd};
    for (size_t i = 0; i < sizeof(fds) / sizeof(*fds); i++)
        if (fds[i] >= 0) close(fds[i]);
    if (r.dir[0]) remove_tree(r.dir);
    free(r.out.p);
    free(r.err.p);
    free(r.sock.p);
    loom_tune_trial_close(&r.t);
    return out_rc;
}
