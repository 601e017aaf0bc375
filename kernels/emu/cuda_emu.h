// The CUDA device language for g++: what kernels/*.cu need in order to compile unchanged as
// C++17 and run on the CUDA-on-CPU executor (see README.md next to this file).
//
// Every CUDA thread is a fiber. The built-ins (threadIdx, blockIdx, blockDim, gridDim) read the
// running fiber's state; __syncthreads, warp shuffles, votes and __syncwarp hand control to the
// block scheduler (executor.cpp), which checks them strictly: every intrinsic records the call
// site (file, line, function) so that divergent barriers and mismatched warp operations are
// reported with their source location.
//
// Included first by each generated kernel translation unit; nothing here is CUDA's own code.
#pragma once

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmath>
#include <type_traits>

// ---- declaration specifiers -------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __restrict__ __restrict
#define __align__(n) alignas(n)
#define __launch_bounds__(...)  // the build step records the thread limit; launches beyond it fail
#define __constant__ static const

// ---- vector types of the built-ins ------------------------------------------------------
struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
};

namespace jg_emu {

/// Where an intrinsic was called from (source file, line, enclosing function).
struct Loc {
    const char* file;
    unsigned line;
    const char* func;
};
#define JG_EMU_HERE                                                        \
    const char *jg_file = __builtin_FILE(), unsigned jg_line = __builtin_LINE(), \
               const char *jg_func = __builtin_FUNCTION()
#define JG_EMU_LOC ::jg_emu::Loc{jg_file, jg_line, jg_func}

/// The block a fiber belongs to, as the built-ins see it.
struct BlockView {
    uint3 block_idx;
    dim3 block_dim;
    dim3 grid_dim;
};

/// The running fiber, as the built-ins see it (first members of the executor's thread state).
struct ThreadView {
    uint3 thread_idx;
    const BlockView* block;
};

/// The fiber running on this OS thread (set by the scheduler at every switch).
extern thread_local ThreadView* current __attribute__((tls_model("initial-exec")));

enum class WarpOp : int { ShflIdx, ShflUp, ShflDown, ShflXor, All, Any, Ballot, SyncWarp };
enum class BarrierOp : int { Plain, Count, And, Or };

// Executor entry points (executor.cpp). Each suspends the calling fiber until the block's
// scheduler releases it, and never returns if the operation is an error (the launch aborts).
int barrier(BarrierOp op, int predicate, Loc loc);
uint64_t warp_op(WarpOp op, unsigned mask, uint64_t value, int arg, int width, Loc loc);
void* dynamic_shared(size_t align, Loc loc);
void* static_shared(const void* key, size_t size, size_t align, const char* name, Loc loc);
void check_atomic(const void* addr, size_t bytes, Loc loc);
[[noreturn]] void trap(const char* why, Loc loc);

template <class T>
inline uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value,
                  "warp shuffles move values of at most 8 bytes");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof(T));
    return b;
}
template <class T>
inline T from_bits(uint64_t b) {
    T v;
    memcpy(&v, &b, sizeof(T));
    return v;
}

/// `__shared__ T name[...]` (rewritten by the build step into a call of this): the block's
/// instance of the static shared array, laid out on first use, NaN bytes before any write.
template <class A>
inline A& shared_array(const void* key, const char* name, Loc loc) {
    return *static_cast<A*>(static_shared(key, sizeof(A), alignof(A), name, loc));
}

}  // namespace jg_emu

#define threadIdx (static_cast<const uint3&>(::jg_emu::current->thread_idx))
#define blockIdx (static_cast<const uint3&>(::jg_emu::current->block->block_idx))
#define blockDim (static_cast<const dim3&>(::jg_emu::current->block->block_dim))
#define gridDim (static_cast<const dim3&>(::jg_emu::current->block->grid_dim))
#define warpSize 32

// `extern __shared__ T name[];` is rewritten by the build step into
// `T* name = JG_EMU_DYNAMIC_SHARED(T);`
#define JG_EMU_DYNAMIC_SHARED(T) \
    static_cast<T*>(::jg_emu::dynamic_shared(alignof(T), ::jg_emu::Loc{__FILE__, __LINE__, __func__}))
// `__shared__ T name DIMS;` is rewritten into `JG_EMU_SHARED(T, name, DIMS);`
#define JG_EMU_SHARED(T, name, dims)                                                          \
    static const char jg_emu_key_##name = 0;                                                  \
    T(&name) dims = ::jg_emu::shared_array<T dims>(&jg_emu_key_##name, #name,                 \
                                                   ::jg_emu::Loc{__FILE__, __LINE__, __func__})

