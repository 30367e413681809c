/* worker/daemon.c — the node daemon: joins the head, reports its resources,
 * owns the node's object store, keeps a pool of executor processes and hands
 * them the tasks the head assigns, once every argument is on the node (the
 * pulls from other nodes, and the data port on which it serves its own
 * objects to other nodes and to drivers, are in transfer.c).
 *
 * Sockets: a DEALER to the head; a ROUTER on tcp (the data port: FETCH and
 * PUSH from peers, each of which must first say HELLO); a ROUTER on ipc for
 * its executors, in a 0700 directory, each executor saying HELLO with the
 * token of the grant it got on fd 3; one DEALER per peer it fetches from.
 * Every tcp socket speaks CURVE with keys derived from the cluster secret
 * (runtime/curve.h); the data port's ZAP handler is a thread of its own.
 * The rest is in one libuv loop (runtime/zloop.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>
#include <zmq.h>
#include "objectstore/store.h"
#include "runtime/hmap.h"
#include "runtime/ids.h"
#include "runtime/log.h"
#include "runtime/secret.h"
#include "runtime/util.h"
#include "runtime/wire.h"
#include "runtime/zloop.h"
#include "worker/daemon.h"
#include "worker/daemon_internal.h"
#include "worker/gpu.h"

/* Task reports kept for a head that restarts: those of the last 60 s, at
 * most 4096 and 64 MiB of them. */
#define REPORTS_KEEP_MS 60000
#define REPORTS_MAX 4096
#define REPORTS_MAX_BYTES ((size_t)64 << 20)

static void reports_drop_oldest(daemon_s *d)
{
    sent_report *r = &d->reports[d->nreports_first];
    d->reports_bytes -= r->len;
    free(r->data);
    r->data = NULL;
    d->nreports_first = (d->nreports_first + 1) % REPORTS_MAX;
    d->nreports--;
}

/* Keep a copy of a task report just sent (best effort: without memory, a
 * restarting head may run the task again, as before). */
static void reports_keep(daemon_s *d, const void *data, size_t len)
{
    if (!d->reports && !(d->reports = calloc(REPORTS_MAX, sizeof(sent_report)))) return;
    int64_t now = loom__now_ms();
    while (d->nreports &&
           (d->nreports == REPORTS_MAX || d->reports_bytes + len > REPORTS_MAX_BYTES ||
            now - d->reports[d->nreports_first].at_ms > REPORTS_KEEP_MS))
        reports_drop_oldest(d);
    if (len > REPORTS_MAX_BYTES) return;
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) return;
    memcpy(copy, data, len);
    sent_report *r = &d->reports[(d->nreports_first + d->nreports) % REPORTS_MAX];
    *r = (sent_report){copy, len, now};
    d->nreports++;
    d->reports_bytes += len;
}

/* Joined a restarted head: send the recent task reports again, before what
 * still runs (the head ignores a report of a task it knows finished; one it
 * believes still running here finishes now instead of being run again). */
static void reports_resend(daemon_s *d)
{
    int64_t now = loom__now_ms();
    int sent = 0;
    for (int i = 0; i < d->nreports; i++) {
        sent_report *r = &d->reports[(d->nreports_first + i) % REPORTS_MAX];
        if (now - r->at_ms > REPORTS_KEEP_MS) continue;
        if (loom__zsend(d->head, NULL, 0, r->data, r->len) == 0) sent++;
    }
    if (sent) LOG_INFO("sent the head %d task reports of the last %d s again", sent, REPORTS_KEEP_MS / 1000);
}

static void reports_free(daemon_s *d)
{
    while (d->reports && d->nreports) reports_drop_oldest(d);
    free(d->reports);
    d->reports = NULL;
}

void loom__daemon_send_head(daemon_s *d, const loom_msg *m)
{
    if (loom__wire_encode(m, d->out)) {
        LOG_WARN("cannot encode %s for the head", loom__msg_type_name(m->type));
        return;
    }
    if (loom__zsend(d->head, NULL, 0, loom_pack_data(d->out), loom_pack_size(d->out)))
        LOG_WARN("cannot send %s to the head", loom__msg_type_name(m->type));
    /* a report is kept even when it could not go: a head may come back */
    if (m->type == LOOM_MSG_TASK_DONE) reports_keep(d, loom_pack_data(d->out), loom_pack_size(d->out));
}

/* ---- executors ---------------------------------------------------------- */

static void spawn_executor(daemon_s *d, int i);
static void try_run(daemon_s *d);
static void task_report(daemon_s *d, dtask *t, const loom_msg *done);

/* The replacement executor reuses e->proc, which libuv lets us do only once
 * the old handle has finished closing. */
static void on_exec_closed(uv_handle_t *h)
{
    exec_proc *e = h->data;
    daemon_s *d = e->d;
    if (!d->stopping) spawn_executor(d, e->index);
}

static void on_exec_exit(uv_process_t *p, int64_t status, int sig)
{
    exec_proc *e = p->data;
    daemon_s *d = e->d;
    e->alive = e->ready = 0;
    uv_close((uv_handle_t *)p, on_exec_closed);
    if (e->task) {
        dtask *t = e->task;
        e->task = NULL;
        loom_msg m;
        loom__msg_init(&m, LOOM_MSG_TASK_DONE, 0);
        loom__ref_make(t->id, 0, &m.ref);
        char text[256];
        if (t->cancelled) {
            m.code = LOOM_ECANCELLED;
            loom__snprintf(text, sizeof(text), "cancelled");
        } else {
            m.code = LOOM_EWORKER;
            if (sig) loom__snprintf(text, sizeof(text), "the executor running '%s' crashed (signal %d: %s)",
                                    t->spec.name, sig, strsignal(sig));
            else loom__snprintf(text, sizeof(text), "the executor running '%s' exited with status %lld",
                                t->spec.name, (long long)status);
        }
        m.text = text;
        task_report(d, t, &m);
    }
    if (!d->stopping)
        LOG_INFO("executor %d (pid %d) exited (status %lld, signal %d); starting another", e->index,
                 e->pid, (long long)status, sig);
}

/* Write a fresh grant for one executor into fd: a random token (kept in
 * token, which its HELLO must carry) and the task client keys.  Executors
 * never get the cluster secret, nor the node or server keys. */
static int write_grant(daemon_s *d, int fd, char token[65])
{
    uint8_t raw[32];
    loom__random_bytes(raw, sizeof(raw));
    loom_exec_grant g;
    loom__hex_encode(raw, sizeof(raw), g.token);
    memcpy(g.task.server_pub, d->keys.server.pub, sizeof(g.task.server_pub));
    g.task.self = d->keys.task;
    char text[LOOM_EXEC_GRANT_LEN + 1];
    loom__exec_grant_format(&g, text);
    int ok = write(fd, text, LOOM_EXEC_GRANT_LEN) == LOOM_EXEC_GRANT_LEN;
    memcpy(token, g.token, 65);
    memset(&g, 0, sizeof(g));
    memset(text, 0, sizeof(text));
    memset(raw, 0, sizeof(raw));
    return ok ? LOOM_OK : LOOM_EIO;
}

