// Rational-quadratic spline with linear tails (nflows semantics), forward/inverse and the
// fused backward. One thread per element; the K bin parameters are streamed from global
// memory (no per-thread arrays, so no local memory), and K is a compile-time constant for
// the common bin counts (loops unroll), a run-time value otherwise. Mirrors src/ops/rqs.rs;
// see there for the math. The knot adjoints reach the width/height logits as the adjoint of
// shifting the whole bin (∂L/∂x_b + ∂L/∂x_{b+1}) and of its right knot alone; in the inverse
// direction the x-shift adjoint is exactly ∂L/∂x* (see rqs_backward_body).
#include "common.cuh"

struct RqsBin {
    int index;
    float x0, w, y0, h, d0, d1;
};

__device__ __forceinline__ float rqs_softplus(float x) { return fmaxf(x, 0.f) + log1pf(expf(-fabsf(x))); }
__device__ __forceinline__ float rqs_sigmoid(float x) { return 1.f / (1.f + expf(-x)); }

template <int KT>
__device__ __forceinline__ void rqs_softmax_stats(const float* __restrict__ u, int K, float& m, float& s) {
    const int k = KT > 0 ? KT : K;
    m = u[0];
#pragma unroll
    for (int j = 1; j < k; ++j) m = fmaxf(m, u[j]);
    s = 0.f;
#pragma unroll
    for (int j = 0; j < k; ++j) s += expf(u[j] - m);
}

template <int KT>
__device__ __forceinline__ RqsBin rqs_locate(float value, const float* __restrict__ uw, const float* __restrict__ uh,
                                             const float* __restrict__ ud, int K, float B, float min_w, float min_h,
                                             float min_d, int inverse) {
    const int k = KT > 0 ? KT : K;
    float mw, sw, mh, sh;
    rqs_softmax_stats<KT>(uw, k, mw, sw);
    rqs_softmax_stats<KT>(uh, k, mh, sh);
    const float scale_w = 1.f - min_w * (float)k, scale_h = 1.f - min_h * (float)k;
    float cum_w = 0.f, cum_h = 0.f, left_x = -B, left_y = -B;
    RqsBin bin;
    bin.index = k - 1;
    bin.x0 = left_x; bin.w = 2.f * B; bin.y0 = left_y; bin.h = 2.f * B;
#pragma unroll
    for (int i = 0; i < k; ++i) {
        cum_w += min_w + scale_w * expf(uw[i] - mw) / sw;
        cum_h += min_h + scale_h * expf(uh[i] - mh) / sh;
        float right_x = (i + 1 == k) ? B : 2.f * B * cum_w - B;
        float right_y = (i + 1 == k) ? B : 2.f * B * cum_h - B;
        float right = inverse ? right_y : right_x;
        if (i + 1 == k || value < right) {
            bin.index = i;
            bin.x0 = left_x; bin.w = right_x - left_x;
            bin.y0 = left_y; bin.h = right_y - left_y;
            break;
        }
        left_x = right_x;
        left_y = right_y;
    }
    bin.d0 = bin.index == 0 ? 1.f : min_d + rqs_softplus(ud[bin.index - 1]);
    bin.d1 = bin.index + 1 == k ? 1.f : min_d + rqs_softplus(ud[bin.index]);
    return bin;
}

__device__ __forceinline__ void rqs_forward_in_bin(float x, const RqsBin& b, float& y, float& ld) {
    float xi = (x - b.x0) / b.w;
    float s = b.h / b.w;
    float th = xi * (1.f - xi);
    float den = s + (b.d0 + b.d1 - 2.f * s) * th;
    y = b.y0 + b.h * (s * xi * xi + b.d0 * th) / den;
    float omx = 1.f - xi;
    float q = b.d1 * xi * xi + 2.f * s * th + b.d0 * omx * omx;
    ld = logf(s * s * q) - 2.f * logf(den);
}

__device__ __forceinline__ void rqs_inverse_in_bin(float y, const RqsBin& b, float& x, float& ld) {
    float s = b.h / b.w;
    float dy = y - b.y0;
    float sum = b.d0 + b.d1 - 2.f * s;
    float qa = b.h * (s - b.d0) + dy * sum;
    float qb = b.h * b.d0 - dy * sum;
    float qc = -s * dy;
    float disc = fmaxf(qb * qb - 4.f * qa * qc, 0.f);
    float root = 2.f * qc / (-qb - sqrtf(disc));
    x = root * b.w + b.x0;
    float yy, l;
    rqs_forward_in_bin(x, b, yy, l);
    ld = -l;
}