// ---- barriers ---------------------------------------------------------------------------
inline void __syncthreads(JG_EMU_HERE) { ::jg_emu::barrier(::jg_emu::BarrierOp::Plain, 0, JG_EMU_LOC); }
inline int __syncthreads_count(int p, JG_EMU_HERE) {
    return ::jg_emu::barrier(::jg_emu::BarrierOp::Count, p != 0, JG_EMU_LOC);
}
inline int __syncthreads_and(int p, JG_EMU_HERE) {
    return ::jg_emu::barrier(::jg_emu::BarrierOp::And, p != 0, JG_EMU_LOC);
}
inline int __syncthreads_or(int p, JG_EMU_HERE) {
    return ::jg_emu::barrier(::jg_emu::BarrierOp::Or, p != 0, JG_EMU_LOC);
}

// ---- warp operations (warp size 32, exact lockstep exchange) ------------------------------
inline void __syncwarp(unsigned mask = 0xffffffffu, JG_EMU_HERE) {
    ::jg_emu::warp_op(::jg_emu::WarpOp::SyncWarp, mask, 0, 0, 32, JG_EMU_LOC);
}
template <class T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = warpSize, JG_EMU_HERE) {
    return ::jg_emu::from_bits<T>(
        ::jg_emu::warp_op(::jg_emu::WarpOp::ShflIdx, mask, ::jg_emu::to_bits(v), src, width, JG_EMU_LOC));
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = warpSize, JG_EMU_HERE) {
    return ::jg_emu::from_bits<T>(::jg_emu::warp_op(::jg_emu::WarpOp::ShflUp, mask, ::jg_emu::to_bits(v),
                                                    (int)delta, width, JG_EMU_LOC));
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = warpSize, JG_EMU_HERE) {
    return ::jg_emu::from_bits<T>(::jg_emu::warp_op(::jg_emu::WarpOp::ShflDown, mask, ::jg_emu::to_bits(v),
                                                    (int)delta, width, JG_EMU_LOC));
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = warpSize, JG_EMU_HERE) {
    return ::jg_emu::from_bits<T>(::jg_emu::warp_op(::jg_emu::WarpOp::ShflXor, mask, ::jg_emu::to_bits(v),
                                                    lane_mask, width, JG_EMU_LOC));
}
inline int __all_sync(unsigned mask, int p, JG_EMU_HERE) {
    return (int)::jg_emu::warp_op(::jg_emu::WarpOp::All, mask, p != 0, 0, 32, JG_EMU_LOC);
}
inline int __any_sync(unsigned mask, int p, JG_EMU_HERE) {
    return (int)::jg_emu::warp_op(::jg_emu::WarpOp::Any, mask, p != 0, 0, 32, JG_EMU_LOC);
}
inline unsigned __ballot_sync(unsigned mask, int p, JG_EMU_HERE) {
    return (unsigned)::jg_emu::warp_op(::jg_emu::WarpOp::Ballot, mask, p != 0, 0, 32, JG_EMU_LOC);
}

// ---- atomics (checked address; fibers of one block never run at the same time) ------------
template <class T>
inline T jg_emu_atomic_rmw(T* addr, T v, T (*f)(T, T), const ::jg_emu::Loc& loc) {
    ::jg_emu::check_atomic(addr, sizeof(T), loc);
    T old = *addr;
    *addr = f(old, v);
    return old;
}
#define JG_EMU_ATOMIC(name, T, expr)                                                        \
    inline T name(T* addr, T v, JG_EMU_HERE) {                                               \
        return jg_emu_atomic_rmw<T>(addr, v, [](T a, T b) -> T { return expr; }, JG_EMU_LOC); \
    }
