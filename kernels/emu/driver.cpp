// The stand-in CUDA driver (libcuda.so.1): the driver API entry points that cudarc 0.19 calls
// for jetgen, implemented on the executor and the checked allocator.
//
// One device, "jetgen cuda-emu ...", compute capability 10.0 (so jetgen loads PTX rather than
// its sm_90 cubin), 1024 threads and 48 KiB of shared memory per block (227 KiB opt-in).
// Streams and events exist and are checked, but all work runs synchronously in call order.
// A faulting kernel makes the context unusable, as on a GPU: every later call returns the
// error. Unknown handles, pointers that are not device memory and out-of-range copies are
// errors with a diagnostic (cuGetErrorString appends it; it is also printed to stderr).
#include "driver.h"

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "executor.h"
#include "memory.h"
#include "ptx.h"

#define JG_API extern "C" __attribute__((visibility("default")))

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef void* CUcontext;
typedef void* CUmodule;
typedef void* CUfunction;
typedef void* CUstream;
typedef void* CUevent;

namespace jg_emu {

namespace {

constexpr int kNotInitialized = 3;
constexpr int kNoDevice = 100;
constexpr int kInvalidDevice = 101;
constexpr int kInvalidImage = 200;
constexpr int kInvalidContext = 201;
constexpr int kInvalidPtx = 218;
constexpr int kUnsupportedPtxVersion = 222;
constexpr int kInvalidHandle = 400;
constexpr int kNotFound = 500;
constexpr int kNotSupported = 801;

// Device limits reported and enforced.
constexpr int kCcMajor = 10, kCcMinor = 0;
constexpr int kMaxThreads = 1024;
constexpr int kDefaultShared = 48 * 1024;
constexpr int kOptinShared = 227 * 1024;
constexpr int kPtxMaxMajor = 9, kPtxMaxMinor = 0;  // driver 580 (CUDA 13.0) reads PTX ISA ≤ 9.0

struct Context {
    int device = 0;
    int retained = 0;
};

struct Function;
struct Module {
    std::vector<Function*> functions;
};
struct Function {
    const KernelEntry* kernel;
    Module* module;
    int max_dynamic_shared = kDefaultShared;
};
struct Event {
    unsigned flags = 0;
    bool recorded = false;
    std::chrono::steady_clock::time_point when;
};
struct Stream {
    unsigned flags = 0;
};

struct KernelStats {
    unsigned long long launches = 0;
    std::set<unsigned> block_sizes;
    std::set<unsigned long long> grid_sizes;
    unsigned long long max_dynamic_shared = 0;
};

struct Driver {
    std::mutex mu;
    bool initialised = false;
    Context primary;
    std::set<void*> modules, functions, events, streams;
    std::map<std::string, KernelStats> stats;
    std::set<std::string> calls;
    std::atomic<int> sticky{0};
    std::deque<std::string> messages;  // every detail ever reported (pointers stay valid)
    std::map<int, const std::string*> detail;
};

Driver& drv() {
    static Driver* d = new Driver;
    return *d;
}

thread_local Context* tls_ctx = nullptr;

bool is_default_stream(CUstream s) { return s == nullptr || s == (CUstream)0x1 || s == (CUstream)0x2; }

}  // namespace

void note_call(const char* api) {
    static const bool on = getenv("JETGEN_EMU_REPORT") != nullptr;
    if (!on) return;
    std::lock_guard<std::mutex> lock(drv().mu);
    drv().calls.insert(api);
}

void report(int code, const std::string& message) {
    Driver& d = drv();
    std::lock_guard<std::mutex> lock(d.mu);
    d.messages.push_back(message);
    d.detail[code] = &d.messages.back();
    fprintf(stderr, "jetgen cuda-emu: %s\n", message.c_str());
    fflush(stderr);
}

void set_sticky_error(int code, const std::string& message) {
    report(code, message);
    int expected = 0;
    drv().sticky.compare_exchange_strong(expected, code);
}

int sticky_error() { return drv().sticky.load(); }

namespace {

// Common prologue: note the call; fail when not initialised or the context is dead.
#define ENTER(name)                                          \
    ::jg_emu::note_call(name);                               \
    if (!drv().initialised) return kNotInitialized;          \
    if (int sticky_code = sticky_error()) return sticky_code
#define NEED_CONTEXT() \
    if (!tls_ctx) return kInvalidContext

CUresult invalid(int code, const std::string& msg) {
    report(code, msg);
    return code;
}

bool valid_handle(std::set<void*>& set, void* h) {
    std::lock_guard<std::mutex> lock(drv().mu);
    return set.count(h) != 0;
}

bool valid_stream(CUstream s) { return is_default_stream(s) || valid_handle(drv().streams, s); }

CUresult check_device_range(CUdeviceptr p, size_t bytes, const char* api, const char* what) {
    if (bytes == 0) return kSuccess;
    Allocation a;
    if (device_range((uintptr_t)p, bytes, &a)) return kSuccess;
    return invalid(kInvalidValue, std::string(api) + ": " + what + " range of " + std::to_string(bytes) +
                                      " bytes at " + device_describe((uintptr_t)p) +
                                      " does not lie inside one live device allocation");
}

const char* error_name(int code) {
    switch (code) {
    case 0: return "CUDA_SUCCESS";
    case 1: return "CUDA_ERROR_INVALID_VALUE";
    case 2: return "CUDA_ERROR_OUT_OF_MEMORY";
    case 3: return "CUDA_ERROR_NOT_INITIALIZED";
    case 100: return "CUDA_ERROR_NO_DEVICE";
    case 101: return "CUDA_ERROR_INVALID_DEVICE";
    case 200: return "CUDA_ERROR_INVALID_IMAGE";
    case 201: return "CUDA_ERROR_INVALID_CONTEXT";
    case 218: return "CUDA_ERROR_INVALID_PTX";
    case 222: return "CUDA_ERROR_UNSUPPORTED_PTX_VERSION";
    case 400: return "CUDA_ERROR_INVALID_HANDLE";
    case 500: return "CUDA_ERROR_NOT_FOUND";
    case 600: return "CUDA_ERROR_NOT_READY";
    case 700: return "CUDA_ERROR_ILLEGAL_ADDRESS";
    case 701: return "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES";
    case 710: return "CUDA_ERROR_ASSERT";
    case 714: return "CUDA_ERROR_HARDWARE_STACK_ERROR";
    case 719: return "CUDA_ERROR_LAUNCH_FAILED";
    case 801: return "CUDA_ERROR_NOT_SUPPORTED";
    default: return nullptr;
    }
}

const char* error_text(int code) {
    switch (code) {
    case 0: return "no error";
    case 1: return "invalid argument";
    case 2: return "out of memory";
    case 3: return "initialization error";
    case 100: return "no CUDA-capable device is detected";
    case 101: return "invalid device ordinal";
    case 200: return "device kernel image is invalid";
    case 201: return "invalid device context";
    case 218: return "a PTX JIT compilation failed";
    case 222: return "the provided PTX was compiled with an unsupported toolchain";
    case 400: return "invalid resource handle";
    case 500: return "named symbol not found";
    case 600: return "device not ready";
    case 700: return "an illegal memory access was encountered";
    case 701: return "too many resources requested for launch";
    case 710: return "device-side assert triggered";
    case 714: return "hardware stack error";
    case 719: return "unspecified launch failure";
    case 801: return "operation not supported";
    default: return nullptr;
    }
}

void write_report() {
    const char* path = getenv("JETGEN_EMU_REPORT");
    if (!path) return;
    FILE* f = fopen(path, "a");
    if (!f) return;
    Driver& d = drv();
    std::lock_guard<std::mutex> lock(d.mu);
    for (const std::string& c : d.calls) fprintf(f, "call\t%s\n", c.c_str());
    for (auto& [name, s] : d.stats) {
        fprintf(f, "kernel\t%s\t%llu\t", name.c_str(), s.launches);
        bool first = true;
        for (unsigned b : s.block_sizes) fprintf(f, "%s%u", first ? "" : ",", b), first = false;
        fprintf(f, "\n");
    }
    fclose(f);
}

}  // namespace

/// The per-kernel launch table, one line per kernel: name, launches, distinct block sizes.
std::string launch_report() {
    Driver& d = drv();
    std::lock_guard<std::mutex> lock(d.mu);
    std::string out;
    for (auto& [name, s] : d.stats) {
        out += name + "\t" + std::to_string(s.launches) + "\t";
        bool first = true;
        for (unsigned b : s.block_sizes) out += (first ? "" : ",") + std::to_string(b), first = false;
        out += "\n";
    }
    return out;
}

}  // namespace jg_emu

