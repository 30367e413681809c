/* examples/tasks.c — an example task library: word count map/reduce over text,
 * a numeric tree reduction, and a few tasks that fail on purpose (used by the
 * tests to check that failures reach `loom_get` with their message).
 *
 * Build: cc -shared -fPIC tasks.c $(pkg-config --cflags --libs loom) -o libloom_examples.so */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <loom/task.h>

/* ---- word count -------------------------------------------------------- */

typedef struct wc_entry {
    char *word;
    int64_t n;
} wc_entry;

typedef struct wc_table {
    wc_entry *e;
    size_t cap, count;
} wc_table;

static uint64_t hash_word(const char *w, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)w[i]) * 1099511628211ull;
    return h;
}

static int wc_grow(wc_table *t);

static int wc_add(wc_table *t, const char *w, size_t n, int64_t k)
{
    if ((t->count + 1) * 2 > t->cap && wc_grow(t)) return -1;
    size_t mask = t->cap - 1;
    for (size_t i = hash_word(w, n) & mask;; i = (i + 1) & mask) {
        wc_entry *e = &t->e[i];
        if (!e->word) {
            e->word = strndup(w, n);
            if (!e->word) return -1;
            e->n = k;
            t->count++;
            return 0;
        }
        if (strlen(e->word) == n && !memcmp(e->word, w, n)) {
            e->n += k;
            return 0;
        }
    }
}

static int wc_grow(wc_table *t)
{
    wc_table nt = {calloc(t->cap ? t->cap * 2 : 1024, sizeof(wc_entry)), t->cap ? t->cap * 2 : 1024, 0};
    if (!nt.e) return -1;
    for (size_t i = 0; i < t->cap; i++)
        if (t->e[i].word) {
            if (wc_add(&nt, t->e[i].word, strlen(t->e[i].word), t->e[i].n)) return -1;
            free(t->e[i].word);
        }
    free(t->e);
    *t = nt;
    return 0;
}

static void wc_free(wc_table *t)
{
    for (size_t i = 0; i < t->cap; i++) free(t->e[i].word);
    free(t->e);
}

/* The result: a msgpack map word -> count. */
static int wc_return(loom_task_ctx *ctx, wc_table *t)
{
    loom_pack *p = loom_pack_new();
    if (!p) return loom_task_fail(ctx, "out of memory");
    loom_pack_map(p, (uint32_t)t->count);
    for (size_t i = 0; i < t->cap; i++)
        if (t->e[i].word) {
            loom_pack_cstr(p, t->e[i].word);
            loom_pack_i64(p, t->e[i].n);
        }
    int rc = loom_task_return_pack(ctx, p);
    loom_pack_destroy(&p);
    return rc;
}

/* count_words(text bytes) -> {word: count}; words are runs of letters, lowercased. */
LOOM_TASK(count_words)
{
    const void *data;
    size_t len;
    if (loom_task_arg(ctx, 0, &data, &len)) return loom_task_fail(ctx, "want the text as argument 0");
    const char *s = data;
    wc_table t = {0};
    char word[256];
    size_t wn = 0;
    for (size_t i = 0; i <= len; i++) {
        int c = i < len ? (unsigned char)s[i] : ' ';
        if (isalpha(c) && c < 128) {
            if (wn < sizeof(word)) word[wn++] = (char)tolower(c);
        } else if (wn) {
            if (wc_add(&t, word, wn, 1)) {
                wc_free(&t);
                return loom_task_fail(ctx, "out of memory");
            }
            wn = 0;
        }
    }
    int rc = wc_return(ctx, &t);
    wc_free(&t);
    return rc;
}

/* merge_counts(map, map, ...) -> the summed map */
LOOM_TASK(merge_counts)
{
    wc_table t = {0};
    for (int a = 0; a < loom_task_nargs(ctx); a++) {
        const void *data;
        size_t len;
        loom_task_arg(ctx, a, &data, &len);
        loom_unpack u;
        loom_unpack_init(&u, data, len);
        uint32_t n;
        if (loom_unpack_map(&u, &n)) {
            wc_free(&t);
            return loom_task_fail(ctx, "argument %d is not a msgpack map", a);
        }
        for (uint32_t i = 0; i < n; i++) {
            const char *w;
            size_t wn;
            int64_t k;
            if (loom_unpack_str(&u, &w, &wn) || loom_unpack_i64(&u, &k) || wc_add(&t, w, wn, k)) {
                wc_free(&t);
                return loom_task_fail(ctx, "argument %d: bad entry %u", a, i);
            }
        }
    }
    int rc = wc_return(ctx, &t);
    wc_free(&t);
    return rc;
}

