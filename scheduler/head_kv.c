/* scheduler/head_kv.c — the key-value table: put, get (waiting for a key
 * that is not there yet), delete, expiry of waiters, and its records in
 * LMDB. */
#include <stdlib.h>
#include <string.h>
#include "runtime/audit.h"
#include "runtime/log.h"
#include "runtime/util.h"
#include "scheduler/head_internal.h"

/* ---- key-value table ---------------------------------------------------- */

#define KV_MAX_KEYS 100000

static void kv_reply(head *h, uint32_t client_id, uint64_t req, const kv_entry *e)
{
    client *c = loom__head_client_by_id(h, client_id);
    if (!c) return;
    loom_msg r;
    loom__msg_init(&r, LOOM_MSG_INFO, req);
    r.data.p = e->val;
    r.data.n = e->len;
    loom__head_send_to(h, c->ident, c->identlen, &r);
}

void loom__head_kv_entry_free(kv_entry *e)
{
    if (!e) return;
    free(e->key);
    free(e->val);
    free(e);
}

/* A key's record: [name, value], under the key's hash (LMDB keys are short). */
static void persist_kv(head *h, const uint8_t k[32], const kv_entry *e)
{
    loom_pack *p = h->rec;
    if (!p) return;
    loom_pack_reset(p);
    loom_pack_array(p, 2);
    loom_pack_cstr(p, e->key);
    loom_pack_bin(p, e->val, e->len);
    loom__headdb_put(h->db, HEADDB_KV, k, 32, loom_pack_data(p), loom_pack_size(p));
}

/* Set a key from inside the head (accounting), persisted like a client's put
 * (waiters are not woken: nobody waits on the head's own keys).  0 or LOOM_E*. */
int loom__head_kv_set(head *h, const char *key, const void *val, size_t len)
{
    uint8_t k[32];
    loom__head_name_key(key, k);
    kv_entry *e = loom__hmap_get(&h->kv, k, sizeof(k));
    if (!e && h->kv.count >= KV_MAX_KEYS) return LOOM_EFULL;
    uint8_t *v = malloc(len ? len : 1);
    kv_entry *ne = e ? e : calloc(1, sizeof(*ne));
    if (!v || !ne || (!e && !(ne->key = strdup(key))) || (!e && loom__hmap_put(&h->kv, k, sizeof(k), ne))) {
        free(v);
        if (!e) loom__head_kv_entry_free(ne);
        return LOOM_ENOMEM;
    }
    if (len) memcpy(v, val, len);
    free(ne->val);
    ne->val = v;
    ne->len = len;
    persist_kv(h, k, ne);
    return LOOM_OK;
}

void loom__head_kv_unset(head *h, const char *key)
{
    uint8_t k[32];
    loom__head_name_key(key, k);
    kv_entry *e = loom__hmap_del(&h->kv, k, sizeof(k));
    if (!e) return;
    loom__head_kv_entry_free(e);
    loom__headdb_del(h->db, HEADDB_KV, k, sizeof(k));
}

/* Changes of who may do what are audited: tokens (auth/tokens/HASH, whose
 * value names the user) and quotas (quota/KIND/NAME). */
static void audit_kv(const char *key, const uint8_t *val, size_t len, int put)
{
    char detail[300] = "";
    if (!strncmp(key, "auth/tokens/", 12)) {
        const char *u = val ? memmem(val, len, "\"user\":\"", 8) : NULL;
        if (u) {
            u += 8;
            const char *e = memchr(u, '"', len - (size_t)(u - (const char *)val));
            if (e && e - u < 100) loom__snprintf(detail, sizeof(detail), "user=%.*s", (int)(e - u), u);
        }
        char object[32];
        loom__snprintf(object, sizeof(object), "%.12s...", key + 12);   /* a hash prefix, never the token */
        loom__audit("cluster", put ? "token.create" : "token.revoke", object, detail);
    } else if (!strncmp(key, "quota/", 6)) {
        if (put) loom__snprintf(detail, sizeof(detail), "%.*s", (int)(len < 200 ? len : 200), (const char *)val);
        loom__audit("cluster", put ? "quota.set" : "quota.remove", key + 6, detail);
    }
}

