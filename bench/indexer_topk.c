// indexer_topk.c: the fused Lightning-Indexer top-k (ck_indexer_topk) on dsv4-tiny's indexer
// shape (8 heads × 64, top-64) at a given depth: a prefill block of T queries, or one decode
// query, against `visible` keys in tiles; GFLOP/s (2·T·H·d·visible) against the FMA peak of
// the same threads measured right after. Build and run (THREADS VISIBLE T):
//   clang -O3 -o /tmp/idx bench/indexer_topk.c kernels/*.c -Ikernels/include -lpthread -lm
//   /tmp/idx 2 262144 64     # a 64-query prefill block at 1M tokens of context (ratio 4)
//   /tmp/idx 2 262144 1      # one decode token there
#include "../kernels/include/ckernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    size_t n = argc > 2 ? (size_t)atol(argv[2]) : 262144, T = argc > 3 ? (size_t)atol(argv[3]) : 1;
    ck_pool_init(threads);
    size_t H = 8, d = 64, k = 64;
    n = (n + CK_INDEXER_TILE - 1) / CK_INDEXER_TILE * CK_INDEXER_TILE;
    float *q = malloc(T * H * d * 4), *w = malloc(T * H * 4), *keys = malloc(n * d * 4);
    srand(1);
    for (size_t i = 0; i < T * H * d; i++) q[i] = rand() / (float)RAND_MAX - 0.5f;
    for (size_t i = 0; i < T * H; i++) w[i] = rand() / (float)RAND_MAX - 0.5f;
    for (size_t i = 0; i < n * d; i++) keys[i] = rand() / (float)RAND_MAX - 0.5f;
    const float **tiles = malloc(n / CK_INDEXER_TILE * sizeof(float *));
    for (size_t i = 0; i < n / CK_INDEXER_TILE; i++) tiles[i] = keys + i * CK_INDEXER_TILE * d;
    int32_t *vis = malloc(T * 4), *out = malloc(T * k * 4);
    for (size_t t = 0; t < T; t++) vis[t] = (int32_t)(n - T + t + 1);
    ck_indexer_topk(q, w, T, H, d, 0.125f, tiles, vis, k, out);
    int reps = 5;
    double t0 = now();
    for (int r = 0; r < reps; r++) ck_indexer_topk(q, w, T, H, d, 0.125f, tiles, vis, k, out);
    double dt = (now() - t0) / reps, gf = 2.0 * T * H * d * n / dt / 1e9, peak = ck_bench_fma_gflops(threads, 20000000);
    printf("%s, %d threads, T=%zu, visible=%zu: %.3f ms per call, %.1f GFLOP/s = %.0f%% of the FMA peak (%.1f), %.2f GB/s of keys\n",
           ck_impl_name(), threads, T, n, dt * 1e3, gf, 100 * gf / peak, peak, n * d * 4 / dt / 1e9);
    return 0;
}
