/* objectstore/store.c — the node's object store (see store.h for the contract).
 *
 * Owns two LMDB environments: the memory tier (mem_dir, on tmpfs) holding the
 * databases "obj" (id -> value bytes), "meta" (id -> meta_rec) and "sys"
 * (config and totals records), and the optional disk tier (spill_dir) holding
 * only "obj".  Every change to values, meta and totals happens inside one write
 * transaction of the memory environment, so the accounting is consistent for
 * every process sharing the store; that transaction is also the store-wide
 * writer lock (the disk environment's writer lock is only ever taken while it
 * is held, so the lock order is always memory then disk).
 *
 * Crash ordering: a value copied to the disk tier is committed there before the
 * memory transaction that removes it from memory (or records it) commits, and a
 * value removed from the disk tier is deleted only after the memory transaction
 * that forgets it has committed.  A failure in between leaves a duplicate or an
 * orphan, never a meta record without its value; opening with create repairs
 * both (rebuild_store).
 *
 * Writes: the memory tier is opened with MDB_WRITEMAP, so a put is one copy
 * straight into the shared map (pages of released objects are reused while
 * still mapped: no page faults, no pwrite).  Never SIGBUS: before a write
 * transaction touches the map, mem_back() fallocates the data file up to
 * LMDB's last page plus what the transaction may add, so a full tmpfs is an
 * ENOSPC from fallocate (LOOM_ESTOREFULL), never a fault on a hole.  The disk
 * tier keeps pwrite (no WRITEMAP), where a full disk is ENOSPC/EIO.
 */
#include "objectstore/store.h"

#include "loom/loom.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define ID_LEN LOOM_STORE_ID_LEN
#define MIB ((uint64_t)1 << 20)
#define MAP_SLACK (64 * MIB)          /* map bytes beyond capacity + 25% for pages */
#define MAX_READERS 1024
#define MAX_DBS 4
#define SPILL_BATCH (64 * MIB)        /* disk bytes per commit while spilling */
#define MAX_FULL_RETRIES 4            /* LMDB map / file system full: free and retry */
#define BACKING_SLACK (8 * MIB)       /* tmpfs bytes allocated ahead of LMDB's last page */
#define POPULATE_MIN (256 * 1024)     /* values this large are pre-faulted in one call */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23        /* Linux 5.14; older kernels: EINVAL, ignored */
#endif
#define CONFIG_MAGIC UINT64_C(0x31474643454f4f4c) /* "LOOECFG1" */
#define CONFIG_VERSION 1u

/* Internal only: LMDB's map, its transaction or the file system is full.
 * Never returned from a public function (public_rc maps it). */
#define RC_PHYSFULL (-1000)

enum { TIER_MEM = 0, TIER_DISK = 1 };

static const char KEY_CONFIG[] = "config";
static const char KEY_TOTALS[] = "totals";

/* One object's metadata (the "meta" database's value).  Stored byte for byte;
 * LMDB values are not aligned, so it is always read with memcpy. */
typedef struct meta_rec {
    uint64_t size;
    uint32_t flags;     /* LOOM_STORE_PRIMARY */
    uint32_t pins;
    uint64_t last_use;  /* the totals clock when last put, pinned or touched */
    uint8_t tier;
    uint8_t pad[7];
} meta_rec;
_Static_assert(sizeof(meta_rec) == 32, "meta_rec is an on-disk format");

/* Store-wide totals (the "sys" database's "totals" record). */
typedef struct totals {
    uint64_t used[2];     /* value bytes per tier */
    uint64_t count[2];    /* objects per tier */
    uint64_t evictions, spills;
    uint64_t clock;       /* LRU clock: incremented by put, pin, touch */
} totals;

/* Written by the creator ("sys" "config"), read by attaching processes;
 * followed by spill_dir_len bytes of the spill directory's path. */
typedef struct config_rec {
    uint64_t magic;
    uint32_t version;
    uint32_t spill_dir_len;   /* 0: no disk tier */
    uint64_t capacity, spill_capacity;
    uint64_t mem_mapsize, spill_mapsize;
} config_rec;

struct loom_store {
    MDB_env *mem;
    MDB_env *disk;                 /* NULL: no disk tier */
    MDB_dbi mem_obj, meta, sys, disk_obj;
    uint64_t capacity, spill_capacity;
    int mem_fd;                    /* the memory tier's data file (LMDB's descriptor) */
    uint64_t mem_psize;            /* its page size */
    uint64_t mem_backed;           /* bytes of it this handle has fallocated */
};

/* ---- small helpers ------------------------------------------------------ */

static int from_mdb(int rc)
{
    switch (rc) {
    case MDB_SUCCESS: return 0;
    case MDB_NOTFOUND: return LOOM_ENOTFOUND;
    case MDB_MAP_FULL: case MDB_TXN_FULL: case MDB_PAGE_FULL:
    case ENOSPC: case EDQUOT: case EFBIG:
        return RC_PHYSFULL;
    case MDB_READERS_FULL: return LOOM_EFULL;
    case ENOMEM: return LOOM_ENOMEM;
    case ENOENT: return LOOM_ENOTFOUND;
    default: return LOOM_EIO;
    }
}

static int public_rc(int rc)
{
    return rc == RC_PHYSFULL ? LOOM_ESTOREFULL : rc;
}

/* used + add <= cap, without overflow */
static int fits(uint64_t used, uint64_t add, uint64_t cap)
{
    return add <= cap && used <= cap - add;
}

static uint64_t sub_floor0(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

static MDB_val id_key(const uint8_t id[ID_LEN])
{
    MDB_val k = {ID_LEN, (void *)id};
    return k;
}

static MDB_val str_key(const char *s)
{
    MDB_val k = {strlen(s), (void *)s};
    return k;
}

static uint64_t round_up_mib(uint64_t n)
{
    return (n + MIB - 1) / MIB * MIB;
}

static uint64_t map_size_for(uint64_t capacity)
{
    return round_up_mib(capacity + capacity / 4 + MAP_SLACK);
}

/* ---- files and directories ---------------------------------------------- */

static int mkdir_p(const char *path)
{
    size_t n = strlen(path);
    char *buf = malloc(n + 1);
    if (!buf)
        return LOOM_ENOMEM;
    memcpy(buf, path, n + 1);
    int rc = 0;
    for (size_t i = 1; i <= n && rc == 0; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            rc = LOOM_EIO;
        buf[i] = saved;
    }
    free(buf);
    struct stat st;
    if (rc == 0 && (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)))
        rc = LOOM_EIO;
    return rc;
}

