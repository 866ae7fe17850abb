// attend_ranges.c: block attention over shared keys (ck_attend_ranges) against the per-query
// path it replaces (ck_attend per query over gathered key pointers, one pool task per query,
// as Attention.swift runs it), on a V4 shape (8 heads × 128): T queries of a prefill chunk
// that each see all E compressed entries (HCA) and their own 128-key window, or one decode
// query. GFLOP/s = 4·T·H·d·visible / time (scores and weighted sum) against the FMA peak of
// the same threads measured in the same run. Build and run (THREADS E T):
//   clang -O3 -o /tmp/attr bench/attend_ranges.c kernels/*.c -Ikernels/include -lpthread -lm
//   /tmp/attr 2 8192 512     # a 512-query chunk at 8K compressed entries (1M tokens, HCA)
//   /tmp/attr 2 0 512        # the sliding window alone
//   /tmp/attr 2 8064 1       # one decode query over 8,192 keys
#include "../kernels/include/ckernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

typedef struct {
    const float *q;
    size_t H, d, E, W;
    const float *const *keys;
    const float *sinks;
    float *out;
} per_query;

// The per-query path: gather query t's keys (window, then compressed entries, as
// Attention.swift does) and call ck_attend with a fresh scratch.
static void per_query_task(void *ctx, int task) {
    const per_query *p = ctx;
    size_t t = (size_t)task, n = p->W + p->E;
    const float **g = malloc(n * sizeof(float *));
    float *scratch = malloc(p->H * n * sizeof(float));
    size_t m = 0;
    for (size_t k = 0; k < p->W; k++) g[m++] = p->keys[p->E + t + k];
    for (size_t k = 0; k < p->E; k++) g[m++] = p->keys[k];
    ck_attend(p->q + t * p->H * p->d, p->H, p->d, g, m, p->sinks, 0.08838834764f, scratch, p->out + t * p->H * p->d);
    free(g);
    free(scratch);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    size_t E = argc > 2 ? (size_t)atol(argv[2]) : 8192, T = argc > 3 ? (size_t)atol(argv[3]) : 512;
    size_t H = 8, d = 128, W = 128, n = E + T + W - 1;
    ck_pool_init(threads);
    float *q = malloc(T * H * d * 4), *kv = malloc(n * d * 4), *sinks = malloc(H * 4);
    float *out = malloc(T * H * d * 4), *out2 = malloc(T * H * d * 4);
    srand(1);
    for (size_t i = 0; i < T * H * d; i++) q[i] = rand() / (float)RAND_MAX - 0.5f;
    for (size_t i = 0; i < n * d; i++) kv[i] = rand() / (float)RAND_MAX - 0.5f;
    for (size_t h = 0; h < H; h++) sinks[h] = rand() / (float)RAND_MAX;
    const float **keys = malloc(n * sizeof(float *));
    for (size_t k = 0; k < n; k++) keys[k] = kv + k * d;
    int32_t *ranges = malloc(T * 16);
    for (size_t t = 0; t < T; t++) {
        ranges[4 * t] = 0;
        ranges[4 * t + 1] = (int32_t)E;
        ranges[4 * t + 2] = (int32_t)(E + t);
        ranges[4 * t + 3] = (int32_t)(E + t + W);
    }
    per_query pq = {q, H, d, E, W, keys, sinks, out2};
    double flops = 4.0 * T * H * d * (E + W);
    int reps = flops > 4e9 ? 3 : (flops > 1e8 ? 5 : 200);
    // Best of `reps` calls each, alternating (the host's cores are shared: the best call is
    // the least disturbed one).
    double dt = 1e30, dq = 1e30;
    ck_attend_ranges(q, T, H, d, keys, n, ranges, sinks, 0.08838834764f, out);
    ck_pool_run((int)T, per_query_task, &pq);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        ck_attend_ranges(q, T, H, d, keys, n, ranges, sinks, 0.08838834764f, out);
        double t1 = now();
        ck_pool_run((int)T, per_query_task, &pq);
        double t2 = now();
        dt = t1 - t0 < dt ? t1 - t0 : dt;
        dq = t2 - t1 < dq ? t2 - t1 : dq;
    }
    double err = 0;
    for (size_t i = 0; i < T * H * d; i++) {
        double e = out[i] - out2[i];
        e = e < 0 ? -e : e;
        err = e > err ? e : err;
    }
    double peak = ck_bench_fma_gflops(threads, 20000000), gf = flops / dt / 1e9, gq = flops / dq / 1e9;
    printf("%s, %d threads, T=%zu, E=%zu + window %zu: ck_attend_ranges %.3f ms, %.1f GFLOP/s = %.0f%% of the FMA peak (%.1f); "
           "per-query ck_attend %.3f ms, %.1f GFLOP/s = %.0f%%; %.2fx faster (max |Δ| %.1e)\n",
           ck_impl_name(), threads, T, E, W, dt * 1e3, gf, 100 * gf / peak, peak, dq * 1e3, gq, 100 * gq / peak, dq / dt, err);
    return 0;
}
