// Data movement: one strided copy covers permute, broadcast, narrow, pad and concat.
// Operand 0 of the layout addresses the source, operand 1 the destination.
#include "common.cuh"

extern "C" __global__ void strided_copy(Strided3 l, unsigned int n, const float* __restrict__ src,
                                        unsigned int src_offset, float* __restrict__ dst,
                                        unsigned int dst_offset) {
    JG_GRID_STRIDE(i, n) { dst[dst_offset + jg_offset(l, 1, i)] = src[src_offset + jg_offset(l, 0, i)]; }
}
