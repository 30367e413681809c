/* tune/track_prov.c — a sweep's lineage as W3C PROV-JSON (OUT/prov/): each
 * trial as an activity that used a configuration, the code and the data
 * (with sha256 digests of the local files) and generated its results, in
 * trial_NNNN.json, and the sweep as the activity that started every trial,
 * in sweep.json (see tune/track.c). */
#include "tune/track_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "loom/loom.h"

/* ---- PROV-JSON ------------------------------------------------------------ */

typedef struct prov {
    json_t *doc;
    json_t *inputs;   /* [{"id", "data": bool}]: code and data entities */
    int next;         /* relation ids */
    int oom;
} prov;

static const char *const prov_sections[] = {
    "entity", "activity", "agent", "used", "wasGeneratedBy", "wasAssociatedWith",
    "wasInformedBy", "wasDerivedFrom", "wasStartedBy", "actedOnBehalfOf",
};

static void pset(prov *p, json_t *obj, const char *key, json_t *v)
{
    if (!obj || !v || json_object_set_new(obj, key, v))
        p->oom = 1;
}

static json_t *typed(const char *lexical, const char *type)
{
    return json_pack("{s:s,s:s}", "$", lexical, "type", type);
}

static json_t *qname(const char *name) { return typed(name, "xsd:QName"); }

static json_t *typed_ll(long long v)
{
    char num[32];
    snprintf(num, sizeof num, "%lld", v);
    return typed(num, v >= INT32_MIN && v <= INT32_MAX ? "xsd:int" : "xsd:long");
}

/* A record's value as a PROV attribute value; NULL for null. */
static json_t *prov_value(const json_t *v)
{
    char num[40];
    if (json_is_string(v))
        return json_string(json_string_value(v));
    if (json_is_integer(v))
        return typed_ll((long long)json_integer_value(v));
    if (json_is_real(v)) {
        track_fmt_double(json_real_value(v), num);
        return typed(num, "xsd:double");
    }
    if (json_is_boolean(v))
        return typed(json_is_true(v) ? "true" : "false", "xsd:boolean");
    if (json_is_array(v) || json_is_object(v)) {
        loom_buf b = {0};
        track_json_write(&b, v, 0, 0);
        json_t *s = b.oom ? NULL : json_string(b.p);
        loom__buf_free(&b);
        return s;
    }
    return NULL;
}

static json_t *prov_node(prov *p, const char *section, const char *id)
{
    json_t *node = json_object();
    pset(p, json_object_get(p->doc, section), id, node);
    return p->oom ? NULL : node;
}

/* A relation: section {"_:<section><n>": {k1: v1, k2: v2[, k3: v3]}}. */
static json_t *prov_rel(prov *p, const char *section, const char *k1, const char *v1,
                        const char *k2, const char *v2)
{
    char id[64];
    snprintf(id, sizeof id, "_:%s%d", section, ++p->next);
    json_t *rel = prov_node(p, section, id);
    pset(p, rel, k1, json_string(v1));
    pset(p, rel, k2, json_string(v2));
    return rel;
}

static void prov_rel_time(prov *p, json_t *rel, const char *key, long long ms)
{
    char iso[80];
    track_iso_time(ms, iso);
    pset(p, rel, key, json_string(iso));
}

static int prov_init(track_ctx *c, prov *p)
{
    memset(p, 0, sizeof *p);
    p->doc = json_object();
    p->inputs = json_array();
    json_t *prefix = json_object();
    pset(p, p->doc, "prefix", prefix);
    loom_buf ns = {0};
    loom__buf_puts(&ns, "urn:loom:sweep:");
    for (const unsigned char *s = (const unsigned char *)c->sweep_id; *s; s++)
        if ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
            *s == '-' || *s == '_' || *s == '.')
            loom__buf_append(&ns, (const char *)s, 1);
        else
            loom__buf_appendf(&ns, "%%%02X", *s);
    loom__buf_puts(&ns, ":");
    pset(p, prefix, "prov", json_string("http://www.w3.org/ns/prov#"));
    pset(p, prefix, "xsd", json_string("http://www.w3.org/2001/XMLSchema#"));
    pset(p, prefix, "loom", json_string("urn:loom:"));
    pset(p, prefix, "sweep", ns.oom ? NULL : json_string(ns.p));
    pset(p, prefix, "param", json_string("urn:loom:param:"));
    pset(p, prefix, "metric", json_string("urn:loom:metric:"));
    pset(p, prefix, "mlflow", json_string("runs:/"));   /* MLflow's run URIs */
    loom__buf_free(&ns);
    for (size_t i = 0; i < sizeof prov_sections / sizeof prov_sections[0]; i++)
        pset(p, p->doc, prov_sections[i], json_object());
    if (!p->inputs)
        p->oom = 1;
    return p->oom ? track_fail(c, LOOM_ENOMEM, "out of memory") : 0;
}

