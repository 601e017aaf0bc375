// Reductions and scans along one axis of a tensor viewed as [outer, n, inner]:
// sum, max (+argmax), logsumexp, softmax / log-softmax, cumsum, and the one-hot scatter that
// is max's backward. Each "line" (fixed outer, inner) is handled by one warp when inner == 1
// (lanes stride the contiguous row, shuffle reduction, deterministic order) and by one
// thread otherwise (coalesced across inner). Launch: blockDim 256; grid covers the lines
// (lines/8 blocks for the warp variant, lines/256 for the thread variant).
#include "common.cuh"

#define LINE_SETUP                                                                   \
    const bool warp_mode = (inner == 1u);                                            \
    const unsigned int lines = outer * inner;                                        \
    const unsigned int tid = blockIdx.x * blockDim.x + threadIdx.x;                  \
    const unsigned int line = warp_mode ? tid / 32u : tid;                           \
    const unsigned int lane = warp_mode ? (threadIdx.x & 31u) : 0u;                  \
    const unsigned int step = warp_mode ? 32u : 1u;                                  \
    if (line >= lines) return;                                                       \
    const unsigned int o = line / inner, in_ = line % inner;                         \
    const unsigned int base = o * n * inner + in_;

__device__ __forceinline__ float line_sum(bool warp_mode, float v) { return warp_mode ? jg_warp_sum(v) : v; }
__device__ __forceinline__ float line_max(bool warp_mode, float v) { return warp_mode ? jg_warp_max(v) : v; }

extern "C" __global__ void reduce_sum(unsigned int outer, unsigned int n, unsigned int inner,
                                      const float* __restrict__ x, float* __restrict__ out) {
    LINE_SETUP
    float acc = 0.f;
    for (unsigned int j = lane; j < n; j += step) acc += x[base + j * inner];
    acc = line_sum(warp_mode, acc);
    if (lane == 0) out[line] = acc;
}

// Max with the index of its first occurrence; NaN counts as the maximum (like torch).
extern "C" __global__ void reduce_max(unsigned int outer, unsigned int n, unsigned int inner,
                                      const float* __restrict__ x, float* __restrict__ out,
                                      unsigned int* __restrict__ argmax) {
    LINE_SETUP
    float best = -JG_INF;
    unsigned int best_j = 0xffffffffu;
    for (unsigned int j = lane; j < n; j += step) {
        float v = x[base + j * inner];
        if (best_j == 0xffffffffu || v > best || (isnan(v) && !isnan(best))) { best = v; best_j = j; }
    }
    if (warp_mode) {
        for (int off = 16; off > 0; off >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, best, off);
            unsigned int oj = __shfl_xor_sync(0xffffffffu, best_j, off);
            bool take = (oj != 0xffffffffu) &&
                        (best_j == 0xffffffffu || ov > best || (isnan(ov) && !isnan(best)) ||
                         ((ov == best || (isnan(ov) && isnan(best))) && oj < best_j));
            if (take) { best = ov; best_j = oj; }
        }
    }
    if (lane == 0) { out[line] = best; argmax[line] = best_j; }
}

// max over the line, then sum of exp(x - max); -inf for an all -inf line.
__device__ __forceinline__ void line_lse(bool warp_mode, unsigned int lane, unsigned int step, unsigned int n,
                                         unsigned int inner, const float* x, unsigned int base,
                                         float* m_out, float* s_out) {
    float m = -JG_INF;
    for (unsigned int j = lane; j < n; j += step) m = fmaxf(m, x[base + j * inner]);
    m = line_max(warp_mode, m);
    float s = 0.f;
    if (m != -JG_INF) {
        for (unsigned int j = lane; j < n; j += step) s += expf(x[base + j * inner] - m);
    }
    s = line_sum(warp_mode, s);
    *m_out = m;
    *s_out = s;
}

extern "C" __global__ void reduce_logsumexp(unsigned int outer, unsigned int n, unsigned int inner,
                                            const float* __restrict__ x, float* __restrict__ out) {
    LINE_SETUP
    float m, s;
    line_lse(warp_mode, lane, step, n, inner, x, base, &m, &s);
    if (lane == 0) out[line] = (m == -JG_INF) ? -JG_INF : m + logf(s);
}

// softmax (log_out = 0) or log-softmax (log_out = 1) along the axis.
extern "C" __global__ void softmax_forward(unsigned int outer, unsigned int n, unsigned int inner, int log_out,
                                           const float* __restrict__ x, float* __restrict__ out) {
    LINE_SETUP
    float m, s;
    line_lse(warp_mode, lane, step, n, inner, x, base, &m, &s);
    float lse = m + logf(s);
    for (unsigned int j = lane; j < n; j += step) {
        float v = x[base + j * inner];
        out[base + j * inner] = log_out ? v - lse : expf(v - m) / s;
    }
}

// Inclusive prefix sum along the axis (reverse = suffix sum). One thread per line.
extern "C" __global__ void cumsum_forward(unsigned int outer, unsigned int n, unsigned int inner, int reverse,
                                          const float* __restrict__ x, float* __restrict__ out) {
    unsigned int line = blockIdx.x * blockDim.x + threadIdx.x;
    if (line >= outer * inner) return;
    unsigned int o = line / inner, in_ = line % inner;
    unsigned int base = o * n * inner + in_;
    float acc = 0.f;
    for (unsigned int k = 0; k < n; ++k) {
        unsigned int j = reverse ? n - 1u - k : k;
        acc += x[base + j * inner];
        out[base + j * inner] = acc;
    }
}

// out[o, j, i] = (j == argmax[o, i]) ? g[o, i] : 0   — backward of max.
extern "C" __global__ void onehot_scatter(unsigned int outer, unsigned int n, unsigned int inner,
                                          const float* __restrict__ g, const unsigned int* __restrict__ argmax,
                                          float* __restrict__ out) {
    JG_GRID_STRIDE(idx, outer * n * inner) {
        unsigned int i = idx % inner;
        unsigned int j = (idx / inner) % n;
        unsigned int o = idx / (inner * n);
        unsigned int line = o * inner + i;
        out[idx] = (argmax[line] == j) ? g[line] : 0.f;
    }
}

// Number of NaN/inf elements (integer atomics: the count is exact and order-independent).
extern "C" __global__ void count_nonfinite(unsigned int n, const float* __restrict__ x, unsigned int* __restrict__ count) {
    unsigned int local = 0;
    JG_GRID_STRIDE(i, n) { local += !isfinite(x[i]); }
    for (int o = 16; o > 0; o >>= 1) local += __shfl_xor_sync(0xffffffffu, local, o);
    if ((threadIdx.x & 31u) == 0 && local) atomicAdd(count, local);
}
