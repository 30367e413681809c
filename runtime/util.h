/* runtime/util.h — small helpers every process uses: an arena allocator for
 * decoded messages, monotonic time, files and directories, dynamic buffers. */
#ifndef LOOM_RUNTIME_UTIL_H
#define LOOM_RUNTIME_UTIL_H
#include <stddef.h>
#include <stdint.h>

/* Bump allocator: many small allocations freed at once. */
typedef struct loom_arena_block loom_arena_block;
typedef struct loom_arena {
    loom_arena_block *head;
} loom_arena;
void *loom_arena_alloc(loom_arena *a, size_t n);          /* zeroed; NULL on OOM */
char *loom_arena_strndup(loom_arena *a, const char *s, size_t n);
void loom_arena_free(loom_arena *a);

int64_t loom_now_ms(void);     /* CLOCK_MONOTONIC */
int64_t loom_now_us(void);

/* mkdir -p with mode 0700 for created components. 0 or LOOM_ESYS. */
int loom_mkdir_p(const char *path);
/* Make a fresh private directory PARENT/PREFIX-<6 random characters> (mkdtemp);
 * parent NULL means $TMPDIR or /tmp.  The path goes to out.  0 or LOOM_ESYS. */
int loom_make_temp_dir(const char *parent, const char *prefix, char *out, size_t outlen);
/* rm -rf; 0 or LOOM_ESYS. */
int loom_rm_rf(const char *path);
/* Read a whole file (max bytes; NUL-terminated, *len without it). */
int loom_read_file(const char *path, size_t max, char **out, size_t *len);
/* Write a file atomically (tmp + rename) with the given mode. */
int loom_write_file(const char *path, const void *data, size_t len, int mode);
/* Default per-user state directory: $LOOM_STATE_DIR or /tmp/loom-<uid>. */
const char *loom_default_state_dir(char *buf, size_t len);
/* Path of the running `loom` executable (for starting daemons/executors):
 * $LOOM_BIN, else the build-time path, else "loom" from PATH. */
const char *loom_binary_path(void);

/* Growable byte buffer. */
typedef struct loom_buf {
    uint8_t *p;
    size_t n, cap;
} loom_buf;
int loom_buf_append(loom_buf *b, const void *data, size_t n);
void loom_buf_free(loom_buf *b);

/* Simple printf into a fixed buffer that never overflows. */
void loom_snprintf(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#endif