static char *data_file_path(const char *dir)
{
    size_t n = strlen(dir);
    char *p = malloc(n + sizeof("/data.mdb"));
    if (p) {
        memcpy(p, dir, n);
        memcpy(p + n, "/data.mdb", sizeof("/data.mdb"));
    }
    return p;
}

/* Bytes already allocated to the environment's data file (0 if none). */
static uint64_t data_file_bytes(const char *dir)
{
    char *p = data_file_path(dir);
    struct stat st;
    uint64_t n = 0;
    if (p && stat(p, &st) == 0)
        n = (uint64_t)st.st_blocks * 512u;
    free(p);
    return n;
}

static int data_file_exists(const char *dir, int *exists)
{
    char *p = data_file_path(dir);
    if (!p)
        return LOOM_ENOMEM;
    *exists = access(p, F_OK) == 0;
    free(p);
    return 0;
}

/* Clamps a capacity to 90% of what the directory's file system can still
 * hold (its free space plus what the store's own data file already uses), so
 * a store on a small tmpfs refuses puts instead of filling the file system. */
static uint64_t clamp_to_free_space(const char *dir, uint64_t capacity)
{
    struct statvfs vfs;
    if (statvfs(dir, &vfs) != 0)
        return capacity;
    uint64_t free_bytes = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
    free_bytes += data_file_bytes(dir);
    uint64_t limit = free_bytes / 10 * 9;
    return capacity < limit ? capacity : limit;
}

/* ---- environments -------------------------------------------------------- */

/* Opens an environment.  mapsize 0 adopts the map size recorded in the file
 * (an attaching process); otherwise the map is at least mapsize and at least
 * what the file records, so creator and attachers agree. */
static int env_open(const char *dir, uint64_t mapsize, unsigned flags, MDB_env **out)
{
    MDB_env *env = NULL;
    int rc = mdb_env_create(&env);
    if (rc == 0)
        rc = mdb_env_set_maxreaders(env, MAX_READERS);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(env, MAX_DBS);
    if (rc == 0)
        rc = mdb_env_set_mapsize(env, 0);
    if (rc == 0)
        rc = mdb_env_open(env, dir, MDB_NOTLS | MDB_NOSYNC | MDB_NOMETASYNC | flags, 0600);
    if (rc == 0 && mapsize) {
        MDB_envinfo info;
        rc = mdb_env_info(env, &info);
        if (rc == 0 && info.me_mapsize < mapsize)
            rc = mdb_env_set_mapsize(env, (size_t)mapsize);
    }
    if (rc != 0) {
        if (env)
            mdb_env_close(env);
        return from_mdb(rc) == RC_PHYSFULL ? LOOM_ESTOREFULL : from_mdb(rc);
    }
    int dead = 0;
    mdb_reader_check(env, &dead);   /* free slots of processes that died */
    *out = env;
    return 0;
}

static uint64_t env_map_size(MDB_env *env)
{
    MDB_envinfo info;
    return mdb_env_info(env, &info) == 0 ? (uint64_t)info.me_mapsize : 0;
}

/* 1 if the file system holding env could not hold its whole map. */
static int env_fs_short(MDB_env *env)
{
    const char *dir;
    struct statvfs vfs;
    if (mdb_env_get_path(env, &dir) != 0 || statvfs(dir, &vfs) != 0)
        return 0;
    uint64_t room = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize + data_file_bytes(dir);
    return room < env_map_size(env);
}

/* Commits a write transaction.  LMDB reports a short write of its pages as
 * EIO: when the file system cannot hold the map, that is a full file system. */
static int txn_commit(MDB_txn *txn)
{
    MDB_env *env = mdb_txn_env(txn);
    int rc = mdb_txn_commit(txn);
    if (rc == EIO && env_fs_short(env))
        return RC_PHYSFULL;
    return from_mdb(rc);
}

static int txn_begin(MDB_env *env, unsigned flags, MDB_txn **txn)
{
    int rc = mdb_txn_begin(env, NULL, flags, txn);
    if (rc == MDB_READERS_FULL) {
        int dead = 0;
        mdb_reader_check(env, &dead);
        rc = mdb_txn_begin(env, NULL, flags, txn);
    }
    return from_mdb(rc);
}

/* ---- backing the writable map --------------------------------------------- */

/* Reads the memory tier's descriptor and page size once the env is open. */
static int mem_map_init(loom_store *s)
{
    MDB_stat st;
    if (mdb_env_get_fd(s->mem, &s->mem_fd) != 0 || mdb_env_stat(s->mem, &st) != 0)
        return LOOM_EIO;
    s->mem_psize = st.ms_psize;
    s->mem_backed = 0;
    return 0;
}

/* Allocates the data file's pages from LMDB's last used page up to `extra`
 * bytes plus BACKING_SLACK beyond it, so the write transaction being started
 * (or going on) writes only to allocated pages.  RC_PHYSFULL when the file
 * system cannot hold them.  Pages up to the last used one were written by
 * earlier transactions and are allocated already. */
static int mem_back(loom_store *s, uint64_t extra)
{
    MDB_envinfo info;
    if (mdb_env_info(s->mem, &info) != 0)
        return LOOM_EIO;
    uint64_t used = ((uint64_t)info.me_last_pgno + 1) * s->mem_psize;
    uint64_t want = used + extra + BACKING_SLACK;
    if (want > info.me_mapsize)
        want = info.me_mapsize;   /* past the map LMDB itself answers MDB_MAP_FULL */
    if (want <= s->mem_backed || want <= used)
        return 0;
    if (fallocate(s->mem_fd, 0, (off_t)used, (off_t)(want - used)) != 0) {
        if (errno == ENOSPC || errno == EFBIG || errno == ENOMEM)
            return RC_PHYSFULL;
        if (errno != EOPNOTSUPP)
            return LOOM_EIO;
        /* a file system without fallocate: writes fault in pages as they go */
    }
    s->mem_backed = want;
    return 0;
}

/* A write transaction of the memory tier, its pages backed (mem_back). */
static int mem_write_begin(loom_store *s, MDB_txn **txn)
{
    int rc = txn_begin(s->mem, 0, txn);
    if (rc != 0)
        return rc;
    rc = mem_back(s, 0);
    if (rc != 0) {
        mdb_txn_abort(*txn);
        *txn = NULL;
    }
    return rc;
}

/* Maps a value's pages into this process in one call instead of one fault
 * per page.  A failure only costs speed (pages were fallocated already). */
