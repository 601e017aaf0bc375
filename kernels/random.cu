// Counter-based random tensors (see common.cuh / src/rng.rs): element i uses counter
// offset + i, so the values equal the CPU generator's.
#include "common.cuh"

// normal = 0: U[a, b);  normal = 1: N(a, b^2)
extern "C" __global__ void random_fill(unsigned int n, unsigned long long seed, unsigned long long offset,
                                       int normal, float a, float b, float* __restrict__ out) {
    JG_GRID_STRIDE(i, n) {
        unsigned long long c = offset + (unsigned long long)i;
        if (normal) {
            out[i] = (float)((double)a + (double)b * jg_normal(seed, c));
        } else {
            out[i] = a + (b - a) * jg_uniform(seed, c);
        }
    }
}