/* Start `loom executor` (with extra arguments) as proc, its output appended
 * to logpath; its grant's token goes to token.  0 or a libuv error. */
static int spawn_process(daemon_s *d, uv_process_t *proc, const char *logpath, char **extra, uv_exit_cb on_exit,
                         char token[65])
{
    uv_fs_t req;
    int fd = uv_fs_open(d->loop, &req, logpath, UV_FS_O_WRONLY | UV_FS_O_CREAT | UV_FS_O_APPEND, 0600, NULL);
    uv_fs_req_cleanup(&req);
    const char *bin = loom__binary_path();
    char *args[22] = {(char *)bin, "executor", "--ipc", d->exec_ep, "--store", d->store_dir,
                      "--spill", d->spill_dir, "--node-dir", (char *)d->o.node_dir, "--secret-fd", "3"};
    int n = 12;
    for (int i = 0; extra && extra[i] && n < 21; i++) args[n++] = extra[i];
    args[n] = NULL;
    /* the grant goes through a pipe on the executor's fd 3, which it reads
       and closes: not the environment, which /proc/PID/environ shows to
       what the executor runs for the rest of its life */
    int sp[2] = {-1, -1};
    token[0] = 0;
    if (pipe2(sp, O_CLOEXEC) != 0) sp[0] = sp[1] = -1;
    if (sp[1] >= 0) {
        if (write_grant(d, sp[1], token)) LOG_WARN("cannot hand an executor its grant");
        close(sp[1]);
    }
    uv_stdio_container_t stdio[4];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = stdio[2].flags = fd >= 0 ? UV_INHERIT_FD : UV_IGNORE;
    stdio[1].data.fd = stdio[2].data.fd = fd;
    stdio[3].flags = sp[0] >= 0 ? UV_INHERIT_FD : UV_IGNORE;
    stdio[3].data.fd = sp[0];
    uv_process_options_t po;
    memset(&po, 0, sizeof(po));
    po.file = bin;
    po.args = args;
    po.exit_cb = on_exit;
    po.stdio = stdio;
    po.stdio_count = 4;
    int rc = uv_spawn(d->loop, proc, &po);
    if (sp[0] >= 0) close(sp[0]);
    if (fd >= 0) {
        uv_fs_close(d->loop, &req, fd, NULL);
        uv_fs_req_cleanup(&req);
    }
    if (rc) LOG_ERROR("cannot start an executor (%s): %s", bin, uv_strerror(rc));
    return rc;
}

static void spawn_executor(daemon_s *d, int i)
{
    exec_proc *e = &d->execs[i];
    memset(e, 0, sizeof(*e));
    e->index = i;
    e->d = d;
    char logpath[4200];
    loom__snprintf(logpath, sizeof(logpath), "%s/logs/executor-%d.log", d->o.node_dir, i);
    e->proc.data = e;
    if (spawn_process(d, &e->proc, logpath, NULL, on_exec_exit, e->token)) return;
    e->alive = 1;
    e->pid = e->proc.pid;
}

static exec_proc *exec_by_ident(daemon_s *d, const uint8_t *ident, size_t n)
{
    for (int i = 0; i < d->nexec; i++)
        if (d->execs[i].alive && d->execs[i].identlen == n && !memcmp(d->execs[i].ident, ident, n))
            return &d->execs[i];
    return NULL;
}

/* ---- tasks -------------------------------------------------------------- */

static void task_free(daemon_s *d, dtask *t)
{
    for (int i = 0; i < t->pinned_n; i++) loom__store_unpin(d->store, t->pinned[i].id);
    loom__hmap_del(&d->tasks, t->id, 16);
    free(t->pinned);
    loom__arena_free(&t->arena);
    free(t);
}

/* Forward the executor's (or our own) TASK_DONE to the head and forget the task. */
static void task_report(daemon_s *d, dtask *t, const loom_msg *done)
{
    loom_msg m = *done;
    m.req = 0;
    loom__daemon_send_head(d, &m);
    if (d->running) d->running--;
    task_free(d, t);
}

static void task_fail_local(daemon_s *d, dtask *t, int code, const char *text)
{
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_TASK_DONE, 0);
    loom__ref_make(t->id, 0, &m.ref);
    m.code = code;
    m.text = (char *)text;
    task_report(d, t, &m);
}

static void enqueue(daemon_s *d, dtask *t)
{
    t->qnext = NULL;
    if (d->q_tail) d->q_tail->qnext = t;
    else d->q_head = t;
    d->q_tail = t;
}

static void actor_start(daemon_s *d, dtask *t);
static void actor_flush(daemon_s *d, actor_proc *a);
static void actor_kill(daemon_s *d, actor_proc *a);

void loom__daemon_arg_ready(daemon_s *d, dtask *t)
{
    if (--t->missing > 0) return;
    if (t->spec.actor_op == LOOM_ACTOR_CALL && t->actor) {
        actor_flush(d, t->actor); /* in arrival order, failed or not */
        return;
    }
    if (t->failed) {
        task_fail_local(d, t, LOOM_ENODE, t->error);
        return;
    }
    if (t->spec.actor_op == LOOM_ACTOR_CREATE) {
        actor_start(d, t);
        return;
    }
    enqueue(d, t);
    try_run(d);
}

/* The head numbers a node's GPUs 0..n-1; when the daemon itself was given
 * CUDA_VISIBLE_DEVICES (as under Slurm), GPU i is the i-th device of that list. */
static void map_gpu_ids(daemon_s *d, const char *ids, char *out, size_t outlen)
{
    out[0] = 0;
    if (!ids || !ids[0] || !d->parent_gpus[0]) {
        loom__snprintf(out, outlen, "%s", ids ? ids : "");
        return;
    }
    char parent[256];
    loom__snprintf(parent, sizeof(parent), "%s", d->parent_gpus);
    char *list[LOOM_MAX_GPUS];
    int np = 0;
    for (char *save = NULL, *tok = strtok_r(parent, ",", &save); tok && np < LOOM_MAX_GPUS;
         tok = strtok_r(NULL, ",", &save))
        list[np++] = tok;
    char copy[256];
    loom__snprintf(copy, sizeof(copy), "%s", ids);
    size_t used = 0;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int i = atoi(tok);
        const char *dev = i >= 0 && i < np ? list[i] : tok;
        loom__snprintf(out + used, outlen - used, "%s%s", used ? "," : "", dev);
        used = strlen(out);
    }
}

static void run_on(daemon_s *d, exec_proc *e, dtask *t)
{
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_RUN, 0);
    char gpus[256];
    map_gpu_ids(d, t->spec.gpu_ids, gpus, sizeof(gpus));
    loom_wire_task spec = t->spec;
    spec.gpu_ids = gpus;
    m.tasks = &spec;
    m.ntasks = 1;
    /* a CUDA context keeps the devices it was made with: an executor that
       ran a GPU function is replaced after it */
    if (t->spec.kind == LOOM_TASK_FUNCTION && t->spec.gpu_ids[0]) e->retiring = 1;
    if (loom__zsend_msg(d->execs_sock, e->ident, e->identlen, &m, d->out)) {
        task_fail_local(d, t, LOOM_EWORKER, "cannot reach the executor (it just died)");
        return;
    }
    e->task = t;
    t->exec = e->index;
}

