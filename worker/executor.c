/* worker/executor.c — an executor process: runs one task at a time for its
 * node daemon.  A function task's library is written once to the node's
 * library cache (named by its content ref) and loaded with dlopen; arguments
 * are read zero-copy from the node's object store.  A command task runs as a
 * child process in its own working directory, its stdout and stderr kept as
 * the task's log.  Results small enough travel inline in the reply; larger
 * ones are written to the store as primary copies.
 *
 * The executor is the process group leader of its commands, so the daemon
 * cancels a task by killing the group.
 *
 * An executor started with --actor hosts one actor: its first task is the
 * actor's creation (the class's init, whose state it keeps), the next ones
 * the actor's method calls, run in arrival order, or on max_concurrency
 * threads when the actor allows concurrent calls.  BYE runs the class's
 * destroy and ends the process. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>
#include "objectstore/store.h"
#include "runtime/hmap.h"
#include "runtime/ids.h"
#include "runtime/log.h"
#include "runtime/util.h"
#include "runtime/wire.h"
#include "runtime/zloop.h"
#include "worker/daemon.h"
#include "worker/task_ctx.h"

#define LOG_INDEX 0xFFFFFFFFu
#define LOG_MAX (8u << 20)      /* keep at most this much of a command's output */
#define RESULT_WAIT_MS 30000    /* a full store slows a result's task this long before failing it */

typedef struct work work;

typedef struct executor {
    const loom_executor_opts *o;
    void *zctx, *sock;
    loom_store *store;
    loom_hmap libs;          /* lib ref -> dlopen handle */
    int logfd;               /* the executor's log (its stdout), opened for reading, or -1 */
    loom_pack *out;
    /* hosting an actor */
    int is_actor;
    void *actor_lib;
    char actor_cls[256];
    void *actor_state;
    int actor_alive;         /* init succeeded */
    uint8_t actor_id[16];
    /* concurrent calls: worker threads fed through a queue; their replies
       come back on an inproc socket that the main loop forwards */
    int nthreads;
    pthread_t threads[64];
    pthread_mutex_t lock;
    pthread_cond_t cond;
    work *q_head, *q_tail;
    int stopping;
    void *results;           /* PULL, inproc */
} executor;

/* A RUN waiting for a worker thread: the frame and its decoded message. */
struct work {
    zmq_msg_t frame;
    loom_msg msg;
    work *next;
};

#define RESULTS_EP "inproc://loom-executor-results"

/* What a run produced, reported in one TASK_DONE. */
typedef struct run_result {
    int code;
    char text[2048];
    loom_wire_output outs[64 + 2];
    uint8_t *owned[64 + 2];  /* malloc'd buffers behind outs[].value */
    int nouts;
} run_result;

