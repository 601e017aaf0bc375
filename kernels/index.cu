// Indexing along one axis of x viewed as [outer, n, inner]; k = size of the index axis.
// Backwards loop over contributors instead of using atomics, so results are deterministic.
#include "common.cuh"

// out[o, j, i] = x[o, idx[j], i]
extern "C" __global__ void index_select_forward(unsigned int total, unsigned int outer, unsigned int n,
                                                unsigned int k, unsigned int inner, const float* __restrict__ x,
                                                const unsigned int* __restrict__ idx, float* __restrict__ out) {
    JG_GRID_STRIDE(p, total) {
        unsigned int i = p % inner, j = (p / inner) % k, o = p / (inner * k);
        out[p] = x[(o * n + idx[j]) * inner + i];
    }
}

// dx[o, m, i] = sum_{j : idx[j] == m} g[o, j, i]
extern "C" __global__ void index_add(unsigned int total, unsigned int outer, unsigned int n, unsigned int k,
                                     unsigned int inner, const float* __restrict__ g,
                                     const unsigned int* __restrict__ idx, float* __restrict__ dx) {
    JG_GRID_STRIDE(p, total) {
        unsigned int i = p % inner, m = (p / inner) % n, o = p / (inner * n);
        float acc = 0.f;
        for (unsigned int j = 0; j < k; ++j)
            if (idx[j] == m) acc += g[(o * k + j) * inner + i];
        dx[p] = acc;
    }
}

// out[o, j, i] = x[o, idx[o, j, i], i]
extern "C" __global__ void gather_forward(unsigned int total, unsigned int outer, unsigned int n, unsigned int k,
                                          unsigned int inner, const float* __restrict__ x,
                                          const unsigned int* __restrict__ idx, float* __restrict__ out) {
    JG_GRID_STRIDE(p, total) {
        unsigned int i = p % inner, o = p / (inner * k);
        out[p] = x[(o * n + idx[p]) * inner + i];
    }
}

// dx[o, m, i] = sum_{j : idx[o, j, i] == m} g[o, j, i]
extern "C" __global__ void scatter_add(unsigned int total, unsigned int outer, unsigned int n, unsigned int k,
                                       unsigned int inner, const float* __restrict__ g,
                                       const unsigned int* __restrict__ idx, float* __restrict__ dx) {
    JG_GRID_STRIDE(p, total) {
        unsigned int i = p % inner, m = (p / inner) % n, o = p / (inner * n);
        float acc = 0.f;
        for (unsigned int j = 0; j < k; ++j) {
            unsigned int q = (o * k + j) * inner + i;
            if (idx[q] == m) acc += g[q];
        }
        dx[p] = acc;
    }
}
