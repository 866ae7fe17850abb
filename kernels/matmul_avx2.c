// matmul_avx2.c: y = x · Wᵀ for F32, BF16 and F16 weights on AVX2+FMA machines without
// AVX-512 (Zen 2/3, most client CPUs), read in place.
//
// Every output is the same arithmetic whatever the block shape, tiling, thread count or
// number of tokens (so batches stay bit-identical): K is walked in chunks of 16 with one
// 8-lane accumulator A per output, A += xa·wa then A += xb·wb (FMA), then y = Σ lanes of A
// in a fixed tree (ck_avx2_hsum). (Until 2026-12-07 two accumulators, A += xa·wa and
// B += xb·wb: twice the registers per output, so blocks of 2 × 2 at most.) For BF16, a chunk is one 32-byte load of 16 weights: the even weights are
// the low halves of its 32-bit words shifted up, the odd ones the high halves masked, so x
// is split once per call into its even (xa) and odd (xb) elements, zero-padded to a
// multiple of 16. For F32 and F16, wa and wb are the chunk's two halves and x is used as it
// is. A weight row's last partial chunk is copied into a zeroed 16-value buffer (rows are
// never read past their end).
//
// Blocks: 4 tokens × 2 rows (8 accumulators, two FMAs per chunk each: the chain of one
// accumulator, 2 × 4 cycles, matches the 16 FMAs' issue time) while four tokens remain, then
// 2 × 2, then 1 token × 4 rows (decode), then single rows. One core, BF16 weights, tokens ×
// K × N (bench/prefill_products.c): 1024 × 256 × 512 62 → 72 GFLOP/s, 512 × 1024 × 1024
// 73 → 85 against 2 × 2 blocks of two accumulators; 3 × 3 and 5 × 2 about the same as 4 × 2,
// 2 × 4 and 4 × 3 slower. A block's whole chunks run in a loop without branches (the tail
// chunk and the prefetch choice outside it). A block's first pass over its rows (t0 = 0: the only pass for one
// token, the pass that brings a tile in from DRAM for a batch) prefetches the same line of the
// next block's rows: the hardware prefetchers barely train on a few streams of a few hundred
// bytes each (bench/matvec_shapes.c, 2 threads, Zen 3, GB/s of weights: dsv4-tiny's 129,280 ×
// 256 vocabulary projection 16.9 → 22.6, 8,192 × 512 20.2 → 24.7, 4,096 × 1,024 23.0 → 25.5;
// two tokens 20.7 → 23.8, eight 11.0 → 12.2; bench/RESULTS.md). Prefetches past the last row
// are harmless (they never fault).
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

#define TGT __attribute__((target("avx2,fma,f16c")))
#define CHUNK 16

static size_t padded(size_t K) { return (K + CHUNK - 1) / CHUNK * CHUNK; }

// A whole chunk of 16 weights at `p` as (wa, wb), by storage type.
TGT static inline void lw_f32(const void *p, __m256 *wa, __m256 *wb) {
    *wa = _mm256_loadu_ps((const float *)p);
    *wb = _mm256_loadu_ps((const float *)p + 8);
}
TGT static inline void lw_bf16(const void *p, __m256 *wa, __m256 *wb) {
    __m256i v = _mm256_loadu_si256((const __m256i *)p);
    *wa = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    *wb = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32((int)0xFFFF0000u)));
}
TGT static inline void lw_f16(const void *p, __m256 *wa, __m256 *wb) {
    __m256i v = _mm256_loadu_si256((const __m256i *)p);
    *wa = _mm256_cvtph_ps(_mm256_castsi256_si128(v));
    *wb = _mm256_cvtph_ps(_mm256_extracti128_si256(v, 1));
}


size_t ck_avx2_padded(size_t K) { return padded(K); }

