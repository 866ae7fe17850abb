// quant_lanes.c: FP8 / FP4 products in the BF16 kernel's lane order.
//
// Both formats widen exactly to bf16 patterns, 32 values per vector, and the BF16 kernel's
// in-lane unpack then yields two fp32 vectors per 32 weights (lanes {0-3, 8-11, 16-19,
// 24-27} and the rest) against x permuted once per product (ck_bf16_permute_x). That halves
// the decode work per weight against a natural-order decode. Decode (1-3 tokens) multiplies
// straight from registers; more tokens decode rows into a float buffer in the same lane
// order for the fp32 register blocks. Both give every element the same sum in the same
// order, so results do not depend on the batch.
//
// FP8 E4M3: the byte sign-extended to 16 bits and shifted left by 4, masked to 0x87F0, is a
// bf16 with the E4M3 mantissa and an exponent 120 too small (subnormals become fp32
// subnormals, also exact); 2^120 is folded into the block scale. NaN codes (0x7F/0xFF) are
// patched. FP4 E2M1 reads x in its own order (even elements, then odd ones, per 32) and
// looks each nibble up in a 16-entry table of scaled values (vpermps).
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

// 2^(v-127) from its exponent bits (the value ck_e8m0_to_f32 defines), without a call.
static inline float e8m0(uint8_t v) {
    if (v == 0) return 0x1p-127f;
    if (v == 255) return NAN;
    uint32_t bits = (uint32_t)v << 23;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// 32 FP8 weights of a row starting at element k, times `scale` (after 2^120 on its own
// when `split`: 2^120 · scale would overflow), as the two lane-ordered halves.
TGT static inline void fp8_group32(const uint8_t *row, size_t k, __m512 scale, int split, __m512 *wa, __m512 *wb) {
    const __m512i zero = _mm512_setzero_si512();
    __m256i raw = _mm256_loadu_si256((const __m256i *)(row + k));
    __m512i bf = _mm512_and_si512(_mm512_slli_epi16(_mm512_cvtepi8_epi16(raw), 4), _mm512_set1_epi16((short)0x87F0));
    __mmask32 nan = _mm256_cmpeq_epi8_mask(_mm256_and_si256(raw, _mm256_set1_epi8(0x7F)), _mm256_set1_epi8(0x7F));
    if (__builtin_expect(nan != 0, 0)) bf = _mm512_mask_mov_epi16(bf, nan, _mm512_set1_epi16(0x7FC0));  // bf16 NaN
    __m512 a = _mm512_castsi512_ps(_mm512_unpacklo_epi16(zero, bf)), b = _mm512_castsi512_ps(_mm512_unpackhi_epi16(zero, bf));
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

// FP4: 32 values from 16 bytes, even elements (low nibbles) in `wa`, odd ones in `wb`,
// looked up in the 16 E2M1 values already multiplied by the block's scale (one product per
// 32 weights; each value rounded once at most, as ck_decode_rows rounds it).
TGT static inline void fp4_group32(const uint8_t *row, size_t k, __m512 table, __m512 *wa, __m512 *wb) {
    __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + k / 2)));
    *wa = _mm512_permutexvar_ps(_mm512_and_si512(b, _mm512_set1_epi32(15)), table);
    *wb = _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), table);
}

TGT static inline __m512 fp4_table(float scale) {
    const __m512 t = _mm512_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                    -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f);
    return _mm512_mul_ps(t, _mm512_set1_ps(scale));
}

// x in the order a lane-ordered product reads it: the BF16 kernel's for FP8, even/odd
// halves of every 32 values for FP4.
void ck_qlanes_permute_x(ck_dtype dtype, const float *x, size_t ldx, size_t T, size_t K, float *out) {
    if (dtype != CK_DTYPE_FP4E2M1) {
        ck_bf16_permute_x(x, ldx, T, K, out);
        return;
    }
    for (size_t t = 0; t < T; t++) {
        const float *xr = x + t * ldx;
        float *o = out + t * K;
        for (size_t c = 0; c < K; c += 32)
            for (int j = 0; j < 16; j++) {
                o[c + (size_t)j] = xr[c + 2 * (size_t)j];
                o[c + 16 + (size_t)j] = xr[c + 2 * (size_t)j + 1];
            }
    }
}

