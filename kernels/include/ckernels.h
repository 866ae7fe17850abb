// ckernels.h: the only header Swift sees from the C kernels.
//
// Every kernel has a scalar reference twin (ck_ref_*), always compiled, and a fast path
// chosen once at run time from the CPU's features. Matrices are row-major; a weight matrix
// W of shape [N, K] is applied as y[t][n] = sum_k x[t][k] * W[n][k] (PyTorch's Linear).
#ifndef CKERNELS_H
#define CKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Storage formats a weight matrix can have. Values are stable (used from Swift).
typedef enum {
    CK_DTYPE_F32 = 0,
    CK_DTYPE_BF16 = 1,
    CK_DTYPE_F16 = 2,
} ck_dtype;

/// CPU feature bits found at run time.
enum {
    CK_CPU_AVX2 = 1 << 0,
    CK_CPU_FMA = 1 << 1,
    CK_CPU_AVX512F = 1 << 2,
    CK_CPU_AVX512BW = 1 << 3,
    CK_CPU_AVX512VL = 1 << 4,
    CK_CPU_AVX512BF16 = 1 << 5,
    CK_CPU_AVX512FP16 = 1 << 6,
    CK_CPU_AVX512VNNI = 1 << 7,
};

/// Implementation selector for tests and benchmarks.
typedef enum {
    CK_IMPL_AUTO = 0,    ///< best available
    CK_IMPL_SCALAR = 1,  ///< the reference twins
    CK_IMPL_AVX512 = 2,  ///< AVX-512 F/BW/VL (falls back to scalar if absent)
} ck_impl;

/// Bit mask of CK_CPU_* features of this CPU.
uint32_t ck_cpu_features(void);
/// Forces an implementation for every later call (process-wide); returns the one in force.
ck_impl ck_force_impl(ck_impl impl);
/// Name of the implementation in force ("avx512" or "scalar").
const char *ck_impl_name(void);

/// y[t*ldy + n] = sum_k x[t*ldx + k] * W[n][k] for t < T, n < N; W is [N, K] in `dtype`.
void ck_matmul(const float *x, size_t ldx, size_t T, size_t K, const void *w, ck_dtype dtype, size_t N,
               float *y, size_t ldy);
void ck_ref_matmul(const float *x, size_t ldx, size_t T, size_t K, const void *w, ck_dtype dtype, size_t N,
                   float *y, size_t ldy);

/// The product the model uses: ck_matmul tiled for the caches, its output features split
/// over the thread pool when the work is large enough. Bit-identical to ck_matmul.
void ck_matmul_auto(const float *x, size_t ldx, size_t T, size_t K, const void *w, ck_dtype dtype, size_t N,
                    float *y, size_t ldy);

/// A task of a parallel job.
typedef void (*ck_task_fn)(void *ctx, int task);
/// Starts the kernel thread pool with `threads` threads in all (the caller included; <= 0:
/// one per online CPU). Later calls return the size of the running pool.
int ck_pool_init(int threads);
/// Threads of the pool (1 before ck_pool_init).
int ck_pool_threads(void);
/// Runs fn(ctx, i) for i in [0, tasks) on the pool and the caller; returns when all are done.
void ck_pool_run(int tasks, ck_task_fn fn, void *ctx);

/// One query's attention over `n` gathered keys (V = K) for `H` heads of width `d`: scores
/// scaled by `scale`, softmax with `sinks[h]` in each head's denominator, weighted sum into
/// `out` [H, d] (overwritten). `scratch` holds H·n floats. With n = 0 the output is 0.
void ck_attend(const float *q, size_t H, size_t d, const float *const *keys, size_t n, const float *sinks, float scale,
               float *scratch, float *out);
void ck_ref_attend(const float *q, size_t H, size_t d, const float *const *keys, size_t n, const float *sinks,
                   float scale, float *scratch, float *out);

/// Median read bandwidth (GB/s) over `repeats` passes of all pool threads over `buffer`
/// (64-byte aligned, `floats` values).
double ck_bench_read_gbps(const float *buffer, size_t floats, int repeats);
/// fp32 FMA throughput (GFLOP/s) of `threads` pool threads, 12 independent chains each.
double ck_bench_fma_gflops(int threads, long iters);

/// Converts n values of `dtype` at src to float.
void ck_to_f32(const void *src, ck_dtype dtype, size_t n, float *dst);

/// sum_i a[i]*b[i].
float ck_dot_f32(const float *a, const float *b, size_t n);
float ck_ref_dot_f32(const float *a, const float *b, size_t n);

/// y[i] += alpha * x[i].
void ck_axpy_f32(float alpha, const float *x, float *y, size_t n);
void ck_ref_axpy_f32(float alpha, const float *x, float *y, size_t n);

/// Conversions of single values (reference decoders).
float ck_bf16_to_f32(uint16_t v);
uint16_t ck_f32_to_bf16(float v);
float ck_f16_to_f32(uint16_t v);

#ifdef __cplusplus
}
#endif
#endif
