// prefill_products.c: the BF16 product at prefill shapes (tokens × K × N), GFLOP/s of one or more
// threads through ck_matmul_auto, best of 30 (3 for the largest), and the FMA peak measured in
// the same run. On AVX2 machines this times matmul_avx2.c's blocks; on AVX-512 machines their own.
//   clang -O3 -o /tmp/prefill_products bench/prefill_products.c kernels/*.c -Ikernels/include -lpthread -lm
//   /tmp/prefill_products 1; /tmp/prefill_products 2
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "../kernels/include/ckernels.h"
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    ck_pool_init(threads);
    // dsv4-tiny's expert shapes (K = 256), a bench-model-sized square, a narrow one
    size_t shapes[][3] = {{1024, 256, 512}, {1024, 256, 256}, {256, 256, 512}, {4096, 256, 128}, {512, 1024, 1024}, {512, 256, 512}};
    for (int s = 0; s < 6; s++) {
        size_t T = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        float *x = malloc(T * K * 4), *y = malloc(T * N * 4);
        uint16_t *w = malloc(N * K * 2);
        for (size_t i = 0; i < T * K; i++) x[i] = (float)(rand() % 100) / 50 - 1;
        for (size_t i = 0; i < N * K; i++) w[i] = (uint16_t)(0x3f80 + rand() % 64);
        double best = 1e9;
        int reps = (double)T * K * N > 1e9 ? 3 : 30;
        for (int r = 0; r < reps; r++) {
            double t0 = now();
            ck_matmul_auto(x, K, T, K, w, CK_DTYPE_BF16, N, y, N);
            double t = now() - t0;
            if (t < best) best = t;
        }
        printf("T=%zu K=%zu N=%zu: %.1f GFLOP/s\n", T, K, N, 2.0 * T * K * N / best / 1e9);
        free(x); free(y); free(w);
    }
    printf("fp32 FMA peak, %d threads: %.1f GFLOP/s\n", threads, ck_bench_fma_gflops(threads, 20000000));
    return 0;
}