static void result_fail(run_result *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void result_fail(run_result *r, int code, const char *fmt, ...)
{
    if (r->code) return;
    r->code = code;
    va_list ap;
    va_start(ap, fmt);
    loom__verrf(r->text, sizeof(r->text), code, fmt, ap);
    va_end(ap);
}

/* Record output `index`: inline when small, else written to the store. */
static void add_output(executor *ex, run_result *r, const uint8_t task_id[16], uint32_t index,
                       const void *data, size_t len)
{
    if (r->nouts >= (int)(sizeof(r->outs) / sizeof(r->outs[0]))) return;
    loom_wire_output *o = &r->outs[r->nouts];
    o->index = index;
    o->size = len;
    if (len <= LOOM_INLINE_MAX) {
        uint8_t *copy = malloc(len ? len : 1);
        if (!copy) {
            result_fail(r, LOOM_ENOMEM, "out of memory for the result");
            return;
        }
        if (len) memcpy(copy, data, len);
        r->owned[r->nouts] = copy;
        o->value.p = copy;
        o->value.n = len;
    } else {
        loom_ref ref;
        loom__ref_make(task_id, index, &ref);
        int rc = loom__store_put_wait(ex->store, ref.id, data, len, LOOM_STORE_PRIMARY, RESULT_WAIT_MS);
        if (rc) {
            result_fail(r, rc, "cannot store a result of %zu bytes: %s", len, loom_strerror(rc));
            return;
        }
    }
    r->nouts++;
}

/* ---- arguments ---------------------------------------------------------- */

typedef struct argset {
    loom_task_argv *v;
    loom_store_view *views;
    int n;
} argset;

static int args_open(executor *ex, const loom_wire_task *t, argset *a, run_result *r)
{
    a->n = (int)t->nargs;
    a->v = calloc(t->nargs + 1, sizeof(*a->v));
    a->views = calloc(t->nargs + 1, sizeof(*a->views));
    if (!a->v || !a->views) {
        result_fail(r, LOOM_ENOMEM, "out of memory");
        return LOOM_ENOMEM;
    }
    for (uint32_t i = 0; i < t->nargs; i++) {
        const loom_wire_arg *w = &t->args[i];
        if (w->kind == LOOM_WARG_VALUE) {
            a->v[i].data = w->value.p;
            a->v[i].len = w->value.n;
            continue;
        }
        int rc = loom__store_get(ex->store, w->ref.id, &a->views[i]);
        if (rc) {
            char hex[41];
            loom_ref_to_hex(&w->ref, hex);
            result_fail(r, rc, "argument %u (%s) is not in the node's store: %s", i, hex,
                        loom_strerror(rc));
            return rc;
        }
        a->v[i].data = a->views[i].data;
        a->v[i].len = a->views[i].len;
    }
    return LOOM_OK;
}

static void args_close(executor *ex, argset *a)
{
    for (int i = 0; a->views && i < a->n; i++)
        if (a->views[i].txn_) loom__store_view_release(ex->store, &a->views[i]);
    free(a->v);
    free(a->views);
}

/* ---- function tasks ----------------------------------------------------- */

static void *load_library(executor *ex, const loom_wire_task *t, run_result *r)
{
    const loom_ref *ref = &t->lib.ref;
    void *h = loom__hmap_get(&ex->libs, ref->id, LOOM_ID_LEN);
    if (h) return h;
    char hex[41], path[4096];
    loom_ref_to_hex(ref, hex);
    loom__snprintf(path, sizeof(path), "%s/libs", ex->o->node_dir);
    loom__mkdir_p(path);
    loom__snprintf(path, sizeof(path), "%s/libs/%s.so", ex->o->node_dir, hex);
    if (access(path, R_OK) != 0) {
        const void *data = t->lib.value.p;
        size_t len = t->lib.value.n;
        loom_store_view v = {0};
        if (t->lib.kind == LOOM_WARG_REF) {
            int rc = loom__store_get(ex->store, ref->id, &v);
            if (rc) {
                result_fail(r, rc, "library %s is not in the node's store", hex);
                return NULL;
            }
            data = v.data;
            len = v.len;
        }
        int rc = loom__write_file(path, data, len, 0700);
        if (v.txn_) loom__store_view_release(ex->store, &v);
        if (rc) {
            result_fail(r, rc, "cannot write library %s: %s", path, strerror(errno));
            return NULL;
        }
    }
    h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        result_fail(r, LOOM_ETASK, "cannot load the task library: %s", dlerror());
        return NULL;
    }
    loom__hmap_put(&ex->libs, ref->id, LOOM_ID_LEN, h);
    return h;
}

/* A function task's log: what it wrote to stdout and stderr, which both go
 * to the executor's log file (appended), read back from where the task began. */
static void capture_log(executor *ex, run_result *r, const loom_wire_task *t, off_t start)
{
    if (start < 0) return;
    off_t end = lseek(STDOUT_FILENO, 0, SEEK_END);
    if (end <= start) return;
    if (end - start > (off_t)LOG_MAX) start = end - (off_t)LOG_MAX;
    size_t len = (size_t)(end - start);
    char *buf = malloc(len);
    if (!buf) return;
    ssize_t got = pread(ex->logfd, buf, len, start);
    if (got > 0) {
        int code = r->code;
        r->code = 0;
        add_output(ex, r, t->task_id, LOG_INDEX, buf, (size_t)got);
        r->code = code;
    }
    free(buf);
}