static void populate(const loom_store *s, void *buf, size_t len)
{
    if (len < POPULATE_MIN)
        return;
    uintptr_t page = (uintptr_t)s->mem_psize;   /* LMDB's page: the OS page */
    uintptr_t start = (uintptr_t)buf & ~(page - 1);
    uintptr_t end = ((uintptr_t)buf + len + page - 1) & ~(page - 1);
    (void)madvise((void *)start, end - start, MADV_POPULATE_WRITE);
}

/* ---- records ------------------------------------------------------------- */

static int meta_get(const loom_store *s, MDB_txn *txn, const uint8_t id[ID_LEN], meta_rec *m)
{
    MDB_val k = id_key(id), v;
    int rc = mdb_get(txn, s->meta, &k, &v);
    if (rc != 0)
        return from_mdb(rc);
    if (v.mv_size != sizeof *m)
        return LOOM_EIO;
    memcpy(m, v.mv_data, sizeof *m);
    return 0;
}

static int meta_put(const loom_store *s, MDB_txn *txn, const uint8_t id[ID_LEN], const meta_rec *m)
{
    MDB_val k = id_key(id), v = {sizeof *m, (void *)m};
    return from_mdb(mdb_put(txn, s->meta, &k, &v, 0));
}

static int totals_get(const loom_store *s, MDB_txn *txn, totals *t)
{
    MDB_val k = str_key(KEY_TOTALS), v;
    memset(t, 0, sizeof *t);
    int rc = mdb_get(txn, s->sys, &k, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return from_mdb(rc);
    if (v.mv_size != sizeof *t)
        return LOOM_EIO;
    memcpy(t, v.mv_data, sizeof *t);
    return 0;
}

static int totals_put(const loom_store *s, MDB_txn *txn, const totals *t)
{
    MDB_val k = str_key(KEY_TOTALS), v = {sizeof *t, (void *)t};
    return from_mdb(mdb_put(txn, s->sys, &k, &v, 0));
}

/* ---- id lists ------------------------------------------------------------ */

typedef struct id_list {
    uint8_t (*ids)[ID_LEN];
    size_t n, cap;
} id_list;

static int id_list_push(id_list *l, const uint8_t id[ID_LEN])
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        void *p = realloc(l->ids, cap * ID_LEN);
        if (!p)
            return LOOM_ENOMEM;
        l->ids = p;
        l->cap = cap;
    }
    memcpy(l->ids[l->n++], id, ID_LEN);
    return 0;
}

static void id_list_free(id_list *l)
{
    free(l->ids);
    memset(l, 0, sizeof *l);
}

/* ---- write operations ------------------------------------------------------
 * A write_op is one store write: the memory environment's write transaction
 * (the store's writer lock), the disk environment's, opened on demand, the
 * totals being updated, and the disk values to delete once it commits. */

typedef struct write_op {
    loom_store *s;
    MDB_txn *mt;
    MDB_txn *dt;        /* NULL until something is written to the disk tier */
    uint64_t dt_bytes;  /* value bytes written in dt */
    totals t;
    int totals_saved;   /* t already written to mt */
    id_list drops;      /* disk values deleted after mt commits */
    int full_tier;      /* the tier that reported RC_PHYSFULL */
} write_op;

static int op_begin(loom_store *s, write_op *op)
{
    memset(op, 0, sizeof *op);
    op->s = s;
    op->full_tier = TIER_MEM;
    int rc = mem_write_begin(s, &op->mt);
    if (rc != 0)
        return rc;
    rc = totals_get(s, op->mt, &op->t);
    if (rc != 0) {
        mdb_txn_abort(op->mt);
        op->mt = NULL;
    }
    return rc;
}

static void op_abort(write_op *op)
{
    if (op->dt)
        mdb_txn_abort(op->dt);
    if (op->mt)
        mdb_txn_abort(op->mt);
    op->dt = op->mt = NULL;
    id_list_free(&op->drops);
}

static int op_disk_txn(write_op *op, MDB_txn **dt)
{
    if (!op->dt) {
        int rc = txn_begin(op->s->disk, 0, &op->dt);
        if (rc != 0) {
            op->full_tier = TIER_DISK;
            return rc;
        }
        op->dt_bytes = 0;
    }
    *dt = op->dt;
    return 0;
}

/* Makes what was written to the disk tier durable (before the memory
 * transaction that depends on it commits). */
static int op_commit_disk(write_op *op)
{
    if (!op->dt)
        return 0;
    int rc = txn_commit(op->dt);
    op->dt = NULL;
    op->dt_bytes = 0;
    if (rc != 0)
        op->full_tier = TIER_DISK;
    return rc;
}

/* Deletes the disk values of objects the committed op forgot.  It takes the
 * writer lock again and skips an id that was put back on disk meanwhile.
 * Best effort: a value left behind is an orphan the next create removes. */
static void op_drop_disk_values(write_op *op)
{
    loom_store *s = op->s;
    MDB_txn *mt = NULL, *dt = NULL;
    if (op->drops.n == 0 || mem_write_begin(s, &mt) != 0)
        return;
    if (txn_begin(s->disk, 0, &dt) == 0) {
        for (size_t i = 0; i < op->drops.n; i++) {
            meta_rec m;
            if (meta_get(s, mt, op->drops.ids[i], &m) == 0 && m.tier == TIER_DISK)
                continue;
            MDB_val k = id_key(op->drops.ids[i]);
            mdb_del(dt, s->disk_obj, &k, NULL);
        }
        txn_commit(dt);
    }
    mdb_txn_abort(mt);
}

static int op_save_totals(write_op *op)
{
    int rc = totals_put(op->s, op->mt, &op->t);
    op->totals_saved = rc == 0;
    return rc;
}

/* Commits the op: totals, then the disk tier, then the memory tier, then the
 * deferred disk deletions.  The op is finished whatever the result. */
static int op_finish(write_op *op)
{
    int rc = op->totals_saved ? 0 : op_save_totals(op);
    if (rc == 0)
        rc = op_commit_disk(op);
    if (rc != 0) {
        op_abort(op);
        return rc;
    }
    rc = txn_commit(op->mt);
    op->mt = NULL;
    if (rc == 0)
        op_drop_disk_values(op);
    else
        op->full_tier = TIER_MEM;
    id_list_free(&op->drops);
    return rc;
}

/* ---- making room ------------------------------------------------------------
 * One scan of meta collects the candidates, sorted least recently used first:
 * unpinned secondary copies in memory (evicted), primary or pinned objects in
 * memory (spilled, when there is a disk tier) and unpinned secondary copies on
 * disk (evicted to make room on disk).  A plan takes a prefix of each eviction
 * list and a subset of the spill list; nothing is changed until it is complete. */

