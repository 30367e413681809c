/* api/graph_json.c — read the JSON form of a task graph (what `loom submit`
 * takes) into a loom_graph.
 *
 * Owns the JSON format: its keys, argument forms and error messages.  The work
 * is done in passes so that every error names the JSON path of the bad element
 * and nothing is loaded or read before the structure is known to be sound:
 *   1. read_task:      each task's own fields (kind, name, resources, ...);
 *   2. read_task_args: argument forms, refs resolved to task indices;
 *   3. topo_sort:      Kahn's algorithm (smallest index first, so a graph
 *                      already in order keeps its numbering), cycles reported;
 *   4. load_libraries: one lib_fn call per distinct resolved library path;
 *   5. build_node:     nodes added in topological order, then their arguments
 *                      ("file" contents read, JSON values encoded as msgpack).
 * Everything the parser allocates is owned by one jctx and freed by
 * jctx_free; the graph is handed to the caller only on success.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* the GNU strerror_r, which returns the message */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include "base/errf.h"
#include "loom/loom.h"
#include "loom/value.h"
#include "api/graph_internal.h"
#include "api/graph_json.h"

#define FILE_ARG_MAX ((size_t)256 << 20)
#define FUNCTION_NAME_MAX 255
#define MAX_CPUS 1024.0
#define CYCLE_NAMES_SHOWN 8

/* One entry of "tasks", as read in passes 1 and 2 (JSON values are borrowed
 * from the document, which outlives the parse). */
typedef struct jtask {
    json_t *obj;
    const char *name;
    char defname[24];            /* "task<i>" when no name is given */
    int kind;                    /* LOOM_GNODE_* */
    const char *function;
    json_t *command, *env, *outputs, *args;
    const char *cwd;
    const char *lib_path;        /* task's or the top-level "library" */
    int has_lib_ref;
    loom_ref lib_ref;            /* "library_ref", or lib_path once loaded */
    double num_cpus;
    uint64_t memory;
    double num_gpus;
    uint64_t gpu_memory;
    json_t *resources, *labels;  /* objects: name -> amount, key -> value */
    int strategy;                /* LOOM_SCHED_* */
    uint32_t node;
    int soft;
    int max_retries, retry_on_error;
    int nocheck;
    int noutputs;                /* of the node it becomes */
    int nargs;
    int *arg_src;                /* per argument: task index of a ref, else -1 */
    int *arg_out;                /* per argument: output of a ref */
} jtask;

typedef struct jctx {
    char *err;
    size_t errlen;
    const char *base_dir;
    int no_files;        /* loom__graph_from_json_remote: "file" arguments refused */
    loom_graph_json_lib_fn lib_fn;
    void *lib_arg;
    json_t *root;
    const char *default_lib;
    json_t *names;               /* task name -> index */
    json_t *libs;                /* resolved library path -> ref hex */
    jtask *tasks;
    int ntasks;
    int *order;                  /* task indices in topological order */
    int *node_of;                /* task index -> graph node */
    loom_pack *pack;             /* scratch for msgpack arguments */
    loom_graph *g;
} jctx;

/* ---- errors ------------------------------------------------------------- */

static int fail(jctx *c, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(jctx *c, int rc, const char *fmt, ...)
{
    if (c->err && c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        loom__verrf(c->err, c->errlen, rc, fmt, ap);
        va_end(ap);
        /* One line, whatever the input: jansson quotes the bad token. */
        for (char *p = c->err; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    }
    return rc;
}

static int fail_nomem(jctx *c)
{
    return fail(c, LOOM_ENOMEM, "out of memory");
}

/* A user string made safe for a one-line message: at most 64 bytes, control
 * characters shown as '?'. */
typedef struct shown { char s[72]; } shown;

static shown show(const char *s)
{
    shown out;
    size_t n = 0;
    for (; s[n] && n < 64; n++)
        out.s[n] = (unsigned char)s[n] < 0x20 || s[n] == 0x7f ? '?' : s[n];
    if (s[n]) { memcpy(out.s + n, "...", 3); n += 3; }
    out.s[n] = 0;
    return out;
}

/* ---- small readers ------------------------------------------------------ */

/* Reject keys of obj that are not in the NULL-terminated list `allowed`. */
static int check_keys(jctx *c, json_t *obj, const char *const *allowed, const char *where)
{
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val) {
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++) ok = strcmp(key, *a) == 0;
        if (!ok) return fail(c, LOOM_EINVAL, "%s: unknown key '%s'", where, show(key).s);
    }
    return LOOM_OK;
}

/* A JSON string usable as a C string: no NUL byte inside, non-empty. */
static int get_cstr(jctx *c, json_t *v, const char *where, const char **out)
{
    if (!json_is_string(v))
        return fail(c, LOOM_EINVAL, "%s: must be a string", where);
    const char *s = json_string_value(v);
    if (strlen(s) != json_string_length(v))
        return fail(c, LOOM_EINVAL, "%s: contains a NUL byte", where);
    if (!*s) return fail(c, LOOM_EINVAL, "%s: must not be empty", where);
    *out = s;
    return LOOM_OK;
}

static int valid_function_name(const char *s)
{
    size_t n = strlen(s);
    if (n > FUNCTION_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '_'))
            return 0;
    }
    return n > 0;
}

