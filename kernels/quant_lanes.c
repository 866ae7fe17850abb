// quant_lanes.c: FP8 / FP4 products in the BF16 kernel's lane order.
//
// Both formats widen exactly to bf16 patterns, 32 values per vector, and the BF16 kernel's
// in-lane unpack then yields two fp32 vectors per 32 weights (lanes {0-3, 8-11, 16-19,
// 24-27} and the rest) against x permuted once per product (ck_bf16_permute_x). That halves
// the decode work per weight against a natural-order decode. Decode (1-8 tokens) multiplies
// straight from registers; more tokens decode rows into a float buffer in the same lane order
// for register blocks of their own. Every element is the sum of two accumulators (the
// first and second 16 values of every 32: two FMA chains per row) in the same order on both
// paths, so results do not depend on the batch.
//
// FP8 E4M3: the byte sign-extended to 16 bits and shifted left by 4, masked to 0x87F0, is a
// bf16 with the E4M3 mantissa and an exponent 120 too small (subnormals become fp32
// subnormals, also exact); 2^120 is folded into the block scale, and for decode into x
// itself once per 128-row block when that is exact (fp8_prescale). NaN codes (0x7F/0xFF) are
// patched. FP4 E2M1 reads x in its own order (even elements, then odd ones, per 32) and
// looks each nibble up in a 16-entry table of scaled values (vpermps, one table per E8M0
// byte precomputed).
// Applies when K and the scale blocks are multiples of 32; every decoded value is the same
// float as ck_decode_rows gives (one rounding at most, for float32 scales).
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl")))

int ck_qlanes_applies(ck_dtype dtype, size_t K, const ck_scales *s) {
    if (dtype != CK_DTYPE_F8E4M3 && dtype != CK_DTYPE_FP4E2M1) return 0;
    if (K == 0 || K % 32 != 0) return 0;
    if (s && s->block_cols % 32 != 0) return 0;
    return ck_use_avx512();
}

// Rows this far ahead (about 4 KB) are prefetched as a row is multiplied, one prefetch per
// 32 weights: one thread's decode products stream short rows, and without it an FP8 row's
// one-token product reached 13-16 Gweights/s of one core from DRAM against 19-20 with it
// (2026-12-07, Zen 4; a prefetch per 64-byte line instead measured no faster than none).
// Only rows of the same call: a task's neighbour belongs to another thread.
static inline size_t prefetch_rows(size_t rb) { return rb >= 4096 ? 1 : (4096 + rb - 1) / rb; }

// The row `ahead` rows after row n of N, or row n itself near the end (a harmless prefetch).
static inline const char *ahead_row(const uint8_t *w, size_t rb, size_t n, size_t N, size_t ahead) {
    return (const char *)w + (n + ahead < N ? n + ahead : n) * rb;
}