static void prov_free(prov *p)
{
    json_decref(p->doc);
    json_decref(p->inputs);
    memset(p, 0, sizeof *p);
}

static void user_agent_id(const track_ctx *c, char out[SAFE_NAME_MAX + 16])
{
    char safe[SAFE_NAME_MAX + 1];
    track_safe_name(c->user, safe);
    snprintf(out, SAFE_NAME_MAX + 16, "loom:user.%s", safe);
}

/* The agents: loom (software) acting for the user (a person). */
static void prov_agents(track_ctx *c, prov *p)
{
    char user_id[SAFE_NAME_MAX + 16];
    user_agent_id(c, user_id);
    json_t *loom = prov_node(p, "agent", "loom:runtime");
    pset(p, loom, "prov:type", qname("prov:SoftwareAgent"));
    pset(p, loom, "prov:label", json_string("loom"));
    json_t *user = prov_node(p, "agent", user_id);
    pset(p, user, "prov:type", qname("prov:Person"));
    pset(p, user, "prov:label", json_string(c->user));
    prov_rel(p, "actedOnBehalfOf", "prov:delegate", "loom:runtime", "prov:responsible", user_id);
}

/* The sweep activity: it generated every config and informed every trial. */
static void prov_sweep_activity(track_ctx *c, prov *p)
{
    json_t *a = prov_node(p, "activity", "sweep:sweep");
    pset(p, a, "prov:type", qname("loom:Sweep"));
    pset(p, a, "prov:label", json_string(c->name ? c->name : c->sweep_id));
    pset(p, a, "loom:sweepId", json_string(c->sweep_id));
    pset(p, a, "loom:metric", json_string(c->metric));
    pset(p, a, "loom:mode", json_string(c->maximize ? "max" : "min"));
    char iso[80];
    track_iso_time(c->created_ms, iso);
    pset(p, a, "prov:startTime", json_string(iso));
    if (c->has_ended) {
        track_iso_time(c->ended_ms, iso);
        pset(p, a, "prov:endTime", json_string(iso));
    }
    char user_id[SAFE_NAME_MAX + 16];
    user_agent_id(c, user_id);
    prov_rel(p, "wasAssociatedWith", "prov:activity", "sweep:sweep", "prov:agent", user_id);
    prov_rel(p, "wasAssociatedWith", "prov:activity", "sweep:sweep", "prov:agent",
             "loom:runtime");
}

/* One local-or-remote input: its entity with location and, for a local
 * file, absolute path and sha256. */
static int prov_input(track_ctx *c, prov *p, const char *id, const char *location,
                      const char *type, int is_data)
{
    json_t *e = prov_node(p, "entity", id);
    pset(p, e, "prov:type", qname(type));
    pset(p, e, "prov:location", json_string(location));
    const char *path = location;
    if (!strncmp(path, "file://", 7))
        path += 7;
    char abs[PATH_MAX], hex[65];
    int rc = strstr(path, "://") ? 1 : track_digest_of(c, path, abs, hex);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        pset(p, e, "loom:path", json_string(abs));
        pset(p, e, "loom:sha256", json_string(hex));
    }
    json_t *in = json_pack("{s:s,s:b}", "id", id, "data", is_data);
    if (!in || json_array_append_new(p->inputs, in))
        p->oom = 1;
    return 0;
}

/* The code (the command's program and the local files among its arguments,
 * or the library) and the data the trials read. */
