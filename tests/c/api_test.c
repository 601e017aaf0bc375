/* C test of the jetgen API.
 *   argv[1] = run directory of a trained unconditional flow
 *   argv[2] = run directory of a trained CNF(m, n) flow
 *   argv[3] = a safetensors file that is not a jetgen model
 * Prints "ok" and exits 0 when every check passes. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jetgen.h"

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "FAILED line %d: ", __LINE__);                  \
            fprintf(stderr, __VA_ARGS__);                                   \
            fprintf(stderr, " (last error: %s)\n", jetgen_last_error());    \
            return 1;                                                       \
        }                                                                   \
    } while (0)

/* ---- several threads generating with one model: same jets as one thread ---- */
typedef struct {
    const jetgen_model *model;
    uint64_t seed;
    float *parts, *jets;
    size_t n, p;
    jetgen_status status;
} job;

static void *worker(void *arg) {
    job *j = (job *)arg;
    j->status = jetgen_model_generate(j->model, j->n, j->seed, j->parts, j->n * j->p * 4, j->jets, j->n * 4);
    return NULL;
}

static int check_threads(const jetgen_model *m, size_t p) {
    enum { T = 4 };
    size_t n = 40;
    job jobs[T];
    pthread_t th[T];
    for (int t = 0; t < T; ++t) {
        jobs[t] = (job){m, (uint64_t)(100 + t), malloc(n * p * 4 * sizeof(float)), malloc(n * 4 * sizeof(float)), n, p, JETGEN_INTERNAL};
        CHECK(pthread_create(&th[t], NULL, worker, &jobs[t]) == 0, "pthread_create");
    }
    for (int t = 0; t < T; ++t) pthread_join(th[t], NULL);
    float *ref = malloc(n * p * 4 * sizeof(float)), *refj = malloc(n * 4 * sizeof(float));
    for (int t = 0; t < T; ++t) {
        CHECK(jobs[t].status == JETGEN_OK, "thread %d", t);
        CHECK(jetgen_model_generate(m, n, 100 + t, ref, n * p * 4, refj, n * 4) == JETGEN_OK, "sequential");
        CHECK(memcmp(ref, jobs[t].parts, n * p * 4 * sizeof(float)) == 0, "thread %d differs from sequential", t);
        free(jobs[t].parts);
        free(jobs[t].jets);
    }
    free(ref);
    free(refj);
    return 0;
}

/* ---- conditional generation and log-density ---- */
static int check_conditional(const char *run, const char *not_a_model) {
    jetgen_model *m = NULL;
    CHECK(jetgen_model_load(not_a_model, JETGEN_DEVICE_CPU, &m) == JETGEN_FILE, "wrong-kind checkpoint");
    CHECK(m == NULL, "no model on failure");
    CHECK(jetgen_model_load(run, JETGEN_DEVICE_CPU, &m) == JETGEN_OK, "load cnf-mn");
    int with_mass = -1, with_n = -1;
    CHECK(jetgen_model_conditions(m, &with_mass, &with_n) == JETGEN_OK && with_mass == 1 && with_n == 1, "conditions");
    size_t p = 30, n = 8;
    float mass[8], mult[8];
    for (size_t j = 0; j < n; ++j) { mass[j] = 0.05f + 0.01f * (float)j; mult[j] = (float)(10 + j); }
    float *parts = malloc(n * p * 4 * sizeof(float)), *jets = malloc(n * 4 * sizeof(float));
    CHECK(jetgen_model_generate_conditional(m, n, 3, mass, NULL, parts, n * p * 4, jets, n * 4) == JETGEN_NULL_POINTER, "multiplicity required");
    mult[0] = 31.0f;
    CHECK(jetgen_model_generate_conditional(m, n, 3, mass, mult, parts, n * p * 4, jets, n * 4) == JETGEN_INVALID_ARGUMENT, "multiplicity > P");
    mult[0] = 10.0f;
    mass[1] = -1.0f;
    CHECK(jetgen_model_generate_conditional(m, n, 3, mass, mult, parts, n * p * 4, jets, n * 4) == JETGEN_INVALID_ARGUMENT, "negative mass");
    mass[1] = 0.06f;
    CHECK(jetgen_model_generate_conditional(m, n, 3, mass, mult, parts, n * p * 4, jets, n * 4) == JETGEN_OK, "conditional");
    for (size_t j = 0; j < n; ++j) {
        int count = 0;
        for (size_t k = 0; k < p; ++k) count += parts[(j * p + k) * 4 + 3] == 1.0f;
        CHECK(count <= (int)mult[j], "jet %zu has %d > %d particles", j, count, (int)mult[j]);
    }
    double lp[8];
    CHECK(jetgen_model_log_prob(m, n, parts, n * p * 4, lp) == JETGEN_OK, "log_prob");
    for (size_t j = 0; j < n; ++j) CHECK(isfinite(lp[j]), "finite log_prob");
    parts[5] = NAN;
    CHECK(jetgen_model_log_prob(m, n, parts, n * p * 4, lp) == JETGEN_INVALID_ARGUMENT, "NaN input");
    CHECK(jetgen_model_log_prob(m, n, parts, n * p * 4 - 4, lp) == JETGEN_INVALID_ARGUMENT, "short input");
    jetgen_model_free(m);
    free(parts);
    free(jets);
    return 0;
}

