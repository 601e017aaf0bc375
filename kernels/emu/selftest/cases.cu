// Kernels for the executor's self-test (selftest.cpp): a few correct ones whose results are
// known exactly, and one per bug the executor must diagnose. Not part of jetgen.

// ---- correct kernels ----------------------------------------------------------------------

// Every warp primitive and barrier flavour on known values; out has 12 slots per thread.
extern "C" __global__ void warp_semantics(unsigned int* out) {
    unsigned t = threadIdx.x, lane = t & 31u;
    unsigned* o = out + 12 * t;
    o[0] = __shfl_sync(0xffffffffu, t, 5);          // lane 5 of this warp
    o[1] = __shfl_up_sync(0xffffffffu, t, 3);       // t - 3, own value for lanes 0..2
    o[2] = __shfl_down_sync(0xffffffffu, t, 3);     // t + 3, own value for lanes 29..31
    o[3] = __shfl_xor_sync(0xffffffffu, t, 1);      // neighbour
    o[4] = __shfl_xor_sync(0xffffffffu, t, 4, 8);   // within segments of 8
    o[5] = __ballot_sync(0xffffffffu, lane % 3 == 0);
    o[6] = __any_sync(0xffffffffu, lane == 7);
    o[7] = __all_sync(0xffffffffu, lane < 31);
    unsigned half = lane < 16 ? 0x0000ffffu : 0xffff0000u;
    o[8] = __shfl_sync(half, t, 0, 16);             // two independent half-warp groups
    __syncwarp();
    o[9] = (unsigned)__syncthreads_count(t % 4 == 0);
    o[10] = (unsigned)__syncthreads_and(t < 1000);
    o[11] = (unsigned)__syncthreads_or(t == 17);
}

// Block sum through shared memory and a tree, with a grid-stride load and dynamic shared memory.
extern "C" __global__ void block_sum(unsigned int n, const float* __restrict__ x, float* __restrict__ out) {
    extern __shared__ float partial[];
    float acc = 0.f;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) acc += x[i];
    partial[threadIdx.x] = acc;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = partial[0];
}

// A static shared array read before anything was written to it: every block sees NaN bytes.
extern "C" __global__ void shared_starts_nan(float* out) {
    __shared__ float tile[64];
    out[blockIdx.x * blockDim.x + threadIdx.x] = tile[threadIdx.x];
    __syncthreads();
    tile[threadIdx.x] = 1.f;  // must not leak into the next block
}

extern "C" __global__ void atomic_count(unsigned int n, unsigned int* count) {
    if (blockIdx.x * blockDim.x + threadIdx.x < n) atomicAdd(count, 1u);
}

// ---- bugs the executor must report --------------------------------------------------------

extern "C" __global__ void divergent_barrier(float* out) {
    if (threadIdx.x < 16) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = 1.f;
}

extern "C" __global__ void barrier_after_exit(float* out) {
    if (threadIdx.x == 5) return;
    __syncthreads();
    out[threadIdx.x] = 1.f;
}

extern "C" __global__ void shuffle_names_exited_lane(float* out) {
    if (threadIdx.x == 3) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.f, 1);
}

extern "C" __global__ void mismatched_shuffles(float* out) {
    float v = (float)threadIdx.x;
    if (threadIdx.x & 1) v = __shfl_xor_sync(0xffffffffu, v, 1);
    else v = __shfl_xor_sync(0xffffffffu, v, 2);
    out[threadIdx.x] = v;
}

extern "C" __global__ void barrier_warp_deadlock(float* out) {
    float v = 1.f;
    if (threadIdx.x < 16) __syncthreads();
    else v = __shfl_xor_sync(0xffffffffu, v, 1);
    out[threadIdx.x] = v;
}

// blockDim 40: the full mask names lanes 8..31 of warp 1, which do not exist.
extern "C" __global__ void mask_beyond_block(float* out) {
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.f, 1);
}

// Thread t reads its neighbour's slot without a barrier: forward and reverse schedules differ.
extern "C" __global__ void shared_race(float* out) {
    __shared__ float tile[32];
    tile[threadIdx.x] = (float)threadIdx.x;
    out[threadIdx.x] = tile[(threadIdx.x + 1) % 32];
}

// Blocks read what other blocks write: the block order changes the result.
extern "C" __global__ void inter_block_race(float* data) {
    if (threadIdx.x == 0) data[blockIdx.x] = data[(blockIdx.x + 1) % gridDim.x] + 1.f;
}

extern "C" __global__ void write_past_end(unsigned int n, float* out) {
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) out[i] = 1.f;  // one too many
}

extern "C" __global__ void read_freed(const float* x, float* out) { out[threadIdx.x] = x[threadIdx.x]; }

extern "C" __global__ void shared_past_end(float* out) {
    __shared__ float tile[32];
    tile[threadIdx.x] = 1.f;
    __syncthreads();
    out[threadIdx.x] = tile[threadIdx.x + 1];  // thread 31 reads tile[32]
}

__device__ __noinline__ float recurse(int depth, volatile float* sink) {
    volatile float pad[256];
    pad[depth % 256] = (float)depth;
    *sink = pad[(depth * 7) % 256];
    return depth > 0 ? recurse(depth - 1, sink) + pad[3] : 0.f;
}

extern "C" __global__ void stack_overflow(float* out) {
    out[threadIdx.x] = recurse(1 << 20, out + threadIdx.x);
}

extern "C" __global__ void atomic_on_host_memory(unsigned int* host) { atomicAdd(host, 1u); }

extern "C" __global__ void traps(float* out) {
    if (threadIdx.x == 2) __trap();
    out[threadIdx.x] = 0.f;
}

extern "C" __global__ void __launch_bounds__(64) bounded(float* out) { out[threadIdx.x] = 1.f; }
