// The block scheduler: CUDA threads as fibers with strict barrier and warp semantics.
//
// A block's fibers take turns on the launching OS thread. A fiber runs until it reaches a
// barrier, a warp operation or its end, then hands control back to the scheduler, which
//   * completes a warp operation as soon as every lane its mask names has arrived at one —
//     after checking they all arrived at the same operation (same call site, same mask) and
//     that none of them has exited;
//   * releases a barrier when no fiber can run and every live thread waits at it — after
//     checking that no thread has exited and that all wait at the same call site;
//   * reports a deadlock when no fiber can run and neither of these applies.
// The order in which runnable fibers (and the blocks of the grid) are taken is the schedule:
// forward, reverse or seeded random. Several schedules can be run for every launch; they must
// leave identical bytes in every buffer the kernel can reach, which exposes shared- and
// global-memory races. Shared memory starts as 0xff bytes (NaN) in every block.
#include "executor.h"

#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <mutex>
#include <random>

#include "fiber.h"
#include "memory.h"

namespace jg_emu {

thread_local ThreadView* current __attribute__((tls_model("initial-exec"))) = nullptr;

// ---- registry ---------------------------------------------------------------------------

namespace {
std::vector<const KernelEntry*>& registry() {
    static std::vector<const KernelEntry*>* r = new std::vector<const KernelEntry*>;
    return *r;
}
}  // namespace

void register_kernels(const KernelEntry* entries, size_t n) {
    for (size_t i = 0; i < n; ++i) registry().push_back(&entries[i]);
}

const KernelEntry* find_kernel(const char* name) {
    for (const KernelEntry* k : registry())
        if (strcmp(k->name, name) == 0) return k;
    return nullptr;
}

std::vector<const KernelEntry*> all_kernels() { return registry(); }

// ---- schedules --------------------------------------------------------------------------

namespace {

struct Schedule {
    enum Kind { Forward, Reverse, Random } kind = Forward;
    uint64_t seed = 0;
    std::string name = "forward";
};

// The schedules of JETGEN_EMU_SCHEDULE; `error` names a malformed entry.
std::vector<Schedule> parse_schedules(std::string* error) {
    std::vector<Schedule> out;
    const char* env = getenv("JETGEN_EMU_SCHEDULE");
    std::string spec = env && *env ? env : "forward";
    size_t pos = 0;
    while (pos <= spec.size()) {
        size_t comma = spec.find(',', pos);
        std::string item = spec.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        pos = comma == std::string::npos ? spec.size() + 1 : comma + 1;
        if (item.empty()) continue;
        Schedule s;
        s.name = item;
        char* end = nullptr;
        if (item == "forward") {
            s.kind = Schedule::Forward;
        } else if (item == "reverse") {
            s.kind = Schedule::Reverse;
        } else if (item == "random") {
            s.kind = Schedule::Random;
            s.seed = 1;
            s.name = "random:1";
        } else if (item.rfind("random:", 0) == 0 && item.size() > 7 &&
                   (s.seed = strtoull(item.c_str() + 7, &end, 10), *end == 0)) {
            s.kind = Schedule::Random;
        } else {
            *error = "JETGEN_EMU_SCHEDULE: unknown schedule '" + item + "' (use forward, reverse, random:SEED, comma-separated)";
        }
        out.push_back(s);
    }
    if (out.empty()) out.push_back(Schedule());
    return out;
}

struct Schedules {
    std::vector<Schedule> list;
    std::string error;
};

const Schedules& schedule_config() {
    static const Schedules* s = [] {
        Schedules* c = new Schedules;
        c->list = parse_schedules(&c->error);
        return c;
    }();
    return *s;
}

const std::vector<Schedule>& schedules() { return schedule_config().list; }

// A positive integer environment variable, or `fallback` when unset; `error` when malformed.
size_t env_size(const char* name, size_t fallback, size_t minimum, std::string* error) {
    const char* v = getenv(name);
    if (!v || !*v) return fallback;
    char* end = nullptr;
    unsigned long long n = strtoull(v, &end, 10);
    if (*end != 0 || n < minimum) {
        *error = std::string(name) + "=" + v + ": expected a whole number ≥ " + std::to_string(minimum);
        return fallback;
    }
    return (size_t)n;
}

uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Order a batch of indices (given ascending) as the schedule dictates.
template <class V>
void order(V& items, const Schedule& s, std::mt19937_64& rng) {
    if (s.kind == Schedule::Reverse) std::reverse(items.begin(), items.end());
    else if (s.kind == Schedule::Random) std::shuffle(items.begin(), items.end(), rng);
}

}  // namespace

std::string config_error() {
    std::string err = schedule_config().error;
    env_size("JETGEN_EMU_STACK_KB", 64, 16, &err);
    env_size("JETGEN_EMU_MEMORY_MB", 8192, 1, &err);
    const char* fibers = getenv("JETGEN_EMU_FIBERS");
    if (fibers && *fibers && strcmp(fibers, "ucontext") != 0 && strcmp(fibers, "fast") != 0)
        err = std::string("JETGEN_EMU_FIBERS=") + fibers + ": expected ucontext or fast";
    return err;
}

std::string schedule_names() {
    std::string out;
    for (const Schedule& s : schedules()) out += (out.empty() ? "" : ",") + s.name;
    return out;
}

// ---- per-thread and per-block state ----------------------------------------------------

namespace {

enum class State { Runnable, AtBarrier, AtWarp, Exited, Failed };

struct ThreadState {
    ThreadView view;  // first: what the built-ins read
    unsigned linear = 0, warp = 0, lane = 0;
    State state = State::Runnable;
    FiberContext ctx;
    Loc loc{nullptr, 0, nullptr};
    // barrier request
    BarrierOp bop = BarrierOp::Plain;
    int predicate = 0;
    unsigned barriers_passed = 0;
    // warp request
    WarpOp wop = WarpOp::SyncWarp;
    unsigned mask = 0;
    uint64_t value = 0;
    int arg = 0;
    int width = 32;
    uint64_t result = 0;
};

struct SharedSlot {
    const void* key;
    void* ptr;
};

// Shared memory of the block running on this OS thread: slot 0 holds the dynamic shared
// memory, slots 1.. one static __shared__ array each; every slot ends at a guard page.
constexpr size_t kSlotBytes = 232 * 1024;  // ≥ the largest opt-in shared size (227 KiB on sm_90)
constexpr size_t kMaxSlots = 32;

struct Worker;

struct BlockState : BlockView {
    Worker* worker = nullptr;
    const KernelEntry* kernel = nullptr;
    void* const* args = nullptr;
    const LaunchShape* shape = nullptr;
    const Schedule* schedule = nullptr;
    unsigned nthreads = 0;
    unsigned nwarps = 0;
    std::vector<SharedSlot> slots;  // static arrays laid out so far
    size_t static_bytes = 0;
    void* dynamic = nullptr;
    bool failed = false;
    int code = 0;
    std::string message;
};

struct Worker {
    std::vector<FiberStack> stacks;
    std::vector<ThreadState> threads;
    FiberContext sched;
    char* arena = nullptr;  // kMaxSlots slots of kSlotBytes, each followed by a guard page
    size_t slot_stride = 0;
    BlockState* block = nullptr;
    ThreadState* running = nullptr;
    sigjmp_buf fault_jump;
    volatile sig_atomic_t in_kernel = 0;
    std::mt19937_64 rng;

