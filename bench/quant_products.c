// quant_products.c: one core's FP8 (E4M3, 128×128 E8M0 scales) and FP4 (E2M1, per-32 E8M0
// scales) products over a 2048 × 4096 weight matrix read in place, timed by the thread's CPU
// time (so other processes on a shared machine do not count), best of 41: the product for T
// tokens (ck_matmul_scaled) in GB/s of stored weights, and the row decoding alone
// (ck_decode_rows). On AVX2 machines these are the AVX2 decoders + fp32 product; on AVX-512
// machines the AVX-512 paths. Build and run ([8|4] [T]):
//   clang -O3 -o /tmp/qp bench/quant_products.c kernels/*.c -Ikernels/include -lpthread -lm
//   /tmp/qp 8 1; /tmp/qp 4 1; /tmp/qp 4 64; /tmp/qp 4 1 1024 512   ([K N], default 4096 2048)
#include "../kernels/include/ckernels.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double cpu(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv) {
    int fp4 = argc > 1 && argv[1][0] == '4';
    size_t K = argc > 3 ? (size_t)atol(argv[3]) : 4096, N = argc > 4 ? (size_t)atol(argv[4]) : 2048,
           T = argc > 2 ? (size_t)atol(argv[2]) : 1;
    ck_dtype dt = fp4 ? CK_DTYPE_FP4E2M1 : CK_DTYPE_F8E4M3;
    size_t rb = ck_row_bytes(dt, K), bc = fp4 ? 32 : 128, br = fp4 ? 1 : 128, ld = K / bc;
    size_t scales = (N + br - 1) / br * ld;
    uint8_t *w = malloc(N * rb), *sc = malloc(scales);
    for (size_t i = 0; i < N * rb; i++) w[i] = (uint8_t)(rand() & (fp4 ? 0xFF : 0x7E));  // no NaN codes
    for (size_t i = 0; i < scales; i++) sc[i] = (uint8_t)(120 + i % 8);
    ck_scales s = {sc, 0, ld, br, bc, 0};
    float *x = malloc(T * K * 4), *y = malloc(T * N * 4), *buf = malloc(4 * K * 4);
    for (size_t i = 0; i < T * K; i++) x[i] = rand() / (float)RAND_MAX - 0.5f;
    double best = 1e9, bestd = 1e9;
    for (int r = 0; r < 41; r++) {
        double t0 = cpu();
        ck_matmul_scaled(x, K, T, K, w, dt, &s, N, y, N);
        double t = cpu() - t0;
        if (t < best) best = t;
        t0 = cpu();
        for (size_t n0 = 0; n0 < N; n0 += 4) ck_decode_rows(w, dt, K, &s, n0, 4, buf);
        t = cpu() - t0;
        if (t < bestd) bestd = t;
    }
    printf("%s %s, T=%zu: product %.2f ms = %.2f GB/s of weights; decoding alone %.2f ms = %.2f GB/s\n",
           fp4 ? "fp4" : "fp8", ck_impl_name(), T, best * 1e3, N * rb / best / 1e9, bestd * 1e3, N * rb / bestd / 1e9);
    return 0;
}