// x prepared for the kernel: [T][Kp], BF16: each chunk's even elements then its odd ones.
TGT static void prepare_rows(const float *x, size_t ldx, size_t T, size_t K, ck_dtype dtype, float *out) {
    size_t Kp = padded(K), whole = K / CHUNK * CHUNK;
    for (size_t t = 0; t < T; t++) {
        const float *xr = x + t * ldx;
        float *o = out + t * Kp;
        if (dtype == CK_DTYPE_BF16) {
            for (size_t c = 0; c < whole; c += CHUNK) {
                __m256 a = _mm256_loadu_ps(xr + c), b = _mm256_loadu_ps(xr + c + 8);
                __m256 ev = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));  // a0 a2 b0 b2 | a4 a6 b4 b6
                __m256 od = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
                ev = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ev), _MM_SHUFFLE(3, 1, 2, 0)));
                od = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(od), _MM_SHUFFLE(3, 1, 2, 0)));
                _mm256_storeu_ps(o + c, ev);
                _mm256_storeu_ps(o + c + 8, od);
            }
            for (size_t e = 0; whole < Kp && e < CHUNK; e++) {
                size_t src = whole + e;
                o[whole + (e % 2) * 8 + e / 2] = src < K ? xr[src] : 0.0f;
            }
        } else {
            memcpy(o, xr, K * sizeof(float));
            for (size_t k = K; k < Kp; k++) o[k] = 0.0f;
        }
    }
}

// A prefill chunk's rows are prepared over the kernel threads (ck_rows_parallel).
void ck_avx2_prepare_x(const float *x, size_t ldx, size_t T, size_t K, ck_dtype dtype, float *out) {
    ck_rows_parallel(prepare_rows, x, ldx, T, K, dtype, padded(K), out);
}

// One block of TB tokens × NB weight rows at (t0, n0); ESZ bytes per weight. The whole chunks
// run in a loop without branches (two copies: the first pass over the rows prefetches, the
// others do not), then the last partial chunk from a zeroed copy: the same FMA chain per
// output in the same order whichever path a chunk takes.
#define BLOCK_STEP(LW, ESZ, TB, NB, src)                                                                \
    do {                                                                                                \
        __m256 wa[NB], wb[NB];                                                                          \
        for (int j = 0; j < NB; j++) LW((src)[j], &wa[j], &wb[j]);                                      \
        for (int i = 0; i < TB; i++) {                                                                  \
            __m256 xa = _mm256_loadu_ps(xp + (t0 + i) * Kp + k);                                        \
            __m256 xb = _mm256_loadu_ps(xp + (t0 + i) * Kp + k + 8);                                    \
            for (int j = 0; j < NB; j++) a[i][j] = _mm256_fmadd_ps(xa, wa[j], a[i][j]);                 \
            for (int j = 0; j < NB; j++) a[i][j] = _mm256_fmadd_ps(xb, wb[j], a[i][j]);                 \
        }                                                                                               \
    } while (0)