static int valid_task_name(const char *s)
{
    size_t n = strlen(s);
    if (n >= LOOM_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return 0;
    return n > 0;
}

static int valid_output_name(const char *s)
{
    return *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* "memory": an integer of bytes, or a string "<digits>[K|M|G|T]" (powers of
 * 1024, either case). */
static int parse_memory_string(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;
    if (*p < '0' || *p > '9') return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (UINT64_MAX - 9) / 10) return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    int shift = 0;
    switch (*p) {
    case 0: break;
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    case 't': case 'T': shift = 40; break;
    default: return -1;
    }
    if (*p && p[1]) return -1;
    if (shift && v > UINT64_MAX >> shift) return -1;
    *out = v << shift;
    return 0;
}

static int read_memory(jctx *c, json_t *v, const char *where, uint64_t *out)
{
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return LOOM_OK;
    }
    if (json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v) &&
        parse_memory_string(json_string_value(v), out) == 0)
        return LOOM_OK;
    return fail(c, LOOM_EINVAL,
                "%s: must be a non-negative integer or a string like \"64M\"", where);
}

static int read_ref_hex(jctx *c, json_t *v, const char *where, loom_ref *out)
{
    const char *s = NULL;
    int rc = get_cstr(c, v, where, &s);
    if (rc) return rc;
    if (strlen(s) != 2 * LOOM_ID_LEN || loom_ref_from_hex(s, out))
        return fail(c, LOOM_EINVAL, "%s: must be %d hex characters", where, 2 * LOOM_ID_LEN);
    return LOOM_OK;
}

/* ---- pass 1: each task's own fields ------------------------------------- */

static const char *const task_keys[] = {
    "name", "function", "command", "library", "library_ref", "args", "num_cpus",
    "memory", "env", "cwd", "outputs", "check", "num_gpus", "gpu_memory", "resources", "labels",
    "strategy", "node", "soft", "max_retries", "retry_on_error", NULL
};
static const char *const command_only_keys[] = { "env", "cwd", "outputs", "check", NULL };
static const char *const function_only_keys[] = { "library", "library_ref", NULL };

static int read_task_name(jctx *c, jtask *t, int i, const char *where)
{
    json_t *v = json_object_get(t->obj, "name");
    if (!v) {
        snprintf(t->defname, sizeof t->defname, "task%d", i);
        t->name = t->defname;
    } else {
        int rc = get_cstr(c, v, where, &t->name);
        if (rc) return rc;
        if (!valid_task_name(t->name))
            return fail(c, LOOM_EINVAL,
                        "%s: must be 1-%d bytes without control characters",
                        where, LOOM_NAME_MAX - 1);
    }
    if (json_object_get(c->names, t->name))
        return fail(c, LOOM_EINVAL, "%s: duplicate task name '%s'", where, show(t->name).s);
    json_t *idx = json_integer(i);
    if (!idx || json_object_set_new_nocheck(c->names, t->name, idx)) return fail_nomem(c);
    return LOOM_OK;
}

/* Keys of one kind of task found on a task of the other kind. */
static int check_kind_keys(jctx *c, jtask *t, const char *path)
{
    const char *const *wrong =
        t->kind == LOOM_GNODE_FUNCTION ? command_only_keys : function_only_keys;
    for (; *wrong; wrong++)
        if (json_object_get(t->obj, *wrong))
            return fail(c, LOOM_EINVAL, "%s.%s: only for %s tasks", path, *wrong,
                        t->kind == LOOM_GNODE_FUNCTION ? "command" : "function");
    return LOOM_OK;
}

static int read_function(jctx *c, jtask *t, const char *path)
{
    char where[64];
    snprintf(where, sizeof where, "%s.function", path);
    int rc = get_cstr(c, json_object_get(t->obj, "function"), where, &t->function);
    if (rc) return rc;
    if (!valid_function_name(t->function))
        return fail(c, LOOM_EINVAL, "%s: must be 1-%d characters of [A-Za-z0-9_]",
                    where, FUNCTION_NAME_MAX);
    json_t *lib = json_object_get(t->obj, "library");
    json_t *ref = json_object_get(t->obj, "library_ref");
    if (lib && ref)
        return fail(c, LOOM_EINVAL, "%s: give \"library\" or \"library_ref\", not both", path);
    if (ref) {
        snprintf(where, sizeof where, "%s.library_ref", path);
        t->has_lib_ref = 1;
        return read_ref_hex(c, ref, where, &t->lib_ref);
    }
    if (lib) {
        snprintf(where, sizeof where, "%s.library", path);
        return get_cstr(c, lib, where, &t->lib_path);
    }
    t->lib_path = c->default_lib;
    if (!t->lib_path)
        return fail(c, LOOM_EINVAL, "%s: function task without a library (give \"library\" "
                    "or \"library_ref\", here or at the top level)", path);
    return LOOM_OK;
}

static int read_string_array(jctx *c, json_t *arr, const char *where, int nonempty)
{
    char item[96];
    if (!json_is_array(arr) || (nonempty && json_array_size(arr) == 0))
        return fail(c, LOOM_EINVAL, "%s: must be a%s array of strings", where,
                    nonempty ? " non-empty" : "n");
    if (json_array_size(arr) > LOOM_GRAPH_MAX_ARGS)
        return fail(c, LOOM_EINVAL, "%s: more than %d entries", where, LOOM_GRAPH_MAX_ARGS);
    for (size_t j = 0; j < json_array_size(arr); j++) {
        const char *s = NULL;
        snprintf(item, sizeof item, "%s[%zu]", where, j);
        int rc = get_cstr(c, json_array_get(arr, j), item, &s);
        if (rc) return rc;
    }
    return LOOM_OK;
}

