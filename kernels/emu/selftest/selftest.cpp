// Self-test of the CUDA-on-CPU executor: the exact results of the warp primitives, barriers,
// shared and dynamic shared memory and atomics, and one case per diagnostic the executor
// promises (kernels in cases.cu). Run by tests/cuda_emu.rs under both fiber switches; exits 0
// when every case behaves, else prints the failing cases and exits 1.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

#include "executor.h"
#include "memory.h"
#include "ptx.h"

using namespace jg_emu;

namespace {

// Built with AddressSanitizer (and UBSan): the deliberately out-of-bounds kernels would trip
// the sanitizers before the executor's own fault reports, which are what they test.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

int failures = 0;

void check(bool ok, const std::string& what) {
    if (!ok) {
        ++failures;
        fprintf(stderr, "FAIL: %s\n", what.c_str());
    } else {
        fprintf(stderr, "ok: %s\n", what.c_str());
    }
}

template <class T>
T* dev(size_t n) {
    return (T*)device_alloc(n * sizeof(T));
}

LaunchError run(const char* kernel, dim3 grid, dim3 block, size_t dyn, std::vector<void*> args) {
    const KernelEntry* k = find_kernel(kernel);
    if (!k) {
        fprintf(stderr, "no kernel %s\n", kernel);
        exit(2);
    }
    LaunchShape shape{grid, block, dyn, 48 * 1024};
    return launch(k, shape, args.data());
}

void expect_error(const char* kernel, dim3 grid, dim3 block, std::vector<void*> args, int code, const char* needle) {
    LaunchError e = run(kernel, grid, block, 0, args);
    bool ok = e.code == code && e.message.find(needle) != std::string::npos;
    check(ok, std::string(kernel) + " is diagnosed (" + needle + ")" + (ok ? "" : ": got code " + std::to_string(e.code) + " '" + e.message + "'"));
    if (ok) fprintf(stderr, "    %s\n", e.message.c_str());
}

void correct_kernels() {
    {
        const unsigned n = 64;
        unsigned* out = dev<unsigned>(12 * n);
        LaunchError e = run("warp_semantics", dim3{1, 1, 1}, dim3{n, 1, 1}, 0, {&out});
        check(e.code == 0, "warp_semantics runs: " + e.message);
        bool ok = true;
        for (unsigned t = 0; t < n && e.code == 0; ++t) {
            unsigned lane = t % 32, base = t - lane, *o = out + 12 * t;
            unsigned ballot = 0;
            for (unsigned l = 0; l < 32; ++l) ballot |= (l % 3 == 0) << l;
            unsigned want[12] = {base + 5,
                                 lane >= 3 ? t - 3 : t,
                                 lane + 3 < 32 ? t + 3 : t,
                                 t ^ 1,
                                 base + ((lane ^ 4) & 31),
                                 ballot,
                                 1,
                                 0,
                                 lane < 16 ? base : base + 16,
                                 n / 4,
                                 1,
                                 1};
            for (int j = 0; j < 12; ++j) {
                if (o[j] != want[j]) {
                    if (ok) fprintf(stderr, "    thread %u slot %d: %u, want %u\n", t, j, o[j], want[j]);
                    ok = false;
                }
            }
        }
        check(ok, "warp primitives and barrier reductions give CUDA's results");
    }
    {
        const unsigned n = 1000, threads = 128, blocks = 3;
        float* x = dev<float>(n);
        float* out = dev<float>(blocks);
        double want = 0;
        for (unsigned i = 0; i < n; ++i) x[i] = (float)(i % 7), want += i % 7;
        unsigned nn = n;
        LaunchError e = run("block_sum", dim3{blocks, 1, 1}, dim3{threads, 1, 1}, threads * sizeof(float), {&nn, &x, &out});
        check(e.code == 0, "block_sum runs: " + e.message);
        check(e.code == 0 && (double)out[0] + out[1] + out[2] == want, "block_sum adds up");
    }
    {
        float* out = dev<float>(2 * 64);
        LaunchError e = run("shared_starts_nan", dim3{2, 1, 1}, dim3{64, 1, 1}, 0, {&out});
        bool all_nan = e.code == 0;
        for (int i = 0; i < 128; ++i) all_nan = all_nan && isnan(out[i]);
        check(all_nan, "shared memory reads NaN before any write, in every block");
    }
    {
        unsigned* count = dev<unsigned>(1);
        *count = 0;
        unsigned n = 1000;
        LaunchError e = run("atomic_count", dim3{4, 1, 1}, dim3{256, 1, 1}, 0, {&n, &count});
        check(e.code == 0 && *count == 1000, "atomicAdd counts exactly");
    }
}

void diagnostics() {
    float* out = dev<float>(64);
    expect_error("divergent_barrier", dim3{1, 1, 1}, dim3{64, 1, 1}, {&out}, kLaunchFailed, "divergent barrier");
    expect_error("barrier_after_exit", dim3{1, 1, 1}, dim3{64, 1, 1}, {&out}, kLaunchFailed, "reached after thread (5,0,0) exited");
    expect_error("shuffle_names_exited_lane", dim3{1, 1, 1}, dim3{32, 1, 1}, {&out}, kLaunchFailed, "exited");
    expect_error("mismatched_shuffles", dim3{1, 1, 1}, dim3{32, 1, 1}, {&out}, kLaunchFailed, "mismatched warp operations");
    expect_error("barrier_warp_deadlock", dim3{1, 1, 1}, dim3{32, 1, 1}, {&out}, kLaunchFailed, "deadlock");
    expect_error("mask_beyond_block", dim3{1, 1, 1}, dim3{40, 1, 1}, {&out}, kLaunchFailed, "has only 8 threads");
    expect_error("shared_race", dim3{1, 1, 1}, dim3{32, 1, 1}, {&out}, kLaunchFailed, "depends on the schedule");
    {
        float* data = dev<float>(8);
        for (int i = 0; i < 8; ++i) data[i] = 0.f;
        expect_error("inter_block_race", dim3{8, 1, 1}, dim3{32, 1, 1}, {&data}, kLaunchFailed, "depends on the schedule");
    }
    if (kSanitized) {
        fprintf(stderr, "skipped under the sanitizers: out-of-bounds, use-after-free and stack-overflow reports\n");
    } else {
        {
            unsigned n = 37;
            float* small = dev<float>(n);
            expect_error("write_past_end", dim3{1, 1, 1}, dim3{64, 1, 1}, {&n, &small}, kIllegalAddress, "past its end");
        }
        {
            float* x = dev<float>(32);
            device_free((uintptr_t)x);
            expect_error("read_freed", dim3{1, 1, 1}, dim3{32, 1, 1}, {&x, &out}, kIllegalAddress, "use after free");
        }
        expect_error("shared_past_end", dim3{1, 1, 1}, dim3{32, 1, 1}, {&out}, kIllegalAddress, "static shared array");
        expect_error("stack_overflow", dim3{1, 1, 1}, dim3{2, 1, 1}, {&out}, kIllegalAddress, "stack overflow");
    }
    {
        static unsigned host_counter = 0;
        unsigned* host = &host_counter;
        expect_error("atomic_on_host_memory", dim3{1, 1, 1}, dim3{1, 1, 1}, {&host}, kIllegalAddress, "not device memory");
    }
    expect_error("traps", dim3{1, 1, 1}, dim3{8, 1, 1}, {&out}, kAssert, "__trap()");
    check(run("bounded", dim3{1, 1, 1}, dim3{64, 1, 1}, 0, {&out}).code == 0, "a launch within __launch_bounds__ runs");
    expect_error("bounded", dim3{1, 1, 1}, dim3{65, 1, 1}, {&out}, kLaunchOutOfResources, "exceeds its __launch_bounds__ of 64");
    // The executor is usable again after every failure: a correct kernel still runs.
    float* x = dev<float>(10);
    float* sum = dev<float>(1);
    for (int i = 0; i < 10; ++i) x[i] = 1.f;
    unsigned n = 10;
    LaunchError e = run("block_sum", dim3{1, 1, 1}, dim3{32, 1, 1}, 32 * sizeof(float), {&n, &x, &sum});
    check(e.code == 0 && *sum == 10.f, "a correct kernel runs after the failures");
}

// The PTX forms nvcc and NVRTC write for parameters: scalars, by-value structs, and pointers
// with a pointee alignment (which is not the parameter's), plus the ISA version and target.
void ptx_parsing() {
    const char* text =
        "//\n// Generated by NVIDIA NVVM Compiler\n.version 9.0\n.target sm_100\n.address_size 64\n"
        "// .globl k\n.visible .entry k(\n\t.param .u32 k_param_0,\n"
        "\t.param .align 4 .b8 k_param_1[132],\n\t.param .u64 .ptr .align 1 k_param_2,\n"
        "\t.param .u64 .ptr .global .align 16 k_param_3,\n\t.param .f64 k_param_4\n)\n{\n\tret;\n}\n"
        ".visible .entry no_params()\n{\n\tret;\n}\n";
    PtxModule m;
    std::string err;
    bool ok = parse_ptx(text, &m, &err);
    ok = ok && m.version_major == 9 && m.version_minor == 0 && m.target == "sm_100" && m.entries.size() == 2;
    if (ok) {
        const std::vector<PtxParam>& p = m.entries[0].params;
        size_t want_size[] = {4, 132, 8, 8, 8}, want_align[] = {4, 4, 8, 8, 8};
        ok = m.entries[0].name == "k" && p.size() == 5 && m.entries[1].name == "no_params" && m.entries[1].params.empty();
        for (size_t i = 0; ok && i < 5; ++i) ok = p[i].size == want_size[i] && p[i].align == want_align[i];
    }
    check(ok, "PTX entry and parameter layout parsing" + (err.empty() ? std::string() : ": " + err));
    PtxModule bad;
    check(!parse_ptx("\x7f" "ELF...", &bad, &err) && err.find("cubin") != std::string::npos, "a cubin is refused");
}

}  // namespace

int main() {
    // Races need two schedules to show; the other cases must agree under both.
    setenv("JETGEN_EMU_SCHEDULE", "forward,reverse", 0);
    fprintf(stderr, "cuda-emu self-test: schedules %s, fibers %s\n", schedule_names().c_str(),
            getenv("JETGEN_EMU_FIBERS") ? getenv("JETGEN_EMU_FIBERS") : "fast");
    ptx_parsing();
    correct_kernels();
    diagnostics();
    if (failures) {
        fprintf(stderr, "%d self-test case(s) failed\n", failures);
        return 1;
    }
    fprintf(stderr, "all self-test cases passed\n");
    return 0;
}
