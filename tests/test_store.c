/* tests/test_store.c — the object store (objectstore/store.h): put/get, zero
 * copy, immutability, reserve, pins, LRU eviction, spilling, the size limits,
 * two processes sharing one store, and LMDB running out of map. */
#include "objectstore/store.h"

#include "loom/loom.h"
#include "runtime/util.h"
#include "tests/testutil.h"

#include <stdint.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#define KIB ((size_t)1024)
#define MIB (1024 * KIB)

static char root[96]; /* short: tier paths are built in 256-byte buffers */

static void make_id(uint8_t id[LOOM_STORE_ID_LEN], int n)
{
    memset(id, 0, LOOM_STORE_ID_LEN);
    id[0] = 0xab;
    memcpy(id + LOOM_STORE_ID_LEN - sizeof n, &n, sizeof n);
}

static void fill(uint8_t *buf, size_t len, int seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(i * 31u + (unsigned)seed * 7u);
}

static int check_fill(const void *data, size_t len, int seed)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++)
        if (p[i] != (uint8_t)(i * 31u + (unsigned)seed * 7u))
            return 0;
    return 1;
}

/* A directory name under root for one test's tier. */
static const char *dir_for(char *buf, size_t n, const char *test, const char *tier)
{
    snprintf(buf, n, "%s/%s/%s", root, test, tier);
    return buf;
}

static loom_store *open_store(const char *test, uint64_t cap, int spill, uint64_t spill_cap)
{
    char mem[256], disk[256];
    loom_store_opts o = {dir_for(mem, sizeof mem, test, "mem"),
                         spill ? dir_for(disk, sizeof disk, test, "disk") : NULL,
                         cap, spill_cap, 1};
    loom_store *s = NULL;
    int rc = loom__store_open(&o, &s);
    if (rc != 0)
        fprintf(stderr, "open %s: %s\n", test, loom_strerror(rc));
    REQUIRE(rc == 0 && s);
    return s;
}

/* Puts `len` bytes with pattern `n` under id n. */
static int put_n(loom_store *s, int n, size_t len, int flags)
{
    uint8_t id[LOOM_STORE_ID_LEN];
    uint8_t *buf = malloc(len ? len : 1);
    REQUIRE(buf);
    make_id(id, n);
    fill(buf, len, n);
    int rc = loom__store_put(s, id, buf, len, flags);
    free(buf);
    return rc;
}

static int has_n(loom_store *s, int n)
{
    uint8_t id[LOOM_STORE_ID_LEN];
    make_id(id, n);
    return loom__store_contains(s, id, NULL);
}

/* 1 if object n is readable and holds its pattern. */
static int get_ok(loom_store *s, int n, size_t len)
{
    uint8_t id[LOOM_STORE_ID_LEN];
    loom_store_view v;
    make_id(id, n);
    if (loom__store_get(s, id, &v) != 0)
        return 0;
    int ok = v.len == len && check_fill(v.data, v.len, n);
    loom__store_view_release(s, &v);
    return ok;
}

static loom_store_stats stats_of(loom_store *s)
{
    loom_store_stats st;
    memset(&st, 0, sizeof st);
    CHECK_RC(loom__store_stats_get(s, &st), 0);
    return st;
}

