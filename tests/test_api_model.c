/* tests/test_api_model.c — the MLP model runtime (serve/runtime_mlp.c) on a
 * real local cluster: a Model actor made from an artifact put in the object
 * store; predict on a batch agrees with serve/mlp.c run here; integer inputs
 * are converted; metadata is KServe v2 model metadata with the device and
 * why; bad requests (wrong shape, garbage bytes, no input) fail their call
 * with a clear message and the actor keeps serving; bad artifacts and params
 * fail init.  Prints the predict latency (call to result) for batches of 1
 * and 64 on the CPU. */
#include <jansson.h>
#include "serve/mlp.h"
#include "serve/tensor.h"
#include "serve_util.h"
#include "test_api_util.h"

#define TIMEOUT_MS 60000
#define IN 64
#define OUT 10

static char state_dir[4096];
static loom_ref lib;
static ts_mlp ref;
static void *artifact;
static size_t artifact_len;

/* A request container with one tensor. */
static void *request(const char *name, loom_tensor_dtype dt, int64_t rows, int64_t cols,
                     const void *data, size_t *len)
{
    loom_tensor t;
    int64_t shape[2] = {rows, cols};
    void *buf = NULL;
    REQUIRE(loom_tensor_set(&t, name, dt, 2, shape, data, NULL, 0) == 0);
    REQUIRE(loom_tensors_encode_alloc(&t, 1, &buf, len, NULL, 0) == 0);
    return buf;
}

/* Call method with one inline argument (NULL: none); the result or an error.
 * The value maps the object zero-copy: the ref is held until done(). */
typedef struct result {
    loom_value *v;
    loom_ref ref;
    int has_ref;
} result;

static int call(loom_client *c, loom_actor a, const char *method, const void *arg, size_t len,
                result *out)
{
    loom_arg args[1] = {loom_arg_value(arg, len)};
    memset(out, 0, sizeof(*out));
    int rc = loom_actor_call(c, a, method, args, arg ? 1 : 0, &out->ref);
    if (rc) return rc;
    out->has_ref = 1;
    return loom_get(c, out->ref, TIMEOUT_MS, &out->v);
}

static void done(loom_client *c, result *r)
{
    loom_value_release(&r->v);
    if (r->has_ref) loom_release(c, r->ref);
    r->has_ref = 0;
}

static loom_actor make_model(loom_client *c, const void *art, size_t len, const char *params)
{
    loom_ref obj;
    REQUIRE(loom_put(c, art, len, &obj) == 0);
    loom_arg args[2] = {loom_arg_ref(obj), loom_arg_value(params, params ? strlen(params) : 0)};
    loom_actor a;
    REQUIRE(loom_actor_create(c, lib, "Model", args, params ? 2 : 1, NULL, &a) == 0);
    loom_release(c, obj);
    return a;
}

/* Predict on rows x [n, IN] (FP32) and check against serve/mlp.c here. */
static void check_predict(loom_client *c, loom_actor a, const loom_mlp *local, const float *x,
                          int n, const void *req, size_t reqlen)
{
    result res;
    int rc = call(c, a, "predict", req, reqlen, &res);
    loom_value *v = res.v;
    CHECK_RC(rc, 0);
    if (rc) {
        fprintf(stderr, "predict: %s\n", loom_last_error(c));
        done(c, &res);
        return;
    }
    loom_tensor t[4];
    int count = 0;
    char err[256] = "";
    CHECK_RC(loom_tensors_decode(loom_value_data(v), loom_value_size(v), t, 4, &count, err,
                                 sizeof err), 0);
    const loom_tensor *p = loom_tensors_find(t, count, "probabilities"),
                      *l = loom_tensors_find(t, count, "label");
    CHECK(count == 2 && p && l);
    if (p && l) {
        CHECK(p->dtype == LOOM_DTYPE_FP32 && p->ndim == 2 && p->shape[0] == n && p->shape[1] == OUT);
        CHECK(l->dtype == LOOM_DTYPE_INT64 && l->ndim == 1 && l->shape[0] == n);
        float *want = malloc(sizeof(float) * (size_t)n * OUT), *got = malloc(sizeof(float) * (size_t)n * OUT);
        float *exact = malloc(sizeof(float) * (size_t)n * OUT);
        REQUIRE(loom_mlp_forward_cpu(local, x, n, exact, err, sizeof err) == 0);
        ts_mlp_reference(&ref, x, n, want);
        loom_tensor_to_f32(p, got);
        CHECK(ts_max_abs_diff(got, exact, (size_t)n * OUT) < 1e-6);
        CHECK(ts_max_abs_diff(got, want, (size_t)n * OUT) < 1e-5);
        int labels_ok = 1;
        for (int r = 0; r < n; r++)
            labels_ok &= loom_tensor_get_f64(l, (size_t)r) == loom_mlp_argmax(exact + (size_t)r * OUT, OUT);
        CHECK(labels_ok);
        free(want);
        free(got);
        free(exact);
    }
    done(c, &res);
}