typedef struct cand {
    uint8_t id[ID_LEN];
    uint8_t chosen;     /* spill list: part of the plan */
    uint64_t size, last_use;
} cand;

typedef struct cand_list {
    cand *v;
    size_t n, cap;
} cand_list;

typedef struct room_plan {
    cand_list mem_evict, mem_spill, disk_evict;
    size_t mem_take, disk_take;   /* prefixes of the eviction lists taken */
    uint64_t disk_left;           /* bytes of disk_evict not taken */
} room_plan;

static int cand_push(cand_list *l, const void *id, const meta_rec *m)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        void *p = realloc(l->v, cap * sizeof *l->v);
        if (!p)
            return LOOM_ENOMEM;
        l->v = p;
        l->cap = cap;
    }
    cand *c = &l->v[l->n++];
    memcpy(c->id, id, ID_LEN);
    c->chosen = 0;
    c->size = m->size;
    c->last_use = m->last_use;
    return 0;
}

static int cand_older(const void *a, const void *b)
{
    uint64_t x = ((const cand *)a)->last_use, y = ((const cand *)b)->last_use;
    return (x > y) - (x < y);
}

static void sort_lru(cand_list *l)
{
    if (l->n > 1)
        qsort(l->v, l->n, sizeof *l->v, cand_older);
}

static void plan_free(room_plan *p)
{
    free(p->mem_evict.v);
    free(p->mem_spill.v);
    free(p->disk_evict.v);
    memset(p, 0, sizeof *p);
}

static void plan_reset(room_plan *p)
{
    p->mem_take = p->disk_take = 0;
    p->disk_left = 0;
    for (size_t i = 0; i < p->disk_evict.n; i++)
        p->disk_left += p->disk_evict.v[i].size;
    for (size_t i = 0; i < p->mem_spill.n; i++)
        p->mem_spill.v[i].chosen = 0;
}

static cand_list *classify(const loom_store *s, room_plan *p, const meta_rec *m)
{
    int evictable = m->pins == 0 && !(m->flags & LOOM_STORE_PRIMARY);
    if (m->tier == TIER_MEM)
        return evictable ? &p->mem_evict : s->disk ? &p->mem_spill : NULL;
    return evictable ? &p->disk_evict : NULL;
}

static int plan_scan(write_op *op, room_plan *p)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(op->mt, op->s->meta, &c);
    if (rc != 0)
        return from_mdb(rc);
    MDB_val k, v;
    int err = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && err == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        meta_rec m;
        if (k.mv_size != ID_LEN || v.mv_size != sizeof m)
            continue;
        memcpy(&m, v.mv_data, sizeof m);
        cand_list *l = classify(op->s, p, &m);
        if (l)
            err = cand_push(l, k.mv_data, &m);
    }
    mdb_cursor_close(c);
    if (err != 0)
        return err;
    if (rc != MDB_NOTFOUND)
        return from_mdb(rc);
    sort_lru(&p->mem_evict);
    sort_lru(&p->mem_spill);
    sort_lru(&p->disk_evict);
    plan_reset(p);
    return 0;
}

/* Takes disk evictions until `bytes` more fit on disk; takes none when even
 * evicting all of them would not make them fit. */
static int plan_disk_fit(room_plan *p, uint64_t *disk_used, uint64_t cap, uint64_t bytes)
{
    if (!fits(sub_floor0(*disk_used, p->disk_left), bytes, cap))
        return 0;
    while (!fits(*disk_used, bytes, cap)) {
        uint64_t size = p->disk_evict.v[p->disk_take++].size;
        *disk_used = sub_floor0(*disk_used, size);
        p->disk_left -= size;
    }
    return 1;
}

/* Plans to free `excess` bytes of the memory tier: evictions first, then
 * spills.  Returns 1 if the plan frees enough. */
static int plan_free_mem(write_op *op, room_plan *p, uint64_t excess)
{
    uint64_t freed = 0;
    while (freed < excess && p->mem_take < p->mem_evict.n)
        freed += p->mem_evict.v[p->mem_take++].size;
    uint64_t disk_used = op->t.used[TIER_DISK];
    for (size_t i = 0; i < p->mem_spill.n && freed < excess; i++) {
        cand *c = &p->mem_spill.v[i];
        if (!plan_disk_fit(p, &disk_used, op->s->spill_capacity, c->size))
            continue;
        disk_used += c->size;
        c->chosen = 1;
        freed += c->size;
    }
    return freed >= excess;
}

/* Plans room for a new object of len bytes; returns the tier it goes to, or
 * LOOM_ESTOREFULL (nothing planned) or another error. */
static int plan_room(write_op *op, room_plan *p, uint64_t len)
{
    const loom_store *s = op->s;
    if (fits(op->t.used[TIER_MEM], len, s->capacity))
        return TIER_MEM;
    if (len > s->capacity && !s->disk)
        return LOOM_ESTOREFULL;
    int rc = plan_scan(op, p);
    if (rc != 0)
        return rc;
    if (len <= s->capacity) {
        if (plan_free_mem(op, p, op->t.used[TIER_MEM] + len - s->capacity))
            return TIER_MEM;
        plan_reset(p);
    }
    uint64_t disk_used = op->t.used[TIER_DISK];
    if (s->disk && plan_disk_fit(p, &disk_used, s->spill_capacity, len))
        return TIER_DISK;
    return LOOM_ESTOREFULL;
}

static int evict_from_mem(write_op *op, const cand *c)
{
    MDB_val k = id_key(c->id);
    int rc = mdb_del(op->mt, op->s->mem_obj, &k, NULL);
    if (rc == 0 || rc == MDB_NOTFOUND)
        rc = mdb_del(op->mt, op->s->meta, &k, NULL);
    if (rc != 0)
        return from_mdb(rc);
    op->t.used[TIER_MEM] = sub_floor0(op->t.used[TIER_MEM], c->size);
    op->t.count[TIER_MEM] = sub_floor0(op->t.count[TIER_MEM], 1);
    op->t.evictions++;
    return 0;
}

/* Forgets the object now; its value is deleted after the memory commit. */
static int evict_from_disk(write_op *op, const cand *c)
{
    MDB_val k = id_key(c->id);
    int rc = from_mdb(mdb_del(op->mt, op->s->meta, &k, NULL));
    if (rc == 0)
        rc = id_list_push(&op->drops, c->id);
    if (rc != 0)
        return rc;
    op->t.used[TIER_DISK] = sub_floor0(op->t.used[TIER_DISK], c->size);
    op->t.count[TIER_DISK] = sub_floor0(op->t.count[TIER_DISK], 1);
    op->t.evictions++;
    return 0;
}