static void test_roundtrip(void)
{
    loom_store *s = open_store("roundtrip", 4 * MIB, 0, 0);
    uint8_t id[LOOM_STORE_ID_LEN], other[LOOM_STORE_ID_LEN];
    make_id(id, 1);
    make_id(other, 2);
    const char hello[] = "hello, store";

    CHECK_RC(loom__store_put(s, id, hello, sizeof hello, 0), 0);
    loom_store_view a, b;
    CHECK_RC(loom__store_get(s, id, &a), 0);
    CHECK_RC(loom__store_get(s, id, &b), 0);
    CHECK(a.len == sizeof hello && memcmp(a.data, hello, sizeof hello) == 0);
    CHECK(a.data == b.data);                       /* zero copy: both map the value */
    CHECK(a.data != (const void *)hello);
    loom__store_view_release(s, &b);
    CHECK(b.data == NULL && b.txn_ == NULL);

    /* immutable: a second put is a no-op */
    CHECK_RC(loom__store_put(s, id, "different", 9, 0), 0);
    loom_store_view c;
    CHECK_RC(loom__store_get(s, id, &c), 0);
    CHECK(c.len == sizeof hello && memcmp(c.data, hello, sizeof hello) == 0);
    loom__store_view_release(s, &c);

    uint64_t len = 0;
    CHECK_RC(loom__store_contains(s, id, &len), 1);
    CHECK(len == sizeof hello);
    CHECK_RC(loom__store_contains(s, other, &len), 0);
    CHECK_RC(loom__store_get(s, other, &c), LOOM_ENOTFOUND);

    loom_store_stats st = stats_of(s);
    CHECK(st.objects == 1 && st.used == sizeof hello && st.capacity == 4 * MIB);

    /* delete: gone for new readers; a view taken before stays valid */
    CHECK_RC(loom__store_delete(s, id), 0);
    CHECK_RC(loom__store_contains(s, id, NULL), 0);
    CHECK_RC(loom__store_get(s, id, &c), LOOM_ENOTFOUND);
    CHECK_RC(loom__store_delete(s, id), LOOM_ENOTFOUND);
    CHECK(memcmp(a.data, hello, sizeof hello) == 0);
    loom__store_view_release(s, &a);
    st = stats_of(s);
    CHECK(st.objects == 0 && st.used == 0);

    /* empty objects, NULL data with zero length */
    CHECK_RC(loom__store_put(s, other, NULL, 0, 0), 0);
    CHECK_RC(loom__store_get(s, other, &c), 0);
    CHECK(c.len == 0);
    loom__store_view_release(s, &c);
    CHECK_RC(loom__store_contains(s, other, &len), 1);
    CHECK(len == 0);

    /* bad arguments */
    CHECK_RC(loom__store_put(NULL, id, hello, 1, 0), LOOM_EINVAL);
    CHECK_RC(loom__store_put(s, NULL, hello, 1, 0), LOOM_EINVAL);
    CHECK_RC(loom__store_put(s, id, NULL, 1, 0), LOOM_EINVAL);
    CHECK_RC(loom__store_get(s, id, NULL), LOOM_EINVAL);
    CHECK_RC(loom__store_stats_get(s, NULL), LOOM_EINVAL);
    loom__store_view_release(s, NULL);
    loom__store_close(&s);
    CHECK(s == NULL);
    loom__store_close(&s);
    loom__store_close(NULL);
}

static void test_reserve(void)
{
    loom_store *s = open_store("reserve", 1 * MIB, 1, 4 * MIB);
    uint8_t id[LOOM_STORE_ID_LEN];
    loom_store_reservation r;

    make_id(id, 10);
    CHECK_RC(loom__store_reserve(s, id, 1000, 0, &r), 0);
    REQUIRE(r.data && r.len == 1000);
    fill(r.data, r.len, 10);
    CHECK_RC(loom__store_commit(s, &r), 0);
    CHECK(get_ok(s, 10, 1000));
    CHECK_RC(loom__store_commit(s, &r), LOOM_EINVAL);   /* already committed */

    make_id(id, 11);
    CHECK_RC(loom__store_reserve(s, id, 500, 0, &r), 0);
    fill(r.data, r.len, 99);
    loom__store_abort(s, &r);
    CHECK_RC(loom__store_contains(s, id, NULL), 0);
    loom__store_abort(s, &r);                            /* harmless twice */

    /* reserving an existing id gives a throwaway buffer; the object stays */
    make_id(id, 10);
    CHECK_RC(loom__store_reserve(s, id, 1000, 0, &r), 0);
    REQUIRE(r.data);
    memset(r.data, 0, r.len);
    CHECK_RC(loom__store_commit(s, &r), 0);
    CHECK(get_ok(s, 10, 1000));

    /* larger than the memory tier: reserved in the disk tier */
    make_id(id, 12);
    CHECK_RC(loom__store_reserve(s, id, 2 * MIB, LOOM_STORE_PRIMARY, &r), 0);
    REQUIRE(r.data);
    fill(r.data, r.len, 12);
    CHECK_RC(loom__store_commit(s, &r), 0);
    CHECK(get_ok(s, 12, 2 * MIB));
    loom_store_stats st = stats_of(s);
    CHECK(st.objects == 2 && st.spilled_objects == 1);
    CHECK(st.used == 1000 && st.spill_used == 2 * MIB);

    /* a reservation that cannot fit anywhere */
    make_id(id, 13);
    CHECK_RC(loom__store_reserve(s, id, 8 * MIB, 0, &r), LOOM_ESTOREFULL);
    CHECK(r.data == NULL);
    loom__store_close(&s);
}