    char* slot_end(size_t i) const { return arena + i * slot_stride + kSlotBytes; }
};

size_t stack_bytes() {
    static size_t s = [] {
        size_t kib = 64;
#if defined(__SANITIZE_ADDRESS__)
        kib = 512;  // sanitizer redzones
#endif
        std::string ignored;  // reported by config_error() at cuInit
        return env_size("JETGEN_EMU_STACK_KB", kib, 16, &ignored) * 1024;
    }();
    return s;
}

thread_local Worker* tls_worker = nullptr;

void install_fault_handler();
void* install_alt_stack();

// Frees this OS thread's worker (fiber stacks, shared arena, alternate signal stack) when the
// thread ends; test harnesses run every test on a thread of its own.
struct WorkerReaper {
    void* alt_stack = nullptr;
    ~WorkerReaper();
};
thread_local WorkerReaper reaper;

Worker* worker() {
    if (tls_worker) return tls_worker;
    Worker* w = new Worker;  // one per OS thread that launches kernels; lives for the process
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    w->slot_stride = kSlotBytes + page;
    size_t total = kMaxSlots * w->slot_stride;
    void* m = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
        fprintf(stderr, "jetgen cuda-emu: cannot map shared memory arena\n");
        abort();
    }
    w->arena = (char*)m;
    for (size_t i = 0; i < kMaxSlots; ++i) mprotect(w->slot_end(i), page, PROT_NONE);
    // The scheduler runs on this OS thread's own stack; tell the sanitizer where it is.
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        void* addr = nullptr;
        size_t size = 0;
        pthread_attr_getstack(&attr, &addr, &size);
        w->sched.stack_bottom = addr;
        w->sched.stack_size = size;
        pthread_attr_destroy(&attr);
    }
    install_fault_handler();
    reaper.alt_stack = install_alt_stack();
    tls_worker = w;
    return w;
}

constexpr size_t kAltStackBytes = 256 * 1024;

