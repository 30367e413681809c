/* gateway/auth.c — who is asking, and what they may touch.
 *
 * Auth is on unless the operator says `--http-auth=none` (which the gateway
 * allows on loopback addresses only).  Every request but the health checks
 * and /metrics carries `Authorization: Bearer TOKEN`.  Tokens are made by
 * `loom token create --user U [--run] [--project P,...] [--admin]`, which
 * stores only the token's SHA-256 in the head's key-value table
 * (auth/tokens/HASH -> {"user", "run", "admin", "projects"}); the gateway
 * looks a hash up there and keeps the answer CACHE_MS, so a revoked token
 * stops working within that time.
 *
 * Permissions: every token reads and changes its user's jobs, models and
 * deployments, reads public models and calls deployments it may read.
 * Running code (POST /v1/jobs) needs "run"; an admin may do anything.
 *
 * Before the body: a request that has a body is admitted on its headers
 * (gw_admit, called on the HTTP thread before a byte of the body is read),
 * so that nobody without a valid token makes the gateway buffer a body.  A
 * token in the cache is answered at once; others are looked up by the auth
 * thread (its own client, so admission never waits behind users' work).
 *
 * OIDC: a bearer token that is a JWT is verified against the issuer's keys
 * (gateway/jwt.c; the JWKS file is read again, under a write lock, when its
 * modification time changes, so keys rotate without a restart); its user
 * comes from the configured claim and its projects from the groups claim;
 * run_group and admin_group members get those permissions.  JWTs need no
 * lookup, so they are admitted on the HTTP thread at once.
 *
 * Tenancy: jobs and models belong to the user who made them; a model marked
 * public is readable by everyone, one given to a project by its members; an
 * admin may do anything.  With auth off every request acts as an admin. */
#include "gateway/gateway_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/stat.h>

#include "gateway/jwt.h"
#include "runtime/ids.h"
#include "runtime/util.h"

#define CACHE_SLOTS 64
#define CACHE_MS 5000
#define BEARER "Bearer "

#define MAX_PROJECTS 16
#define ADMIT_QUEUE 256         /* token lookups waiting for the auth thread */

typedef struct cached_token {
    char hash[65];
    char user[GW_USER_MAX];
    char projects[GW_PROJECTS_MAX];   /* "a,b" */
    int admin, run, known;
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

int gw_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= GW_USER_MAX) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '.' ||
              *s == '_' || *s == '@' || *s == '+' || *s == '-'))
            return 0;
    return 1;
}

/* "a,b" into a JSON array of valid names; NULL if one is not. */
static json_t *projects_json(const char *list)
{
    json_t *arr = json_array();
    char buf[GW_PROJECTS_MAX];
    if (!arr || (list && strlen(list) >= sizeof(buf))) goto bad;
    loom__snprintf(buf, sizeof(buf), "%s", list ? list : "");
    char *save = NULL;
    for (char *p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        if (!gw_name_ok(p) || json_array_size(arr) >= MAX_PROJECTS) goto bad;
        json_array_append_new(arr, json_string(p));
    }
    return arr;
bad:
    json_decref(arr);
    return NULL;
}

/* A record's projects back into "a,b" (invalid ones dropped). */
static void projects_text(json_t *arr, char *out, size_t cap)
{
    size_t i, n = 0;
    json_t *v;
    out[0] = 0;
    json_array_foreach(arr, i, v) {
        const char *p = json_string_value(v);
        if (!gw_name_ok(p) || i >= MAX_PROJECTS || n + strlen(p) + 2 > cap) continue;
        loom__snprintf(out + n, cap - n, "%s%s", n ? "," : "", p);
        n += strlen(out + n);
    }
}

int gw_in_project(const gw_worker *w, const char *project)
{
    if (!project || !*project) return 0;
    size_t n = strlen(project);
    for (const char *p = w->projects; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, project, n)) return 1;
        p += len + (e ? 1 : 0);
    }
    return 0;
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
        if (gw_name_ok(user)) {
            loom__snprintf(t->user, sizeof(t->user), "%s", user);
            t->admin = json_is_true(json_object_get(j, "admin"));
            t->run = t->admin || json_is_true(json_object_get(j, "run"));
            projects_text(json_object_get(j, "projects"), t->projects, sizeof(t->projects));
            t->known = 1;
        }
        json_decref(j);
    }
    free(data);
    t->until_ms = loom__now_ms() + (t->known ? CACHE_MS : CACHE_MS / 5);
    return rc;
}

/* ---- OIDC -------------------------------------------------------------------- */

#define JWKS_CHECK_MS 10000     /* how often the JWKS file's mtime is looked at */

