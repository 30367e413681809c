/* scheduler/head.h — the head process: cluster tables, scheduler, object
 * directory.  loom__head_run serves until SIGINT/SIGTERM. */
#ifndef LOOM_SCHEDULER_HEAD_H
#define LOOM_SCHEDULER_HEAD_H

typedef struct loom_head_opts {
    const char *bind_host;        /* default 127.0.0.1 */
    int port;                     /* 0: any free port */
    const char *state_dir;        /* address file (and head.lmdb unless db_dir) */
    const char *db_dir;           /* head.lmdb here (NULL: state_dir); keep it on a local disk */
    const char *advertise_host;   /* written to the address file (NULL: bind_host, or the
                                     hostname when bound to 0.0.0.0) */
    const char *secret;           /* the cluster secret (hex) */
    int heartbeat_timeout_ms;     /* a node silent this long is dead (default 10000) */
    int ready_fd;                 /* >= 0: write "HOST:PORT\n" here once listening, then close */
    /* called once, on the head's thread, right after the address file is
       written (the head takes connections from then on); may be NULL */
    void (*on_listening)(void *arg, const char *addr);
    void *on_listening_arg;
} loom_head_opts;

int loom__head_run(const loom_head_opts *opts);

#endif
