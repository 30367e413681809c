/* gateway/jobs.c — the jobs REST routes of the gateway (see gateway.h):
 * submit a graph as JSON (the document `loom submit` reads), its state, a
 * task's result and logs, cancel-and-delete.  A submitted job is detached: it
 * keeps its outputs until DELETE, whoever polls it.  Each function answers its
 * request exactly once. */
#include "gateway/gateway_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "api/graph_json.h"
#include "loom/value.h"
#include "runtime/util.h"

#define JOB_ID_MAX 64
#define RESULT_WAIT_MS 100    /* a result not ready by then is answered 202 (poll again) */
#define MAX_TASKS_PER_JOB 10000   /* a REST job's tasks; bigger graphs: the C or Python API */

/* Is path below dir (dir/...), as written? */
static int below(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    return !strncmp(path, dir, n) && path[n] == '/';
}

/* Does path have a ".." component? */
static int has_dotdot(const char *path)
{
    for (const char *p = path; (p = strstr(p, "..")); p += 2)
        if ((p == path || p[-1] == '/') && (p[2] == 0 || p[2] == '/')) return 1;
    return 0;
}

/* Library paths in a REST job: only inside the gateway's library directory
 * (the paths name files on the head's machine).  A path that is not inside
 * it as written (absolute elsewhere, or with "..") is refused before the
 * file system is asked, so the answer (403) says nothing about which files
 * exist on the head's machine; one inside it that does not exist is not
 * found (400); one that resolves outside it (a symbolic link) is refused. */
static int lib_from_path(void *arg, const char *path, loom_ref *out)
{
    gw_worker *w = arg;
    const char *dir = gw_lib_dir(w->gw);
    if (!dir) return LOOM_EAUTH;
    char real[PATH_MAX], realdir[PATH_MAX], full[PATH_MAX + 256];
    if (!realpath(dir, realdir)) return LOOM_ENOTFOUND;
    if (path[0] == '/') loom__snprintf(full, sizeof(full), "%s", path);
    else loom__snprintf(full, sizeof(full), "%s/%s", dir, path);
    if (has_dotdot(full) || (!below(full, dir) && !below(full, realdir))) return LOOM_EAUTH;
    if (!realpath(full, real)) return LOOM_ENOTFOUND;
    if (!below(real, realdir)) return LOOM_EAUTH;
    return loom_library_load(w->c, real, out);
}

static void submit_job(gw_worker *w, const loom_http_request *req, loom_http_reply *rep)
{
    if (!w->run) {
        gw_reply_error(rep, 403, "user %s's token may not run code: submitting jobs needs a token made with "
                                 "`loom token create --run`", w->user);
        return;
    }
    loom_client *c = gw_client(w, rep);
    if (!c) return;
    char err[512], name[128];
    loom_graph *g = NULL;
    int rc = loom__graph_from_json_remote(req->body, req->body_len, lib_from_path, w, &g, err, sizeof(err));
    if (!rc && loom_graph_size(g) > MAX_TASKS_PER_JOB) {
        gw_reply_error(rep, 413, "a job sent over REST has at most %d tasks (this one has %d)", MAX_TASKS_PER_JOB,
                       loom_graph_size(g));
        loom_graph_destroy(&g);
        return;
    }
    if (rc) {
        if (rc == LOOM_EAUTH)
            gw_reply_error(rep, 403, "%s (library paths must lie in the gateway's library directory; "
                                     "use \"library_ref\")", err);
        else
            gw_reply_error(rep, rc == LOOM_ENOMEM ? 500 : 400, "%s", err);
        gw_client_check(w, rc);
        return;
    }
    loom__graph_json_name(req->body, req->body_len, name, sizeof(name));
    char job[LOOM_JOB_ID_LEN], label[GW_USER_MAX + 160], project[160] = "";
    /* the job is its user's (and their project's, with ?project=P): the head
       keeps "USER[|PROJECT]" as the job's label, and accounts by it */
    if (loom_http_query_get(req, "project", project, sizeof(project)) > 0 && !gw_in_project(w, project)) {
        gw_reply_error(rep, 403, "user %s is not a member of project %s", w->user, project);
        loom_graph_destroy(&g);
        return;
    }
    loom__snprintf(label, sizeof(label), project[0] ? "%s|%s" : "%s", w->user, project);
    char why[300];
    rc = gw_quota_check(w, project, why, sizeof(why));
    if (rc) {
        gw_reply_error(rep, rc, "%s", why);
        loom_graph_destroy(&g);
        return;
    }
    loom_submit_opts so = {.job_name = name[0] ? name : "http", .detached = 1, .label = label};
    rc = loom_graph_submit(c, g, &so, job);
    int ntasks = loom_graph_size(g);
    loom_graph_destroy(&g);
    if (rc) {
        gw_reply_error(rep, rc == LOOM_EFULL ? 429 : gw_status_of(rc), "cannot submit the job: %s",
                       loom_last_error(c));
        gw_client_check(w, rc);
        return;
    }
    gw_reply_json(rep, 201, json_pack("{s:s,s:i,s:s}", "job_id", job, "tasks", ntasks, "status",
                                      "submitted"));
}

