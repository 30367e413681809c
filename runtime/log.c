/* runtime/log.c — the log line writer (see log.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "runtime/log.h"

static char log_role[32] = "loom";
static int log_level = LOOM_LOG_INFO;

void loom__log_init(const char *role)
{
    snprintf(log_role, sizeof(log_role), "%s", role ? role : "loom");
    const char *lv = getenv("LOOM_LOG_LEVEL");
    if (!lv) return;
    if (!strcmp(lv, "debug")) log_level = LOOM_LOG_DEBUG;
    else if (!strcmp(lv, "warn")) log_level = LOOM_LOG_WARN;
    else if (!strcmp(lv, "error")) log_level = LOOM_LOG_ERROR;
}

void loom__log(int level, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (level < log_level) return;
    char line[2048];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%02d:%02d:%02d.%03ld %s[%d] %s: ", tm.tm_hour,
                     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, log_role, (int)getpid(),
                     names[level & 3]);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(line)) vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}
