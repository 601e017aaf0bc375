// Elementwise kernels: unary ops (forward and backward), broadcasting binary ops, select,
// fill. Op codes match UnaryOp / BinaryOp in src/ops/elementwise.rs.
#include "common.cuh"

__device__ __forceinline__ float jg_sigmoid(float x) {
    if (x >= 0.f) return 1.f / (1.f + expf(-x));
    float e = expf(x);
    return e / (1.f + e);
}

__device__ __forceinline__ float unary_apply(int op, float x, float p0, float p1) {
    switch (op) {
    case 0: return -x;
    case 1: return expf(x);
    case 2: return logf(x);
    case 3: return sqrtf(x);
    case 4: return x * x;
    case 5: return powf(x, p0);
    case 6: return fabsf(x);
    case 7: return x > 0.f ? x : 0.f;
    case 8: return x > 0.f ? x : p0 * x;
    case 9: return x > 0.f ? x : p0 * expm1f(x);
    case 10: return tanhf(x);
    case 11: return jg_sigmoid(x);
    case 12: return fmaxf(x, 0.f) + log1pf(expf(-fabsf(x)));
    case 13: return x < p0 ? p0 : (x > p1 ? p1 : x);  // NaN passes through, like the CPU twin
    case 14: return x + p0;
    case 15: return x * p0;
    case 16: return 1.f / x;
    case 17: return jg_sin(x);
    case 18: return jg_cos(x);
    case 19: return sinhf(x);
    case 20: return coshf(x);
    default: return __int_as_float(0x7fc00000);
    }
}

// dL/dx given x, y = f(x) and g = dL/dy.
__device__ __forceinline__ float unary_grad(int op, float x, float y, float g, float p0, float p1) {
    switch (op) {
    case 0: return -g;
    case 1: return g * y;
    case 2: return g / x;
    case 3: return g * 0.5f / y;
    case 4: return 2.f * x * g;
    case 5: return g * p0 * powf(x, p0 - 1.f);
    case 6: return x > 0.f ? g : (x < 0.f ? -g : 0.f);
    case 7: return x > 0.f ? g : 0.f;
    case 8: return x > 0.f ? g : p0 * g;
    case 9: return x > 0.f ? g : g * (y + p0);
    case 10: return g * (1.f - y * y);
    case 11: return g * y * (1.f - y);
    case 12: return g * jg_sigmoid(x);
    case 13: return (x >= p0 && x <= p1) ? g : 0.f;
    case 14: return g;
    case 15: return g * p0;
    case 16: return -g * y * y;
    case 17: return g * jg_cos(x);
    case 18: return -g * jg_sin(x);
    case 19: return g * coshf(x);
    case 20: return g * sinhf(x);
    default: return __int_as_float(0x7fc00000);
    }
}

extern "C" __global__ void unary_forward(int op, float p0, float p1, unsigned int n,
                                         const float* __restrict__ x, float* __restrict__ y) {
    JG_GRID_STRIDE(i, n) { y[i] = unary_apply(op, x[i], p0, p1); }
}

extern "C" __global__ void unary_backward(int op, float p0, float p1, unsigned int n,
                                          const float* __restrict__ x, const float* __restrict__ y,
                                          const float* __restrict__ g, float* __restrict__ dx) {
    JG_GRID_STRIDE(i, n) { dx[i] = unary_grad(op, x[i], y[i], g[i], p0, p1); }
}

// out[i] = a[off0(i)] (op) b[off1(i)], NumPy broadcasting through zero strides.
extern "C" __global__ void binary_forward(int op, Strided3 l, unsigned int n,
                                          const float* __restrict__ a, const float* __restrict__ b,
                                          float* __restrict__ out) {
    JG_GRID_STRIDE(i, n) {
        float x = a[jg_offset(l, 0, i)];
        float y = b[jg_offset(l, 1, i)];
        float r;
        switch (op) {
        case 0: r = x + y; break;
        case 1: r = x - y; break;
        case 2: r = x * y; break;
        case 3: r = x / y; break;
        case 4: r = (x >= y || isnan(x)) ? x : y; break;
        default: r = __int_as_float(0x7fc00000);
        }
        out[i] = r;
    }
}

// out[i] = cond[off0(i)] != 0 ? a[off1(i)] : b[off2(i)]   (no arithmetic on the unselected value)
extern "C" __global__ void select_forward(Strided3 l, unsigned int n, const float* __restrict__ cond,
                                          const float* __restrict__ a, const float* __restrict__ b,
                                          float* __restrict__ out) {
    JG_GRID_STRIDE(i, n) {
        out[i] = cond[jg_offset(l, 0, i)] != 0.f ? a[jg_offset(l, 1, i)] : b[jg_offset(l, 2, i)];
    }
}

extern "C" __global__ void fill(unsigned int n, float value, float* __restrict__ out) {
    JG_GRID_STRIDE(i, n) { out[i] = value; }
}