static int read_env(jctx *c, jtask *t, const char *path)
{
    char where[96];
    snprintf(where, sizeof where, "%s.env", path);
    if (!json_is_object(t->env)) return fail(c, LOOM_EINVAL, "%s: must be an object", where);
    if (json_object_size(t->env) > LOOM_GRAPH_MAX_ARGS)
        return fail(c, LOOM_EINVAL, "%s: more than %d entries", where, LOOM_GRAPH_MAX_ARGS);
    const char *key;
    json_t *val;
    json_object_foreach(t->env, key, val) {
        if (!*key || strchr(key, '='))
            return fail(c, LOOM_EINVAL, "%s: bad variable name '%s'", where, show(key).s);
        if (!json_is_string(val) || strlen(json_string_value(val)) != json_string_length(val))
            return fail(c, LOOM_EINVAL, "%s.%s: must be a string without NUL bytes", where,
                        show(key).s);
    }
    return LOOM_OK;
}

static int read_command(jctx *c, jtask *t, const char *path)
{
    char where[96];
    int rc;
    snprintf(where, sizeof where, "%s.command", path);
    if ((rc = read_string_array(c, t->command, where, 1))) return rc;
    if ((t->env = json_object_get(t->obj, "env")) && (rc = read_env(c, t, path))) return rc;
    json_t *cwd = json_object_get(t->obj, "cwd");
    snprintf(where, sizeof where, "%s.cwd", path);
    if (cwd && (rc = get_cstr(c, cwd, where, &t->cwd))) return rc;
    if ((t->outputs = json_object_get(t->obj, "outputs"))) {
        snprintf(where, sizeof where, "%s.outputs", path);
        if ((rc = read_string_array(c, t->outputs, where, 0))) return rc;
        for (size_t j = 0; j < json_array_size(t->outputs); j++)
            if (!valid_output_name(json_string_value(json_array_get(t->outputs, j))))
                return fail(c, LOOM_EINVAL, "%s[%zu]: must be a plain file name "
                            "(no '/', not \".\" or \"..\")", where, j);
        t->noutputs = (int)json_array_size(t->outputs);
    }
    json_t *check = json_object_get(t->obj, "check");
    if (check) {
        if (!json_is_boolean(check))
            return fail(c, LOOM_EINVAL, "%s.check: must be true or false", path);
        t->nocheck = !json_is_true(check);
    }
    return LOOM_OK;
}

/* GPUs, custom resources, labels and the scheduling strategy. */
static int read_placement(jctx *c, jtask *t, const char *path)
{
    char where[64];
    json_t *g = json_object_get(t->obj, "num_gpus");
    if (g) {
        double v = json_is_number(g) ? json_number_value(g) : -1;
        if (v < 0 || v > 16 || (v > 1 && v != (double)(int)v))
            return fail(c, LOOM_EINVAL, "%s.num_gpus: must be a fraction below 1 or a whole number up to 16", path);
        t->num_gpus = v;
    }
    json_t *gm = json_object_get(t->obj, "gpu_memory");
    snprintf(where, sizeof where, "%s.gpu_memory", path);
    if (gm) {
        int rc = read_memory(c, gm, where, &t->gpu_memory);
        if (rc) return rc;
        if (t->num_gpus <= 0) return fail(c, LOOM_EINVAL, "%s.gpu_memory: needs num_gpus", path);
    }
    const char *k;
    json_t *v;
    t->resources = json_object_get(t->obj, "resources");
    if (t->resources) {
        if (!json_is_object(t->resources) || json_object_size(t->resources) > 16)
            return fail(c, LOOM_EINVAL, "%s.resources: must be an object of at most 16 \"name\": amount", path);
        json_object_foreach(t->resources, k, v) {
            if (!*k || strlen(k) > 63 || !json_is_number(v) || json_number_value(v) <= 0)
                return fail(c, LOOM_EINVAL, "%s.resources.%s: want a name of 1..63 characters and an amount > 0",
                            path, k);
        }
    }
    t->labels = json_object_get(t->obj, "labels");
    if (t->labels) {
        if (!json_is_object(t->labels) || json_object_size(t->labels) > 32)
            return fail(c, LOOM_EINVAL, "%s.labels: must be an object of at most 32 \"key\": \"value\"", path);
        json_object_foreach(t->labels, k, v) {
            if (!*k || strlen(k) > 63 || !json_is_string(v) || strlen(json_string_value(v)) > 255)
                return fail(c, LOOM_EINVAL, "%s.labels.%s: want a string value", path, k);
        }
    }
    json_t *st = json_object_get(t->obj, "strategy");
    if (st) {
        const char *name = json_is_string(st) ? json_string_value(st) : "";
        if (!strcmp(name, "default")) t->strategy = LOOM_SCHED_DEFAULT;
        else if (!strcmp(name, "spread")) t->strategy = LOOM_SCHED_SPREAD;
        else if (!strcmp(name, "node")) t->strategy = LOOM_SCHED_NODE;
        else return fail(c, LOOM_EINVAL, "%s.strategy: must be \"default\", \"spread\" or \"node\"", path);
    }
    json_t *nd = json_object_get(t->obj, "node");
    if (nd) {
        if (!json_is_integer(nd) || json_integer_value(nd) < 1 || json_integer_value(nd) > UINT32_MAX)
            return fail(c, LOOM_EINVAL, "%s.node: must be a node id (loom status)", path);
        t->node = (uint32_t)json_integer_value(nd);
        if (!st) t->strategy = LOOM_SCHED_NODE;
    }
    json_t *soft = json_object_get(t->obj, "soft");
    if (soft) {
        if (!json_is_boolean(soft)) return fail(c, LOOM_EINVAL, "%s.soft: must be true or false", path);
        t->soft = json_is_true(soft);
    }
    json_t *mr = json_object_get(t->obj, "max_retries");
    if (mr) {
        if (!json_is_integer(mr) || json_integer_value(mr) < 0 || json_integer_value(mr) > 1000)
            return fail(c, LOOM_EINVAL, "%s.max_retries: must be 0 (never) .. 1000", path);
        t->max_retries = json_integer_value(mr) == 0 ? LOOM_NO_RETRY : (int)json_integer_value(mr);
    }
    json_t *roe = json_object_get(t->obj, "retry_on_error");
    if (roe) {
        if (!json_is_boolean(roe)) return fail(c, LOOM_EINVAL, "%s.retry_on_error: must be true or false", path);
        t->retry_on_error = json_is_true(roe);
    }
    if (t->strategy == LOOM_SCHED_NODE && !nd)
        return fail(c, LOOM_EINVAL, "%s.strategy: \"node\" needs \"node\": ID", path);
    return LOOM_OK;
}

