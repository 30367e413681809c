/* runtime/util.c — arena, file and directory helpers (see util.h); the
 * clocks, files and buffers themselves live in base/. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "loom/loom.h"
#include "runtime/util.h"

struct loom_arena_block {
    loom_arena_block *next;
    size_t used, cap;
    max_align_t data[];
};

#define ARENA_BLOCK 4096
#define ARENA_FIRST 256

void *loom__arena_alloc(loom_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    loom_arena_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        /* small first (an arena per task spec at the head: most need a few
           hundred bytes, and a million pending tasks must stay small), then
           doubling up to ARENA_BLOCK */
        size_t cap = b ? (b->cap * 2 < ARENA_BLOCK ? b->cap * 2 : ARENA_BLOCK) : ARENA_FIRST;
        if (cap < n) cap = n;
        b = malloc(sizeof(*b) + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

char *loom__arena_strndup(loom_arena *a, const char *s, size_t n)
{
    char *d = loom__arena_alloc(a, n + 1);
    if (!d) return NULL;
    if (n) memcpy(d, s, n);
    d[n] = 0;
    return d;
}

void loom__arena_free(loom_arena *a)
{
    loom_arena_block *b = a->head;
    while (b) {
        loom_arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}

int loom__mkdir_p(const char *path)
{
    char tmp[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(tmp)) return LOOM_EINVAL;
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return LOOM_ESYS;
        *p = '/';
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return LOOM_ESYS;
    return LOOM_OK;
}

/* mkdtemp's template suffix: six Xs */
#define MKDTEMP_SUFFIX "XX" "XX" "XX"

int loom__make_temp_dir(const char *parent, const char *prefix, char *out, size_t outlen)
{
    const char *tmp = getenv("TMPDIR");
    if (!parent) parent = tmp && *tmp ? tmp : "/tmp";
    int n = snprintf(out, outlen, "%s/%s-" MKDTEMP_SUFFIX, parent, prefix);
    if (n < 0 || (size_t)n >= outlen) return LOOM_EINVAL;
    return mkdtemp(out) ? LOOM_OK : LOOM_ESYS;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

int loom__rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? LOOM_OK : LOOM_ESYS;
    return nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS) == 0 ? LOOM_OK : LOOM_ESYS;
}

/* base/file.c's errno answers as loom codes. */
static int file_rc(int rc)
{
    return rc == 0 ? LOOM_OK
         : rc == -ENOENT ? LOOM_ENOTFOUND
         : rc == -EFBIG ? LOOM_ETOOBIG
         : rc == -ENOMEM ? LOOM_ENOMEM : LOOM_EIO;
}

int loom__read_file(const char *path, size_t max, char **out, size_t *len)
{
    return file_rc(loom__file_read(path, max, out, len));
}

int loom__write_file(const char *path, const void *data, size_t len, int mode)
{
    return loom__file_write(path, data, len, mode) ? LOOM_EIO : LOOM_OK;
}

const char *loom__default_state_dir(char *buf, size_t len)
{
    const char *env = getenv("LOOM_STATE_DIR");
    if (env && *env) loom__snprintf(buf, len, "%s", env);
    else loom__snprintf(buf, len, "/tmp/loom-%d", (int)getuid());
    return buf;
}

int loom__state_dir_trusted(const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (stat(dir, &st) != 0) return errno == ENOENT ? LOOM_OK : loom__errf(err, errlen, LOOM_ESYS,
                                                                         "cannot use %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return loom__errf(err, errlen, LOOM_EINVAL, "the state directory %s is not a directory", dir);
    if (st.st_uid != geteuid())
        return loom__errf(err, errlen, LOOM_EAUTH,
                          "the state directory %s belongs to uid %u, not to you (uid %u): another user could put a "
                          "fake head's address there; use a directory of your own (--state-dir or LOOM_STATE_DIR)",
                          dir, (unsigned)st.st_uid, (unsigned)geteuid());
    if (st.st_mode & 022)
        return loom__errf(err, errlen, LOOM_EAUTH,
                          "the state directory %s may be written by other users (mode %03o): make it 0700",
                          dir, (unsigned)(st.st_mode & 0777));
    return LOOM_OK;
}

const char *loom__binary_path(void)
{
    const char *env = getenv("LOOM_BIN");
    if (env && *env) return env;
#ifdef LOOM_BUILD_BIN
    if (access(LOOM_BUILD_BIN, X_OK) == 0) return LOOM_BUILD_BIN;
#endif
#ifdef LOOM_INSTALL_BIN
    if (access(LOOM_INSTALL_BIN, X_OK) == 0) return LOOM_INSTALL_BIN;
#endif
    return "loom";
}

double loom__kv_field(const char *line, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = line; p && *p && *p != '\n';) {
        while (*p == ' ') p++;
        if (!strncmp(p, name, n) && p[n] == '=') return strtod(p + n + 1, NULL);
        p = strpbrk(p, " \n");
        if (!p || *p == '\n') break;
    }
    return NAN;
}
