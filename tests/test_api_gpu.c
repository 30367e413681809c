/* tests/test_api_gpu.c — the GPU paths through the runtime: a node reporting
 * GPUs (--num-gpus; real ones where the machine has them), a task asking for
 * a GPU (examples/gpu_tasks.c matmul: cuBLAS on a GPU, a CPU loop otherwise)
 * placed with CUDA_VISIBLE_DEVICES set to its device, a GPU actor sharing a
 * device (num_gpus 0.5), and the result checked against the CPU computation.
 * Where the machine has no GPU the tasks report device "cpu" and why; with
 * LOOM_TEST_REQUIRE_GPU=1 (the GPU machine) they must report "gpu". */
#include "test_api_util.h"

/* The value of string key `k` in a msgpack map, copied into out. */
static int map_str(const loom_value *v, const char *k, char *out, size_t outlen)
{
    char *json = NULL;
    if (loom_msgpack_to_json(loom_value_data(v), loom_value_size(v), &json)) return -1;
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", k);
    const char *p = strstr(json, pat);
    int rc = -1;
    if (p) {
        p += strlen(pat);
        while (*p == ' ') p++;
        if (*p == '"') {
            const char *e = strchr(p + 1, '"');
            if (e) {
                snprintf(out, outlen, "%.*s", (int)(e - p - 1), p + 1);
                rc = 0;
            }
        } else {
            size_t n = strcspn(p, ",}");
            snprintf(out, outlen, "%.*s", (int)n, p);
            rc = 0;
        }
    }
    free(json);
    return rc;
}

static int pack2(loom_pack *p, int64_t a, int64_t b, loom_arg *args)
{
    loom_pack_reset(p);
    loom_pack_i64(p, a);
    size_t n1 = loom_pack_size(p);
    loom_pack_i64(p, b);
    const uint8_t *d = loom_pack_data(p);
    args[0] = loom_arg_value(d, n1);
    args[1] = loom_arg_value(d + n1, loom_pack_size(p) - n1);
    return 0;
}

/* The same product on the CPU, from the task's PRNG (fill_uniform in
 * gpu_tasks.c is not exported; compare GPU against CPU runs instead). */