static int read_resources(jctx *c, jtask *t, const char *path)
{
    char where[64];
    json_t *cpus = json_object_get(t->obj, "num_cpus");
    t->num_cpus = 1;
    if (cpus) {
        double v = json_is_number(cpus) ? json_number_value(cpus) : -1;
        if (v < 0 || v > MAX_CPUS)
            return fail(c, LOOM_EINVAL, "%s.num_cpus: must be a number from 0 to %g",
                        path, MAX_CPUS);
        t->num_cpus = v;
    }
    json_t *mem = json_object_get(t->obj, "memory");
    snprintf(where, sizeof where, "%s.memory", path);
    int rc = mem ? read_memory(c, mem, where, &t->memory) : LOOM_OK;
    if (rc) return rc;
    return read_placement(c, t, path);
}

static int read_task(jctx *c, int i)
{
    jtask *t = &c->tasks[i];
    char path[32], where[48];
    int rc;
    snprintf(path, sizeof path, "tasks[%d]", i);
    t->obj = json_array_get(json_object_get(c->root, "tasks"), (size_t)i);
    if (!json_is_object(t->obj)) return fail(c, LOOM_EINVAL, "%s: must be an object", path);
    if ((rc = check_keys(c, t->obj, task_keys, path))) return rc;
    snprintf(where, sizeof where, "%s.name", path);
    if ((rc = read_task_name(c, t, i, where))) return rc;
    json_t *fn = json_object_get(t->obj, "function");
    t->command = json_object_get(t->obj, "command");
    if (!fn == !t->command)
        return fail(c, LOOM_EINVAL, "%s: give exactly one of \"function\" or \"command\"", path);
    t->kind = fn ? LOOM_GNODE_FUNCTION : LOOM_GNODE_COMMAND;
    if ((rc = check_kind_keys(c, t, path))) return rc;
    rc = fn ? read_function(c, t, path) : read_command(c, t, path);
    if (rc) return rc;
    return read_resources(c, t, path);
}

/* ---- pass 2: argument forms and refs ------------------------------------ */

enum { ARG_BYTES, ARG_FILE, ARG_REF, ARG_REF_HEX, ARG_MSGPACK, ARG_JSON };

static const char *const file_keys[] = { "file", NULL };
static const char *const ref_keys[] = { "ref", "output", NULL };
static const char *const ref_hex_keys[] = { "ref_hex", NULL };
static const char *const msgpack_keys[] = { "msgpack", NULL };

/* Which form an argument has.  Objects with one of the marker keys are the
 * special forms; any other JSON value (objects included) is encoded. */
static int arg_form(json_t *a)
{
    if (json_is_string(a)) return ARG_BYTES;
    if (!json_is_object(a)) return ARG_JSON;
    if (json_object_get(a, "file")) return ARG_FILE;
    if (json_object_get(a, "ref")) return ARG_REF;
    if (json_object_get(a, "ref_hex")) return ARG_REF_HEX;
    if (json_object_get(a, "msgpack")) return ARG_MSGPACK;
    return ARG_JSON;
}

static int read_ref_arg(jctx *c, jtask *t, int j, json_t *a, const char *where)
{
    const char *name = NULL;
    int rc = get_cstr(c, json_object_get(a, "ref"), where, &name);
    if (rc) return rc;
    json_t *idx = json_object_get(c->names, name);
    if (!idx)
        return fail(c, LOOM_EINVAL, "%s: unknown task '%s' in ref", where, show(name).s);
    int src = (int)json_integer_value(idx);
    json_t *out = json_object_get(a, "output");
    json_int_t k = 0;
    if (out) {
        if (!json_is_integer(out))
            return fail(c, LOOM_EINVAL, "%s.output: must be an integer", where);
        k = json_integer_value(out);
    }
    int nout = 1 + c->tasks[src].noutputs;
    if (k < 0 || k >= nout)
        return fail(c, LOOM_EINVAL, "%s: task '%s' has no output %lld (it has %d)", where,
                    show(name).s, (long long)k, nout);
    t->arg_src[j] = src;
    t->arg_out[j] = (int)k;
    return LOOM_OK;
}

static int read_arg(jctx *c, jtask *t, int i, int j)
{
    char where[48];
    json_t *a = json_array_get(t->args, (size_t)j);
    const char *s = NULL;
    loom_ref ref;
    snprintf(where, sizeof where, "tasks[%d].args[%d]", i, j);
    t->arg_src[j] = -1;
    switch (arg_form(a)) {
    case ARG_FILE:
        if (check_keys(c, a, file_keys, where)) return LOOM_EINVAL;
        return get_cstr(c, json_object_get(a, "file"), where, &s);
    case ARG_REF:
        if (check_keys(c, a, ref_keys, where)) return LOOM_EINVAL;
        return read_ref_arg(c, t, j, a, where);
    case ARG_REF_HEX:
        if (check_keys(c, a, ref_hex_keys, where)) return LOOM_EINVAL;
        return read_ref_hex(c, json_object_get(a, "ref_hex"), where, &ref);
    case ARG_MSGPACK:
        return check_keys(c, a, msgpack_keys, where);
    default:
        return LOOM_OK;
    }
}

