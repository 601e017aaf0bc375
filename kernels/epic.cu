// The EPiC layer's two fused updates (math and shapes: src/ops/epic.rs), f32, one block per
// jet for the forward and input-gradient kernels, one thread per weight element for the
// weight-gradient kernels (sums over jets in a fixed order: no atomics, the same bits under
// every schedule). Padded particles (mask 0) are skipped and their saved values are zeros,
// exactly as in the CPU twin, whose summation order these loops follow.
#include "common.cuh"

__device__ __forceinline__ float jg_lrelu(float u, float a) { return u > 0.f ? u : a * u; }
__device__ __forceinline__ float jg_lrelu_grad(float u, float a) { return u > 0.f ? 1.f : a; }

// Global update: q = [S/cnt, s·S, g, e], a = W1 q + b1, c = W2 σ(a) + b2 + g, y = σ(c).
// grid (B), dynamic shared memory (Q + H1) floats.
extern "C" __global__ void epic_global_fwd(unsigned int P, unsigned int H, unsigned int G, unsigned int E,
                                           unsigned int H1, float sum_scale, float slope,
                                           const float* __restrict__ h, const float* __restrict__ mask,
                                           const float* __restrict__ g, const float* __restrict__ e,
                                           const float* __restrict__ w1, const float* __restrict__ b1,
                                           const float* __restrict__ w2, const float* __restrict__ b2,
                                           float* __restrict__ y, float* __restrict__ q_out,
                                           float* __restrict__ a_out, float* __restrict__ c_out) {
    extern __shared__ float smem[];
    const unsigned int Q = 2 * H + G + E;
    float* q = smem;
    float* z = smem + Q;
    const unsigned int j = blockIdx.x;
    float cnt = 0.f;
    for (unsigned int p = 0; p < P; ++p) cnt += mask[j * P + p];
    cnt = cnt > 1.f ? cnt : 1.f;
    for (unsigned int k = threadIdx.x; k < H; k += blockDim.x) {
        float s = 0.f;
        for (unsigned int p = 0; p < P; ++p) {
            float m = mask[j * P + p];
            if (m != 0.f) s += m * h[(j * P + p) * H + k];
        }
        q[k] = s / cnt;
        q[H + k] = sum_scale * s;
    }
    for (unsigned int k = threadIdx.x; k < G; k += blockDim.x) q[2 * H + k] = g[j * G + k];
    for (unsigned int k = threadIdx.x; k < E; k += blockDim.x) q[2 * H + G + k] = e[j * E + k];
    __syncthreads();
    for (unsigned int r = threadIdx.x; r < H1; r += blockDim.x) {
        float s = b1[r];
        for (unsigned int col = 0; col < Q; ++col) s += w1[r * Q + col] * q[col];
        a_out[j * H1 + r] = s;
        z[r] = jg_lrelu(s, slope);
    }
    __syncthreads();
    for (unsigned int i = threadIdx.x; i < G; i += blockDim.x) {
        float s = b2[i];
        for (unsigned int r = 0; r < H1; ++r) s += w2[i * H1 + r] * z[r];
        s += g[j * G + i];
        c_out[j * G + i] = s;
        y[j * G + i] = jg_lrelu(s, slope);
    }
    for (unsigned int col = threadIdx.x; col < Q; col += blockDim.x) q_out[j * Q + col] = q[col];
}