/* ---- numbers ------------------------------------------------------------ */

/* value(i) -> i (a leaf of the tree reduction) */
LOOM_TASK(value)
{
    int64_t v;
    if (loom_task_arg_i64(ctx, 0, &v)) return loom_task_fail(ctx, "want an integer");
    return loom_task_return_i64(ctx, v);
}

/* add(a, b, ...) -> the sum of its msgpack integer arguments */
LOOM_TASK(add)
{
    int64_t sum = 0;
    for (int i = 0; i < loom_task_nargs(ctx); i++) {
        int64_t v;
        if (loom_task_arg_i64(ctx, i, &v)) return loom_task_fail(ctx, "argument %d is not an integer", i);
        sum += v;
    }
    return loom_task_return_i64(ctx, sum);
}

/* noop() -> "ok" (for benchmarks) */
LOOM_TASK(noop)
{
    return loom_task_return(ctx, "ok", 2);
}

/* echo(bytes) -> the same bytes */
LOOM_TASK(echo)
{
    const void *d;
    size_t n;
    if (loom_task_arg(ctx, 0, &d, &n)) return loom_task_return(ctx, "", 0);
    return loom_task_return(ctx, d, n);
}

/* length(bytes) -> its length (a msgpack integer) */
LOOM_TASK(length)
{
    const void *d;
    size_t n;
    if (loom_task_arg(ctx, 0, &d, &n)) return loom_task_fail(ctx, "want one argument");
    return loom_task_return_i64(ctx, (int64_t)n);
}

/* sleep_ms(ms) -> ms, after sleeping that long */
LOOM_TASK(sleep_ms)
{
    int64_t ms;
    if (loom_task_arg_i64(ctx, 0, &ms) || ms < 0) return loom_task_fail(ctx, "want milliseconds");
    usleep((useconds_t)(ms * 1000));
    return loom_task_return_i64(ctx, ms);
}

/* hostname() -> the executor's node id and host (to see where tasks ran) */
LOOM_TASK(where)
{
    char host[256];
    gethostname(host, sizeof(host));
    return loom_task_return_str(ctx, host, strlen(host));
}

/* hello(name) -> "hello, NAME", printing a line on stdout and one on stderr
 * (they become the task's log: `loom logs`) */
LOOM_TASK(hello)
{
    const void *d;
    size_t n;
    if (loom_task_arg(ctx, 0, &d, &n)) return loom_task_fail(ctx, "want a name");
    printf("saying hello to %.*s\n", (int)n, (const char *)d);
    fprintf(stderr, "a line on stderr\n");
    char out[300];
    int len = snprintf(out, sizeof(out), "hello, %.*s", (int)(n > 200 ? 200 : n), (const char *)d);
    return loom_task_return(ctx, out, (size_t)len);
}

/* ---- failures ----------------------------------------------------------- */

LOOM_TASK(fail)
{
    return loom_task_fail(ctx, "this task fails on purpose");
}

LOOM_TASK(return_error)
{
    return 42;
}

LOOM_TASK(crash)
{
    raise(SIGSEGV);
    return 0;
}

/* ---- placement ---------------------------------------------------------- */

/* node_id() -> the id of the node running the task (msgpack integer) */
LOOM_TASK(node_id)
{
    const char *id = getenv("LOOM_NODE_ID");
    return loom_task_return_i64(ctx, id ? atoll(id) : 0);
}

/* gpu_ids() -> "node:CUDA_VISIBLE_DEVICES" as the task saw it */
LOOM_TASK(gpu_ids)
{
    const char *id = getenv("LOOM_NODE_ID"), *cvd = getenv("CUDA_VISIBLE_DEVICES");
    char out[300];
    int len = snprintf(out, sizeof(out), "%s:%s", id ? id : "?", cvd ? cvd : "(unset)");
    return loom_task_return_str(ctx, out, (size_t)len);
}

/* ---- actors ------------------------------------------------------------- */