static int read_task_args(jctx *c, int i)
{
    jtask *t = &c->tasks[i];
    t->args = json_object_get(t->obj, "args");
    if (!t->args) return LOOM_OK;
    if (!json_is_array(t->args))
        return fail(c, LOOM_EINVAL, "tasks[%d].args: must be an array", i);
    if (json_array_size(t->args) > LOOM_GRAPH_MAX_ARGS)
        return fail(c, LOOM_EINVAL, "tasks[%d].args: more than %d arguments", i,
                    LOOM_GRAPH_MAX_ARGS);
    t->nargs = (int)json_array_size(t->args);
    if (!t->nargs) return LOOM_OK;
    t->arg_src = malloc((size_t)t->nargs * sizeof *t->arg_src);
    t->arg_out = malloc((size_t)t->nargs * sizeof *t->arg_out);
    if (!t->arg_src || !t->arg_out) return fail_nomem(c);
    for (int j = 0; j < t->nargs; j++) {
        int rc = read_arg(c, t, i, j);
        if (rc) return rc;
    }
    return LOOM_OK;
}

/* ---- pass 3: topological order ------------------------------------------ */

/* A binary min-heap of task indices. */
typedef struct heap { int *v; int n; } heap;

static void heap_push(heap *h, int x)
{
    int i = h->n++;
    while (i > 0 && h->v[(i - 1) / 2] > x) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = x;
}

static int heap_pop(heap *h)
{
    int top = h->v[0], last = h->v[--h->n], i = 0;
    for (;;) {
        int kid = 2 * i + 1;
        if (kid >= h->n) break;
        if (kid + 1 < h->n && h->v[kid + 1] < h->v[kid]) kid++;
        if (last <= h->v[kid]) break;
        h->v[i] = h->v[kid];
        i = kid;
    }
    if (h->n) h->v[i] = last;
    return top;
}

/* An unsorted dependency of task i (one exists for every task left unsorted). */
static int pending_pred(const jctx *c, const char *sorted, int i)
{
    const jtask *t = &c->tasks[i];
    for (int j = 0; j < t->nargs; j++)
        if (t->arg_src[j] >= 0 && !sorted[t->arg_src[j]]) return t->arg_src[j];
    return i;   /* not reached */
}

/* Walking dependencies back from an unsorted task ends on a cycle within
 * ntasks steps; name the tasks on it. */
static int report_cycle(jctx *c, const char *sorted)
{
    int cur = 0;
    while (sorted[cur]) cur++;
    for (int step = 0; step < c->ntasks; step++) cur = pending_pred(c, sorted, cur);
    char msg[(CYCLE_NAMES_SHOWN + 1) * 80];   /* each name shown takes < 80 */
    size_t len = 0;
    int p = cur, shown_names = 0;
    do {
        len += (size_t)snprintf(msg + len, sizeof msg - len, "%s'%s'",
                                shown_names ? " needs " : "", show(c->tasks[p].name).s);
        p = pending_pred(c, sorted, p);
    } while (p != cur && ++shown_names < CYCLE_NAMES_SHOWN);
    snprintf(msg + len, sizeof msg - len, p == cur ? " needs '%s'" : " needs ...",
             show(c->tasks[cur].name).s);
    return fail(c, LOOM_EINVAL, "tasks[%d]: dependency cycle: %s", cur, msg);
}

/* Successor lists in compressed form: task i's dependents are
 * succ[first[i] .. first[i+1]). */
static int build_successors(jctx *c, int **first_out, int **succ_out, int *indeg)
{
    int n = c->ntasks;
    size_t nedges = 0;
    int *first = calloc((size_t)n + 1, sizeof *first);
    if (!first) return LOOM_ENOMEM;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < c->tasks[i].nargs; j++)
            if (c->tasks[i].arg_src[j] >= 0) {
                first[c->tasks[i].arg_src[j] + 1]++;
                indeg[i]++;
                nedges++;
            }
    for (int i = 0; i < n; i++) first[i + 1] += first[i];
    int *succ = malloc((nedges ? nedges : 1) * sizeof *succ);
    int *fill = malloc(((size_t)n ? (size_t)n : 1) * sizeof *fill);
    if (!succ || !fill) {
        free(first); free(succ); free(fill);
        return LOOM_ENOMEM;
    }
    memcpy(fill, first, (size_t)n * sizeof *fill);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < c->tasks[i].nargs; j++)
            if (c->tasks[i].arg_src[j] >= 0) succ[fill[c->tasks[i].arg_src[j]]++] = i;
    free(fill);
    *first_out = first;
    *succ_out = succ;
    return LOOM_OK;
}

static int topo_sort(jctx *c)
{
    int n = c->ntasks, done = 0, rc = LOOM_OK;
    size_t sz = n ? (size_t)n : 1;
    int *indeg = calloc(sz, sizeof *indeg), *first = NULL, *succ = NULL;
    char *sorted = calloc(sz, 1);
    heap h = { malloc(sz * sizeof(int)), 0 };
    if (!indeg || !sorted || !h.v || build_successors(c, &first, &succ, indeg)) {
        rc = fail_nomem(c);
        goto out;
    }
    for (int i = 0; i < n; i++)
        if (!indeg[i]) heap_push(&h, i);
    while (h.n) {
        int i = heap_pop(&h);
        sorted[i] = 1;
        c->order[done++] = i;
        for (int e = first[i]; e < first[i + 1]; e++)
            if (--indeg[succ[e]] == 0) heap_push(&h, succ[e]);
    }
    if (done < n) rc = report_cycle(c, sorted);
out:
    free(indeg); free(first); free(succ); free(sorted); free(h.v);
    return rc;
}

