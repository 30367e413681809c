/* gateway/registry.c — the model registry: versioned model artifacts with
 * metadata, kept durably in the head's key-value table (LMDB, kept across
 * head restarts), and its REST routes.
 *
 * The layout in the key-value table is serve/registry_store.h's (its
 * readers are there too).  A model belongs to
 * the user who uploaded its first version: only they (or an admin) add or
 * delete versions; private versions are shown to them only.
 * Writers are serialised by one lock (one gateway per head); readers need
 * none: an artifact's chunks are written before its version is listed and
 * deleted after it is unlisted. */
#include "gateway/gateway_internal.h"
#include "serve/registry_store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/audit.h"
#include "runtime/ids.h"
#include "runtime/util.h"

#define CHUNK LOOM_REGISTRY_CHUNK
#define NAME_MAX_LEN 128
#define STORED_PER_USER ((uint64_t)1 << 30)   /* artifact bytes per non-admin user */
#define FIELD_MAX 512

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- names and keys --------------------------------------------------------- */

/* Model names: letters, digits, '-', '_', '.'; not starting with '.'. */
static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NAME_MAX_LEN || s[0] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
              ch == '_' || ch == '.'))
            return 0;
    }
    return 1;
}

/* ---- JSON records in the key-value table --------------------------------------- */


static int kv_put_json(loom_client *c, const char *key, json_t *j)
{
    char *text = json_dumps(j, JSON_COMPACT);
    if (!text) return LOOM_ENOMEM;
    int rc = loom_kv_put(c, key, text, strlen(text));
    free(text);
    return rc;
}

/* ---- artifacts ------------------------------------------------------------------ */

static int put_chunks(loom_client *c, const char *name, int version, const char *data, size_t len)
{
    char key[300];
    for (size_t off = 0, i = 0; off < len || (len == 0 && i == 0); off += CHUNK, i++) {
        size_t n = len - off < CHUNK ? len - off : CHUNK;
        loom_registry_chunk_key(key, sizeof(key), name, version, i);
        int rc = loom_kv_put(c, key, data + off, n);
        if (rc) return rc;
        if (len == 0) break;
    }
    return LOOM_OK;
}

static void del_chunks(loom_client *c, const char *name, int version, size_t len)
{
    char key[300];
    size_t n = len ? (len + CHUNK - 1) / CHUNK : 1;
    for (size_t i = 0; i < n; i++) {
        loom_registry_chunk_key(key, sizeof(key), name, version, i);
        loom_kv_del(c, key);
    }
}


/* ---- routes ----------------------------------------------------------------------- */

static void audit_model(const gw_worker *w, const char *action, const char *name, int version, const char *sha)
{
    char object[200], detail[100];
    loom__snprintf(object, sizeof(object), "%s:%d", name, version);
    loom__snprintf(detail, sizeof(detail), sha[0] ? "sha256=%s" : "%s", sha);
    loom__audit(w->user[0] ? w->user : "cluster", action, object, detail);
}

/* May w read version entry e (its owner's, or public)? */
static int readable(const gw_worker *w, json_t *e)
{
    return gw_may_read_rec(w, e);
}

static json_t *query_field(const loom_http_request *req, const char *key)
{
    char buf[FIELD_MAX];
    return loom_http_query_get(req, key, buf, sizeof(buf)) >= 0 ? json_string(buf) : json_string("");
}

/* The new version's metadata from the query (?author=&license=&framework=
 * &dataset=&produced_by=&tags=a,b&parameters=JSON&public=1). */
static json_t *upload_meta(const loom_http_request *req, const char *name, int version, const char *sha, char *err,
                           size_t errlen)
{
    char buf[4096];
    json_t *params = json_object();
    if (loom_http_query_get(req, "parameters", buf, sizeof(buf)) >= 0 && buf[0]) {
        json_decref(params);
        params = json_loads(buf, 0, NULL);
        if (!json_is_object(params)) {
            json_decref(params);
            loom__snprintf(err, errlen, "parameters must be a JSON object");
            return NULL;
        }
    }
    json_t *tags = json_array();
    if (loom_http_query_get(req, "tags", buf, sizeof(buf)) >= 0) {
        for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
            if (*t) json_array_append_new(tags, json_string(t));
    }
    loom_http_query_get(req, "public", buf, sizeof(buf));
    json_t *m = json_pack("{s:s,s:i,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:s,s:I,s:b}", "name", name, "version", version,
                          "author", query_field(req, "author"), "license", query_field(req, "license"),
                          "framework", query_field(req, "framework"), "dataset", query_field(req, "dataset"),
                          "produced_by", query_field(req, "produced_by"), "tags", tags, "parameters", params,
                          "sha256", sha, "created", (json_int_t)time(NULL), "public", !strcmp(buf, "1"));
    if (!m) loom__snprintf(err, errlen, "out of memory (or a field is not UTF-8)");
    return m;
}

