/* cli/infer_cmd.c — `loom infer`: batch inference of a registered model over
 * a dataset (shard/, loom/shard.h), with a progress bar (rate, ETA) on a
 * terminal and plain lines otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/infer_cmd.h"
#include "loom/shard.h"

typedef struct bar {
    int tty;
    double last_line;
} bar;

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fmt_eta(double s, char *buf, size_t cap)
{
    if (s < 0) snprintf(buf, cap, "--:--");
    else if (s < 3600) snprintf(buf, cap, "%02d:%02d", (int)s / 60, (int)s % 60);
    else snprintf(buf, cap, "%dh%02d", (int)s / 3600, ((int)s % 3600) / 60);
}

static void on_progress(const loom_infer_progress *p, void *arg)
{
    bar *b = arg;
    double frac = p->shards ? (double)p->done / (double)p->shards : 1;
    char eta[32];
    fmt_eta(p->finished ? 0 : p->eta_s, eta, sizeof(eta));
    if (b->tty) {
        char fill[41];
        int w = (int)(frac * 40);
        for (int i = 0; i < 40; i++) fill[i] = i < w ? '#' : '.';
        fill[40] = 0;
        fprintf(stderr, "\r\033[K[%s] %3.0f%% %lld/%lld shards  %.0f rows/s  ETA %s  cache %lld", fill, frac * 100,
                (long long)p->done, (long long)p->shards, p->rows_per_s, eta, (long long)p->cache_hits);
        if (p->finished) fputc('\n', stderr);
        fflush(stderr);
        return;
    }
    double t = mono_s();
    if (!p->finished && t - b->last_line < 2) return;
    b->last_line = t;
    fprintf(stderr, "infer: %lld/%lld shards (%.0f%%), %lld/%lld rows, %.0f rows/s, ETA %s, cache hits %lld\n",
            (long long)p->done, (long long)p->shards, frac * 100, (long long)p->rows_done, (long long)p->rows,
            p->rows_per_s, eta, (long long)p->cache_hits);
}

int infer_cli(loom_client *c, const infer_cli_opts *o)
{
    bar b = {.tty = !o->quiet && isatty(2)};
    loom_infer_opts io = {.model = o->model, .input = o->input, .output = o->output, .shard_size = o->shard_size,
                          .max_in_flight = o->max_in_flight, .params = o->params, .num_cpus = o->num_cpus,
                          .num_gpus = o->num_gpus, .straggler_factor = o->straggler_factor,
                          .no_cache = o->no_cache, .progress = o->quiet ? NULL : on_progress,
                          .progress_arg = &b, .interval_ms = b.tty ? 200 : 1000};
    loom_infer_progress st;
    int rc = loom_infer(c, &io, &st);
    if (rc) {
        fprintf(stderr, "loom infer: %s\n", loom_infer_last_error());
        return rc == LOOM_EINVAL || rc == LOOM_ENOTFOUND ? 2 : 1;
    }
    printf("%lld shards, %lld rows in %.2f s (%.0f rows/s): %lld computed, %lld from the cache (hit rate %.1f%%), "
           "%lld from earlier output, %lld speculative copies, %lld retried\n",
           (long long)st.shards, (long long)st.rows, st.seconds, st.rows_per_s, (long long)st.computed,
           (long long)st.cache_hits, st.shards ? 100.0 * (double)st.cache_hits / (double)st.shards : 0.0,
           (long long)st.from_output, (long long)st.speculative, (long long)st.retried);
    printf("output: %s/manifest.json\n", o->output);
    return 0;
}