#define BLOCK(SUF, LW, ESZ, TB, NB)                                                                     \
    TGT static void blk_##SUF##_##TB##x##NB(const float *xp, size_t Kp, size_t K, const void *w, size_t ldw, \
                                            float *y, size_t ldy, size_t t0, size_t n0) {               \
        __m256 a[TB][NB];                                                                               \
        for (int i = 0; i < TB; i++)                                                                    \
            for (int j = 0; j < NB; j++) a[i][j] = _mm256_setzero_ps();                                 \
        const char *rows = (const char *)w + n0 * ldw * ESZ;                                            \
        const char *p[NB];                                                                              \
        size_t whole = K / CHUNK * CHUNK, k = 0;                                                        \
        if (t0 == 0) { /* the first pass over these rows: see above */                                  \
            for (; k < whole; k += CHUNK) {                                                             \
                for (int j = 0; j < NB; j++) p[j] = rows + ((size_t)j * ldw + k) * ESZ;                 \
                if ((k * ESZ) % 64 == 0)                                                                \
                    for (int j = 0; j < NB; j++) _mm_prefetch(p[j] + (size_t)NB * ldw * ESZ, _MM_HINT_T0); \
                BLOCK_STEP(LW, ESZ, TB, NB, p);                                                         \
            }                                                                                           \
        } else {                                                                                        \
            for (; k < whole; k += CHUNK) {                                                             \
                for (int j = 0; j < NB; j++) p[j] = rows + ((size_t)j * ldw + k) * ESZ;                 \
                BLOCK_STEP(LW, ESZ, TB, NB, p);                                                         \
            }                                                                                           \
        }                                                                                               \
        if (k < Kp) {                                                                                   \
            _Alignas(32) char buf[NB][CHUNK * ESZ];                                                     \
            for (int j = 0; j < NB; j++) {                                                              \
                memset(buf[j], 0, sizeof buf[j]);                                                       \
                memcpy(buf[j], rows + ((size_t)j * ldw + k) * ESZ, (K - k) * ESZ);                      \
                p[j] = buf[j];                                                                          \
            }                                                                                           \
            BLOCK_STEP(LW, ESZ, TB, NB, p);                                                             \
        }                                                                                               \
        for (int i = 0; i < TB; i++)                                                                    \
            for (int j = 0; j < NB; j++) y[(t0 + i) * ldy + n0 + j] = ck_avx2_hsum(a[i][j]);            \
    }

#define KERNEL(SUF, LW, ESZ)                                                                            \
    BLOCK(SUF, LW, ESZ, 4, 2)                                                                           \
    BLOCK(SUF, LW, ESZ, 4, 1)                                                                           \
    BLOCK(SUF, LW, ESZ, 2, 2)                                                                           \
    BLOCK(SUF, LW, ESZ, 2, 1)                                                                           \
    BLOCK(SUF, LW, ESZ, 1, 4)                                                                           \
    BLOCK(SUF, LW, ESZ, 1, 1)                                                                           \
    TGT static void mm_##SUF(const float *xp, size_t Kp, size_t K, const void *w, size_t ldw, size_t T, size_t N, \
                             float *y, size_t ldy) {                                                    \
        size_t t = 0;                                                                                   \
        for (; t + 4 <= T; t += 4) {                                                                    \
            size_t n = 0;                                                                               \
            for (; n + 2 <= N; n += 2) blk_##SUF##_4x2(xp, Kp, K, w, ldw, y, ldy, t, n);                     \
            for (; n < N; n++) blk_##SUF##_4x1(xp, Kp, K, w, ldw, y, ldy, t, n);                             \
        }                                                                                               \
        for (; t + 2 <= T; t += 2) {                                                                    \
            size_t n = 0;                                                                               \
            for (; n + 2 <= N; n += 2) blk_##SUF##_2x2(xp, Kp, K, w, ldw, y, ldy, t, n);                     \
            for (; n < N; n++) blk_##SUF##_2x1(xp, Kp, K, w, ldw, y, ldy, t, n);                             \
        }                                                                                               \
        if (t < T) {                                                                                    \
            size_t n = 0;                                                                               \
            for (; n + 4 <= N; n += 4) blk_##SUF##_1x4(xp, Kp, K, w, ldw, y, ldy, t, n);                     \
            for (; n < N; n++) blk_##SUF##_1x1(xp, Kp, K, w, ldw, y, ldy, t, n);                             \
        }                                                                                               \
    }

KERNEL(f32, lw_f32, 4)
KERNEL(bf16, lw_bf16, 2)
KERNEL(f16, lw_f16, 2)

void ck_avx2_matmul_prepared(const float *xp, size_t T, size_t K, const void *w, ck_dtype dtype, size_t N, float *y,
                             size_t ldy) {
    size_t Kp = padded(K);
    switch (dtype) {
    case CK_DTYPE_F32: mm_f32(xp, Kp, K, w, K, T, N, y, ldy); break;
    case CK_DTYPE_BF16: mm_bf16(xp, Kp, K, w, K, T, N, y, ldy); break;
    case CK_DTYPE_F16: mm_f16(xp, Kp, K, w, K, T, N, y, ldy); break;
    default: break;
    }
}