int main(void)
{
    t_setup_env();
    int want_gpu = getenv("LOOM_TEST_REQUIRE_GPU") && atoi(getenv("LOOM_TEST_REQUIRE_GPU"));
    loom_node_spec spec = {.num_gpus = want_gpu ? -1 : 2, .gpu_memory = 0};
    loom_connect_opts o;
    memset(&o, 0, sizeof o);
    o.num_nodes = 1;
    o.num_cpus = 2;
    o.nodes = &spec;
    loom_client *c = NULL;
    REQUIRE(loom_connect("local", &o, &c) == 0);
    loom_ref lib;
    REQUIRE(loom_library_load(c, LOOM_GPU_EXAMPLES_LIB, &lib) == 0);
    char *status = NULL;
    REQUIRE(loom_status_json(c, &status) == 0);
    int64_t gpus[4];
    CHECK(t_json_ints(status, "gpus", gpus, 4) >= 1 && gpus[0] >= 1);
    printf("node GPUs: %lld\n", (long long)gpus[0]);
    free(status);

    loom_pack *p = loom_pack_new();
    loom_arg args[2];
    /* matmul with a GPU, and the same without one: equal checksums */
    loom_task_opts gpu_opts;
    memset(&gpu_opts, 0, sizeof gpu_opts);
    gpu_opts.num_gpus = 1;
    loom_ref r_gpu, r_cpu;
    pack2(p, 256, 7, args);
    CHECK_RC(loom_submit(c, lib, "matmul", args, 2, &gpu_opts, &r_gpu), 0);
    CHECK_RC(loom_submit(c, lib, "matmul", args, 2, NULL, &r_cpu), 0);
    loom_value *vg = NULL, *vc = NULL;
    CHECK_RC(loom_get(c, r_gpu, 60000, &vg), 0);
    CHECK_RC(loom_get(c, r_cpu, 60000, &vc), 0);
    REQUIRE(vg && vc);
    char dev[32] = "", ids[64] = "", why[256] = "", sum_g[64] = "", sum_c[64] = "", gflops[64] = "";
    map_str(vg, "device", dev, sizeof dev);
    map_str(vg, "gpu_ids", ids, sizeof ids);
    map_str(vg, "why", why, sizeof why);
    map_str(vg, "checksum", sum_g, sizeof sum_g);
    map_str(vg, "gflops", gflops, sizeof gflops);
    map_str(vc, "checksum", sum_c, sizeof sum_c);
    printf("matmul 256x256 with num_gpus=1: device %s, gpu_ids '%s', %s GFLOP/s%s%s\n", dev, ids, gflops,
           why[0] ? ", why: " : "", why);
    CHECK(strlen(ids) == 1 && (ids[0] == '0' || ids[0] == '1'));
    if (want_gpu) CHECK(!strcmp(dev, "gpu"));
    double g = atof(sum_g), cp = atof(sum_c);
    printf("checksums: gpu-placed %.6f, cpu %.6f\n", g, cp);
    CHECK(cp != 0 && (g - cp) / cp < 1e-4 && (cp - g) / cp < 1e-4);
    loom_value_release(&vg);
    loom_value_release(&vc);

    /* two actors of half a GPU each share one device */
    loom_actor_opts ao;
    memset(&ao, 0, sizeof ao);
    ao.res.num_gpus = 0.5;
    loom_actor w1, w2;
    loom_pack_reset(p);
    loom_pack_i64(p, 1000);
    loom_arg n = loom_arg_value(loom_pack_data(p), loom_pack_size(p));
    CHECK_RC(loom_actor_create(c, lib, "GpuWorker", &n, 1, &ao, &w1), 0);
    CHECK_RC(loom_actor_create(c, lib, "GpuWorker", &n, 1, &ao, &w2), 0);
    char cvd1[32] = "", cvd2[32] = "";
    loom_actor ws[2] = {w1, w2};
    char *cvds[2] = {cvd1, cvd2};
    for (int i = 0; i < 2; i++) {
        loom_ref r;
        CHECK_RC(loom_actor_call(c, ws[i], "info", NULL, 0, &r), 0);
        loom_value *v = NULL;
        CHECK_RC(loom_get(c, r, 60000, &v), 0);
        if (!v) {
            fprintf(stderr, "info: %s\n", loom_last_error(c));
            continue;
        }
        map_str(v, "cuda_visible_devices", cvds[i], 32);
        map_str(v, "device", dev, sizeof dev);
        printf("GpuWorker %d: device %s, CUDA_VISIBLE_DEVICES=%s\n", i, dev, cvds[i]);
        loom_value_release(&v);
    }
    CHECK(cvd1[0] && !strcmp(cvd1, cvd2)); /* best fit: both halves on one device */
    /* scale: 1000 ones times 3 */
    loom_pack_reset(p);
    loom_pack_f64(p, 3.0);
    loom_arg a3 = loom_arg_value(loom_pack_data(p), loom_pack_size(p));
    loom_ref r;
    CHECK_RC(loom_actor_call(c, w1, "scale", &a3, 1, &r), 0);
    loom_value *v = NULL;
    CHECK_RC(loom_get(c, r, 60000, &v), 0);
    if (v) {
        loom_unpack u;
        loom_unpack_init(&u, loom_value_data(v), loom_value_size(v));
        double s = 0;
        CHECK(loom_unpack_f64(&u, &s) == 0 && s == 3000.0);
        loom_value_release(&v);
    }
    loom_actor_kill(c, w1);
    loom_actor_kill(c, w2);
    loom_pack_destroy(&p);
    loom_disconnect(&c);
    return TEST_DONE();
}