/* Run fn (a task function, or an actor's init or method) on t's arguments. */
static void call_symbol(executor *ex, const loom_wire_task *t, loom_task_fn fn, const char *label, run_result *r)
{
    argset a = {0};
    if (args_open(ex, t, &a, r)) {
        args_close(ex, &a);
        return;
    }
    loom_task_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.name = t->function;
    ctx.gpu_ids = ex->is_actor ? (ex->o->gpus ? ex->o->gpus : "") : t->gpu_ids;
    ctx.connect = ex->o->connect;
    if (ex->is_actor) {
        ctx.actor_state = &ex->actor_state;
        memcpy(ctx.self, ex->actor_id, 16);
    }
    loom__hex_encode(t->task_id, 16, ctx.task_hex);
    ctx.args = a.v;
    ctx.nargs = a.n;
    int capture = ex->nthreads <= 1; /* concurrent calls share one log file */
    fflush(stdout);
    fflush(stderr);
    off_t log_start = capture && ex->logfd >= 0 ? lseek(STDOUT_FILENO, 0, SEEK_END) : -1;
    int rc = fn(&ctx);
    fflush(stdout);
    fflush(stderr);
    capture_log(ex, r, t, log_start);
    if (rc || ctx.failed) {
        if (ctx.error[0]) result_fail(r, LOOM_ETASK, "%s: %s", label, ctx.error);
        else result_fail(r, LOOM_ETASK, "%s returned %d", label, rc);
    } else {
        add_output(ex, r, t->task_id, 0, ctx.result, ctx.result_len);
    }
    loom__task_ctx_reset(&ctx);
    args_close(ex, &a);
}

static void run_function(executor *ex, const loom_wire_task *t, run_result *r)
{
    void *lib = load_library(ex, t, r);
    if (!lib) return;
    char sym[300];
    loom__snprintf(sym, sizeof(sym), "%s%s", LOOM_TASK_SYMBOL_PREFIX, t->function);
    loom_task_fn fn;
    *(void **)&fn = dlsym(lib, sym);
    if (!fn) {
        result_fail(r, LOOM_ENOTFOUND, "function '%s' not found in the task library (no symbol %s)",
                    t->function, sym);
        return;
    }
    /* each task sees only its GPUs (a GPU task's executor is replaced after it) */
    setenv("CUDA_VISIBLE_DEVICES", t->gpu_ids, 1);
    call_symbol(ex, t, fn, t->function, r);
}

/* ---- actors ------------------------------------------------------------- */

static void *actor_symbol(executor *ex, const char *member)
{
    char sym[600];
    loom__snprintf(sym, sizeof(sym), "%s%s__%s", LOOM_ACTOR_SYMBOL_PREFIX, ex->actor_cls, member);
    return ex->actor_lib ? dlsym(ex->actor_lib, sym) : NULL;
}

static void start_threads(executor *ex, int n);

static void run_actor_init(executor *ex, const loom_wire_task *t, run_result *r)
{
    if (!ex->is_actor || ex->actor_alive) {
        result_fail(r, LOOM_EPROTO, "this executor does not host a new actor");
        return;
    }
    void *lib = load_library(ex, t, r);
    if (!lib) return;
    ex->actor_lib = lib;
    loom__snprintf(ex->actor_cls, sizeof(ex->actor_cls), "%s", t->function);
    loom_task_fn fn;
    *(void **)&fn = actor_symbol(ex, "init");
    if (!fn) {
        result_fail(r, LOOM_ENOTFOUND, "actor class '%s' not found in the task library (no symbol %s%s__init)",
                    t->function, LOOM_ACTOR_SYMBOL_PREFIX, t->function);
        return;
    }
    char label[300];
    loom__snprintf(label, sizeof(label), "%s init", t->function);
    call_symbol(ex, t, fn, label, r);
    if (r->code) return;
    ex->actor_alive = 1;
    if (t->max_concurrency > 1) start_threads(ex, (int)t->max_concurrency);
}

static void run_actor_call(executor *ex, const loom_wire_task *t, run_result *r)
{
    if (!ex->actor_alive) {
        result_fail(r, LOOM_EACTOR, "the actor is not initialised");
        return;
    }
    loom_task_fn fn;
    *(void **)&fn = actor_symbol(ex, t->function);
    if (!fn || !strcmp(t->function, "init") || !strcmp(t->function, "destroy")) {
        result_fail(r, LOOM_ENOTFOUND, "actor class '%s' has no method '%s'", ex->actor_cls, t->function);
        return;
    }
    char label[600];
    loom__snprintf(label, sizeof(label), "%s.%s", ex->actor_cls, t->function);
    call_symbol(ex, t, fn, label, r);
}