// 2^(v-127) from its exponent bits (the value ck_e8m0_to_f32 defines), without a call.
static inline float e8m0(uint8_t v) {
    if (v == 0) return 0x1p-127f;
    if (v == 255) return NAN;
    uint32_t bits = (uint32_t)v << 23;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// 32 FP8 weights as raw bf16 patterns (2^-120 times their value), for x already scaled.
TGT static inline void fp8_raw32(const uint8_t *row, size_t k, __m512 *wa, __m512 *wb) {
    const __m512i zero = _mm512_setzero_si512();
    __m256i raw = _mm256_loadu_si256((const __m256i *)(row + k));
    __m512i bf = _mm512_and_si512(_mm512_slli_epi16(_mm512_cvtepi8_epi16(raw), 4), _mm512_set1_epi16((short)0x87F0));
    __mmask32 nan = _mm256_cmpeq_epi8_mask(_mm256_and_si256(raw, _mm256_set1_epi8(0x7F)), _mm256_set1_epi8(0x7F));
    if (__builtin_expect(nan != 0, 0)) bf = _mm512_mask_mov_epi16(bf, nan, _mm512_set1_epi16(0x7FC0));
    *wa = _mm512_castsi512_ps(_mm512_unpacklo_epi16(zero, bf));
    *wb = _mm512_castsi512_ps(_mm512_unpackhi_epi16(zero, bf));
}

// 32 FP8 weights of a row starting at element k, times `scale` (after 2^120 on its own
// when `split`: 2^120 · scale would overflow), as the two lane-ordered halves.
TGT static inline void fp8_group32(const uint8_t *row, size_t k, __m512 scale, int split, __m512 *wa, __m512 *wb) {
    __m512 a, b;
    fp8_raw32(row, k, &a, &b);
    if (__builtin_expect(split, 0)) {
        a = _mm512_mul_ps(a, _mm512_set1_ps(0x1p120f));
        b = _mm512_mul_ps(b, _mm512_set1_ps(0x1p120f));
    }
    *wa = _mm512_mul_ps(a, scale);
    *wb = _mm512_mul_ps(b, scale);
}

// The factor a block's decoded values take: its scale, times 2^120 for FP8 unless that
// would overflow (E8M0 bytes above 134), which `split` then applies apart.
static inline float block_scale(const ck_scales *s, size_t srow, size_t j, int fp8, int *split) {
    if (s && s->f32) {  // any float: 2^120 apart, so each value is rounded once, as decoded rows are
        *split = fp8;
        return ((const float *)s->data)[srow + j];
    }
    uint8_t v = s ? ((const uint8_t *)s->data)[srow + j] : 127;
    float f = e8m0(v);
    *split = fp8 && v > 134;
    return fp8 && !*split ? f * 0x1p120f : f;
}

// The 16 E2M1 values times every E8M0 scale (v = 0..255): 16 KB of tables that the FP4
// lookups read straight from L1, instead of scaling a table per 32 weights. Each entry is
// the one float product ck_decode_rows rounds (E2M1 value · 2^(v-127)).
static float fp4_tables[256][16] __attribute__((aligned(64)));
__attribute__((constructor)) static void build_fp4_tables(void) {
    static const float t[16] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
    for (int v = 0; v < 256; v++)
        for (int i = 0; i < 16; i++) fp4_tables[v][i] = t[i] * e8m0((uint8_t)v);
}

// FP4: 32 values from 16 bytes, even elements (low nibbles) in `wa`, odd ones in `wb`,
// looked up in the 16 E2M1 values already multiplied by the block's scale.
TGT static inline void fp4_group32(const uint8_t *row, size_t k, __m512 table, __m512 *wa, __m512 *wb) {
    __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + k / 2)));
    *wa = _mm512_permutexvar_ps(b, table);  // vpermps reads the low 4 bits of each index
    *wb = _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), table);
}

// The scaled table of one FP4 block: from fp4_tables for E8M0 scales, computed for float32 ones.
TGT static inline __m512 fp4_table(const ck_scales *s, size_t srow, size_t j) {
    if (s && s->f32) {
        const __m512 t = _mm512_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                        -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f);
        return _mm512_mul_ps(t, _mm512_set1_ps(((const float *)s->data)[srow + j]));
    }
    return _mm512_load_ps(fp4_tables[s ? ((const uint8_t *)s->data)[srow + j] : 127]);
}

// FP8 with x scaled instead of the weights: for the rows of scale row `srow`, xs = x · f_j
// over each 128-column block j, where f_j = 2^120 · scale_j = 2^(v-7). When every f_j >= 1
// (v >= 7) and below the split (v <= 134), and no x · f_j overflows, x · f_j and bf · f_j are
// both exact, so fma(x · f, bf, acc) and fma(x, bf · f, acc) round the same exact product:
// the same bits as the decoded-rows path, without two multiplies per 32 weights. Returns 0
// (scale each weight instead) otherwise, and for float32 scales.
TGT static int fp8_prescale(const float *xp, size_t TB, size_t K, const ck_scales *s, size_t srow, size_t bc,
                            float *xs) {
    if (s && s->f32) return 0;
    const __m512 inf = _mm512_set1_ps(INFINITY);
    const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
    __mmask16 over = 0;
    for (size_t k0 = 0, j = 0; k0 < K; k0 += bc, j++) {
        uint8_t v = s ? ((const uint8_t *)s->data)[srow + j] : 127;
        if (v < 7 || v > 134) return 0;
        __m512 f = _mm512_set1_ps(e8m0(v) * 0x1p120f);
        size_t k1 = k0 + bc < K ? k0 + bc : K;
        for (size_t t = 0; t < TB; t++)
            for (size_t k = k0; k < k1; k += 16) {
                __m512 xv = _mm512_loadu_ps(xp + t * K + k), sv = _mm512_mul_ps(xv, f);
                _mm512_storeu_ps(xs + t * K + k, sv);
                __m512 ax = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(xv), abs_mask));
                __m512 as = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(sv), abs_mask));
                over |= _mm512_cmp_ps_mask(as, inf, _CMP_EQ_OQ) & _mm512_cmp_ps_mask(ax, inf, _CMP_NEQ_UQ);
            }
    }
    return over == 0;
}

