// Fiber stacks and context switches (see fiber.h).
#include "fiber.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define JG_EMU_ASAN 1
#else
#define JG_EMU_ASAN 0
#endif

#if defined(__x86_64__)
extern "C" void jg_emu_switch(void** save_sp, void* load_sp);
extern "C" void jg_emu_fiber_entry();
// Callee-saved registers, MXCSR and the x87 control word are saved on the old stack; the new
// stack pointer is loaded and the same layout is popped from it. A new fiber's stack is laid
// out by fiber_make so that the final `ret` lands in jg_emu_fiber_entry with r12 = argument
// and r13 = function.
asm(R"(
    .text
    .p2align 4
    .globl jg_emu_switch
    .hidden jg_emu_switch
    .type jg_emu_switch, @function
jg_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size jg_emu_switch, .-jg_emu_switch

    .p2align 4
    .globl jg_emu_fiber_entry
    .hidden jg_emu_fiber_entry
    .type jg_emu_fiber_entry, @function
jg_emu_fiber_entry:
    movq %r12, %rdi
    callq *%r13
    ud2
    .size jg_emu_fiber_entry, .-jg_emu_fiber_entry
)");
#endif

namespace jg_emu {

static size_t page_size() {
    static size_t p = (size_t)sysconf(_SC_PAGESIZE);
    return p;
}

bool FiberStack::allocate(size_t bytes) {
    size_t page = page_size();
    size = (bytes + page - 1) / page * page;
    mapping_size = size + page;
    mapping = mmap(nullptr, mapping_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mapping == MAP_FAILED) {
        mapping = nullptr;
        return false;
    }
    if (mprotect(mapping, page, PROT_NONE) != 0) {
        munmap(mapping, mapping_size);
        mapping = nullptr;
        return false;
    }
    base = (char*)mapping + page;
    return true;
}

void FiberStack::release() {
    if (mapping) munmap(mapping, mapping_size);
    mapping = nullptr;
    base = nullptr;
}

bool FiberStack::in_guard(const void* addr) const {
    return mapping && (const char*)addr >= (const char*)mapping && (const char*)addr < (const char*)base;
}

bool fibers_use_ucontext() {
#if defined(__x86_64__)
    static const bool uc = [] {
        const char* v = getenv("JETGEN_EMU_FIBERS");
        return v && strcmp(v, "ucontext") == 0;
    }();
    return uc;
#else
    return true;
#endif
}

namespace {
struct Start {
    void (*fn)(void*);
    void* arg;
};
// makecontext passes int arguments only: the pointer travels in two halves.
void ucontext_entry(unsigned lo, unsigned hi) {
    Start* s = (Start*)(((uintptr_t)hi << 32) | (uintptr_t)lo);
    s->fn(s->arg);
    abort();  // fn never returns
}
}  // namespace

void fiber_make(FiberContext* ctx, FiberStack* stack, void (*fn)(void*), void* arg) {
    ctx->stack_bottom = stack->base;
    ctx->stack_size = stack->size;
    ctx->asan_fake_stack = nullptr;
#if JG_EMU_ASAN
    // Stacks are reused, and a fiber never returns through its frames (it switches away at
    // its end, or is abandoned when a launch fails): clear their redzones' stale poison.
    ASAN_UNPOISON_MEMORY_REGION(stack->base, stack->size);
#endif
    char* top = (char*)stack->base + stack->size;
    if (fibers_use_ucontext()) {
        // The Start record lives at the top of the fiber's own stack.
        top -= 64;
        Start* s = (Start*)top;
        s->fn = fn;
        s->arg = arg;
        getcontext(&ctx->uc);
        ctx->uc.uc_stack.ss_sp = stack->base;
        ctx->uc.uc_stack.ss_size = (size_t)(top - (char*)stack->base);
        ctx->uc.uc_link = nullptr;
        uintptr_t p = (uintptr_t)s;
        makecontext(&ctx->uc, (void (*)())ucontext_entry, 2, (unsigned)(p & 0xffffffffu), (unsigned)(p >> 32));
        return;
    }
#if defined(__x86_64__)
    // Layout popped by jg_emu_switch, lowest address first: [mxcsr | x87 cw] r15 r14 r13 r12
    // rbx rbp, return address. After `ret` the stack pointer is `top` (16-byte aligned), as
    // a call instruction expects.
    uint64_t* sp = (uint64_t*)top - 8;
    uint32_t mxcsr;
    uint16_t fpucw;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fpucw));
    uint64_t control = (uint64_t)mxcsr | ((uint64_t)fpucw << 32);
    sp[0] = control;
    sp[1] = 0;               // r15
    sp[2] = 0;               // r14
    sp[3] = (uint64_t)fn;    // r13
    sp[4] = (uint64_t)arg;   // r12
    sp[5] = 0;               // rbx
    sp[6] = 0;               // rbp
    sp[7] = (uint64_t)&jg_emu_fiber_entry;
    ctx->sp = sp;
#endif
}

void fiber_switch(FiberContext* from, FiberContext* to, bool exiting) {
#if JG_EMU_ASAN
    __sanitizer_start_switch_fiber(exiting ? nullptr : &from->asan_fake_stack, to->stack_bottom, to->stack_size);
#else
    (void)exiting;
#endif
    if (fibers_use_ucontext()) {
        swapcontext(&from->uc, &to->uc);
    } else {
#if defined(__x86_64__)
        jg_emu_switch(&from->sp, to->sp);
#endif
    }
    fiber_arrived(from);
}

void fiber_arrived(FiberContext* self) {
#if JG_EMU_ASAN
    const void* old_bottom = nullptr;
    size_t old_size = 0;
    __sanitizer_finish_switch_fiber(self->asan_fake_stack, &old_bottom, &old_size);
    (void)old_bottom;
    (void)old_size;
#else
    (void)self;
#endif
}

}  // namespace jg_emu