static void actor_destroy(executor *ex)
{
    if (!ex->actor_alive) return;
    void (*fn)(void *);
    *(void **)&fn = actor_symbol(ex, "destroy");
    if (fn) fn(ex->actor_state);
    ex->actor_alive = 0;
}

/* ---- command tasks ------------------------------------------------------ */

static int write_arg_files(executor *ex, const loom_wire_task *t, const char *dir, run_result *r)
{
    argset a = {0};
    int rc = args_open(ex, t, &a, r);
    for (int i = 0; !rc && i < a.n; i++) {
        char path[4200];
        loom__snprintf(path, sizeof(path), "%s/.loom_arg_%d", dir, i);
        rc = loom__write_file(path, a.v[i].data, a.v[i].len, 0600);
        if (rc) result_fail(r, rc, "cannot write argument file %s", path);
    }
    args_close(ex, &a);
    return rc;
}

static void exec_child(const loom_wire_task *t, char *const *argv, const char *dir, const char *logpath)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* a command never outlives its executor */
    if (chdir(dir) != 0) _exit(126);
    int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int devnull = open("/dev/null", O_RDONLY);
    if (fd < 0 || devnull < 0) _exit(126);
    dup2(devnull, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    setenv("CUDA_VISIBLE_DEVICES", t->gpu_ids, 1); /* only its GPUs */
    for (uint32_t i = 0; i < t->nenv; i++) putenv(t->env[i]);
    char name[64], path[4200];
    for (uint32_t i = 0; i < t->nargs; i++) {
        loom__snprintf(name, sizeof(name), "LOOM_ARG_%u", i);
        loom__snprintf(path, sizeof(path), "%s/.loom_arg_%u", dir, i);
        setenv(name, path, 1);
    }
    loom__snprintf(name, sizeof(name), "%u", t->nargs);
    setenv("LOOM_NARGS", name, 1);
    char hex[33];
    loom__hex_encode(t->task_id, 16, hex);
    setenv("LOOM_TASK_ID", hex, 1);
    signal(SIGPIPE, SIG_DFL);
    execvp(argv[0], argv);
    fprintf(stderr, "loom: cannot run '%s': %s\n", argv[0], strerror(errno));
    _exit(127);
}

static char *log_tail(const char *log, size_t len)
{
    size_t keep = len > 400 ? 400 : len;
    char *s = malloc(keep + 1);
    if (!s) return NULL;
    memcpy(s, log + len - keep, keep);
    s[keep] = 0;
    for (char *p = s; *p; p++)
        if (*p == '\n' && p[1]) *p = ' ';
    return s;
}