/* ---- kernels on host buffers ---- */
static int check_kernels(void) {
    jetgen_context *ctx = NULL;
    CHECK(jetgen_context_create(JETGEN_DEVICE_CPU, 2, NULL) == JETGEN_NULL_POINTER, "NULL out");
    jetgen_status cuda = jetgen_context_create(0, 0, &ctx);
    CHECK(cuda == JETGEN_OK || cuda == JETGEN_CUDA_UNAVAILABLE, "CUDA context: ok or unavailable, got %d", (int)cuda);
    jetgen_context_free(ctx);
    ctx = NULL;
    CHECK(jetgen_context_create(JETGEN_DEVICE_CPU, 2, &ctx) == JETGEN_OK, "context");
    int dev = 0;
    CHECK(jetgen_context_device(ctx, &dev) == JETGEN_OK && dev == JETGEN_DEVICE_CPU, "device");

    /* Chamfer: one pair, x = {(0,0), (5,5) padded}, y = {(1,0), (0,2)}: 1 + (1 + 4) = 6 */
    float x[] = {0, 0, 5, 5}, y[] = {1, 0, 0, 2}, mx[] = {1, 0}, d = -1;
    CHECK(jetgen_chamfer(ctx, x, y, 1, 2, 2, 2, mx, NULL, 0, &d) == JETGEN_OK && fabsf(d - 6.0f) < 1e-6f, "chamfer %g", d);
    CHECK(jetgen_chamfer(ctx, x, y, 1, 2, 2, 2, mx, NULL, 1, &d) == JETGEN_OK && fabsf(d - 3.5f) < 1e-6f, "chamfer mean %g", d);
    CHECK(jetgen_chamfer(ctx, x, y, 0, 2, 2, 2, NULL, NULL, 0, &d) == JETGEN_INVALID_ARGUMENT, "zero batch");
    CHECK(jetgen_chamfer(NULL, x, y, 1, 2, 2, 2, NULL, NULL, 0, &d) == JETGEN_NULL_POINTER, "NULL context");
    CHECK(jetgen_chamfer(ctx, x, NULL, 1, 2, 2, 2, NULL, NULL, 0, &d) == JETGEN_NULL_POINTER, "NULL y");
    float bad[] = {0, NAN, 5, 5};
    CHECK(jetgen_chamfer(ctx, bad, y, 1, 2, 2, 2, NULL, NULL, 0, &d) == JETGEN_INVALID_ARGUMENT, "NaN input");
    /* device-pointer variants need a CUDA context */
    CHECK(jetgen_chamfer_device(ctx, x, y, 1, 2, 2, 2, NULL, NULL, 0, &d) == JETGEN_INVALID_ARGUMENT, "device call on CPU context");

    /* Sinkhorn: a cloud against itself has divergence ~0; against a shifted copy ~ shift^2/2 */
    jetgen_sinkhorn_options o;
    jetgen_sinkhorn_default_options(&o);
    o.epsilon = 1e-4;
    float a[] = {0.5f, 0.5f}, pts[] = {0, 0, 1, 0}, shifted[] = {0, 0.1f, 1, 0.1f}, div = -1, f[2];
    CHECK(jetgen_sinkhorn(ctx, pts, pts, a, a, 1, 2, 2, 2, &o, &div, NULL, f, NULL) == JETGEN_OK && fabsf(div) < 1e-4f, "self divergence %g", div);
    CHECK(jetgen_sinkhorn(ctx, pts, shifted, a, a, 1, 2, 2, 2, &o, &div, NULL, NULL, NULL) == JETGEN_OK && fabsf(div - 0.005f) < 5e-4f, "shifted divergence %g", div);
    CHECK(jetgen_sinkhorn_device(ctx, pts, pts, a, a, 1, 2, 2, 2, &o, &div, NULL, NULL, NULL) == JETGEN_INVALID_ARGUMENT, "device sinkhorn on CPU context");
    o.cost = 9;
    CHECK(jetgen_sinkhorn(ctx, pts, pts, a, a, 1, 2, 2, 2, &o, &div, NULL, NULL, NULL) == JETGEN_INVALID_ARGUMENT, "bad cost");
    jetgen_sinkhorn_default_options(&o);
    o.epsilon = -1;
    CHECK(jetgen_sinkhorn(ctx, pts, pts, a, a, 1, 2, 2, 2, &o, &div, NULL, NULL, NULL) == JETGEN_INVALID_ARGUMENT, "bad epsilon");

    /* EMD: one particle each, distance 0.5; with half the pT on one side: 0.5*0.5 + 0.5 */
    double jx[] = {1.0, 0.0, 0.0}, jy[] = {1.0, 0.3, 0.4}, jh[] = {0.5, 0.3, 0.4}, e = -1;
    CHECK(jetgen_emd(jx, 1, jy, 1, &e) == JETGEN_OK && fabs(e - 0.5) < 1e-12, "emd %g", e);
    CHECK(jetgen_emd(jx, 1, jh, 1, &e) == JETGEN_OK && fabs(e - 0.75) < 1e-12, "emd unbalanced %g", e);
    CHECK(jetgen_emd(jx, 1, NULL, 0, &e) == JETGEN_OK && fabs(e - 1.0) < 1e-12, "emd vs empty %g", e);
    double neg[] = {-1.0, 0.0, 0.0};
    CHECK(jetgen_emd(neg, 1, jy, 1, &e) == JETGEN_INVALID_ARGUMENT, "negative pT");

    /* exact transport: 2x2 with an obvious optimum on the diagonal */
    double ta[] = {0.3, 0.7}, tb[] = {0.3, 0.7}, tc[] = {0, 1, 1, 0}, cost = -1, plan[4];
    CHECK(jetgen_transport(ta, 2, tb, 2, tc, &cost, plan) == JETGEN_OK && cost == 0.0 && plan[0] == 0.3 && plan[3] == 0.7, "transport");
    double tb2[] = {0.5, 0.7};
    CHECK(jetgen_transport(ta, 2, tb2, 2, tc, &cost, NULL) == JETGEN_INVALID_ARGUMENT, "unbalanced");
    jetgen_context_free(ctx);
    jetgen_context_free(NULL);
    return 0;
}

