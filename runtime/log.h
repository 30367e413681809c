/* runtime/log.h — one-line log records to stderr (daemons redirect it to their
 * log file): time, level, process role, message. */
#ifndef LOOM_RUNTIME_LOG_H
#define LOOM_RUNTIME_LOG_H
enum { LOOM_LOG_DEBUG = 0, LOOM_LOG_INFO, LOOM_LOG_WARN, LOOM_LOG_ERROR };
void loom__log_init(const char *role);          /* level from $LOOM_LOG_LEVEL */
void loom__log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define LOG_DEBUG(...) loom__log(LOOM_LOG_DEBUG, __VA_ARGS__)
#define LOG_INFO(...) loom__log(LOOM_LOG_INFO, __VA_ARGS__)
#define LOG_WARN(...) loom__log(LOOM_LOG_WARN, __VA_ARGS__)
#define LOG_ERROR(...) loom__log(LOOM_LOG_ERROR, __VA_ARGS__)
#endif