// Columns per pass of a 4-token block over decoded rows: 4 x rows of KC_ROWS floats (8 KB) stay
// in L1 while every row pair of the block passes over them; whole rows of K = 2,048 or 4,096 are
// 32-64 KB and come from L2 for every row pair (one core, 512 tokens, AVX2 code on a Zen 4,
// 2026-12-08: 47-61 % of the FMA peak against ~83 % for K = 1,024).
#define KC_ROWS 512

// A 4 × 2 block over columns [k0, k1) (whole chunks): from zero when `first`, else from the
// accumulators at `st`; kept there unless `last`, then summed into y. Each accumulator takes its
// chunks in order, so the outputs are those of blk_f32_4x2 over the whole row.
TGT static void part_f32_4x2(const float *xp, size_t Kp, const float *w, size_t ldw, float *y, size_t ldy, size_t t0,
                             size_t n0, size_t k0, size_t k1, __m256 *st, int first, int last) {
    __m256 a[4][2];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 2; j++) a[i][j] = first ? _mm256_setzero_ps() : st[i * 2 + j];
    const char *p[2];
    for (size_t k = k0; k < k1; k += CHUNK) {
        for (int j = 0; j < 2; j++) p[j] = (const char *)(w + (n0 + (size_t)j) * ldw + k);
        BLOCK_STEP(lw_f32, 4, 4, 2, p);
    }
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 2; j++) {
            if (last) y[(t0 + i) * ldy + n0 + j] = ck_avx2_hsum(a[i][j]);
            else st[i * 2 + j] = a[i][j];
        }
}

void ck_avx2_matmul_rows(const float *xp, size_t T, size_t K, const float *w, size_t ldw, size_t N, float *y,
                         size_t ldy, float *state) {
    size_t Kp = padded(K);
    if (K % CHUNK != 0 || K <= KC_ROWS || T < 4 || N < 2) {
        mm_f32(xp, Kp, K, w, ldw, T, N, y, ldy);
        return;
    }
    size_t T4 = T / 4 * 4, N2 = N / 2 * 2;
    __m256 *st = (__m256 *)state;
    for (size_t t = 0; t < T4; t += 4)
        for (size_t k0 = 0; k0 < K; k0 += KC_ROWS) {
            size_t k1 = k0 + KC_ROWS < K ? k0 + KC_ROWS : K;
            for (size_t n = 0; n < N2; n += 2)
                part_f32_4x2(xp, Kp, w, ldw, y, ldy, t, n, k0, k1, st + n / 2 * 8, k0 == 0, k1 == K);
        }
    // The last row of an odd count and the last tokens: the same arithmetic in other blocks.
    if (N2 < N) mm_f32(xp, Kp, K, w + N2 * ldw, ldw, T4, 1, y + N2, ldy);
    if (T4 < T) mm_f32(xp + T4 * Kp, Kp, K, w, ldw, T - T4, N, y + T4 * ldy, ldy);
}

int ck_avx2_x_copied(size_t ldx, size_t T, size_t K) { return padded(K) != K || (T > 1 && ldx != K); }

void ck_avx2_matmul(const float *x, size_t ldx, size_t T, size_t K, const void *w, ck_dtype dtype, size_t N,
                    float *y, size_t ldy) {
    if (dtype != CK_DTYPE_BF16 && !ck_avx2_x_copied(ldx, T, K)) {  // F32/F16 read fp32 rows as they are
        ck_avx2_matmul_prepared(x, T, K, w, dtype, N, y, ldy);
        return;
    }
    float *xp = malloc(T * padded(K) * sizeof(float) + 32);
    ck_avx2_prepare_x(x, ldx, T, K, dtype, xp);
    ck_avx2_matmul_prepared(xp, T, K, w, dtype, N, y, ldy);
    free(xp);
}