// Adjoints of the forward map in its bin: (gx, g_xshift, g_xknot_b1, g_yshift, g_yknot_b1, g_d0,
// g_d1), where a shift moves both knots of the bin together (x_b and x_{b+1}, or y_b and y_{b+1})
// and g_xknot_b1 / g_yknot_b1 move the right knot alone; the left knot's own adjoint is the
// shift minus the right knot's.
__device__ __forceinline__ void rqs_forward_adjoint(float x, const RqsBin& b, float gy, float gl, float* g) {
    float w = b.w, h = b.h, d0 = b.d0, d1 = b.d1;
    float xi = (x - b.x0) / w;
    float s = h / w;
    float omx = 1.f - xi;
    float th = xi * omx;
    float den = s + (d0 + d1 - 2.f * s) * th;
    float num = h * (s * xi * xi + d0 * th);
    float q = d1 * xi * xi + 2.f * s * th + d0 * omx * omx;
    float g_num = gy / den;
    float g_den = -gy * num / (den * den) - 2.f * gl / den;
    float g_q = gl / q;
    float g_s = 2.f * gl / s;
    float g_d1 = g_q * xi * xi;
    g_s += 2.f * th * g_q;
    float g_th = 2.f * s * g_q;
    float g_d0 = g_q * omx * omx;
    float g_xi = g_q * (2.f * d1 * xi - 2.f * d0 * omx);
    g_s += g_den * (1.f - 2.f * th);
    g_d0 += g_den * th;
    g_d1 += g_den * th;
    g_th += g_den * (d0 + d1 - 2.f * s);
    float g_h = g_num * (s * xi * xi + d0 * th);
    g_s += g_num * h * xi * xi;
    g_xi += g_num * h * 2.f * s * xi;
    g_d0 += g_num * h * th;
    g_th += g_num * h * d0;
    g_xi += g_th * (1.f - 2.f * xi);
    g_h += g_s / w;
    float g_w = -g_s * s / w;
    float g_x = g_xi / w;
    float g_x0 = -g_xi / w;
    g_w += -g_xi * xi / w;
    g[0] = g_x; g[1] = g_x0; g[2] = g_w; g[3] = gy; g[4] = g_h; g[5] = g_d0; g[6] = g_d1;
}

// Bin adjoints (shift of bin b, its right knot alone) -> gradient of one softmax row of logits
// (writes all K). Interior knot j = 2B·Σ_{i<j} (m + (1 − Km)·p_i) − B, so logit i < b moves both
// knots of the bin (the shift; only the left one when the right knot is the fixed end B), logit
// b moves the right knot only, later logits neither: piecewise-constant knot weights G, then
// the softmax Jacobian ∂L/∂u_j = p_j (G_j − Σ_i p_i G_i).
template <int KT>
__device__ __forceinline__ void rqs_knots_to_logits(const float* __restrict__ u, int b, float g_shift, float g_right,
                                                    int K, float B, float min, float* __restrict__ grad) {
    const int k = KT > 0 ? KT : K;
    float m, s;
    rqs_softmax_stats<KT>(u, k, m, s);
    const float c = 2.f * B * (1.f - min * (float)k);
    const bool right_interior = b + 1 < k;
    const float below = (right_interior ? g_shift : g_shift - g_right) * c;
    const float at = right_interior ? g_right * c : 0.f;
    float dot = 0.f;
#pragma unroll
    for (int j = 0; j < k; ++j) dot += expf(u[j] - m) / s * (j < b ? below : (j == b ? at : 0.f));
#pragma unroll
    for (int j = 0; j < k; ++j) grad[j] = expf(u[j] - m) / s * ((j < b ? below : (j == b ? at : 0.f)) - dot);
}

template <int KT>
__device__ void rqs_forward_body(unsigned int n, int K, int inverse, float B, float min_w, float min_h, float min_d,
                                 const float* __restrict__ x, const float* __restrict__ uw,
                                 const float* __restrict__ uh, const float* __restrict__ ud, float* __restrict__ out) {
    const int k = KT > 0 ? KT : K;
    JG_GRID_STRIDE(i, n) {
        float v = x[i];
        bool inside = v >= -B && v <= B;
        float cv = fminf(fmaxf(v, -B), B);
        RqsBin bin = rqs_locate<KT>(cv, uw + (size_t)i * k, uh + (size_t)i * k, ud + (size_t)i * (k - 1), k, B, min_w,
                                    min_h, min_d, inverse);
        float y, ld;
        if (inverse) rqs_inverse_in_bin(cv, bin, y, ld);
        else rqs_forward_in_bin(cv, bin, y, ld);
        out[i] = inside ? y : v;
        out[n + i] = inside ? ld : 0.f;
    }
}