WorkerReaper::~WorkerReaper() {
    Worker* w = tls_worker;
    if (!w) return;
    tls_worker = nullptr;
    for (FiberStack& s : w->stacks) s.release();
    munmap(w->arena, kMaxSlots * w->slot_stride);
    if (alt_stack) {
        stack_t off;
        memset(&off, 0, sizeof off);
        off.ss_flags = SS_DISABLE;
        sigaltstack(&off, nullptr);
        munmap(alt_stack, kAltStackBytes);
    }
    delete w;
}

ThreadState* self() { return reinterpret_cast<ThreadState*>(current); }

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

std::string where(const Loc& l) {
    return fmt("%s:%u (%s)", l.file ? l.file : "?", l.line, l.func ? l.func : "?");
}

std::string tid(const ThreadState& t) {
    return fmt("thread (%u,%u,%u)", t.view.thread_idx.x, t.view.thread_idx.y, t.view.thread_idx.z);
}

std::string block_name(const BlockState& b) {
    return fmt("kernel %s, block (%u,%u,%u) of grid (%u,%u,%u) x block (%u,%u,%u), schedule %s", b.kernel->name,
               b.block_idx.x, b.block_idx.y, b.block_idx.z, b.grid_dim.x, b.grid_dim.y, b.grid_dim.z, b.block_dim.x,
               b.block_dim.y, b.block_dim.z, b.schedule->name.c_str());
}

const char* warp_op_name(WarpOp op) {
    switch (op) {
    case WarpOp::ShflIdx: return "__shfl_sync";
    case WarpOp::ShflUp: return "__shfl_up_sync";
    case WarpOp::ShflDown: return "__shfl_down_sync";
    case WarpOp::ShflXor: return "__shfl_xor_sync";
    case WarpOp::All: return "__all_sync";
    case WarpOp::Any: return "__any_sync";
    case WarpOp::Ballot: return "__ballot_sync";
    case WarpOp::SyncWarp: return "__syncwarp";
    }
    return "?";
}

const char* barrier_name(BarrierOp op) {
    switch (op) {
    case BarrierOp::Plain: return "__syncthreads";
    case BarrierOp::Count: return "__syncthreads_count";
    case BarrierOp::And: return "__syncthreads_and";
    case BarrierOp::Or: return "__syncthreads_or";
    }
    return "?";
}

// Record the first error of the block; the scheduler stops at once.
void fail(BlockState& b, int code, const std::string& what) {
    if (b.failed) return;
    b.failed = true;
    b.code = code;
    b.message = block_name(b) + ": " + what;
}

// Hand control from the running fiber back to the scheduler.
void yield_to_scheduler(ThreadState* t, bool exiting) {
    Worker* w = t->view.block ? static_cast<const BlockState*>(t->view.block)->worker : tls_worker;
    fiber_switch(&t->ctx, &w->sched, exiting);
}

void fiber_main(void* p) {
    ThreadState* t = static_cast<ThreadState*>(p);
    fiber_arrived(&t->ctx);
    const BlockState* b = static_cast<const BlockState*>(t->view.block);
    b->kernel->invoke(b->args);
    t->state = State::Exited;
    yield_to_scheduler(t, true);
    abort();  // an exited fiber is never resumed
}

// ---- warp operations --------------------------------------------------------------------

unsigned lanes_in_warp(const BlockState& b, unsigned warp) {
    unsigned first = warp * 32;
    return std::min(32u, b.nthreads - first);
}

// The source lane of a shuffle for `lane`, or -1 for "own value" (shfl_up/down beyond the
// segment, shfl_xor leaving it).
int shuffle_source(const ThreadState& t) {
    int w = t.width, lane = (int)t.lane;
    int seg = (lane / w) * w;
    switch (t.wop) {
    case WarpOp::ShflIdx: return seg + (((t.arg % w) + w) % w);
    case WarpOp::ShflUp: return (lane - seg) >= t.arg ? lane - t.arg : -1;
    case WarpOp::ShflDown: return (lane - seg) + t.arg < w ? lane + t.arg : -1;
    case WarpOp::ShflXor: {
        int src = lane ^ t.arg;
        return src < seg + w ? src : -1;
    }
    default: return -1;
    }
}