/* Counter(start): a running total.  add(k) -> the new total; get() -> total;
 * log_add(k, ms): sleeps ms, appends k to a history and returns the history
 * length (ordering tests); history() -> the values added, in order, as a
 * msgpack array; where() -> "node:pid:CUDA_VISIBLE_DEVICES"; fail(); crash().
 * With max_concurrency > 1 its methods run on several threads at once, so
 * the state is guarded by a mutex, as any threaded actor's must be. */
typedef struct counter {
    pthread_mutex_t mu;
    int64_t total;
    int64_t *history;
    size_t n, cap;
} counter;

LOOM_ACTOR_INIT(Counter)
{
    counter *s = calloc(1, sizeof(*s));
    if (!s) return loom_task_fail(ctx, "out of memory");
    pthread_mutex_init(&s->mu, NULL);
    if (loom_task_nargs(ctx) > 0 && loom_task_arg_i64(ctx, 0, &s->total)) {
        pthread_mutex_destroy(&s->mu);
        free(s);
        return loom_task_fail(ctx, "Counter: the start value must be a msgpack integer");
    }
    if (s->total == -1) {
        pthread_mutex_destroy(&s->mu);
        free(s);
        return loom_task_fail(ctx, "Counter refuses to start at -1");
    }
    loom_actor_set_state(ctx, s);
    return 0;
}

LOOM_ACTOR_METHOD(Counter, add)
{
    counter *s = loom_actor_state(ctx);
    int64_t k = 1;
    if (loom_task_nargs(ctx) > 0 && loom_task_arg_i64(ctx, 0, &k)) return loom_task_fail(ctx, "add: want an integer");
    pthread_mutex_lock(&s->mu);
    int64_t total = s->total += k;
    pthread_mutex_unlock(&s->mu);
    return loom_task_return_i64(ctx, total);
}

/* the total under the counter's lock */
static int64_t counter_total(counter *s)
{
    pthread_mutex_lock(&s->mu);
    int64_t total = s->total;
    pthread_mutex_unlock(&s->mu);
    return total;
}

LOOM_ACTOR_METHOD(Counter, get)
{
    return loom_task_return_i64(ctx, counter_total(loom_actor_state(ctx)));
}

LOOM_ACTOR_METHOD(Counter, log_add)
{
    counter *s = loom_actor_state(ctx);
    int64_t k = 0, ms = 0;
    if (loom_task_arg_i64(ctx, 0, &k)) return loom_task_fail(ctx, "log_add: want an integer");
    if (loom_task_nargs(ctx) > 1) loom_task_arg_i64(ctx, 1, &ms);
    if (ms > 0) usleep((useconds_t)(ms * 1000));
    pthread_mutex_lock(&s->mu);
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        int64_t *h = realloc(s->history, cap * sizeof(*h));
        if (!h) {
            pthread_mutex_unlock(&s->mu);
            return loom_task_fail(ctx, "out of memory");
        }
        s->history = h;
        s->cap = cap;
    }
    s->history[s->n++] = k;
    s->total += k;
    size_t n = s->n;
    pthread_mutex_unlock(&s->mu);
    return loom_task_return_i64(ctx, (int64_t)n);
}

LOOM_ACTOR_METHOD(Counter, history)
{
    counter *s = loom_actor_state(ctx);
    loom_pack *p = loom_pack_new();
    if (!p) return loom_task_fail(ctx, "out of memory");
    pthread_mutex_lock(&s->mu);
    loom_pack_array(p, (uint32_t)s->n);
    for (size_t i = 0; i < s->n; i++) loom_pack_i64(p, s->history[i]);
    pthread_mutex_unlock(&s->mu);
    int rc = loom_task_return_pack(ctx, p);
    loom_pack_destroy(&p);
    return rc;
}

LOOM_ACTOR_METHOD(Counter, where)
{
    const char *id = getenv("LOOM_NODE_ID"), *cvd = getenv("CUDA_VISIBLE_DEVICES");
    char out[300];
    int len = snprintf(out, sizeof(out), "%s:%d:%s", id ? id : "?", (int)getpid(), cvd ? cvd : "(unset)");
    return loom_task_return_str(ctx, out, (size_t)len);
}

LOOM_ACTOR_METHOD(Counter, fail)
{
    return loom_task_fail(ctx, "Counter.fail fails on purpose");
}

LOOM_ACTOR_METHOD(Counter, crash)
{
    raise(SIGKILL);
    return 0;
}

/* crash_once(path): the first call (no file at path yet) makes the file and
 * kills the actor's process; later ones return the total (restart tests) */
