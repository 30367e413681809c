/* base/file.h — whole files: read one into memory, write one atomically.
 * Errors are negative errno values so that every layer can word its own. */
#ifndef LOOM_BASE_FILE_H
#define LOOM_BASE_FILE_H
#include <stddef.h>

/* Read a whole file of at most max bytes into *out (malloc'd, NUL-terminated;
 * *len without the NUL when len != NULL).  0, or -ENOENT and the other open
 * errors, -EIO (stat or read failed), -EFBIG (over max), -ENOMEM. */
int loom__file_read(const char *path, size_t max, char **out, size_t *len);
/* Write a file atomically (PATH.tmp.PID, then rename) with the given mode.
 * 0 or a negative errno. */
int loom__file_write(const char *path, const void *data, size_t len, int mode);
#endif
