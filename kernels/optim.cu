// Fused optimizer updates (PyTorch's single-tensor Adam/AdamW rule, see src/nn/optim.rs).
#include "common.cuh"

// decoupled = 0 (Adam, L2):  g += wd * p
// decoupled = 1 (AdamW):     p *= 1 - lr * wd
// m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
// p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
extern "C" __global__ void adam_step(unsigned int n, float* __restrict__ p, const float* __restrict__ g,
                                     float* __restrict__ m, float* __restrict__ v, float lr, float beta1,
                                     float beta2, float eps, float weight_decay, int decoupled, float bc1,
                                     float bc2_sqrt) {
    JG_GRID_STRIDE(i, n) {
        float grad = g[i];
        float param = p[i];
        if (decoupled) {
            param *= 1.f - lr * weight_decay;
        } else {
            grad += weight_decay * param;
        }
        float mi = m[i] + (1.f - beta1) * (grad - m[i]);
        float vi = beta2 * v[i] + (1.f - beta2) * grad * grad;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = param - (lr / bc1) * mi / denom;
    }
}

// sum of squares of each of a set of buffers is done with reduce_sum; this scales in place.
extern "C" __global__ void scale_inplace(unsigned int n, float s, float* __restrict__ x) {
    JG_GRID_STRIDE(i, n) { x[i] *= s; }
}