static inline float *scratch(size_t n) { return ck_thread_scratch(CK_SCRATCH_QLANES, n); }

// One row of x in the FP4 order (K a multiple of 32): even then odd elements of every 32.
TGT static void permute_fp4_avx512(const float *xr, size_t K, float *o) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for (size_t c = 0; c < K; c += 32) {
        __m512 a = _mm512_loadu_ps(xr + c), b = _mm512_loadu_ps(xr + c + 16);
        _mm512_storeu_ps(o + c, _mm512_permutex2var_ps(a, even, b));
        _mm512_storeu_ps(o + c + 16, _mm512_permutex2var_ps(a, odd, b));
    }
}

// Rows of x in the FP4 order: even then odd elements of every 32.
static void fp4_permute_rows(const float *x, size_t ldx, size_t T, size_t K, ck_dtype dtype, float *out) {
    (void)dtype;
    for (size_t t = 0; t < T; t++) {
        const float *xr = x + t * ldx;
        float *o = out + t * K;
        if (ck_use_avx512()) {
            permute_fp4_avx512(xr, K, o);
            continue;
        }
        for (size_t c = 0; c < K; c += 32)
            for (int j = 0; j < 16; j++) {
                o[c + (size_t)j] = xr[c + 2 * (size_t)j];
                o[c + 16 + (size_t)j] = xr[c + 2 * (size_t)j + 1];
            }
    }
}

// x in the order a lane-ordered product reads it: the BF16 kernel's for FP8, even/odd
// halves of every 32 values for FP4.
void ck_qlanes_permute_x(ck_dtype dtype, const float *x, size_t ldx, size_t T, size_t K, float *out) {
    if (dtype != CK_DTYPE_FP4E2M1) ck_bf16_permute_x(x, ldx, T, K, out);
    else ck_rows_parallel(fp4_permute_rows, x, ldx, T, K, dtype, K, out);
}