static void run_command(executor *ex, const loom_wire_task *t, run_result *r)
{
    char dir[4096], logpath[4200], hex[33];
    loom__hex_encode(t->task_id, 16, hex);
    int own_dir = !t->cwd[0];
    if (own_dir) loom__snprintf(dir, sizeof(dir), "%s/work/%s", ex->o->node_dir, hex);
    else loom__snprintf(dir, sizeof(dir), "%s", t->cwd);
    if (loom__mkdir_p(dir)) {
        result_fail(r, LOOM_ESYS, "cannot make working directory %s: %s", dir, strerror(errno));
        return;
    }
    loom__snprintf(logpath, sizeof(logpath), "%s/logs/%s.log", ex->o->node_dir, hex);
    char logdir[4200];
    loom__snprintf(logdir, sizeof(logdir), "%s/logs", ex->o->node_dir);
    loom__mkdir_p(logdir);
    if (write_arg_files(ex, t, dir, r)) return;
    /* execvp wants a NULL-terminated argv; a decoded task's list holds exactly
     * argc entries.  Built before fork, so the child only execs. */
    char **argv = calloc((size_t)t->argc + 1, sizeof(char *));
    if (!argv) {
        result_fail(r, LOOM_ENOMEM, "out of memory");
        return;
    }
    memcpy(argv, t->argv, (size_t)t->argc * sizeof(char *));
    pid_t pid = fork();
    if (pid < 0) {
        free(argv);
        result_fail(r, LOOM_ESYS, "fork: %s", strerror(errno));
        return;
    }
    if (pid == 0) exec_child(t, argv, dir, logpath);
    free(argv);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    char *log = NULL;
    size_t loglen = 0;
    if (loom__read_file(logpath, (size_t)1 << 40, &log, &loglen) == 0 && loglen > LOG_MAX) {
        memmove(log, log + loglen - LOG_MAX, LOG_MAX);
        loglen = LOG_MAX;
    }
    int exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    char *tail = log ? log_tail(log, loglen) : NULL;
    if (WIFSIGNALED(status))
        result_fail(r, LOOM_ETASK, "command '%s' was killed by signal %d; output: %s", t->argv[0],
                    WTERMSIG(status), tail ? tail : "");
    else if (exit_code != 0 && !t->nocheck)
        result_fail(r, LOOM_ETASK, "command '%s' exited with status %d; output: %s", t->argv[0],
                    exit_code, tail ? tail : "");
    free(tail);
    if (!r->code) {
        loom_pack *p = loom_pack_new();
        if (p && !loom_pack_i64(p, exit_code))
            add_output(ex, r, t->task_id, 0, loom_pack_data(p), loom_pack_size(p));
        loom_pack_destroy(&p);
        for (uint32_t i = 0; i < t->noutputs && !r->code; i++) {
            char path[4400], *data = NULL;
            size_t len = 0;
            loom__snprintf(path, sizeof(path), "%s/%s", dir, t->outputs[i]);
            int rc = loom__read_file(path, (size_t)1 << 40, &data, &len);
            /* the task failed (ETASK), whatever the read said: ENOTFOUND would
             * tell the driver that the object does not exist */
            if (rc == LOOM_ENOTFOUND)
                result_fail(r, LOOM_ETASK, "output file '%s' was not written by the command", t->outputs[i]);
            else if (rc)
                result_fail(r, LOOM_ETASK, "cannot read output file '%s': %s", t->outputs[i], loom_strerror(rc));
            else add_output(ex, r, t->task_id, i + 1, data, len);
            free(data);
        }
    }
    if (log) {
        /* the log is reported whatever happened */
        int code = r->code;
        r->code = 0;
        add_output(ex, r, t->task_id, LOG_INDEX, log, loglen);
        r->code = code;
    }
    free(log);
    unlink(logpath);
    for (uint32_t i = 0; i < t->nargs; i++) {
        char path[4200];
        loom__snprintf(path, sizeof(path), "%s/.loom_arg_%u", dir, i);
        unlink(path);
    }
    if (own_dir) loom__rm_rf(dir);
}

/* ---- loop --------------------------------------------------------------- */

static void send_msg(executor *ex, const loom_msg *m)
{
    if (loom__zsend_msg(ex->sock, NULL, 0, m, ex->out)) LOG_WARN("cannot reach the daemon");
}

static void execute(executor *ex, const loom_wire_task *t, run_result *r)
{
    if (t->actor_op == LOOM_ACTOR_CREATE) run_actor_init(ex, t, r);
    else if (t->actor_op == LOOM_ACTOR_CALL) run_actor_call(ex, t, r);
    else if (ex->is_actor) result_fail(r, LOOM_EPROTO, "an actor's executor runs only its calls");
    else if (t->kind == LOOM_TASK_FUNCTION) run_function(ex, t, r);
    else run_command(ex, t, r);
}

/* Run the task of a RUN message and send its TASK_DONE on sock. */
static void run_task(executor *ex, const loom_msg *m, void *sock, loom_pack *pk)
{
    const loom_wire_task *t = &m->tasks[0];
    run_result *r = calloc(1, sizeof(*r));
    if (!r) return;
    execute(ex, t, r);
    loom_msg d;
    loom__msg_init(&d, LOOM_MSG_TASK_DONE, m->req);
    loom__ref_make(t->task_id, 0, &d.ref);
    d.code = r->code;
    d.text = r->text;
    d.outputs = r->outs;
    d.noutputs = (uint32_t)r->nouts;
    if (loom__zsend_msg(sock, NULL, 0, &d, pk)) LOG_WARN("cannot reach the daemon");
    for (int i = 0; i < r->nouts; i++) free(r->owned[i]);
    free(r);
}

/* ---- concurrent actor calls --------------------------------------------- */