static void test_pins(void)
{
    loom_store *s = open_store("pins", 1 * MIB, 0, 0);
    uint8_t id[LOOM_STORE_ID_LEN];
    make_id(id, 20);
    CHECK_RC(loom__store_pin(s, id), LOOM_ENOTFOUND);
    CHECK_RC(loom__store_unpin(s, id), LOOM_ENOTFOUND);
    CHECK_RC(loom__store_touch(s, id), LOOM_ENOTFOUND);
    CHECK_RC(put_n(s, 20, 100, 0), 0);
    CHECK_RC(loom__store_unpin(s, id), LOOM_ESTATE);
    CHECK_RC(loom__store_pin(s, id), 0);
    CHECK_RC(loom__store_pin(s, id), 0);
    CHECK_RC(loom__store_unpin(s, id), 0);
    CHECK_RC(loom__store_unpin(s, id), 0);
    CHECK_RC(loom__store_unpin(s, id), LOOM_ESTATE);
    CHECK_RC(loom__store_touch(s, id), 0);
    CHECK_RC(loom__store_pin(NULL, id), LOOM_EINVAL);
    loom__store_close(&s);
}

static void test_lru_eviction(void)
{
    const size_t sz = 300 * KIB;
    loom_store *s = open_store("lru", 1 * MIB, 0, 0);
    CHECK_RC(put_n(s, 30, sz, 0), 0);
    CHECK_RC(put_n(s, 31, sz, 0), 0);
    CHECK_RC(put_n(s, 32, sz, 0), 0);
    uint8_t id[LOOM_STORE_ID_LEN];
    make_id(id, 30);
    CHECK_RC(loom__store_touch(s, id), 0);           /* 31 is now the oldest */

    CHECK_RC(put_n(s, 33, sz, 0), 0);
    CHECK_RC(has_n(s, 31), 0);
    CHECK_RC(has_n(s, 30), 1);
    CHECK_RC(has_n(s, 32), 1);
    CHECK(get_ok(s, 33, sz));
    loom_store_stats st = stats_of(s);
    CHECK(st.evictions == 1 && st.objects == 3 && st.used == 3 * sz);

    /* pinned (32, the oldest) and primary (34) objects are not evicted */
    make_id(id, 32);
    CHECK_RC(loom__store_pin(s, id), 0);
    make_id(id, 30);
    CHECK_RC(loom__store_touch(s, id), 0);           /* LRU order: 33, 32 (pinned), 30 */
    CHECK_RC(put_n(s, 34, sz, LOOM_STORE_PRIMARY), 0);
    CHECK_RC(has_n(s, 32), 1);
    CHECK_RC(has_n(s, 33), 0);
    CHECK_RC(has_n(s, 30), 1);
    /* 600K would need 30 and 32 evicted, but 32 is pinned and 34 primary */
    CHECK_RC(put_n(s, 35, 2 * sz, 0), LOOM_ESTOREFULL);
    CHECK_RC(has_n(s, 30), 1);                       /* a refused put changes nothing */
    CHECK_RC(put_n(s, 35, sz, 0), 0);
    CHECK_RC(has_n(s, 30), 0);
    st = stats_of(s);
    CHECK(st.evictions == 3 && st.objects == 3 && st.spills == 0);
    CHECK(get_ok(s, 32, sz) && get_ok(s, 34, sz) && get_ok(s, 35, sz));
    loom__store_close(&s);
}