using namespace jg_emu;

// ---- errors -----------------------------------------------------------------------------

JG_API CUresult cuGetErrorName(CUresult code, const char** out) {
    note_call("cuGetErrorName");
    const char* n = error_name(code);
    if (!out || !n) return kInvalidValue;
    *out = n;
    return kSuccess;
}

JG_API CUresult cuGetErrorString(CUresult code, const char** out) {
    note_call("cuGetErrorString");
    const char* t = error_text(code);
    if (!out || !t) return kInvalidValue;
    Driver& d = drv();
    std::lock_guard<std::mutex> lock(d.mu);
    auto it = d.detail.find(code);
    if (it == d.detail.end()) {
        *out = t;
        return kSuccess;
    }
    // "<CUDA's text> [jetgen cuda-emu: <detail>]", kept alive with the other messages.
    d.messages.push_back(std::string(t) + " [jetgen cuda-emu: " + *it->second + "]");
    *out = d.messages.back().c_str();
    return kSuccess;
}

// ---- initialisation, device, context ------------------------------------------------------

JG_API CUresult cuInit(unsigned flags) {
    note_call("cuInit");
    if (flags != 0) return kInvalidValue;
    std::string config = config_error();
    if (!config.empty()) return invalid(kInvalidValue, "cannot start: " + config);
    static std::once_flag once;
    std::call_once(once, [] { atexit(write_report); });
    drv().initialised = true;
    return kSuccess;
}

