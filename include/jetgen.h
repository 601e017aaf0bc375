/*
 * jetgen — generative models for particle jets. C API (C99 and C++).
 *
 * Link: the static library (target/release/libjetgen.a; add -lm -lpthread -ldl) or the
 * shared one (libjetgen.so: -L<dir> -ljetgen). All fallible functions return a
 * jetgen_status; on failure jetgen_last_error() describes the problem (per thread). No panic
 * or exception crosses this boundary.
 *
 * Thread safety: a jetgen_model and a jetgen_context may be used from several threads at once
 * (calls only read them); create and free them from one thread. Results are deterministic for
 * a seed, independent of threads.
 *
 * Buffers are caller-owned, row-major, with explicit sizes; nothing is written on failure.
 * CUDA: a CUDA context runs the kernels on the GPU. The plain kernel functions take host
 * buffers and copy them in and out within the call. The *_device variants take CUDA device
 * pointers on the context's GPU (primary context, as the CUDA runtime uses): jetgen copies
 * the inputs and writes the outputs on its own stream and returns only when that work has
 * finished, so (1) finish the work that produces the inputs before calling (e.g.
 * cudaStreamSynchronize on your stream) and (2) the outputs are ready on return. No stream
 * handle is exposed.
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
    JETGEN_INTERNAL = 6,         /* a bug in jetgen (caught, never propagated) */
    JETGEN_NUMERICAL = 7         /* a solver did not converge */
} jetgen_status;

/* Device choices for jetgen_model_load (or a CUDA ordinal >= 0). */
#define JETGEN_DEVICE_AUTO (-1)
#define JETGEN_DEVICE_CPU (-2)

/* An opaque loaded model. */
typedef struct JetgenModel jetgen_model;

/* An opaque execution context for the kernels: a device and a CPU thread pool. */
typedef struct JetgenContext jetgen_context;

/* Library version, e.g. "0.1.0" (static storage). */
const char *jetgen_version(void);

/* Message of the last failed call on this thread ("" after success); valid until the next
 * jetgen call on this thread. */
const char *jetgen_last_error(void);

/* Load a trained model of any family: a `jetgen train` run directory or its
 * checkpoint.safetensors. The checkpoint records its family, and every function below works
 * for every family (a model family added later needs no new C function).
 * On success *out owns the model; free it with jetgen_model_free. */
jetgen_status jetgen_model_load(const char *path, int device, jetgen_model **out);

/* Free a model (NULL is a no-op). */
void jetgen_model_free(jetgen_model *model);

/* The model's family name, e.g. "flow": owned by the model, valid until jetgen_model_free.
 * NULL for a NULL model (with jetgen_last_error set). */
const char *jetgen_model_family(const jetgen_model *model);

/* Particles per generated jet (P; 30 for JetNet-30 models). */
jetgen_status jetgen_model_num_particles(const jetgen_model *model, size_t *out);

/* Generate n_jets jets, deterministic for a seed, into caller-owned buffers (JetNet layout):
 *   out_particles[n_jets * P * 4]: eta_rel, phi_rel, pt_rel, mask   (particles_len floats)
 *   out_jets[n_jets * 4]:          pt, eta, mass, n in relative units (jets_len floats)
 * Too-small buffers are JETGEN_INVALID_ARGUMENT; nothing is written on failure. */
jetgen_status jetgen_model_generate(const jetgen_model *model, size_t n_jets, uint64_t seed,
                                    float *out_particles, size_t particles_len,
                                    float *out_jets, size_t jets_len);

/* What the model is conditioned on: *mass and *multiplicity are set to 1 or 0
 * (unconditional flows: 0, 0; CNF(m): 1, 0; CNF(m, n): 1, 1). */
jetgen_status jetgen_model_conditions(const jetgen_model *model, int *mass, int *multiplicity);

/* Generate one jet per given condition: mass[n_jets] = relative jet mass m/pT (>= 0) and,
 * for CNF(m, n) models, multiplicity[n_jets] = particle count in 0..P (pass NULL for
 * mass-only models). Outputs as jetgen_model_generate. Unconditional models: error. */
jetgen_status jetgen_model_generate_conditional(const jetgen_model *model, size_t n_jets,
                                                uint64_t seed, const float *mass,
                                                const float *multiplicity,
                                                float *out_particles, size_t particles_len,
                                                float *out_jets, size_t jets_len);

/* log p(x | m, n) of n_jets jets given in JetNet layout (particles[n_jets * P * 4]: eta_rel,
 * phi_rel, pt_rel, mask; padding all zero) into out[n_jets], in the units of the
 * (eta_rel, phi_rel, pt_rel) vectors. Conditional models use each jet's own mass and
 * multiplicity. NaN/inf input: JETGEN_INVALID_ARGUMENT. */
jetgen_status jetgen_model_log_prob(const jetgen_model *model, size_t n_jets,
                                    const float *particles, size_t particles_len, double *out);

/* ---- kernels on host buffers ---- */

