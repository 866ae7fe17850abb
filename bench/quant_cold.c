// quant_cold.c: one token's FP8 (E4M3, 128 × 128 E8M0 scales) or FP4 (E2M1, E8M0 per 32) product
// over M distinct K × N matrices in turn, so that the weights come from DRAM as in a decode
// step (M·N·K bytes for FP8, half for FP4, well above the L3), wall time, best of 5; GB/s of
// stored weights and a hash of the outputs (old and new kernels must print the same hash).
// Run two at once to load both cores. Build and run ([8|4] K N M):
//   clang -O3 -o /tmp/qc bench/quant_cold.c kernels/*.c -Ikernels/include -Ikernels -lpthread -lm
//   /tmp/qc 8 1024 2048 64; /tmp/qc 8 256 8192 64; /tmp/qc 4 1024 512 512
//   /tmp/qc 8 1024 2048 64 & /tmp/qc 8 1024 2048 64; wait
#include "../kernels/include/ckernels.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s 8|4 K N M\n", argv[0]);
        return 2;
    }
    int fp4 = argv[1][0] == '4';
    size_t K = (size_t)atol(argv[2]), N = (size_t)atol(argv[3]), M = (size_t)atol(argv[4]);
    ck_dtype dt = fp4 ? CK_DTYPE_FP4E2M1 : CK_DTYPE_F8E4M3;
    size_t rb = ck_row_bytes(dt, K), bc = fp4 ? 32 : 128, br = fp4 ? 1 : 128;
    size_t ld = (K + bc - 1) / bc, scales = (N + br - 1) / br * ld;
    uint8_t *w = malloc(M * N * rb), *sc = malloc(M * scales);
    float *x = malloc(K * sizeof(float)), *y = malloc(N * sizeof(float));
    if (!w || !sc || !x || !y) return 1;
    for (size_t i = 0; i < M * N * rb; i++) w[i] = (uint8_t)(rand() & (fp4 ? 0xFF : 0x7E));  // no NaN codes
    for (size_t i = 0; i < M * scales; i++) sc[i] = (uint8_t)((fp4 ? 120 : 118) + rand() % 3);
    for (size_t i = 0; i < K; i++) x[i] = rand() / (float)RAND_MAX - 0.5f;
    double best = 1e9;
    unsigned hash = 0;
    for (int r = 0; r < 5; r++) {
        double t0 = now();
        for (size_t m = 0; m < M; m++) {
            ck_scales s = {sc + m * scales, 0, ld, br, bc, 0};
            ck_matmul_scaled(x, K, 1, K, w + m * N * rb, dt, &s, N, y, N);
            if (r == 0)
                for (size_t n = 0; n < N; n++) {
                    unsigned u;
                    memcpy(&u, &y[n], 4);
                    hash = hash * 31 + u;
                }
        }
        double t = now() - t0;
        if (t < best) best = t;
    }
    printf("%s K %zu N %zu x %zu matrices (%s): %.2f GB/s of weights, %.2f Gweights/s, hash %08x\n", fp4 ? "fp4" : "fp8",
           K, N, M, ck_impl_name(), M * N * rb / best / 1e9, M * N * K / best / 1e9, hash);
    return 0;
}