// Every element is the sum of two accumulators, one over the first 16 values of each 32
// (`wa`), one over the other 16 (`wb`): two independent FMA chains per row, which the
// latency of one chain would otherwise bound (4 cycles per 16 weights). The decoded-rows
// path (lanes_gemm) sums in the same order.
#define LANES_FUSED(TB)                                                                                     \
    TGT static void lanes_##TB(const float *xp, size_t K, const uint8_t *w, ck_dtype dtype, const ck_scales *s, \
                               size_t N, float *y, size_t ldy) {                                             \
        int fp8 = dtype == CK_DTYPE_F8E4M3;                                                                  \
        size_t rb = ck_row_bytes(dtype, K), bc = s ? s->block_cols : K;                                      \
        float *xs = fp8 ? scratch(TB * K) : NULL;                                                            \
        size_t pre_row = (size_t)-1, ahead = prefetch_rows(rb);                                              \
        int pre = 0;                                                                                         \
        for (size_t n = 0; n < N; n++) {                                                                     \
            const uint8_t *row = w + n * rb;                                                                 \
            const char *pf = ahead_row(w, rb, n, N, ahead);                                                  \
            size_t srow = s ? ((s->row0 + n) / s->block_rows) * s->ld : 0;                                   \
            if (xs && srow != pre_row) {                                                                     \
                pre = fp8_prescale(xp, TB, K, s, srow, bc, xs);                                              \
                pre_row = srow;                                                                              \
            }                                                                                                \
            __m512 a[TB], b[TB];                                                                             \
            for (int t = 0; t < TB; t++) a[t] = b[t] = _mm512_setzero_ps();                                  \
            if (pre) {                                                                                       \
                for (size_t k = 0; k < K; k += 32) {                                                         \
                    __m512 wa, wb;                                                                           \
                    _mm_prefetch(pf + k, _MM_HINT_T0); /* every 32 bytes: once a line measured no faster */ \
                    fp8_raw32(row, k, &wa, &wb);                                                             \
                    for (int t = 0; t < TB; t++) {                                                           \
                        a[t] = _mm512_fmadd_ps(_mm512_loadu_ps(xs + t * K + k), wa, a[t]);                   \
                        b[t] = _mm512_fmadd_ps(_mm512_loadu_ps(xs + t * K + k + 16), wb, b[t]);              \
                    }                                                                                        \
                }                                                                                            \
            } else if (!fp8 && bc == 32 && s && !s->f32) {                                                  \
                /* Released FP4 (one E8M0 byte per 32): the same sums as the loop below, which     \
                   the compiler leaves with a scale branch per 32 weights (one core: 6.7 against  \
                   10.5 GB/s of stored bytes, bench/matvec_formats.c). */                          \
                const uint8_t *sb = (const uint8_t *)s->data + srow;                                         \
                for (size_t k = 0, j = 0; k < K; k += 32, j++) {                                             \
                    __m512 wa, wb;                                                                           \
                    _mm_prefetch(pf + k / 2, _MM_HINT_T0);                                                   \
                    fp4_group32(row, k, _mm512_load_ps(fp4_tables[sb[j]]), &wa, &wb);                       \
                    for (int t = 0; t < TB; t++) {                                                           \
                        a[t] = _mm512_fmadd_ps(_mm512_loadu_ps(xp + t * K + k), wa, a[t]);                   \
                        b[t] = _mm512_fmadd_ps(_mm512_loadu_ps(xp + t * K + k + 16), wb, b[t]);              \
                    }                                                                                        \
                }                                                                                            \
            } else {                                                                                         \
                for (size_t k0 = 0, j = 0; k0 < K; k0 += bc, j++) {                                          \
                    int split = 0;                                                                           \
                    __m512 sc = _mm512_setzero_ps(), table = sc;                                             \
                    if (fp8) sc = _mm512_set1_ps(block_scale(s, srow, j, 1, &split));                       \
                    else table = fp4_table(s, srow, j);                                                      \
                    size_t k1 = k0 + bc < K ? k0 + bc : K;                                                   \
                    for (size_t k = k0; k < k1; k += 32) {                                                   \
                        __m512 wa, wb;                                                                       \
                        if (fp8) fp8_group32(row, k, sc, split, &wa, &wb);                                    \
                        else fp4_group32(row, k, table, &wa, &wb);                                           \
                        for (int t = 0; t < TB; t++) {                                                       \
                            a[t] = _mm512_fmadd_ps(_mm512_loadu_ps(xp + t * K + k), wa, a[t]);               \
                            b[t] = _mm512_fmadd_ps(_mm512_loadu_ps(xp + t * K + k + 16), wb, b[t]);          \
                        }                                                                                    \
                    }                                                                                        \
                }                                                                                            \
            }                                                                                                \
            for (int t = 0; t < TB; t++) y[t * ldy + n] = ck_sum16(_mm512_add_ps(a[t], b[t]));               \
        }                                                                                                    \
    }
LANES_FUSED(1)
LANES_FUSED(2)
LANES_FUSED(3)
LANES_FUSED(4)
LANES_FUSED(5)
LANES_FUSED(6)
LANES_FUSED(7)
LANES_FUSED(8)

