/* gateway/auth.c — who is asking, and what they may touch.
 *
 * With the gateway's auth on (`--http-auth`), every request but the health
 * checks and /metrics carries `Authorization: Bearer TOKEN`.  Tokens are made
 * by `loom token create --user U [--admin]`, which stores only the token's
 * SHA-256 in the head's key-value table (auth/tokens/HASH -> {"user", "admin"});
 * the gateway looks a hash up there and keeps the answer CACHE_MS, so a
 * revoked token stops working within that time.
 *
 * Tenancy: jobs and models belong to the user who made them; a model marked
 * public is readable by everyone; an admin may do anything.  With auth off
 * every request acts as an admin (the gateway listens on 127.0.0.1 by
 * default). */
#include "gateway/gateway_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/ids.h"
#include "runtime/util.h"

#define CACHE_SLOTS 64
#define CACHE_MS 5000
#define BEARER "Bearer "

typedef struct cached_token {
    char hash[65];
    char user[GW_USER_MAX];
    int admin, known;
    int64_t until_ms;
} cached_token;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static cached_token cache[CACHE_SLOTS];

void gw_token_hash(const char *token, char out[65])
{
    uint8_t digest[32];
    loom__sha256(token, strlen(token), digest);
    loom__hex_encode(digest, sizeof(digest), out);
}

static int cache_get(const char *hash, cached_token *out)
{
    int hit = 0;
    int64_t now = loom__now_ms();
    pthread_mutex_lock(&cache_lock);
    for (int i = 0; i < CACHE_SLOTS && !hit; i++)
        if (cache[i].until_ms > now && !strcmp(cache[i].hash, hash)) {
            *out = cache[i];
            hit = 1;
        }
    pthread_mutex_unlock(&cache_lock);
    return hit;
}

static void cache_put(const cached_token *t)
{
    pthread_mutex_lock(&cache_lock);
    int slot = 0;
    for (int i = 1; i < CACHE_SLOTS; i++)
        if (cache[i].until_ms < cache[slot].until_ms) slot = i;   /* the oldest (or empty) */
    cache[slot] = *t;
    pthread_mutex_unlock(&cache_lock);
}

/* The token's record from the head (known = 0 when there is none). */
static int lookup(gw_worker *w, const char *hash, cached_token *t)
{
    memset(t, 0, sizeof(*t));
    loom__snprintf(t->hash, sizeof(t->hash), "%s", hash);
    char key[128];
    loom__snprintf(key, sizeof(key), "auth/tokens/%s", hash);
    void *data = NULL;
    size_t len = 0;
    int rc = loom_kv_get(w->c, key, 0, &data, &len);
    if (rc == LOOM_ENOTFOUND) rc = LOOM_OK;
    else if (!rc) {
        json_t *j = json_loadb(data, len, 0, NULL);
        const char *user = json_string_value(json_object_get(j, "user"));
        if (user && *user && strlen(user) < sizeof(t->user)) {
            loom__snprintf(t->user, sizeof(t->user), "%s", user);
            t->admin = json_is_true(json_object_get(j, "admin"));
            t->known = 1;
        }
        json_decref(j);
    }
    free(data);
    t->until_ms = loom__now_ms() + (t->known ? CACHE_MS : CACHE_MS / 5);
    return rc;
}

int gw_authenticate(gw_worker *w, const loom_http_request *req, loom_http_reply *rep)
{
    w->user[0] = 0;
    w->admin = 1;
    if (!gw_auth_on(w->gw)) return 0;
    w->admin = 0;
    const char *h = loom_http_header_get(req, "Authorization");
    if (!h || strncmp(h, BEARER, strlen(BEARER)) != 0 || !h[strlen(BEARER)]) {
        loom_http_reply_error(rep, 401, "a bearer token is required (Authorization: Bearer TOKEN; "
                                        "an operator makes one with `loom token create --user NAME`)",
                              "WWW-Authenticate: Bearer realm=\"loom\"\r\n");
        return -1;
    }
    char hash[65];
    gw_token_hash(h + strlen(BEARER), hash);
    cached_token t;
    if (!cache_get(hash, &t)) {
        if (!gw_client(w, rep)) return -1;
        int rc = lookup(w, hash, &t);
        if (rc) {
            gw_client_check(w, rc);
            gw_reply_error(rep, 503, "cannot check the token: %s", loom_strerror(rc));
            return -1;
        }
        cache_put(&t);
    }
    if (!t.known) {
        loom_http_reply_error(rep, 401, "unknown or revoked token",
                              "WWW-Authenticate: Bearer realm=\"loom\", error=\"invalid_token\"\r\n");
        return -1;
    }
    loom__snprintf(w->user, sizeof(w->user), "%s", t.user);
    w->admin = t.admin;
    return 0;
}

int gw_may_read(const gw_worker *w, const char *owner, int public_)
{
    return w->admin || public_ || !owner || !owner[0] || !strcmp(owner, w->user);
}

/* Something without an owner (written while auth was off) is changed by
 * admins only: with auth on, a user may not adopt or alter it. */
int gw_may_write(const gw_worker *w, const char *owner)
{
    return w->admin || (owner && owner[0] && !strcmp(owner, w->user));
}

int loom_gateway_token_create(loom_client *c, const char *user, int admin, char *token)
{
    if (!c || !user || !*user || strlen(user) >= GW_USER_MAX || !token) return LOOM_EINVAL;
    uint8_t raw[24];
    loom__random_bytes(raw, sizeof(raw));
    memcpy(token, "loom_", 5);
    loom__hex_encode(raw, sizeof(raw), token + 5);
    char hash[65], key[128];
    gw_token_hash(token, hash);
    loom__snprintf(key, sizeof(key), "auth/tokens/%s", hash);
    json_t *rec = json_pack("{s:s,s:b,s:I}", "user", user, "admin", admin, "created", (json_int_t)time(NULL));
    char *text = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
    json_decref(rec);
    int rc = text ? loom_kv_put(c, key, text, strlen(text)) : LOOM_EINVAL;
    free(text);
    return rc;
}

int loom_gateway_token_revoke(loom_client *c, const char *token)
{
    if (!c || !token) return LOOM_EINVAL;
    char hash[65], key[128];
    gw_token_hash(token, hash);
    loom__snprintf(key, sizeof(key), "auth/tokens/%s", hash);
    void *data = NULL;
    size_t len = 0;
    int rc = loom_kv_get(c, key, 0, &data, &len);
    free(data);
    return rc ? rc : loom_kv_del(c, key);
}