/* ---- pass 4: libraries -------------------------------------------------- */

/* base_dir/path for a relative path (malloc'd). */
static char *resolve_path(const char *base_dir, const char *path)
{
    if (!base_dir || !*base_dir || path[0] == '/') return strdup(path);
    char *out;
    return asprintf(&out, "%s/%s", base_dir, path) < 0 ? NULL : out;
}

static int load_library(jctx *c, jtask *t, int i)
{
    char hex[2 * LOOM_ID_LEN + 1];
    char *path = resolve_path(c->base_dir, t->lib_path);
    if (!path) return fail_nomem(c);
    json_t *cached = json_object_get(c->libs, path);
    int rc = LOOM_OK;
    if (cached) {
        rc = loom_ref_from_hex(json_string_value(cached), &t->lib_ref);
    } else if (!c->lib_fn) {
        rc = fail(c, LOOM_EINVAL, "tasks[%d]: library '%s' cannot be loaded here; give "
                  "\"library_ref\"", i, show(path).s);
    } else if ((rc = c->lib_fn(c->lib_arg, path, &t->lib_ref))) {
        rc = fail(c, rc < 0 ? rc : LOOM_EINVAL, "tasks[%d]: cannot load library '%s': %s",
                  i, show(path).s, loom_strerror(rc));
    } else {
        loom_ref_to_hex(&t->lib_ref, hex);
        if (json_object_set_new_nocheck(c->libs, path, json_string(hex))) rc = fail_nomem(c);
    }
    free(path);
    return rc;
}

static int load_libraries(jctx *c)
{
    for (int i = 0; i < c->ntasks; i++) {
        jtask *t = &c->tasks[i];
        if (t->kind != LOOM_GNODE_FUNCTION || t->has_lib_ref) continue;
        int rc = load_library(c, t, i);
        if (rc) return rc;
    }
    return LOOM_OK;
}

/* ---- pass 5: nodes and arguments ---------------------------------------- */

enum { READ_NOT_REGULAR = -1, READ_TOO_BIG = -2 };

/* Read fd to its end, at most FILE_ARG_MAX bytes.  Returns 0 or an errno /
 * READ_TOO_BIG. */
static int read_all(int fd, size_t size_hint, uint8_t **data, size_t *len)
{
    size_t cap = size_hint + 1, n = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) return ENOMEM;
    for (;;) {
        if (n == cap) {
            if (cap > FILE_ARG_MAX) { free(buf); return READ_TOO_BIG; }
            size_t ncap = cap > FILE_ARG_MAX / 2 ? FILE_ARG_MAX + 1 : cap * 2;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) { free(buf); return ENOMEM; }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r == 0) break;
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { int e = errno; free(buf); return e; }
        n += (size_t)r;
    }
    *data = buf;
    *len = n;
    return 0;
}

/* Read a whole regular file.  O_NONBLOCK keeps a FIFO from blocking the open;
 * anything but a regular file (a device, a FIFO, a directory) is refused.
 * Returns 0, an errno, or READ_NOT_REGULAR / READ_TOO_BIG. */
static int read_file(const char *path, uint8_t **data, size_t *len)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return errno;
    int err = fstat(fd, &st) < 0 ? errno
            : !S_ISREG(st.st_mode) ? READ_NOT_REGULAR
            : (uint64_t)st.st_size > FILE_ARG_MAX ? READ_TOO_BIG : 0;
    if (!err) err = read_all(fd, (size_t)st.st_size, data, len);
    close(fd);
    return err;
}

static int add_file_arg(jctx *c, int node, json_t *a, const char *where)
{
    char ebuf[128];
    uint8_t *data = NULL;
    size_t len = 0;
    if (c->no_files)
        return fail(c, LOOM_EINVAL, "%s: \"file\" arguments are not accepted here: send the bytes as a value",
                    where);
    char *path = resolve_path(c->base_dir, json_string_value(json_object_get(a, "file")));
    if (!path) return fail_nomem(c);
    int rc = LOOM_OK, err = read_file(path, &data, &len);
    if (err) {
        const char *why = err == READ_NOT_REGULAR ? "not a regular file"
                        : err == READ_TOO_BIG ? "larger than 256 MiB"
                        : strerror_r(err, ebuf, sizeof ebuf);
        rc = err == ENOMEM ? fail_nomem(c)
                           : fail(c, LOOM_EINVAL, "%s: cannot read '%s': %s", where,
                                  show(path).s, why);
    } else {
        rc = loom_graph_arg_value(c->g, node, data, len);
        free(data);
        if (rc) rc = fail(c, rc, "%s: %s", where, loom_strerror(rc));
    }
    free(path);
    return rc;
}

/* A JSON value as msgpack: integers as ints, reals as float64, objects as maps
 * with string keys.  Depth is bounded by jansson's parser (2048). */