static int index_add(loom_client *c, const char *name)
{
    int rc;
    json_t *idx = loom_registry_kv_json(c, "registry/index", &rc);
    if (!idx && rc != LOOM_ENOTFOUND) return rc;
    if (!idx) idx = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(idx, i, e) if (!strcmp(json_string_value(e), name)) {
        json_decref(idx);
        return LOOM_OK;
    }
    json_array_append_new(idx, json_string(name));
    rc = kv_put_json(c, "registry/index", idx);
    json_decref(idx);
    return rc;
}

/* Takes the registry lock and the model's record (*rec, NULL if there is
 * none yet: *rc LOOM_ENOTFOUND) for a change by w.  0 with the lock held;
 * -1 with the lock released and a 403 sent when the model is another user's. */
static int lock_for_change(gw_worker *w, loom_client *c, const char *name, const char *key, json_t **rec, int *rc,
                           loom_http_reply *rep)
{
    pthread_mutex_lock(&registry_lock);
    *rec = loom_registry_kv_json(c, key, rc);
    const char *owner = json_string_value(json_object_get(*rec, "owner"));
    if (*rec && !gw_may_write(w, owner)) {
        pthread_mutex_unlock(&registry_lock);
        if (owner && owner[0]) gw_reply_error(rep, 403, "model '%s' belongs to user %s", name, owner);
        else gw_reply_error(rep, 403, "model '%s' has no owner (it was written while auth was off): only an "
                                      "admin may change it", name);
        json_decref(*rec);
        return -1;
    }
    return 0;
}

/* Bytes of artifacts user owns in the registry (all versions of all models). */
static uint64_t stored_by(loom_client *c, const char *user)
{
    int rc;
    uint64_t total = 0;
    json_t *idx = loom_registry_kv_json(c, "registry/index", &rc), *n, *v;
    size_t i, k;
    json_array_foreach(idx, i, n) {
        char key[300];
        loom_registry_model_key(key, sizeof(key), json_string_value(n));
        json_t *rec = loom_registry_kv_json(c, key, &rc);
        json_array_foreach(json_object_get(rec, "versions"), k, v) {
            const char *owner = json_string_value(json_object_get(v, "owner"));
            if (owner && !strcmp(owner, user)) total += (uint64_t)json_integer_value(json_object_get(v, "size"));
        }
        json_decref(rec);
    }
    json_decref(idx);
    return total;
}

/* A user stores at most STORED_PER_USER bytes of artifacts in the head (or
 * the "stored_bytes=" of their quota): the registry lives in the head's
 * key-value table, in its memory.  0, or -1 with 429 sent. */
static int storage_ok(gw_worker *w, loom_client *c, size_t more, loom_http_reply *rep)
{
    if (w->admin) return 0;
    double quota = gw_quota_field(c, 'u', w->user, "stored_bytes");   /* loom quota set --stored-bytes */
    uint64_t most = quota >= 0 ? (uint64_t)quota : STORED_PER_USER;
    uint64_t have = stored_by(c, w->user);
    if (have + more <= most) return 0;
    gw_reply_error(rep, 429, "user %s stores %llu bytes of models (at most %llu): delete old versions first",
                   w->user, (unsigned long long)have, (unsigned long long)most);
    return -1;
}