// NVIDIA's private function tables (libnvrtc.so.13 asks for them when it finds a driver):
// the stand-in has none, and says so.
JG_API CUresult cuGetExportTable(const void** table, const void* uuid) {
    note_call("cuGetExportTable");
    (void)uuid;
    if (table) *table = nullptr;
    return kNotFound;
}

JG_API CUresult cuDriverGetVersion(int* v) {
    note_call("cuDriverGetVersion");
    if (!v) return kInvalidValue;
    *v = 13000;
    return kSuccess;
}

JG_API CUresult cuDeviceGetCount(int* n) {
    ENTER("cuDeviceGetCount");
    if (!n) return kInvalidValue;
    *n = 1;
    return kSuccess;
}

JG_API CUresult cuDeviceGet(CUdevice* dev, int ordinal) {
    ENTER("cuDeviceGet");
    if (!dev) return kInvalidValue;
    if (ordinal != 0) return kInvalidDevice;
    *dev = 0;
    return kSuccess;
}

JG_API CUresult cuDeviceGetName(char* name, int len, CUdevice dev) {
    ENTER("cuDeviceGetName");
    if (!name || len <= 0) return kInvalidValue;
    if (dev != 0) return kInvalidDevice;
    std::string n = "jetgen cuda-emu (CUDA on the CPU; schedules " + schedule_names() + ")";
    snprintf(name, (size_t)len, "%s", n.c_str());
    return kSuccess;
}

JG_API CUresult cuDeviceGetUuid(unsigned char* uuid, CUdevice dev) {
    ENTER("cuDeviceGetUuid");
    if (!uuid) return kInvalidValue;
    if (dev != 0) return kInvalidDevice;
    memcpy(uuid, "jetgen-cuda-emu!", 16);
    return kSuccess;
}

JG_API CUresult cuDeviceGetUuid_v2(unsigned char* uuid, CUdevice dev) { return cuDeviceGetUuid(uuid, dev); }

JG_API CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice dev) {
    ENTER("cuDeviceTotalMem_v2");
    if (!bytes) return kInvalidValue;
    if (dev != 0) return kInvalidDevice;
    *bytes = device_capacity();
    return kSuccess;
}

JG_API CUresult cuDeviceGetAttribute(int* value, int attribute, CUdevice dev) {
    ENTER("cuDeviceGetAttribute");
    if (!value) return kInvalidValue;
    if (dev != 0) return kInvalidDevice;
    switch (attribute) {
    case 1: *value = kMaxThreads; break;            // MAX_THREADS_PER_BLOCK
    case 2: *value = 1024; break;                   // MAX_BLOCK_DIM_X
    case 3: *value = 1024; break;                   // MAX_BLOCK_DIM_Y
    case 4: *value = 64; break;                     // MAX_BLOCK_DIM_Z
    case 5: *value = 2147483647; break;             // MAX_GRID_DIM_X
    case 6: *value = 65535; break;                  // MAX_GRID_DIM_Y
    case 7: *value = 65535; break;                  // MAX_GRID_DIM_Z
    case 8: *value = kDefaultShared; break;         // MAX_SHARED_MEMORY_PER_BLOCK
    case 9: *value = 65536; break;                  // TOTAL_CONSTANT_MEMORY
    case 10: *value = 32; break;                    // WARP_SIZE
    case 12: *value = 65536; break;                 // MAX_REGISTERS_PER_BLOCK
    case 13: *value = 1000000; break;               // CLOCK_RATE (kHz)
    case 16: *value = 1; break;                     // MULTIPROCESSOR_COUNT
    case 31: *value = 0; break;                     // CONCURRENT_KERNELS
    case 39: *value = 2048; break;                  // MAX_THREADS_PER_MULTIPROCESSOR
    case 41: *value = 1; break;                     // UNIFIED_ADDRESSING
    case 75: *value = kCcMajor; break;              // COMPUTE_CAPABILITY_MAJOR
    case 76: *value = kCcMinor; break;              // COMPUTE_CAPABILITY_MINOR
    case 81: *value = kOptinShared + 1024; break;   // MAX_SHARED_MEMORY_PER_MULTIPROCESSOR
    case 97: *value = kOptinShared; break;          // MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
    case 115: *value = 1; break;                    // MEMORY_POOLS_SUPPORTED
    default: *value = 0; break;
    }
    return kSuccess;
}