LOOM_ACTOR_METHOD(Counter, crash_once)
{
    const char *p;
    size_t n;
    char path[4096];
    if (loom_task_arg_str(ctx, 0, &p, &n) || n >= sizeof(path)) return loom_task_fail(ctx, "want a path");
    memcpy(path, p, n);
    path[n] = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        f = fopen(path, "w");
        if (f) fclose(f);
        raise(SIGKILL);
    }
    fclose(f);
    return loom_task_return_i64(ctx, counter_total(loom_actor_state(ctx)));
}

LOOM_ACTOR_DESTROY(Counter)
{
    counter *s = state;
    if (!s) return;
    pthread_mutex_destroy(&s->mu);
    free(s->history);
    free(s);
}

/* call_counter(actor, k) -> the actor's add(k): a task calling an actor
 * through a handle it was given */
LOOM_TASK(call_counter)
{
    loom_actor a;
    int64_t k;
    if (loom_task_arg_actor(ctx, 0, &a) || loom_task_arg_i64(ctx, 1, &k))
        return loom_task_fail(ctx, "call_counter: want an actor handle and an integer");
    loom_client *c = loom_task_client(ctx);
    if (!c) return LOOM_ETASK;
    loom_pack *p = loom_pack_new();
    if (!p) return loom_task_fail(ctx, "out of memory");
    loom_pack_i64(p, k);
    loom_arg arg = loom_arg_value(loom_pack_data(p), loom_pack_size(p));
    loom_ref r;
    int rc = loom_actor_call(c, a, "add", &arg, 1, &r);
    loom_pack_destroy(&p);
    if (rc) return loom_task_fail(ctx, "call: %s", loom_last_error(c));
    loom_value *v;
    rc = loom_get(c, r, 60000, &v);
    if (rc) return loom_task_fail(ctx, "get: %s", loom_last_error(c));
    rc = loom_task_return(ctx, loom_value_data(v), loom_value_size(v));
    loom_value_release(&v);
    loom_release(c, r);
    return rc;
}

/* Relay(target): an actor that calls another actor.  relay(k) -> target.add(k) */
typedef struct relay {
    loom_actor target;
} relay;

LOOM_ACTOR_INIT(Relay)
{
    relay *s = calloc(1, sizeof(*s));
    if (!s) return loom_task_fail(ctx, "out of memory");
    if (loom_task_arg_actor(ctx, 0, &s->target)) {
        free(s);
        return loom_task_fail(ctx, "Relay: want an actor handle");
    }
    loom_actor_set_state(ctx, s);
    return 0;
}

LOOM_ACTOR_METHOD(Relay, relay)
{
    relay *s = loom_actor_state(ctx);
    const void *d;
    size_t n;
    if (loom_task_arg(ctx, 0, &d, &n)) return loom_task_fail(ctx, "relay: want an argument");
    loom_client *c = loom_task_client(ctx);
    if (!c) return LOOM_ETASK;
    loom_arg arg = loom_arg_value(d, n);
    loom_ref r;
    if (loom_actor_call(c, s->target, "add", &arg, 1, &r)) return loom_task_fail(ctx, "call: %s", loom_last_error(c));
    loom_value *v;
    if (loom_get(c, r, 60000, &v)) return loom_task_fail(ctx, "get: %s", loom_last_error(c));
    int rc = loom_task_return(ctx, loom_value_data(v), loom_value_size(v));
    loom_value_release(&v);
    loom_release(c, r);
    return rc;
}

LOOM_ACTOR_DESTROY(Relay)
{
    free(state);
}

/* ---- collective groups -------------------------------------------------- */

/* Member(group, world, rank [, backend]): joins collective group `group`
 * through the cluster's rendezvous.  Methods take and return msgpack arrays of
 * floats: allreduce(values) -> the elementwise sum over members;
 * broadcast(values, root) -> root's values; allgather(values) -> every
 * member's values in rank order; reduce_scatter(values) -> this rank's block
 * of the sum; backend() -> "cpu" or "nccl". */
#include <loom/collective.h>

typedef struct member {
    loom_collective *g;
} member;