static struct {
    pthread_rwlock_t lock;      /* keys and policy: read by verifies, written by reloads */
    int on;
    loom_jwks *keys;
    char *issuer, *audience, *jwks_file, *user_claim, *groups_claim, *run_group, *admin_group;
    struct timespec mtime;
    int64_t checked_ms;
    pthread_mutex_t check_mu;
} oidc = {.lock = PTHREAD_RWLOCK_INITIALIZER, .check_mu = PTHREAD_MUTEX_INITIALIZER};

static char *dup_opt(const char *s, const char *def)
{
    return s ? strdup(s) : def ? strdup(def) : NULL;
}

static int jwks_mtime(struct timespec *out)
{
    struct stat st;
    if (stat(oidc.jwks_file, &st) != 0) return -1;
    *out = st.st_mtim;
    return 0;
}

int gw_oidc_start(const loom_gateway_oidc *o, char *err, size_t errcap)
{
    if (!o || !o->issuer) return LOOM_OK;
    if (!o->audience || !o->jwks_file) {
        loom__snprintf(err, errcap, "OIDC needs the audience and the issuer's JWKS file besides the issuer");
        return LOOM_EINVAL;
    }
    loom_jwks *keys = NULL;
    int rc = loom_jwks_load_file(o->jwks_file, &keys, err, errcap);
    if (rc) return rc;
    pthread_rwlock_wrlock(&oidc.lock);
    oidc.keys = keys;
    oidc.issuer = dup_opt(o->issuer, NULL);
    oidc.audience = dup_opt(o->audience, NULL);
    oidc.jwks_file = dup_opt(o->jwks_file, NULL);
    oidc.user_claim = dup_opt(o->user_claim, "sub");
    oidc.groups_claim = dup_opt(o->groups_claim, "groups");
    oidc.run_group = dup_opt(o->run_group, NULL);
    oidc.admin_group = dup_opt(o->admin_group, NULL);
    jwks_mtime(&oidc.mtime);
    oidc.checked_ms = loom__now_ms();
    oidc.on = 1;
    pthread_rwlock_unlock(&oidc.lock);
    return LOOM_OK;
}

void gw_oidc_stop(void)
{
    pthread_rwlock_wrlock(&oidc.lock);
    loom_jwks_free(&oidc.keys);
    char **strs[] = {&oidc.issuer, &oidc.audience, &oidc.jwks_file, &oidc.user_claim, &oidc.groups_claim,
                     &oidc.run_group, &oidc.admin_group};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        free(*strs[i]);
        *strs[i] = NULL;
    }
    oidc.on = 0;
    pthread_rwlock_unlock(&oidc.lock);
}

/* Keys rotate: the JWKS file is read again when it changed (a bad new file
 * keeps the old keys, with a log line). */
static void oidc_maybe_reload(void)
{
    int64_t now = loom__now_ms();
    pthread_mutex_lock(&oidc.check_mu);
    int due = oidc.on && now - oidc.checked_ms >= JWKS_CHECK_MS;
    if (due) oidc.checked_ms = now;
    pthread_mutex_unlock(&oidc.check_mu);
    if (!due) return;
    struct timespec m;
    if (jwks_mtime(&m) != 0 || (m.tv_sec == oidc.mtime.tv_sec && m.tv_nsec == oidc.mtime.tv_nsec)) return;
    loom_jwks *keys = NULL;
    char err[256];
    if (loom_jwks_load_file(oidc.jwks_file, &keys, err, sizeof(err)) != 0) return;
    pthread_rwlock_wrlock(&oidc.lock);
    loom_jwks_free(&oidc.keys);
    oidc.keys = keys;
    oidc.mtime = m;
    pthread_rwlock_unlock(&oidc.lock);
}

static int has_group(const loom_jwt_identity *id, const char *group)
{
    for (int i = 0; group && i < id->ngroups; i++)
        if (!strcmp(id->groups[i], group)) return 1;
    return 0;
}

/* A project name: 1-128 printable bytes without ',', quotes, '\\' or blanks. */
static int project_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128) return 0;
    for (; *s; s++)
        if (*s <= ' ' || *s > '~' || *s == ',' || *s == '"' || *s == '\\') return 0;
    return 1;
}

/* Verify a JWT into t (known = 1), or fill err.  0, LOOM_EAUTH (refused),
 * LOOM_ENOTFOUND (OIDC is off). */
