/* worker/daemon_internal.h — what the node daemon's files share (daemon.c:
 * head and executor sockets, tasks, actors, lifecycle; transfer.c: the data
 * port and pulling objects from other nodes): its state and the functions
 * one file calls in the other.  Not a public interface. */
#ifndef LOOM_WORKER_DAEMON_INTERNAL_H
#define LOOM_WORKER_DAEMON_INTERNAL_H
#include <stdint.h>
#include <uv.h>
#include <zmq.h>
#include "objectstore/store.h"
#include "runtime/curve.h"
#include "runtime/hmap.h"
#include "runtime/wire.h"
#include "runtime/zloop.h"
#include "worker/daemon.h"
#include "worker/gpu.h"

#define MAX_EXECUTORS 256
#define MAX_PEER_IDENT 32

typedef struct dtask dtask;
typedef struct daemon_s daemon_s;
typedef struct actor_proc actor_proc;

/* A task assigned by the head, waiting for arguments or an executor. */
struct dtask {
    uint8_t id[16];
    loom_arena arena;
    loom_wire_task spec;
    int missing;              /* arguments still being fetched */
    int pinned_n;
    loom_ref *pinned;         /* refs pinned in the store for it */
    int failed;
    char error[512];
    int cancelled;
    int exec;                 /* executor index running it, or -1 */
    dtask *qnext;
    actor_proc *actor;        /* an actor's creation or call: its process */
};

/* An actor's own executor process: it runs the creation task, then the
 * calls in the order they arrived (`queue`: not sent yet; `sent`: running). */
struct actor_proc {
    uv_process_t proc;
    uv_timer_t kill_timer;
    int timer_started;
    int alive, ready, pid, dying, initialised;
    char token[65];           /* its grant's token (runtime/curve.h): its HELLO must carry it */
    uint8_t ident[MAX_PEER_IDENT];
    size_t identlen;
    uint8_t id[16];
    char hex[33];
    dtask *create;            /* until init reports */
    dtask **queue;
    int nq, capq;
    dtask **sent;
    int nsent, capsent;
    daemon_s *d;
};

typedef struct exec_proc {
    uv_process_t proc;
    int alive, ready;
    int pid;
    char token[65];           /* its grant's token: its HELLO must carry it */
    uint8_t ident[MAX_PEER_IDENT];
    size_t identlen;
    dtask *task;
    int index;
    int retiring;             /* ran a GPU function task: exits after it */
    daemon_s *d;
} exec_proc;

/* A task report (TASK_DONE) as sent, kept a while: a head that died before
 * reading it, or restarted and dropped it as from an unknown peer, gets it
 * again when this daemon joins it again (see REPORTS_KEEP_MS in daemon.c). */
typedef struct sent_report {
    uint8_t *data;
    size_t len;
    int64_t at_ms;
} sent_report;

struct daemon_s {
    loom_daemon_opts o;
    uv_loop_t *loop;
    void *zctx, *head, *data, *execs_sock;
    loom_curve_keys keys;     /* derived from the secret (runtime/curve.h) */
    loom_curve_zap *zap;      /* the data port's ZAP handler */
    void *head_mon;           /* PAIR: the head DEALER's handshake events */
    loom_zwatch *w_head_mon;
    int hs_failures;          /* CURVE handshakes with the head failed in a row */
    char exec_dir[4096];      /* the 0700 directory of the executors' ipc socket */
    int exec_dir_temp;        /* exec_dir was made under /tmp: remove it at exit */
    loom_zwatch *w_head, *w_data, *w_exec;
    uv_timer_t hb;
    uv_signal_t sigint, sigterm;
    loom_store *store;
    loom_pack *out;
    char store_dir[4096], spill_dir[4096], exec_ep[4200], data_addr[300], hostname[256];
    uint32_t node_id;
    int welcomed;
    int64_t waiting_since, waiting_logged; /* not yet welcomed: when it began, last said */
    exec_proc execs[MAX_EXECUTORS];
    int nexec;
    loom_hmap tasks;          /* task id -> dtask */
    loom_hmap transfers;      /* ref -> transfer */
    loom_hmap peers;          /* addr -> peer */
    loom_hmap data_peers;     /* authenticated data-port identities -> (void*)1 */
    loom_hmap pushes;         /* ident ++ ref -> loom_buf* (remote puts in progress) */
    dtask *q_head, *q_tail;   /* ready to run */
    uint64_t running;
    uint64_t next_serial;
    int stopping;
    loom_hmap actors;         /* actor id (16) -> actor_proc */
    int spawned;              /* the executor pool has been started */
    loom_gpu_info gpus;
    uint32_t num_gpus;
    uint64_t gpu_memory;
    char parent_gpus[256];    /* CUDA_VISIBLE_DEVICES the daemon was started with */
    loom_arena res_arena;     /* owns res and labels */
    loom_wire_res *res;       uint32_t nres;
    loom_wire_label *labels;  uint32_t nlabels;
    sent_report *reports;     /* ring of the last task reports sent to the head */
    int nreports_first, nreports;  /* oldest slot, count */
    size_t reports_bytes;
};

/* daemon.c */
void loom__daemon_send_head(daemon_s *d, const loom_msg *m);
/* One of t's arguments is here (or failed): run t once none is missing. */
void loom__daemon_arg_ready(daemon_s *d, dtask *t);

/* transfer.c */
/* Make sure arg is in the local store for t: pin it, or start/join a fetch. */
void loom__daemon_need_arg(daemon_s *d, dtask *t, const loom_wire_arg *a);
/* The data port's zloop callback: HELLO, FETCH and PUSH from peers and drivers. */
void loom__daemon_on_data_frames(void *arg, zmq_msg_t *frames, int n);
/* Transfers that stopped moving: try another copy (from the heartbeat). */
void loom__daemon_retry_stalled_transfers(daemon_s *d);
/* Free the peers, transfers, pushes and data-port identities (at exit). */
void loom__daemon_transfers_cleanup(daemon_s *d);

#endif
