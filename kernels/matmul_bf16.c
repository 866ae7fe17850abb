// matmul_bf16.c: the BF16-weight product, with 64-byte weight loads widened in-lane.
//
// A BF16 value is the top half of an fp32, so interleaving 32 BF16 weights with zeros
// (vpunpcklwd / vpunpckhwd) yields two fp32 vectors exactly, with one load and two in-lane
// shuffles per 32 weights. The unpacks permute elements within each 128-bit lane; x is
// permuted the same way once per call (and zero-padded to a multiple of 32), so the result
// is Σ_k x[k]·W[n][k] in a fixed lane order that does not depend on T, N or tiling.
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl")))
#define PF_BYTES 1024

size_t ck_bf16_padded(size_t K) { return (K + 31) / 32 * 32; }

// Whole chunks of 32 with two two-source permutes each (the copies of 4 floats below cost 3 %
// of a 4,096-token prefill of dsv4-tiny); returns the columns done.
TGT static size_t permute_chunks_avx512(const float *xr, size_t K, float *o) {
    const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
    const __m512i hi = _mm512_setr_epi32(4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    size_t c = 0;
    for (; c + 32 <= K; c += 32) {
        __m512 a = _mm512_loadu_ps(xr + c), b = _mm512_loadu_ps(xr + c + 16);
        _mm512_storeu_ps(o + c, _mm512_permutex2var_ps(a, lo, b));
        _mm512_storeu_ps(o + c + 16, _mm512_permutex2var_ps(a, hi, b));
    }
    return c;
}

// out[t][c*32 + 0..15] = x[c*32 + {0..3, 8..11, 16..19, 24..27}], [16..31] = the other half.
static void permute_rows(const float *x, size_t ldx, size_t T, size_t K, ck_dtype dtype, float *out) {
    (void)dtype;
    size_t Kp = ck_bf16_padded(K);
    int vec = ck_use_avx512();
    for (size_t t = 0; t < T; t++) {
        const float *xr = x + t * ldx;
        float *o = out + t * Kp;
        size_t c = vec ? permute_chunks_avx512(xr, K, o) : 0;
        for (; c + 32 <= K; c += 32) {  // whole chunks: 8 copies of 4 floats
            for (int lane = 0; lane < 4; lane++) {
                memcpy(o + c + (size_t)lane * 4, xr + c + (size_t)lane * 8, 4 * sizeof(float));
                memcpy(o + c + 16 + (size_t)lane * 4, xr + c + (size_t)lane * 8 + 4, 4 * sizeof(float));
            }
        }
        for (; c < Kp; c += 32) {
            for (int lane = 0; lane < 4; lane++) {
                for (int e = 0; e < 4; e++) {
                    size_t lo = c + (size_t)lane * 8 + (size_t)e, hi = lo + 4;
                    o[c + (size_t)lane * 4 + (size_t)e] = lo < K ? xr[lo] : 0.0f;
                    o[c + 16 + (size_t)lane * 4 + (size_t)e] = hi < K ? xr[hi] : 0.0f;
                }
            }
        }
    }
}

void ck_bf16_permute_x(const float *x, size_t ldx, size_t T, size_t K, float *out) {
    ck_rows_parallel(permute_rows, x, ldx, T, K, CK_DTYPE_BF16, ck_bf16_padded(K), out);
}

// One step of 32 columns of a block: NB weight rows widened in-lane, TB tokens' x against them.
// LOAD(row) reads the row's 32 weights at k.
#define BLOCK_STEP(TB, NB, PF, LOAD)                                                                      \
    {                                                                                                   \
        __m512 wa[NB], wb[NB];                                                                          \
        for (int j = 0; j < NB; j++) {                                                                  \
            const uint16_t *row = w + (n0 + j * rs) * K + k;                                            \
            if (PF && rs == 1) _mm_prefetch((const char *)row + PF_BYTES, _MM_HINT_T0);                 \
            __m512i v = LOAD(row);                                                                      \
            wa[j] = _mm512_castsi512_ps(_mm512_unpacklo_epi16(zero, v));                                \
            wb[j] = _mm512_castsi512_ps(_mm512_unpackhi_epi16(zero, v));                                \
        }                                                                                               \
        for (int i = 0; i < TB; i++) {                                                                  \
            __m512 xa = _mm512_loadu_ps(xp + (t0 + i) * Kp + k);                                        \
            __m512 xb = _mm512_loadu_ps(xp + (t0 + i) * Kp + k + 16);                                   \
            for (int j = 0; j < NB; j++) {                                                              \
                acc[i][j] = _mm512_fmadd_ps(xa, wa[j], acc[i][j]);                                      \
                acc[i][j] = _mm512_fmadd_ps(xb, wb[j], acc[i][j]);                                      \
            }                                                                                           \
        }                                                                                               \
    }
#define LOAD_FULL(row) _mm512_loadu_si512(row)
#define LOAD_PART(row) _mm512_maskz_loadu_epi16(m, row)

// Whole chunks of 32 with plain loads, the last partial one masked: a masked load in every
// step cost 9 % of the 4×4 block's rate on Zen 4 (97 against 106 GFLOP/s, one core, K = 1,024).
#define BLOCK(TB, NB, PF)                                                                                 \
    TGT static inline void blk_##TB##x##NB(const float *xp, size_t Kp, size_t K, const uint16_t *w, float *y, \
                                           size_t ldy, size_t t0, size_t n0, size_t rs) {                \
        __m512 acc[TB][NB];                                                                             \
        for (int i = 0; i < TB; i++)                                                                    \
            for (int j = 0; j < NB; j++) acc[i][j] = _mm512_setzero_ps();                               \
        const __m512i zero = _mm512_setzero_si512();                                                    \
        size_t k = 0;                                                                                   \
        for (; k + 32 <= K; k += 32) BLOCK_STEP(TB, NB, PF, LOAD_FULL)                                  \
        if (k < K) {                                                                                    \
            __mmask32 m = (__mmask32)((1u << (K - k)) - 1);                                             \
            BLOCK_STEP(TB, NB, PF, LOAD_PART)                                                           \
        }                                                                                               \
        float s[TB * NB];                                                                               \
        ck_sums(&acc[0][0], TB * NB, s);                                                                \
        for (int i = 0; i < TB; i++)                                                                    \
            for (int j = 0; j < NB; j++) y[(t0 + i) * ldy + n0 + j * rs] = s[i * NB + j];               \
    }