/* Create a context on a device (JETGEN_DEVICE_AUTO, JETGEN_DEVICE_CPU or a CUDA ordinal; a
 * GPU request without a GPU is JETGEN_CUDA_UNAVAILABLE) with `threads` CPU threads
 * (0 = one per core). Free with jetgen_context_free (NULL is a no-op). */
jetgen_status jetgen_context_create(int device, size_t threads, jetgen_context **out);
void jetgen_context_free(jetgen_context *ctx);
/* The context's device: JETGEN_DEVICE_CPU or the CUDA ordinal. */
jetgen_status jetgen_context_device(const jetgen_context *ctx, int *out_device);

/* Batched Chamfer distance of clouds x[batch*n*dim] and y[batch*m*dim] with optional masks
 * mask_x[batch*n], mask_y[batch*m] (1 = point, 0 = padding; NULL = all valid):
 *   out[b] = sum_i min_j |x_i - y_j|^2 + sum_j min_i |x_i - y_j|^2   over valid points,
 * each sum divided by its count when mean != 0. An empty cloud contributes 0.
 * On a CUDA context dim <= 8. */
jetgen_status jetgen_chamfer(const jetgen_context *ctx, const float *x, const float *y,
                             size_t batch, size_t n, size_t m, size_t dim,
                             const float *mask_x, const float *mask_y, int mean, float *out);

/* jetgen_chamfer on CUDA device pointers (x, y, masks, out all on the context's GPU; a CPU
 * context is JETGEN_INVALID_ARGUMENT). Stream semantics: see the top of this file. */
jetgen_status jetgen_chamfer_device(const jetgen_context *ctx, const float *x, const float *y,
                                    size_t batch, size_t n, size_t m, size_t dim,
                                    const float *mask_x, const float *mask_y, int mean,
                                    float *out);

/* Options of jetgen_sinkhorn; fill with jetgen_sinkhorn_default_options first. */
typedef struct jetgen_sinkhorn_options {
    int cost;         /* 0: |x-y| (p = 1), 1: |x-y|^2, 2: |x-y|^2 / 2 (geomloss p = 2) */
    double epsilon;   /* target entropic regularisation, in cost units, > 0 */
    size_t max_iters; /* iterations at the target epsilon (upper bound with a tolerance) */
    double tolerance; /* stop at this marginal L1 error; <= 0: run max_iters */
    double scaling;   /* epsilon annealing factor in (0, 1), 0.7-0.9 recommended; <= 0: none */
    int debias;       /* 1: also OT(a,a), OT(b,b) -> Sinkhorn divergence */
} jetgen_sinkhorn_options;

/* Defaults: cost 2, epsilon 0.01, 200 iterations, tolerance 1e-4, scaling 0.8, debias 1. */
void jetgen_sinkhorn_default_options(jetgen_sinkhorn_options *out);

/* Batched log-domain Sinkhorn between weighted clouds x[batch*n*dim], y[batch*m*dim] with
 * weights a[batch*n], b[batch*m] (>= 0, 0 = padding; probability vectors for normalised OT).
 * Outputs may be NULL: out_divergence[batch] (S = OT(a,b) - OT(a,a)/2 - OT(b,b)/2, needs
 * debias), out_ot[batch] (entropic OT(a,b)), out_f[batch*n], out_g[batch*m] (potentials). */
jetgen_status jetgen_sinkhorn(const jetgen_context *ctx, const float *x, const float *y,
                              const float *a, const float *b, size_t batch, size_t n,
                              size_t m, size_t dim, const jetgen_sinkhorn_options *options,
                              float *out_divergence, float *out_ot, float *out_f,
                              float *out_g);

/* jetgen_sinkhorn on CUDA device pointers (all arrays on the context's GPU; `options` is a
 * host pointer). Stream semantics: see the top of this file. */
jetgen_status jetgen_sinkhorn_device(const jetgen_context *ctx, const float *x, const float *y,
                                     const float *a, const float *b, size_t batch, size_t n,
                                     size_t m, size_t dim,
                                     const jetgen_sinkhorn_options *options,
                                     float *out_divergence, float *out_ot, float *out_f,
                                     float *out_g);

/* Exact jet EMD as energyflow defines it (R = 1, beta = 1, unnormalised):
 *   min_F sum F_ij theta_ij + |sum pT - sum pT'|,  theta = distance in (eta, phi),
 * jets as rows (pT, eta, phi): jet_x[nx*3], jet_y[ny*3] (a side with 0 particles may be
 * NULL); pT >= 0. CPU, thread-safe, no context needed. */
jetgen_status jetgen_emd(const double *jet_x, size_t nx, const double *jet_y, size_t ny,
                         double *out);

/* Exact balanced optimal transport: min <F, C> over F >= 0 with row sums a[n] and column
 * sums b[m] (equal totals), cost[n*m] row-major. *out_cost = optimum; out_flow[n*m] = the
 * plan (NULL to skip). CPU. */
jetgen_status jetgen_transport(const double *a, size_t n, const double *b, size_t m,
                               const double *cost, double *out_cost, double *out_flow);

#ifdef __cplusplus
}
#endif

#endif /* JETGEN_H */