// One token of released FP4 (an E8M0 byte per 32), two rows at a time: each row keeps its
// own two chains in lanes_1's order (the same bits), and the two rows' four chains hide the
// FMA latency that bounds one row (4 cycles per 32 weights). One core, 2026-12-07 (Zen 4):
// 25.0 -> 27.5 Gweights/s in L2, 19-20 -> 23-24 from DRAM with the prefetch. (FP8 rows two at a
// time measured half as fast from DRAM, prefetched or not, and stay on lanes_1.)
TGT static void lanes_1_fp4x2(const float *xp, size_t K, const uint8_t *w, const ck_scales *s, size_t N, float *y) {
    size_t rb = ck_row_bytes(CK_DTYPE_FP4E2M1, K), ahead = prefetch_rows(2 * rb);
    size_t n = 0;
    for (; n + 2 <= N; n += 2) {
        const uint8_t *r0 = w + n * rb, *r1 = r0 + rb;
        const uint8_t *s0 = (const uint8_t *)s->data + (s->row0 + n) / s->block_rows * s->ld;
        const uint8_t *s1 = (const uint8_t *)s->data + (s->row0 + n + 1) / s->block_rows * s->ld;
        const char *pf = ahead_row(w, 2 * rb, n / 2, N / 2, ahead);
        __m512 a0 = _mm512_setzero_ps(), b0 = a0, a1 = a0, b1 = a0;
        for (size_t k = 0, j = 0; k < K; k += 32, j++) {
            __m512 wa0, wb0, wa1, wb1, xa = _mm512_loadu_ps(xp + k), xb = _mm512_loadu_ps(xp + k + 16);
            _mm_prefetch(pf + k / 2, _MM_HINT_T0);
            _mm_prefetch(pf + rb + k / 2, _MM_HINT_T0);
            fp4_group32(r0, k, _mm512_load_ps(fp4_tables[s0[j]]), &wa0, &wb0);
            fp4_group32(r1, k, _mm512_load_ps(fp4_tables[s1[j]]), &wa1, &wb1);
            a0 = _mm512_fmadd_ps(xa, wa0, a0);
            b0 = _mm512_fmadd_ps(xb, wb0, b0);
            a1 = _mm512_fmadd_ps(xa, wa1, a1);
            b1 = _mm512_fmadd_ps(xb, wb1, b1);
        }
        y[n] = ck_sum16(_mm512_add_ps(a0, b0));
        y[n + 1] = ck_sum16(_mm512_add_ps(a1, b1));
    }
    if (n < N) {
        ck_scales last = *s;
        last.row0 = s->row0 + n;
        lanes_1(xp, K, w + n * rb, CK_DTYPE_FP4E2M1, &last, 1, y + n, 1);
    }
}

TGT static void decode_lanes(const uint8_t *w, ck_dtype dtype, size_t K, const ck_scales *s, size_t n0, size_t nr,
                             float *dst, size_t ld) {
    int fp8 = dtype == CK_DTYPE_F8E4M3;
    size_t rb = ck_row_bytes(dtype, K), bc = s ? s->block_cols : K;
    for (size_t r = 0; r < nr; r++) {
        size_t n = n0 + r;
        const uint8_t *row = w + n * rb;
        size_t srow = s ? ((s->row0 + n) / s->block_rows) * s->ld : 0;
        for (size_t k0 = 0, j = 0; k0 < K; k0 += bc, j++) {
            int split = 0;
            __m512 sc = _mm512_setzero_ps(), table = sc;
            if (fp8) sc = _mm512_set1_ps(block_scale(s, srow, j, 1, &split));
            else table = fp4_table(s, srow, j);
            size_t k1 = k0 + bc < K ? k0 + bc : K;
            for (size_t k = k0; k < k1; k += 32) {
                __m512 wa, wb;
                if (fp8) fp8_group32(row, k, sc, split, &wa, &wb);
                else fp4_group32(row, k, table, &wa, &wb);
                _mm512_storeu_ps(dst + r * ld + k, wa);
                _mm512_storeu_ps(dst + r * ld + k + 16, wb);
            }
        }
    }
}