static int pack_json(loom_pack *p, json_t *v)
{
    int rc;
    switch (json_typeof(v)) {
    case JSON_NULL: return loom_pack_nil(p);
    case JSON_TRUE: return loom_pack_bool(p, 1);
    case JSON_FALSE: return loom_pack_bool(p, 0);
    case JSON_INTEGER: return loom_pack_i64(p, json_integer_value(v));
    case JSON_REAL: return loom_pack_f64(p, json_real_value(v));
    case JSON_STRING: return loom_pack_str(p, json_string_value(v), json_string_length(v));
    case JSON_ARRAY:
        if ((rc = loom_pack_array(p, (uint32_t)json_array_size(v)))) return rc;
        for (size_t i = 0; i < json_array_size(v); i++)
            if ((rc = pack_json(p, json_array_get(v, i)))) return rc;
        return LOOM_OK;
    case JSON_OBJECT:
        if ((rc = loom_pack_map(p, (uint32_t)json_object_size(v)))) return rc;
        for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
            if ((rc = loom_pack_str(p, json_object_iter_key(it), json_object_iter_key_len(it))))
                return rc;
            if ((rc = pack_json(p, json_object_iter_value(it)))) return rc;
        }
        return LOOM_OK;
    }
    return LOOM_EINVAL;
}

static int add_packed_arg(jctx *c, int node, json_t *v, const char *where)
{
    loom_pack_reset(c->pack);
    int rc = pack_json(c->pack, v);
    if (!rc) rc = loom_graph_arg_value(c->g, node, loom_pack_data(c->pack),
                                       loom_pack_size(c->pack));
    return rc ? fail(c, rc, "%s: %s", where, loom_strerror(rc)) : LOOM_OK;
}

static int add_arg(jctx *c, int i, int node, int j)
{
    jtask *t = &c->tasks[i];
    json_t *a = json_array_get(t->args, (size_t)j);
    char where[48];
    loom_ref ref;
    int rc;
    snprintf(where, sizeof where, "tasks[%d].args[%d]", i, j);
    switch (arg_form(a)) {
    case ARG_BYTES:
        rc = loom_graph_arg_value(c->g, node, json_string_value(a), json_string_length(a));
        break;
    case ARG_FILE:
        return add_file_arg(c, node, a, where);
    case ARG_REF:
        rc = loom_graph_arg_node(c->g, node, c->node_of[t->arg_src[j]], t->arg_out[j]);
        break;
    case ARG_REF_HEX:
        loom_ref_from_hex(json_string_value(json_object_get(a, "ref_hex")), &ref);
        rc = loom_graph_arg_ref(c->g, node, ref);
        break;
    case ARG_MSGPACK:
        return add_packed_arg(c, node, json_object_get(a, "msgpack"), where);
    default:
        return add_packed_arg(c, node, a, where);
    }
    return rc ? fail(c, rc, "%s: %s", where, loom_strerror(rc)) : LOOM_OK;
}

/* Borrowed C strings of a JSON array of strings checked in pass 1. */
static const char **string_vector(json_t *arr)
{
    size_t n = json_array_size(arr);
    const char **v = malloc((n ? n : 1) * sizeof *v);
    if (!v) return NULL;
    for (size_t j = 0; j < n; j++) v[j] = json_string_value(json_array_get(arr, j));
    return v;
}

/* "K=V" strings of the env object (owned by *out; free_env frees them). */
static char **env_vector(json_t *env, int *n)
{
    *n = (int)json_object_size(env);
    char **v = calloc(*n ? (size_t)*n : 1, sizeof *v);
    int k = 0;
    const char *key;
    json_t *val;
    if (!v) return NULL;
    json_object_foreach(env, key, val) {
        if (asprintf(&v[k], "%s=%s", key, json_string_value(val)) < 0) {
            v[k] = NULL;
            for (int m = 0; m < k; m++) free(v[m]);
            free(v);
            return NULL;
        }
        k++;
    }
    return v;
}

static void free_env(char **v, int n)
{
    if (!v) return;
    for (int k = 0; k < n; k++) free(v[k]);
    free(v);
}

static int add_command_node(jctx *c, jtask *t, const loom_task_opts *opts)
{
    loom_command cmd;
    memset(&cmd, 0, sizeof cmd);
    const char **argv = string_vector(t->command);
    const char **outputs = t->outputs ? string_vector(t->outputs) : NULL;
    char **env = t->env ? env_vector(t->env, &cmd.nenv) : NULL;
    int rc = LOOM_ENOMEM;
    if (argv && (outputs || !t->outputs) && (env || !t->env)) {
        cmd.argv = argv;
        cmd.argc = (int)json_array_size(t->command);
        cmd.env = (const char *const *)env;
        cmd.cwd = t->cwd;
        cmd.outputs = outputs;
        cmd.noutputs = t->noutputs;
        rc = loom_graph_command(c->g, &cmd, opts);
    }
    free(argv);
    free(outputs);
    free_env(env, cmd.nenv);
    return rc;
}

static int build_node(jctx *c, int i)
{
    jtask *t = &c->tasks[i];
    loom_task_opts opts;
    memset(&opts, 0, sizeof opts);
    opts.name = t->name;
    opts.num_cpus = t->num_cpus;
    opts.memory = t->memory;
    opts.nocheck = t->nocheck;
    opts.num_gpus = t->num_gpus;
    opts.gpu_memory = t->gpu_memory;
    opts.strategy = t->strategy;
    opts.node = t->node;
    opts.soft = t->soft;
    opts.max_retries = t->max_retries;
    opts.retry_on_error = t->retry_on_error;
    loom_resource res[16];
    loom_label labels[32];
    const char *k;
    json_t *v;
    json_object_foreach(t->resources, k, v) {
        if (opts.nresources >= 16) break;
        res[opts.nresources].name = k;
        res[opts.nresources++].amount = json_number_value(v);
    }
    json_object_foreach(t->labels, k, v) {
        if (opts.nlabels >= 32) break;
        labels[opts.nlabels].key = k;
        labels[opts.nlabels++].value = json_string_value(v);
    }
    opts.resources = res;
    opts.labels = labels;
    int node = t->kind == LOOM_GNODE_FUNCTION
                   ? loom_graph_task(c->g, t->lib_ref, t->function, &opts)
                   : add_command_node(c, t, &opts);
    if (node < 0) return fail(c, node, "tasks[%d]: %s", i, loom_strerror(node));
    c->node_of[i] = node;
    for (int j = 0; j < t->nargs; j++) {
        int rc = add_arg(c, i, node, j);
        if (rc) return rc;
    }
    return LOOM_OK;
}

