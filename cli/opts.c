/* cli/opts.c — the `loom` command line: parsing a command's arguments by the
 * options its table entry names (cli/commands.c), reading them, sizes such as
 * "512M", the state dir, and connecting to the cluster it names. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli/cli.h"
#include "runtime/util.h"

/* One line saying what is wrong, and where the command's help is; 2. */
static int usage_line(const cli_cmd *c, const char *what, const char *arg, const char *after)
{
    fprintf(stderr, "loom: %s: %s'%s'%s; see 'loom %s --help'\n", c->name, what, arg, after, c->name);
    return 2;
}

static int add_opt(opts *o, const char *key, const char *val)
{
    if (o->n >= MAX_OPTS) {
        fprintf(stderr, "loom: too many arguments\n");
        return 2;
    }
    o->key[o->n] = key;
    o->val[o->n++] = val;
    return 0;
}

/* Hidden commands (started by loom itself): any --key, with the next
 * argument as its value unless that is an option too. */
static int parse_any(int argc, char **argv, opts *o)
{
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "--", 2) && argv[i][2]) {
            const char *key = argv[i] + 2;
            const char *val = (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) ? argv[++i] : "";
            if (add_opt(o, key, val)) return 2;
        } else {
            if (o->npos >= MAX_OPTS) return usage_line(o->cmd, "too many arguments at ", argv[i], "");
            o->pos[o->npos++] = argv[i];
        }
    }
    return 0;
}

int parse_opts(const cli_cmd *c, int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof(*o));
    o->argc = argc;
    o->argv = argv;
    o->cmd = c;
    if (c->flags & CLI_RAW) return 0;
    if (c->flags & CLI_HIDDEN) return parse_any(argc, argv, o);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) || !a[2]) {
            if (o->npos >= MAX_OPTS) return usage_line(c, "too many arguments at ", a, "");
            o->pos[o->npos++] = a;
            continue;
        }
        const char *key = a + 2, *eq = strchr(key, '=');
        size_t klen = eq ? (size_t)(eq - key) : strlen(key);
        int kind = cli_option_kind(c, key, klen);
        if (kind < 0) return usage_line(c, "unknown option ", a, "");
        if (eq) { /* --key=value: the key is copied out of argv into o->keybuf */
            if (!kind) return usage_line(c, "", a, ": this option takes no value");
            if (o->n >= MAX_OPTS) return add_opt(o, key, eq + 1); /* says: too many arguments */
            if (klen >= sizeof(o->keybuf[0])) return usage_line(c, "unknown option ", a, "");
            char *k = o->keybuf[o->n];
            memcpy(k, key, klen);
            k[klen] = 0;
            if (add_opt(o, k, eq + 1)) return 2;
            continue;
        }
        if (kind == 2) { /* an optional value: only as --key=value */
            if (add_opt(o, key, "")) return 2;
            continue;
        }
        if (kind && (i + 1 >= argc || !strncmp(argv[i + 1], "--", 2)))
            return usage_line(c, "", a, " wants a value");
        if (add_opt(o, key, kind ? argv[++i] : "")) return 2;
    }
    return 0;
}

const char *opt(const opts *o, const char *key)
{
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->key[i], key)) return o->val[i];
    return NULL;
}

int opt_int(const opts *o, const char *key, int def)
{
    const char *v = opt(o, key);
    return v && *v ? atoi(v) : def;
}

/* Give key a value unless the command line did (for values found elsewhere). */
void opt_default(opts *o, const char *key, const char *val)
{
    if (!val || !*val || opt(o, key) || o->n >= MAX_OPTS) return;
    o->key[o->n] = key;
    o->val[o->n++] = val;
}

/* "512M", "2G", "1048576" -> bytes; 0 on a bad value */
uint64_t parse_bytes(const char *s)
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

const char *state_dir(const opts *o, char *buf, size_t len)
{
    const char *sd = opt(o, "state-dir");
    if (sd && *sd) {
        loom__snprintf(buf, len, "%s", sd);
        return buf;
    }
    return loom__default_state_dir(buf, len);
}

/* Make the state directory (0700) and check that it is ours to trust: 0, or
 * -1 with the reason in why. */
int prepare_state_dir(const char *sd, char *why, size_t len)
{
    if (loom__mkdir_p(sd)) {
        loom__snprintf(why, len, "cannot make %s: %s", sd, strerror(errno));
        return -1;
    }
    chmod(sd, 0700);
    return loom__state_dir_trusted(sd, why, len) ? -1 : 0;
}

int connect_cli(const opts *o, loom_client **c)
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
        loom__snprintf(path, sizeof(path), "%s/address", sd);
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
