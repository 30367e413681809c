/* scheduler/headdb.c — LMDB persistence of the head's tables (see headdb.h). */
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include "loom/loom.h"
#include "runtime/log.h"
#include "runtime/util.h"
#include "scheduler/headdb.h"

struct headdb {
    MDB_env *env;
    MDB_dbi dbi[HEADDB_NTABLES];
    MDB_txn *txn;       /* open write transaction of this loop turn, or NULL */
    int failed;         /* a write in this turn failed: abort it */
};

static const char *table_names[HEADDB_NTABLES] = {"nodes", "jobs", "tasks", "objects", "kv"};

int loom__headdb_open(const char *dir, headdb **out)
{
    char path[4096];
    loom__snprintf(path, sizeof(path), "%s/head.lmdb", dir);
    if (loom__mkdir_p(path)) return LOOM_ESYS;
    headdb *db = calloc(1, sizeof(*db));
    if (!db) return LOOM_ENOMEM;
    int rc = mdb_env_create(&db->env);
    if (!rc) rc = mdb_env_set_maxdbs(db->env, HEADDB_NTABLES + 2);
    if (!rc) rc = mdb_env_set_mapsize(db->env, (size_t)16 << 30);
    /* not MDB_WRITEMAP: it grows the file to the whole map size at once (a
       16 GiB sparse file in the state dir, which some file systems and
       quotas count in full); commits are grouped per batch of messages */
    if (!rc) rc = mdb_env_open(db->env, path, MDB_NOSYNC | MDB_NOTLS, 0600);
    MDB_txn *txn = NULL;
    if (!rc) rc = mdb_txn_begin(db->env, NULL, 0, &txn);
    for (int i = 0; !rc && i < HEADDB_NTABLES; i++)
        rc = mdb_dbi_open(txn, table_names[i], MDB_CREATE, &db->dbi[i]);
    if (!rc) rc = mdb_txn_commit(txn);
    else if (txn) mdb_txn_abort(txn);
    if (rc) {
        LOG_ERROR("head tables at %s: %s", path, mdb_strerror(rc));
        if (db->env) mdb_env_close(db->env);
        free(db);
        return LOOM_EIO;
    }
    *out = db;
    return LOOM_OK;
}

static int begin(headdb *db)
{
    if (db->txn) return 0;
    int rc = mdb_txn_begin(db->env, NULL, 0, &db->txn);
    if (rc) {
        db->txn = NULL;
        return rc;
    }
    db->failed = 0;
    return 0;
}

int loom__headdb_put(headdb *db, int table, const void *key, size_t klen, const void *val, size_t vlen)
{
    if (begin(db)) return LOOM_EIO;
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    int rc = mdb_put(db->txn, db->dbi[table], &k, &v, 0);
    if (rc) {
        db->failed = 1;
        LOG_ERROR("head table %s: put: %s", table_names[table], mdb_strerror(rc));
        return LOOM_EIO;
    }
    return LOOM_OK;
}

int loom__headdb_del(headdb *db, int table, const void *key, size_t klen)
{
    if (begin(db)) return LOOM_EIO;
    MDB_val k = {klen, (void *)key};
    int rc = mdb_del(db->txn, db->dbi[table], &k, NULL);
    if (rc && rc != MDB_NOTFOUND) {
        db->failed = 1;
        return LOOM_EIO;
    }
    return LOOM_OK;
}

int loom__headdb_commit(headdb *db)
{
    if (!db || !db->txn) return LOOM_OK;
    int rc;
    if (db->failed) {
        mdb_txn_abort(db->txn);
        rc = MDB_BAD_TXN;
    } else {
        rc = mdb_txn_commit(db->txn);
    }
    db->txn = NULL;
    if (rc) {
        LOG_ERROR("head tables: commit failed: %s", mdb_strerror(rc));
        return LOOM_EIO;
    }
    return LOOM_OK;
}

int loom__headdb_sync(headdb *db)
{
    return mdb_env_sync(db->env, 1) ? LOOM_EIO : LOOM_OK;
}

long loom__headdb_count(headdb *db, int table)
{
    MDB_txn *txn;
    MDB_stat st;
    if (mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn)) return -1;
    int rc = mdb_stat(txn, db->dbi[table], &st);
    mdb_txn_abort(txn);
    return rc ? -1 : (long)st.ms_entries;
}

void loom__headdb_close(headdb **pdb)
{
    if (!pdb || !*pdb) return;
    headdb *db = *pdb;
    loom__headdb_commit(db);
    mdb_env_sync(db->env, 1);
    mdb_env_close(db->env);
    free(db);
    *pdb = NULL;
}

int loom__headdb_foreach(headdb *db, int table,
                         int (*fn)(void *arg, const void *key, size_t klen, const void *val, size_t vlen), void *arg)
{
    if (!db || table < 0 || table >= HEADDB_NTABLES) return LOOM_EINVAL;
    loom__headdb_commit(db);
    MDB_txn *txn;
    if (mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn)) return LOOM_EIO;
    MDB_cursor *cur;
    if (mdb_cursor_open(txn, db->dbi[table], &cur)) {
        mdb_txn_abort(txn);
        return LOOM_EIO;
    }
    MDB_val k, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0) {
        if (fn(arg, k.mv_data, k.mv_size, v.mv_data, v.mv_size)) break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return LOOM_OK;
}