JG_API CUresult cuDevicePrimaryCtxRetain(CUcontext* ctx, CUdevice dev) {
    ENTER("cuDevicePrimaryCtxRetain");
    if (!ctx) return kInvalidValue;
    if (dev != 0) return kInvalidDevice;
    std::lock_guard<std::mutex> lock(drv().mu);
    drv().primary.retained++;
    *ctx = &drv().primary;
    return kSuccess;
}

JG_API CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) {
    note_call("cuDevicePrimaryCtxRelease_v2");
    if (dev != 0) return kInvalidDevice;
    std::lock_guard<std::mutex> lock(drv().mu);
    if (drv().primary.retained > 0) drv().primary.retained--;
    return kSuccess;
}

JG_API CUresult cuCtxSetCurrent(CUcontext ctx) {
    ENTER("cuCtxSetCurrent");
    if (ctx && ctx != &drv().primary) return kInvalidContext;
    tls_ctx = (Context*)ctx;
    return kSuccess;
}

JG_API CUresult cuCtxGetCurrent(CUcontext* ctx) {
    ENTER("cuCtxGetCurrent");
    if (!ctx) return kInvalidValue;
    *ctx = tls_ctx;
    return kSuccess;
}

JG_API CUresult cuCtxGetDevice(CUdevice* dev) {
    ENTER("cuCtxGetDevice");
    NEED_CONTEXT();
    if (!dev) return kInvalidValue;
    *dev = 0;
    return kSuccess;
}

JG_API CUresult cuCtxSynchronize() {
    ENTER("cuCtxSynchronize");
    NEED_CONTEXT();
    return kSuccess;
}

JG_API CUresult cuCtxSetFlags(unsigned flags) {
    ENTER("cuCtxSetFlags");
    NEED_CONTEXT();
    (void)flags;
    return kSuccess;
}

JG_API CUresult cuCtxGetLimit(size_t* value, int limit) {
    ENTER("cuCtxGetLimit");
    NEED_CONTEXT();
    if (!value) return kInvalidValue;
    *value = limit == 0 ? 1024 : 0;  // CU_LIMIT_STACK_SIZE
    return kSuccess;
}

JG_API CUresult cuCtxSetLimit(int limit, size_t value) {
    ENTER("cuCtxSetLimit");
    NEED_CONTEXT();
    (void)limit;
    (void)value;
    return kSuccess;
}

// ---- memory -------------------------------------------------------------------------------

JG_API CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t bytes) {
    ENTER("cuMemAlloc_v2");
    NEED_CONTEXT();
    if (!p || bytes == 0) return kInvalidValue;  // cuMemAlloc rejects 0 bytes
    uintptr_t a = device_alloc(bytes);
    if (!a) return kOutOfMemory;
    *p = a;
    return kSuccess;
}

JG_API CUresult cuMemAllocAsync(CUdeviceptr* p, size_t bytes, CUstream s) {
    ENTER("cuMemAllocAsync");
    NEED_CONTEXT();
    if (!valid_stream(s)) return kInvalidHandle;
    if (!p || bytes == 0) return kInvalidValue;
    uintptr_t a = device_alloc(bytes);
    if (!a) return kOutOfMemory;
    *p = a;
    return kSuccess;
}

static CUresult free_checked(CUdeviceptr p, const char* api) {
    if (p == 0) return kSuccess;
    if (!device_free((uintptr_t)p))
        return invalid(kInvalidValue, std::string(api) + ": " + device_describe((uintptr_t)p) +
                                          " is not the start of a live allocation (double free?)");
    return kSuccess;
}

JG_API CUresult cuMemFree_v2(CUdeviceptr p) {
    ENTER("cuMemFree_v2");
    NEED_CONTEXT();
    return free_checked(p, "cuMemFree");
}

JG_API CUresult cuMemFreeAsync(CUdeviceptr p, CUstream s) {
    ENTER("cuMemFreeAsync");
    NEED_CONTEXT();
    if (!valid_stream(s)) return kInvalidHandle;
    return free_checked(p, "cuMemFreeAsync");
}

JG_API CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
    ENTER("cuMemGetInfo_v2");
    NEED_CONTEXT();
    if (!free_bytes || !total) return kInvalidValue;
    *total = device_capacity();
    *free_bytes = *total - device_bytes_in_use();
    return kSuccess;
}