// A lane arrived at a warp operation: validate it, and complete the operation if every lane
// of its mask is there.
void warp_arrived(BlockState& b, std::vector<ThreadState>& th, ThreadState& t, std::deque<unsigned>& runq) {
    unsigned base = t.warp * 32, n = lanes_in_warp(b, t.warp);
    if (!(t.mask & (1u << t.lane))) {
        fail(b, kLaunchFailed,
             fmt("%s at %s: %s's own lane %u is not in the mask 0x%08x", warp_op_name(t.wop), where(t.loc).c_str(),
                 tid(t).c_str(), t.lane, t.mask));
        return;
    }
    if (t.wop <= WarpOp::ShflXor && (t.width <= 0 || t.width > 32 || (t.width & (t.width - 1)))) {
        fail(b, kLaunchFailed,
             fmt("%s at %s: width %d is not a power of two in [1, 32]", warp_op_name(t.wop), where(t.loc).c_str(), t.width));
        return;
    }
    for (unsigned l = 0; l < 32; ++l) {
        if (!(t.mask & (1u << l))) continue;
        if (l >= n) {
            fail(b, kLaunchFailed,
                 fmt("%s at %s: mask 0x%08x of %s names lane %u, but warp %u has only %u threads (blockDim %u)",
                     warp_op_name(t.wop), where(t.loc).c_str(), t.mask, tid(t).c_str(), l, t.warp, n, b.nthreads));
            return;
        }
        if (th[base + l].state == State::Exited) {
            fail(b, kLaunchFailed,
                 fmt("%s at %s: mask 0x%08x of %s names lane %u (%s), which has already exited", warp_op_name(t.wop),
                     where(t.loc).c_str(), t.mask, tid(t).c_str(), l, tid(th[base + l]).c_str()));
            return;
        }
    }
    for (unsigned l = 0; l < 32; ++l)
        if ((t.mask & (1u << l)) && th[base + l].state != State::AtWarp) return;  // not yet complete
    // Every lane of the mask waits at a warp operation: they must all be this one.
    for (unsigned l = 0; l < 32; ++l) {
        if (!(t.mask & (1u << l))) continue;
        const ThreadState& o = th[base + l];
        if (o.wop != t.wop || o.loc.line != t.loc.line || strcmp(o.loc.file, t.loc.file) != 0 || o.mask != t.mask ||
            o.width != t.width) {
            fail(b, kLaunchFailed,
                 fmt("mismatched warp operations in warp %u: %s is at %s %s mask 0x%08x, but %s is at %s %s mask 0x%08x",
                     t.warp, tid(t).c_str(), warp_op_name(t.wop), where(t.loc).c_str(), t.mask, tid(o).c_str(),
                     warp_op_name(o.wop), where(o.loc).c_str(), o.mask));
            return;
        }
    }
    // Compute every lane's result from the values as they were at arrival.
    uint64_t ballot = 0;
    for (unsigned l = 0; l < 32; ++l)
        if ((t.mask & (1u << l)) && th[base + l].value) ballot |= 1ull << l;
    std::vector<unsigned> released;
    for (unsigned l = 0; l < 32; ++l) {
        if (!(t.mask & (1u << l))) continue;
        ThreadState& o = th[base + l];
        switch (t.wop) {
        case WarpOp::ShflIdx:
        case WarpOp::ShflUp:
        case WarpOp::ShflDown:
        case WarpOp::ShflXor: {
            int src = shuffle_source(o);
            if (src < 0) {
                o.result = o.value;
            } else if (!(t.mask & (1u << src))) {
                fail(b, kLaunchFailed,
                     fmt("%s at %s: %s reads lane %d, which is not in the mask 0x%08x (its value is undefined)",
                         warp_op_name(t.wop), where(t.loc).c_str(), tid(o).c_str(), src, t.mask));
                return;
            } else {
                o.result = th[base + (unsigned)src].value;
            }
            break;
        }
        case WarpOp::All: o.result = ballot == (uint64_t)t.mask; break;
        case WarpOp::Any: o.result = ballot != 0; break;
        case WarpOp::Ballot: o.result = ballot; break;
        case WarpOp::SyncWarp: o.result = 0; break;
        }
        released.push_back(base + l);
    }
    order(released, *b.schedule, b.worker->rng);
    for (unsigned i : released) {
        th[i].state = State::Runnable;
        runq.push_back(i);
    }
}

// A lane exited: any warp operation still waiting for it can never complete.
void lane_exited(BlockState& b, std::vector<ThreadState>& th, const ThreadState& t) {
    unsigned base = t.warp * 32, n = lanes_in_warp(b, t.warp);
    for (unsigned l = 0; l < n; ++l) {
        const ThreadState& o = th[base + l];
        if (o.state == State::AtWarp && (o.mask & (1u << t.lane))) {
            fail(b, kLaunchFailed,
                 fmt("%s at %s: %s waits with mask 0x%08x for lane %u (%s), which exited instead", warp_op_name(o.wop),
                     where(o.loc).c_str(), tid(o).c_str(), o.mask, t.lane, tid(t).c_str()));
            return;
        }
    }
}

// ---- barriers and deadlocks -------------------------------------------------------------