static void check_metadata(loom_client *c, loom_actor a)
{
    result res;
    CHECK_RC(call(c, a, "metadata", NULL, 0, &res), 0);
    loom_value *v = res.v;
    if (!v) {
        done(c, &res);
        return;
    }
    json_error_t jerr;
    json_t *m = json_loadb(loom_value_data(v), loom_value_size(v), 0, &jerr);
    CHECK(m != NULL);
    const char *name = NULL, *platform = NULL, *in = NULL, *in_dt = NULL, *out = NULL,
               *label = NULL, *device = NULL, *why = NULL, *version = NULL;
    json_int_t in0 = 0, in1 = 0, out1 = 0, lab0 = 0;
    int rc = json_unpack(m, "{s:s, s:s, s:[s], s:[{s:s, s:s, s:[I, I]}],"
                            " s:[{s:s, s:[I, I]}, {s:s, s:[I]}], s:{s:s, s:s}}",
                         "name", &name, "platform", &platform, "versions", &version, "inputs",
                         "name", &in, "datatype", &in_dt, "shape", &in0, &in1, "outputs", "name",
                         &out, "shape", &in0, &out1, "name", &label, "shape", &lab0,
                         "parameters", "device", &device, "device_reason", &why);
    CHECK(rc == 0);
    if (rc) fprintf(stderr, "metadata: %.*s\n", (int)loom_value_size(v), (const char *)loom_value_data(v));
    if (!rc) {
        CHECK(!strcmp(name, "digits") && !strcmp(platform, "loom-mlp") && !strcmp(version, "3"));
        CHECK(!strcmp(in, "pixels") && !strcmp(in_dt, "FP32") && in0 == -1 && in1 == IN);
        CHECK(!strcmp(out, "probabilities") && out1 == OUT && !strcmp(label, "label") && lab0 == -1);
        CHECK(!strcmp(device, "cpu") && strstr(why, "no GPU") != NULL);
    }
    json_decref(m);
    done(c, &res);
}

