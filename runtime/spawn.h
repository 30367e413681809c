/* runtime/spawn.h — starting loom's own processes (head, daemons) with a
 * readiness pipe: the child gets the pipe's write end as fd 3 and writes one
 * line there once it serves; the parent waits for that line. */
#ifndef LOOM_RUNTIME_SPAWN_H
#define LOOM_RUNTIME_SPAWN_H
#include <stddef.h>
#include <sys/types.h>

#define LOOM_READY_FD 3

/* Start argv (argv[0] is a path) with stdout and stderr appended to logpath.
 * detach: 1 = its own session (outlives the caller), 0 = dies with the caller
 * (PR_SET_PDEATHSIG).  env: extra "NAME=VALUE" entries (NULL-terminated) or
 * NULL.  *ready_rd receives the pipe's read end. */
int loom__spawn(char *const argv[], char *const env[], const char *logpath, int detach, pid_t *pid,
                int *ready_rd);

/* Wait for the ready line (up to timeout_ms).  0 with the line in buf (no
 * newline), LOOM_ETIMEOUT, or LOOM_ESTATE when the child exited first.  Closes fd. */
int loom__spawn_wait_ready(int fd, pid_t pid, int timeout_ms, char *buf, size_t len);

/* SIGTERM, wait up to grace_ms, then SIGKILL; reaps the child if it is ours. */
void loom__stop_process(pid_t pid, int grace_ms);
#endif