static void upload(gw_worker *w, const char *name, const loom_http_request *req, loom_http_reply *rep)
{
    loom_client *c = gw_client(w, rep);
    if (!c) return;
    if (req->body_len == 0) {
        gw_reply_error(rep, 400, "the body must be the model artifact");
        return;
    }
    if (storage_ok(w, c, req->body_len, rep)) return;
    uint8_t digest[32];
    char sha[65];
    loom__sha256(req->body, req->body_len, digest);
    loom__hex_encode(digest, sizeof(digest), sha);
    char key[300], err[256] = "";
    loom_registry_model_key(key, sizeof(key), name);
    int rc;
    json_t *rec, *meta = NULL;
    if (lock_for_change(w, c, name, key, &rec, &rc, rep)) return;
    if (!rec && rc == LOOM_ENOTFOUND) rec = json_pack("{s:i,s:s,s:[]}", "next", 1, "owner", w->user, "versions");
    int version = rec ? (int)json_integer_value(json_object_get(rec, "next")) : 0;
    if (rec) meta = upload_meta(req, name, version, sha, err, sizeof(err));
    if (meta) json_object_set_new(meta, "size", json_integer((json_int_t)req->body_len));
    if (meta) json_object_set_new(meta, "owner", json_string(w->user));
    char project[160];
    if (meta && loom_http_query_get(req, "project", project, sizeof(project)) > 0) {
        if (!gw_in_project(w, project)) {   /* only a member gives a model to a project */
            pthread_mutex_unlock(&registry_lock);
            json_decref(rec);
            json_decref(meta);
            gw_reply_error(rep, 403, "user %s is not a member of project %s", w->user, project);
            return;
        }
        json_object_set_new(meta, "project", json_string(project));
    }
    rc = !rec ? rc : !meta ? LOOM_EINVAL : put_chunks(c, name, version, req->body, req->body_len);
    if (!rc) {
        json_array_append(json_object_get(rec, "versions"), meta);
        json_object_set_new(rec, "next", json_integer(version + 1));
        rc = kv_put_json(c, key, rec);
    }
    if (!rc) rc = index_add(c, name);
    pthread_mutex_unlock(&registry_lock);
    json_decref(rec);
    if (rc) {
        gw_client_check(w, rc);
        json_decref(meta);
        if (err[0]) gw_reply_error(rep, 400, "%s", err);
        else gw_reply_error(rep, gw_status_of(rc), "cannot store the model: %s", loom_last_error(c));
        return;
    }
    audit_model(w, "model.register", name, version, sha);
    gw_reply_json(rep, 201, meta);
}

/* Does version entry e match the search (?name=&tag=&author=&framework=)? */
static int matches(json_t *e, const loom_http_request *req)
{
    static const char *const fields[] = {"author", "framework", "license", "dataset", NULL};
    char want[FIELD_MAX];
    if (loom_http_query_get(req, "name", want, sizeof(want)) >= 0 && want[0] &&
        !strstr(json_string_value(json_object_get(e, "name")), want))
        return 0;
    for (int i = 0; fields[i]; i++)
        if (loom_http_query_get(req, fields[i], want, sizeof(want)) >= 0 && want[0] &&
            strcmp(json_string_value(json_object_get(e, fields[i])), want) != 0)
            return 0;
    if (loom_http_query_get(req, "tag", want, sizeof(want)) >= 0 && want[0]) {
        size_t i;
        json_t *t;
        json_array_foreach(json_object_get(e, "tags"), i, t) if (!strcmp(json_string_value(t), want)) return 1;
        return 0;
    }
    return 1;
}

/* GET /v1/models: for every model, its newest version that matches. */
static void list_models(gw_worker *w, const loom_http_request *req, loom_http_reply *rep)
{
    loom_client *c = gw_client(w, rep);
    if (!c) return;
    int rc;
    json_t *idx = loom_registry_kv_json(c, "registry/index", &rc), *out = json_array(), *name;
    size_t i;
    json_array_foreach(idx, i, name) {
        char key[300];
        loom_registry_model_key(key, sizeof(key), json_string_value(name));
        json_t *rec = loom_registry_kv_json(c, key, &rc), *versions = json_object_get(rec, "versions"), *best = NULL, *e;
        size_t k;
        json_array_foreach(versions, k, e) if (readable(w, e) && matches(e, req) && (!best || json_integer_value(json_object_get(
                                                   e, "version")) > json_integer_value(json_object_get(best, "version"))))
            best = e;
        if (best) json_array_append(out, best);
        json_decref(rec);
    }
    json_decref(idx);
    gw_reply_json(rep, 200, json_pack("{s:o}", "models", out));
}

static void get_model(gw_worker *w, const char *name, loom_http_reply *rep)
{
    loom_client *c = gw_client(w, rep);
    if (!c) return;
    char key[300];
    loom_registry_model_key(key, sizeof(key), name);
    int rc;
    json_t *rec = loom_registry_kv_json(c, key, &rc);
    if (!rec || json_array_size(json_object_get(rec, "versions")) == 0) {
        json_decref(rec);
        gw_reply_error(rep, 404, "no model named '%s'", name);
        return;
    }
    json_t *shown = json_array(), *e;
    size_t i;
    json_array_foreach(json_object_get(rec, "versions"), i, e) if (readable(w, e)) json_array_append(shown, e);
    json_decref(rec);
    if (json_array_size(shown) == 0) {
        json_decref(shown);
        gw_reply_error(rep, 403, "model '%s' is private to another user", name);
        return;
    }
    gw_reply_json(rep, 200, json_pack("{s:s,s:o}", "name", name, "versions", shown));
}

