// Batched log-domain Sinkhorn (see src/ops/sinkhorn.rs for the math and conventions).
//
// sinkhorn_solve: grid (B, 1 or 3), one block per (pair, problem): problem 0 = OT(a, b) on
// (x, y) with alternating updates, 1 = OT(a, a) on (x, x) and 2 = OT(b, b) on (y, y) with
// averaged symmetric updates — the debiasing terms run in the same launch. Coordinates, log
// weights and potentials live in dynamic shared memory; costs are recomputed on the fly;
// every log-sum-exp is online (running max); the whole ε schedule and the tolerance checks
// happen inside the block.
// sinkhorn_grad: envelope-theorem gradients, one thread per point, P recomputed from the
// potentials.
#include "common.cuh"

#define SK_NINF (-JG_INF)

__device__ __forceinline__ float sk_cost(int cost, const float* p, const float* q, int D) {
    float sq = 0.f;
    for (int k = 0; k < D; ++k) {
        float d = p[k] - q[k];
        sq += d * d;
    }
    return cost == 0 ? sqrtf(sq) : (cost == 1 ? sq : 0.5f * sq);
}

// Block-wide sum (deterministic order), result returned to every thread.
__device__ __forceinline__ float sk_block_sum(float v, float* scratch) {
    v = jg_warp_sum(v);
    __syncthreads();
    if ((threadIdx.x & 31u) == 0) scratch[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        float t = 0.f;
        for (unsigned int w = 0; w < (blockDim.x + 31u) / 32u; ++w) t += scratch[w];
        scratch[32] = t;
    }
    __syncthreads();
    return scratch[32];
}

__device__ __forceinline__ float sk_block_max(float v, float* scratch) {
    v = jg_warp_max(v);
    __syncthreads();
    if ((threadIdx.x & 31u) == 0) scratch[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        float t = SK_NINF;
        for (unsigned int w = 0; w < (blockDim.x + 31u) / 32u; ++w) t = fmaxf(t, scratch[w]);
        scratch[32] = t;
    }
    __syncthreads();
    return scratch[32];
}

// -eps * log sum_j exp(lw_j + (pot_j - C(p, r_j)) / eps) with an online log-sum-exp.
__device__ __forceinline__ float sk_softmin(const float* p, const float* r, const float* lw, const float* pot, int nr,
                                            int D, int cost, float eps) {
    float mx = SK_NINF, sum = 0.f;
    for (int j = 0; j < nr; ++j) {
        if (lw[j] == SK_NINF) continue;
        float v = lw[j] + (pot[j] - sk_cost(cost, p, r + j * D, D)) / eps;
        if (v > mx) {
            sum = sum * expf(mx - v) + 1.f;
            mx = v;
        } else {
            sum += expf(v - mx);
        }
    }
    return -eps * (mx + logf(sum));
}