static int prov_inputs(track_ctx *c, prov *p)
{
    const json_t *trial = json_object_get(c->spec, "trial");
    const json_t *argv = json_object_get(trial, "command");
    const char *lib = json_string_value(json_object_get(trial, "library"));
    const json_t *data = json_object_get(c->spec, "data");
    char id[64];
    int rc = 0;
    for (size_t i = 0; i < json_array_size(argv) && !rc; i++) {
        const char *arg = json_string_value(json_array_get(argv, i));
        struct stat st;
        if (!arg || (i > 0 && (strchr(arg, '{') || stat(arg, &st) || !S_ISREG(st.st_mode))))
            continue;   /* program, then only files that exist, not templates */
        if (i)
            snprintf(id, sizeof id, "sweep:code.arg%zu", i);
        else
            snprintf(id, sizeof id, "sweep:code");
        rc = prov_input(c, p, id, arg, "loom:Code", 0);
    }
    if (lib && !rc) {
        rc = prov_input(c, p, "sweep:code", lib, "loom:Code", 0);
        json_t *e = json_object_get(json_object_get(p->doc, "entity"), "sweep:code");
        const json_t *fn = json_object_get(trial, "function");
        const json_t *actor = json_object_get(trial, "actor");
        if (json_is_string(fn))
            pset(p, e, "loom:function", json_string(json_string_value(fn)));
        if (json_is_string(actor))
            pset(p, e, "loom:actor", json_string(json_string_value(actor)));
    }
    if (json_is_string(data) && !rc)
        rc = prov_input(c, p, "sweep:data0", json_string_value(data), "loom:Dataset", 1);
    for (size_t i = 0; i < json_array_size(data) && !rc; i++) {
        const char *ref = json_string_value(json_array_get(data, i));
        if (!ref)
            continue;
        snprintf(id, sizeof id, "sweep:data%zu", i);
        rc = prov_input(c, p, id, ref, "loom:Dataset", 1);
    }
    return rc;
}

static void trial_ids(const trial_info *t, char act[48], char cfg[64], char res[64])
{
    snprintf(act, 48, "sweep:trial_%04lld", t->id);
    snprintf(cfg, 64, "%s.config", act);
    snprintf(res, 64, "%s.result", act);
}

/* The trial activity and its config, result and artifact entities, with
 * their relations to the sweep, the agents and the inputs. */
