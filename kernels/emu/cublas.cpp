// The stand-in cuBLAS (the same library, also reached as libcublas.so.13): the handful of
// calls cudarc's CudaBlas makes for jetgen — create/destroy, stream and pointer mode, and
// single/double GEMM, plain and strided-batched.
//
// GEMM is the column-major BLAS definition, C = α op(A) op(B) + β C, summed over k in order
// in the element type (no FMA). As cuBLAS specifies, C is not read when β = 0, and A and B
// are not read when α = 0 or k = 0. Every matrix's extent (leading dimension, batch stride)
// must lie inside one live device allocation; arguments are validated as cuBLAS does
// (CUBLAS_STATUS_INVALID_VALUE), and an out-of-range operand is a kernel fault: the context
// becomes unusable (CUBLAS_STATUS_EXECUTION_FAILED, CUDA_ERROR_ILLEGAL_ADDRESS thereafter).
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <mutex>
#include <set>
#include <string>

#include "driver.h"
#include "executor.h"
#include "memory.h"

#define JG_API extern "C" __attribute__((visibility("default")))

typedef int cublasStatus_t;
typedef int cublasOperation_t;

namespace {

constexpr int kOk = 0;
constexpr int kNotInitialized = 1;
constexpr int kInvalid = 7;
constexpr int kExecutionFailed = 13;
constexpr int kNotSupported = 15;

constexpr int kOpN = 0, kOpT = 1, kOpC = 2;

struct Handle {
    void* stream = nullptr;
    int pointer_mode = 0;  // 0 host, 1 device
    int math_mode = 0;
};

std::mutex mu;
std::set<Handle*>& handles() {
    static std::set<Handle*>* h = new std::set<Handle*>;
    return *h;
}

Handle* valid(void* h) {
    std::lock_guard<std::mutex> lock(mu);
    return handles().count((Handle*)h) ? (Handle*)h : nullptr;
}

cublasStatus_t invalid(const std::string& msg) {
    jg_emu::report(jg_emu::kInvalidValue, msg);
    return kInvalid;
}

// Bytes spanned by a column-major rows x cols matrix with leading dimension ld, `batch`
// copies `stride` elements apart; false when the extent is not inside one live allocation.
template <class T>
bool operand_ok(const char* api, const char* which, const T* p, long long rows, long long cols, long long ld,
                long long stride, long long batch) {
    if (rows == 0 || cols == 0 || batch == 0) return true;
    long long last = (rows - 1) + (cols - 1) * ld;
    long long lo = 0, hi = last;
    if (stride >= 0) hi += stride * (batch - 1);
    else lo += stride * (batch - 1);
    uintptr_t start = (uintptr_t)p + (uintptr_t)(lo * (long long)sizeof(T));
    size_t bytes = (size_t)(hi - lo + 1) * sizeof(T);
    if (jg_emu::device_range(start, bytes, nullptr)) return true;
    char buf[200];
    snprintf(buf, sizeof buf, "%s: matrix %s (%lld x %lld, ld %lld, stride %lld, batch %lld) reaches ", api, which, rows,
             cols, ld, stride, batch);
    jg_emu::set_sticky_error(jg_emu::kIllegalAddress,
                             std::string(buf) + std::to_string(bytes) + " bytes from " + jg_emu::device_describe(start) +
                                 ", outside one live device allocation");
    return false;
}

template <class T>
T scalar(const Handle* h, const T* p) {
    T v;
    memcpy(&v, p, sizeof(T));  // host or device memory alike: both are host addresses here
    (void)h;
    return v;
}

template <class T>
cublasStatus_t gemm(const char* api, void* handle, int ta, int tb, long long m, long long n, long long k,
                    const T* alpha_p, const T* a, long long lda, long long sa, const T* b, long long ldb,
                    long long sb, const T* beta_p, T* c, long long ldc, long long sc, long long batch) {
    jg_emu::note_call(api);
    Handle* h = valid(handle);
    if (!h) return kNotInitialized;
    if (jg_emu::sticky_error()) return kExecutionFailed;
    if ((ta != kOpN && ta != kOpT && ta != kOpC) || (tb != kOpN && tb != kOpT && tb != kOpC))
        return invalid(std::string(api) + ": unknown transpose operation");
    long long arows = ta == kOpN ? m : k, acols = ta == kOpN ? k : m;
    long long brows = tb == kOpN ? k : n, bcols = tb == kOpN ? n : k;
    auto mx1 = [](long long v) { return v > 1 ? v : 1; };
    if (m < 0 || n < 0 || k < 0 || batch < 0 || lda < mx1(arows) || ldb < mx1(brows) || ldc < mx1(m)) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s: invalid sizes m=%lld n=%lld k=%lld lda=%lld ldb=%lld ldc=%lld batch=%lld", api, m,
                 n, k, lda, ldb, ldc, batch);
        return invalid(buf);
    }
    if (!alpha_p || !beta_p) return invalid(std::string(api) + ": alpha or beta is null");
    if (m == 0 || n == 0 || batch == 0) return kOk;
    if (h->pointer_mode == 1) {
        if (!operand_ok(api, "alpha", alpha_p, 1, 1, 1, 0, 1) || !operand_ok(api, "beta", beta_p, 1, 1, 1, 0, 1))
            return kExecutionFailed;
    }
    T alpha = scalar(h, alpha_p), beta = scalar(h, beta_p);
    bool use_ab = alpha != T(0) && k > 0;
    if (use_ab && (!operand_ok(api, "A", a, arows, acols, lda, sa, batch) ||
                   !operand_ok(api, "B", b, brows, bcols, ldb, sb, batch)))
        return kExecutionFailed;
    if (!operand_ok(api, "C", c, m, n, ldc, sc, batch)) return kExecutionFailed;
    for (long long q = 0; q < batch; ++q) {
        const T* A = a + q * sa;
        const T* B = b + q * sb;
        T* C = c + q * sc;
        for (long long j = 0; j < n; ++j) {
            for (long long i = 0; i < m; ++i) {
                T acc = T(0);
                if (use_ab) {
                    for (long long p = 0; p < k; ++p) {
                        T av = ta == kOpN ? A[i + p * lda] : A[p + i * lda];
                        T bv = tb == kOpN ? B[p + j * ldb] : B[j + p * ldb];
                        acc += av * bv;
                    }
                }
                T out = alpha * acc;
                if (beta != T(0)) out += beta * C[i + j * ldc];
                C[i + j * ldc] = out;
            }
        }
    }
    return kOk;
}

}  // namespace