static CUresult htod(CUdeviceptr dst, const void* src, size_t n, const char* api) {
    if (n && !src) return kInvalidValue;
    if (CUresult r = check_device_range(dst, n, api, "destination")) return r;
    if (n) memcpy((void*)dst, src, n);
    return kSuccess;
}
static CUresult dtoh(void* dst, CUdeviceptr src, size_t n, const char* api) {
    if (n && !dst) return kInvalidValue;
    if (CUresult r = check_device_range(src, n, api, "source")) return r;
    if (n) memcpy(dst, (const void*)src, n);
    return kSuccess;
}
static CUresult dtod(CUdeviceptr dst, CUdeviceptr src, size_t n, const char* api) {
    if (CUresult r = check_device_range(src, n, api, "source")) return r;
    if (CUresult r = check_device_range(dst, n, api, "destination")) return r;
    if (n) memmove((void*)dst, (const void*)src, n);
    return kSuccess;
}

JG_API CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) {
    ENTER("cuMemcpyHtoD_v2");
    NEED_CONTEXT();
    return htod(dst, src, n, "cuMemcpyHtoD");
}
JG_API CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, CUstream s) {
    ENTER("cuMemcpyHtoDAsync_v2");
    NEED_CONTEXT();
    if (!valid_stream(s)) return kInvalidHandle;
    return htod(dst, src, n, "cuMemcpyHtoDAsync");
}
JG_API CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) {
    ENTER("cuMemcpyDtoH_v2");
    NEED_CONTEXT();
    return dtoh(dst, src, n, "cuMemcpyDtoH");
}
JG_API CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, CUstream s) {
    ENTER("cuMemcpyDtoHAsync_v2");
    NEED_CONTEXT();
    if (!valid_stream(s)) return kInvalidHandle;
    return dtoh(dst, src, n, "cuMemcpyDtoHAsync");
}
JG_API CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) {
    ENTER("cuMemcpyDtoD_v2");
    NEED_CONTEXT();
    return dtod(dst, src, n, "cuMemcpyDtoD");
}
JG_API CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) {
    ENTER("cuMemcpyDtoDAsync_v2");
    NEED_CONTEXT();
    if (!valid_stream(s)) return kInvalidHandle;
    return dtod(dst, src, n, "cuMemcpyDtoDAsync");
}

static CUresult memset8(CUdeviceptr dst, unsigned char v, size_t n, const char* api) {
    if (CUresult r = check_device_range(dst, n, api, "destination")) return r;
    if (n) memset((void*)dst, v, n);
    return kSuccess;
}
JG_API CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char v, size_t n) {
    ENTER("cuMemsetD8_v2");
    NEED_CONTEXT();
    return memset8(dst, v, n, "cuMemsetD8");
}
JG_API CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, CUstream s) {
    ENTER("cuMemsetD8Async");
    NEED_CONTEXT();
    if (!valid_stream(s)) return kInvalidHandle;
    return memset8(dst, v, n, "cuMemsetD8Async");
}
static CUresult memset32(CUdeviceptr dst, unsigned v, size_t n, const char* api) {
    if (dst % 4) return invalid(kInvalidValue, std::string(api) + ": destination not 4-byte aligned");
    if (CUresult r = check_device_range(dst, n * 4, api, "destination")) return r;
    for (size_t i = 0; i < n; ++i) memcpy((char*)dst + 4 * i, &v, 4);
    return kSuccess;
}
JG_API CUresult cuMemsetD32_v2(CUdeviceptr dst, unsigned v, size_t n) {
    ENTER("cuMemsetD32_v2");
    NEED_CONTEXT();
    return memset32(dst, v, n, "cuMemsetD32");
}
JG_API CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned v, size_t n, CUstream s) {
    ENTER("cuMemsetD32Async");
    NEED_CONTEXT();
    if (!valid_stream(s)) return kInvalidHandle;
    return memset32(dst, v, n, "cuMemsetD32Async");
}

// ---- streams and events (all work is synchronous, so these only check handles) ----------