/* Copies the value to the disk tier, then removes it from memory. */
static int spill_one(write_op *op, const cand *c)
{
    loom_store *s = op->s;
    MDB_val k = id_key(c->id), v;
    meta_rec m;
    MDB_txn *dt;
    int rc = meta_get(s, op->mt, c->id, &m);
    if (rc == 0)
        rc = from_mdb(mdb_get(op->mt, s->mem_obj, &k, &v));
    if (rc == LOOM_ENOTFOUND)
        rc = LOOM_EIO;              /* meta without value: not possible */
    if (rc == 0)
        rc = op_disk_txn(op, &dt);
    if (rc != 0)
        return rc;
    rc = from_mdb(mdb_put(dt, s->disk_obj, &k, &v, 0));
    if (rc != 0) {
        op->full_tier = TIER_DISK;
        return rc;
    }
    op->dt_bytes += v.mv_size;
    if (op->dt_bytes >= SPILL_BATCH && (rc = op_commit_disk(op)) != 0)
        return rc;
    rc = from_mdb(mdb_del(op->mt, s->mem_obj, &k, NULL));
    m.tier = TIER_DISK;
    if (rc == 0)
        rc = meta_put(s, op->mt, c->id, &m);
    if (rc != 0)
        return rc;
    op->t.used[TIER_MEM] = sub_floor0(op->t.used[TIER_MEM], c->size);
    op->t.count[TIER_MEM] = sub_floor0(op->t.count[TIER_MEM], 1);
    op->t.used[TIER_DISK] += c->size;
    op->t.count[TIER_DISK]++;
    op->t.spills++;
    return 0;
}

/* Carries out a plan inside op; the spilled copies are committed to the disk
 * tier before returning (so before the memory transaction can commit). */
static int plan_execute(write_op *op, const room_plan *p)
{
    int rc = 0;
    for (size_t i = 0; i < p->mem_take && rc == 0; i++)
        rc = evict_from_mem(op, &p->mem_evict.v[i]);
    for (size_t i = 0; i < p->disk_take && rc == 0; i++)
        rc = evict_from_disk(op, &p->disk_evict.v[i]);
    for (size_t i = 0; i < p->mem_spill.n && rc == 0; i++)
        if (p->mem_spill.v[i].chosen)
            rc = spill_one(op, &p->mem_spill.v[i]);
    if (rc == 0)
        rc = op_commit_disk(op);
    return rc;
}

/* After LMDB itself ran out of room (page overhead, old readers holding
 * freed pages, a full file system) although the accounting allowed the put:
 * free more of `tier` than the put needs, growing with each attempt, and
 * commit that so the freed pages become reusable.  LOOM_ESTOREFULL when there
 * is nothing left to free. */
static int free_more_room(loom_store *s, int tier, uint64_t len, int attempt)
{
    write_op op;
    room_plan p;
    memset(&p, 0, sizeof p);
    int rc = op_begin(s, &op);
    if (rc != 0)
        return rc;
    rc = plan_scan(&op, &p);
    if (rc == 0) {
        uint64_t cap = tier == TIER_MEM ? s->capacity : s->spill_capacity;
        uint64_t amount = len + ((cap / 64) << (2 * attempt));
        if (tier == TIER_MEM) {
            plan_free_mem(&op, &p, amount);
        } else {
            for (uint64_t freed = 0; freed < amount && p.disk_take < p.disk_evict.n;)
                freed += p.disk_evict.v[p.disk_take++].size;
        }
        int planned = p.mem_take || p.disk_take;
        for (size_t i = 0; i < p.mem_spill.n; i++)
            planned |= p.mem_spill.v[i].chosen;
        rc = planned ? plan_execute(&op, &p) : LOOM_ESTOREFULL;
    }
    plan_free(&p);
    if (rc != 0) {
        op_abort(&op);
        return rc;
    }
    return op_finish(&op);
}

/* ---- put ------------------------------------------------------------------ */

/* Records a new object in meta and the totals. */
static int record_object(write_op *op, const uint8_t id[ID_LEN], uint64_t len, int flags, int tier)
{
    meta_rec m;
    memset(&m, 0, sizeof m);
    m.size = len;
    m.flags = (uint32_t)flags & LOOM_STORE_PRIMARY;
    m.last_use = ++op->t.clock;
    m.tier = (uint8_t)tier;
    int rc = meta_put(op->s, op->mt, id, &m);
    if (rc != 0)
        return rc;
    op->t.used[tier] += len;
    op->t.count[tier]++;
    return 0;
}

/* Writes the value (data, or reserves len bytes when data is NULL). */
static int store_value(write_op *op, int tier, const uint8_t id[ID_LEN], const void *data,
                       size_t len, void **buf)
{
    MDB_txn *txn = op->mt;
    MDB_dbi dbi = op->s->mem_obj;
    int rc = 0;
    if (tier == TIER_DISK) {
        rc = op_disk_txn(op, &txn);
        dbi = op->s->disk_obj;
    } else {
        rc = mem_back(op->s, len);
    }
    MDB_val k = id_key(id), v = {len, NULL};
    if (rc == 0)
        rc = from_mdb(mdb_put(txn, dbi, &k, &v, MDB_RESERVE));
    if (rc != 0) {
        op->full_tier = tier;
        return rc;
    }
    if (tier == TIER_MEM)
        populate(op->s, v.mv_data, len);
    if (data)
        memcpy(v.mv_data, data, len);
    if (buf)
        *buf = v.mv_data;
    return 0;
}

/* The first half of a put: makes room and writes (or reserves) the value,
 * leaving op open.  Returns 1 (op closed) if the object already exists. */
static int put_prepare(loom_store *s, const uint8_t id[ID_LEN], const void *data, size_t len,
                       int flags, write_op *op, void **buf, int *tier)
{
    int rc = op_begin(s, op);
    if (rc != 0)
        return rc;
    meta_rec m;
    rc = meta_get(s, op->mt, id, &m);
    if (rc == 0) {
        op_abort(op);
        return 1;
    }
    room_plan p;
    memset(&p, 0, sizeof p);
    if (rc == LOOM_ENOTFOUND)
        rc = plan_room(op, &p, len);
    if (rc >= 0) {
        *tier = rc;
        rc = plan_execute(op, &p);
    }
    plan_free(&p);
    /* The value is written last: LMDB keeps a reserved buffer valid only
     * until the next update in its transaction. */
    if (rc == 0)
        rc = record_object(op, id, len, flags, *tier);
    if (rc == 0)
        rc = op_save_totals(op);
    if (rc == 0)
        rc = store_value(op, *tier, id, data, len, buf);
    if (rc != 0)
        op_abort(op);
    return rc;
}