void release_barrier(BlockState& b, std::vector<ThreadState>& th, std::deque<unsigned>& runq) {
    const ThreadState* first = nullptr;
    const ThreadState* exited = nullptr;
    for (unsigned i = 0; i < b.nthreads; ++i) {
        if (th[i].state == State::Exited) {
            if (!exited) exited = &th[i];
        } else if (!first) {
            first = &th[i];
        }
    }
    if (exited) {
        fail(b, kLaunchFailed,
             fmt("%s at %s (barrier #%u) reached after %s exited: a barrier must be reached by every thread of the block",
                 barrier_name(first->bop), where(first->loc).c_str(), first->barriers_passed + 1, tid(*exited).c_str()));
        return;
    }
    int count = 0;
    for (unsigned i = 0; i < b.nthreads; ++i) {
        const ThreadState& o = th[i];
        if (o.bop != first->bop || o.loc.line != first->loc.line || strcmp(o.loc.file, first->loc.file) != 0 ||
            o.barriers_passed != first->barriers_passed) {
            fail(b, kLaunchFailed,
                 fmt("divergent barrier: %s waits at %s %s (its barrier #%u) while %s waits at %s %s (its barrier #%u)",
                     tid(*first).c_str(), barrier_name(first->bop), where(first->loc).c_str(), first->barriers_passed + 1,
                     tid(o).c_str(), barrier_name(o.bop), where(o.loc).c_str(), o.barriers_passed + 1));
            return;
        }
        count += o.predicate;
    }
    int result = 0;
    switch (first->bop) {
    case BarrierOp::Plain: result = 0; break;
    case BarrierOp::Count: result = count; break;
    case BarrierOp::And: result = count == (int)b.nthreads; break;
    case BarrierOp::Or: result = count != 0; break;
    }
    std::vector<unsigned> all(b.nthreads);
    for (unsigned i = 0; i < b.nthreads; ++i) {
        all[i] = i;
        th[i].result = (uint64_t)(int64_t)result;
        th[i].barriers_passed++;
        th[i].state = State::Runnable;
    }
    order(all, *b.schedule, b.worker->rng);
    for (unsigned i : all) runq.push_back(i);
}

void report_deadlock(BlockState& b, const std::vector<ThreadState>& th) {
    unsigned at_warp = 0, at_barrier = 0;
    const ThreadState *warp_example = nullptr, *barrier_example = nullptr;
    for (unsigned i = 0; i < b.nthreads; ++i) {
        if (th[i].state == State::AtWarp) {
            if (!at_warp++) warp_example = &th[i];
        } else if (th[i].state == State::AtBarrier) {
            if (!at_barrier++) barrier_example = &th[i];
        }
    }
    std::string msg = "deadlock: no thread can run;";
    if (warp_example) {
        const ThreadState& o = *warp_example;
        unsigned base = o.warp * 32, missing = 0;
        for (unsigned l = 0; l < 32; ++l)
            if ((o.mask & (1u << l)) && th[base + l].state != State::AtWarp) missing |= 1u << l;
        msg += fmt(" %u thread(s) wait at warp operations, e.g. %s at %s %s for lanes 0x%08x of its mask 0x%08x;", at_warp,
                   tid(o).c_str(), warp_op_name(o.wop), where(o.loc).c_str(), missing, o.mask);
    }
    if (barrier_example)
        msg += fmt(" %u thread(s) wait at %s %s, e.g. %s", at_barrier, barrier_name(barrier_example->bop),
                   where(barrier_example->loc).c_str(), tid(*barrier_example).c_str());
    fail(b, kLaunchFailed, msg);
}

// ---- running a block --------------------------------------------------------------------