static void test_spill(void)
{
    const size_t sz = 300 * KIB;
    loom_store *s = open_store("spill", 1 * MIB, 1, 0);
    loom_store_stats st = stats_of(s);
    CHECK(st.spill_capacity == 4 * MIB);

    CHECK_RC(put_n(s, 40, sz, LOOM_STORE_PRIMARY), 0);
    CHECK_RC(put_n(s, 41, sz, LOOM_STORE_PRIMARY), 0);
    CHECK_RC(put_n(s, 42, sz, 0), 0);
    uint8_t id[LOOM_STORE_ID_LEN];
    make_id(id, 42);
    CHECK_RC(loom__store_pin(s, id), 0);             /* pinned secondary: spilled, not evicted */

    CHECK_RC(put_n(s, 43, sz, LOOM_STORE_PRIMARY), 0);  /* spills 40 */
    st = stats_of(s);
    CHECK(st.spills == 1 && st.spilled_objects == 1 && st.evictions == 0);
    CHECK(st.used == 3 * sz && st.spill_used == sz && st.objects == 4);
    uint64_t len = 0;
    CHECK_RC(loom__store_contains(s, (make_id(id, 40), id), &len), 1);
    CHECK(len == sz);
    CHECK(get_ok(s, 40, sz));

    CHECK_RC(put_n(s, 44, 2 * sz, 0), 0);            /* spills 41 and 42 */
    st = stats_of(s);
    CHECK(st.spills == 3 && st.spilled_objects == 3);
    CHECK(get_ok(s, 41, sz) && get_ok(s, 42, sz) && get_ok(s, 43, sz) && get_ok(s, 44, 2 * sz));

    /* a view of a spilled object stays valid while it is deleted */
    loom_store_view v;
    make_id(id, 41);
    CHECK_RC(loom__store_get(s, id, &v), 0);
    CHECK_RC(loom__store_delete(s, id), 0);
    CHECK(v.len == sz && check_fill(v.data, v.len, 41));
    loom__store_view_release(s, &v);
    CHECK_RC(has_n(s, 41), 0);
    st = stats_of(s);
    CHECK(st.spilled_objects == 2 && st.spill_used == 2 * sz);

    /* larger than the memory tier: straight to disk, nothing evicted or spilled */
    CHECK_RC(put_n(s, 45, 2 * MIB, 0), 0);
    loom_store_stats after = stats_of(s);
    CHECK(after.spills == st.spills && after.evictions == st.evictions);
    CHECK(after.spill_used == st.spill_used + 2 * MIB && after.used == st.used);
    CHECK(get_ok(s, 45, 2 * MIB));

    /* the disk tier evicts its own unpinned secondary copies (45) when full */
    CHECK_RC(put_n(s, 46, 3 * MIB, LOOM_STORE_PRIMARY), 0);
    CHECK_RC(has_n(s, 45), 0);
    CHECK(get_ok(s, 46, 3 * MIB) && get_ok(s, 40, sz) && get_ok(s, 42, sz));
    loom__store_close(&s);
}

static void test_full(void)
{
    const size_t sz = 300 * KIB;
    loom_store *s = open_store("full", 1 * MIB, 0, 0);
    CHECK_RC(put_n(s, 50, sz, LOOM_STORE_PRIMARY), 0);
    CHECK_RC(put_n(s, 51, sz, LOOM_STORE_PRIMARY), 0);
    CHECK_RC(put_n(s, 52, sz, 0), 0);
    uint8_t id[LOOM_STORE_ID_LEN];
    make_id(id, 52);
    CHECK_RC(loom__store_pin(s, id), 0);
    loom_store_stats before = stats_of(s);
    CHECK_RC(put_n(s, 53, sz, 0), LOOM_ESTOREFULL);     /* nothing evictable, no disk */
    CHECK_RC(put_n(s, 54, 2 * MIB, 0), LOOM_ESTOREFULL);
    loom_store_stats after = stats_of(s);
    CHECK(memcmp(&before, &after, sizeof before) == 0);
    CHECK_RC(has_n(s, 53), 0);
    CHECK(get_ok(s, 50, sz) && get_ok(s, 51, sz) && get_ok(s, 52, sz));
    loom__store_close(&s);

    /* with a disk tier too small for it */
    s = open_store("full2", 1 * MIB, 1, 1 * MIB);
    CHECK_RC(put_n(s, 55, sz, LOOM_STORE_PRIMARY), 0);
    CHECK_RC(put_n(s, 56, 2 * MIB, LOOM_STORE_PRIMARY), LOOM_ESTOREFULL);
    CHECK_RC(put_n(s, 57, 900 * KIB, LOOM_STORE_PRIMARY), 0);   /* spills 55 */
    before = stats_of(s);
    CHECK(before.spills == 1);
    /* memory: 57 (900K); disk: 55 (300K).  1000K fits nowhere: spilling 57
     * would overflow the disk, and the disk cannot take it either. */
    CHECK_RC(put_n(s, 58, 1000 * KIB, LOOM_STORE_PRIMARY), LOOM_ESTOREFULL);
    after = stats_of(s);
    CHECK(memcmp(&before, &after, sizeof before) == 0);
    CHECK(get_ok(s, 55, sz) && get_ok(s, 57, 900 * KIB));
    loom__store_close(&s);
}

