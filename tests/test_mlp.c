/* tests/test_mlp.c — serve/mlp.c: a random MLP written as safetensors,
 * loaded and run on the CPU, against a double-precision reference; ReLU and
 * tanh; float64 weights converted; accessors and metadata; refusals of
 * artifacts that are not MLPs; and the CUDA path: where no GPU is usable it
 * must refuse with a reason and leave the CPU path working, where one is it
 * must agree with the CPU. */
#include <stdint.h>
#include "loom/loom.h"
#include "serve/mlp.h"
#include "serve_util.h"
#include "testutil.h"

static float *random_batch(int n, int in, uint64_t seed)
{
    float *x = malloc(sizeof(float) * (size_t)n * (size_t)in);
    REQUIRE(x);
    for (size_t i = 0; i < (size_t)n * (size_t)in; i++) x[i] = ts_uniform(&seed, 2.0f);
    return x;
}

/* Forward pass of m's artifact on n random rows matches the reference. */
static void check_forward(const ts_mlp *ref, int n)
{
    size_t len;
    const char *extra[] = {"input_name", "pixels", "name", "unit"};
    void *art = ts_mlp_artifact(ref, extra, 2, &len);
    loom_mlp *m = NULL;
    char err[256] = "";
    CHECK_RC(loom_mlp_load(art, len, &m, err, sizeof err), 0);
    free(art);   /* the model keeps its own copy */
    REQUIRE(m);
    int out = ref->width[ref->nl];
    CHECK(loom_mlp_layers(m) == ref->nl && loom_mlp_inputs(m) == ref->width[0]);
    CHECK(loom_mlp_outputs(m) == out && !strcmp(loom_mlp_device(m), "cpu"));
    CHECK(loom_mlp_activation(m) == (ref->tanh_act ? LOOM_MLP_TANH : LOOM_MLP_RELU));
    CHECK(!strcmp(loom_mlp_input_name(m), "pixels") && !strcmp(loom_mlp_output_name(m), "probabilities"));
    CHECK(!strcmp(loom_mlp_meta(m, "name"), "unit") && loom_mlp_meta(m, "x") == NULL);
    float *x = random_batch(n, ref->width[0], 7);
    float *got = malloc(sizeof(float) * (size_t)n * (size_t)out);
    float *want = malloc(sizeof(float) * (size_t)n * (size_t)out);
    CHECK_RC(loom_mlp_forward(m, x, n, got, err, sizeof err), 0);
    ts_mlp_reference(ref, x, n, want);
    double diff = ts_max_abs_diff(got, want, (size_t)n * (size_t)out);
    CHECK(diff < 1e-5);
    if (diff >= 1e-5) fprintf(stderr, "max |cpu - reference| = %g\n", diff);
    double rowsum = 0;
    for (int j = 0; j < out; j++) rowsum += got[j];
    CHECK(fabs(rowsum - 1) < 1e-5);
    CHECK_RC(loom_mlp_forward(m, x, 0, got, err, sizeof err), 0);
    CHECK_RC(loom_mlp_forward(m, x, (int64_t)1 << 40, got, err, sizeof err), LOOM_ETOOBIG);

    /* the GPU: refused with a reason, or equal to the CPU */
    char why[256] = "";
    int rc = loom_mlp_use_cuda(m, why, sizeof why);
    if (rc) {
        printf("CUDA path not available here: %s\n", why);
        CHECK(why[0] != 0 && !strcmp(loom_mlp_device(m), "cpu"));
        CHECK_RC(loom_mlp_forward(m, x, n, got, err, sizeof err), 0);
    } else {
        CHECK(!strcmp(loom_mlp_device(m), "cuda"));
        CHECK_RC(loom_mlp_forward(m, x, n, got, err, sizeof err), 0);
        double gd = ts_max_abs_diff(got, want, (size_t)n * (size_t)out);
        printf("CUDA path: max |gpu - reference| = %g\n", gd);
        CHECK(gd < 1e-4);
    }
    loom_mlp_destroy(&m);
    CHECK(m == NULL);
    loom_mlp_destroy(&m);
    free(x);
    free(got);
    free(want);
}

static void test_forward(void)
{
    ts_mlp ref;
    int w1[4] = {5, 7, 6, 3};
    ts_mlp_init(&ref, 3, w1, 1, 11);
    check_forward(&ref, 9);
    ts_mlp_free(&ref);
    int w2[3] = {64, 64, 10};
    ts_mlp_init(&ref, 2, w2, 0, 12);
    check_forward(&ref, 100);
    ts_mlp_free(&ref);
    int w3[2] = {4, 2};   /* one layer: logistic regression */
    ts_mlp_init(&ref, 1, w3, 0, 13);
    check_forward(&ref, 3);
    ts_mlp_free(&ref);
}

/* An artifact from tensors and metadata given here. */
static int load_tensors(const loom_tensor *t, int n, const char *const *meta, int nmeta,
                        char *err, size_t errlen)
{
    void *buf;
    size_t len;
    REQUIRE(loom_st_write(t, n, meta, nmeta, &buf, &len, NULL, 0) == 0);
    loom_mlp *m = NULL;
    int rc = loom_mlp_load(buf, len, &m, err, errlen);
    loom_mlp_destroy(&m);
    free(buf);
    return rc;
}