// y = x · Dᵀ over decoded lane-ordered rows D (nr rows of K floats, `ld` apart), for more than
// 8 tokens: register blocks of TB tokens × NB rows, each element in the two accumulators of
// the fused kernels (first/second 16 of every 32), summed the same way. A block runs over
// columns [k0, k1): from zero when `first`, else from the accumulators kept at `st`; it keeps
// them there again unless `last`, when it sums them into y. Each accumulator still takes its
// columns in order, so any split of K gives the same bits.
#define LANES_BLOCK(TB, NB)                                                                                 \
    TGT static inline void lblk_##TB##x##NB(const float *xp, size_t K, const float *d, size_t ld, float *y,    \
                                            size_t ldy, size_t t0, size_t n0, size_t k0, size_t k1,          \
                                            __m512 *st, int first, int last) {                               \
        __m512 a[TB][NB], b[TB][NB];                                                                        \
        for (int i = 0; i < TB; i++)                                                                        \
            for (int j = 0; j < NB; j++) {                                                                  \
                a[i][j] = first ? _mm512_setzero_ps() : st[2 * (i * NB + j)];                               \
                b[i][j] = first ? _mm512_setzero_ps() : st[2 * (i * NB + j) + 1];                           \
            }                                                                                               \
        for (size_t k = k0; k < k1; k += 32) {                                                              \
            __m512 wa[NB], wb[NB];                                                                          \
            for (int j = 0; j < NB; j++) {                                                                  \
                wa[j] = _mm512_loadu_ps(d + (n0 + j) * ld + k);                                             \
                wb[j] = _mm512_loadu_ps(d + (n0 + j) * ld + k + 16);                                        \
            }                                                                                               \
            for (int i = 0; i < TB; i++) {                                                                  \
                __m512 xa = _mm512_loadu_ps(xp + (t0 + i) * K + k), xb = _mm512_loadu_ps(xp + (t0 + i) * K + k + 16); \
                for (int j = 0; j < NB; j++) {                                                              \
                    a[i][j] = _mm512_fmadd_ps(xa, wa[j], a[i][j]);                                          \
                    b[i][j] = _mm512_fmadd_ps(xb, wb[j], b[i][j]);                                          \
                }                                                                                           \
            }                                                                                               \
        }                                                                                                   \
        if (!last) {                                                                                        \
            for (int i = 0; i < TB; i++)                                                                    \
                for (int j = 0; j < NB; j++) {                                                              \
                    st[2 * (i * NB + j)] = a[i][j];                                                         \
                    st[2 * (i * NB + j) + 1] = b[i][j];                                                     \
                }                                                                                           \
            return;                                                                                         \
        }                                                                                                   \
        __m512 c[TB * NB];                                                                                  \
        float s[TB * NB];                                                                                   \
        for (int i = 0; i < TB; i++)                                                                        \
            for (int j = 0; j < NB; j++) c[i * NB + j] = _mm512_add_ps(a[i][j], b[i][j]);                   \
        ck_sums(c, TB * NB, s);                                                                             \
        for (int i = 0; i < TB; i++)                                                                        \
            for (int j = 0; j < NB; j++) y[(t0 + i) * ldy + n0 + j] = s[i * NB + j];                       \
    }
LANES_BLOCK(6, 2)
LANES_BLOCK(5, 2)
LANES_BLOCK(4, 2)
LANES_BLOCK(3, 2)
LANES_BLOCK(2, 2)
LANES_BLOCK(1, 2)
LANES_BLOCK(1, 1)

// Columns per pass of a 6-token block: its 6 x rows of LANES_KC floats (12 KB) stay in L1 while
// every row pair of the decoded block passes over them. Whole rows of K = 2,048 or 4,096 (the
// released checkpoints' widths) are 48-96 KB for 6 tokens, re-read from L2 by every row pair:
// one core at 50-70 % of the FMA peak, against ~90 % for K <= 1,024 (2026-12-08, Zen 4).
#ifndef LANES_KC
#define LANES_KC 1024
#endif

// TB tokens from t against all nr rows: row pairs in column passes of at most LANES_KC (their
// accumulators at st between passes), then an odd last row one token at a time.
#define LANES_TOKENS(TB)                                                                                     \
    TGT static void ltok_##TB(const float *xp, size_t K, const float *d, size_t ld, size_t nr, float *y,       \
                              size_t ldy, size_t t, __m512 *st) {                                            \
        size_t kc = K > LANES_KC ? LANES_KC : K;                                                             \
        for (size_t k0 = 0; k0 < K; k0 += kc) {                                                              \
            size_t k1 = k0 + kc < K ? k0 + kc : K;                                                           \
            for (size_t n = 0; n + 2 <= nr; n += 2)                                                          \
                lblk_##TB##x2(xp, K, d, ld, y, ldy, t, n, k0, k1, st + n / 2 * 4 * (TB), k0 == 0, k1 == K);   \
        }                                                                                                    \
        for (size_t n = nr / 2 * 2; n < nr; n++)                                                             \
            for (size_t i = 0; i < (TB); i++) lblk_1x1(xp, K, d, ld, y, ldy, t + i, n, 0, K, st, 1, 1);       \
    }
LANES_TOKENS(6)
LANES_TOKENS(5)
LANES_TOKENS(4)
LANES_TOKENS(3)
LANES_TOKENS(2)
LANES_TOKENS(1)

