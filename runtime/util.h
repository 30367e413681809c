/* runtime/util.h — small helpers every process uses: an arena allocator for
 * decoded messages, files and directories; it brings in base/ (clocks, files,
 * buffers, loom__snprintf) for every file that includes it. */
#ifndef LOOM_RUNTIME_UTIL_H
#define LOOM_RUNTIME_UTIL_H
#include <stddef.h>
#include <stdint.h>
#include "base/buf.h"     /* loom_buf */
#include "base/clock.h"   /* loom__now_ms, loom__now_us, loom__wall_ms */
#include "base/errf.h"    /* loom__snprintf, loom__errf */
#include "base/file.h"

/* Bump allocator: many small allocations freed at once. */
typedef struct loom_arena_block loom_arena_block;
typedef struct loom_arena {
    loom_arena_block *head;
} loom_arena;
void *loom__arena_alloc(loom_arena *a, size_t n);          /* zeroed; NULL on OOM */
char *loom__arena_strndup(loom_arena *a, const char *s, size_t n);
void loom__arena_free(loom_arena *a);


/* mkdir -p with mode 0700 for created components. 0 or LOOM_ESYS. */
int loom__mkdir_p(const char *path);
/* Make a fresh private directory PARENT/PREFIX-<6 random characters> (mkdtemp);
 * parent NULL means $TMPDIR or /tmp.  The path goes to out.  0 or LOOM_ESYS. */
int loom__make_temp_dir(const char *parent, const char *prefix, char *out, size_t outlen);
/* rm -rf; 0 or LOOM_ESYS. */
int loom__rm_rf(const char *path);
/* Read a whole file (max bytes; NUL-terminated, *len without it): base/file.c
 * with loom codes (LOOM_ENOTFOUND, LOOM_ETOOBIG, LOOM_ENOMEM, LOOM_EIO). */
int loom__read_file(const char *path, size_t max, char **out, size_t *len);
/* Write a file atomically (tmp + rename) with the given mode. */
int loom__write_file(const char *path, const void *data, size_t len, int mode);
/* Default per-user state directory: $LOOM_STATE_DIR or /tmp/loom-<uid>. */
const char *loom__default_state_dir(char *buf, size_t len);
/* May this user trust the state directory dir (its address, secret and
 * tables)?  It must be a directory owned by the effective user and writable
 * by no one else: another user who owns it, or may write in it, could swap
 * its address file for a fake head's (which then gets the secret) or read
 * what it holds.  0 (also when dir does not exist yet), or LOOM_EAUTH /
 * LOOM_EINVAL with the reason in err. */
int loom__state_dir_trusted(const char *dir, char *err, size_t errlen);
/* The number after "name=" in a line of space-separated key=value words (the
 * text records of quotas and usage), or NAN when absent.  Stops at '\n'. */
double loom__kv_field(const char *line, const char *name);
/* Path of the running `loom` executable (for starting daemons/executors):
 * $LOOM_BIN, else the build-time path, else "loom" from PATH. */
const char *loom__binary_path(void);
#endif
