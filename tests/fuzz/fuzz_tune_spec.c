/* tests/fuzz/fuzz_tune_spec.c — fuzz target for the parts of a sweep spec
 * that come from users (tune/space.c, search.c, sched.c): any bytes are
 * parsed as JSON; its "space", "search" and "scheduler" are accepted or
 * refused with a message, never crash; what is accepted gives configs that
 * sample within bounds and a scheduler that answers a stream of results. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "tune/sched.h"
#include "tune/search.h"
#include "tune/space.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void run_search(const tune_space *space, const json_t *search, const char *algo)
{
    char err[512];
    tune_search *s = NULL;
    json_t *opts = json_is_object(search) ? json_deep_copy(search) : NULL;
    if (opts) json_object_del(opts, "algorithm");
    if (opts) json_object_del(opts, "seed");
    if (tune_search_new(algo, space, 7, opts, &s, err, sizeof(err)) == 0) {
        for (int64_t i = 0; i < 24; i++) {
            json_t *cfg = NULL;
            if (tune_search_next(s, i, &cfg)) break;
            if (!json_is_object(cfg)) abort();
            tune_search_observe(s, cfg, (double)((i * 7919) % 13) - 6.0);
            json_decref(cfg);
        }
        (void)tune_search_total(s);
        tune_search_destroy(&s);
    } else if (!err[0]) {
        abort(); /* a refusal says why */
    }
    json_decref(opts);
}

static void run_sched(const json_t *spec)
{
    char err[512] = "";
    tune_sched *s = NULL;
    if (!spec || tune_sched_new(spec, &s, err, sizeof(err))) {
        if (spec && !err[0]) abort();
        return;
    }
    for (int64_t trial = 0; trial < 12; trial++) tune_sched_add(s, trial);
    for (int step = 1; step <= 30; step++)
        for (int64_t trial = 0; trial < 12; trial++) {
            tune_decision d = tune_sched_result(s, trial, step, (double)((trial * 31 + step) % 17));
            if (d != TUNE_CONTINUE && d != TUNE_STOP && d != TUNE_PAUSE) abort();
            if (trial == 5 && step == 3) tune_sched_remove(s, trial);
            if (trial == 6 && step == 4) tune_sched_complete(s, trial, step, NAN);
        }
    while (tune_sched_next_paused(s) >= 0) {
    }
    tune_sched_destroy(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t e;
    json_t *doc = json_loadb((const char *)data, size, JSON_DECODE_ANY, &e);
    if (!doc) return 0;
    char err[512] = "";
    tune_space *space = NULL;
    const json_t *sp = json_is_object(doc) && json_object_get(doc, "space") ? json_object_get(doc, "space") : doc;
    if (tune_space_parse(sp, &space, err, sizeof(err)) == 0) {
        if (tune_space_grid_size(space) < 1) abort();
        const json_t *search = json_object_get(doc, "search");
        run_search(space, search, "grid");
        run_search(space, search, "random");
        run_search(space, search, "tpe");
        tune_space_destroy(&space);
    } else if (!err[0]) {
        abort();
    }
    run_sched(json_object_get(doc, "scheduler"));
    json_decref(doc);
    return 0;
}