/* The head places tasks by CPU amount, so fractional CPUs can put more tasks
 * on a node than it has executors: start another executor for each task that
 * would otherwise wait (the pool keeps them). */
static void grow_pool(daemon_s *d)
{
    int starting = 0, waiting = 0;
    for (int i = 0; i < d->nexec; i++)
        if (d->execs[i].alive && !d->execs[i].ready) starting++;
    for (dtask *t = d->q_head; t && waiting <= starting; t = t->qnext) waiting++;
    while (waiting > starting && d->nexec < MAX_EXECUTORS && d->welcomed && !d->stopping) {
        spawn_executor(d, d->nexec++);
        starting++;
    }
}

static void try_run(daemon_s *d)
{
    while (d->q_head) {
        exec_proc *idle = NULL;
        for (int i = 0; i < d->nexec && !idle; i++)
            if (d->execs[i].alive && d->execs[i].ready && !d->execs[i].task && !d->execs[i].retiring)
                idle = &d->execs[i];
        if (!idle) {
            grow_pool(d);
            return;
        }
        dtask *t = d->q_head;
        d->q_head = t->qnext;
        if (!d->q_head) d->q_tail = NULL;
        run_on(d, idle, t);
    }
}

/* ---- actors ------------------------------------------------------------ */

static int push_task(dtask ***arr, int *n, int *cap, dtask *t)
{
    if (*n == *cap) {
        int ncap = *cap ? *cap * 2 : 8;
        void *p = realloc(*arr, (size_t)ncap * sizeof(dtask *));
        if (!p) return LOOM_ENOMEM;
        *arr = p;
        *cap = ncap;
    }
    (*arr)[(*n)++] = t;
    return LOOM_OK;
}

static void remove_task(dtask **arr, int *n, dtask *t)
{
    for (int i = 0; i < *n; i++)
        if (arr[i] == t) {
            memmove(&arr[i], &arr[i + 1], (size_t)(*n - i - 1) * sizeof(dtask *));
            (*n)--;
            return;
        }
}

static void actor_free(uv_handle_t *h)
{
    actor_proc *a = h->data;
    if (a->timer_started) return; /* the timer's close frees it */
    free(a->queue);
    free(a->sent);
    free(a);
}

static void actor_timer_closed(uv_handle_t *h)
{
    actor_proc *a = h->data;
    a->timer_started = 0;
    if (!a->alive) actor_free((uv_handle_t *)&a->proc);
}

static void actor_fail_all(daemon_s *d, actor_proc *a, const char *why)
{
    char text[600];
    if (a->create) {
        dtask *t = a->create;
        a->create = NULL;
        t->actor = NULL;
        loom__snprintf(text, sizeof(text), "the actor's process ended during its init: %s", why);
        task_fail_local(d, t, LOOM_EACTOR, text);
    }
    loom__snprintf(text, sizeof(text), "the actor died: %s", why);
    while (a->nsent) {
        dtask *t = a->sent[--a->nsent];
        t->actor = NULL;
        task_fail_local(d, t, LOOM_EACTOR, text);
    }
    while (a->nq) {
        dtask *t = a->queue[--a->nq];
        t->actor = NULL;
        if (t->missing > 0) { /* a fetch still refers to it: fail it when that ends */
            t->failed = 1;
            loom__snprintf(t->error, sizeof(t->error), "%s", text);
        }
        else task_fail_local(d, t, LOOM_EACTOR, text);
    }
}

static void on_actor_exit(uv_process_t *p, int64_t status, int sig)
{
    actor_proc *a = p->data;
    daemon_s *d = a->d;
    a->alive = a->ready = 0;
    /* a stale instance that a newer one of the same actor replaced
       (actor_start) is not the actor any more: its end must not unregister
       the newer one nor tell the head that the actor died */
    int current = loom__hmap_get(&d->actors, a->id, 16) == a;
    if (current) loom__hmap_del(&d->actors, a->id, 16);
    char why[200];
    if (a->dying) loom__snprintf(why, sizeof(why), "killed");
    else if (sig) loom__snprintf(why, sizeof(why), "its process was killed by signal %d (%s)", sig, strsignal(sig));
    else loom__snprintf(why, sizeof(why), "its process exited with status %lld", (long long)status);
    int was_initialised = a->initialised;
    actor_fail_all(d, a, why);
    if (was_initialised && current && !d->stopping) {
        loom_msg m;
        loom__msg_init(&m, LOOM_MSG_ACTOR_DIED, 0);
        loom__ref_make(a->id, 0, &m.ref);
        m.code = LOOM_EACTOR;
        m.text = why;
        loom__daemon_send_head(d, &m);
    }
    if (!d->stopping) LOG_INFO("actor %s (pid %d): %s", a->hex, a->pid, why);
    if (a->timer_started) uv_close((uv_handle_t *)&a->kill_timer, actor_timer_closed);
    uv_close((uv_handle_t *)p, actor_free);
}

/* Start the process that hosts the actor t creates; t runs there once it
 * says hello. */
static void actor_start(daemon_s *d, dtask *t)
{
    actor_proc *a = calloc(1, sizeof(*a));
    if (!a) {
        task_fail_local(d, t, LOOM_ENOMEM, "out of memory");
        return;
    }
    a->d = d;
    memcpy(a->id, t->id, 16);
    loom__hex_encode(a->id, 16, a->hex);
    /* the head runs this creation again while an earlier instance still
       lives here (its init finished while the head was down, so the head
       never heard of it): end that one, since this one replaces it in
       d->actors, and the calls it is sent must not go to, or be reported
       by, a process the daemon no longer tracks */
    actor_proc *stale = loom__hmap_get(&d->actors, a->id, 16);
    if (stale) actor_kill(d, stale);
    a->create = t;
    t->actor = a;
    char logpath[4200], gpus[256];
    loom__snprintf(logpath, sizeof(logpath), "%s/logs/actor-%s.log", d->o.node_dir, a->hex);
    map_gpu_ids(d, t->spec.gpu_ids, gpus, sizeof(gpus));
    char *extra[] = {"--actor", a->hex, "--gpus", gpus, NULL};
    a->proc.data = a;
    a->kill_timer.data = a;
    int rc = spawn_process(d, &a->proc, logpath, extra, on_actor_exit, a->token);
    if (rc) {
        char text[300];
        loom__snprintf(text, sizeof(text), "cannot start the actor's process: %s", uv_strerror(rc));
        t->actor = NULL;
        free(a);
        task_fail_local(d, t, LOOM_EACTOR, text);
        return;
    }
    a->alive = 1;
    a->pid = a->proc.pid;
    loom__hmap_put(&d->actors, a->id, 16, a);
}