#define LANES_FUSED(TB)                                                                                     \
    TGT static void lanes_##TB(const float *xp, size_t K, const uint8_t *w, ck_dtype dtype, const ck_scales *s, \
                               size_t N, float *y, size_t ldy) {                                             \
        int fp8 = dtype == CK_DTYPE_F8E4M3;                                                                  \
        size_t rb = ck_row_bytes(dtype, K), bc = s ? s->block_cols : K;                                      \
        for (size_t n = 0; n < N; n++) {                                                                     \
            const uint8_t *row = w + n * rb;                                                                 \
            size_t srow = s ? ((s->row0 + n) / s->block_rows) * s->ld : 0;                                   \
            __m512 acc[TB];                                                                                  \
            for (int t = 0; t < TB; t++) acc[t] = _mm512_setzero_ps();                                       \
            for (size_t k0 = 0, j = 0; k0 < K; k0 += bc, j++) {                                              \
                int split;                                                                                   \
                float f = block_scale(s, srow, j, fp8, &split);                                              \
                __m512 sc = _mm512_set1_ps(f);                                                               \
                __m512 table = fp8 ? sc : fp4_table(f);                                                      \
                size_t k1 = k0 + bc < K ? k0 + bc : K;                                                       \
                for (size_t k = k0; k < k1; k += 32) {                                                       \
                    __m512 wa, wb;                                                                           \
                    if (fp8) fp8_group32(row, k, sc, split, &wa, &wb);                                        \
                    else fp4_group32(row, k, table, &wa, &wb);                                               \
                    for (int t = 0; t < TB; t++) {                                                           \
                        acc[t] = _mm512_fmadd_ps(_mm512_loadu_ps(xp + t * K + k), wa, acc[t]);               \
                        acc[t] = _mm512_fmadd_ps(_mm512_loadu_ps(xp + t * K + k + 16), wb, acc[t]);          \
                    }                                                                                        \
                }                                                                                            \
            }                                                                                                \
            for (int t = 0; t < TB; t++) y[t * ldy + n] = _mm512_reduce_add_ps(acc[t]);                      \
        }                                                                                                    \
    }
LANES_FUSED(1)
LANES_FUSED(2)
LANES_FUSED(3)

TGT static void decode_lanes(const uint8_t *w, ck_dtype dtype, size_t K, const ck_scales *s, size_t n0, size_t nr,
                             float *dst) {
    int fp8 = dtype == CK_DTYPE_F8E4M3;
    size_t rb = ck_row_bytes(dtype, K), bc = s ? s->block_cols : K;
    for (size_t r = 0; r < nr; r++) {
        size_t n = n0 + r;
        const uint8_t *row = w + n * rb;
        size_t srow = s ? ((s->row0 + n) / s->block_rows) * s->ld : 0;
        for (size_t k0 = 0, j = 0; k0 < K; k0 += bc, j++) {
            int split;
            float f = block_scale(s, srow, j, fp8, &split);
            __m512 sc = _mm512_set1_ps(f);
            __m512 table = fp8 ? sc : fp4_table(f);
            size_t k1 = k0 + bc < K ? k0 + bc : K;
            for (size_t k = k0; k < k1; k += 32) {
                __m512 wa, wb;
                if (fp8) fp8_group32(row, k, sc, split, &wa, &wb);
                else fp4_group32(row, k, table, &wa, &wb);
                _mm512_storeu_ps(dst + r * K + k, wa);
                _mm512_storeu_ps(dst + r * K + k + 16, wb);
            }
        }
    }
}

void ck_qlanes_matmul(const float *x, size_t ldx, size_t T, size_t K, const void *w, ck_dtype dtype,
                      const ck_scales *s, size_t N, float *y, size_t ldy) {
    float *xp = malloc(T * K * sizeof(float) + 64);
    ck_qlanes_permute_x(dtype, x, ldx, T, K, xp);
    ck_qlanes_matmul_permuted(xp, T, K, w, dtype, s, N, y, ldy);
    free(xp);
}

void ck_qlanes_matmul_permuted(const float *xp, size_t T, size_t K, const void *w, ck_dtype dtype,
                               const ck_scales *s, size_t N, float *y, size_t ldy) {
    const uint8_t *wb = (const uint8_t *)w;
    if (T <= 3) {
        if (T == 1) lanes_1(xp, K, wb, dtype, s, N, y, ldy);
        else if (T == 2) lanes_2(xp, K, wb, dtype, s, N, y, ldy);
        else lanes_3(xp, K, wb, dtype, s, N, y, ldy);
        return;
    }
    size_t R = (16384 / K) & ~(size_t)3;
    if (R < 4) R = 4;
    if (R > N) R = N;
    float *buf = malloc(R * K * sizeof(float));
    for (size_t n0 = 0; n0 < N; n0 += R) {
        size_t nr = n0 + R <= N ? R : N - n0;
        decode_lanes(wb, dtype, K, s, n0, nr, buf);
        ck_matmul(xp, K, T, K, buf, CK_DTYPE_F32, nr, y + n0, ldy);
    }
    free(buf);
}
