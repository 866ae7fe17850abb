// matvec_shapes.c: the BF16 product y = x · Wᵀ of T decode tokens (default 1) through
// ck_matmul_auto (the model's call) for an N × K weight matrix, over enough copies of it
// (~600 MB) that every call reads its weights from DRAM; best of 20 calls, GB/s of weights;
// then the read ceiling of the same threads (ck_bench_read_gbps, median of 5 passes over 512 MB). Build and run (THREADS N K [T]):
//   clang -O3 -o /tmp/mvs bench/matvec_shapes.c kernels/*.c -Ikernels/include -lpthread -lm
//   /tmp/mvs 2 129280 256    # dsv4-tiny's vocabulary projection
//   /tmp/mvs 2 4096 1024
//   /tmp/mvs 2 4096 1024 8   # eight streams' batched decode step
#include "../kernels/include/ckernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    size_t N = argc > 2 ? (size_t)atol(argv[2]) : 129280, K = argc > 3 ? (size_t)atol(argv[3]) : 256;
    size_t T = argc > 4 ? (size_t)atol(argv[4]) : 1;
    ck_pool_init(threads);
    size_t copies = ((size_t)600 << 20) / (N * K * 2) + 1;
    uint16_t *w = aligned_alloc(64, (copies * N * K * 2 + 63) / 64 * 64);
    for (size_t i = 0; i < copies * N * K; i++) w[i] = (uint16_t)(0x3f80 + i % 7);
    float *x = malloc(T * K * 4), *y = malloc(T * N * 4);
    for (size_t i = 0; i < T * K; i++) x[i] = 0.01f * (float)(i % 97);
    double best = 1e30;
    for (int r = 0; r < 20; r++) {
        double t0 = now();
        ck_matmul_auto(x, K, T, K, w + (r % copies) * N * K, CK_DTYPE_BF16, N, y, N);
        double dt = now() - t0;
        best = dt < best ? dt : best;
    }
    size_t floats = (size_t)128 << 20;
    float *buf = aligned_alloc(64, floats * 4);
    for (size_t i = 0; i < floats; i++) buf[i] = (float)i;
    double ceiling = ck_bench_read_gbps(buf, floats, 5);
    printf("%s, %d threads, T=%zu N=%zu K=%zu: %.3f ms, %.2f GB/s of weights; read ceiling %.2f GB/s (%.0f%%)\n",
           ck_impl_name(), threads, T, N, K, best * 1e3, N * K * 2 / best / 1e9, ceiling, 100 * N * K * 2 / best / 1e9 / ceiling);
    return 0;
}
