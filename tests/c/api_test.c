/* C test of the jetgen API: argv[1] = a run directory of a trained flow.
 * Prints "ok" and exits 0 when every check passes. */
#include <math.h>
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

int main(int argc, char **argv) {
    CHECK(argc == 2, "usage: api_test RUN_DIR");
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
    jetgen_model_free(m);
    free(parts);
    free(parts2);
    free(jets);
    printf("ok\n");
    return 0;
}
