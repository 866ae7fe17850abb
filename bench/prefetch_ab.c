// prefetch_ab.c: one BF16 row at a time (the decode kernel's loop), 512x1024 matvecs over 1 GB,
// with and without a software prefetch 1 KB ahead, on 1 and 2 threads; GB/s of weights.
//   clang -O3 -march=native -o /tmp/pfab bench/prefetch_ab.c -lpthread && /tmp/pfab
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#define TGT __attribute__((target("avx512f,avx512bw,avx512vl")))
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static int PF;
TGT static void matvec(const float *xp, size_t K, const uint16_t *w, size_t N, float *y) {
    const __m512i zero = _mm512_setzero_si512();
    for (size_t n = 0; n < N; n++) {
        const uint16_t *row = w + n * K;
        __m512 a = _mm512_setzero_ps();
        for (size_t k = 0; k < K; k += 32) {
            if (PF) _mm_prefetch((const char *)(row + k) + 1024, _MM_HINT_T0);
            __m512i v = _mm512_loadu_si512(row + k);
            a = _mm512_fmadd_ps(_mm512_loadu_ps(xp + k), _mm512_castsi512_ps(_mm512_unpacklo_epi16(zero, v)), a);
            a = _mm512_fmadd_ps(_mm512_loadu_ps(xp + k + 16), _mm512_castsi512_ps(_mm512_unpackhi_epi16(zero, v)), a);
        }
        y[n] = _mm512_reduce_add_ps(a);
    }
}
static const size_t N = 512, K = 1024, TOT = (size_t)1 << 30;
static uint16_t *W; static float *X, *Y; static int NT;
static void *work(void *p) {
    long id = (long)p;
    for (size_t i = (size_t)id; i < TOT / (N * K * 2); i += (size_t)NT) matvec(X, K, W + i * N * K, N, Y + id * N);
    return 0;
}
int main(void) {
    W = aligned_alloc(64, TOT); X = aligned_alloc(64, K * 4); Y = malloc(2 * N * 4);
    for (size_t i = 0; i < TOT / 2; i++) W[i] = (uint16_t)(0x3f00 + (i * 37 % 251));
    for (size_t i = 0; i < K; i++) X[i] = (float)(i % 13) * 0.01f;
    for (int rep = 0; rep < 3; rep++)
        for (PF = 0; PF <= 1; PF++)
            for (NT = 1; NT <= 2; NT++) {
                double best = 0;
                for (int r = 0; r < 3; r++) {
                    double t0 = now();
                    pthread_t th[2];
                    for (long i = 0; i < NT; i++) pthread_create(&th[i], 0, work, (void *)i);
                    for (int i = 0; i < NT; i++) pthread_join(th[i], 0);
                    double g = TOT / (now() - t0) / 1e9;
                    if (g > best) best = g;
                }
                printf("prefetch=%d threads=%d: %.2f GB/s (y=%g)\n", PF, NT, best, Y[3]);
            }
}