JG_EMU_ATOMIC(atomicAdd, int, a + b)
JG_EMU_ATOMIC(atomicAdd, unsigned int, a + b)
JG_EMU_ATOMIC(atomicAdd, unsigned long long, a + b)
JG_EMU_ATOMIC(atomicAdd, float, a + b)
JG_EMU_ATOMIC(atomicAdd, double, a + b)
JG_EMU_ATOMIC(atomicSub, int, a - b)
JG_EMU_ATOMIC(atomicSub, unsigned int, a - b)
JG_EMU_ATOMIC(atomicMax, int, a > b ? a : b)
JG_EMU_ATOMIC(atomicMax, unsigned int, a > b ? a : b)
JG_EMU_ATOMIC(atomicMax, unsigned long long, a > b ? a : b)
JG_EMU_ATOMIC(atomicMin, int, a < b ? a : b)
JG_EMU_ATOMIC(atomicMin, unsigned int, a < b ? a : b)
JG_EMU_ATOMIC(atomicMin, unsigned long long, a < b ? a : b)
JG_EMU_ATOMIC(atomicExch, int, ((void)a, b))
JG_EMU_ATOMIC(atomicExch, unsigned int, ((void)a, b))
JG_EMU_ATOMIC(atomicExch, float, ((void)a, b))
JG_EMU_ATOMIC(atomicOr, unsigned int, a | b)
JG_EMU_ATOMIC(atomicAnd, unsigned int, a & b)
JG_EMU_ATOMIC(atomicXor, unsigned int, a ^ b)
#undef JG_EMU_ATOMIC
template <class T>
inline T jg_emu_atomic_cas(T* addr, T compare, T v, const ::jg_emu::Loc& loc) {
    ::jg_emu::check_atomic(addr, sizeof(T), loc);
    T old = *addr;
    if (old == compare) *addr = v;
    return old;
}
inline int atomicCAS(int* a, int c, int v, JG_EMU_HERE) { return jg_emu_atomic_cas(a, c, v, JG_EMU_LOC); }
inline unsigned int atomicCAS(unsigned int* a, unsigned int c, unsigned int v, JG_EMU_HERE) {
    return jg_emu_atomic_cas(a, c, v, JG_EMU_LOC);
}
inline unsigned long long atomicCAS(unsigned long long* a, unsigned long long c, unsigned long long v, JG_EMU_HERE) {
    return jg_emu_atomic_cas(a, c, v, JG_EMU_LOC);
}
inline void __threadfence() {}
inline void __threadfence_block() {}
[[noreturn]] inline void __trap(JG_EMU_HERE) { ::jg_emu::trap("__trap()", JG_EMU_LOC); }

// ---- bit reinterpretation and integer intrinsics -----------------------------------------
inline float __int_as_float(int i) { return ::jg_emu::from_bits<float>((uint32_t)i); }
inline int __float_as_int(float f) { return (int)(uint32_t)::jg_emu::to_bits(f); }
inline float __uint_as_float(unsigned u) { return ::jg_emu::from_bits<float>(u); }
inline unsigned __float_as_uint(float f) { return (uint32_t)::jg_emu::to_bits(f); }
inline double __longlong_as_double(long long i) { return ::jg_emu::from_bits<double>((uint64_t)i); }
inline long long __double_as_longlong(double d) { return (long long)::jg_emu::to_bits(d); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline unsigned __brev(unsigned x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    x = ((x >> 8) & 0x00ff00ffu) | ((x & 0x00ff00ffu) << 8);
    return (x >> 16) | (x << 16);
}

// ---- math beyond <cmath> (the "fast" intrinsics use the accurate libm functions) ----------
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __saturatef(float x) { return x != x ? 0.f : (x < 0.f ? 0.f : (x > 1.f ? 1.f : x)); }
inline float rsqrtf(float x) { return 1.f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
// cos(πx) and sin(πx): reduce x modulo 2 exactly first, as CUDA's cospi/sinpi do.
inline double cospi(double x) { return cos(M_PI * fmod(x, 2.0)); }
inline double sinpi(double x) { return sin(M_PI * fmod(x, 2.0)); }
inline float cospif(float x) { return (float)cospi((double)x); }
inline float sinpif(float x) { return (float)sinpi((double)x); }

// CUDA's min/max for mixed integer arguments follow the usual arithmetic conversions
// (min(int, unsigned) compares as unsigned); floating arguments use fmin/fmax semantics.
template <class A, class B>
inline typename std::common_type<A, B>::type min(A a, B b) {
    using C = typename std::common_type<A, B>::type;
    if constexpr (std::is_floating_point<C>::value) return std::fmin((C)a, (C)b);
    else return (C)a < (C)b ? (C)a : (C)b;
}
template <class A, class B>
inline typename std::common_type<A, B>::type max(A a, B b) {
    using C = typename std::common_type<A, B>::type;
    if constexpr (std::is_floating_point<C>::value) return std::fmax((C)a, (C)b);
    else return (C)a > (C)b ? (C)a : (C)b;
}
