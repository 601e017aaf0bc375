// Fused message passing on the fully connected particle graph (CPU twin: src/ops/message.rs).
//   edge_input_fwd:  e[b,i,j,h] = phi(a[b,i,h] + c[b,j,h]) (or phi'), phi = LeakyReLU(alpha);
//                    one thread per output element, h fastest (coalesced loads of a and c).
//   edge_input_grad: threads [0, BNH): da[b,i,h] = sum_j phi'(a_i + c_j) g[b,i,j,h];
//                    threads [BNH, 2BNH): dc[b,j,h] = sum_i phi'(a_i + c_j) g[b,i,j,h].
//                    Sums in index order (deterministic, no atomics).
//   aggregate_fwd:   out[b,i,h] = sum_{j: mask[b,j] != 0} m[b,i,j,h] (padded senders skipped).
//   aggregate_grad:  dm[b,i,j,h] = mask[b,j] != 0 ? g[b,i,h] : 0.
#include "common.cuh"

extern "C" __global__ void edge_input_fwd(unsigned int total, unsigned int N, unsigned int H,
                                          const float* __restrict__ a, const float* __restrict__ c,
                                          float alpha, int slope, float* __restrict__ out) {
    JG_GRID_STRIDE(t, total) {
        unsigned int h = t % H;
        unsigned int j = (t / H) % N;
        unsigned int bi = t / (H * N);
        unsigned int b = bi / N;
        float x = a[bi * H + h] + c[(b * N + j) * H + h];
        if (slope) out[t] = x > 0.f ? 1.f : alpha;
        else out[t] = x > 0.f ? x : alpha * x;
    }
}

extern "C" __global__ void edge_input_grad(unsigned int total, unsigned int N, unsigned int H,
                                           const float* __restrict__ a, const float* __restrict__ c,
                                           const float* __restrict__ g, float alpha,
                                           float* __restrict__ da, float* __restrict__ dc) {
    const unsigned int half = total / 2;
    JG_GRID_STRIDE(t, total) {
        unsigned int r = t < half ? t : t - half;
        unsigned int h = r % H;
        unsigned int node = r / H;  // b*N + i (receiver) or b*N + j (sender)
        unsigned int b = node / N;
        unsigned int k = node % N;
        float acc = 0.f;
        if (t < half) {
            float ai = a[node * H + h];
            for (unsigned int j = 0; j < N; ++j) {
                float x = ai + c[(b * N + j) * H + h];
                float gv = g[(node * N + j) * H + h];
                acc += x > 0.f ? gv : alpha * gv;
            }
            da[r] = acc;
        } else {
            float cj = c[node * H + h];
            for (unsigned int i = 0; i < N; ++i) {
                float x = a[(b * N + i) * H + h] + cj;
                float gv = g[((b * N + i) * N + k) * H + h];
                acc += x > 0.f ? gv : alpha * gv;
            }
            dc[r] = acc;
        }
    }
}

extern "C" __global__ void aggregate_fwd(unsigned int total, unsigned int N, unsigned int M, unsigned int H,
                                         const float* __restrict__ m, const float* __restrict__ mask,
                                         float* __restrict__ out) {
    JG_GRID_STRIDE(t, total) {
        unsigned int h = t % H;
        unsigned int bi = t / H;
        unsigned int b = bi / N;
        float acc = 0.f;
        for (unsigned int j = 0; j < M; ++j) {
            if (mask[b * M + j] != 0.f) acc += m[(bi * M + j) * H + h];
        }
        out[t] = acc;
    }
}

extern "C" __global__ void aggregate_grad(unsigned int total, unsigned int N, unsigned int M, unsigned int H,
                                          const float* __restrict__ g, const float* __restrict__ mask,
                                          float* __restrict__ dm) {
    JG_GRID_STRIDE(t, total) {
        unsigned int h = t % H;
        unsigned int j = (t / H) % M;
        unsigned int bi = t / (H * M);
        unsigned int b = bi / N;
        dm[t] = mask[b * M + j] != 0.f ? g[bi * H + h] : 0.f;
    }
}