// Global update, input gradients per jet (and ∂L/∂c, ∂L/∂a for the weight kernel).
// grid (B), dynamic shared memory (G + H1 + Q) floats.
extern "C" __global__ void epic_global_bwd(unsigned int P, unsigned int H, unsigned int G, unsigned int E,
                                           unsigned int H1, float sum_scale, float slope,
                                           const float* __restrict__ mask, const float* __restrict__ w1,
                                           const float* __restrict__ w2, const float* __restrict__ a,
                                           const float* __restrict__ c, const float* __restrict__ gy,
                                           float* __restrict__ gh, float* __restrict__ gg,
                                           float* __restrict__ ge, float* __restrict__ ga_out,
                                           float* __restrict__ gc_out) {
    extern __shared__ float smem[];
    const unsigned int Q = 2 * H + G + E;
    float* gc = smem;
    float* ga = smem + G;
    float* gq = smem + G + H1;
    const unsigned int j = blockIdx.x;
    for (unsigned int i = threadIdx.x; i < G; i += blockDim.x) {
        float v = gy[j * G + i] * jg_lrelu_grad(c[j * G + i], slope);
        gc[i] = v;
        gc_out[j * G + i] = v;
    }
    __syncthreads();
    for (unsigned int r = threadIdx.x; r < H1; r += blockDim.x) {
        float s = 0.f;
        for (unsigned int i = 0; i < G; ++i) s += w2[i * H1 + r] * gc[i];
        float v = s * jg_lrelu_grad(a[j * H1 + r], slope);
        ga[r] = v;
        ga_out[j * H1 + r] = v;
    }
    __syncthreads();
    for (unsigned int col = threadIdx.x; col < Q; col += blockDim.x) {
        float s = 0.f;
        for (unsigned int r = 0; r < H1; ++r) s += w1[r * Q + col] * ga[r];
        gq[col] = s;
    }
    __syncthreads();
    float cnt = 0.f;
    for (unsigned int p = 0; p < P; ++p) cnt += mask[j * P + p];
    cnt = cnt > 1.f ? cnt : 1.f;
    for (unsigned int idx = threadIdx.x; idx < P * H; idx += blockDim.x) {
        unsigned int p = idx / H, k = idx % H;
        float m = mask[j * P + p];
        gh[(j * P + p) * H + k] = m != 0.f ? m * (gq[k] / cnt + sum_scale * gq[H + k]) : 0.f;
    }
    for (unsigned int i = threadIdx.x; i < G; i += blockDim.x) gg[j * G + i] = gc[i] + gq[2 * H + i];
    for (unsigned int k = threadIdx.x; k < E; k += blockDim.x) ge[j * E + k] = gq[2 * H + G + k];
}

// Global update, weight gradients: one thread per element of [W1 | b1 | W2 | b2], summed over
// the jets in order. grid-stride over H1·Q + H1 + G·H1 + G.
extern "C" __global__ void epic_global_wgrad(unsigned int B, unsigned int Q, unsigned int G, unsigned int H1,
                                             float slope, const float* __restrict__ q,
                                             const float* __restrict__ a, const float* __restrict__ ga,
                                             const float* __restrict__ gc, float* __restrict__ gw1,
                                             float* __restrict__ gb1, float* __restrict__ gw2,
                                             float* __restrict__ gb2) {
    const unsigned int n1 = H1 * Q, n2 = n1 + H1, n3 = n2 + G * H1, n4 = n3 + G;
    JG_GRID_STRIDE(idx, n4) {
        float s = 0.f;
        if (idx < n1) {
            unsigned int r = idx / Q, col = idx % Q;
            for (unsigned int j = 0; j < B; ++j) s += ga[j * H1 + r] * q[j * Q + col];
            gw1[idx] = s;
        } else if (idx < n2) {
            unsigned int r = idx - n1;
            for (unsigned int j = 0; j < B; ++j) s += ga[j * H1 + r];
            gb1[r] = s;
        } else if (idx < n3) {
            unsigned int k = idx - n2, i = k / H1, r = k % H1;
            for (unsigned int j = 0; j < B; ++j) s += gc[j * G + i] * jg_lrelu(a[j * H1 + r], slope);
            gw2[k] = s;
        } else {
            unsigned int i = idx - n3;
            for (unsigned int j = 0; j < B; ++j) s += gc[j * G + i];
            gb2[i] = s;
        }
    }
}