static int oidc_verify(const char *token, cached_token *t, char *err, size_t errcap)
{
    memset(t, 0, sizeof(*t));
    oidc_maybe_reload();
    pthread_rwlock_rdlock(&oidc.lock);
    if (!oidc.on) {
        pthread_rwlock_unlock(&oidc.lock);
        loom__snprintf(err, errcap, "this gateway takes no OIDC tokens");
        return LOOM_ENOTFOUND;
    }
    loom_jwt_policy p = {.issuer = oidc.issuer, .audience = oidc.audience, .user_claim = oidc.user_claim,
                         .groups_claim = oidc.groups_claim};
    loom_jwt_identity id;
    int rc = loom_jwt_verify(oidc.keys, &p, token, strlen(token), &id, err, errcap);
    if (!rc) {
        loom__snprintf(t->user, sizeof(t->user), "%s", id.user);
        t->admin = has_group(&id, oidc.admin_group);
        t->run = t->admin || has_group(&id, oidc.run_group);
        size_t n = 0;
        for (int i = 0, kept = 0; i < id.ngroups && kept < MAX_PROJECTS; i++) {
            if (!project_ok(id.groups[i]) || n + strlen(id.groups[i]) + 2 > sizeof(t->projects)) continue;
            loom__snprintf(t->projects + n, sizeof(t->projects) - n, "%s%s", n ? "," : "", id.groups[i]);
            n += strlen(t->projects + n);
            kept++;
        }
        t->known = 1;
    }
    pthread_rwlock_unlock(&oidc.lock);
    loom_jwt_identity_free(&id);
    return rc ? LOOM_EAUTH : LOOM_OK;
}

#define NEED_TOKEN "a bearer token is required (Authorization: Bearer TOKEN; " \
                   "an operator makes one with `loom token create --user NAME`)"
#define CHALLENGE "WWW-Authenticate: Bearer realm=\"loom\"\r\n"
#define CHALLENGE_BAD "WWW-Authenticate: Bearer realm=\"loom\", error=\"invalid_token\"\r\n"

/* The bearer token of a request, or NULL. */
static const char *bearer(const loom_http_request *req)
{
    const char *h = loom_http_header_get(req, "Authorization");
    if (!h || strncmp(h, BEARER, strlen(BEARER)) != 0 || !h[strlen(BEARER)]) return NULL;
    return h + strlen(BEARER);
}

int gw_authenticate(gw_worker *w, const loom_http_request *req, loom_http_reply *rep)
{
    w->user[0] = 0;
    w->projects[0] = 0;
    w->admin = w->run = 1;
    if (!gw_auth_on(w->gw)) return 0;
    w->admin = w->run = 0;
    const char *token = bearer(req);
    if (!token) {
        loom_http_reply_error(rep, 401, NEED_TOKEN, CHALLENGE);
        return -1;
    }
    char hash[65];
    cached_token t;
    if (loom_jwt_looks_like(token)) {
        char err[256];
        if (oidc_verify(token, &t, err, sizeof(err)) != 0) {
            gw_reply_error(rep, 401, "the OIDC token is refused: %s", err);
            return -1;
        }
        goto known;
    }
    gw_token_hash(token, hash);
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
        loom_http_reply_error(rep, 401, "unknown or revoked token", CHALLENGE_BAD);
        return -1;
    }
known:
    loom__snprintf(w->user, sizeof(w->user), "%s", t.user);
    loom__snprintf(w->projects, sizeof(w->projects), "%s", t.projects);
    w->admin = t.admin;
    w->run = t.run;
    return 0;
}

/* ---- admission of bodies (before they are read) --------------------------- */

typedef struct admit_item {
    loom_http_reply *ticket;
    char hash[65];
} admit_item;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    admit_item q[ADMIT_QUEUE];
    int head, len, stopping, started;
    pthread_t thread;
    gw_worker worker;           /* the auth thread's own client */
} admit = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void admit_verdict(loom_http_reply *ticket, const cached_token *t, size_t max_body)
{
    if (t->known) loom_http_admit(ticket, 0, max_body, NULL, NULL);
    else loom_http_admit(ticket, 401, 0, "unknown or revoked token", CHALLENGE_BAD);
}

static void *admit_main(void *arg)
{
    loom_gateway *g = arg;
    for (;;) {
        pthread_mutex_lock(&admit.mu);
        while (!admit.stopping && admit.len == 0) pthread_cond_wait(&admit.cv, &admit.mu);
        if (admit.stopping) {
            pthread_mutex_unlock(&admit.mu);
            break;
        }
        admit_item it = admit.q[admit.head];
        admit.head = (admit.head + 1) % ADMIT_QUEUE;
        admit.len--;
        pthread_mutex_unlock(&admit.mu);
        cached_token t;
        int rc = cache_get(it.hash, &t) ? LOOM_OK : LOOM_ECONN;
        if (rc && gw_client(&admit.worker, NULL)) {
            rc = lookup(&admit.worker, it.hash, &t);
            gw_client_check(&admit.worker, rc);
            if (!rc) cache_put(&t);
        }
        if (rc) loom_http_admit(it.ticket, 503, 0, "cannot check the token now", "Retry-After: 1\r\n");
        else admit_verdict(it.ticket, &t, gw_max_body(g));
    }
    if (admit.worker.c) loom_disconnect(&admit.worker.c);
    return NULL;
}