extern "C" __global__ void sinkhorn_solve(unsigned int N, unsigned int M, unsigned int D, int cost, float eps,
                                          float scaling, unsigned int max_iters, float tol,
                                          const float* __restrict__ x, const float* __restrict__ y,
                                          const float* __restrict__ a, const float* __restrict__ b,
                                          float* __restrict__ f_out, float* __restrict__ g_out,
                                          float* __restrict__ faa_out, float* __restrict__ gbb_out,
                                          float* __restrict__ vals, unsigned int* __restrict__ iters_out) {
    extern __shared__ float smem[];
    const unsigned int pair = blockIdx.x, problem = blockIdx.y;
    const int d = (int)D;
    const bool symmetric = problem != 0;
    const int nq = problem == 2 ? (int)M : (int)N;
    const int nr = problem == 1 ? (int)N : (int)M;
    float* scratch = smem;               // 64 floats
    float* q = scratch + 64;             // nq * D
    float* lq = q + nq * d;              // nq
    float* fq = lq + nq;                 // nq
    float* r = fq + nq;                  // nr * D (aliases q when symmetric)
    float* lr = r + nr * d;              // nr
    float* gr = lr + nr;                 // nr (scratch for the averaged update when symmetric)
    const float* src_q = problem == 2 ? y + (size_t)pair * M * D : x + (size_t)pair * N * D;
    const float* src_wq = problem == 2 ? b + (size_t)pair * M : a + (size_t)pair * N;
    const float* src_r = problem == 1 ? x + (size_t)pair * N * D : y + (size_t)pair * M * D;
    const float* src_wr = problem == 1 ? a + (size_t)pair * N : b + (size_t)pair * M;
    for (int t = threadIdx.x; t < nq * d; t += blockDim.x) q[t] = src_q[t];
    for (int t = threadIdx.x; t < nq; t += blockDim.x) {
        float w = src_wq[t];
        lq[t] = w > 0.f ? logf(w) : SK_NINF;
        fq[t] = 0.f;
    }
    for (int t = threadIdx.x; t < nr * d; t += blockDim.x) r[t] = src_r[t];
    for (int t = threadIdx.x; t < nr; t += blockDim.x) {
        float w = src_wr[t];
        lr[t] = w > 0.f ? logf(w) : SK_NINF;
        gr[t] = 0.f;
    }
    __syncthreads();
    // empty clouds (in either cloud of the pair): everything 0
    float cnt_x = 0.f, cnt_y = 0.f;
    for (unsigned int t = threadIdx.x; t < N; t += blockDim.x) cnt_x += a[(size_t)pair * N + t] > 0.f;
    for (unsigned int t = threadIdx.x; t < M; t += blockDim.x) cnt_y += b[(size_t)pair * M + t] > 0.f;
    cnt_x = sk_block_sum(cnt_x, scratch);
    cnt_y = sk_block_sum(cnt_y, scratch);
    float* pot_out = problem == 0 ? f_out + (size_t)pair * N : (problem == 1 ? faa_out + (size_t)pair * N : gbb_out + (size_t)pair * M);
    if (cnt_x == 0.f || cnt_y == 0.f) {
        for (int t = threadIdx.x; t < nq; t += blockDim.x) pot_out[t] = 0.f;
        if (problem == 0)
            for (int t = threadIdx.x; t < nr; t += blockDim.x) g_out[(size_t)pair * M + t] = 0.f;
        if (threadIdx.x == 0) {
            if (problem == 0) { vals[pair * 5 + 0] = 0.f; vals[pair * 5 + 1] = 0.f; vals[pair * 5 + 4] = 0.f; iters_out[pair] = 0; }
            else vals[pair * 5 + 1 + problem] = 0.f;
        }
        return;
    }
    // diameter of the bounding box of x ∪ y (the same schedule for all three problems)
    float diam2 = 0.f;
    for (int k = 0; k < d; ++k) {
        float lo = JG_INF, hi = SK_NINF;
        for (unsigned int t = threadIdx.x; t < N; t += blockDim.x) {
            float v = x[((size_t)pair * N + t) * D + k];
            lo = fminf(lo, v); hi = fmaxf(hi, v);
        }
        for (unsigned int t = threadIdx.x; t < M; t += blockDim.x) {
            float v = y[((size_t)pair * M + t) * D + k];
            lo = fminf(lo, v); hi = fmaxf(hi, v);
        }
        hi = sk_block_max(hi, scratch);
        lo = -sk_block_max(-lo, scratch);
        float ext = fmaxf(hi - lo, 0.f);
        diam2 += ext * ext;
    }
    float diam = sqrtf(diam2);
    float e0 = cost == 0 ? diam : (cost == 1 ? diam2 : 0.5f * diam2);

    // one Sinkhorn step at ε = e
#define SK_STEP(e)                                                                              \
    do {                                                                                        \
        if (symmetric) {                                                                        \
            for (int i = threadIdx.x; i < nq; i += blockDim.x)                                  \
                gr[i] = lq[i] == SK_NINF ? 0.f : 0.5f * (fq[i] + sk_softmin(q + i * d, q, lq, fq, nq, d, cost, (e))); \
            __syncthreads();                                                                    \
            for (int i = threadIdx.x; i < nq; i += blockDim.x) fq[i] = gr[i];                   \
            __syncthreads();                                                                    \
        } else {                                                                                \
            for (int i = threadIdx.x; i < nq; i += blockDim.x)                                  \
                fq[i] = lq[i] == SK_NINF ? 0.f : sk_softmin(q + i * d, r, lr, gr, nr, d, cost, (e)); \
            __syncthreads();                                                                    \
            for (int j = threadIdx.x; j < nr; j += blockDim.x)                                  \
                gr[j] = lr[j] == SK_NINF ? 0.f : sk_softmin(r + j * d, q, lq, fq, nq, d, cost, (e)); \
            __syncthreads();                                                                    \
        }                                                                                       \
    } while (0)

    if (scaling > 0.f) {
        for (float e = e0; e > eps; e *= scaling) SK_STEP(e);
    }
    const float* gpot = symmetric ? fq : gr;
    const float* rr = symmetric ? q : r;
    const float* lrr = symmetric ? lq : lr;
    const int nrr = symmetric ? nq : nr;
    unsigned int iters = 0;
    float err = -1.f;
    for (unsigned int it = 0; it < max_iters; ++it) {
        SK_STEP(eps);
        ++iters;
        if (tol >= 0.f && (it + 1) % 10 == 0) {
            float e_local = 0.f;
            for (int i = threadIdx.x; i < nq; i += blockDim.x) {
                if (lq[i] == SK_NINF) continue;
                float next = sk_softmin(q + i * d, rr, lrr, gpot, nrr, d, cost, eps);
                e_local += expf(lq[i]) * fabsf(expf((fq[i] - next) / eps) - 1.f);
            }
            err = sk_block_sum(e_local, scratch);
            if (err < tol) break;
        }
    }
    if (err < 0.f) {
        float e_local = 0.f;
        for (int i = threadIdx.x; i < nq; i += blockDim.x) {
            if (lq[i] == SK_NINF) continue;
            float next = sk_softmin(q + i * d, rr, lrr, gpot, nrr, d, cost, eps);
            e_local += expf(lq[i]) * fabsf(expf((fq[i] - next) / eps) - 1.f);
        }
        err = sk_block_sum(e_local, scratch);
    }
    // values: dual <a,f> + <b,g> and (problem 0) the transport cost <P, C>
    float dual = 0.f, primal = 0.f;
    for (int i = threadIdx.x; i < nq; i += blockDim.x) {
        if (lq[i] == SK_NINF) continue;
        dual += expf(lq[i]) * fq[i];
        if (problem == 0) {
            for (int j = 0; j < nr; ++j) {
                if (lr[j] == SK_NINF) continue;
                float c = sk_cost(cost, q + i * d, r + j * d, d);
                primal += expf(lq[i] + lr[j] + (fq[i] + gr[j] - c) / eps) * c;
            }
        }
    }
    for (int j = threadIdx.x; j < nrr; j += blockDim.x) {
        if (lrr[j] == SK_NINF) continue;
        dual += expf(lrr[j]) * gpot[j];
    }
    dual = sk_block_sum(dual, scratch);
    primal = sk_block_sum(primal, scratch);
    for (int t = threadIdx.x; t < nq; t += blockDim.x) pot_out[t] = fq[t];
    if (problem == 0)
        for (int t = threadIdx.x; t < nr; t += blockDim.x) g_out[(size_t)pair * M + t] = gr[t];
    if (threadIdx.x == 0) {
        if (problem == 0) {
            vals[pair * 5 + 0] = dual;
            vals[pair * 5 + 1] = primal;
            vals[pair * 5 + 4] = err;
            iters_out[pair] = iters;
        } else {
            vals[pair * 5 + 1 + problem] = dual;
        }
    }
}