// Blocks of 6 tokens, then one block of the rest (an expert's 43 tokens: 7 × 6 + 1), each output
// the same arithmetic whatever block computes it.
TGT static void lanes_gemm(const float *xp, size_t T, size_t K, const float *d, size_t ld, size_t nr, float *y,
                           size_t ldy, __m512 *st) {
    size_t t = 0;
    for (; t + 6 <= T; t += 6) ltok_6(xp, K, d, ld, nr, y, ldy, t, st);
    switch (T - t) {
    case 5: ltok_5(xp, K, d, ld, nr, y, ldy, t, st); break;
    case 4: ltok_4(xp, K, d, ld, nr, y, ldy, t, st); break;
    case 3: ltok_3(xp, K, d, ld, nr, y, ldy, t, st); break;
    case 2: ltok_2(xp, K, d, ld, nr, y, ldy, t, st); break;
    case 1: ltok_1(xp, K, d, ld, nr, y, ldy, t, st); break;
    default: break;
    }
}

void ck_qlanes_matmul(const float *x, size_t ldx, size_t T, size_t K, const void *w, ck_dtype dtype,
                      const ck_scales *s, size_t N, float *y, size_t ldy) {
    float *xp = aligned_alloc(64, (T * K * sizeof(float) + 127) / 64 * 64);
    ck_qlanes_permute_x(dtype, x, ldx, T, K, xp);
    ck_qlanes_matmul_permuted(xp, T, K, w, dtype, s, N, y, ldy);
    free(xp);
}

void ck_qlanes_matmul_permuted(const float *xp, size_t T, size_t K, const void *w, ck_dtype dtype,
                               const ck_scales *s, size_t N, float *y, size_t ldy) {
    const uint8_t *wb = (const uint8_t *)w;
    // Up to 8 tokens (decode of a batch): each 32 weights decoded once in registers for all
    // tokens; more reuse each decoded row enough to go through a float buffer.
    switch (T) {
    case 1:
        if (dtype == CK_DTYPE_FP4E2M1 && s && !s->f32 && s->block_cols == 32) lanes_1_fp4x2(xp, K, wb, s, N, y);
        else lanes_1(xp, K, wb, dtype, s, N, y, ldy);
        return;
    case 2: lanes_2(xp, K, wb, dtype, s, N, y, ldy); return;
    case 3: lanes_3(xp, K, wb, dtype, s, N, y, ldy); return;
    case 4: lanes_4(xp, K, wb, dtype, s, N, y, ldy); return;
    case 5: lanes_5(xp, K, wb, dtype, s, N, y, ldy); return;
    case 6: lanes_6(xp, K, wb, dtype, s, N, y, ldy); return;
    case 7: lanes_7(xp, K, wb, dtype, s, N, y, ldy); return;
    case 8: lanes_8(xp, K, wb, dtype, s, N, y, ldy); return;
    default: break;
    }
    // Decoded rows: about 256 KB of them (in L2) per pass over the tokens, each row 64 bytes
    // longer than K floats. With rows exactly K floats apart a K that is a multiple of 1,024 put
    // every row, and the tokens' x rows, in the same L1 sets (4 KB apart): one core at 67-76 %
    // of the FMA peak for K = 1,024 against 76-89 % with the padding (2026-12-08, Zen 4; rows of
    // 64 KB per pass instead of 256 KB cost another 2-4 %).
    size_t ld = K + 16, R = (65536 / K) & ~(size_t)3;
    if (R < 32) R = 32;  // 16 row pairs at least over each 6 tokens' x columns (K = 4,096: 58 % -> 78 %)
    if (R > N) R = N;
    float *buf = aligned_alloc(64, R * ld * sizeof(float) + (R / 2 + 1) * 24 * sizeof(__m512));
    __m512 *st = (__m512 *)(buf + R * ld);  // the 6 x 2 blocks' accumulators between column passes
    for (size_t n0 = 0; n0 < N; n0 += R) {
        size_t nr = n0 + R <= N ? R : N - n0;
        decode_lanes(wb, dtype, K, s, n0, nr, buf, ld);
        lanes_gemm(xp, T, K, buf, ld, nr, y + n0, ldy, st);
    }
    free(buf);
}
