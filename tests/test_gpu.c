/* tests/test_gpu.c — GPU discovery (worker/gpu.c): whatever the machine has,
 * the answer is consistent (a count within bounds, a reason when it is 0,
 * memory and a name for every device), and CUDA_VISIBLE_DEVICES is honoured:
 * empty or "-1" hides every GPU, and where NVML answers, a list keeps just
 * the devices it names, in its order. */
#include <stdlib.h>
#include <string.h>
#include "loom/loom.h"
#include "worker/gpu.h"
#include "testutil.h"

static void check_consistent(const loom_gpu_info *g)
{
    CHECK(g->count >= 0 && g->count <= LOOM_MAX_GPUS);
    CHECK(g->source[0] != 0);
    if (g->count == 0) CHECK(g->why[0] != 0);
    for (int i = 0; i < g->count && i < LOOM_MAX_GPUS; i++) {
        CHECK(g->memory[i] > 0);
        CHECK(g->name[i][0] != 0);
    }
}

static void print_info(const char *label, const loom_gpu_info *g)
{
    printf("%s: %d GPU(s) from %s, driver \"%s\"%s%s\n", label, g->count, g->source, g->driver,
           g->count ? "" : ": ", g->count ? "" : g->why);
    for (int i = 0; i < g->count; i++)
        printf("  %d: %s, %.1f GiB\n", i, g->name[i], (double)g->memory[i] / (1024.0 * 1024 * 1024));
}

static loom_gpu_info discover_with(const char *visible)
{
    loom_gpu_info g;
    if (visible) setenv("CUDA_VISIBLE_DEVICES", visible, 1);
    else unsetenv("CUDA_VISIBLE_DEVICES");
    loom__gpu_discover(&g);
    check_consistent(&g);
    return g;
}

/* Lists that hide every GPU, whatever the machine has. */
static void test_hidden(void)
{
    static const char *const lists[] = {"", "-1", " ", "none", ",0"};
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        loom_gpu_info g = discover_with(lists[i]);
        CHECK(g.count == 0);
        CHECK(strstr(g.why, "CUDA_VISIBLE_DEVICES") != NULL);
    }
}

/* With NVML, subsets of the physical devices (the driver API reads the
 * variable once per process, so only NVML can be checked this way). */
static void test_subsets(const loom_gpu_info *all)
{
    if (strcmp(all->source, "nvml") || all->count == 0) return;
    char list[64];
    int last = all->count - 1;
    snprintf(list, sizeof(list), "%d", last);
    loom_gpu_info g = discover_with(list);
    CHECK(g.count == 1 && g.memory[0] == all->memory[last] && !strcmp(g.name[0], all->name[last]));

    snprintf(list, sizeof(list), "%d,0", last);
    g = discover_with(list);
    CHECK(g.count == (last ? 2 : 1));
    CHECK(g.memory[0] == all->memory[last]);

    snprintf(list, sizeof(list), "0,%d,0", all->count); /* stops at the missing index */
    g = discover_with(list);
    CHECK(g.count == 1);

    snprintf(list, sizeof(list), "%d", all->count);
    g = discover_with(list);
    CHECK(g.count == 0);
}

int main(void)
{
    const char *orig = getenv("CUDA_VISIBLE_DEVICES");
    char *saved = orig ? strdup(orig) : NULL;

    loom_gpu_info here;
    loom__gpu_discover(&here);
    check_consistent(&here);
    print_info("as started", &here);

    /* twice gives the same answer */
    loom_gpu_info again;
    loom__gpu_discover(&again);
    CHECK(again.count == here.count && !strcmp(again.source, here.source));

    test_hidden();
    loom_gpu_info all = discover_with(NULL);
    print_info("CUDA_VISIBLE_DEVICES unset", &all);
    test_subsets(&all);

    if (saved) setenv("CUDA_VISIBLE_DEVICES", saved, 1);
    else unsetenv("CUDA_VISIBLE_DEVICES");
    free(saved);
    return TEST_DONE();
}