/* A view held by a reader keeps LMDB from reusing the pages freed after it,
 * so a stream of puts eventually finds the map full although the accounting
 * allows them: the puts must fail cleanly and work again once it is released. */
static void test_map_full(void)
{
    const size_t sz = 256 * KIB;
    loom_store *s = open_store("mapfull", 1 * MIB, 0, 0);
    CHECK_RC(put_n(s, 60, 100, 0), 0);
    uint8_t id[LOOM_STORE_ID_LEN];
    loom_store_view v;
    make_id(id, 60);
    CHECK_RC(loom__store_get(s, id, &v), 0);
    int ok = 0, full = 0, other = 0;
    for (int i = 0; i < 400; i++) {
        int rc = put_n(s, 1000 + i, sz, 0);
        ok += rc == 0;
        full += rc == LOOM_ESTOREFULL;
        other += rc != 0 && rc != LOOM_ESTOREFULL;
    }
    CHECK(ok > 0 && full > 0 && other == 0);
    CHECK(v.len == 100 && check_fill(v.data, v.len, 60));
    loom__store_view_release(s, &v);
    CHECK_RC(put_n(s, 2000, sz, 0), 0);
    CHECK(get_ok(s, 2000, sz));
    loom_store_stats st = stats_of(s);
    CHECK(st.used <= st.capacity);
    loom__store_close(&s);
}

/* The creator puts A (and spills B); a forked process attaches with create=0,
 * reads both and puts C, which the creator then reads. */
static void test_two_processes(void)
{
    const size_t sz = 600 * KIB;
    loom_store *s = open_store("procs", 1 * MIB, 1, 0);
    CHECK_RC(put_n(s, 70, sz, LOOM_STORE_PRIMARY), 0);
    CHECK_RC(put_n(s, 71, sz, LOOM_STORE_PRIMARY), 0);   /* spills 70 */
    loom_store_stats st = stats_of(s);
    CHECK(st.spilled_objects == 1);

    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        char mem[256];
        loom_store_opts o = {dir_for(mem, sizeof mem, "procs", "mem"), NULL, 0, 0, 0};
        loom_store *c = NULL;
        int bad = 0;
        if (loom__store_open(&o, &c) != 0)
            _exit(100);
        loom_store_stats cst;
        bad += loom__store_stats_get(c, &cst) != 0;
        bad += cst.capacity != st.capacity || cst.spill_capacity != st.spill_capacity;
        bad += cst.objects != 2 || cst.spilled_objects != 1;
        bad += !get_ok(c, 70, sz);
        bad += !get_ok(c, 71, sz);
        bad += put_n(c, 72, 1000, 0) != 0;
        loom__store_close(&c);
        _exit(bad);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(get_ok(s, 72, 1000));
    st = stats_of(s);
    CHECK(st.objects == 3);

    /* attaching where nothing was created */
    char mem[256];
    loom_store_opts o = {dir_for(mem, sizeof mem, "nothing", "mem"), NULL, 0, 0, 0};
    loom_store *c = (loom_store *)1;
    CHECK_RC(loom__store_open(&o, &c), LOOM_ENOTFOUND);
    CHECK(c == NULL);
    loom__store_close(&s);

    /* reopening with create keeps the objects and the accounting */
    s = open_store("procs", 1 * MIB, 1, 0);
    st = stats_of(s);
    CHECK(st.objects == 3 && st.spilled_objects == 1 && st.used == sz + 1000);
    CHECK(get_ok(s, 70, sz) && get_ok(s, 72, 1000));
    loom__store_close(&s);
}