/* May w see and change job id?  With auth on, a job is its submitter's (its
 * label; jobs submitted outside the gateway have none: admins only).  0, or
 * -1 with the answer sent (404 for an unknown job). */
static int job_access(gw_worker *w, const char *id, loom_http_reply *rep)
{
    if (w->admin) return 0;
    loom_client *c = gw_client(w, rep);
    if (!c) return -1;
    char *text = NULL;
    int rc = loom_job_json(c, id, &text);
    json_t *j = rc ? NULL : json_loads(text, 0, NULL);
    free(text);
    const char *label = json_string_value(json_object_get(j, "label"));
    size_t ulen = strlen(w->user);
    int mine = label && !strncmp(label, w->user, ulen) && (label[ulen] == 0 || label[ulen] == '|');
    json_decref(j);
    if (rc) {
        gw_client_check(w, rc);
        gw_reply_error(rep, gw_status_of(rc), "job %s: %s", id, loom_last_error(c));
        return -1;
    }
    if (!mine) {
        gw_reply_error(rep, 403, "job %s is not one of user %s's jobs", id, w->user);
        return -1;
    }
    return 0;
}

/* GET /v1/jobs?offset=N&limit=N[&label=L]: a page of jobs, newest first; a
 * user who is not an admin sees only their own. */
static void list_jobs(gw_worker *w, const loom_http_request *req, loom_http_reply *rep)
{
    loom_client *c = gw_client(w, rep);
    if (!c) return;
    char off[24] = "0", lim[24] = "100", label[GW_USER_MAX] = "";
    loom_http_query_get(req, "offset", off, sizeof(off));
    loom_http_query_get(req, "limit", lim, sizeof(lim));
    if (w->admin) loom_http_query_get(req, "label", label, sizeof(label));
    else loom__snprintf(label, sizeof(label), "%s", w->user);
    char *e1 = NULL, *e2 = NULL;
    long long o = strtoll(off, &e1, 10), l = strtoll(lim, &e2, 10);
    if (*e1 || *e2 || o < 0 || l < 1 || l > 1000) {
        gw_reply_error(rep, 400, "offset must be >= 0 and limit 1-1000");
        return;
    }
    char *text = NULL;
    int rc = loom_jobs_json(c, label, (uint64_t)o, (uint64_t)l, &text);
    if (rc) {
        gw_client_check(w, rc);
        gw_reply_error(rep, gw_status_of(rc), "cannot list jobs: %s", loom_last_error(c));
        return;
    }
    loom_http_reply_send(rep, 200, "application/json", text, strlen(text), NULL);
    free(text);
}

/* The job's usage record ("usage/j/ID", head_usage.c) as JSON numbers. */
static json_t *job_usage(loom_client *c, const char *id)
{
    char key[128], text[512];
    loom__snprintf(key, sizeof(key), "usage/j/%s", id);
    void *data = NULL;
    size_t len = 0;
    json_t *u = json_object();
    if (loom_kv_get(c, key, 0, &data, &len) == 0 && len < sizeof(text)) {
        memcpy(text, data, len);
        text[len] = 0;
        char *save = NULL;
        for (char *w = strtok_r(text, " \n", &save); w; w = strtok_r(NULL, " \n", &save)) {
            char *eq = strchr(w, '=');
            if (!eq) continue;
            *eq = 0;
            json_object_set_new(u, w, json_real(strtod(eq + 1, NULL)));
        }
    }
    free(data);
    return u;
}

static void job_state(gw_worker *w, const char *id, loom_http_reply *rep)
{
    loom_client *c = gw_client(w, rep);
    if (!c) return;
    char *text = NULL;
    int rc = loom_job_json(c, id, &text);
    if (rc) {
        gw_reply_error(rep, gw_status_of(rc), "job %s: %s", id, loom_last_error(c));
        gw_client_check(w, rc);
        return;
    }
    json_t *j = json_loads(text, 0, NULL);
    free(text);
    if (!j) {
        gw_reply_error(rep, 500, "the head's answer about job %s is not JSON", id);
        return;
    }
    json_object_set_new(j, "usage", job_usage(c, id));
    gw_reply_json(rep, 200, j);
}