// Particle update: base = b3 + W3[:, H:]·[g, τ] once per jet; per real particle
// a = base + W3[:, :H] h_p, c = W4 σ(a) + b4 + h_p, y = m σ(c). grid (B), dynamic shared
// memory (2·H2 + H) floats.
extern "C" __global__ void epic_particle_fwd(unsigned int P, unsigned int H, unsigned int G, unsigned int T,
                                             unsigned int H2, float slope, const float* __restrict__ h,
                                             const float* __restrict__ mask, const float* __restrict__ g,
                                             const float* __restrict__ tau, const float* __restrict__ w3,
                                             const float* __restrict__ b3, const float* __restrict__ w4,
                                             const float* __restrict__ b4, float* __restrict__ y,
                                             float* __restrict__ a_out, float* __restrict__ c_out) {
    extern __shared__ float smem[];
    const unsigned int X = H + G + T;
    float* base = smem;
    float* z = smem + H2;
    float* hp = smem + 2 * H2;
    const unsigned int j = blockIdx.x;
    for (unsigned int i = threadIdx.x; i < H2; i += blockDim.x) {
        float s = b3[i];
        for (unsigned int q = 0; q < G; ++q) s += w3[i * X + H + q] * g[j * G + q];
        for (unsigned int q = 0; q < T; ++q) s += w3[i * X + H + G + q] * tau[j * T + q];
        base[i] = s;
    }
    __syncthreads();
    for (unsigned int p = 0; p < P; ++p) {
        const float m = mask[j * P + p];
        const unsigned int row = j * P + p;
        if (m == 0.f) {  // uniform across the block
            for (unsigned int k = threadIdx.x; k < H; k += blockDim.x) {
                y[row * H + k] = 0.f;
                c_out[row * H + k] = 0.f;
            }
            for (unsigned int i = threadIdx.x; i < H2; i += blockDim.x) a_out[row * H2 + i] = 0.f;
            continue;
        }
        for (unsigned int k = threadIdx.x; k < H; k += blockDim.x) hp[k] = h[row * H + k];
        __syncthreads();
        for (unsigned int i = threadIdx.x; i < H2; i += blockDim.x) {
            float s = base[i];
            for (unsigned int k = 0; k < H; ++k) s += w3[i * X + k] * hp[k];
            a_out[row * H2 + i] = s;
            z[i] = jg_lrelu(s, slope);
        }
        __syncthreads();
        for (unsigned int k = threadIdx.x; k < H; k += blockDim.x) {
            float s = b4[k];
            for (unsigned int i = 0; i < H2; ++i) s += w4[k * H2 + i] * z[i];
            s += hp[k];
            c_out[row * H + k] = s;
            y[row * H + k] = m * jg_lrelu(s, slope);
        }
        __syncthreads();
    }
}