JG_API cublasStatus_t cublasCreate_v2(void** handle) {
    jg_emu::note_call("cublasCreate_v2");
    if (!handle) return kInvalid;
    Handle* h = new Handle;
    std::lock_guard<std::mutex> lock(mu);
    handles().insert(h);
    *handle = h;
    return kOk;
}

JG_API cublasStatus_t cublasDestroy_v2(void* handle) {
    jg_emu::note_call("cublasDestroy_v2");
    std::lock_guard<std::mutex> lock(mu);
    if (!handles().erase((Handle*)handle)) return kNotInitialized;
    delete (Handle*)handle;
    return kOk;
}

JG_API cublasStatus_t cublasSetStream_v2(void* handle, void* stream) {
    jg_emu::note_call("cublasSetStream_v2");
    Handle* h = valid(handle);
    if (!h) return kNotInitialized;
    h->stream = stream;
    return kOk;
}

JG_API cublasStatus_t cublasGetStream_v2(void* handle, void** stream) {
    jg_emu::note_call("cublasGetStream_v2");
    Handle* h = valid(handle);
    if (!h) return kNotInitialized;
    if (!stream) return kInvalid;
    *stream = h->stream;
    return kOk;
}

JG_API cublasStatus_t cublasSetPointerMode_v2(void* handle, int mode) {
    jg_emu::note_call("cublasSetPointerMode_v2");
    Handle* h = valid(handle);
    if (!h) return kNotInitialized;
    if (mode != 0 && mode != 1) return kInvalid;
    h->pointer_mode = mode;
    return kOk;
}

JG_API cublasStatus_t cublasGetPointerMode_v2(void* handle, int* mode) {
    jg_emu::note_call("cublasGetPointerMode_v2");
    Handle* h = valid(handle);
    if (!h) return kNotInitialized;
    if (!mode) return kInvalid;
    *mode = h->pointer_mode;
    return kOk;
}

JG_API cublasStatus_t cublasSetMathMode(void* handle, int mode) {
    jg_emu::note_call("cublasSetMathMode");
    Handle* h = valid(handle);
    if (!h) return kNotInitialized;
    h->math_mode = mode;
    return kOk;
}

JG_API cublasStatus_t cublasGetMathMode(void* handle, int* mode) {
    jg_emu::note_call("cublasGetMathMode");
    Handle* h = valid(handle);
    if (!h) return kNotInitialized;
    if (!mode) return kInvalid;
    *mode = h->math_mode;
    return kOk;
}

JG_API cublasStatus_t cublasSetWorkspace_v2(void* handle, void* workspace, size_t bytes) {
    jg_emu::note_call("cublasSetWorkspace_v2");
    (void)workspace;
    (void)bytes;
    return valid(handle) ? kOk : kNotInitialized;
}

JG_API cublasStatus_t cublasGetVersion_v2(void* handle, int* version) {
    jg_emu::note_call("cublasGetVersion_v2");
    (void)handle;
    if (!version) return kInvalid;
    *version = 130000;
    return kOk;
}

JG_API cublasStatus_t cublasSgemm_v2(void* h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                     const float* alpha, const float* a, int lda, const float* b, int ldb,
                                     const float* beta, float* c, int ldc) {
    return gemm<float>("cublasSgemm_v2", h, ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1);
}

JG_API cublasStatus_t cublasDgemm_v2(void* h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                     const double* alpha, const double* a, int lda, const double* b, int ldb,
                                     const double* beta, double* c, int ldc) {
    return gemm<double>("cublasDgemm_v2", h, ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1);
}

JG_API cublasStatus_t cublasSgemmStridedBatched(void* h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                                int k, const float* alpha, const float* a, int lda, long long sa,
                                                const float* b, int ldb, long long sb, const float* beta, float* c,
                                                int ldc, long long sc, int batch) {
    return gemm<float>("cublasSgemmStridedBatched", h, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc,
                       sc, batch);
}

JG_API cublasStatus_t cublasDgemmStridedBatched(void* h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                                int k, const double* alpha, const double* a, int lda, long long sa,
                                                const double* b, int ldb, long long sb, const double* beta, double* c,
                                                int ldc, long long sc, int batch) {
    return gemm<double>("cublasDgemmStridedBatched", h, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc,
                        sc, batch);
}

JG_API const char* cublasGetStatusString(cublasStatus_t s) {
    switch (s) {
    case kOk: return "CUBLAS_STATUS_SUCCESS";
    case kNotInitialized: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case kInvalid: return "CUBLAS_STATUS_INVALID_VALUE";
    case kExecutionFailed: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case kNotSupported: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_UNKNOWN";
    }
}