void run_block(Worker* w, BlockState& b) {
    std::vector<ThreadState>& th = w->threads;
    unsigned n = b.nthreads;
    if (w->stacks.size() < n) {
        size_t old = w->stacks.size();
        w->stacks.resize(n);
        for (size_t i = old; i < n; ++i) {
            if (!w->stacks[i].allocate(stack_bytes())) {
                fail(b, kOutOfMemory, "cannot map fiber stacks");
                return;
            }
        }
    }
    if (th.size() < n) th.resize(n);
    for (unsigned i = 0; i < n; ++i) {
        ThreadState& t = th[i];
        t = ThreadState();
        t.view.thread_idx = uint3{i % b.block_dim.x, (i / b.block_dim.x) % b.block_dim.y, i / (b.block_dim.x * b.block_dim.y)};
        t.view.block = &b;
        t.linear = i;
        t.warp = i / 32;
        t.lane = i % 32;
        fiber_make(&t.ctx, &w->stacks[i], fiber_main, &t);
    }
    // Dynamic shared memory ends at slot 0's guard page, NaN bytes.
    size_t dyn = b.shape->dynamic_shared;
    char* dyn_end = w->slot_end(0);
    b.dynamic = dyn_end - dyn;
    memset(b.dynamic, 0xff, dyn);

    std::deque<unsigned> runq;
    {
        std::vector<unsigned> all(n);
        for (unsigned i = 0; i < n; ++i) all[i] = i;
        order(all, *b.schedule, w->rng);
        runq.assign(all.begin(), all.end());
    }
    unsigned exited = 0;
    w->block = &b;
    while (!b.failed) {
        while (!runq.empty() && !b.failed) {
            unsigned i = runq.front();
            runq.pop_front();
            ThreadState& t = th[i];
            w->running = &t;
            current = &t.view;
            fiber_switch(&w->sched, &t.ctx, false);
            current = nullptr;
            w->running = nullptr;
            switch (t.state) {
            case State::Exited:
                ++exited;
                lane_exited(b, th, t);
                break;
            case State::AtWarp: warp_arrived(b, th, t, runq); break;
            case State::AtBarrier: break;
            case State::Failed: break;  // fail() was called from the fiber
            case State::Runnable:
                fail(b, kLaunchFailed, "internal error: a fiber yielded without a request");
                break;
            }
        }
        if (b.failed || exited == n) break;
        bool at_warp = false, at_barrier = false;
        for (unsigned i = 0; i < n; ++i) {
            at_warp = at_warp || th[i].state == State::AtWarp;
            at_barrier = at_barrier || th[i].state == State::AtBarrier;
        }
        if (at_barrier && !at_warp) release_barrier(b, th, runq);
        else report_deadlock(b, th);
    }
    w->block = nullptr;
}

// ---- fault handling ---------------------------------------------------------------------

struct sigaction previous_segv, previous_bus;

std::string describe_fault(Worker* w, uintptr_t addr) {
    for (size_t i = 0; i < kMaxSlots; ++i) {
        char* g = w->slot_end(i);
        if ((char*)addr >= g && (char*)addr < g + (w->slot_stride - kSlotBytes))
            return i == 0 ? fmt("just past the end of the block's %zu bytes of dynamic shared memory",
                                w->block ? w->block->shape->dynamic_shared : (size_t)0)
                          : fmt("just past the end of static shared array #%zu", i);
    }
    if (w->running) {
        const FiberStack& s = w->stacks[w->running->linear];
        if (s.in_guard((void*)addr))
            return fmt("the guard page below this thread's %zu KiB fiber stack (stack overflow; JETGEN_EMU_STACK_KB raises it)",
                       s.size / 1024);
    }
    return device_describe(addr);
}

// Static storage for the message built inside the signal handler (the launch is aborted, so
// the handler may allocate: the interrupted code is kernel code, never the allocator).
void on_fault(int sig, siginfo_t* info, void* uctx) {
    Worker* w = tls_worker;
    if (w && w->in_kernel && w->block) {
        uintptr_t addr = (uintptr_t)info->si_addr;
        bool write = false;
#if defined(__x86_64__)
        write = (((ucontext_t*)uctx)->uc_mcontext.gregs[REG_ERR] & 2) != 0;
#endif
        std::string what = fmt("invalid %s at 0x%lx: %s", write ? "write" : "read", (unsigned long)addr,
                               describe_fault(w, addr).c_str());
        if (w->running) what = tid(*w->running) + ": " + what;
        fail(*w->block, kIllegalAddress, what);
        w->in_kernel = 0;
        siglongjmp(w->fault_jump, 1);
    }
    struct sigaction* prev = sig == SIGBUS ? &previous_bus : &previous_segv;
    if (prev->sa_flags & SA_SIGINFO) {
        prev->sa_sigaction(sig, info, uctx);
    } else if (prev->sa_handler == SIG_DFL || prev->sa_handler == SIG_IGN) {
        signal(sig, SIG_DFL);  // re-raised when the faulting instruction runs again
    } else {
        prev->sa_handler(sig);
    }
}

void install_fault_handler() {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_fault;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, &previous_segv);
        sigaction(SIGBUS, &sa, &previous_bus);
    });
}