static void expect_refused(const loom_tensor *t, int n, const char *const *meta, int nmeta,
                           const char *needle)
{
    char err[256] = "";
    int rc = load_tensors(t, n, meta, nmeta, err, sizeof err);
    loom_test_checks++;
    if (rc == 0 || !strstr(err, needle)) {
        fprintf(stderr, "load gave %d '%s', want an error with '%s'\n", rc, err, needle);
        loom_test_failures++;
    }
}

static void test_refusals(void)
{
    float w[12] = {0}, b[4] = {0};
    double w64[6] = {1, 2, 3, 4, 5, 6}, b64[2] = {0.5, -0.5};
    int32_t wi[6] = {0};
    loom_tensor t[6];
    int64_t s23[2] = {2, 3}, s2[1] = {2}, s32[2] = {3, 2}, s3[1] = {3}, s44[2] = {4, 3};
    REQUIRE(loom_tensor_set(&t[0], "layers.0.weight", LOOM_DTYPE_FP32, 2, s23, w, NULL, 0) == 0);
    REQUIRE(loom_tensor_set(&t[1], "layers.0.bias", LOOM_DTYPE_FP32, 1, s2, b, NULL, 0) == 0);
    char err[256];
    CHECK_RC(load_tensors(t, 2, NULL, 0, err, sizeof err), 0);
    expect_refused(t, 1, NULL, 0, "lacks tensor 'layers.0.bias'");
    expect_refused(&t[1], 1, NULL, 0, "no tensor 'layers.0.weight'");
    /* layer 1 takes 4 inputs, layer 0 gives 2 */
    REQUIRE(loom_tensor_set(&t[2], "layers.1.weight", LOOM_DTYPE_FP32, 2, s44, w, NULL, 0) == 0);
    REQUIRE(loom_tensor_set(&t[3], "layers.1.bias", LOOM_DTYPE_FP32, 1, s3, b, NULL, 0) == 0);
    t[2].shape[0] = 3; t[2].shape[1] = 4; t[2].nbytes = 48;
    expect_refused(t, 4, NULL, 0, "takes 4 inputs");
    /* a bias of the wrong length */
    REQUIRE(loom_tensor_set(&t[2], "layers.1.weight", LOOM_DTYPE_FP32, 2, s32, w, NULL, 0) == 0);
    REQUIRE(loom_tensor_set(&t[3], "layers.1.bias", LOOM_DTYPE_FP32, 1, s2, b, NULL, 0) == 0);
    expect_refused(t, 4, NULL, 0, "want [3]");
    REQUIRE(loom_tensor_set(&t[3], "layers.1.bias", LOOM_DTYPE_FP32, 1, s3, b, NULL, 0) == 0);
    CHECK_RC(load_tensors(t, 4, NULL, 0, err, sizeof err), 0);
    /* an unexpected tensor */
    REQUIRE(loom_tensor_set(&t[4], "extra", LOOM_DTYPE_FP32, 1, s3, b, NULL, 0) == 0);
    expect_refused(t, 5, NULL, 0, "only");
    /* activations */
    const char *tanh_meta[] = {"activation", "tanh"}, *bad_act[] = {"activation", "gelu"},
               *bad_out[] = {"output_activation", "sigmoid"}, *soft[] = {"output_activation", "softmax"};
    CHECK_RC(load_tensors(t, 4, tanh_meta, 1, err, sizeof err), 0);
    CHECK_RC(load_tensors(t, 4, soft, 1, err, sizeof err), 0);
    expect_refused(t, 4, bad_act, 1, "gelu");
    expect_refused(t, 4, bad_out, 1, "only softmax");
    /* integer weights are not a model; float64 ones are converted */
    REQUIRE(loom_tensor_set(&t[0], "layers.0.weight", LOOM_DTYPE_INT32, 2, s23, wi, NULL, 0) == 0);
    expect_refused(t, 2, NULL, 0, "INT32");
    REQUIRE(loom_tensor_set(&t[0], "layers.0.weight", LOOM_DTYPE_FP64, 2, s23, w64, NULL, 0) == 0);
    REQUIRE(loom_tensor_set(&t[1], "layers.0.bias", LOOM_DTYPE_FP64, 1, s2, b64, NULL, 0) == 0);
    void *buf;
    size_t len;
    REQUIRE(loom_st_write(t, 2, NULL, 0, &buf, &len, NULL, 0) == 0);
    loom_mlp *m = NULL;
    CHECK_RC(loom_mlp_load(buf, len, &m, err, sizeof err), 0);
    free(buf);
    if (m) {
        /* relu-free single layer: softmax(Wx + b) at x = (1, 0, 0): z = (1.5, 3.5) */
        float x[3] = {1, 0, 0}, p[2];
        CHECK_RC(loom_mlp_forward(m, x, 1, p, err, sizeof err), 0);
        CHECK(fabs(p[1] - 1 / (1 + exp(-2.0))) < 1e-6 && loom_mlp_argmax(p, 2) == 1);
    }
    loom_mlp_destroy(&m);
    /* not safetensors at all */
    CHECK_RC(loom_mlp_load("garbage!garbage!", 16, &m, err, sizeof err), LOOM_EINVAL);
    CHECK(m == NULL && strstr(err, "safetensors") != NULL);
}

int main(void)
{
    test_forward();
    test_refusals();
    return TEST_DONE();
}