int main(int argc, char **argv) {
    CHECK(argc == 4, "usage: api_test VNF_RUN CNF_MN_RUN NOT_A_MODEL");
    CHECK(strlen(jetgen_version()) > 0, "version");

    /* bad inputs: status + message, never a crash */
    jetgen_model *m = NULL;
    CHECK(jetgen_model_load(NULL, JETGEN_DEVICE_CPU, &m) == JETGEN_NULL_POINTER, "NULL path");
    CHECK(strlen(jetgen_last_error()) > 0, "message after error");
    CHECK(jetgen_model_load(argv[1], JETGEN_DEVICE_CPU, NULL) == JETGEN_NULL_POINTER, "NULL out");
    CHECK(jetgen_model_load("/nonexistent/run", JETGEN_DEVICE_CPU, &m) == JETGEN_FILE, "missing file");
    CHECK(jetgen_model_load(argv[1], -7, &m) == JETGEN_INVALID_ARGUMENT, "bad device");
    jetgen_model_free(NULL);

    CHECK(jetgen_model_load(argv[1], JETGEN_DEVICE_CPU, &m) == JETGEN_OK, "load");
    CHECK(strcmp(jetgen_last_error(), "") == 0, "message cleared after success");
    CHECK(jetgen_model_family(m) != NULL && strcmp(jetgen_model_family(m), "flow") == 0, "family");
    CHECK(jetgen_model_family(NULL) == NULL && strlen(jetgen_last_error()) > 0, "family of NULL");
    size_t p = 0;
    CHECK(jetgen_model_num_particles(m, &p) == JETGEN_OK && p == 30, "num particles %zu", p);

    size_t n = 64;
    float *parts = malloc(n * p * 4 * sizeof(float));
    float *jets = malloc(n * 4 * sizeof(float));
    float *parts2 = malloc(n * p * 4 * sizeof(float));
    CHECK(jetgen_model_generate(m, n, 7, parts, n * p * 4 - 1, jets, n * 4) == JETGEN_INVALID_ARGUMENT, "small buffer");
    CHECK(jetgen_model_generate(m, 0, 7, parts, n * p * 4, jets, n * 4) == JETGEN_INVALID_ARGUMENT, "zero jets");
    CHECK(jetgen_model_generate(m, n, 7, NULL, n * p * 4, jets, n * 4) == JETGEN_NULL_POINTER, "NULL buffer");
    CHECK(jetgen_model_generate(m, n, 7, parts, n * p * 4, jets, n * 4) == JETGEN_OK, "generate");
    CHECK(jetgen_model_generate(m, n, 7, parts2, n * p * 4, jets, n * 4) == JETGEN_OK, "generate again");
    CHECK(memcmp(parts, parts2, n * p * 4 * sizeof(float)) == 0, "deterministic for a seed");

    /* physical sanity: masks 0/1, padding all zero, pT >= 0, multiplicity matches masks */
    for (size_t j = 0; j < n; ++j) {
        int count = 0;
        for (size_t k = 0; k < p; ++k) {
            const float *q = parts + (j * p + k) * 4;
            CHECK(q[3] == 0.0f || q[3] == 1.0f, "mask");
            CHECK(isfinite(q[0]) && isfinite(q[1]) && q[2] >= 0.0f, "finite, pT >= 0");
            if (q[3] == 0.0f) CHECK(q[0] == 0.0f && q[1] == 0.0f && q[2] == 0.0f, "padding is zero");
            count += q[3] == 1.0f;
        }
        CHECK((int)jets[j * 4 + 3] == count, "multiplicity");
    }
    CHECK(check_threads(m, p) == 0, "threads");
    jetgen_model_free(m);
    free(parts);
    free(parts2);
    free(jets);

    /* a truncated checkpoint is a file error */
    char path[4096], trunc[4096];
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", argv[1]);
    snprintf(trunc, sizeof trunc, "%s/truncated.safetensors", argv[1]);
    FILE *in = fopen(path, "rb"), *out = fopen(trunc, "wb");
    CHECK(in && out, "open files");
    char buf[4096];
    size_t got = fread(buf, 1, sizeof buf, in);
    fwrite(buf, 1, got / 2, out);
    fclose(in);
    fclose(out);
    CHECK(jetgen_model_load(trunc, JETGEN_DEVICE_CPU, &m) == JETGEN_FILE, "truncated checkpoint");

    CHECK(check_conditional(argv[2], argv[3]) == 0, "conditional");
    CHECK(check_kernels() == 0, "kernels");
    printf("ok\n");
    return 0;
}