template <int KT>
__device__ void rqs_backward_body(unsigned int n, int K, int inverse, float B, float min_w, float min_h, float min_d,
                                  const float* __restrict__ x, const float* __restrict__ uw,
                                  const float* __restrict__ uh, const float* __restrict__ ud,
                                  const float* __restrict__ g, float* __restrict__ gx, float* __restrict__ guw,
                                  float* __restrict__ guh, float* __restrict__ gud) {
    const int k = KT > 0 ? KT : K;
    JG_GRID_STRIDE(i, n) {
        const float* w = uw + (size_t)i * k;
        const float* h = uh + (size_t)i * k;
        const float* d = ud + (size_t)i * (k - 1);
        float* gw = guw + (size_t)i * k;
        float* gh = guh + (size_t)i * k;
        float* gd = gud + (size_t)i * (k - 1);
        float v = x[i], gy = g[i], gl = g[n + i];
#pragma unroll
        for (int j = 0; j < k - 1; ++j) gd[j] = 0.f;
        if (!(v >= -B && v <= B)) {
#pragma unroll
            for (int j = 0; j < k; ++j) { gw[j] = 0.f; gh[j] = 0.f; }
            gx[i] = gy;
            continue;
        }
        RqsBin bin = rqs_locate<KT>(v, w, h, d, k, B, min_w, min_h, min_d, inverse);
        float adj[7];
        float gval;
        if (inverse) {
            float xs, ldi, yy, ell;
            rqs_inverse_in_bin(v, bin, xs, ldi);
            rqs_forward_in_bin(xs, bin, yy, ell);
            rqs_forward_adjoint(xs, bin, 0.f, 1.f, adj);
            float alpha = (gy - gl * adj[0]) / expf(ell);
            rqs_forward_adjoint(xs, bin, -alpha, -gl, adj);
            // Shifting the bin's x-knots shifts the output x* with them, so the x-shift adjoint
            // is exactly gy; the adjoint pass forms it as the difference of two terms ~1/W
            // apart (cancellation of 1e-3 relative and more in narrow bins).
            adj[1] = gy;
            gval = alpha;
        } else {
            rqs_forward_adjoint(v, bin, gy, gl, adj);
            gval = adj[0];
        }
        rqs_knots_to_logits<KT>(w, bin.index, adj[1], adj[2], k, B, min_w, gw);
        rqs_knots_to_logits<KT>(h, bin.index, adj[3], adj[4], k, B, min_h, gh);
        if (bin.index >= 1) gd[bin.index - 1] += adj[5] * rqs_sigmoid(d[bin.index - 1]);
        if (bin.index + 1 < k) gd[bin.index] += adj[6] * rqs_sigmoid(d[bin.index]);
        gx[i] = gval;
    }
}

#define RQS_DISPATCH(BODY, ...)                                   \
    switch (K) {                                                  \
    case 4: BODY<4>(__VA_ARGS__); break;                          \
    case 5: BODY<5>(__VA_ARGS__); break;                          \
    case 6: BODY<6>(__VA_ARGS__); break;                          \
    case 8: BODY<8>(__VA_ARGS__); break;                          \
    case 10: BODY<10>(__VA_ARGS__); break;                        \
    case 16: BODY<16>(__VA_ARGS__); break;                        \
    default: BODY<0>(__VA_ARGS__); break;                         \
    }

// out = [y (n); logdet (n)]
extern "C" __global__ void rqs_forward(unsigned int n, unsigned int K, int inverse, float B, float min_w, float min_h,
                                       float min_d, const float* __restrict__ x, const float* __restrict__ uw,
                                       const float* __restrict__ uh, const float* __restrict__ ud,
                                       float* __restrict__ out) {
    RQS_DISPATCH(rqs_forward_body, n, (int)K, inverse, B, min_w, min_h, min_d, x, uw, uh, ud, out)
}

// g = [dL/dy (n); dL/dlogdet (n)] -> gx (n), guw (n*K), guh (n*K), gud (n*(K-1))
extern "C" __global__ void rqs_backward(unsigned int n, unsigned int K, int inverse, float B, float min_w, float min_h,
                                        float min_d, const float* __restrict__ x, const float* __restrict__ uw,
                                        const float* __restrict__ uh, const float* __restrict__ ud,
                                        const float* __restrict__ g, float* __restrict__ gx, float* __restrict__ guw,
                                        float* __restrict__ guh, float* __restrict__ gud) {
    RQS_DISPATCH(rqs_backward_body, n, (int)K, inverse, B, min_w, min_h, min_d, x, uw, uh, ud, g, gx, guw, guh, gud)
}
