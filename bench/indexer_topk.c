// indexer_topk.c: the fused Lightning-Indexer top-k (ck_indexer_topk) on dsv4-tiny's indexer
// shape (8 heads × 64, top-64) at a given depth: a prefill block of T queries, or one decode
// query, against `visible` keys in tiles; GFLOP/s (2·T·H·d·visible) against the FMA peak of
// the same threads measured right after; with 1 thread both are timed by the thread's CPU
// time, best of the repeats (DSV4_REPS, default 5): the figures that still mean something while
// others share the cores. The keys as fp32 tiles (ck_indexer_topk), bf16 tiles
// (ck_indexer_topk_bf16) or 8-bit tiles (ck_indexer_topk_i8; GFLOP/s counts the same
// 2·T·H·d·visible as fp32, done as integer multiply-adds). Build and run (THREADS VISIBLE T
// [f32|bf16|i8]):
//   clang -O3 -o /tmp/idx bench/indexer_topk.c kernels/*.c -Ikernels/include -lpthread -lm
//   /tmp/idx 2 262144 64     # a 64-query prefill block at 1M tokens of context (ratio 4)
//   /tmp/idx 2 262144 1      # one decode token there
//   /tmp/idx 2 262144 64 i8  # the prefill block with the fp8 cache's 8-bit keys
//   /tmp/idx 1 262144 64     # one thread, by CPU time (old vs new: bench/RESULTS.md)
#include "../kernels/include/ckernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double clock_s(clockid_t c) { struct timespec t; clock_gettime(c, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static double now(void) { return clock_s(CLOCK_MONOTONIC); }
static double cpu_now(void) { return clock_s(CLOCK_THREAD_CPUTIME_ID); }

// The single-thread FMA peak by this thread's CPU time: ck_bench_fma_gflops runs 3 passes of
// iters × 12 FMAs of `lanes` lanes; best of `reps` such calls.
static double fma_peak_cpu(int reps) {
    long iters = 20000000;
    int lanes = !strcmp(ck_impl_name(), "avx512") ? 16 : 8;
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = cpu_now();
        ck_bench_fma_gflops(1, iters);
        double g = 3.0 * iters * 12 * lanes * 2 / (cpu_now() - t0) / 1e9;
        best = g > best ? g : best;
    }
    return best;
}
int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    const char *format = argc > 4 ? argv[4] : "f32";
    int bf16 = !strcmp(format, "bf16"), i8 = !strcmp(format, "i8");
    if (!bf16 && !i8 && strcmp(format, "f32")) { fprintf(stderr, "format: f32, bf16 or i8\n"); return 1; }
    size_t n = argc > 2 ? (size_t)atol(argv[2]) : 262144, T = argc > 3 ? (size_t)atol(argv[3]) : 1;
    ck_pool_init(threads);
    size_t H = 8, d = 64, k = 64;
    n = (n + CK_INDEXER_TILE - 1) / CK_INDEXER_TILE * CK_INDEXER_TILE;
    float *q = malloc(T * H * d * 4), *w = malloc(T * H * 4), *keys = malloc(n * d * 4);
    srand(1);
    for (size_t i = 0; i < T * H * d; i++) q[i] = rand() / (float)RAND_MAX - 0.5f;
    for (size_t i = 0; i < T * H; i++) w[i] = rand() / (float)RAND_MAX - 0.5f;
    for (size_t i = 0; i < n * d; i++) keys[i] = rand() / (float)RAND_MAX - 0.5f;
    size_t count = n / CK_INDEXER_TILE;
    const void **tiles = malloc(count * sizeof(void *));
    size_t tile_bytes = i8 ? CK_INDEXER_TILE_I8_BYTES(d) : (bf16 ? CK_INDEXER_TILE_BF16_BYTES(d) : d * CK_INDEXER_TILE * 4);
    // DSV4_TILE_STRIDE=B: i8/bf16 tiles two to a B-byte block, as the engine's history pages
    // hold them (one page: every layer's entries for 128 positions, ~22 KB in fp8); 0: packed.
    size_t stride = getenv("DSV4_TILE_STRIDE") ? (size_t)atol(getenv("DSV4_TILE_STRIDE")) : 0;
    size_t span = stride ? (count + 1) / 2 * stride : count * tile_bytes;
    char *packed = i8 || bf16 ? aligned_alloc(64, (span + 63) / 64 * 64) : NULL;
    for (size_t i = 0; i < count; i++)
        tiles[i] = packed ? (const void *)(packed + (stride ? i / 2 * stride + i % 2 * tile_bytes : i * tile_bytes))
                          : keys + i * CK_INDEXER_TILE * d;
    float *row = malloc(d * 4);  // entry s, gathered from the fp32 tile
    for (size_t s = 0; packed && s < n; s++) {
        for (size_t i = 0; i < d; i++) row[i] = keys[(s / CK_INDEXER_TILE) * CK_INDEXER_TILE * d + i * CK_INDEXER_TILE + s % CK_INDEXER_TILE];
        if (i8) ck_indexer_store_i8(row, d, (void *)tiles[s / CK_INDEXER_TILE], s % CK_INDEXER_TILE);
        else ck_indexer_store_bf16(row, d, (void *)tiles[s / CK_INDEXER_TILE], s % CK_INDEXER_TILE);
    }
    int32_t *vis = malloc(T * 4), *out = malloc(T * k * 4);
    for (size_t t = 0; t < T; t++) vis[t] = (int32_t)(n - T + t + 1);
    int reps = getenv("DSV4_REPS") ? atoi(getenv("DSV4_REPS")) : 5;
    double t0 = 0, best_cpu = 1e30;
    for (int r = -1; r < reps; r++) {  // r = -1: warm-up
        if (r == 0) t0 = now();
        double c0 = cpu_now();
        if (i8) ck_indexer_topk_i8(q, w, T, H, d, 0.125f, tiles, vis, k, out);
        else if (bf16) ck_indexer_topk_bf16(q, w, T, H, d, 0.125f, tiles, vis, k, out);
        else ck_indexer_topk(q, w, T, H, d, 0.125f, (const float *const *)tiles, vis, k, out);
        if (r >= 0 && cpu_now() - c0 < best_cpu) best_cpu = cpu_now() - c0;
    }
    double dt = (now() - t0) / reps;
    if (threads == 1) dt = best_cpu;
    double gf = 2.0 * T * H * d * n / dt / 1e9;
    double peak = threads == 1 ? fma_peak_cpu(3) : ck_bench_fma_gflops(threads, 20000000);
    printf("%s %s, %d thread%s, T=%zu, visible=%zu: %.3f ms per call, %.1f GFLOP/s = %.0f%% of the FMA peak (%.1f), %.2f GB/s of keys\n",
           format, ck_impl_name(), threads, threads == 1 ? " (thread CPU time, best)" : "s (wall)", T, n, dt * 1e3, gf, 100 * gf / peak, peak, count * tile_bytes / dt / 1e9);
    return 0;
}