static int put_once(loom_store *s, const uint8_t id[ID_LEN], const void *data, size_t len,
                    int flags, int *full_tier)
{
    write_op op;
    int tier = TIER_MEM;
    int rc = put_prepare(s, id, data, len, flags, &op, NULL, &tier);
    if (rc == 0)
        rc = op_finish(&op);
    *full_tier = op.full_tier;
    return rc == 1 ? 0 : rc;
}

int loom__store_put(loom_store *s, const uint8_t id[LOOM_STORE_ID_LEN], const void *data,
                    size_t len, int flags)
{
    static const uint8_t empty = 0;
    if (!s || !id || (!data && len))
        return LOOM_EINVAL;
    if (!data)
        data = &empty;      /* NULL would ask LMDB to reserve */
    for (int attempt = 0;; attempt++) {
        int full_tier = TIER_MEM;
        int rc = put_once(s, id, data, len, flags, &full_tier);
        if (rc != RC_PHYSFULL || attempt == MAX_FULL_RETRIES)
            return public_rc(rc);
        rc = free_more_room(s, full_tier, len, attempt);
        if (rc != 0)
            return public_rc(rc);
    }
}

/* ---- reserve / commit / abort ---------------------------------------------- */

enum { TIER_SCRATCH = -1 };   /* reservation of an existing id: a throwaway buffer */

static void reservation_clear(loom_store_reservation *r)
{
    memset(r, 0, sizeof *r);
}

static int reserve_scratch(size_t len, loom_store_reservation *r)
{
    void *p = mmap(NULL, len ? len : 1, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return LOOM_ENOMEM;
    r->data = p;
    r->tier_ = TIER_SCRATCH;
    return 0;
}

int loom__store_reserve(loom_store *s, const uint8_t id[LOOM_STORE_ID_LEN], size_t len,
                        int flags, loom_store_reservation *r)
{
    if (!s || !id || !r)
        return LOOM_EINVAL;
    reservation_clear(r);
    write_op *op = malloc(sizeof *op);
    if (!op)
        return LOOM_ENOMEM;
    int rc, tier = TIER_MEM;
    void *buf = NULL;
    for (int attempt = 0;; attempt++) {
        rc = put_prepare(s, id, NULL, len, flags, op, &buf, &tier);
        if (rc != RC_PHYSFULL || attempt == MAX_FULL_RETRIES)
            break;
        rc = free_more_room(s, op->full_tier, len, attempt);
        if (rc != 0)
            break;
    }
    if (rc == 1) {
        free(op);
        rc = reserve_scratch(len, r);
    } else if (rc == 0) {
        r->data = buf;
        r->txn_ = op;
        r->tier_ = tier;
    } else {
        free(op);
    }
    if (rc != 0)
        return public_rc(rc);
    r->len = len;
    memcpy(r->id_, id, ID_LEN);
    r->flags_ = flags;
    return 0;
}

int loom__store_commit(loom_store *s, loom_store_reservation *r)
{
    if (!s || !r)
        return LOOM_EINVAL;
    if (r->tier_ == TIER_SCRATCH && r->data) {
        munmap(r->data, r->len ? r->len : 1);
        reservation_clear(r);
        return 0;
    }
    write_op *op = r->txn_;
    if (!op)
        return LOOM_EINVAL;
    int rc = op_finish(op);
    free(op);
    reservation_clear(r);
    return public_rc(rc);
}

void loom__store_abort(loom_store *s, loom_store_reservation *r)
{
    if (!r)
        return;
    if (r->tier_ == TIER_SCRATCH && r->data) {
        munmap(r->data, r->len ? r->len : 1);
    } else if (r->txn_) {
        op_abort(r->txn_);
        free(r->txn_);
    }
    reservation_clear(r);
}

/* ---- get -------------------------------------------------------------------- */

int loom__store_get(loom_store *s, const uint8_t id[LOOM_STORE_ID_LEN], loom_store_view *v)
{
    if (!s || !id || !v)
        return LOOM_EINVAL;
    memset(v, 0, sizeof *v);
    MDB_txn *txn;
    int rc = txn_begin(s->mem, MDB_RDONLY, &txn);
    if (rc != 0)
        return public_rc(rc);
    meta_rec m;
    MDB_dbi dbi = s->mem_obj;
    rc = meta_get(s, txn, id, &m);
    if (rc == 0 && m.tier == TIER_DISK) {
        /* The disk copy was committed before this meta record was. */
        mdb_txn_abort(txn);
        txn = NULL;
        rc = s->disk ? txn_begin(s->disk, MDB_RDONLY, &txn) : LOOM_ENOTFOUND;
        dbi = s->disk_obj;
    }
    MDB_val k = id_key(id), val;
    if (rc == 0)
        rc = from_mdb(mdb_get(txn, dbi, &k, &val));
    if (rc != 0) {
        if (txn)
            mdb_txn_abort(txn);
        return public_rc(rc);
    }
    v->data = val.mv_data;
    v->len = val.mv_size;
    v->txn_ = txn;
    return 0;
}

void loom__store_view_release(loom_store *s, loom_store_view *v)
{
    if (!v)
        return;
    if (v->txn_)
        mdb_txn_abort(v->txn_);
    memset(v, 0, sizeof *v);
}

/* ---- contains / delete / pin / touch / stats ----------------------------------- */

int loom__store_contains(loom_store *s, const uint8_t id[LOOM_STORE_ID_LEN], uint64_t *len)
{
    if (!s || !id)
        return LOOM_EINVAL;
    MDB_txn *txn;
    int rc = txn_begin(s->mem, MDB_RDONLY, &txn);
    if (rc != 0)
        return public_rc(rc);
    meta_rec m;
    rc = meta_get(s, txn, id, &m);
    mdb_txn_abort(txn);
    if (rc == LOOM_ENOTFOUND)
        return 0;
    if (rc != 0)
        return public_rc(rc);
    if (len)
        *len = m.size;
    return 1;
}

int loom__store_delete(loom_store *s, const uint8_t id[LOOM_STORE_ID_LEN])
{
    if (!s || !id)
        return LOOM_EINVAL;
    write_op op;
    int rc = op_begin(s, &op);
    if (rc != 0)
        return public_rc(rc);
    meta_rec m;
    MDB_val k = id_key(id);
    rc = meta_get(s, op.mt, id, &m);
    if (rc == 0 && m.tier == TIER_MEM) {
        int del = mdb_del(op.mt, s->mem_obj, &k, NULL);
        rc = del == MDB_NOTFOUND ? 0 : from_mdb(del);
    } else if (rc == 0) {
        rc = id_list_push(&op.drops, id);
    }
    if (rc == 0)
        rc = from_mdb(mdb_del(op.mt, s->meta, &k, NULL));
    if (rc != 0) {
        op_abort(&op);
        return public_rc(rc);
    }
    int tier = m.tier == TIER_DISK ? TIER_DISK : TIER_MEM;
    op.t.used[tier] = sub_floor0(op.t.used[tier], m.size);
    op.t.count[tier] = sub_floor0(op.t.count[tier], 1);
    return public_rc(op_finish(&op));
}

enum meta_change { CHANGE_PIN, CHANGE_UNPIN, CHANGE_TOUCH };

static int apply_change(meta_rec *m, enum meta_change change, totals *t)
{
    switch (change) {
    case CHANGE_PIN:
        if (m->pins == UINT32_MAX)
            return LOOM_EFULL;
        m->pins++;
        m->last_use = ++t->clock;
        return 0;
    case CHANGE_UNPIN:
        if (m->pins == 0)
            return LOOM_ESTATE;
        m->pins--;
        return 0;
    case CHANGE_TOUCH:
        m->last_use = ++t->clock;
        return 0;
    }
    return LOOM_EINVAL;
}

static int change_meta(loom_store *s, const uint8_t id[ID_LEN], enum meta_change change)
{
    if (!s || !id)
        return LOOM_EINVAL;
    write_op op;
    int rc = op_begin(s, &op);
    if (rc != 0)
        return public_rc(rc);
    meta_rec m;
    rc = meta_get(s, op.mt, id, &m);
    if (rc == 0)
        rc = apply_change(&m, change, &op.t);
    if (rc == 0)
        rc = meta_put(s, op.mt, id, &m);
    if (rc != 0) {
        op_abort(&op);
        return public_rc(rc);
    }
    return public_rc(op_finish(&op));
}

int loom__store_pin(loom_store *s, const uint8_t id[LOOM_STORE_ID_LEN])
{
    return change_meta(s, id, CHANGE_PIN);
}

int loom__store_unpin(loom_store *s, const uint8_t id[LOOM_STORE_ID_LEN])
{
    return change_meta(s, id, CHANGE_UNPIN);
}

int loom__store_touch(loom_store *s, const uint8_t id[LOOM_STORE_ID_LEN])
{
    return change_meta(s, id, CHANGE_TOUCH);
}

int loom__store_stats_get(loom_store *s, loom_store_stats *st)
{
    if (!s || !st)
        return LOOM_EINVAL;
    MDB_txn *txn;
    int rc = txn_begin(s->mem, MDB_RDONLY, &txn);
    if (rc != 0)
        return public_rc(rc);
    totals t;
    rc = totals_get(s, txn, &t);
    mdb_txn_abort(txn);
    if (rc != 0)
        return public_rc(rc);
    memset(st, 0, sizeof *st);
    st->capacity = s->capacity;
    st->used = t.used[TIER_MEM];
    st->spill_capacity = s->spill_capacity;
    st->spill_used = t.used[TIER_DISK];
    st->objects = t.count[TIER_MEM] + t.count[TIER_DISK];
    st->spilled_objects = t.count[TIER_DISK];
    st->evictions = t.evictions;
    st->spills = t.spills;
    return 0;
}

/* ---- open / close ------------------------------------------------------------------ */

/* Drops meta records whose value is missing, resets pins (the processes that
 * held them are gone when the store is created anew) and recomputes the
 * totals; the counters restart from zero. */
static int rebuild_meta(loom_store *s, MDB_txn *mt, MDB_txn *dt, totals *t)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(mt, s->meta, &c);
    if (rc != 0)
        return from_mdb(rc);
    memset(t, 0, sizeof *t);
    MDB_val k, v, val;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        meta_rec m;
        int ok = k.mv_size == ID_LEN && v.mv_size == sizeof m;
        if (ok) {
            memcpy(&m, v.mv_data, sizeof m);
            MDB_txn *vt = m.tier == TIER_MEM ? mt : dt;
            MDB_dbi dbi = m.tier == TIER_MEM ? s->mem_obj : s->disk_obj;
            ok = m.tier <= TIER_DISK && vt && mdb_get(vt, dbi, &k, &val) == 0;
        }
        if (!ok) {
            if ((rc = mdb_cursor_del(c, 0)) != 0)
                break;
            continue;
        }
        if (m.pins) {
            m.pins = 0;
            MDB_val nv = {sizeof m, &m};
            if ((rc = mdb_cursor_put(c, &k, &nv, MDB_CURRENT)) != 0)
                break;
        }
        t->used[m.tier] += m.size;
        t->count[m.tier]++;
        if (m.last_use > t->clock)
            t->clock = m.last_use;
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : from_mdb(rc);
}

