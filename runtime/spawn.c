/* runtime/spawn.c — start loom processes and wait until they serve (spawn.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include "loom/loom.h"
#include "runtime/spawn.h"
#include "runtime/util.h"

int loom__spawn(char *const argv[], char *const env[], const char *logpath, int detach, pid_t *pid,
                int *ready_rd)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return LOOM_ESYS;
    pid_t parent = getpid();
    pid_t c = fork();
    if (c < 0) {
        close(p[0]);
        close(p[1]);
        return LOOM_ESYS;
    }
    if (c == 0) {
        if (detach) setsid();
        else {
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent) _exit(1);
        }
        int log = open(logpath ? logpath : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0600);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        if (log >= 0) {
            dup2(log, 1);
            dup2(log, 2);
        }
        if (dup2(p[1], LOOM_READY_FD) < 0) _exit(1);
        for (int i = 0; env && env[i]; i++) putenv(env[i]);
        execv(argv[0], argv);
        fprintf(stderr, "loom: cannot start %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(p[1]);
    *pid = c;
    *ready_rd = p[0];
    return LOOM_OK;
}

int loom__spawn_wait_ready(int fd, pid_t pid, int timeout_ms, char *buf, size_t len)
{
    int64_t deadline = loom__now_ms() + timeout_ms;
    size_t n = 0;
    int rc = LOOM_ETIMEOUT;
    while (loom__now_ms() < deadline) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int pr = poll(&pfd, 1, 100);
        if (pr < 0 && errno != EINTR) break;
        if (pr > 0) {
            ssize_t r = read(fd, buf + n, len - 1 - n);
            if (r > 0) {
                n += (size_t)r;
                buf[n] = 0;
                char *nl = strchr(buf, '\n');
                if (nl) {
                    *nl = 0;
                    rc = LOOM_OK;
                    break;
                }
                if (n >= len - 1) break;
                continue;
            }
            if (r == 0) { /* the child closed the pipe without a line */
                rc = LOOM_ESTATE;
                break;
            }
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            rc = LOOM_ESTATE;
            break;
        }
    }
    close(fd);
    return rc;
}

/* A process that is not our child has exited: gone, or a zombie waiting
 * for its parent (init, for a daemon) to reap it.  A zombie holds nothing
 * (its files and locks were closed at exit), so it counts as gone: waiting
 * for the reaping cost loom stop a second or two per process. */
static int exited(pid_t pid)
{
    if (kill(pid, 0) != 0) return 1;
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *paren = strrchr(buf, ')');   /* "PID (COMM) STATE ...": COMM may hold spaces */
    return paren && (paren[1] == ' ') && (paren[2] == 'Z' || paren[2] == 'X');
}

void loom__stop_process(pid_t pid, int grace_ms)
{
    if (pid <= 0) return;
    if (kill(pid, SIGTERM) != 0) return;
    int64_t deadline = loom__now_ms() + grace_ms;
    while (loom__now_ms() < deadline) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD && exited(pid))) return;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    if (waitpid(pid, NULL, 0) == pid) return;
    /* not our child (loom stop): wait, bounded, until it is gone, so that
       what it held (the head's lock on its state dir) is free on return */
    for (int i = 0; i < 200 && !exited(pid); i++) usleep(10000);
}