template <int D>
__device__ void sinkhorn_grad_body(unsigned int nq, unsigned int nr, int cost, float eps, int divergence,
                                   const float* __restrict__ q, const float* __restrict__ r,
                                   const float* __restrict__ wq, const float* __restrict__ wr,
                                   const float* __restrict__ fq, const float* __restrict__ gr,
                                   const float* __restrict__ fself, const float* __restrict__ gup,
                                   float* __restrict__ gq, float* __restrict__ gw) {
    const unsigned int pair = blockIdx.y;
    const unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= nq) return;
    const size_t row = (size_t)pair * nq + i;
    float p[D], acc[D];
#pragma unroll
    for (int k = 0; k < D; ++k) { p[k] = q[row * D + k]; acc[k] = 0.f; }
    float w = wq[row];
    float s = gup[pair];
    float gweight = 0.f;
    // A pair with an empty cloud has value 0 (see sinkhorn_solve), so a zero gradient: the
    // self term below would otherwise add the plan of zeroed potentials.
    bool r_has_mass = false;
    for (unsigned int j = 0; j < nr && !r_has_mass; ++j) r_has_mass = wr[(size_t)pair * nr + j] > 0.f;
    if (w > 0.f && r_has_mass) {
        float lw = logf(w), f_i = fq[row];
        for (unsigned int j = 0; j < nr; ++j) {
            float wj = wr[(size_t)pair * nr + j];
            if (!(wj > 0.f)) continue;
            const float* rj = r + ((size_t)pair * nr + j) * D;
            float c = sk_cost(cost, p, rj, D);
            float plan = expf(lw + logf(wj) + (f_i + gr[(size_t)pair * nr + j] - c) / eps);
            float scale = cost == 1 ? 2.f : (cost == 2 ? 1.f : (c > 0.f ? 1.f / c : 0.f));
#pragma unroll
            for (int k = 0; k < D; ++k) acc[k] += plan * scale * (p[k] - rj[k]);
        }
        gweight = f_i;
        if (divergence) {
            float fs_i = fself[row];
            for (unsigned int j = 0; j < nq; ++j) {
                float wj = wq[(size_t)pair * nq + j];
                if (!(wj > 0.f)) continue;
                const float* qj = q + ((size_t)pair * nq + j) * D;
                float c = sk_cost(cost, p, qj, D);
                float plan = expf(lw + logf(wj) + (fs_i + fself[(size_t)pair * nq + j] - c) / eps);
                float scale = cost == 1 ? 2.f : (cost == 2 ? 1.f : (c > 0.f ? 1.f / c : 0.f));
#pragma unroll
                for (int k = 0; k < D; ++k) acc[k] -= plan * scale * (p[k] - qj[k]);
            }
            gweight -= fs_i;
        }
    }
