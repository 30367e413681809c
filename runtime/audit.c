/* runtime/audit.c — the audit log (see audit.h).  One process-wide file: the
 * head and its gateway share a process, and both append to it. */
#include "runtime/audit.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "loom/loom.h"

#define LINE_MAX_BYTES 2048

static pthread_mutex_t audit_lock = PTHREAD_MUTEX_INITIALIZER;
static int audit_fd = -1;
static int audit_dirty;

int loom__audit_open(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/audit.log", dir);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return LOOM_EIO;
    pthread_mutex_lock(&audit_lock);
    if (audit_fd >= 0) close(audit_fd);
    audit_fd = fd;
    pthread_mutex_unlock(&audit_lock);
    return LOOM_OK;
}

void loom__audit_close(void)
{
    pthread_mutex_lock(&audit_lock);
    if (audit_fd >= 0) {
        fsync(audit_fd);
        close(audit_fd);
    }
    audit_fd = -1;
    pthread_mutex_unlock(&audit_lock);
}

/* s as a JSON string (quotes included) at out[n..]; returns the new n. */
static size_t put_str(char *out, size_t n, size_t cap, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    if (n < cap) out[n++] = '"';
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p && n + 7 < cap; p++) {
        if (*p == '"' || *p == '\\') {
            out[n++] = '\\';
            out[n++] = (char)*p;
        } else if (*p < 0x20 || *p == 0x7f) {
            memcpy(out + n, "\\u00", 4);
            out[n + 4] = hex[*p >> 4];
            out[n + 5] = hex[*p & 15];
            n += 6;
        } else {
            out[n++] = (char)*p;
        }
    }
    if (n < cap) out[n++] = '"';
    return n;
}

void loom__audit(const char *actor, const char *action, const char *object, const char *detail)
{
    char line[LINE_MAX_BYTES], when[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    size_t cap = sizeof(line) - 3, n = (size_t)snprintf(line, sizeof(line), "{\"time\":\"%s\",\"actor\":", when);
    n = put_str(line, n, cap, actor && *actor ? actor : "cluster");
    n += (size_t)snprintf(line + n, cap - n, ",\"action\":");
    n = put_str(line, n, cap, action);
    n += (size_t)snprintf(line + n, cap - n, ",\"object\":");
    n = put_str(line, n, cap, object);
    n += (size_t)snprintf(line + n, cap - n, ",\"detail\":");
    n = put_str(line, n, cap, detail);
    line[n++] = '}';
    line[n++] = '\n';
    pthread_mutex_lock(&audit_lock);
    if (audit_fd >= 0 && write(audit_fd, line, n) == (ssize_t)n) audit_dirty = 1;
    pthread_mutex_unlock(&audit_lock);
}

void loom__audit_sync(void)
{
    pthread_mutex_lock(&audit_lock);
    if (audit_fd >= 0 && audit_dirty) fsync(audit_fd);
    audit_dirty = 0;
    pthread_mutex_unlock(&audit_lock);
}