static int read_f64s(loom_task_ctx *ctx, int i, double **out, uint32_t *n)
{
    const void *d;
    size_t len;
    if (loom_task_arg(ctx, i, &d, &len)) return -1;
    loom_unpack u;
    loom_unpack_init(&u, d, len);
    if (loom_unpack_array(&u, n)) return -1;
    *out = calloc(*n ? *n : 1, sizeof(double));
    if (!*out) return -1;
    for (uint32_t k = 0; k < *n; k++) {
        int64_t iv;
        if (loom_unpack_f64(&u, &(*out)[k]) == 0) continue;
        if (loom_unpack_i64(&u, &iv)) {
            free(*out);
            return -1;
        }
        (*out)[k] = (double)iv;
    }
    return 0;
}

static int return_f64s(loom_task_ctx *ctx, const double *v, size_t n)
{
    loom_pack *p = loom_pack_new();
    if (!p) return loom_task_fail(ctx, "out of memory");
    loom_pack_array(p, (uint32_t)n);
    for (size_t i = 0; i < n; i++) loom_pack_f64(p, v[i]);
    int rc = loom_task_return_pack(ctx, p);
    loom_pack_destroy(&p);
    return rc;
}

LOOM_ACTOR_INIT(Member)
{
    const char *name;
    size_t nlen;
    int64_t world, rank, backend = LOOM_COLL_AUTO;
    if (loom_task_arg_str(ctx, 0, &name, &nlen) || loom_task_arg_i64(ctx, 1, &world) ||
        loom_task_arg_i64(ctx, 2, &rank))
        return loom_task_fail(ctx, "Member: want (group name, world size, rank)");
    if (loom_task_nargs(ctx) > 3) loom_task_arg_i64(ctx, 3, &backend);
    char group[256];
    snprintf(group, sizeof(group), "%.*s", (int)(nlen < 255 ? nlen : 255), name);
    loom_client *c = loom_task_client(ctx);
    if (!c) return LOOM_ETASK;
    loom_rendezvous rv;
    loom_rendezvous_cluster(&rv, c);
    member *m = calloc(1, sizeof(*m));
    if (!m) return loom_task_fail(ctx, "out of memory");
    loom_collective_opts o = {.backend = (int)backend, .timeout_ms = 60000};
    int rc = loom_collective_init(&rv, group, (int)world, (int)rank, &o, &m->g);
    if (rc) {
        free(m);
        return loom_task_fail(ctx, "cannot join group %s: %s (%s)", group, loom_strerror(rc),
                              loom_collective_error(NULL));
    }
    loom_actor_set_state(ctx, m);
    return 0;
}

LOOM_ACTOR_METHOD(Member, allreduce)
{
    member *m = loom_actor_state(ctx);
    double *v;
    uint32_t n;
    if (read_f64s(ctx, 0, &v, &n)) return loom_task_fail(ctx, "allreduce: want an array of numbers");
    int rc = loom_allreduce(m->g, v, n, LOOM_DT_F64, LOOM_OP_SUM);
    if (rc) rc = loom_task_fail(ctx, "allreduce: %s", loom_collective_error(m->g));
    else rc = return_f64s(ctx, v, n);
    free(v);
    return rc;
}

LOOM_ACTOR_METHOD(Member, broadcast)
{
    member *m = loom_actor_state(ctx);
    double *v;
    uint32_t n;
    int64_t root;
    if (read_f64s(ctx, 0, &v, &n) || loom_task_arg_i64(ctx, 1, &root))
        return loom_task_fail(ctx, "broadcast: want an array of numbers and a root");
    int rc = loom_broadcast(m->g, v, n, LOOM_DT_F64, (int)root);
    if (rc) rc = loom_task_fail(ctx, "broadcast: %s", loom_collective_error(m->g));
    else rc = return_f64s(ctx, v, n);
    free(v);
    return rc;
}

LOOM_ACTOR_METHOD(Member, allgather)
{
    member *m = loom_actor_state(ctx);
    double *v;
    uint32_t n;
    if (read_f64s(ctx, 0, &v, &n)) return loom_task_fail(ctx, "allgather: want an array of numbers");
    size_t world = (size_t)loom_collective_world(m->g);
    double *all = calloc(world * n + 1, sizeof(double));
    int rc = all ? loom_allgather(m->g, v, n, LOOM_DT_F64, all) : LOOM_ENOMEM;
    if (rc) rc = loom_task_fail(ctx, "allgather: %s", loom_collective_error(m->g));
    else rc = return_f64s(ctx, all, world * n);
    free(all);
    free(v);
    return rc;
}