static void prov_trial(track_ctx *c, prov *p, const trial_info *t)
{
    char act[48], cfg[64], res[64], user_id[SAFE_NAME_MAX + 16], mlrun[48];
    trial_ids(t, act, cfg, res);
    user_agent_id(c, user_id);
    snprintf(mlrun, sizeof mlrun, "mlflow:%s", t->run_id);

    json_t *a = prov_node(p, "activity", act);
    pset(p, a, "prov:type", qname("loom:Trial"));
    pset(p, a, "prov:label", json_string(t->name));
    pset(p, a, "loom:trialId", typed_ll(t->id));
    pset(p, a, "loom:state", json_string(t->state));
    pset(p, a, "loom:mlflowRun", qname(mlrun));
    char iso[80];
    track_iso_time(track_trial_start_ms(c, t), iso);
    pset(p, a, "prov:startTime", json_string(iso));
    if (t->has_end) {
        track_iso_time(t->end_ms, iso);
        pset(p, a, "prov:endTime", json_string(iso));
    }
    static const char *const extra[] = {"attempts", "cpu_seconds", "gpu_seconds", "error"};
    static const char *const attr[] = {"loom:attempts", "loom:cpuSeconds", "loom:gpuSeconds",
                                       "loom:error"};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        const json_t *v = json_object_get(t->rec, extra[i]);
        if (v && !json_is_null(v))
            pset(p, a, attr[i], prov_value(v));
    }

    json_t *e = prov_node(p, "entity", cfg);
    pset(p, e, "prov:type", qname("loom:Config"));
    for (void *it = json_object_iter((json_t *)t->config); it;
         it = json_object_iter_next((json_t *)t->config, it)) {
        char safe[SAFE_NAME_MAX + 1], key[SAFE_NAME_MAX + 8];
        const json_t *v = json_object_iter_value(it);
        if (json_is_null(v))
            continue;
        track_safe_name(json_object_iter_key(it), safe);
        snprintf(key, sizeof key, "param:%s", safe);
        pset(p, e, key, prov_value(v));
    }
    prov_rel(p, "wasGeneratedBy", "prov:entity", cfg, "prov:activity", "sweep:sweep");
    prov_rel(p, "used", "prov:activity", act, "prov:entity", cfg);
    prov_rel(p, "wasInformedBy", "prov:informed", act, "prov:informant", "sweep:sweep");
    prov_rel(p, "wasAssociatedWith", "prov:activity", act, "prov:agent", user_id);
    json_t *assoc = prov_rel(p, "wasAssociatedWith", "prov:activity", act, "prov:agent",
                             "loom:runtime");
    if (json_object_get(json_object_get(p->doc, "entity"), "sweep:code"))
        pset(p, assoc, "prov:plan", json_string("sweep:code"));
    for (size_t i = 0; i < json_array_size(p->inputs); i++) {
        const char *in = json_string_value(json_object_get(json_array_get(p->inputs, i), "id"));
        prov_rel(p, "used", "prov:activity", act, "prov:entity", in);
    }

    const json_t *last = track_last_metrics(t);
    if (last) {
        json_t *r = prov_node(p, "entity", res);
        pset(p, r, "prov:type", qname("loom:Result"));
        pset(p, r, "loom:objective", json_string(c->metric));
        size_t nres = json_array_size(t->results);
        const json_t *tv = json_object_get(json_array_get(t->results, nres ? nres - 1 : 0), "t");
        if (json_is_number(tv))
            pset(p, r, "loom:t", prov_value(tv));
        const json_t *best = json_object_get(t->rec, "best");
        if (json_is_number(best))
            pset(p, r, "loom:best", prov_value(best));
        json_t *names = track_metric_names(t);
        if (!names)
            p->oom = 1;
        else if (!json_object_size(names))   /* no results: the record's "last" */
            for (void *it = json_object_iter((json_t *)last); it;
                 it = json_object_iter_next((json_t *)last, it))
                if (json_is_number(json_object_iter_value(it)) &&
                    json_object_set_new(names, json_object_iter_key(it), json_null()))
                    p->oom = 1;
        for (void *it = json_object_iter(names); it; it = json_object_iter_next(names, it)) {
            char safe[SAFE_NAME_MAX + 1], key[SAFE_NAME_MAX + 8];
            track_safe_name(json_object_iter_key(it), safe);
            snprintf(key, sizeof key, "metric:%s", safe);
            pset(p, r, key, prov_value(track_last_value(t, json_object_iter_key(it))));
        }
        json_decref(names);
        json_t *gen = prov_rel(p, "wasGeneratedBy", "prov:entity", res, "prov:activity", act);
        long long ms;
        if (track_get_ll(json_array_get(t->results, nres ? nres - 1 : 0), "time_ms", &ms))
            prov_rel_time(p, gen, "prov:time", ms);
        json_t *d = prov_rel(p, "wasDerivedFrom", "prov:generatedEntity", res,
                             "prov:usedEntity", cfg);
        pset(p, d, "prov:activity", json_string(act));
        for (size_t i = 0; i < json_array_size(p->inputs); i++) {
            const json_t *in = json_array_get(p->inputs, i);
            if (!json_is_true(json_object_get(in, "data")))
                continue;
            d = prov_rel(p, "wasDerivedFrom", "prov:generatedEntity", res, "prov:usedEntity",
                         json_string_value(json_object_get(in, "id")));
            pset(p, d, "prov:activity", json_string(act));
        }
    }

    json_t *art_names = json_object();
    if (!art_names)
        p->oom = 1;
    for (size_t i = 0; art_names && i < json_array_size(t->artifacts); i++) {
        const json_t *art = json_array_get(t->artifacts, i);
        const char *name = json_string_value(json_object_get(art, "name"));
        if (!name)
            continue;
        char safe[SAFE_NAME_MAX + 1], id[SAFE_NAME_MAX + 96];
        track_safe_name(name, safe);
        snprintf(id, sizeof id, "%s.artifact.%s", act, safe);
        for (int k = 2; json_object_get(art_names, id); k++)
            snprintf(id, sizeof id, "%s.artifact.%s_%d", act, safe, k);
        if (json_object_set_new(art_names, id, json_true()))
            p->oom = 1;
        json_t *ae = prov_node(p, "entity", id);
        pset(p, ae, "prov:type", qname("loom:Artifact"));
        pset(p, ae, "prov:label", json_string(name));
        const json_t *sha = json_object_get(art, "sha256");
        const json_t *bytes = json_object_get(art, "bytes");
        if (json_is_string(sha))
            pset(p, ae, "loom:sha256", json_string(json_string_value(sha)));
        if (json_is_integer(bytes))
            pset(p, ae, "loom:bytes", typed_ll((long long)json_integer_value(bytes)));
        json_t *gen = prov_rel(p, "wasGeneratedBy", "prov:entity", id, "prov:activity", act);
        if (t->has_end)
            prov_rel_time(p, gen, "prov:time", t->end_ms);
    }
    json_decref(art_names);
}