// A fiber's stack overflow can only be reported from an alternate signal stack: give this OS
// thread one unless it has one (Rust's threads do). Returns the stack installed, or null.
void* install_alt_stack() {
    stack_t current_alt;
    if (sigaltstack(nullptr, &current_alt) != 0 || !(current_alt.ss_flags & SS_DISABLE)) return nullptr;
    stack_t alt;
    alt.ss_size = kAltStackBytes;
    alt.ss_sp = mmap(nullptr, alt.ss_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    alt.ss_flags = 0;
    if (alt.ss_sp == MAP_FAILED) return nullptr;
    if (sigaltstack(&alt, nullptr) != 0) {
        munmap(alt.ss_sp, alt.ss_size);
        return nullptr;
    }
    return alt.ss_sp;
}

// ---- a whole grid under one schedule ---------------------------------------------------

// Run one block; a fault in kernel code lands back here through siglongjmp (the fault handler
// has recorded it in the block). Kept apart so that no local variable lives across sigsetjmp.
__attribute__((noinline)) void run_block_guarded(Worker* w, BlockState& b) {
    if (sigsetjmp(w->fault_jump, 1) == 0) {
        w->in_kernel = 1;
        run_block(w, b);
    }
    w->in_kernel = 0;
    current = nullptr;
    w->running = nullptr;
    w->block = nullptr;
}

LaunchError run_grid(const KernelEntry* k, const LaunchShape& shape, void* const* args, const Schedule& s,
                     uint64_t launch_index) {
    Worker* w = worker();
    w->rng.seed(mix64(s.seed * 0x9E3779B97F4A7C15ull + launch_index));
    size_t nblocks = (size_t)shape.grid.x * shape.grid.y * shape.grid.z;
    std::vector<size_t> blocks(nblocks);
    for (size_t i = 0; i < nblocks; ++i) blocks[i] = i;
    order(blocks, s, w->rng);
    LaunchError err;
    for (size_t lin : blocks) {
        BlockState b;
        b.worker = w;
        b.kernel = k;
        b.args = args;
        b.shape = &shape;
        b.schedule = &s;
        b.block_dim = shape.block;
        b.grid_dim = shape.grid;
        b.block_idx = uint3{(unsigned)(lin % shape.grid.x), (unsigned)((lin / shape.grid.x) % shape.grid.y),
                            (unsigned)(lin / ((size_t)shape.grid.x * shape.grid.y))};
        b.nthreads = shape.block.x * shape.block.y * shape.block.z;
        b.nwarps = (b.nthreads + 31) / 32;
        run_block_guarded(w, b);
        if (b.failed) {
            err.code = b.code;
            err.message = b.message;
            return err;
        }
    }
    return err;
}

// Launches made by this OS thread: with the kernel's name, the seed of the random schedules,
// so a test's schedules do not depend on what other threads launch meanwhile.
thread_local uint64_t launches_here = 0;

uint64_t name_hash(const char* s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; ++s) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

}  // namespace

// ---- fiber-side entry points ------------------------------------------------------------

int barrier(BarrierOp op, int predicate, Loc loc) {
    ThreadState* t = self();
    t->state = State::AtBarrier;
    t->bop = op;
    t->predicate = predicate;
    t->loc = loc;
    yield_to_scheduler(t, false);
    return (int)(int64_t)t->result;
}

uint64_t warp_op(WarpOp op, unsigned mask, uint64_t value, int arg, int width, Loc loc) {
    ThreadState* t = self();
    t->state = State::AtWarp;
    t->wop = op;
    t->mask = mask;
    t->value = value;
    t->arg = arg;
    t->width = width;
    t->loc = loc;
    yield_to_scheduler(t, false);
    return t->result;
}

void* dynamic_shared(size_t align, Loc loc) {
    // All extern __shared__ arrays of a kernel alias one address: the launch's bytes, ending at
    // the guard page (x86 does not fault on the misalignment an odd byte count leaves).
    (void)align;
    (void)loc;
    return static_cast<const BlockState*>(self()->view.block)->dynamic;
}

void* static_shared(const void* key, size_t size, size_t align, const char* name, Loc loc) {
    ThreadState* t = self();
    BlockState& b = *const_cast<BlockState*>(static_cast<const BlockState*>(t->view.block));
    for (const SharedSlot& s : b.slots)
        if (s.key == key) return s.ptr;
    size_t slot = b.slots.size() + 1;
    std::string err;
    if (slot >= kMaxSlots) err = fmt("more than %zu static __shared__ arrays", kMaxSlots - 1);
    else if (b.static_bytes + size + b.shape->dynamic_shared > b.shape->shared_limit)
        err = fmt("__shared__ %s (%zu bytes) at %s: static (%zu) + dynamic (%zu) shared memory exceeds the %zu bytes a "
                  "block may use",
                  name, size, where(loc).c_str(), b.static_bytes + size, b.shape->dynamic_shared, b.shape->shared_limit);
    if (!err.empty()) {
        fail(b, kLaunchOutOfResources, tid(*t) + ": " + err);
        t->state = State::Failed;
        yield_to_scheduler(t, false);
    }
    (void)align;  // the array ends at a page boundary and its size is a multiple of its alignment
    char* p = b.worker->slot_end(slot) - size;
    memset(p, 0xff, size);
    b.slots.push_back(SharedSlot{key, p});
    b.static_bytes += size;
    return p;
}