void loom__head_on_kv_put(head *h, client *c, loom_msg *m)
{
    uint8_t k[32];
    loom__head_name_key(m->key, k);
    kv_entry *e = loom__hmap_get(&h->kv, k, sizeof(k));
    if (!e && h->kv.count >= KV_MAX_KEYS) {
        loom__head_reply_error(h, c->ident, c->identlen, m->req, LOOM_EFULL, "the key-value table is full");
        return;
    }
    uint8_t *val = malloc(m->data.n ? m->data.n : 1);
    kv_entry *ne = e ? e : calloc(1, sizeof(*ne));
    if (!val || !ne || (!e && !(ne->key = strdup(m->key))) || (!e && loom__hmap_put(&h->kv, k, sizeof(k), ne))) {
        free(val);
        if (!e) loom__head_kv_entry_free(ne);
        loom__head_reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOMEM, "out of memory");
        return;
    }
    if (m->data.n) memcpy(val, m->data.p, m->data.n);
    free(ne->val);
    ne->val = val;
    ne->len = m->data.n;
    persist_kv(h, k, ne);
    audit_kv(m->key, ne->val, ne->len, 1);
    loom_msg r;
    loom__msg_init(&r, LOOM_MSG_OK, m->req);
    loom__head_send_after_commit(h, c->ident, c->identlen, &r);
    for (kv_wait **pw = &h->kv_waits; *pw;) {
        kv_wait *w = *pw;
        if (strcmp(w->key, m->key)) {
            pw = &w->next;
            continue;
        }
        kv_reply(h, w->client, w->req, ne);
        *pw = w->next;
        free(w->key);
        free(w);
    }
}

void loom__head_on_kv_get(head *h, client *c, loom_msg *m)
{
    uint8_t k[32];
    loom__head_name_key(m->key, k);
    kv_entry *e = loom__hmap_get(&h->kv, k, sizeof(k));
    if (e) {
        kv_reply(h, c->id, m->req, e);
        return;
    }
    if (m->wait_ms == 0) {
        loom__head_reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOTFOUND, "no such key");
        return;
    }
    kv_wait *w = calloc(1, sizeof(*w));
    if (!w || !(w->key = strdup(m->key))) {
        free(w);
        loom__head_reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOMEM, "out of memory");
        return;
    }
    w->client = c->id;
    w->req = m->req;
    w->deadline = loom__now_ms() + (int64_t)(m->wait_ms > 3600000 ? 3600000 : m->wait_ms);
    w->next = h->kv_waits;
    h->kv_waits = w;
}

void loom__head_on_kv_del(head *h, client *c, loom_msg *m)
{
    uint8_t k[32];
    loom__head_name_key(m->key, k);
    kv_entry *gone = loom__hmap_del(&h->kv, k, sizeof(k));
    if (gone) audit_kv(m->key, NULL, 0, 0);
    loom__head_kv_entry_free(gone);
    loom__headdb_del(h->db, HEADDB_KV, k, sizeof(k));
    loom_msg r;
    loom__msg_init(&r, LOOM_MSG_OK, m->req);
    loom__head_send_after_commit(h, c->ident, c->identlen, &r);
}

/* Answer waiters whose time is up (client_id 0), or drop a client's. */
void loom__head_kv_expire(head *h, uint32_t drop_client)
{
    int64_t now = loom__now_ms();
    for (kv_wait **pw = &h->kv_waits; *pw;) {
        kv_wait *w = *pw;
        int gone = drop_client ? w->client == drop_client : now >= w->deadline;
        if (!gone) {
            pw = &w->next;
            continue;
        }
        if (!drop_client) {
            client *c = loom__head_client_by_id(h, w->client);
            char msg[700];
            loom__snprintf(msg, sizeof(msg), "key '%s' did not appear in time", w->key);
            if (c) loom__head_reply_error(h, c->ident, c->identlen, w->req, LOOM_ETIMEOUT, msg);
        }
        *pw = w->next;
        free(w->key);
        free(w);
    }
}