int gw_admit_start(loom_gateway *g)
{
    admit.stopping = 0;
    admit.head = admit.len = 0;
    admit.worker = (gw_worker){.gw = g, .index = -2};
    if (pthread_create(&admit.thread, NULL, admit_main, g) != 0) return LOOM_ENOMEM;
    admit.started = 1;
    return LOOM_OK;
}

void gw_admit_stop(void)
{
    if (!admit.started) return;
    pthread_mutex_lock(&admit.mu);
    admit.stopping = 1;
    pthread_cond_broadcast(&admit.cv);
    pthread_mutex_unlock(&admit.mu);
    pthread_join(admit.thread, NULL);
    admit.started = 0;
    for (; admit.len > 0; admit.len--, admit.head = (admit.head + 1) % ADMIT_QUEUE)
        loom_http_admit(admit.q[admit.head].ticket, 503, 0, "the gateway is stopping", NULL);
}

/* The HTTP thread's admission of a request with a body (see the top). */
void gw_admit(loom_gateway *g, const loom_http_request *head, loom_http_reply *ticket)
{
    const char *token = bearer(head);
    if (!token) {
        loom_http_admit(ticket, 401, 0, NEED_TOKEN, CHALLENGE);
        return;
    }
    admit_item it = {.ticket = ticket};
    cached_token t;
    if (loom_jwt_looks_like(token)) {   /* no lookup needed: verified here */
        char err[256], msg[320];
        if (oidc_verify(token, &t, err, sizeof(err)) != 0) {
            loom__snprintf(msg, sizeof(msg), "the OIDC token is refused: %s", err);
            loom_http_admit(ticket, 401, 0, msg, CHALLENGE_BAD);
        } else {
            loom_http_admit(ticket, 0, gw_max_body(g), NULL, NULL);
        }
        return;
    }
    gw_token_hash(token, it.hash);
    if (cache_get(it.hash, &t)) {
        admit_verdict(ticket, &t, gw_max_body(g));
        return;
    }
    pthread_mutex_lock(&admit.mu);
    int full = admit.stopping || admit.len >= ADMIT_QUEUE;
    if (!full) {
        admit.q[(admit.head + admit.len) % ADMIT_QUEUE] = it;
        admit.len++;
        pthread_cond_signal(&admit.cv);
    }
    pthread_mutex_unlock(&admit.mu);
    if (full) loom_http_admit(ticket, 503, 0, "too many requests waiting for their token to be checked",
                              "Retry-After: 1\r\n");
}

int gw_may_read(const gw_worker *w, const char *owner, int public_)
{
    return w->admin || public_ || !owner || !owner[0] || !strcmp(owner, w->user);
}

int gw_may_read_in(const gw_worker *w, const char *owner, int public_, const char *project)
{
    return gw_may_read(w, owner, public_) || gw_in_project(w, project);
}

int gw_may_read_rec(const gw_worker *w, json_t *rec)
{
    return gw_may_read_in(w, json_string_value(json_object_get(rec, "owner")),
                          json_is_true(json_object_get(rec, "public")),
                          json_string_value(json_object_get(rec, "project")));
}

/* Something without an owner (written while auth was off) is changed by
 * admins only: with auth on, a user may not adopt or alter it. */
int gw_may_write(const gw_worker *w, const char *owner)
{
    return w->admin || (owner && owner[0] && !strcmp(owner, w->user));
}

int loom_gateway_token_create(loom_client *c, const loom_gateway_token_opts *o, char *token)
{
    if (!c || !o || !gw_name_ok(o->user) || !token) return LOOM_EINVAL;
    json_t *projects = projects_json(o->projects);
    if (!projects) return LOOM_EINVAL;
    uint8_t raw[24];
    loom__random_bytes(raw, sizeof(raw));
    memcpy(token, "loom_", 5);
    loom__hex_encode(raw, sizeof(raw), token + 5);
    char hash[65], key[128];
    gw_token_hash(token, hash);
    loom__snprintf(key, sizeof(key), "auth/tokens/%s", hash);
    json_t *rec = json_pack("{s:s,s:b,s:b,s:o,s:I}", "user", o->user, "admin", o->admin != 0, "run",
                            o->admin || o->run, "projects", projects, "created", (json_int_t)time(NULL));
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