JG_API CUresult cuStreamCreate(CUstream* s, unsigned flags) {
    ENTER("cuStreamCreate");
    NEED_CONTEXT();
    if (!s) return kInvalidValue;
    Stream* st = new Stream{flags};
    std::lock_guard<std::mutex> lock(drv().mu);
    drv().streams.insert(st);
    *s = st;
    return kSuccess;
}
JG_API CUresult cuStreamCreateWithPriority(CUstream* s, unsigned flags, int priority) {
    (void)priority;
    return cuStreamCreate(s, flags);
}
JG_API CUresult cuStreamDestroy_v2(CUstream s) {
    ENTER("cuStreamDestroy_v2");
    std::lock_guard<std::mutex> lock(drv().mu);
    if (!drv().streams.erase(s)) return kInvalidHandle;
    delete (Stream*)s;
    return kSuccess;
}
JG_API CUresult cuStreamSynchronize(CUstream s) {
    ENTER("cuStreamSynchronize");
    NEED_CONTEXT();
    return valid_stream(s) ? kSuccess : kInvalidHandle;
}
JG_API CUresult cuStreamQuery(CUstream s) {
    ENTER("cuStreamQuery");
    NEED_CONTEXT();
    return valid_stream(s) ? kSuccess : kInvalidHandle;
}
JG_API CUresult cuStreamWaitEvent(CUstream s, CUevent e, unsigned flags) {
    ENTER("cuStreamWaitEvent");
    NEED_CONTEXT();
    (void)flags;
    if (!valid_stream(s) || !valid_handle(drv().events, e)) return kInvalidHandle;
    return kSuccess;
}
JG_API CUresult cuStreamGetCtx(CUstream s, CUcontext* ctx) {
    ENTER("cuStreamGetCtx");
    if (!valid_stream(s)) return kInvalidHandle;
    if (!ctx) return kInvalidValue;
    *ctx = &drv().primary;
    return kSuccess;
}

JG_API CUresult cuEventCreate(CUevent* e, unsigned flags) {
    ENTER("cuEventCreate");
    NEED_CONTEXT();
    if (!e) return kInvalidValue;
    Event* ev = new Event;
    ev->flags = flags;
    std::lock_guard<std::mutex> lock(drv().mu);
    drv().events.insert(ev);
    *e = ev;
    return kSuccess;
}
JG_API CUresult cuEventDestroy_v2(CUevent e) {
    ENTER("cuEventDestroy_v2");
    std::lock_guard<std::mutex> lock(drv().mu);
    if (!drv().events.erase(e)) return kInvalidHandle;
    delete (Event*)e;
    return kSuccess;
}
JG_API CUresult cuEventRecord(CUevent e, CUstream s) {
    ENTER("cuEventRecord");
    NEED_CONTEXT();
    if (!valid_stream(s) || !valid_handle(drv().events, e)) return kInvalidHandle;
    Event* ev = (Event*)e;
    ev->recorded = true;
    ev->when = std::chrono::steady_clock::now();
    return kSuccess;
}
JG_API CUresult cuEventSynchronize(CUevent e) {
    ENTER("cuEventSynchronize");
    return valid_handle(drv().events, e) ? kSuccess : kInvalidHandle;
}
JG_API CUresult cuEventQuery(CUevent e) {
    ENTER("cuEventQuery");
    return valid_handle(drv().events, e) ? kSuccess : kInvalidHandle;
}
JG_API CUresult cuEventElapsedTime(float* ms, CUevent start, CUevent end) {
    ENTER("cuEventElapsedTime");
    if (!ms) return kInvalidValue;
    if (!valid_handle(drv().events, start) || !valid_handle(drv().events, end)) return kInvalidHandle;
    Event *a = (Event*)start, *b = (Event*)end;
    // CU_EVENT_DISABLE_TIMING = 2; unrecorded events cannot be timed either.
    if ((a->flags & 2) || (b->flags & 2) || !a->recorded || !b->recorded)
        return invalid(kInvalidHandle, "cuEventElapsedTime: an event was created without timing or never recorded");
    *ms = std::chrono::duration<float, std::milli>(b->when - a->when).count();
    return kSuccess;
}
JG_API CUresult cuEventElapsedTime_v2(float* ms, CUevent start, CUevent end) { return cuEventElapsedTime(ms, start, end); }

// ---- modules and functions ----------------------------------------------------------------