/* Deletes values of `tier` that meta does not place in that tier. */
static int sweep_orphans(loom_store *s, MDB_txn *mt, MDB_txn *txn, MDB_dbi dbi, int tier)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, dbi, &c);
    if (rc != 0)
        return from_mdb(rc);
    MDB_val k, v;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        meta_rec m;
        int keep = k.mv_size == ID_LEN && meta_get(s, mt, k.mv_data, &m) == 0 && m.tier == tier;
        if (!keep && (rc = mdb_cursor_del(c, 0)) != 0)
            break;
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : from_mdb(rc);
}

static int config_put(loom_store *s, MDB_txn *mt, const char *spill_dir)
{
    size_t dir_len = spill_dir ? strlen(spill_dir) : 0;
    if (dir_len > UINT32_MAX)
        return LOOM_EINVAL;
    config_rec c;
    memset(&c, 0, sizeof c);
    c.magic = CONFIG_MAGIC;
    c.version = CONFIG_VERSION;
    c.spill_dir_len = (uint32_t)dir_len;
    c.capacity = s->capacity;
    c.spill_capacity = s->spill_capacity;
    c.mem_mapsize = env_map_size(s->mem);
    c.spill_mapsize = s->disk ? env_map_size(s->disk) : 0;
    MDB_val k = str_key(KEY_CONFIG), v = {sizeof c + dir_len, NULL};
    int rc = mdb_put(mt, s->sys, &k, &v, MDB_RESERVE);
    if (rc != 0)
        return from_mdb(rc);
    memcpy(v.mv_data, &c, sizeof c);
    if (dir_len)
        memcpy((char *)v.mv_data + sizeof c, spill_dir, dir_len);
    return 0;
}