// Software prefetch helps the 4×4 blocks (four rows interleaved); a single row is one
// sequential stream that the hardware prefetcher follows better alone (one core, BF16
// 512×1024 matvecs over 1 GB: 26 GB/s without, 19.5 GB/s with a prefetch 1 KB ahead).
BLOCK(4, 4, 1)
BLOCK(3, 1, 0)
BLOCK(2, 1, 0)
BLOCK(1, 1, 0)

// Tokens t0 ..< t0 + count (at most 3) over rows n0 ..< n1, one row at a time.
TGT static void tail_rows(const float *xp, size_t Kp, size_t K, const uint16_t *w16, float *y, size_t ldy, size_t t0,
                          size_t count, size_t n0, size_t n1) {
    switch (count) {
    case 3: for (size_t n = n0; n < n1; n++) blk_3x1(xp, Kp, K, w16, y, ldy, t0, n, 1); break;
    case 2: for (size_t n = n0; n < n1; n++) blk_2x1(xp, Kp, K, w16, y, ldy, t0, n, 1); break;
    case 1: for (size_t n = n0; n < n1; n++) blk_1x1(xp, Kp, K, w16, y, ldy, t0, n, 1); break;
    default: break;
    }
}

TGT void ck_bf16_matmul_permuted(const float *xp, size_t T, size_t K, const void *w, size_t N, float *y, size_t ldy) {
    const uint16_t *w16 = (const uint16_t *)w;
    size_t Kp = ck_bf16_padded(K);
    size_t T4 = T / 4 * 4, N4 = N / 4 * 4, tail = T - T4, done = 0;  // rows [0, done) have every token
    if (T >= 4 && T <= 8) {
        // A decode batch: each block's 4 rows a quarter of the rows apart, so that each is one
        // sequential stream from memory, and every token of the batch over them before the next
        // (adjacent rows interleaved ran at half the read bandwidth, and tokens outermost read
        // the weights once per 4 tokens: 8 streams' decode read the bench model's 265 MB
        // vocabulary projection twice per step). A block's sums do not depend on which rows
        // share it or the order blocks run in.
        size_t q = N / 4;
        for (size_t n = 0; n < q; n++) {
            for (size_t t = 0; t < T4; t += 4) blk_4x4(xp, Kp, K, w16, y, ldy, t, n, q);
            for (size_t j = 0; j < 4; j++) tail_rows(xp, Kp, K, w16, y, ldy, T4, tail, n + j * q, n + j * q + 1);
        }
        done = N4;
    } else {
        // Prefill: tokens outermost (the callers hand it row tiles that stay in cache: parallel.c).
        for (size_t t = 0; t < T4; t += 4)
            for (size_t n = 0; n < N4; n += 4) blk_4x4(xp, Kp, K, w16, y, ldy, t, n, 1);
    }
    for (size_t t = 0; t < T4; t += 4)
        for (size_t n = N4; n < N; n++)
            for (size_t i = 0; i < 4; i++) blk_1x1(xp, Kp, K, w16, y, ldy, t + i, n, 1);
    // The last 1-3 tokens (all of decode) take one weight row at a time: a single sequential
    // stream is what the hardware prefetcher follows best (measured: 1 row at 90-95 % of the
    // read bandwidth of one core, 8 interleaved rows at 55-65 %). Each element is the same
    // sum in the same order as in the 4×4 blocks, so results do not depend on the batch.
    tail_rows(xp, Kp, K, w16, y, ldy, T4, tail, done, N);
}

void ck_bf16_matmul(const float *x, size_t ldx, size_t T, size_t K, const void *w, size_t N, float *y, size_t ldy) {
    float *xp = malloc(T * ck_bf16_padded(K) * sizeof(float) + 64);
    ck_bf16_permute_x(x, ldx, T, K, xp);
    ck_bf16_matmul_permuted(xp, T, K, w, N, y, ldy);
    free(xp);
}