static int actor_send(daemon_s *d, actor_proc *a, dtask *t)
{
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_RUN, 0);
    m.tasks = &t->spec;
    m.ntasks = 1;
    return loom__zsend_msg(d->execs_sock, a->ident, a->identlen, &m, d->out);
}

/* Send the calls at the front of the queue whose arguments are here. */
static void actor_flush(daemon_s *d, actor_proc *a)
{
    if (!a->ready || a->create || a->dying) return;
    while (a->nq && a->queue[0]->missing == 0) {
        dtask *t = a->queue[0];
        memmove(&a->queue[0], &a->queue[1], (size_t)(a->nq - 1) * sizeof(dtask *));
        a->nq--;
        if (t->failed || t->cancelled) {
            t->actor = NULL;
            task_fail_local(d, t, t->cancelled ? LOOM_ECANCELLED : LOOM_ENODE, t->cancelled ? "cancelled" : t->error);
            continue;
        }
        if (actor_send(d, a, t) || push_task(&a->sent, &a->nsent, &a->capsent, t)) {
            t->actor = NULL;
            task_fail_local(d, t, LOOM_EACTOR, "cannot reach the actor's process");
        }
    }
}

static actor_proc *actor_by_ident(daemon_s *d, const uint8_t *ident, size_t n)
{
    size_t it = 0;
    void *v;
    while (loom__hmap_next(&d->actors, &it, &v)) {
        actor_proc *a = v;
        if (a->ready && a->identlen == n && !memcmp(a->ident, ident, n)) return a;
    }
    return NULL;
}

static actor_proc *actor_by_pid(daemon_s *d, int pid)
{
    size_t it = 0;
    void *v;
    while (loom__hmap_next(&d->actors, &it, &v))
        if (((actor_proc *)v)->pid == pid) return v;
    return NULL;
}

/* The actor's process said hello: run its init. */
static void actor_ready(daemon_s *d, actor_proc *a, const uint8_t *ident, size_t n)
{
    memcpy(a->ident, ident, n);
    a->identlen = n;
    a->ready = 1;
    if (a->create && actor_send(d, a, a->create)) {
        dtask *t = a->create;
        a->create = NULL;
        t->actor = NULL;
        task_fail_local(d, t, LOOM_EACTOR, "cannot reach the actor's process");
    }
}

/* A TASK_DONE from an actor's process: its init or one of its calls. */
static void actor_done(daemon_s *d, actor_proc *a, loom_msg *m)
{
    if (a->create && !memcmp(a->create->id, m->ref.id, 16)) {
        dtask *t = a->create;
        a->create = NULL;
        t->actor = NULL;
        if (m->code == 0) a->initialised = 1;
        task_report(d, t, m);
        if (!a->initialised) actor_kill(d, a); /* nothing to host: end its process */
        else actor_flush(d, a);
        return;
    }
    for (int i = 0; i < a->nsent; i++) {
        dtask *t = a->sent[i];
        if (memcmp(t->id, m->ref.id, 16)) continue;
        remove_task(a->sent, &a->nsent, t);
        t->actor = NULL;
        task_report(d, t, m);
        return;
    }
}

static void on_kill_timer(uv_timer_t *tm)
{
    actor_proc *a = tm->data;
    if (a->alive) kill(-a->pid, SIGKILL);
}

/* The head says the actor is gone: let it run its destroy, then make sure. */
static void actor_kill(daemon_s *d, actor_proc *a)
{
    if (a->dying) return;
    a->dying = 1;
    if (a->ready) {
        loom_msg m;
        loom__msg_init(&m, LOOM_MSG_BYE, 0);
        loom__zsend_msg(d->execs_sock, a->ident, a->identlen, &m, d->out);
    }
    uv_timer_init(d->loop, &a->kill_timer);
    a->timer_started = 1;
    uv_timer_start(&a->kill_timer, on_kill_timer, a->ready && !a->nsent ? 2000 : 200, 0);
}

static void on_assign(daemon_s *d, loom_msg *m)
{
    const loom_wire_task *src = &m->tasks[0];
    if (loom__hmap_get(&d->tasks, src->task_id, 16)) return;
    dtask *t = calloc(1, sizeof(*t));
    if (!t) return;
    memcpy(t->id, src->task_id, 16);
    t->exec = -1;
    t->pinned = calloc(src->nargs + 2, sizeof(loom_ref));
    if (!t->pinned || loom__wire_task_copy(&t->arena, &t->spec, src)) {
        free(t->pinned);
        loom__arena_free(&t->arena);
        free(t);
        return;
    }
    loom__hmap_put(&d->tasks, t->id, 16, t);
    d->running++;
    if (src->actor_op == LOOM_ACTOR_CALL) {
        actor_proc *a = loom__hmap_get(&d->actors, src->actor, 16);
        if (!a || a->dying || push_task(&a->queue, &a->nq, &a->capq, t)) {
            task_fail_local(d, t, LOOM_EACTOR, "the actor is not running on this node (it died)");
            return;
        }
        t->actor = a;
    }
    t->missing = 1; /* held while the arguments are looked at */
    if (src->kind == LOOM_TASK_FUNCTION && src->actor_op != LOOM_ACTOR_CALL) loom__daemon_need_arg(d, t, &src->lib);
    for (uint32_t i = 0; i < src->nargs; i++) loom__daemon_need_arg(d, t, &src->args[i]);
    loom__daemon_arg_ready(d, t);
}

static void on_cancel_task(daemon_s *d, loom_msg *m)
{
    dtask *t = loom__hmap_get(&d->tasks, m->ref.id, 16);
    if (!t) return;
    t->cancelled = 1;
    if (t->spec.actor_op == LOOM_ACTOR_CREATE) {
        if (t->actor && t->actor->alive) kill(-t->actor->pid, SIGKILL); /* its exit reports the task */
        return;
    }
    if (t->spec.actor_op == LOOM_ACTOR_CALL) {
        /* a call already running goes on (stopping it would kill the actor);
           one still queued is dropped when it reaches the front */
        if (t->actor) actor_flush(d, t->actor);
        return;
    }
    if (t->exec >= 0) {
        exec_proc *e = &d->execs[t->exec];
        /* never given another task: its DONE may still come before its exit */
        e->retiring = 1;
        if (e->alive) kill(-e->pid, SIGKILL); /* the executor and its commands */
        return;
    }
    /* not started: if queued, unlink it; if fetching, it fails when fetched */
    dtask *prev = NULL;
    for (dtask *q = d->q_head; q; prev = q, q = q->qnext) {
        if (q != t) continue;
        if (prev) prev->qnext = q->qnext;
        else d->q_head = q->qnext;
        if (d->q_tail == q) d->q_tail = prev;
        task_fail_local(d, t, LOOM_ECANCELLED, "cancelled");
        return;
    }
}

