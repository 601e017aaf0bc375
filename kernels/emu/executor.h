// The CUDA-on-CPU executor: kernel registry, launches, block scheduler (see README.md).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "cuda_emu.h"

namespace jg_emu {

/// One kernel parameter as the compiled C++ signature sees it.
struct ParamSpec {
    size_t size;
    size_t align;
    bool pointer;
};

/// A kernel compiled into the executor: its `.entry` name, the family (kernels/<module>.cu)
/// it comes from, its parameters, a trampoline that calls it with the launch's parameter
/// buffers (args[i] points to parameter i, as cuLaunchKernel's kernelParams do), and its
/// `__launch_bounds__` thread limit (0: none).
struct KernelEntry {
    const char* name;
    const char* module;
    const ParamSpec* params;
    size_t num_params;
    void (*invoke)(void* const* args);
    unsigned max_threads;
};

/// Called by the static initialiser of each generated kernel translation unit.
void register_kernels(const KernelEntry* entries, size_t n);
/// The registered kernel called `name`, or null.
const KernelEntry* find_kernel(const char* name);
/// Every registered kernel.
std::vector<const KernelEntry*> all_kernels();

// ---- trampolines: unpack the parameter buffers into the kernel's argument types ----------
template <class T>
inline T load_param(void* p) {
    T v;
    memcpy(&v, p, sizeof(T));
    return v;
}
template <class... A, size_t... I>
inline void call_kernel(void (*f)(A...), void* const* args, std::index_sequence<I...>) {
    f(load_param<typename std::remove_cv<A>::type>(args[I])...);
}
template <class... A>
constexpr size_t count_params(void (*)(A...)) {
    return sizeof...(A);
}
template <class... A>
struct ParamTable {
    static constexpr ParamSpec specs[sizeof...(A) > 0 ? sizeof...(A) : 1] = {
        ParamSpec{sizeof(A), alignof(A), std::is_pointer<A>::value}...};
};
template <class... A>
constexpr const ParamSpec* param_specs(void (*)(A...)) {
    return ParamTable<A...>::specs;
}
template <auto F>
void invoke_kernel(void* const* args) {
    call_kernel(F, args, std::make_index_sequence<count_params(F)>());
}
#define JG_EMU_KERNEL(module, name, max_threads)                                                        \
    ::jg_emu::KernelEntry {                                                                             \
        #name, module, ::jg_emu::param_specs(&name), ::jg_emu::count_params(&name),                     \
            &::jg_emu::invoke_kernel<&name>, (unsigned)(max_threads)                                    \
    }

// ---- launches ---------------------------------------------------------------------------

/// The shape of a launch.
struct LaunchShape {
    dim3 grid;
    dim3 block;
    size_t dynamic_shared;
    size_t shared_limit;  // static + dynamic bytes a block may use
};

/// The outcome of a launch: 0 on success, else a CUresult code and a diagnostic naming the
/// kernel, block, thread and source location.
struct LaunchError {
    int code = 0;
    std::string message;
};

/// Run `k` to completion under every configured schedule (JETGEN_EMU_SCHEDULE), checking that
/// all schedules leave the same bytes in the memory the pointer arguments reach.
LaunchError launch(const KernelEntry* k, const LaunchShape& shape, void* const* args);

/// The schedules in force, e.g. "forward,reverse" (for messages and jetgen info).
std::string schedule_names();
/// What is wrong with the JETGEN_EMU_* settings, or empty (cuInit refuses to start otherwise).
std::string config_error();

// CUresult codes used here (the values of CUDA's driver API).
constexpr int kSuccess = 0;
constexpr int kInvalidValue = 1;
constexpr int kOutOfMemory = 2;
constexpr int kIllegalAddress = 700;
constexpr int kLaunchOutOfResources = 701;
constexpr int kAssert = 710;
constexpr int kHardwareStackError = 714;
constexpr int kLaunchFailed = 719;

}  // namespace jg_emu
