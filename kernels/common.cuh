// Shared helpers for jetgen kernels: strided addressing, grid-stride loops, warp
// reductions and the counter-based RNG (must match src/rng.rs bit for bit).
#pragma once

#define JG_MAX_DIMS 8
// NVRTC has no math.h: spell infinity out.
#define JG_INF __int_as_float(0x7f800000)

// A strided iteration space with up to 3 operand stride lists (see src/shape.rs).
struct Strided3 {
    unsigned int ndim;
    unsigned int shape[JG_MAX_DIMS];
    unsigned int stride[3][JG_MAX_DIMS];
};

// Offset of row-major linear index i in operand k.
__device__ __forceinline__ unsigned int jg_offset(const Strided3& l, int k, unsigned int i) {
    unsigned int off = 0;
    for (int d = (int)l.ndim - 1; d >= 0; --d) {
        unsigned int n = l.shape[d];
        off += (i % n) * l.stride[k][d];
        i /= n;
    }
    return off;
}

// sin/cos without the Payne-Hanek slow path of sinf/cosf (which uses local memory): reduce by
// 2π in two parts (Cody-Waite), then the hardware approximation on [-π, π]. Absolute error
// ≲ 1e-6 for |x| < 1e4; large arguments lose accuracy (physics angles never are).
__device__ __forceinline__ float jg_reduce_2pi(float x) {
    float k = rintf(x * 0.159154943091895336f);
    return fmaf(-k, 1.74845553e-7f, fmaf(-k, 6.28318548202514648f, x));
}
__device__ __forceinline__ float jg_sin(float x) { return __sinf(jg_reduce_2pi(x)); }
__device__ __forceinline__ float jg_cos(float x) { return __cosf(jg_reduce_2pi(x)); }

#define JG_GRID_STRIDE(i, n) \
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += blockDim.x * gridDim.x)

__device__ __forceinline__ float jg_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float jg_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// SplitMix64, as in src/rng.rs.
__device__ __forceinline__ unsigned long long jg_mix64(unsigned long long z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

__device__ __forceinline__ unsigned long long jg_bits(unsigned long long seed, unsigned long long counter) {
    return jg_mix64(jg_mix64(seed) + (counter + 1ull) * 0x9E3779B97F4A7C15ull);
}

__device__ __forceinline__ float jg_uniform(unsigned long long seed, unsigned long long counter) {
    return (float)(jg_bits(seed, counter) >> 40) * (1.0f / 16777216.0f);
}

__device__ __forceinline__ double jg_normal(unsigned long long seed, unsigned long long counter) {
    double u1 = (double)((jg_bits(seed, 2ull * counter) >> 11) + 1ull) * (1.0 / 9007199254740992.0);
    double u2 = (double)(jg_bits(seed, 2ull * counter + 1ull) >> 11) * (1.0 / 9007199254740992.0);
    // cospi needs no large-argument reduction (plain cos would use local memory here)
    return sqrt(-2.0 * log(u1)) * cospi(2.0 * u2);
}