/* A capacity beyond the file system's free space is clamped at open, so puts
 * are refused before the file system (e.g. a small /dev/shm) fills up. */
static void test_clamp(void)
{
    loom_store *s = open_store("clamp", (uint64_t)1 << 60, 1, (uint64_t)1 << 60);
    struct statvfs vfs;
    REQUIRE(statvfs(root, &vfs) == 0);
    uint64_t free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    loom_store_stats st = stats_of(s);
    CHECK(st.capacity > 0 && st.capacity <= free_bytes);
    CHECK(st.spill_capacity > 0 && st.spill_capacity <= free_bytes);
    CHECK_RC(put_n(s, 80, 1000, 0), 0);
    CHECK(get_ok(s, 80, 1000));
    loom__store_close(&s);

    char mem[256];
    loom_store_opts o = {dir_for(mem, sizeof mem, "clamp", "mem"), NULL, 0, 0, 1};
    CHECK_RC(loom__store_open(&o, &s), LOOM_EINVAL);     /* create needs a capacity */
    CHECK_RC(loom__store_open(NULL, &s), LOOM_EINVAL);
    CHECK_RC(loom__store_open(&o, NULL), LOOM_EINVAL);
}

/* The writable map never faults on a full file system: a 24 MiB tmpfs,
 * mounted in a private mount namespace of a child, is filled by someone else
 * after the store opened (so the clamp at open did not see it); puts then
 * fail with LOOM_ESTOREFULL and the child lives.  Needs root (mount). */
static int full_tmpfs_child(const char *dir)
{
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", dir, "tmpfs", 0, "size=24m") != 0)
        return 77;
    char mem[300], hog[300];
    snprintf(mem, sizeof mem, "%s/mem", dir);
    snprintf(hog, sizeof hog, "%s/hog", dir);
    loom_store_opts o = {mem, NULL, 16 * MIB, 0, 1};
    loom_store *s = NULL;
    if (loom__store_open(&o, &s) != 0) return 2;
    if (put_n(s, 90, 1 * MIB, LOOM_STORE_PRIMARY) != 0) return 3;
    /* another user takes all but 2 MiB of the file system */
    struct statvfs vfs;
    if (statvfs(dir, &vfs) != 0) return 4;
    uint64_t free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    int fd = open(hog, O_CREAT | O_WRONLY, 0600);
    if (fd < 0 || free_bytes < 2 * MIB || fallocate(fd, 0, 0, (off_t)(free_bytes - 2 * MIB)) != 0) return 5;
    int full = 0;
    for (int i = 0; i < 16 && !full; i++) {
        int rc = put_n(s, 91 + i, 1 * MIB, LOOM_STORE_PRIMARY);
        if (rc == LOOM_ESTOREFULL) full = 1;
        else if (rc != 0) return 6;
    }
    if (!full) return 7;
    if (!get_ok(s, 90, 1 * MIB)) return 8;   /* what was there is intact */
    close(fd);
    unlink(hog);                               /* room again: puts work */
    if (put_n(s, 120, 1 * MIB, LOOM_STORE_PRIMARY) != 0) return 9;
    loom__store_close(&s);
    return 0;
}

static void test_full_tmpfs(void)
{
    if (geteuid() != 0) {
        printf("skip: full tmpfs test needs root (mount)\n");
        return;
    }
    char dir[256];
    snprintf(dir, sizeof dir, "%s/smallfs", root);
    REQUIRE(loom__mkdir_p(dir) == 0);
    fflush(stdout);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) _exit(full_tmpfs_child(dir));
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
        printf("skip: cannot mount a tmpfs here\n");
        return;
    }
    CHECK(WIFEXITED(status));                  /* not killed by SIGBUS */
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status))
        printf("  full tmpfs child: %s %d\n", WIFEXITED(status) ? "exit" : "signal",
               WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

int main(void)
{
    REQUIRE(loom__make_temp_dir(NULL, "loom-test-store", root, sizeof root) == LOOM_OK);
    test_roundtrip();
    test_reserve();
    test_pins();
    test_lru_eviction();
    test_spill();
    test_full();
    test_map_full();
    test_two_processes();
    test_clamp();
    test_full_tmpfs();
    loom__rm_rf(root);
    return TEST_DONE();
}
