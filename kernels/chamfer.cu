// Batched Chamfer distance with padding masks. Never materialises B×N×M distances:
//   chamfer_nn:     grid (ceil(N/T), B), T = N rounded up to a warp, at most 256 (any
//                   blockDim works: shared loads stride by it); each thread owns one query point (coordinates in
//                   registers, D a template constant) and streams the reference cloud through
//                   shared memory in tiles of 256 points, keeping the running min/argmin
//                   (first index wins ties, like torch.argmin).
//   chamfer_reduce: one block per pair; per-point minima summed in a fixed tree order
//                   (deterministic), divided by the valid counts for the mean reduction.
//   chamfer_grad:   grid (ceil(N/T), B) as chamfer_nn; dL/dq_i = c_q g 2(q_i − r_nn(i)) − Σ_{j: nn'(j)=i} c_r g 2(r_j − q_i),
//                   the second sum by scanning the reference cloud's nn indices (no atomics).
// Invalid (masked) points: min = 0, index = 0xffffffff, gradient exactly 0. A pair where
// either cloud is empty contributes 0.
#include "common.cuh"

#define CH_TILE 256
#define CH_NONE 0xffffffffu

// Shared tiles are declared once per kernel (sized for D = 8) and handed to the templated
// bodies, so the D instantiations do not each reserve their own.
template <int D>
__device__ void chamfer_nn_body(unsigned int N, unsigned int M, const float* __restrict__ q,
                                const float* __restrict__ r, const float* __restrict__ mask_q,
                                const float* __restrict__ mask_r, float* __restrict__ out_min,
                                unsigned int* __restrict__ out_idx, float* tile, float* tile_valid) {
    const unsigned int b = blockIdx.y;
    const unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    const bool own = i < N;
    const bool valid = own && (mask_q == nullptr || mask_q[(size_t)b * N + i] != 0.f);
    float p[D];
#pragma unroll
    for (int d = 0; d < D; ++d) p[d] = own ? q[((size_t)b * N + i) * D + d] : 0.f;
    float best = JG_INF;
    unsigned int best_j = CH_NONE;
    for (unsigned int start = 0; start < M; start += CH_TILE) {
        unsigned int count = min(CH_TILE, M - start);
        __syncthreads();
        for (unsigned int t = threadIdx.x; t < count * D; t += blockDim.x)
            tile[t] = r[((size_t)b * M + start) * D + t];
        for (unsigned int t = threadIdx.x; t < count; t += blockDim.x)
            tile_valid[t] = mask_r == nullptr ? 1.f : mask_r[(size_t)b * M + start + t];
        __syncthreads();
        if (valid) {
            for (unsigned int t = 0; t < count; ++t) {
                if (tile_valid[t] == 0.f) continue;
                float dist = 0.f;
#pragma unroll
                for (int d = 0; d < D; ++d) {
                    float diff = p[d] - tile[t * D + d];
                    dist += diff * diff;
                }
                if (dist < best) { best = dist; best_j = start + t; }
            }
        }
    }
    if (own) {
        out_min[(size_t)b * N + i] = (valid && best_j != CH_NONE) ? best : 0.f;
        out_idx[(size_t)b * N + i] = valid ? best_j : CH_NONE;
    }
}

#define CH_DISPATCH(BODY, ...)                  \
    switch (D) {                                \
    case 1: BODY<1>(__VA_ARGS__); break;        \
    case 2: BODY<2>(__VA_ARGS__); break;        \
    case 3: BODY<3>(__VA_ARGS__); break;        \
    case 4: BODY<4>(__VA_ARGS__); break;        \
    case 5: BODY<5>(__VA_ARGS__); break;        \
    case 6: BODY<6>(__VA_ARGS__); break;        \
    case 7: BODY<7>(__VA_ARGS__); break;        \
    default: BODY<8>(__VA_ARGS__); break;       \
    }

// For each point of q [B, N, D]: squared distance to, and index of, the nearest valid point of r [B, M, D].
extern "C" __global__ void chamfer_nn(unsigned int N, unsigned int M, unsigned int D, const float* __restrict__ q,
                                      const float* __restrict__ r, const float* __restrict__ mask_q,
                                      const float* __restrict__ mask_r, float* __restrict__ out_min,
                                      unsigned int* __restrict__ out_idx) {
    __shared__ float tile[CH_TILE * 8];
    __shared__ float tile_valid[CH_TILE];
    CH_DISPATCH(chamfer_nn_body, N, M, q, r, mask_q, mask_r, out_min, out_idx, tile, tile_valid)
}

// Block tree sum of one value per thread (blockDim = 256), result valid in thread 0.
__device__ __forceinline__ float ch_block_sum(float v, float* scratch) {
    v = jg_warp_sum(v);
    if ((threadIdx.x & 31u) == 0) scratch[threadIdx.x >> 5] = v;
    __syncthreads();
    float total = 0.f;
    if (threadIdx.x == 0)
        for (unsigned int w = 0; w < (blockDim.x + 31u) / 32u; ++w) total += scratch[w];
    __syncthreads();
    return total;
}