JG_API CUresult cuModuleLoadData(CUmodule* out, const void* image) {
    ENTER("cuModuleLoadData");
    NEED_CONTEXT();
    if (!out || !image) return kInvalidValue;
    PtxModule ptx;
    std::string err;
    if (!parse_ptx((const char*)image, &ptx, &err)) return invalid(kInvalidImage, "cuModuleLoadData: " + err);
    if (ptx.version_major > kPtxMaxMajor || (ptx.version_major == kPtxMaxMajor && ptx.version_minor > kPtxMaxMinor))
        return invalid(kUnsupportedPtxVersion,
                       "cuModuleLoadData: PTX ISA " + std::to_string(ptx.version_major) + "." +
                           std::to_string(ptx.version_minor) +
                           " is newer than this driver reads (CUDA 13.0: PTX ≤ 9.0); pin the 13.0 toolchain");
    Module* m = new Module;
    for (const PtxEntry& e : ptx.entries) {
        const KernelEntry* k = find_kernel(e.name.c_str());
        std::string why;
        if (!k) {
            why = "entry " + e.name + " is not compiled into the executor (rebuild the stand-in from these kernels/)";
        } else if (k->num_params != e.params.size()) {
            why = "entry " + e.name + " has " + std::to_string(e.params.size()) + " parameters in the PTX but " +
                  std::to_string(k->num_params) + " in the compiled kernel";
        } else {
            for (size_t i = 0; i < e.params.size() && why.empty(); ++i)
                if (e.params[i].size != k->params[i].size || e.params[i].align != k->params[i].align)
                    why = "entry " + e.name + " parameter " + std::to_string(i) + " ('" + e.params[i].text + "') is " +
                          std::to_string(e.params[i].size) + " bytes aligned " + std::to_string(e.params[i].align) +
                          " in the PTX but " + std::to_string(k->params[i].size) + " aligned " +
                          std::to_string(k->params[i].align) + " in the compiled kernel";
        }
        if (!why.empty()) {
            for (Function* f : m->functions) delete f;
            delete m;
            return invalid(kInvalidPtx, "cuModuleLoadData: " + why);
        }
        m->functions.push_back(new Function{k, m});
    }
    std::lock_guard<std::mutex> lock(drv().mu);
    drv().modules.insert(m);
    for (Function* f : m->functions) drv().functions.insert(f);
    *out = m;
    return kSuccess;
}

JG_API CUresult cuModuleLoad(CUmodule* out, const char* path) {
    ENTER("cuModuleLoad");
    NEED_CONTEXT();
    if (!path) return kInvalidValue;
    FILE* f = fopen(path, "rb");
    if (!f) return kNotFound;
    std::string text;
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    fclose(f);
    return cuModuleLoadData(out, text.c_str());
}

JG_API CUresult cuModuleUnload(CUmodule mod) {
    ENTER("cuModuleUnload");
    std::lock_guard<std::mutex> lock(drv().mu);
    if (!drv().modules.erase(mod)) return kInvalidHandle;
    Module* m = (Module*)mod;
    for (Function* f : m->functions) {
        drv().functions.erase(f);
        delete f;
    }
    delete m;
    return kSuccess;
}

JG_API CUresult cuModuleGetFunction(CUfunction* out, CUmodule mod, const char* name) {
    ENTER("cuModuleGetFunction");
    NEED_CONTEXT();
    if (!out || !name) return kInvalidValue;
    if (!valid_handle(drv().modules, mod)) return kInvalidHandle;
    for (Function* f : ((Module*)mod)->functions)
        if (strcmp(f->kernel->name, name) == 0) {
            *out = f;
            return kSuccess;
        }
    return invalid(kNotFound, std::string("cuModuleGetFunction: the module has no entry '") + name + "'");
}

JG_API CUresult cuFuncGetAttribute(int* value, int attribute, CUfunction fn) {
    ENTER("cuFuncGetAttribute");
    if (!value) return kInvalidValue;
    if (!valid_handle(drv().functions, fn)) return kInvalidHandle;
    Function* f = (Function*)fn;
    switch (attribute) {
    case 0: *value = f->kernel->max_threads ? (int)f->kernel->max_threads : kMaxThreads; break;  // MAX_THREADS_PER_BLOCK
    case 8: *value = f->max_dynamic_shared; break;   // MAX_DYNAMIC_SHARED_SIZE_BYTES
    default: *value = 0; break;
    }
    return kSuccess;
}

JG_API CUresult cuFuncSetAttribute(CUfunction fn, int attribute, int value) {
    ENTER("cuFuncSetAttribute");
    if (!valid_handle(drv().functions, fn)) return kInvalidHandle;
    Function* f = (Function*)fn;
    if (attribute == 8) {
        if (value < 0 || value > kOptinShared) return kInvalidValue;
        f->max_dynamic_shared = value;
    }
    return kSuccess;
}

JG_API CUresult cuFuncSetCacheConfig(CUfunction fn, int config) {
    ENTER("cuFuncSetCacheConfig");
    (void)config;
    return valid_handle(drv().functions, fn) ? kSuccess : kInvalidHandle;
}

// ---- launches -----------------------------------------------------------------------------

