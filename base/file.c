/* base/file.c — whole-file read and atomic write (see file.h). */
#include "base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* Read fd to its end into buf (cap bytes, grown by doubling while under max). */
static int read_fd(int fd, size_t max, char **bufp, size_t cap, size_t *np)
{
    char *buf = *bufp;
    size_t n = 0;
    for (;;) {
        if (n + 1 >= cap) {
            if (cap > max) { *bufp = buf; return -EFBIG; }
            char *nb = realloc(buf, cap * 2);
            if (!nb) { *bufp = buf; return -ENOMEM; }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { *bufp = buf; return -EIO; }
        if (r == 0) break;
        n += (size_t)r;
    }
    buf[n] = 0;
    *bufp = buf;
    *np = n;
    return 0;
}

int loom__file_read(const char *path, size_t max, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) { close(fd); return -EIO; }
    if ((uint64_t)st.st_size > max) { close(fd); return -EFBIG; }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *buf = malloc(cap);
    if (!buf) { close(fd); return -ENOMEM; }
    int rc = read_fd(fd, max, &buf, cap, &n);
    close(fd);
    if (rc) { free(buf); return rc; }
    *out = buf;
    if (len) *len = n;
    return 0;
}

int loom__file_write(const char *path, const void *data, size_t len, int mode)
{
    char tmp[4200];
    int k = snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    if (k < 0 || (size_t)k >= sizeof(tmp)) return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) return -errno;
    const char *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) { int e = errno; close(fd); unlink(tmp); return -e; }
        p += w;
        len -= (size_t)w;
    }
    if (fchmod(fd, (mode_t)mode) != 0 || close(fd) != 0) { int e = errno; unlink(tmp); return -e; }
    if (rename(tmp, path) != 0) { int e = errno; unlink(tmp); return -e; }
    return 0;
}