#pragma unroll
    for (int k = 0; k < D; ++k) gq[row * D + k] = s * acc[k];
    gw[row] = s * gweight;
}

// Gradient w.r.t. the points q and weights wq of L = Σ_pair gup·V (V = OT or, with
// divergence, S: the self term uses the symmetric potential fself).
extern "C" __global__ void sinkhorn_grad(unsigned int nq, unsigned int nr, unsigned int D, int cost, float eps,
                                         int divergence, const float* __restrict__ q, const float* __restrict__ r,
                                         const float* __restrict__ wq, const float* __restrict__ wr,
                                         const float* __restrict__ fq, const float* __restrict__ gr,
                                         const float* __restrict__ fself, const float* __restrict__ gup,
                                         float* __restrict__ gq, float* __restrict__ gw) {
    switch (D) {
    case 1: sinkhorn_grad_body<1>(nq, nr, cost, eps, divergence, q, r, wq, wr, fq, gr, fself, gup, gq, gw); break;
    case 2: sinkhorn_grad_body<2>(nq, nr, cost, eps, divergence, q, r, wq, wr, fq, gr, fself, gup, gq, gw); break;
    case 3: sinkhorn_grad_body<3>(nq, nr, cost, eps, divergence, q, r, wq, wr, fq, gr, fself, gup, gq, gw); break;
    case 4: sinkhorn_grad_body<4>(nq, nr, cost, eps, divergence, q, r, wq, wr, fq, gr, fself, gup, gq, gw); break;
    case 5: sinkhorn_grad_body<5>(nq, nr, cost, eps, divergence, q, r, wq, wr, fq, gr, fself, gup, gq, gw); break;
    case 6: sinkhorn_grad_body<6>(nq, nr, cost, eps, divergence, q, r, wq, wr, fq, gr, fself, gup, gq, gw); break;
    case 7: sinkhorn_grad_body<7>(nq, nr, cost, eps, divergence, q, r, wq, wr, fq, gr, fself, gup, gq, gw); break;
    default: sinkhorn_grad_body<8>(nq, nr, cost, eps, divergence, q, r, wq, wr, fq, gr, fself, gup, gq, gw); break;
    }
}