LOOM_ACTOR_METHOD(Member, reduce_scatter)
{
    member *m = loom_actor_state(ctx);
    double *v;
    uint32_t n;
    if (read_f64s(ctx, 0, &v, &n)) return loom_task_fail(ctx, "reduce_scatter: want an array of numbers");
    size_t world = (size_t)loom_collective_world(m->g), count = n / world;
    if (count * world != n) {
        free(v);
        return loom_task_fail(ctx, "reduce_scatter: %u values do not split into %zu blocks", n, world);
    }
    double *out = calloc(count + 1, sizeof(double));
    int rc = out ? loom_reduce_scatter(m->g, v, count, LOOM_DT_F64, LOOM_OP_SUM, out) : LOOM_ENOMEM;
    if (rc) rc = loom_task_fail(ctx, "reduce_scatter: %s", loom_collective_error(m->g));
    else rc = return_f64s(ctx, out, count);
    free(out);
    free(v);
    return rc;
}

LOOM_ACTOR_METHOD(Member, backend)
{
    member *m = loom_actor_state(ctx);
    const char *b = loom_collective_backend(m->g) == LOOM_COLL_NCCL ? "nccl" : "cpu";
    return loom_task_return_str(ctx, b, strlen(b));
}

LOOM_ACTOR_DESTROY(Member)
{
    member *m = state;
    if (!m) return;
    loom_collective_destroy(&m->g);
    free(m);
}

/* ---- fault tolerance ---------------------------------------------------- */

/* Append a line to the file at argument 0 and return how many lines it has
 * now (the attempts so far). */
static int mark_attempt(loom_task_ctx *ctx, int64_t *count)
{
    const char *p;
    size_t n;
    char path[4096];
    if (loom_task_arg_str(ctx, 0, &p, &n) || n >= sizeof(path)) return loom_task_fail(ctx, "want a file path");
    memcpy(path, p, n);
    path[n] = 0;
    FILE *f = fopen(path, "a+");
    if (!f) return loom_task_fail(ctx, "cannot open %s", path);
    fputs("attempt\n", f);
    fflush(f);
    rewind(f);
    int64_t lines = 0;
    for (int ch; (ch = fgetc(f)) != EOF;) lines += ch == '\n';
    fclose(f);
    *count = lines;
    return 0;
}

/* crash_marked(path): note the attempt, then die (SIGKILL) */
LOOM_TASK(crash_marked)
{
    int64_t k;
    if (mark_attempt(ctx, &k)) return LOOM_ETASK;
    raise(SIGKILL);
    return 0;
}

/* fail_until(path, n): note the attempt; fail while fewer than n attempts
 * were made, then return the number of attempts */
LOOM_TASK(fail_until)
{
    int64_t k, n;
    if (mark_attempt(ctx, &k)) return LOOM_ETASK;
    if (loom_task_arg_i64(ctx, 1, &n)) return loom_task_fail(ctx, "want the attempt that succeeds");
    if (k < n) return loom_task_fail(ctx, "attempt %lld fails on purpose", (long long)k);
    return loom_task_return_i64(ctx, k);
}

/* daemon_pid() -> the pid of the node daemon running the task */
LOOM_TASK(daemon_pid)
{
    return loom_task_return_i64(ctx, (int64_t)getppid());
}

/* slow_value(ms, v) -> v after ms milliseconds */
LOOM_TASK(slow_value)
{
    int64_t ms, v;
    if (loom_task_arg_i64(ctx, 0, &ms) || loom_task_arg_i64(ctx, 1, &v))
        return loom_task_fail(ctx, "slow_value: want (ms, value)");
    if (ms > 0) usleep((useconds_t)(ms * 1000));
    return loom_task_return_i64(ctx, v);
}

/* bytes(n, fill) -> n bytes of value fill (big results, for lineage tests) */
LOOM_TASK(bytes)
{
    int64_t n, fill;
    if (loom_task_arg_i64(ctx, 0, &n) || loom_task_arg_i64(ctx, 1, &fill) || n < 0 || n > (1 << 30))
        return loom_task_fail(ctx, "bytes: want (n, fill)");
    uint8_t *b = malloc((size_t)n + 1);
    if (!b) return loom_task_fail(ctx, "out of memory");
    memset(b, (int)fill, (size_t)n);
    int rc = loom_task_return(ctx, b, (size_t)n);
    free(b);
    return rc;
}