static void expect_call_fails(loom_client *c, loom_actor a, const void *req, size_t len,
                              const char *needle)
{
    result res;
    CHECK_RC(call(c, a, "predict", req, len, &res), LOOM_ETASK);
    CHECK_ERR_HAS(c, needle);
    done(c, &res);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median and 90th percentile of calls of predict on a batch of n. */
static void latency(loom_client *c, loom_actor a, int n)
{
    enum { CALLS = 60 };
    float *x = malloc(sizeof(float) * (size_t)n * IN);
    uint64_t seed = 99;
    for (int i = 0; i < n * IN; i++) x[i] = (float)(ts_rand(&seed) % 17);
    size_t len;
    void *req = request("pixels", LOOM_DTYPE_FP32, n, IN, x, &len);
    double ms[CALLS];
    for (int i = 0; i < CALLS; i++) {
        struct timespec t0, t1;
        result res;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int rc = call(c, a, "predict", req, len, &res);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        CHECK_RC(rc, 0);
        done(c, &res);
        ms[i] = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    }
    qsort(ms, CALLS, sizeof(double), cmp_double);
    printf("predict latency, batch %2d on the CPU (actor call to result, %d calls): "
           "median %.3f ms, p90 %.3f ms\n", n, CALLS, ms[CALLS / 2], ms[CALLS * 9 / 10]);
    free(req);
    free(x);
}

static void test_model(loom_client *c)
{
    loom_actor a = make_model(c, artifact, artifact_len,
                              "{\"device\": \"auto\", \"name\": \"digits\", \"version\": \"3\"}");
    CHECK_RC(loom_actor_wait_ready(c, a, TIMEOUT_MS), 0);
    loom_mlp *local = NULL;
    REQUIRE(loom_mlp_load(artifact, artifact_len, &local, NULL, 0) == 0);
    check_metadata(c, a);

    enum { N = 17 };
    float x[N * IN];
    int64_t xi[N * IN];
    uint64_t seed = 5;
    for (int i = 0; i < N * IN; i++) x[i] = (float)(xi[i] = (int64_t)(ts_rand(&seed) % 17));
    size_t len;
    void *req = request("pixels", LOOM_DTYPE_FP32, N, IN, x, &len);
    check_predict(c, a, local, x, N, req, len);
    free(req);
    req = request("pixels", LOOM_DTYPE_INT64, N, IN, xi, &len);   /* converted */
    check_predict(c, a, local, x, N, req, len);
    free(req);
    req = request("any_name", LOOM_DTYPE_FP32, 1, IN, x, &len);   /* the only tensor */
    check_predict(c, a, local, x, 1, req, len);
    free(req);

    /* bad requests fail the call, not the actor */
    req = request("pixels", LOOM_DTYPE_FP32, 2, 7, x, &len);
    expect_call_fails(c, a, req, len, "shape [2, 7], want [n, 64]");
    free(req);
    expect_call_fails(c, a, "\x89PNG garbage", 12, "LTN1");
    unsigned char trunc[16] = "LTN1\x01\0\0\0\x09\0pix";
    expect_call_fails(c, a, trunc, sizeof trunc, "truncated");
    loom_tensor two[2];
    int64_t s[2] = {1, IN};
    REQUIRE(loom_tensor_set(&two[0], "a", LOOM_DTYPE_FP32, 2, s, x, NULL, 0) == 0);
    REQUIRE(loom_tensor_set(&two[1], "b", LOOM_DTYPE_FP32, 2, s, x, NULL, 0) == 0);
    REQUIRE(loom_tensors_encode_alloc(two, 2, &req, &len, NULL, 0) == 0);
    expect_call_fails(c, a, req, len, "want one input tensor (named 'pixels')");
    free(req);
    result res;
    CHECK_RC(call(c, a, "predict", NULL, 0, &res), LOOM_ETASK);
    CHECK_ERR_HAS(c, "want a tensor container");
    done(c, &res);
    req = request("pixels", LOOM_DTYPE_FP32, N, IN, x, &len);
    check_predict(c, a, local, x, N, req, len);     /* still serving */
    free(req);

    latency(c, a, 1);
    latency(c, a, 64);
    loom_mlp_destroy(&local);
    CHECK_RC(loom_actor_kill(c, a), 0);
}

static void expect_init_fails(loom_client *c, const void *art, size_t len, const char *params,
                              const char *needle)
{
    loom_actor a = make_model(c, art, len, params);
    CHECK_RC(loom_actor_wait_ready(c, a, TIMEOUT_MS), LOOM_ETASK);
    CHECK_ERR_HAS(c, needle);
}

static void test_bad_init(loom_client *c)
{
    expect_init_fails(c, "definitely not safetensors", 26, NULL, "not a safetensors file");
    unsigned char bad[24] = {16, 0, 0, 0, 0, 0, 0, 0, '{', '"', 'x', '"', ':', '1', '}', ' ',
                             ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
    expect_init_fails(c, bad, sizeof bad, NULL, "not an object");
    expect_init_fails(c, artifact, artifact_len, "{\"device\": \"cuda\"}", "granted no GPU");
    expect_init_fails(c, artifact, artifact_len, "{\"device\": \"tpu\"}", "want auto, cpu or cuda");
    expect_init_fails(c, artifact, artifact_len, "not json", "params are not a JSON object");
    /* device cpu asked for: fine */
    loom_actor a = make_model(c, artifact, artifact_len, "{\"device\": \"cpu\"}");
    CHECK_RC(loom_actor_wait_ready(c, a, TIMEOUT_MS), 0);
    CHECK_RC(loom_actor_kill(c, a), 0);
}

int main(void)
{
    snprintf(state_dir, sizeof state_dir, "/tmp/loom-test-model-%d", (int)getpid());
    int widths[3] = {IN, 64, OUT};
    ts_mlp_init(&ref, 2, widths, 0, 2024);
    const char *meta[] = {"input_name", "pixels"};
    artifact = ts_mlp_artifact(&ref, meta, 1, &artifact_len);

    loom_client *c = t_connect(1, 2, state_dir);
    int rc = loom_library_load(c, LOOM_MLP_LIB, &lib);
    if (rc) fprintf(stderr, "library load: %s: %s\n", loom_strerror(rc), loom_last_error(c));
    REQUIRE(rc == 0);
    test_model(c);
    test_bad_init(c);
    loom_disconnect(&c);
    rmdir(state_dir);
    free(artifact);
    ts_mlp_free(&ref);
    return TEST_DONE();
}
