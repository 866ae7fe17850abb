// bench.c: machine ceilings measured in the same run as the benchmarks they judge: a
// STREAM-like read of a large buffer (all pool threads) and the fp32 FMA peak.
#include <immintrin.h>
#include <stdint.h>
#include <time.h>
#include "internal.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl")))

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

TGT static float read_avx512(const float *p, size_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 64 <= n; i += 64) {
        a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
        a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

static float read_scalar(const float *p, size_t n) {
    float s = 0;
    for (size_t i = 0; i < n; i += 16) s += p[i];  // one load per cache line still moves the line
    return s;
}

typedef struct {
    const float *p;
    size_t per_task;
    volatile float sink[256];
} read_job;

static void read_task(void *ctx, int task) {
    read_job *j = (read_job *)ctx;
    const float *p = j->p + (size_t)task * j->per_task;
    j->sink[task & 255] = ck_use_avx512() ? read_avx512(p, j->per_task) : read_scalar(p, j->per_task);
}

double ck_bench_read_gbps(const float *buffer, size_t floats, int repeats) {
    int threads = ck_pool_threads();
    size_t per = floats / (size_t)threads / 64 * 64;
    read_job job = {buffer, per, {0}};
    (void)job.sink[0];
    // The median of the passes: this machine's bandwidth varies a lot from moment to
    // moment, and the best pass would flatter the ceiling less honestly than the median.
    double v[64];
    if (repeats > 64) repeats = 64;
    if (repeats < 1) repeats = 1;
    for (int r = 0; r < repeats; r++) {
        double t0 = now();
        ck_pool_run(threads, read_task, &job);
        double dt = now() - t0;
        v[r] = (double)(per * (size_t)threads * 4) / dt / 1e9;
    }
    for (int i = 1; i < repeats; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) { double t = v[j]; v[j] = v[j - 1]; v[j - 1] = t; }
    return v[repeats / 2];
}

TGT static float fma_avx512(long iters) {
    __m512 a[12];
    __m512 m = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iters; it++) {
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], m, b);
    }
    __m512 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float fma_avx2(long iters) {
    __m256 a[12];
    __m256 m = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < iters; it++) {
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], m, b);
    }
    __m256 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, a[i]);
    float v[8];
    _mm256_storeu_ps(v, s);
    return v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
}

typedef struct {
    long iters;
    volatile float sink[256];
} fma_job;

static void fma_task(void *ctx, int task) {
    fma_job *j = (fma_job *)ctx;
    j->sink[task & 255] = ck_use_avx512() ? fma_avx512(j->iters) : fma_avx2(j->iters);
}

/// The peak of the widest FMA the kernels use (AVX-512, else AVX2); 0 on machines with neither.
double ck_bench_fma_gflops(int threads_to_use, long iters) {
    int lanes = ck_use_avx512() ? 16 : (ck_use_avx2() ? 8 : 0);
    if (lanes == 0) return 0;
    fma_job job = {iters, {0}};
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = now();
        if (threads_to_use <= 1) fma_task(&job, 0); else ck_pool_run(threads_to_use, fma_task, &job);
        double dt = now() - t0;
        int n = threads_to_use <= 1 ? 1 : threads_to_use;
        double g = (double)iters * 12 * lanes * 2 * n / dt / 1e9;
        if (g > best) best = g;
    }
    return best;
}