/* Reads the creator's config; *spill_dir is malloc'd (NULL: no disk tier). */
static int config_get(loom_store *s, MDB_txn *txn, char **spill_dir)
{
    MDB_val k = str_key(KEY_CONFIG), v;
    config_rec c;
    *spill_dir = NULL;
    int rc = mdb_get(txn, s->sys, &k, &v);
    if (rc != 0)
        return from_mdb(rc);
    if (v.mv_size < sizeof c)
        return LOOM_EIO;
    memcpy(&c, v.mv_data, sizeof c);
    if (c.magic != CONFIG_MAGIC || c.version != CONFIG_VERSION ||
        v.mv_size != sizeof c + c.spill_dir_len)
        return LOOM_EIO;
    s->capacity = c.capacity;
    s->spill_capacity = c.spill_capacity;
    if (c.spill_dir_len) {
        *spill_dir = malloc((size_t)c.spill_dir_len + 1);
        if (!*spill_dir)
            return LOOM_ENOMEM;
        memcpy(*spill_dir, (const char *)v.mv_data + sizeof c, c.spill_dir_len);
        (*spill_dir)[c.spill_dir_len] = '\0';
    }
    return 0;
}

static int open_mem_dbis(loom_store *s, MDB_txn *mt, unsigned flags)
{
    int rc = mdb_dbi_open(mt, "obj", flags, &s->mem_obj);
    if (rc == 0)
        rc = mdb_dbi_open(mt, "meta", flags, &s->meta);
    if (rc == 0)
        rc = mdb_dbi_open(mt, "sys", flags, &s->sys);
    return from_mdb(rc);
}

/* The creator's initialisation, in one memory and one disk transaction. */
static int init_created(loom_store *s, const char *spill_dir)
{
    MDB_txn *mt = NULL, *dt = NULL;
    totals t;
    int rc = mem_write_begin(s, &mt);
    if (rc == 0 && s->disk)
        rc = txn_begin(s->disk, 0, &dt);
    if (rc == 0)
        rc = open_mem_dbis(s, mt, MDB_CREATE);
    if (rc == 0 && dt)
        rc = from_mdb(mdb_dbi_open(dt, "obj", MDB_CREATE, &s->disk_obj));
    if (rc == 0)
        rc = rebuild_meta(s, mt, dt, &t);
    if (rc == 0)
        rc = sweep_orphans(s, mt, mt, s->mem_obj, TIER_MEM);
    if (rc == 0 && dt)
        rc = sweep_orphans(s, mt, dt, s->disk_obj, TIER_DISK);
    if (rc == 0)
        rc = totals_put(s, mt, &t);
    if (rc == 0)
        rc = config_put(s, mt, spill_dir);
    if (rc == 0) {
        rc = txn_commit(mt);
        mt = NULL;
    }
    if (rc == 0 && dt) {
        rc = txn_commit(dt);
        dt = NULL;
    }
    if (dt)
        mdb_txn_abort(dt);
    if (mt)
        mdb_txn_abort(mt);
    return public_rc(rc);
}

static int open_created(loom_store *s, const loom_store_opts *o)
{
    int rc = mkdir_p(o->mem_dir);
    if (rc == 0 && o->spill_dir)
        rc = mkdir_p(o->spill_dir);
    if (rc != 0)
        return rc;
    s->capacity = clamp_to_free_space(o->mem_dir, o->capacity);
    if (o->spill_dir) {
        uint64_t want = o->spill_capacity;
        if (!want)
            want = o->capacity > UINT64_MAX / 4 ? UINT64_MAX : o->capacity * 4;
        s->spill_capacity = clamp_to_free_space(o->spill_dir, want);
    }
    rc = env_open(o->mem_dir, map_size_for(s->capacity), MDB_WRITEMAP, &s->mem);
    if (rc == 0)
        rc = mem_map_init(s);
    if (rc == 0 && o->spill_dir)
        rc = env_open(o->spill_dir, map_size_for(s->spill_capacity), 0, &s->disk);
    if (rc == 0)
        rc = init_created(s, o->spill_dir);
    return rc;
}

static int open_attached(loom_store *s, const loom_store_opts *o)
{
    int exists = 0;
    int rc = data_file_exists(o->mem_dir, &exists);
    if (rc == 0 && !exists)
        rc = LOOM_ENOTFOUND;
    if (rc == 0)
        rc = env_open(o->mem_dir, 0, MDB_WRITEMAP, &s->mem);
    if (rc == 0)
        rc = mem_map_init(s);
    if (rc != 0)
        return rc;
    MDB_txn *txn;
    char *recorded_spill = NULL;
    rc = txn_begin(s->mem, MDB_RDONLY, &txn);
    if (rc != 0)
        return public_rc(rc);
    rc = open_mem_dbis(s, txn, 0);
    if (rc == 0)
        rc = config_get(s, txn, &recorded_spill);
    if (rc == 0)
        rc = from_mdb(mdb_txn_commit(txn));   /* keeps the dbi handles */
    else
        mdb_txn_abort(txn);
    const char *spill_dir = o->spill_dir ? o->spill_dir : recorded_spill;
    if (rc == 0 && recorded_spill)
        rc = env_open(spill_dir, 0, 0, &s->disk);
    if (rc == 0 && s->disk)
        rc = txn_begin(s->disk, MDB_RDONLY, &txn);
    if (rc == 0 && s->disk) {
        rc = from_mdb(mdb_dbi_open(txn, "obj", 0, &s->disk_obj));
        if (rc == 0)
            rc = from_mdb(mdb_txn_commit(txn));
        else
            mdb_txn_abort(txn);
    }
    free(recorded_spill);
    return public_rc(rc);
}

int loom__store_open(const loom_store_opts *opts, loom_store **out)
{
    if (!out)
        return LOOM_EINVAL;
    *out = NULL;
    if (!opts || !opts->mem_dir || !*opts->mem_dir || (opts->spill_dir && !*opts->spill_dir))
        return LOOM_EINVAL;
    if (opts->create && opts->capacity == 0)
        return LOOM_EINVAL;
    loom_store *s = calloc(1, sizeof *s);
    if (!s)
        return LOOM_ENOMEM;
    int rc = opts->create ? open_created(s, opts) : open_attached(s, opts);
    if (rc != 0) {
        loom__store_close(&s);
        return rc;
    }
    *out = s;
    return 0;
}

void loom__store_close(loom_store **sp)
{
    if (!sp || !*sp)
        return;
    loom_store *s = *sp;
    if (s->disk)
        mdb_env_close(s->disk);
    if (s->mem)
        mdb_env_close(s->mem);
    free(s);
    *sp = NULL;
}