// Particle update, input gradients per jet (and ∂L/∂c, ∂L/∂a per particle for the weight
// kernel). grid (B), dynamic shared memory (H + 2·H2) floats.
extern "C" __global__ void epic_particle_bwd(unsigned int P, unsigned int H, unsigned int G, unsigned int T,
                                             unsigned int H2, float slope, const float* __restrict__ mask,
                                             const float* __restrict__ w3, const float* __restrict__ w4,
                                             const float* __restrict__ a, const float* __restrict__ c,
                                             const float* __restrict__ gy, float* __restrict__ gh,
                                             float* __restrict__ gg, float* __restrict__ gt,
                                             float* __restrict__ gc_out, float* __restrict__ ga_out) {
    extern __shared__ float smem[];
    const unsigned int X = H + G + T;
    float* gc = smem;
    float* ga = smem + H;
    float* ga_sum = smem + H + H2;
    const unsigned int j = blockIdx.x;
    for (unsigned int i = threadIdx.x; i < H2; i += blockDim.x) ga_sum[i] = 0.f;
    __syncthreads();
    for (unsigned int p = 0; p < P; ++p) {
        const float m = mask[j * P + p];
        const unsigned int row = j * P + p;
        if (m == 0.f) {  // uniform across the block
            for (unsigned int k = threadIdx.x; k < H; k += blockDim.x) {
                gh[row * H + k] = 0.f;
                gc_out[row * H + k] = 0.f;
            }
            for (unsigned int i = threadIdx.x; i < H2; i += blockDim.x) ga_out[row * H2 + i] = 0.f;
            continue;
        }
        for (unsigned int k = threadIdx.x; k < H; k += blockDim.x) {
            float v = gy[row * H + k] * m * jg_lrelu_grad(c[row * H + k], slope);
            gc[k] = v;
            gc_out[row * H + k] = v;
        }
        __syncthreads();
        for (unsigned int i = threadIdx.x; i < H2; i += blockDim.x) {
            float s = 0.f;
            for (unsigned int k = 0; k < H; ++k) s += w4[k * H2 + i] * gc[k];
            float v = s * jg_lrelu_grad(a[row * H2 + i], slope);
            ga[i] = v;
            ga_out[row * H2 + i] = v;
            ga_sum[i] += v;
        }
        __syncthreads();
        for (unsigned int k = threadIdx.x; k < H; k += blockDim.x) {
            float s = gc[k];
            for (unsigned int i = 0; i < H2; ++i) s += w3[i * X + k] * ga[i];
            gh[row * H + k] = s;
        }
        __syncthreads();
    }
    for (unsigned int q = threadIdx.x; q < G + T; q += blockDim.x) {
        float s = 0.f;
        for (unsigned int i = 0; i < H2; ++i) s += w3[i * X + H + q] * ga_sum[i];
        if (q < G) {
            gg[j * G + q] = s;
        } else {
            gt[j * T + (q - G)] = s;
        }
    }
}

// Particle update, weight gradients: one thread per element of [W3 | b3 | W4 | b4], summed
// over jets and particles in order. grid-stride over H2·X + H2 + H·H2 + H.
extern "C" __global__ void epic_particle_wgrad(unsigned int B, unsigned int P, unsigned int H, unsigned int G,
                                               unsigned int T, unsigned int H2, float slope,
                                               const float* __restrict__ h, const float* __restrict__ g,
                                               const float* __restrict__ tau, const float* __restrict__ a,
                                               const float* __restrict__ ga, const float* __restrict__ gc,
                                               float* __restrict__ gw3, float* __restrict__ gb3,
                                               float* __restrict__ gw4, float* __restrict__ gb4) {
    const unsigned int X = H + G + T;
    const unsigned int n1 = H2 * X, n2 = n1 + H2, n3 = n2 + H * H2, n4 = n3 + H;
    JG_GRID_STRIDE(idx, n4) {
        float s = 0.f;
        if (idx < n1) {
            unsigned int i = idx / X, col = idx % X;
            if (col < H) {
                for (unsigned int r = 0; r < B * P; ++r) s += ga[r * H2 + i] * h[r * H + col];
            } else {
                for (unsigned int j = 0; j < B; ++j) {
                    float sum = 0.f;
                    for (unsigned int p = 0; p < P; ++p) sum += ga[(j * P + p) * H2 + i];
                    float v = col < H + G ? g[j * G + (col - H)] : tau[j * T + (col - H - G)];
                    s += sum * v;
                }
            }
            gw3[idx] = s;
        } else if (idx < n2) {
            unsigned int i = idx - n1;
            for (unsigned int r = 0; r < B * P; ++r) s += ga[r * H2 + i];
            gb3[i] = s;
        } else if (idx < n3) {
            unsigned int k = idx - n2, q = k / H2, i = k % H2;
            for (unsigned int r = 0; r < B * P; ++r) s += gc[r * H + q] * jg_lrelu(a[r * H2 + i], slope);
            gw4[k] = s;
        } else {
            unsigned int q = idx - n3;
            for (unsigned int r = 0; r < B * P; ++r) s += gc[r * H + q];
            gb4[q] = s;
        }
    }
}