/* The ref of ?task=T&output=N (default 0) in job id. */
static int job_task_ref(gw_worker *w, const char *id, const loom_http_request *req, loom_ref *ref,
                        loom_http_reply *rep)
{
    char task[256] = "", out[32] = "0";
    loom_http_query_get(req, "task", task, sizeof(task));
    loom_http_query_get(req, "output", out, sizeof(out));
    if (!task[0]) {
        gw_reply_error(rep, 400, "say which task: ?task=NAME (its name in the graph)");
        return LOOM_EINVAL;
    }
    char *end = NULL;
    long output = strtol(out, &end, 10);
    if (!end || *end || output < 0 || output > 1000000) {
        gw_reply_error(rep, 400, "output must be a small non-negative integer");
        return LOOM_EINVAL;
    }
    int rc = loom_job_ref(w->c, id, task, (int)output, ref);
    if (rc) {
        gw_reply_error(rep, gw_status_of(rc), "job %s: %s", id, loom_last_error(w->c));
        gw_client_check(w, rc);
    }
    return rc;
}

static void job_result(gw_worker *w, const char *id, const loom_http_request *req, loom_http_reply *rep)
{
    loom_ref ref;
    if (!gw_client(w, rep) || job_task_ref(w, id, req, &ref, rep)) return;
    loom_value *v = NULL;
    int rc = loom_get(w->c, ref, RESULT_WAIT_MS, &v);
    if (rc == LOOM_ETIMEOUT) {
        gw_reply_json(rep, 202, json_pack("{s:s,s:s}", "job_id", id, "status", "running"));
        return;
    }
    if (rc) {
        gw_reply_error(rep, rc == LOOM_ECONN ? 503 : 422, "the task failed: %s", loom_last_error(w->c));
        gw_client_check(w, rc);
        return;
    }
    char *json = NULL;
    if (loom_msgpack_to_json(loom_value_data(v), loom_value_size(v), &json) == 0) {
        loom_http_reply_send(rep, 200, "application/json", json, strlen(json), NULL);
        free(json);
    } else {
        loom_http_reply_send(rep, 200, "application/octet-stream", loom_value_data(v), loom_value_size(v), NULL);
    }
    loom_value_release(&v);
}

static void job_logs(gw_worker *w, const char *id, const loom_http_request *req, loom_http_reply *rep)
{
    loom_ref ref;
    if (!gw_client(w, rep) || job_task_ref(w, id, req, &ref, rep)) return;
    char *text = NULL;
    size_t len = 0;
    int rc = loom_logs(w->c, ref, &text, &len);
    if (rc) {
        gw_reply_error(rep, gw_status_of(rc), "logs of job %s: %s", id, loom_last_error(w->c));
        gw_client_check(w, rc);
        return;
    }
    loom_http_reply_send(rep, 200, "text/plain; charset=utf-8", text, len, NULL);
    free(text);
}

static void job_delete(gw_worker *w, const char *id, loom_http_reply *rep)
{
    loom_client *c = gw_client(w, rep);
    if (!c) return;
    int rc = loom_job_delete(c, id);
    if (rc) {
        gw_reply_error(rep, gw_status_of(rc), "job %s: %s", id, loom_last_error(c));
        gw_client_check(w, rc);
        return;
    }
    gw_reply_json(rep, 200, json_pack("{s:s,s:s}", "job_id", id, "status", "deleted"));
}

int gw_jobs_route(gw_worker *w, const loom_http_request *req, loom_http_reply *rep)
{
    const char *m = req->method, *rest = NULL;
    if (!strcmp(req->path, "/v1/jobs") || !strcmp(req->path, "/v1/jobs/")) {
        if (!strcmp(m, "POST")) submit_job(w, req, rep);
        else if (!strcmp(m, "GET")) list_jobs(w, req, rep);
        else gw_reply_error(rep, 405, "use POST /v1/jobs with a graph as JSON, or GET /v1/jobs");
        return 1;
    }
    char id[JOB_ID_MAX];
    if (gw_path_segment(req->path, "/v1/jobs/", id, sizeof(id), &rest)) return 0;
    if (job_access(w, id, rep)) return 1;
    if (!strcmp(rest, "") && !strcmp(m, "GET")) job_state(w, id, rep);
    else if (!strcmp(rest, "") && !strcmp(m, "DELETE")) job_delete(w, id, rep);
    else if (!strcmp(rest, "/result") && !strcmp(m, "GET")) job_result(w, id, req, rep);
    else if (!strcmp(rest, "/logs") && !strcmp(m, "GET")) job_logs(w, id, req, rep);
    else if (!strcmp(rest, "/cancel") && !strcmp(m, "POST")) job_delete(w, id, rep);
    else gw_reply_error(rep, 405, "%s %s is not a jobs route", m, req->path);
    return 1;
}