// out[b] = Σ_i min_xy + Σ_j min_yx (each divided by its valid count when mean != 0);
// counts[b] = (N_b, M_b). One block of 256 threads per pair.
extern "C" __global__ void chamfer_reduce(unsigned int N, unsigned int M, int mean, const float* __restrict__ min_xy,
                                          const float* __restrict__ min_yx, const float* __restrict__ mask_x,
                                          const float* __restrict__ mask_y, float* __restrict__ out,
                                          float* __restrict__ counts) {
    __shared__ float scratch[32];
    const unsigned int b = blockIdx.x;
    float sx = 0.f, sy = 0.f, nx = 0.f, ny = 0.f;
    for (unsigned int i = threadIdx.x; i < N; i += blockDim.x) {
        sx += min_xy[(size_t)b * N + i];
        nx += mask_x == nullptr ? 1.f : (mask_x[(size_t)b * N + i] != 0.f);
    }
    for (unsigned int j = threadIdx.x; j < M; j += blockDim.x) {
        sy += min_yx[(size_t)b * M + j];
        ny += mask_y == nullptr ? 1.f : (mask_y[(size_t)b * M + j] != 0.f);
    }
    sx = ch_block_sum(sx, scratch);
    sy = ch_block_sum(sy, scratch);
    nx = ch_block_sum(nx, scratch);
    ny = ch_block_sum(ny, scratch);
    if (threadIdx.x == 0) {
        float value = 0.f;
        if (nx > 0.f && ny > 0.f) value = mean ? sx / nx + sy / ny : sx + sy;
        out[b] = value;
        counts[2 * b] = nx;
        counts[2 * b + 1] = ny;
    }
}

template <int D>
__device__ void chamfer_grad_body(unsigned int N, unsigned int M, int mean, int q_is_x, const float* __restrict__ q,
                                  const float* __restrict__ r, const unsigned int* __restrict__ nn_q,
                                  const unsigned int* __restrict__ nn_r, const float* __restrict__ counts,
                                  const float* __restrict__ g, float* __restrict__ gq, float* tile,
                                  unsigned int* tile_nn) {
    const unsigned int b = blockIdx.y;
    const unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    const bool own = i < N;
    float nq = counts[2 * b + (q_is_x ? 0 : 1)], nr = counts[2 * b + (q_is_x ? 1 : 0)];
    bool live = nq > 0.f && nr > 0.f;
    float cq = g[b] * 2.f * (mean ? 1.f / fmaxf(nq, 1.f) : 1.f);
    float cr = g[b] * 2.f * (mean ? 1.f / fmaxf(nr, 1.f) : 1.f);
    float p[D], acc[D];
#pragma unroll
    for (int d = 0; d < D; ++d) { p[d] = own ? q[((size_t)b * N + i) * D + d] : 0.f; acc[d] = 0.f; }
    unsigned int j_own = own ? nn_q[(size_t)b * N + i] : CH_NONE;
    if (live && j_own != CH_NONE) {
#pragma unroll
        for (int d = 0; d < D; ++d) acc[d] += cq * (p[d] - r[((size_t)b * M + j_own) * D + d]);
    }
    for (unsigned int start = 0; start < M; start += CH_TILE) {
        unsigned int count = min(CH_TILE, M - start);
        __syncthreads();
        for (unsigned int t = threadIdx.x; t < count * D; t += blockDim.x)
            tile[t] = r[((size_t)b * M + start) * D + t];
        for (unsigned int t = threadIdx.x; t < count; t += blockDim.x) tile_nn[t] = nn_r[(size_t)b * M + start + t];
        __syncthreads();
        if (own && live) {
            for (unsigned int t = 0; t < count; ++t) {
                if (tile_nn[t] != i) continue;
#pragma unroll
                for (int d = 0; d < D; ++d) acc[d] -= cr * (tile[t * D + d] - p[d]);
            }
        }
    }
    if (own) {
#pragma unroll
        for (int d = 0; d < D; ++d) gq[((size_t)b * N + i) * D + d] = acc[d];
    }
}

// Gradient w.r.t. the cloud q (x when q_is_x, else y) of L = Σ_b g_b chamfer_b.
extern "C" __global__ void chamfer_grad(unsigned int N, unsigned int M, unsigned int D, int mean, int q_is_x,
                                        const float* __restrict__ q, const float* __restrict__ r,
                                        const unsigned int* __restrict__ nn_q, const unsigned int* __restrict__ nn_r,
                                        const float* __restrict__ counts, const float* __restrict__ g,
                                        float* __restrict__ gq) {
    __shared__ float tile[CH_TILE * 8];
    __shared__ unsigned int tile_nn[CH_TILE];
    CH_DISPATCH(chamfer_grad_body, N, M, mean, q_is_x, q, r, nn_q, nn_r, counts, g, gq, tile, tile_nn)
}