void check_atomic(const void* addr, size_t bytes, Loc loc) {
    ThreadState* t = self();
    BlockState& b = *const_cast<BlockState*>(static_cast<const BlockState*>(t->view.block));
    if ((uintptr_t)addr % bytes != 0) {
        fail(b, kLaunchFailed,
             fmt("%s: atomic on a misaligned address %p at %s", tid(*t).c_str(), addr, where(loc).c_str()));
        t->state = State::Failed;
        yield_to_scheduler(t, false);
    }
    Allocation a;
    bool shared = (const char*)addr >= b.worker->arena &&
                  (const char*)addr < b.worker->arena + kMaxSlots * b.worker->slot_stride;
    if (!shared && !device_range((uintptr_t)addr, bytes, &a)) {
        fail(b, kIllegalAddress,
             fmt("%s: atomic at %s on %s", tid(*t).c_str(), where(loc).c_str(), device_describe((uintptr_t)addr).c_str()));
        t->state = State::Failed;
        yield_to_scheduler(t, false);
    }
}

void trap(const char* why, Loc loc) {
    ThreadState* t = self();
    BlockState& b = *const_cast<BlockState*>(static_cast<const BlockState*>(t->view.block));
    fail(b, kAssert, fmt("%s: %s at %s", tid(*t).c_str(), why, where(loc).c_str()));
    t->state = State::Failed;
    yield_to_scheduler(t, false);
    abort();
}

// ---- launches ---------------------------------------------------------------------------

LaunchError launch(const KernelEntry* k, const LaunchShape& shape, void* const* args) {
    unsigned threads = shape.block.x * shape.block.y * shape.block.z;
    if (k->max_threads && threads > k->max_threads) {
        LaunchError err;
        err.code = kLaunchOutOfResources;
        err.message = fmt("kernel %s: a block of %u threads exceeds its __launch_bounds__ of %u", k->name, threads,
                          k->max_threads);
        return err;
    }
    const std::vector<Schedule>& scheds = schedules();
    uint64_t index = mix64(name_hash(k->name) + launches_here++);
    if (scheds.size() == 1) return run_grid(k, shape, args, scheds[0], index);

    // Several schedules: snapshot what the pointer arguments reach, run each schedule from
    // the same initial bytes, and require identical final bytes.
    std::vector<uintptr_t> ptrs;
    for (size_t i = 0; i < k->num_params; ++i)
        if (k->params[i].pointer) ptrs.push_back(load_param<uintptr_t>(args[i]));
    std::vector<Allocation> allocs = device_allocations_of(ptrs);
    std::vector<std::vector<unsigned char>> before(allocs.size()), first(allocs.size());
    for (size_t a = 0; a < allocs.size(); ++a)
        before[a].assign((unsigned char*)allocs[a].start, (unsigned char*)allocs[a].start + allocs[a].size);
    for (size_t s = 0; s < scheds.size(); ++s) {
        if (s > 0)
            for (size_t a = 0; a < allocs.size(); ++a) memcpy((void*)allocs[a].start, before[a].data(), allocs[a].size);
        LaunchError err = run_grid(k, shape, args, scheds[s], index);
        if (err.code) return err;
        for (size_t a = 0; a < allocs.size(); ++a) {
            const unsigned char* now = (const unsigned char*)allocs[a].start;
            if (s == 0) {
                first[a].assign(now, now + allocs[a].size);
                continue;
            }
            if (memcmp(now, first[a].data(), allocs[a].size) == 0) continue;
            size_t at = 0, differing = 0;
            for (size_t i = 0; i < allocs[a].size; ++i)
                if (now[i] != first[a][i]) {
                    if (!differing) at = i;
                    ++differing;
                }
            size_t word = at & ~(size_t)3;
            uint32_t u0 = 0, u1 = 0;
            if (word + 4 <= allocs[a].size) {
                memcpy(&u0, first[a].data() + word, 4);
                memcpy(&u1, now + word, 4);
            }
            float f0, f1;
            memcpy(&f0, &u0, 4);
            memcpy(&f1, &u1, 4);
            err.code = kLaunchFailed;
            err.message = fmt("kernel %s: the result depends on the schedule (a race): allocation #%lu (%zu bytes) "
                              "differs in %zu bytes between schedules %s and %s; first at byte %zu: word 0x%08x (%g) vs "
                              "0x%08x (%g)",
                              k->name, (unsigned long)allocs[a].id, allocs[a].size, differing, scheds[0].name.c_str(),
                              scheds[s].name.c_str(), at, u0, (double)f0, u1, (double)f1);
            return err;
        }
    }
    return LaunchError();
}

}  // namespace jg_emu