static void on_delete_objs(daemon_s *d, loom_msg *m)
{
    for (uint32_t i = 0; i < m->nrefs; i++) loom__store_delete(d->store, m->refs[i].id);
}

/* ---- sockets ------------------------------------------------------------ */

/* An ASSIGN that does not decode would leave its task running forever at the
 * head: if the task id can still be read ([v, ASSIGN, req, [[id, ...]]]),
 * report the task failed with the decoder's reason. */
static void reject_assign(daemon_s *d, const void *buf, size_t len, const char *why)
{
    loom_unpack u;
    uint32_t n;
    uint64_t v, type, req;
    const void *id;
    size_t idlen;
    loom_unpack_init(&u, buf, len);
    if (loom_unpack_array(&u, &n) || n != 4 || loom_unpack_u64(&u, &v) || loom_unpack_u64(&u, &type) ||
        type != LOOM_MSG_ASSIGN || loom_unpack_u64(&u, &req) || loom_unpack_array(&u, &n) || n != 1 ||
        loom_unpack_array(&u, &n) || n < 1 || loom_unpack_bin(&u, &id, &idlen) || idlen != 16)
        return;
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_TASK_DONE, 0);
    loom__ref_make(id, 0, &m.ref);
    m.code = LOOM_EPROTO;
    char text[400];
    loom__snprintf(text, sizeof(text), "the node could not read the task: %s", why);
    m.text = text;
    loom__daemon_send_head(d, &m);
}

static void say_hello(daemon_s *d);

/* Welcomed again (the head restarted): tell it which of its tasks and
 * actors still run here. */
static void rejoined(daemon_s *d, uint32_t id)
{
    LOG_INFO("joined the cluster again as node %u", id);
    size_t it = 0;
    void *v;
    loom_ref *refs = calloc(d->tasks.count + d->actors.count + 1, sizeof(loom_ref));
    if (!refs) return;
    uint32_t n = 0;
    while (loom__hmap_next(&d->tasks, &it, &v)) loom__ref_make(((dtask *)v)->id, 0, &refs[n++]);
    it = 0;
    while (loom__hmap_next(&d->actors, &it, &v)) {
        actor_proc *a = v;
        if (a->alive && !a->dying && !a->create) loom__ref_make(a->id, 0, &refs[n++]);
    }
    reports_resend(d);   /* before RUNNING: what finished is not taken for lost */
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_RUNNING, 0);
    m.refs = refs;
    m.nrefs = n;
    loom__daemon_send_head(d, &m);
    free(refs);
}

static void on_head_frames(void *arg, zmq_msg_t *frames, int n)
{
    daemon_s *d = arg;
    if (n != 1) return;
    loom_msg m;
    char err[256];
    if (loom__wire_decode(zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]), &m, err, sizeof(err))) {
        LOG_WARN("bad message from the head: %s", err);
        reject_assign(d, zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]), err);
        return;
    }
    switch (m.type) {
    case LOOM_MSG_WELCOME:
        if (d->spawned) rejoined(d, m.assigned_id);
        d->node_id = m.assigned_id;
        d->welcomed = 1;
        d->waiting_since = d->waiting_logged = 0;
        if (!d->spawned) {
            char id[16];
            loom__snprintf(id, sizeof(id), "%u", m.assigned_id);
            setenv("LOOM_NODE_ID", id, 1); /* tasks can tell where they run */
            for (int i = 0; i < d->nexec; i++) spawn_executor(d, i);
            d->spawned = 1;
        }
        if (d->o.ready_fd >= 0) {
            char line[64];
            loom__snprintf(line, sizeof(line), "node %u\n", m.assigned_id);
            ssize_t w = write(d->o.ready_fd, line, strlen(line));
            (void)w;
            close(d->o.ready_fd);
            d->o.ready_fd = -1;
        }
        LOG_INFO("joined the cluster at %s as node %u", d->o.head_address, m.assigned_id);
        break;
    case LOOM_MSG_ERROR:
        if (m.code == LOOM_ESTATE && d->welcomed) {
            /* a restarted head does not know us yet: join again (same node id) */
            LOG_WARN("the head does not know this node (did it restart?): joining again");
            d->welcomed = 0;
            say_hello(d);
            break;
        }
        LOG_ERROR("the head says: %s (%s)", m.text, loom_strerror(m.code));
        if (m.code == LOOM_EAUTH) {
            d->stopping = 1;
            uv_stop(d->loop);
        }
        break;
    case LOOM_MSG_ASSIGN: on_assign(d, &m); break;
    case LOOM_MSG_CANCEL_TASK: on_cancel_task(d, &m); break;
    case LOOM_MSG_DELETE_OBJS: on_delete_objs(d, &m); break;
    case LOOM_MSG_ACTOR_KILL: {
        actor_proc *a = loom__hmap_get(&d->actors, m.ref.id, 16);
        if (a) actor_kill(d, a);
        break;
    }
    default: LOG_WARN("unexpected %s from the head", loom__msg_type_name(m.type)); break;
    }
    loom__msg_free(&m);
}

static void on_exec_frames(void *arg, zmq_msg_t *frames, int n)
{
    daemon_s *d = arg;
    if (n != 2) return;
    const uint8_t *ident = zmq_msg_data(&frames[0]);
    size_t identlen = zmq_msg_size(&frames[0]);
    loom_msg m;
    char err[256];
    if (loom__wire_decode(zmq_msg_data(&frames[1]), zmq_msg_size(&frames[1]), &m, err, sizeof(err))) {
        LOG_WARN("bad message from an executor: %s", err);
        return;
    }
    if (m.type == LOOM_MSG_HELLO && identlen <= MAX_PEER_IDENT) {
        exec_proc *e = NULL;
        for (int i = 0; i < d->nexec && !e; i++)
            if (d->execs[i].alive && d->execs[i].pid == (int)m.pid) e = &d->execs[i];
        actor_proc *a = e ? NULL : actor_by_pid(d, (int)m.pid);
        /* each process's own token (constant-time compare): an executor
           cannot pass for another, and no cluster key is involved */
        if (e && loom__secret_equal(m.secret, e->token)) {
            memcpy(e->ident, ident, identlen);
            e->identlen = identlen;
            e->ready = 1;
            try_run(d);
        } else if (a && a->alive && !a->ready && loom__secret_equal(m.secret, a->token)) {
            actor_ready(d, a, ident, identlen);
        } else {
            LOG_WARN("refused an executor hello from pid %u", m.pid);
        }
    } else if (m.type == LOOM_MSG_TASK_DONE) {
        exec_proc *e = exec_by_ident(d, ident, identlen);
        actor_proc *a = e ? NULL : actor_by_ident(d, ident, identlen);
        if (e && e->task && !memcmp(e->task->id, m.ref.id, 16)) {
            dtask *t = e->task;
            e->task = NULL;
            task_report(d, t, &m);
            if (e->retiring) { /* it ran a GPU function: replace it (on_exec_exit) */
                loom_msg bye;
                loom__msg_init(&bye, LOOM_MSG_BYE, 0);
                loom__zsend_msg(d->execs_sock, e->ident, e->identlen, &bye, d->out);
            }
            try_run(d);
        } else if (a) {
            actor_done(d, a, &m);
        }
    }
    loom__msg_free(&m);
}