JG_API CUresult cuLaunchKernel(CUfunction fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                               unsigned bz, unsigned shared_bytes, CUstream s, void** params, void** extra) {
    ENTER("cuLaunchKernel");
    NEED_CONTEXT();
    if (!valid_handle(drv().functions, fn) || !valid_stream(s)) return kInvalidHandle;
    Function* f = (Function*)fn;
    const KernelEntry* k = f->kernel;
    std::string name = k->name;
    if (extra) return invalid(kInvalidValue, "cuLaunchKernel " + name + ": the 'extra' parameter form is not supported");
    if (!gx || !gy || !gz || !bx || !by || !bz)
        return invalid(kInvalidValue, "cuLaunchKernel " + name + ": a grid or block dimension is 0");
    if (bx > 1024 || by > 1024 || bz > 64 || (unsigned long long)bx * by * bz > kMaxThreads)
        return invalid(kInvalidValue, "cuLaunchKernel " + name + ": block (" + std::to_string(bx) + "," +
                                          std::to_string(by) + "," + std::to_string(bz) +
                                          ") exceeds 1024 threads (or 1024 x 1024 x 64)");
    if (gx > 2147483647u || gy > 65535 || gz > 65535)
        return invalid(kInvalidValue, "cuLaunchKernel " + name + ": grid dimension too large");
    if ((int)shared_bytes > f->max_dynamic_shared)
        return invalid(kInvalidValue, "cuLaunchKernel " + name + ": " + std::to_string(shared_bytes) +
                                          " bytes of dynamic shared memory exceed the function's limit of " +
                                          std::to_string(f->max_dynamic_shared) +
                                          " (raise it with cuFuncSetAttribute)");
    if (k->num_params && !params) return invalid(kInvalidValue, "cuLaunchKernel " + name + ": kernelParams is null");
    // Copy the parameters (as the driver does at launch) and check every pointer argument.
    std::vector<std::vector<unsigned char>> copies(k->num_params);
    std::vector<void*> args(k->num_params);
    for (size_t i = 0; i < k->num_params; ++i) {
        if (!params[i]) return invalid(kInvalidValue, "cuLaunchKernel " + name + ": kernelParams[" + std::to_string(i) + "] is null");
        copies[i].assign((unsigned char*)params[i], (unsigned char*)params[i] + k->params[i].size);
        copies[i].resize(k->params[i].size + 16);  // room for alignment-safe loads
        args[i] = copies[i].data();
        if (k->params[i].pointer) {
            uintptr_t p = load_param<uintptr_t>(args[i]);
            if (p && !device_range(p, 0, nullptr))
                return invalid(kInvalidValue, "cuLaunchKernel " + name + ": pointer parameter " + std::to_string(i) +
                                                  " is " + device_describe(p));
        }
    }
    {
        std::lock_guard<std::mutex> lock(drv().mu);
        KernelStats& st = drv().stats[name];
        st.launches++;
        st.block_sizes.insert(bx * by * bz);
        st.grid_sizes.insert((unsigned long long)gx * gy * gz);
        if (shared_bytes > st.max_dynamic_shared) st.max_dynamic_shared = shared_bytes;
    }
    LaunchShape shape{dim3{gx, gy, gz}, dim3{bx, by, bz}, shared_bytes,
                      (size_t)std::max(kDefaultShared, f->max_dynamic_shared)};
    LaunchError e = launch(k, shape, args.data());
    if (e.code == kSuccess) return kSuccess;
    if (e.code == kLaunchOutOfResources || e.code == kOutOfMemory) return invalid(e.code, e.message);
    set_sticky_error(e.code, e.message);
    return e.code;
}

JG_API CUresult cuLaunchCooperativeKernel(CUfunction fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                                          unsigned by, unsigned bz, unsigned shared_bytes, CUstream s, void** params) {
    note_call("cuLaunchCooperativeKernel");
    (void)fn, (void)gx, (void)gy, (void)gz, (void)bx, (void)by, (void)bz, (void)shared_bytes, (void)s, (void)params;
    return invalid(kNotSupported, "cooperative launches (grid-wide sync) are not emulated");
}

// ---- for tests: the launch table -----------------------------------------------------------

/// One line per kernel launched so far: "name\tlaunches\tblock sizes (comma-separated)\n",
/// then one line per kernel compiled into the executor: "compiled\tname\tmodule\n".
JG_API const char* jg_emu_launch_report() {
    static thread_local std::string out;
    out = launch_report();
    for (const KernelEntry* k : all_kernels()) out += std::string("compiled\t") + k->name + "\t" + k->module + "\n";
    return out.c_str();
}

/// The directory of this build (the parent of the lib/ directory this library was loaded
/// from), where the executor's self-test program lies; for tests that find the stand-in loaded.
JG_API const char* jg_emu_install_dir() {
    static std::string dir = [] {
        Dl_info info;
        if (!dladdr((void*)&jg_emu_install_dir, &info) || !info.dli_fname) return std::string();
        std::string p = info.dli_fname;
        for (int up = 0; up < 2; ++up) {
            size_t slash = p.rfind('/');
            p = slash == std::string::npos ? std::string(".") : p.substr(0, slash);
        }
        return p;
    }();
    return dir.c_str();
}