/* ---- the document ------------------------------------------------------- */

static const char *const top_keys[] = { "name", "library", "tasks", NULL };

static int read_top(jctx *c)
{
    const char *s = NULL;
    int rc;
    if (!json_is_object(c->root)) return fail(c, LOOM_EINVAL, "top level: must be an object");
    if ((rc = check_keys(c, c->root, top_keys, "top level"))) return rc;
    json_t *name = json_object_get(c->root, "name");
    if (name && (rc = get_cstr(c, name, "name", &s))) return rc;
    json_t *lib = json_object_get(c->root, "library");
    if (lib && (rc = get_cstr(c, lib, "library", &c->default_lib))) return rc;
    json_t *tasks = json_object_get(c->root, "tasks");
    if (!json_is_array(tasks)) return fail(c, LOOM_EINVAL, "tasks: must be an array");
    if (json_array_size(tasks) > LOOM_GRAPH_MAX_NODES)
        return fail(c, LOOM_EINVAL, "tasks: more than %d tasks", LOOM_GRAPH_MAX_NODES);
    c->ntasks = (int)json_array_size(tasks);
    return LOOM_OK;
}

static int alloc_tables(jctx *c)
{
    size_t n = c->ntasks ? (size_t)c->ntasks : 1;
    c->tasks = calloc(n, sizeof *c->tasks);
    c->order = malloc(n * sizeof *c->order);
    c->node_of = malloc(n * sizeof *c->node_of);
    c->names = json_object();
    c->libs = json_object();
    c->pack = loom_pack_new();
    if (!c->tasks || !c->order || !c->node_of || !c->names || !c->libs || !c->pack)
        return fail_nomem(c);
    return loom_graph_new(&c->g) ? fail_nomem(c) : LOOM_OK;
}

static int parse_document(jctx *c, const char *text, size_t len)
{
    json_error_t jerr;
    c->root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!c->root) {
        if (json_error_code(&jerr) == json_error_out_of_memory) return fail_nomem(c);
        return fail(c, LOOM_EINVAL, "line %d column %d: %s", jerr.line, jerr.column, jerr.text);
    }
    int rc = read_top(c);
    if (!rc) rc = alloc_tables(c);
    for (int i = 0; !rc && i < c->ntasks; i++) rc = read_task(c, i);
    for (int i = 0; !rc && i < c->ntasks; i++) rc = read_task_args(c, i);
    if (!rc) rc = topo_sort(c);
    if (!rc) rc = load_libraries(c);
    for (int k = 0; !rc && k < c->ntasks; k++) rc = build_node(c, c->order[k]);
    return rc;
}

static void jctx_free(jctx *c)
{
    for (int i = 0; c->tasks && i < c->ntasks; i++) {
        free(c->tasks[i].arg_src);
        free(c->tasks[i].arg_out);
    }
    free(c->tasks);
    free(c->order);
    free(c->node_of);
    json_decref(c->names);
    json_decref(c->libs);
    json_decref(c->root);
    loom_pack_destroy(&c->pack);
    loom_graph_destroy(&c->g);
}

static int graph_from_json(const char *text, size_t len, const char *base_dir, int no_files,
                           loom_graph_json_lib_fn lib_fn, void *lib_arg,
                           loom_graph **out, char *err, size_t errlen)
{
    jctx c;
    memset(&c, 0, sizeof c);
    c.err = err;
    c.errlen = errlen;
    if (err && errlen) err[0] = 0;
    if (out) *out = NULL;
    if (!out || (!text && len)) return fail(&c, LOOM_EINVAL, "invalid arguments");
    c.base_dir = base_dir;
    c.no_files = no_files;
    c.lib_fn = lib_fn;
    c.lib_arg = lib_arg;
    int rc = parse_document(&c, text ? text : "", len);
    if (!rc) {
        *out = c.g;
        c.g = NULL;
    }
    jctx_free(&c);
    return rc;
}

int loom__graph_from_json(const char *text, size_t len, const char *base_dir,
                          loom_graph_json_lib_fn lib_fn, void *lib_arg,
                          loom_graph **out, char *err, size_t errlen)
{
    return graph_from_json(text, len, base_dir, 0, lib_fn, lib_arg, out, err, errlen);
}

int loom__graph_from_json_remote(const char *text, size_t len, loom_graph_json_lib_fn lib_fn, void *lib_arg,
                                 loom_graph **out, char *err, size_t errlen)
{
    return graph_from_json(text, len, NULL, 1, lib_fn, lib_arg, out, err, errlen);
}

int loom__graph_json_name(const char *text, size_t len, char *out, size_t outlen)
{
    if (!out || !outlen || (!text && len)) return LOOM_EINVAL;
    out[0] = 0;
    json_t *root = json_loadb(text ? text : "", len, JSON_ALLOW_NUL, NULL);
    json_t *name = json_object_get(root, "name");
    if (json_is_string(name) && strlen(json_string_value(name)) == json_string_length(name))
        snprintf(out, outlen, "%s", json_string_value(name));
    json_decref(root);
    return LOOM_OK;
}