static int prov_write(track_ctx *c, prov *p, const char *file)
{
    char dir[PATH_MAX], path[PATH_MAX];
    int rc = track_path_fmt(c, dir, "%s/prov", c->out);
    if (!rc)
        rc = track_path_fmt(c, path, "%s/%s", dir, file);
    if (!rc)
        rc = track_mkdir_p(c, dir);
    if (rc)
        return rc;
    if (p->oom)
        return track_fail(c, LOOM_ENOMEM, "out of memory building %s", file);
    /* no empty relation sections: keep only what holds records */
    for (size_t i = 0; i < sizeof prov_sections / sizeof prov_sections[0]; i++)
        if (!json_object_size(json_object_get(p->doc, prov_sections[i])) &&
            strcmp(prov_sections[i], "entity") && strcmp(prov_sections[i], "activity") &&
            strcmp(prov_sections[i], "agent"))
            json_object_del(p->doc, prov_sections[i]);
    loom_buf b = {0};
    track_json_write(&b, p->doc, 2, 0);
    loom__buf_append(&b, "\n", 1);
    rc = track_write_sbuf(c, dir, path, &b);
    loom__buf_free(&b);
    return rc;
}

int track_prov_trial_doc(track_ctx *c, const trial_info *t)
{
    prov p;
    int rc = prov_init(c, &p);
    if (!rc) {
        prov_agents(c, &p);
        prov_sweep_activity(c, &p);
        rc = prov_inputs(c, &p);
    }
    if (!rc) {
        prov_trial(c, &p, t);
        char file[48];
        snprintf(file, sizeof file, "trial_%04lld.json", t->id);
        rc = prov_write(c, &p, file);
    }
    prov_free(&p);
    return rc;
}

/* The sweep: its spec used, every trial started by it. */
int track_prov_sweep_doc(track_ctx *c, const json_t *trials)
{
    prov p;
    int rc = prov_init(c, &p);
    if (!rc) {
        prov_agents(c, &p);
        prov_sweep_activity(c, &p);
        rc = prov_inputs(c, &p);
    }
    if (rc) {
        prov_free(&p);
        return rc;
    }
    json_t *spec = prov_node(&p, "entity", "sweep:spec");
    pset(&p, spec, "prov:type", qname("loom:SweepSpec"));
    pset(&p, spec, "loom:spec", prov_value(c->spec));
    prov_rel(&p, "used", "prov:activity", "sweep:sweep", "prov:entity", "sweep:spec");
    json_t *sweep_act = json_object_get(json_object_get(p.doc, "activity"), "sweep:sweep");
    const json_t *state = json_object_get(c->sweep, "state");
    if (json_is_string(state))
        pset(&p, sweep_act, "loom:state", json_string(json_string_value(state)));
    const json_t *best = json_object_get(c->sweep, "best_trial");
    if (json_is_integer(best)) {
        char id[48];
        snprintf(id, sizeof id, "sweep:trial_%04lld", (long long)json_integer_value(best));
        pset(&p, sweep_act, "loom:bestTrial", qname(id));
    }
    for (size_t i = 0; i < json_array_size(trials) && !rc; i++) {
        trial_info t;
        rc = track_trial_parse(c, json_array_get(trials, i), &t);
        if (rc)
            break;
        prov_trial(c, &p, &t);
        char act[48], cfg[64], res[64];
        trial_ids(&t, act, cfg, res);
        json_t *st = prov_rel(&p, "wasStartedBy", "prov:activity", act, "prov:starter",
                              "sweep:sweep");
        if (t.has_start)
            prov_rel_time(&p, st, "prov:time", t.start_ms);
    }
    if (!rc)
        rc = prov_write(c, &p, "sweep.json");
    prov_free(&p);
    return rc;
}