static void get_version(gw_worker *w, const char *name, int version, int artifact, loom_http_reply *rep)
{
    loom_client *c = gw_client(w, rep);
    if (!c) return;
    json_t *meta = NULL;
    char *data = NULL;
    size_t len = 0;
    int rc = loom_registry_fetch(c, name, version, &meta, NULL, NULL);
    if (!rc && !readable(w, meta)) {
        gw_reply_error(rep, 403, "model '%s' version %d is private to another user", name, version);
        json_decref(meta);
        return;
    }
    if (!rc && artifact) {
        json_decref(meta);
        rc = loom_registry_fetch(c, name, version, &meta, &data, &len);
    }
    if (rc) {
        gw_client_check(w, rc);
        gw_reply_error(rep, rc == LOOM_ENOTFOUND ? 404 : gw_status_of(rc), "model '%s' version %d: %s", name,
                       version, rc == LOOM_ENOTFOUND ? "not found" : loom_strerror(rc));
        return;
    }
    if (!artifact) {
        gw_reply_json(rep, 200, meta);
        return;
    }
    char extra[128];
    loom__snprintf(extra, sizeof(extra), "X-Loom-Sha256: %s\r\n", json_string_value(json_object_get(meta, "sha256")));
    loom_http_reply_send(rep, 200, "application/octet-stream", data, len, extra);
    free(data);
    json_decref(meta);
}

static void delete_version(gw_worker *w, const char *name, int version, loom_http_reply *rep)
{
    loom_client *c = gw_client(w, rep);
    if (!c) return;
    char key[300];
    loom_registry_model_key(key, sizeof(key), name);
    int rc;
    json_t *rec, *e;
    if (lock_for_change(w, c, name, key, &rec, &rc, rep)) return;
    json_t *versions = json_object_get(rec, "versions");
    size_t i, found = (size_t)-1, size = 0;
    json_array_foreach(versions, i, e) if (json_integer_value(json_object_get(e, "version")) == version) {
        found = i;
        size = (size_t)json_integer_value(json_object_get(e, "size"));
    }
    if (found != (size_t)-1) {
        json_array_remove(versions, found);
        rc = kv_put_json(c, key, rec);   /* unlisted first, then its chunks go */
        if (!rc) del_chunks(c, name, version, size);
        if (!rc) audit_model(w, "model.delete", name, version, "");
    }
    pthread_mutex_unlock(&registry_lock);
    json_decref(rec);
    if (found == (size_t)-1) {
        gw_reply_error(rep, 404, "model '%s' has no version %d", name, version);
        return;
    }
    if (rc) {
        gw_client_check(w, rc);
        gw_reply_error(rep, gw_status_of(rc), "cannot delete: %s", loom_last_error(c));
        return;
    }
    gw_reply_json(rep, 200, json_pack("{s:s,s:i,s:s}", "name", name, "version", version, "status", "deleted"));
}

/* "/versions/V[/artifact]" → V and whether the artifact is asked for; -1 if
 * rest is something else. */
static int parse_version(const char *rest, int *artifact)
{
    char *end = NULL;
    if (strncmp(rest, "/versions/", 10) != 0) return -1;
    long v = strtol(rest + 10, &end, 10);
    if (end == rest + 10 || v < 1 || v > 1000000000) return -1;
    *artifact = !strcmp(end, "/artifact");
    return *artifact || !*end ? (int)v : -1;
}

int gw_registry_route(gw_worker *w, const loom_http_request *req, loom_http_reply *rep)
{
    const char *m = req->method, *rest = NULL;
    if (!strcmp(req->path, "/v1/models")) {
        if (!strcmp(m, "GET")) list_models(w, req, rep);
        else gw_reply_error(rep, 405, "use GET /v1/models, or POST /v1/models/NAME with the artifact");
        return 1;
    }
    char name[NAME_MAX_LEN + 2];
    if (gw_path_segment(req->path, "/v1/models/", name, sizeof(name), &rest)) return 0;
    if (!valid_name(name)) {
        gw_reply_error(rep, 400, "a model name is 1-%d letters, digits, '-', '_' or '.'", NAME_MAX_LEN);
        return 1;
    }
    int artifact = 0, version = rest[0] ? parse_version(rest, &artifact) : 0;
    if (!rest[0] && !strcmp(m, "POST")) upload(w, name, req, rep);
    else if (!rest[0] && !strcmp(m, "GET")) get_model(w, name, rep);
    else if (version > 0 && !strcmp(m, "GET")) get_version(w, name, version, artifact, rep);
    else if (version > 0 && !artifact && !strcmp(m, "DELETE")) delete_version(w, name, version, rep);
    else gw_reply_error(rep, 405, "%s %s is not a registry route", m, req->path);
    return 1;
}