/* ---- lifecycle ---------------------------------------------------------- */

static void say_hello(daemon_s *d)
{
    loom_wire_node self = {
        .id = d->node_id, /* 0 the first time; after that, the id to keep */
        .hostname = d->hostname, .data_addr = d->data_addr, .store_dir = d->store_dir,
        .spill_dir = d->spill_dir, .num_cpus = d->o.num_cpus, .memory = d->o.memory,
        .capacity = d->o.store_bytes, .num_gpus = d->num_gpus, .gpu_memory = d->gpu_memory,
        .res = d->res, .nres = d->nres, .labels = d->labels, .nlabels = d->nlabels};
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_HELLO, 1);
    m.role = LOOM_ROLE_NODE;
    m.secret = ""; /* CURVE (the node key) is the proof; the secret never travels */
    m.hostname = d->hostname;
    m.pid = (uint32_t)getpid();
    m.nodes = &self;
    m.nnodes = 1;
    loom__daemon_send_head(d, &m);
}

static void on_heartbeat(uv_timer_t *tm)
{
    daemon_s *d = tm->data;
    if (!d->welcomed) {
        /* a daemon started before its head keeps trying; say so now and then */
        int64_t now = loom__now_ms();
        if (!d->waiting_since) d->waiting_since = now;
        if (now - d->waiting_logged >= 10000) {
            LOG_INFO("waiting for the head at %s (%lld s so far; still trying)", d->o.head_address,
                     (long long)((now - d->waiting_since) / 1000));
            d->waiting_logged = now;
        }
        say_hello(d);
        return;
    }
    loom_store_stats st = {0};
    loom__store_stats_get(d->store, &st);
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_HEARTBEAT, 0);
    m.store_used = st.used;
    m.running = d->running;
    loom__daemon_send_head(d, &m);
    loom__daemon_retry_stalled_transfers(d);
}

static void on_signal(uv_signal_t *s, int signum)
{
    daemon_s *d = s->data;
    LOG_INFO("signal %d: stopping", signum);
    d->stopping = 1;
    uv_stop(d->loop);
}

/* CURVE: the DEALER to the head is a client with the node key; the data
 * port is a server that lets in the node key (other daemons, drivers) and
 * the task key (task code's clients), through the context's ZAP handler,
 * started before the port binds. */
static int curve_sockets(daemon_s *d)
{
    loom_curve_allow allow[] = {{d->keys.node.pub, LOOM_CURVE_USER_NODE},
                                {d->keys.task.pub, LOOM_CURVE_USER_TASK}};
    int rc = loom__curve_client(d->head, d->keys.server.pub, &d->keys.node);
    if (!rc) rc = loom__curve_zap_start(d->zctx, allow, 2, &d->zap);
    if (!rc) rc = loom__curve_server(d->data, &d->keys.server);
    if (rc) LOG_ERROR("cannot set up CURVE: %s", loom_strerror(rc));
    return rc;
}

/* A head that refuses this node's CURVE handshake again and again (the
 * node has another cluster's secret) will never let it in: stop, as when
 * the head answered "wrong cluster secret" before keys replaced it. */
static void on_head_monitor(void *arg, zmq_msg_t *frames, int n)
{
    daemon_s *d = arg;
    if (n < 1 || zmq_msg_size(&frames[0]) < 2) return;
    uint16_t event;
    memcpy(&event, zmq_msg_data(&frames[0]), sizeof(event));
    int hs = loom__curve_handshake_event(event);
    if (hs > 0) d->hs_failures = 0;
    if (hs >= 0 || ++d->hs_failures < LOOM_CURVE_REFUSALS || d->stopping) return;
    LOG_ERROR("the head at %s refused this node's CURVE handshake %d times: wrong cluster secret",
              d->o.head_address, d->hs_failures);
    d->stopping = 1;
    uv_stop(d->loop);
}

static void watch_head_handshakes(daemon_s *d)
{
    char ep[64];
    loom__snprintf(ep, sizeof(ep), "inproc://daemon-head-%p", (void *)d);
    if (zmq_socket_monitor(d->head, ep, LOOM_CURVE_HS_EVENTS) != 0) return;
    d->head_mon = zmq_socket(d->zctx, ZMQ_PAIR);
    if (!d->head_mon || zmq_connect(d->head_mon, ep) != 0 ||
        loom__zwatch_start(d->loop, d->head_mon, on_head_monitor, d, &d->w_head_mon) != 0)
        LOG_WARN("cannot watch the head's handshakes: a wrong secret shows only as silence");
}

/* The executors' ipc socket lives in a directory only this user may enter
 * (0700): NODE_DIR/ipc, or a fresh /tmp/loom-exec-XXXXXX when that path is
 * too long for sun_path (108 bytes). */
static int exec_socket_dir(daemon_s *d)
{
    loom__snprintf(d->exec_dir, sizeof(d->exec_dir), "%s/ipc", d->o.node_dir);
    if (strlen(d->exec_dir) + strlen("ipc:///exec.sock") > 100) {
        if (loom__make_temp_dir(NULL, "loom-exec", d->exec_dir, sizeof(d->exec_dir))) goto fail;
        d->exec_dir_temp = 1;
    } else if (loom__mkdir_p(d->exec_dir) || chmod(d->exec_dir, 0700) != 0) {
        goto fail;
    }
    return LOOM_OK;
fail:
    LOG_ERROR("cannot make the executors' socket directory %s: %s", d->exec_dir, strerror(errno));
    return LOOM_ESYS;
}

static int open_sockets(daemon_s *d)
{
    d->zctx = zmq_ctx_new();
    d->head = zmq_socket(d->zctx, ZMQ_DEALER);
    d->data = zmq_socket(d->zctx, ZMQ_ROUTER);
    d->execs_sock = zmq_socket(d->zctx, ZMQ_ROUTER);
    loom__zsock_setup(d->head, ZMQ_DEALER);
    loom__zsock_setup(d->data, ZMQ_ROUTER);
    loom__zsock_setup(d->execs_sock, ZMQ_ROUTER);
    if (curve_sockets(d)) return LOOM_EIO;
    char ep[512];
    loom__snprintf(ep, sizeof(ep), "tcp://%s", d->o.head_address);
    watch_head_handshakes(d);
    if (zmq_connect(d->head, ep) != 0) {
        LOG_ERROR("bad head address %s: %s", d->o.head_address, zmq_strerror(errno));
        return LOOM_EINVAL;
    }
    if (d->o.data_port > 0) loom__snprintf(ep, sizeof(ep), "tcp://%s:%d", d->o.bind_host, d->o.data_port);
    else loom__snprintf(ep, sizeof(ep), "tcp://%s:*", d->o.bind_host);
    if (zmq_bind(d->data, ep) != 0) {
        LOG_ERROR("cannot listen on %s: %s", ep, zmq_strerror(errno));
        return LOOM_ECONN;
    }
    char last[512];
    size_t sz = sizeof(last);
    zmq_getsockopt(d->data, ZMQ_LAST_ENDPOINT, last, &sz);
    const char *port = strrchr(last, ':');
    loom__snprintf(d->data_addr, sizeof(d->data_addr), "%s:%s", d->o.advertise_host, port ? port + 1 : "0");
    if (exec_socket_dir(d)) return LOOM_ESYS;
    loom__snprintf(d->exec_ep, sizeof(d->exec_ep), "ipc://%s/exec.sock", d->exec_dir);
    if (zmq_bind(d->execs_sock, d->exec_ep) != 0) {
        LOG_ERROR("cannot listen on %s: %s", d->exec_ep, zmq_strerror(errno));
        return LOOM_ECONN;
    }
    return LOOM_OK;
}

