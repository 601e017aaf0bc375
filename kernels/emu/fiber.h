// Fibers: one stack and one saved register context per CUDA thread, switched cooperatively.
//
// Contexts are created with glibc's ucontext (makecontext). Switching with swapcontext costs
// two sigprocmask system calls (≈ 0.7 µs a round trip measured on the development machine),
// so on x86-64 a 20-instruction register switch (fiber.cpp) is used instead; JETGEN_EMU_FIBERS=
// ucontext selects swapcontext everywhere. Under AddressSanitizer every switch is announced
// with __sanitizer_start/finish_switch_fiber.
#pragma once

#include <stddef.h>
#include <ucontext.h>

namespace jg_emu {

/// A fiber stack: `size` usable bytes above a PROT_NONE guard page (an overflow faults).
struct FiberStack {
    void* base = nullptr;  // lowest usable address (just above the guard page)
    size_t size = 0;
    void* mapping = nullptr;
    size_t mapping_size = 0;

    bool allocate(size_t bytes);
    void release();
    /// True when `addr` lies in this stack's guard page.
    bool in_guard(const void* addr) const;
};

/// A saved execution context.
struct FiberContext {
    void* sp = nullptr;  // fast switch: saved stack pointer
    ucontext_t uc;       // ucontext switch
    void* asan_fake_stack = nullptr;
    const void* stack_bottom = nullptr;  // for the sanitizer: this context's stack
    size_t stack_size = 0;
};

/// Whether fibers switch with swapcontext (JETGEN_EMU_FIBERS=ucontext) or the fast path.
bool fibers_use_ucontext();

/// Prepare `ctx` to run `fn(arg)` on `stack` when first switched to. `fn` must never return;
/// it ends by switching away for the last time (fiber_switch with `exiting` = true).
void fiber_make(FiberContext* ctx, FiberStack* stack, void (*fn)(void*), void* arg);

/// Save the running context into `from` and resume `to`. `exiting`: `from` will never be
/// resumed (lets the sanitizer free its fake stack).
void fiber_switch(FiberContext* from, FiberContext* to, bool exiting);

/// Called first thing on a fiber's stack, and after every return from fiber_switch on the
/// destination side (sanitizer bookkeeping; no-op otherwise).
void fiber_arrived(FiberContext* self);

}  // namespace jg_emu
