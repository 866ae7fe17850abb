// lanes_prefill.c: the FP8 / FP4 products of a prefill (more than 8 tokens: rows decoded into a
// block, then fp32 register blocks over it) at the released checkpoints' shapes, one thread, by
// the thread's CPU time (best of 5 after a warm-up call), against the one-core FMA peak measured
// in the same run. Both kernels: the AVX-512 one (quant_lanes.c, through ck_qlanes_matmul, x
// permuted inside the timing) and, on any AVX2 machine, the AVX2 one (quant.c's decoded blocks
// over matmul_avx2.c, x prepared outside it). The old kernels for a comparison: extract them
// with `git archive REV kernels | tar -x -C DIR` and build against DIR instead.
//   clang -O3 -o /tmp/lanes_prefill bench/lanes_prefill.c kernels/*.c -Ikernels/include -Ikernels -lpthread -lm
//   /tmp/lanes_prefill
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "ckernels.h"
#include "internal.h"

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

// The one-core FMA peak by this thread's CPU time (ck_bench_fma_gflops: 3 passes of iters × 12
// FMAs), best of 3.
static double fma_peak(void) {
    long iters = 20000000;
    int lanes = !strcmp(ck_impl_name(), "avx512") ? 16 : 8;
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = cpu_now();
        ck_bench_fma_gflops(1, iters);
        double g = 3.0 * iters * 12 * lanes * 2 / (cpu_now() - t0) / 1e9;
        best = g > best ? g : best;
    }
    return best;
}

int main(void) {
    ck_pool_init(1);
    double peak = fma_peak();
    // tokens × K × N: bench-model shapes (K = 512, 1,024) and V4-Flash's (K = 2,048, 4,096)
    size_t shapes[][3] = {{512, 1024, 512}, {512, 512, 1024}, {64, 1024, 512}, {512, 1024, 1024},
                          {512, 2048, 256}, {512, 2048, 512}, {512, 4096, 256}};
    int avx512 = !strcmp(ck_impl_name(), "avx512");
    printf("one core, FMA peak %.1f GFLOP/s (%s)\n", peak, ck_impl_name());
    for (int path = avx512 ? 0 : 1; path < 2; path++)
        for (int fmt = 0; fmt < 2; fmt++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                size_t T = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
                ck_dtype dt = fmt ? CK_DTYPE_F8E4M3 : CK_DTYPE_FP4E2M1;
                size_t rb = ck_row_bytes(dt, K);
                uint8_t *w = malloc(N * rb);
                for (size_t i = 0; i < N * rb; i++) w[i] = (uint8_t)(rand() & (fmt ? 0x7E : 0xFF));  // no FP8 NaN
                ck_scales sc;
                size_t nsc;
                if (fmt) {
                    sc = (ck_scales){0, 0, (K + 127) / 128, 128, 128, 0};
                    nsc = (N + 127) / 128 * sc.ld;
                } else {
                    sc = (ck_scales){0, 0, K / 32, 1, 32, 0};
                    nsc = N * (K / 32);
                }
                uint8_t *sd = malloc(nsc);
                for (size_t i = 0; i < nsc; i++) sd[i] = (uint8_t)(120 + rand() % 8);
                sc.data = sd;
                size_t Kp = ck_avx2_padded(K);
                float *x = malloc(T * K * 4), *y = malloc(T * N * 4), *xp = aligned_alloc(64, T * Kp * 4 + 64);
                for (size_t i = 0; i < T * K; i++) x[i] = (float)(rand() % 100) / 50 - 1;
                if (path == 1) ck_avx2_prepare_x(x, K, T, K, CK_DTYPE_F32, xp);
                double best = 1e9;
                for (int r = -1; r < 5; r++) {
                    double t0 = cpu_now();
                    if (path == 0) ck_qlanes_matmul(x, K, T, K, w, dt, &sc, N, y, N);
                    else ck_avx2_matmul_scaled_prepared(xp, T, K, w, dt, &sc, N, y, N);
                    double t = cpu_now() - t0;
                    if (r >= 0 && t < best) best = t;
                }
                double gf = 2.0 * T * K * N / best / 1e9;
                printf("%s %s %4zu x %4zu x %4zu: %6.2f ms, %6.1f GFLOP/s = %3.0f%% of the peak\n", path ? "avx2  " : "avx512",
                       fmt ? "fp8" : "fp4", T, K, N, best * 1e3, gf, 100 * gf / peak);
                free(w); free(sd); free(x); free(y); free(xp);
            }
    return 0;
}