static void close_walk(uv_handle_t *hd, void *arg)
{
    (void)arg;
    if (!uv_is_closing(hd)) uv_close(hd, NULL);
}

static void daemon_cleanup(daemon_s *d)
{
    loom__daemon_transfers_cleanup(d);
    size_t it = 0;
    void *v;
    while (loom__hmap_next(&d->tasks, &it, &v)) {
        dtask *t = v;
        free(t->pinned);
        loom__arena_free(&t->arena);
        free(t);
    }
    loom__hmap_free(&d->tasks);
    loom__hmap_free(&d->actors);
    loom__arena_free(&d->res_arena);
}

static void stop_executors(daemon_s *d)
{
    for (int i = 0; i < d->nexec; i++)
        if (d->execs[i].alive) kill(-d->execs[i].pid, SIGKILL);
    size_t ait = 0;
    void *av;
    while (loom__hmap_next(&d->actors, &ait, &av))
        if (((actor_proc *)av)->alive) kill(-((actor_proc *)av)->pid, SIGKILL);
    /* reap them: run the loop until their exit callbacks have fired */
    for (int tries = 0; tries < 200; tries++) {
        int alive = (int)d->actors.count;
        for (int i = 0; i < d->nexec; i++) alive += d->execs[i].alive;
        if (!alive) break;
        uv_run(d->loop, UV_RUN_NOWAIT);
        usleep(10000);
    }
}

/* "a=1,b=2" into (key, value) pairs; values kept as strings. */
static int parse_pairs(const char *spec, loom_arena *arena, char ***keys, char ***vals, uint32_t *n,
                       uint32_t max, const char *what, char *err, size_t errlen)
{
    *n = 0;
    if (!spec || !*spec) return LOOM_OK;
    char *copy = loom__arena_strndup(arena, spec, strlen(spec));
    *keys = loom__arena_alloc(arena, max * sizeof(char *));
    *vals = loom__arena_alloc(arena, max * sizeof(char *));
    if (!copy || !*keys || !*vals) return LOOM_ENOMEM;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok || *n >= max) {
            loom__snprintf(err, errlen, "bad %s '%s': want NAME=VALUE,... (at most %u)", what, tok, max);
            return LOOM_EINVAL;
        }
        *eq = 0;
        (*keys)[*n] = tok;
        (*vals)[(*n)++] = eq + 1;
    }
    return LOOM_OK;
}

int loom__parse_resources(const char *spec, loom_arena *arena, loom_wire_res **out, uint32_t *n,
                          char *err, size_t errlen)
{
    char **k = NULL, **v = NULL;
    int rc = parse_pairs(spec, arena, &k, &v, n, LOOM_WIRE_MAX_RES, "resource", err, errlen);
    if (rc || !*n) return rc;
    *out = loom__arena_alloc(arena, *n * sizeof(loom_wire_res));
    if (!*out) return LOOM_ENOMEM;
    for (uint32_t i = 0; i < *n; i++) {
        char *end;
        double amount = strtod(v[i], &end);
        if (*end || !(amount > 0) || amount > 1e12 || strlen(k[i]) > 63) {
            loom__snprintf(err, errlen, "bad resource '%s=%s': want a name of 1..63 characters and an amount > 0",
                           k[i], v[i]);
            return LOOM_EINVAL;
        }
        for (uint32_t j = 0; j < i; j++)
            if (!strcmp(k[i], k[j])) {
                loom__snprintf(err, errlen, "resource '%s' given twice", k[i]);
                return LOOM_EINVAL;
            }
        (*out)[i].name = k[i];
        (*out)[i].amount = amount;
    }
    return LOOM_OK;
}

int loom__parse_labels(const char *spec, loom_arena *arena, loom_wire_label **out, uint32_t *n,
                       char *err, size_t errlen)
{
    char **k = NULL, **v = NULL;
    int rc = parse_pairs(spec, arena, &k, &v, n, LOOM_WIRE_MAX_LABELS, "label", err, errlen);
    if (rc || !*n) return rc;
    *out = loom__arena_alloc(arena, *n * sizeof(loom_wire_label));
    if (!*out) return LOOM_ENOMEM;
    for (uint32_t i = 0; i < *n; i++) {
        if (strlen(k[i]) > 63 || strlen(v[i]) > 255) {
            loom__snprintf(err, errlen, "bad label '%s': key up to 63, value up to 255 characters", k[i]);
            return LOOM_EINVAL;
        }
        (*out)[i].key = k[i];
        (*out)[i].value = v[i];
    }
    return LOOM_OK;
}

/* Memory tiers of daemons that were killed (named node-PID by the daemon,
 * which removes its own when it stops): remove those whose process is gone. */
static void remove_stale_stores(void)
{
    char dir[256];
    loom__snprintf(dir, sizeof(dir), "/dev/shm/loom-%d", (int)getuid());
    DIR *dp = opendir(dir);
    if (!dp) return;
    struct dirent *e;
    int removed = 0;
    while ((e = readdir(dp)) && removed < 1000) {
        int pid;
        char rest;
        if (sscanf(e->d_name, "node-%d%c", &pid, &rest) != 1 || pid <= 1) continue;
        if (kill(pid, 0) == 0 || errno != ESRCH) continue;
        char path[600];
        loom__snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (loom__rm_rf(path) == 0) {
            LOG_INFO("removed the memory tier of a daemon that is gone: %s", path);
            removed++;
        }
    }
    closedir(dp);
}

/* GPUs: --num-gpus wins; else what discovery finds. */
static void daemon_gpus(daemon_s *d)
{
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
    loom__snprintf(d->parent_gpus, sizeof(d->parent_gpus), "%s", cvd ? cvd : "");
    if (d->o.num_gpus >= 0) {
        d->num_gpus = (uint32_t)(d->o.num_gpus > LOOM_MAX_GPUS ? LOOM_MAX_GPUS : d->o.num_gpus);
        d->gpu_memory = d->o.gpu_memory;
        LOG_INFO("GPUs: %u (set with --num-gpus)", d->num_gpus);
        return;
    }
    loom__gpu_discover(&d->gpus);
    d->num_gpus = (uint32_t)d->gpus.count;
    d->gpu_memory = d->o.gpu_memory;
    for (int i = 0; i < d->gpus.count && !d->o.gpu_memory; i++)
        if (!d->gpu_memory || d->gpus.memory[i] < d->gpu_memory) d->gpu_memory = d->gpus.memory[i];
    if (d->gpus.count)
        LOG_INFO("GPUs: %d found through %s (%s, %llu MiB each)", d->gpus.count, d->gpus.source, d->gpus.name[0],
                 (unsigned long long)(d->gpu_memory >> 20));
    else
        LOG_INFO("GPUs: none (%s)", d->gpus.why);
}