static void *worker_main(void *arg)
{
    executor *ex = arg;
    void *push = zmq_socket(ex->zctx, ZMQ_PUSH);
    loom_pack *pk = loom_pack_new();
    if (!push || !pk || zmq_connect(push, RESULTS_EP) != 0) {
        LOG_ERROR("worker thread: cannot set up its socket");
        if (push) zmq_close(push);
        loom_pack_destroy(&pk);
        return NULL;
    }
    for (;;) {
        pthread_mutex_lock(&ex->lock);
        while (!ex->q_head && !ex->stopping) pthread_cond_wait(&ex->cond, &ex->lock);
        work *w = ex->q_head;
        if (w) {
            ex->q_head = w->next;
            if (!ex->q_head) ex->q_tail = NULL;
        }
        pthread_mutex_unlock(&ex->lock);
        if (!w) break;
        run_task(ex, &w->msg, push, pk);
        loom__msg_free(&w->msg);
        zmq_msg_close(&w->frame);
        free(w);
    }
    int linger = 1000;
    zmq_setsockopt(push, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_close(push);
    loom_pack_destroy(&pk);
    return NULL;
}

static void start_threads(executor *ex, int n)
{
    if (n > (int)(sizeof(ex->threads) / sizeof(ex->threads[0])))
        n = (int)(sizeof(ex->threads) / sizeof(ex->threads[0]));
    ex->results = zmq_socket(ex->zctx, ZMQ_PULL);
    if (!ex->results || zmq_bind(ex->results, RESULTS_EP) != 0) {
        LOG_ERROR("cannot run concurrent calls (inproc socket): calls run one at a time");
        if (ex->results) zmq_close(ex->results);
        ex->results = NULL;
        return;
    }
    pthread_mutex_init(&ex->lock, NULL);
    pthread_cond_init(&ex->cond, NULL);
    for (int i = 0; i < n; i++) {
        if (pthread_create(&ex->threads[i], NULL, worker_main, ex) != 0) break;
        ex->nthreads++;
    }
    LOG_INFO("actor %s: %d threads for concurrent calls", ex->actor_cls, ex->nthreads);
}

static void stop_threads(executor *ex)
{
    if (!ex->nthreads) return;
    pthread_mutex_lock(&ex->lock);
    ex->stopping = 1;
    pthread_cond_broadcast(&ex->cond);
    pthread_mutex_unlock(&ex->lock);
    for (int i = 0; i < ex->nthreads; i++) pthread_join(ex->threads[i], NULL);
    ex->nthreads = 0;
    /* forward the last replies */
    zmq_msg_t f;
    zmq_msg_init(&f);
    while (zmq_msg_recv(&f, ex->results, ZMQ_DONTWAIT) >= 0) zmq_msg_send(&f, ex->sock, 0);
    zmq_msg_close(&f);
    zmq_close(ex->results);
    ex->results = NULL;
    while (ex->q_head) {
        work *w = ex->q_head;
        ex->q_head = w->next;
        loom__msg_free(&w->msg);
        zmq_msg_close(&w->frame);
        free(w);
    }
    pthread_mutex_destroy(&ex->lock);
    pthread_cond_destroy(&ex->cond);
}

/* Hand a RUN to the worker threads; the frame moves into the queue. */
static void enqueue_work(executor *ex, zmq_msg_t *f, const loom_msg *m)
{
    work *w = calloc(1, sizeof(*w));
    if (!w) return;
    zmq_msg_init(&w->frame);
    zmq_msg_move(&w->frame, f);
    /* its byte strings point into the frame's data, which zmq_msg_move keeps
       in place for any message too large to be stored inside zmq_msg_t (a RUN
       always is) */
    w->msg = *m;
    pthread_mutex_lock(&ex->lock);
    if (ex->q_tail) ex->q_tail->next = w;
    else ex->q_head = w;
    ex->q_tail = w;
    pthread_cond_signal(&ex->cond);
    pthread_mutex_unlock(&ex->lock);
}

/* ---- loop --------------------------------------------------------------- */

/* Receive the next frame from the daemon, forwarding worker replies meanwhile. */
static int next_frame(executor *ex, zmq_msg_t *f)
{
    for (;;) {
        zmq_pollitem_t pi[2] = {{ex->sock, 0, ZMQ_POLLIN, 0}, {ex->results, 0, ZMQ_POLLIN, 0}};
        int rc = zmq_poll(pi, ex->results ? 2 : 1, -1);
        if (rc < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (ex->results && (pi[1].revents & ZMQ_POLLIN)) {
            zmq_msg_t r;
            zmq_msg_init(&r);
            if (zmq_msg_recv(&r, ex->results, ZMQ_DONTWAIT) >= 0) zmq_msg_send(&r, ex->sock, 0);
            zmq_msg_close(&r);
        }
        if (pi[0].revents & ZMQ_POLLIN) {
            zmq_msg_init(f);
            if (zmq_msg_recv(f, ex->sock, ZMQ_DONTWAIT) >= 0) return 0;
            zmq_msg_close(f);
        }
    }
}

int loom__executor_run(const loom_executor_opts *o)
{
    executor ex;
    memset(&ex, 0, sizeof(ex));
    ex.o = o;
    loom__log_init("executor");
    /* stdout and stderr are the executor's log file: reopen it to read tasks' output */
    struct stat st;
    ex.logfd = fstat(STDOUT_FILENO, &st) == 0 && S_ISREG(st.st_mode) ? open("/proc/self/fd/1", O_RDONLY | O_CLOEXEC) : -1;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    setpgid(0, 0);
    if (o->actor) {
        ex.is_actor = 1;
        if (loom__hex_decode(o->actor, ex.actor_id, 16)) {
            LOG_ERROR("bad actor id %s", o->actor);
            return LOOM_EINVAL;
        }
        /* before anything can load CUDA: the actor sees only its GPUs */
        setenv("CUDA_VISIBLE_DEVICES", o->gpus ? o->gpus : "", 1);
    }
    loom_store_opts so = {.mem_dir = o->store_dir, .spill_dir = o->spill_dir, .create = 0};
    int rc = loom__store_open_shared(&so, &ex.store); /* shared with the tasks' client */
    if (rc) {
        LOG_ERROR("cannot open the node's store at %s: %s", o->store_dir, loom_strerror(rc));
        return rc;
    }
    ex.out = loom_pack_new();
    ex.zctx = zmq_ctx_new();
    ex.sock = zmq_socket(ex.zctx, ZMQ_DEALER);
    loom__zsock_setup(ex.sock, ZMQ_DEALER);
    if (zmq_connect(ex.sock, o->daemon_endpoint) != 0) {
        LOG_ERROR("cannot connect to %s", o->daemon_endpoint);
        rc = LOOM_ECONN;
        goto out;
    }
    loom_msg hello;
    loom__msg_init(&hello, LOOM_MSG_HELLO, 0);
    hello.role = LOOM_ROLE_EXECUTOR;
    hello.secret = (char *)o->token; /* its own token from the daemon, never the cluster secret */
    hello.hostname = "";
    hello.pid = (uint32_t)getpid();
    send_msg(&ex, &hello);
    for (;;) {
        zmq_msg_t f;
        if (next_frame(&ex, &f)) break;
        loom_msg m;
        char err[256];
        if (loom__wire_decode(zmq_msg_data(&f), zmq_msg_size(&f), &m, err, sizeof(err))) {
            LOG_WARN("bad message from the daemon: %s", err);
            zmq_msg_close(&f);
            continue;
        }
        if (m.type == LOOM_MSG_BYE) {
            loom__msg_free(&m);
            zmq_msg_close(&f);
            break;
        }
        if (m.type != LOOM_MSG_RUN) {
            loom__msg_free(&m);
            zmq_msg_close(&f);
            continue;
        }
        const loom_wire_task *t = &m.tasks[0];
        if (ex.nthreads && t->actor_op == LOOM_ACTOR_CALL) {
            enqueue_work(&ex, &f, &m); /* the queue owns the message now */
            zmq_msg_close(&f);
            continue;
        }
        /* after a GPU function (a CUDA context keeps its devices) or a failed
           actor init, the daemon sends BYE once it has the reply, and starts
           a fresh executor if it needs one */
        run_task(&ex, &m, ex.sock, ex.out);
        loom__msg_free(&m);
        zmq_msg_close(&f);
    }
    stop_threads(&ex);
    actor_destroy(&ex);
out:
    {
        int linger = 2000; /* let the last TASK_DONE reach the daemon */
        zmq_setsockopt(ex.sock, ZMQ_LINGER, &linger, sizeof(linger));
    }
    zmq_close(ex.sock);
    zmq_ctx_term(ex.zctx);
    if (ex.logfd >= 0) close(ex.logfd);
    loom__store_close_shared(&ex.store);
    loom_pack_destroy(&ex.out);
    loom__hmap_free(&ex.libs);
    return rc;
}
