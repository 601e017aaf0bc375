/*
 * jetgen — generative models for particle jets. C API (C99 and C++).
 *
 * Link: the static library (target/release/libjetgen.a; add -lm -lpthread -ldl) or the
 * shared one (libjetgen.so). All functions return a jetgen_status; on failure
 * jetgen_last_error() describes the problem (per thread). No panic or exception crosses this
 * boundary. A jetgen_model may be used from several threads at once.
 */
#ifndef JETGEN_H
#define JETGEN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status of every fallible call. */
typedef enum jetgen_status {
    JETGEN_OK = 0,
    JETGEN_NULL_POINTER = 1,     /* a required pointer argument was NULL */
    JETGEN_INVALID_ARGUMENT = 2, /* sizes, device index, non-UTF-8 path, ... */
    JETGEN_FILE = 3,             /* missing, truncated or wrong-kind checkpoint */
    JETGEN_CUDA_UNAVAILABLE = 4, /* CUDA requested but no driver/GPU */
    JETGEN_CUDA = 5,             /* a CUDA call failed (message names it) */
    JETGEN_INTERNAL = 6          /* a bug in jetgen (caught, never propagated) */
} jetgen_status;

/* Device choices for jetgen_model_load (or a CUDA ordinal >= 0). */
#define JETGEN_DEVICE_AUTO (-1)
#define JETGEN_DEVICE_CPU (-2)

/* An opaque loaded model. */
typedef struct JetgenModel jetgen_model;

/* Library version, e.g. "0.1.0" (static storage). */
const char *jetgen_version(void);

/* Message of the last failed call on this thread ("" after success); valid until the next
 * jetgen call on this thread. */
const char *jetgen_last_error(void);

/* Load a trained model: a `jetgen train` run directory or its checkpoint.safetensors.
 * On success *out owns the model; free it with jetgen_model_free. */
jetgen_status jetgen_model_load(const char *path, int device, jetgen_model **out);

/* Free a model (NULL is a no-op). */
void jetgen_model_free(jetgen_model *model);

/* Particles per generated jet (P; 30 for JetNet-30 models). */
jetgen_status jetgen_model_num_particles(const jetgen_model *model, size_t *out);

/* Generate n_jets jets, deterministic for a seed, into caller-owned buffers (JetNet layout):
 *   out_particles[n_jets * P * 4]: eta_rel, phi_rel, pt_rel, mask   (particles_len floats)
 *   out_jets[n_jets * 4]:          pt, eta, mass, n in relative units (jets_len floats)
 * Too-small buffers are JETGEN_INVALID_ARGUMENT; nothing is written on failure. */
jetgen_status jetgen_model_generate(const jetgen_model *model, size_t n_jets, uint64_t seed,
                                    float *out_particles, size_t particles_len,
                                    float *out_jets, size_t jets_len);

#ifdef __cplusplus
}
#endif

#endif /* JETGEN_H */