int loom__daemon_run(const loom_daemon_opts *opts)
{
    daemon_s *d = calloc(1, sizeof(*d));
    if (!d) return LOOM_ENOMEM;
    d->o = *opts;
    if (loom__curve_derive(d->o.secret, &d->keys)) {
        LOG_ERROR("the cluster secret must be %d hex characters", LOOM_SECRET_HEX);
        free(d);
        return LOOM_EAUTH;
    }
    if (!d->o.bind_host) d->o.bind_host = "127.0.0.1";
    if (!d->o.advertise_host) d->o.advertise_host = d->o.bind_host;
    if (d->o.num_cpus <= 0) d->o.num_cpus = (double)sysconf(_SC_NPROCESSORS_ONLN);
    if (!d->o.memory) d->o.memory = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
    if (!d->o.store_bytes) d->o.store_bytes = (uint64_t)1 << 30;
    if (d->o.heartbeat_ms <= 0) d->o.heartbeat_ms = 1000;
    if (gethostname(d->hostname, sizeof(d->hostname)) != 0)
        loom__snprintf(d->hostname, sizeof(d->hostname), "localhost");
    if (d->o.store_dir) {
        loom__snprintf(d->store_dir, sizeof(d->store_dir), "%s", d->o.store_dir);
    } else {
        remove_stale_stores();
        loom__snprintf(d->store_dir, sizeof(d->store_dir), "/dev/shm/loom-%d/node-%d", (int)getuid(), (int)getpid());
    }
    loom__snprintf(d->spill_dir, sizeof(d->spill_dir), "%s/spill", d->o.node_dir);
    char logs[4200];
    loom__snprintf(logs, sizeof(logs), "%s/logs", d->o.node_dir);
    int rc = loom__mkdir_p(logs);
    if (rc) {
        LOG_ERROR("cannot make %s: %s", logs, strerror(errno));
        free(d);
        return rc;
    }
    char perr[300];
    if (loom__parse_resources(d->o.resources, &d->res_arena, &d->res, &d->nres, perr, sizeof(perr)) ||
        loom__parse_labels(d->o.labels, &d->res_arena, &d->labels, &d->nlabels, perr, sizeof(perr))) {
        LOG_ERROR("%s", perr);
        loom__arena_free(&d->res_arena);
        free(d);
        return LOOM_EINVAL;
    }
    daemon_gpus(d);
    /* what executors (and the tasks' clients) need to find the cluster */
    setenv("LOOM_ADDRESS", d->o.head_address, 1);
    setenv("LOOM_NODE_HOST", d->o.advertise_host, 1);
    setenv("LOOM_NODE_STORE", d->store_dir, 1);
    loom_store_opts so = {.mem_dir = d->store_dir, .spill_dir = d->spill_dir,
                          .capacity = d->o.store_bytes, .create = 1};
    rc = loom__store_open(&so, &d->store);
    if (rc) {
        LOG_ERROR("cannot create the object store in %s: %s", d->store_dir, loom_strerror(rc));
        loom__arena_free(&d->res_arena);
        free(d);
        return rc;
    }
    d->out = loom_pack_new();
    d->loop = uv_default_loop();
    rc = open_sockets(d);
    if (!rc) rc = loom__zwatch_start(d->loop, d->head, on_head_frames, d, &d->w_head);
    if (!rc) rc = loom__zwatch_start(d->loop, d->data, loom__daemon_on_data_frames, d, &d->w_data);
    if (!rc) rc = loom__zwatch_start(d->loop, d->execs_sock, on_exec_frames, d, &d->w_exec);
    if (!rc) {
        d->nexec = (int)(d->o.num_cpus + 0.999);
        if (d->nexec < 1) d->nexec = 1;
        if (d->nexec > MAX_EXECUTORS) d->nexec = MAX_EXECUTORS;
        say_hello(d); /* executors start once the head has given the node its id */
        uv_timer_init(d->loop, &d->hb);
        d->hb.data = d;
        uv_timer_start(&d->hb, on_heartbeat, (uint64_t)d->o.heartbeat_ms, (uint64_t)d->o.heartbeat_ms);
        uv_signal_init(d->loop, &d->sigint);
        uv_signal_init(d->loop, &d->sigterm);
        d->sigint.data = d->sigterm.data = d;
        uv_signal_start(&d->sigint, on_signal, SIGINT);
        uv_signal_start(&d->sigterm, on_signal, SIGTERM);
        LOG_INFO("node daemon: %.1f CPUs, %u GPUs, %u custom resources, %u labels, store %llu MiB in %s, "
                 "data port %s, %d executors", d->o.num_cpus, d->num_gpus, d->nres, d->nlabels,
                 (unsigned long long)(d->o.store_bytes >> 20), d->store_dir, d->data_addr, d->nexec);
        uv_run(d->loop, UV_RUN_DEFAULT);
        d->stopping = 1;
        if (d->welcomed) {
            loom_msg bye;
            loom__msg_init(&bye, LOOM_MSG_BYE, 0);
            loom__daemon_send_head(d, &bye);
        }
        stop_executors(d);
    }
    loom__zwatch_stop(&d->w_head);
    loom__zwatch_stop(&d->w_data);
    loom__zwatch_stop(&d->w_exec);
    loom__zwatch_stop(&d->w_head_mon);
    daemon_cleanup(d);
    uv_walk(d->loop, close_walk, NULL);
    uv_run(d->loop, UV_RUN_DEFAULT);
    uv_loop_close(d->loop);
    if (d->head) {
        int linger = 200;
        zmq_setsockopt(d->head, ZMQ_LINGER, &linger, sizeof(linger));
        zmq_close(d->head);
    }
    if (d->data) zmq_close(d->data);
    if (d->execs_sock) zmq_close(d->execs_sock);
    if (d->head_mon) zmq_close(d->head_mon);
    loom__curve_zap_stop(&d->zap);
    if (d->zctx) zmq_ctx_term(d->zctx);
    if (d->exec_dir_temp) loom__rm_rf(d->exec_dir);
    memset(&d->keys, 0, sizeof(d->keys));
    loom__store_close(&d->store);
    if (!d->o.store_dir) loom__rm_rf(d->store_dir); /* a store the daemon named itself */
    reports_free(d);
    loom_pack_destroy(&d->out);
    int ret = rc;
    free(d);
    return ret;
}
