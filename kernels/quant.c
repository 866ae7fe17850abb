// quant.c: matrix products over quantized weights read in place, in the released checkpoint
// format: OCP FP8 E4M3 with 128×128 block scales and packed OCP MX FP4 E2M1 with one scale per
// 32 inputs, scales in E8M0 or float32.
//
// The reference twin decodes every element as it multiplies, in index order. The fast path
// decodes a few weight rows at a time through lookup tables into a small scratch block and
// hands that block to the dense fp32 kernel, so each decoded row serves all T tokens and the
// full-precision weights never exist in memory.
#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

// MARK: - scalar decoders (the reference definitions)

float ck_e4m3_to_f32(uint8_t v) {
    if ((v & 0x7F) == 0x7F) return NAN;
    int e = (v >> 3) & 15, m = v & 7;
    float mag = e == 0 ? ldexpf((float)m, -9) : ldexpf((float)(8 + m), e - 10);
    return (v & 0x80) ? -mag : mag;
}

float ck_e8m0_to_f32(uint8_t v) {
    if (v == 0xFF) return NAN;
    return ldexpf(1.0f, (int)v - 127);
}

float ck_e2m1_to_f32(uint8_t v) {
    static const float mags[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
    float mag = mags[v & 7];
    return (v & 8) ? -mag : mag;
}

size_t ck_row_bytes(ck_dtype dtype, size_t K) {
    switch (dtype) {
    case CK_DTYPE_F32: return K * 4;
    case CK_DTYPE_BF16: case CK_DTYPE_F16: return K * 2;
    case CK_DTYPE_F8E4M3: return K;
    case CK_DTYPE_FP4E2M1: return (K + 1) / 2;
    }
    return 0;
}

static inline float scale_at(const ck_scales *s, size_t row, size_t k) {
    if (!s) return 1.0f;
    size_t i = ((s->row0 + row) / s->block_rows) * s->ld + k / s->block_cols;
    if (s->f32) return ((const float *)s->data)[i];
    return ck_e8m0_to_f32(((const uint8_t *)s->data)[i]);
}

static inline float element(const void *w, ck_dtype dtype, size_t K, size_t n, size_t k) {
    const uint8_t *row = (const uint8_t *)w + n * ck_row_bytes(dtype, K);
    switch (dtype) {
    case CK_DTYPE_F32: return ((const float *)row)[k];
    case CK_DTYPE_BF16: return ck_bf16_to_f32(((const uint16_t *)row)[k]);
    case CK_DTYPE_F16: return ck_f16_to_f32(((const uint16_t *)row)[k]);
    case CK_DTYPE_F8E4M3: return ck_e4m3_to_f32(row[k]);
    case CK_DTYPE_FP4E2M1: return ck_e2m1_to_f32((k & 1) ? (uint8_t)(row[k / 2] >> 4) : row[k / 2]);
    }
    return 0;
}

void ck_ref_matmul_scaled(const float *x, size_t ldx, size_t T, size_t K, const void *w, ck_dtype dtype,
                          const ck_scales *scales, size_t N, float *y, size_t ldy) {
    for (size_t t = 0; t < T; t++) {
        for (size_t n = 0; n < N; n++) {
            float s = 0;
            for (size_t k = 0; k < K; k++) s += x[t * ldx + k] * (element(w, dtype, K, n, k) * scale_at(scales, n, k));
            y[t * ldy + n] = s;
        }
    }
}

// MARK: - table-driven row decoding

static float e4m3_lut[256];
static float e8m0_lut[256];
static float e2m1_pair_lut[256][2];  // byte -> (low nibble, high nibble)

__attribute__((constructor)) static void build_tables(void) {
    for (int b = 0; b < 256; b++) {
        e4m3_lut[b] = ck_e4m3_to_f32((uint8_t)b);
        e8m0_lut[b] = ck_e8m0_to_f32((uint8_t)b);
        e2m1_pair_lut[b][0] = ck_e2m1_to_f32((uint8_t)(b & 15));
        e2m1_pair_lut[b][1] = ck_e2m1_to_f32((uint8_t)(b >> 4));
    }
}

// The scales of row `row`, block after block (no division per block: FP4 has one per 32 values);
// the table decoders' scales, which must be scale_at's values.
typedef struct {
    const ck_scales *s;
    size_t i;
} scale_walk;

static inline scale_walk scale_row(const ck_scales *s, size_t row) {
    return (scale_walk){s, s ? ((s->row0 + row) / s->block_rows) * s->ld : 0};
}

static inline float scale_next(scale_walk *w) {
    if (!w->s) return 1.0f;
    size_t i = w->i++;
    return w->s->f32 ? ((const float *)w->s->data)[i] : e8m0_lut[((const uint8_t *)w->s->data)[i]];
}

// MARK: - AVX-512 row decoders
//
// E4M3 without a lookup: the 7 magnitude bits shifted into an fp32's exponent/mantissa field
// give 2^(e-127)·(1+m/8) (normal) or m·2^-129 (e = 0, an fp32 subnormal); one exact multiply
// by 2^120 rebias them to 2^(e-7)·(1+m/8) and m·2^-9. 0x7F/0xFF become NaN, the sign is OR-ed in.
// E2M1: the 16 values sit in one register and each nibble indexes it (permutexvar).

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl")))

TGT static void decode_fp8_avx512(const uint8_t *row, size_t K, const ck_scales *s, size_t n, float *dst) {
    size_t bc = s ? s->block_cols : K;
    scale_walk sw = scale_row(s, n);
    const __m512 rebias = _mm512_set1_ps(0x1p120f);
    const __m512i mag = _mm512_set1_epi32(0x7F), sign = _mm512_set1_epi32(0x80);
    const __m512 nan = _mm512_set1_ps(NAN);
    for (size_t k0 = 0; k0 < K; k0 += bc) {
        size_t k1 = k0 + bc < K ? k0 + bc : K;
        __m512 sc = _mm512_set1_ps(scale_next(&sw));
        for (size_t k = k0; k < k1; k += 16) {
            __mmask16 m = k + 16 <= k1 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k1 - k)) - 1);
            __m512i b = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, row + k));
            __m512i bits = _mm512_slli_epi32(_mm512_and_si512(b, mag), 20);
            __m512 v = _mm512_mul_ps(_mm512_castsi512_ps(bits), rebias);
            v = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(v), _mm512_slli_epi32(_mm512_and_si512(b, sign), 24)));
            v = _mm512_mask_mov_ps(v, _mm512_cmpeq_epi32_mask(_mm512_and_si512(b, mag), mag), nan);
            _mm512_mask_storeu_ps(dst + k, m, _mm512_mul_ps(v, sc));
        }
    }
}

TGT static void decode_fp4_avx512(const uint8_t *row, size_t K, const ck_scales *s, size_t n, float *dst) {
    size_t bc = s ? s->block_cols : K;
    scale_walk sw = scale_row(s, n);
    const __m512 table = _mm512_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                        -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f);
    const __m512i pairs = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i shifts = _mm512_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4);
    const __m512i low = _mm512_set1_epi32(15);
    for (size_t k0 = 0; k0 < K; k0 += bc) {
        size_t k1 = k0 + bc < K ? k0 + bc : K;
        float scf = scale_next(&sw);
        __m512 sc = _mm512_set1_ps(scf);
        size_t k = k0;
        if (k & 1) { dst[k] = e2m1_pair_lut[row[k / 2]][1] * scf; k++; }
        for (; k + 16 <= k1; k += 16) {  // 16 values = 8 bytes
            __m512i b = _mm512_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(row + k / 2)));
            __m512i idx = _mm512_and_si512(_mm512_srlv_epi32(_mm512_permutexvar_epi32(pairs, b), shifts), low);
            _mm512_storeu_ps(dst + k, _mm512_mul_ps(_mm512_permutexvar_ps(idx, table), sc));
        }
        for (; k + 2 <= k1; k += 2) {
            const float *p = e2m1_pair_lut[row[k / 2]];
            dst[k] = p[0] * scf;
            dst[k + 1] = p[1] * scf;
        }
        if (k < k1) dst[k] = e2m1_pair_lut[row[k / 2]][0] * scf;
    }
}

// MARK: - AVX2 row decoders (machines without AVX-512)
//
// The same values as the tables, 16 (FP8) or 32 (FP4) at a time (fp8_chunk, fp4_codes, which
// the one-token products below share); a block's tail, odd FP4
// offsets and scales whose 2^8 multiple overflows go through the tables.
// E4M3 through fp16: the magnitude bits shifted left by 7 (sign to bit 15) are an fp16 of
// value v·2^-8, subnormals included, converted exactly by F16C; × (scale·2^8) then rounds the
// same real product v·scale as the table path. NaN codes (0x7F/0xFF) are patched.
// E2M1 through fp16 too: every E2M1 value is an fp16 whose low byte is zero, so a 16-byte
// table of high bytes (pshufb) and F16C decode 32 values per step.

#define TGT2 __attribute__((target("avx2,fma,f16c")))

// The 16 values of one chunk from the tables (the decoders' scalar values), zero past `count`.
static void q16_table(const uint8_t *row, ck_dtype dtype, size_t k, size_t count, float sc, float *dst) {
    for (size_t i = 0; i < 16; i++) {
        size_t c = k + i;
        if (i >= count) dst[i] = 0.0f;
        else if (dtype == CK_DTYPE_F8E4M3) dst[i] = e4m3_lut[row[c]] * sc;
        else dst[i] = e2m1_pair_lut[row[c / 2]][c & 1] * sc;
    }
}

// 16 E4M3 values at `p` times f (= scale · 256) as (wa, wb); returns nonzero when one is NaN.
TGT2 static inline int fp8_chunk(const uint8_t *p, __m256 f, __m256 *wa, __m256 *wb) {
    const __m256i mag = _mm256_set1_epi16(0x7F), sgn = _mm256_set1_epi16(0x80);
    __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)p));
    __m256i m = _mm256_and_si256(b, mag);
    __m256i h = _mm256_or_si256(_mm256_slli_epi16(m, 7), _mm256_slli_epi16(_mm256_and_si256(b, sgn), 8));
    *wa = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h)), f);
    *wb = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)), f);
    __m256i nan = _mm256_cmpeq_epi16(m, mag);
    return !_mm256_testz_si256(nan, nan);
}

// 16 E2M1 codes (one per byte, in value order) times f as (wa, wb). The fp16 encodings of the
// 16 E2M1 codes have a zero low byte: a table of their high bytes, by code.
TGT2 static inline void fp4_codes(__m128i codes, __m256 f, __m256 *wa, __m256 *wb) {
    const __m128i high = _mm_setr_epi8(0x00, 0x38, 0x3C, 0x3E, 0x40, 0x42, 0x44, 0x46, (char)0x80, (char)0xB8,
                                       (char)0xBC, (char)0xBE, (char)0xC0, (char)0xC2, (char)0xC4, (char)0xC6);
    __m256i h = _mm256_slli_epi16(_mm256_cvtepu8_epi16(_mm_shuffle_epi8(high, codes)), 8);
    *wa = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h)), f);
    *wb = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)), f);
}

// 16 E2M1 values (8 bytes, low nibble first) at `p` times f as (wa, wb).
TGT2 static inline void fp4_chunk(const uint8_t *p, __m256 f, __m256 *wa, __m256 *wb) {
    const __m128i low4 = _mm_set1_epi8(0x0F);
    __m128i v = _mm_loadl_epi64((const __m128i *)p);
    fp4_codes(_mm_unpacklo_epi8(_mm_and_si128(v, low4), _mm_and_si128(_mm_srli_epi16(v, 4), low4)), f, wa, wb);
}


// The values of one chunk for the rare cases: the tables (a non-finite ×256 scale, an FP8 NaN
// code, the row's last partial chunk), else the vector decoder.
TGT2 static inline void q_chunk_any(const uint8_t *row, ck_dtype dtype, size_t k, size_t K, size_t whole, float sc,
                                    int vec, __m256 f, __m256 *wa, __m256 *wb) {
    int table = k >= whole || !vec;
    if (!table) {
        if (dtype == CK_DTYPE_F8E4M3) table = fp8_chunk(row + k, f, wa, wb);
        else fp4_chunk(row + k / 2, f, wa, wb);
    }
    if (table) {
        _Alignas(32) float t16[16];
        q16_table(row, dtype, k, K - k < 16 ? K - k : 16, sc, t16);
        *wa = _mm256_load_ps(t16);
        *wb = _mm256_load_ps(t16 + 8);
    }
}

TGT2 static void decode_fp8_avx2(const uint8_t *row, size_t K, const ck_scales *s, size_t n, float *dst) {
    size_t bc = s ? s->block_cols : K;
    scale_walk sw = scale_row(s, n);
    for (size_t k0 = 0; k0 < K; k0 += bc) {
        size_t k1 = k0 + bc < K ? k0 + bc : K, k = k0;
        float sc = scale_next(&sw), sc8 = sc * 256.0f;
        if (isfinite(sc8)) {
            __m256 f = _mm256_set1_ps(sc8);
            for (; k + 16 <= k1; k += 16) {
                __m256 lo, hi;
                int nan = fp8_chunk(row + k, f, &lo, &hi);
                _mm256_storeu_ps(dst + k, lo);
                _mm256_storeu_ps(dst + k + 8, hi);
                if (nan)
                    for (size_t i = k; i < k + 16; i++) dst[i] = e4m3_lut[row[i]] * sc;
            }
        }
        for (; k < k1; k++) dst[k] = e4m3_lut[row[k]] * sc;
    }
}

TGT2 static void decode_fp4_avx2(const uint8_t *row, size_t K, const ck_scales *s, size_t n, float *dst) {
    size_t bc = s ? s->block_cols : K;
    scale_walk sw = scale_row(s, n);
    for (size_t k0 = 0; k0 < K; k0 += bc) {
        size_t k1 = k0 + bc < K ? k0 + bc : K, k = k0;
        float sc = scale_next(&sw);
        __m256 f = _mm256_set1_ps(sc);
        if (k & 1) { dst[k] = e2m1_pair_lut[row[k / 2]][1] * sc; k++; }
        for (; k + 32 <= k1; k += 32) {  // 32 values = 16 bytes, low nibble first
            const __m128i low4 = _mm_set1_epi8(0x0F);
            __m128i v = _mm_loadu_si128((const __m128i *)(row + k / 2));
            __m128i lo = _mm_and_si128(v, low4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), low4);
            __m128i codes[2] = {_mm_unpacklo_epi8(lo, hi), _mm_unpackhi_epi8(lo, hi)};  // values k..k+15, k+16..k+31
            for (int g = 0; g < 2; g++) {
                __m256 a, b;
                fp4_codes(codes[g], f, &a, &b);
                _mm256_storeu_ps(dst + k + 16 * g, a);
                _mm256_storeu_ps(dst + k + 16 * g + 8, b);
            }
        }
        for (; k + 2 <= k1; k += 2) {
            const float *p = e2m1_pair_lut[row[k / 2]];
            dst[k] = p[0] * sc;
            dst[k + 1] = p[1] * sc;
        }
        if (k < k1) dst[k] = e2m1_pair_lut[row[k / 2]][0] * sc;
    }
}

// MARK: - fused decode and product for few tokens (decode)
//
// For 1-3 tokens the decoded rows are never stored: each 16-value group is decoded into a
// register (the same instructions as the row decoders above, so the same values) and fed to
// the FMAs at once, one weight row at a time (a single sequential stream). The accumulation
// is that of the fp32 kernel's 1x1 block over the decoded row (16 lanes, k in steps of 16,
// masked tail, one reduction), so the result is bit-identical to decoding then multiplying.

// FP8: 32 values per step through fp16. The E4M3 magnitude bits shifted left by 7 are an
// fp16 with the same mantissa and an exponent 8 too small (bias 15 vs 7), subnormals
// included; the conversion to fp32 is exact and the factor 2^8 is folded into the block
// scale (powers of two: exact). NaN codes (0x7F/0xFF), which would decode to ±480 this way,
// are checked per 32 bytes and patched. Values in element order.
TGT static inline void fp8_group32(const uint8_t *p, __mmask32 m, __m512 *lo, __m512 *hi) {
    __m256i b = _mm256_maskz_loadu_epi8(m, p);
    __m512i w = _mm512_cvtepu8_epi16(b);
    __m512i h = _mm512_or_si512(_mm512_slli_epi16(_mm512_and_si512(w, _mm512_set1_epi16(0x7F)), 7),
                                _mm512_slli_epi16(_mm512_and_si512(w, _mm512_set1_epi16(0x80)), 8));
    *lo = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
    *hi = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
    __mmask32 nan = _mm256_cmpeq_epi8_mask(_mm256_and_si256(b, _mm256_set1_epi8(0x7F)), _mm256_set1_epi8(0x7F)) & m;
    if (__builtin_expect(nan != 0, 0)) {
        *lo = _mm512_mask_mov_ps(*lo, (__mmask16)nan, _mm512_set1_ps(NAN));
        *hi = _mm512_mask_mov_ps(*hi, (__mmask16)(nan >> 16), _mm512_set1_ps(NAN));
    }
}

// FP4: every E2M1 value is an fp16 whose low byte is 0, so a 16-entry byte table (pshufb)
// of the high bytes decodes 16 nibbles at a time; low and high nibbles interleaved give the
// values in element order.
TGT static inline __m512 fp4_group16(const uint8_t *p) {  // 16 values from 8 bytes
    const __m128i table = _mm_setr_epi8(0x00, 0x38, 0x3C, 0x3E, 0x40, 0x42, 0x44, 0x46,
                                        (char)0x80, (char)0xB8, (char)0xBC, (char)0xBE, (char)0xC0, (char)0xC2, (char)0xC4, (char)0xC6);
    const __m128i low = _mm_set1_epi8(0x0F);
    __m128i b = _mm_loadl_epi64((const __m128i *)p);
    __m128i tl = _mm_shuffle_epi8(table, _mm_and_si128(b, low));
    __m128i th = _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(b, 4), low));
    __m256i h = _mm256_slli_epi16(_mm256_cvtepu8_epi16(_mm_unpacklo_epi8(tl, th)), 8);
    return _mm512_cvtph_ps(h);
}

#define FUSED(TB)                                                                                           \
    TGT static void fused_##TB(const float *x, size_t ldx, size_t K, const uint8_t *w, ck_dtype dtype,      \
                               const ck_scales *s, size_t N, float *y, size_t ldy) {                        \
        size_t rb = ck_row_bytes(dtype, K), bc = s ? s->block_cols : K;                                     \
        int fp8 = dtype == CK_DTYPE_F8E4M3;                                                                 \
        /* 2^8·scale is exact for E8M0 scales; float32 ones take the two products apart */                  \
        int pow2 = !s || !s->f32;                                                                           \
        const __m512 two8 = _mm512_set1_ps(256.0f);                                                         \
        for (size_t n = 0; n < N; n++) {                                                                    \
            const uint8_t *row = w + n * rb;                                                                \
            __m512 acc[TB];                                                                                 \
            for (int t = 0; t < TB; t++) acc[t] = _mm512_setzero_ps();                                      \
            /* this row's scales: one division per row, not per block */                                    \
            size_t srow = s ? ((s->row0 + n) / s->block_rows) * s->ld : 0;                                  \
            for (size_t k0 = 0, j = 0; k0 < K; k0 += bc, j++) {                                             \
                size_t k1 = k0 + bc < K ? k0 + bc : K;                                                      \
                float scf = !s ? 1.0f : (s->f32 ? ((const float *)s->data)[srow + j]                        \
                                                : e8m0_lut[((const uint8_t *)s->data)[srow + j]]);          \
                __m512 sc = _mm512_set1_ps(scf);                                                            \
                __m512 sc8 = _mm512_set1_ps(scf * 256.0f);                                                  \
                size_t k = k0;                                                                              \
                if (fp8) {                                                                                  \
                    for (; k < k1; k += 32) {                                                               \
                        size_t left = k1 - k;                                                               \
                        __mmask32 m = left >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << left) - 1);  \
                        __m512 a, b;                                                                        \
                        fp8_group32(row + k, m, &a, &b);                                                    \
                        a = pow2 ? _mm512_mul_ps(a, sc8) : _mm512_mul_ps(_mm512_mul_ps(a, two8), sc);       \
                        __mmask16 m0 = (__mmask16)m, m1 = (__mmask16)(m >> 16);                             \
                        for (int t = 0; t < TB; t++)                                                        \
                            acc[t] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0, x + t * ldx + k), a, acc[t]);  \
                        if (left > 16) {                                                                    \
                            b = pow2 ? _mm512_mul_ps(b, sc8) : _mm512_mul_ps(_mm512_mul_ps(b, two8), sc);   \
                            for (int t = 0; t < TB; t++)                                                    \
                                acc[t] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1, x + t * ldx + k + 16), b, acc[t]); \
                        }                                                                                   \
                    }                                                                                       \
                } else {                                                                                    \
                    for (; k < k1; k += 16) {                                                               \
                        __mmask16 m = k + 16 <= k1 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k1 - k)) - 1); \
                        __m512 v;                                                                           \
                        if (m == 0xFFFF) v = fp4_group16(row + k / 2);                                      \
                        else {                                                                              \
                            uint8_t tmp[8] = {0};                                                           \
                            memcpy(tmp, row + k / 2, (k1 - k + 1) / 2);                                     \
                            v = _mm512_maskz_mov_ps(m, fp4_group16(tmp));                                   \
                        }                                                                                   \
                        v = _mm512_mul_ps(v, sc);                                                           \
                        for (int t = 0; t < TB; t++)                                                        \
                            acc[t] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + t * ldx + k), v, acc[t]); \
                    }                                                                                       \
                }                                                                                           \
            }                                                                                               \
            for (int t = 0; t < TB; t++) y[t * ldy + n] = ck_sum16(acc[t]);                                 \
        }                                                                                                   \
    }
FUSED(1)
FUSED(2)
FUSED(3)

// Whether the fused path computes the same sums as decode-then-multiply: scale blocks whole
// multiples of 16 columns (so the 16-steps line up), FP4 rows of even width.
static int fused_applies(ck_dtype dtype, size_t K, const ck_scales *s) {
    if (dtype != CK_DTYPE_F8E4M3 && dtype != CK_DTYPE_FP4E2M1) return 0;
    if (s && s->block_cols % 16 != 0) return 0;
    if (dtype == CK_DTYPE_FP4E2M1 && (K & 1)) return 0;
    return 1;
}

static void decode_row(const void *w, ck_dtype dtype, size_t K, const ck_scales *s, size_t n, float *dst) {
    const uint8_t *row = (const uint8_t *)w + n * ck_row_bytes(dtype, K);
    if (ck_use_avx512()) {
        if (dtype == CK_DTYPE_F8E4M3) { decode_fp8_avx512(row, K, s, n, dst); return; }
        if (dtype == CK_DTYPE_FP4E2M1) { decode_fp4_avx512(row, K, s, n, dst); return; }
    } else if (ck_use_avx2()) {
        if (dtype == CK_DTYPE_F8E4M3) { decode_fp8_avx2(row, K, s, n, dst); return; }
        if (dtype == CK_DTYPE_FP4E2M1) { decode_fp4_avx2(row, K, s, n, dst); return; }
    }
    scale_walk sw = scale_row(s, n);
    switch (dtype) {
    case CK_DTYPE_F8E4M3: {
        size_t bc = s ? s->block_cols : K;
        for (size_t k0 = 0; k0 < K; k0 += bc) {
            size_t k1 = k0 + bc < K ? k0 + bc : K;
            float sc = scale_next(&sw);
            for (size_t k = k0; k < k1; k++) dst[k] = e4m3_lut[row[k]] * sc;
        }
        break;
    }
    case CK_DTYPE_FP4E2M1: {
        size_t bc = s ? s->block_cols : K;
        for (size_t k0 = 0; k0 < K; k0 += bc) {
            size_t k1 = k0 + bc < K ? k0 + bc : K;
            float sc = scale_next(&sw);
            size_t k = k0;
            if (k & 1) { dst[k] = e2m1_pair_lut[row[k / 2]][1] * sc; k++; }
            for (; k + 2 <= k1; k += 2) {
                const float *p = e2m1_pair_lut[row[k / 2]];
                dst[k] = p[0] * sc;
                dst[k + 1] = p[1] * sc;
            }
            if (k < k1) dst[k] = e2m1_pair_lut[row[k / 2]][0] * sc;
        }
        break;
    }
    default:
        for (size_t k = 0; k < K; k++) dst[k] = element(w, dtype, K, n, k) * scale_at(s, n, k);
    }
}

void ck_decode_rows(const void *w, ck_dtype dtype, size_t K, const ck_scales *scales, size_t r0, size_t nrows,
                    float *dst) {
    for (size_t r = 0; r < nrows; r++) decode_row(w, dtype, K, scales, r0 + r, dst + r * K);
}

// MARK: - AVX2 decode (one token): FP8/FP4 decoded in registers
//
// A decode token uses each weight once, so writing decoded rows to a block and reading them
// back (the path below) costs more than the multiply. Here 16 values at a time are decoded by
// the chunk decoders decode_fp8_avx2 / decode_fp4_avx2 use (fp8_chunk, fp4_codes: equal values)
// straight into the two halves of the AVX2 fp32 product's chunk, and multiplied in the
// product's order (A += x[k..k+7]·w, then A += x[k+8..k+15]·w per chunk of 16, then hsum): the same
// FMAs on the same numbers, so a token's outputs are bit-identical to the decoded-block path
// (and so to any batch). Chunks the vector decoders hand to their tables (an FP8 NaN code, a
// scale whose ×256 overflows) and the row's last partial chunk take the tables' values.

// R rows (n0 ..< n0 + R) of one token, DT (FP8 / FP4) fixed: R accumulators. Scale block by
// scale block; a block whose rows all have finite factors runs a loop of whole chunks with only
// the FP8 NaN test as a branch, the rest (and the last partial chunk) goes through q_chunk_any.
// The next R rows are prefetched line by line (decode streams many short rows).
#define Q_ROWS(NAME, DT, R)                                                                                 \
    TGT2 static void NAME(const float *xp, size_t K, const uint8_t *w, const ck_scales *s, size_t n0, float *y) { \
        const int fp8 = DT == CK_DTYPE_F8E4M3;                                                              \
        size_t rb = ck_row_bytes(DT, K), bc = s ? s->block_cols : K, whole = K / 16 * 16;                   \
        const uint8_t *row[R];                                                                              \
        scale_walk sw[R];                                                                                   \
        __m256 a[R];                                                                                        \
        for (int j = 0; j < R; j++) {                                                                       \
            row[j] = w + (n0 + j) * rb;                                                                     \
            sw[j] = scale_row(s, n0 + j);                                                                   \
            a[j] = _mm256_setzero_ps();                                                                     \
        }                                                                                                   \
        for (size_t k0 = 0; k0 < K; k0 += bc) {                                                             \
            size_t k1 = k0 + bc < K ? k0 + bc : K, kv = k1 < whole ? k1 : whole, k = k0;                    \
            float sc[R];                                                                                    \
            __m256 f[R];                                                                                    \
            int finite = 1, vec[R];                                                                         \
            for (int j = 0; j < R; j++) {                                                                   \
                sc[j] = scale_next(&sw[j]);                                                                 \
                float g = fp8 ? sc[j] * 256.0f : sc[j];                                                     \
                vec[j] = isfinite(g);                                                                       \
                finite &= vec[j];                                                                           \
                f[j] = _mm256_set1_ps(g);                                                                   \
            }                                                                                               \
            if (finite)                                                                                     \
                for (; k < kv; k += 16) {                                                                   \
                    size_t kb = fp8 ? k : k / 2;                                                            \
                    if (kb % 64 == 0)                                                                       \
                        for (int j = 0; j < R; j++) _mm_prefetch((const char *)row[j] + R * rb + kb, _MM_HINT_T0); \
                    __m256 xa = _mm256_loadu_ps(xp + k), xb = _mm256_loadu_ps(xp + k + 8);                  \
                    for (int j = 0; j < R; j++) {                                                           \
                        __m256 wa, wb;                                                                      \
                        if (fp8) {                                                                          \
                            if (fp8_chunk(row[j] + k, f[j], &wa, &wb))                                      \
                                q_chunk_any(row[j], DT, k, K, 0, sc[j], 0, f[j], &wa, &wb);                 \
                        } else fp4_chunk(row[j] + k / 2, f[j], &wa, &wb);                                   \
                        a[j] = _mm256_fmadd_ps(xa, wa, a[j]);                                               \
                        a[j] = _mm256_fmadd_ps(xb, wb, a[j]);                                               \
                    }                                                                                       \
                }                                                                                           \
            for (; k < k1; k += 16) {                                                                       \
                __m256 xa = _mm256_loadu_ps(xp + k), xb = _mm256_loadu_ps(xp + k + 8);                      \
                for (int j = 0; j < R; j++) {                                                               \
                    __m256 wa, wb;                                                                          \
                    q_chunk_any(row[j], DT, k, K, whole, sc[j], vec[j], f[j], &wa, &wb);                    \
                    a[j] = _mm256_fmadd_ps(xa, wa, a[j]);                                                   \
                    a[j] = _mm256_fmadd_ps(xb, wb, a[j]);                                                   \
                }                                                                                           \
            }                                                                                               \
        }                                                                                                   \
        for (int j = 0; j < R; j++) y[n0 + j] = ck_avx2_hsum(a[j]);                                         \
    }
Q_ROWS(q8_rows_4, CK_DTYPE_F8E4M3, 4)
Q_ROWS(q8_rows_1, CK_DTYPE_F8E4M3, 1)
Q_ROWS(q4_rows_4, CK_DTYPE_FP4E2M1, 4)
Q_ROWS(q4_rows_1, CK_DTYPE_FP4E2M1, 1)

// FP8 E4M3, one token, 32 values per step without F16C: the byte sign-extended to 32 bits,
// shifted left by 20 and masked to 0x87F00000 is an fp32 with the E4M3 mantissa and an
// exponent 120 too small (E4M3 subnormals become fp32 subnormals: exact); 2^120 is folded into
// the block scale. The product w·f is then the same real number as the tables' value · scale
// (one rounding), so the same float. Blocks whose scale · 2^120 overflows, and 32-value steps
// holding a NaN code (0x7F/0xFF), take q_chunk_any (F16C or tables: the same values). When the
// rows of a step share one power-of-two factor f = scale · 2^120 ≥ 1 and max|x| · f is finite,
// x is multiplied by f instead (once for all rows): x·f is exact, so x·f times the unscaled value
// is the same real number as x times w and the FMA rounds it the same (one multiply per 8 values
// fewer per row: one core, weights in L3, 6.2–6.4 → 10.8–11.7 GB/s).
static int q8_blocks32(size_t K, const ck_scales *s) {
    return K % 32 == 0 && (!s || s->block_cols % 32 == 0);
}

// The E4M3 values 2^-120 too small (FP8_W8 without its factor).
#define FP8_RAW(p) \
    _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p))), 20), m87f))
#define FP8_W8(p, f)                                                                                        \
    _mm256_mul_ps(_mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p))), 20), m87f)), f)

// Nonzero when the n bytes at p (a multiple of 32) hold no E4M3 NaN code.
TGT2 static inline int fp8_no_nan(const uint8_t *p, size_t n) {
    const __m256i mag = _mm256_set1_epi8(0x7F);
    __m256i any = _mm256_setzero_si256();
    for (size_t i = 0; i < n; i += 32)
        any = _mm256_or_si256(any, _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_loadu_si256((const __m256i *)(p + i)), mag), mag));
    return _mm256_testz_si256(any, any);
}

#define Q8_ROWS32(NAME, R)                                                                                  \
    TGT2 static void NAME(const float *xp, size_t K, const uint8_t *w, const ck_scales *s, size_t n0, float *y, \
                          float xmax) {                                                                     \
        const __m256i m87f = _mm256_set1_epi32((int)0x87F00000u), m7f = _mm256_set1_epi8(0x7F);            \
        size_t bc = s ? s->block_cols : K;                                                                  \
        /* prefetch the rows of a later group: at least 4 KB ahead (short rows stream on their own) */      \
        size_t ahead = (4096 + R * K - 1) / (R * K) * (R * K);                                              \
        const uint8_t *row[R];                                                                              \
        scale_walk sw[R];                                                                                   \
        __m256 a[R];                                                                                        \
        for (int j = 0; j < R; j++) {                                                                       \
            row[j] = w + (n0 + j) * K;                                                                      \
            sw[j] = scale_row(s, n0 + j);                                                                   \
            a[j] = _mm256_setzero_ps();                                                                     \
        }                                                                                                   \
        for (size_t k0 = 0; k0 < K; k0 += bc) {                                                             \
            size_t k1 = k0 + bc < K ? k0 + bc : K;                                                          \
            float sc[R];                                                                                    \
            __m256 f[R], saved[R];                                                                          \
            int fast = 1;                                                                                   \
            for (int j = 0; j < R; j++) {                                                                   \
                sc[j] = scale_next(&sw[j]);                                                                 \
                float g = sc[j] * 0x1p120f;                                                                 \
                fast &= isfinite(g);                                                                        \
                f[j] = _mm256_set1_ps(g);                                                                   \
                saved[j] = a[j];                                                                            \
            }                                                                                               \
            /* one power-of-two factor f >= 1 for all R rows, x·f finite: x·f once per step (exact) */      \
            int pre = fast && (!s || !s->f32) && sc[0] * 0x1p120f >= 1.0f && isfinite(xmax * sc[0] * 0x1p120f); \
            for (int j = 1; j < R; j++) pre &= sc[j] == sc[0];                                              \
            __m256i nan = _mm256_setzero_si256();  /* max of (byte & 0x7F): 0x7F where an E4M3 NaN code is */ \
            if (pre) {                                                                                      \
                for (size_t k = k0; k < k1; k += 32) {                                                      \
                    const float *x = xp + k;                                                                \
                    if (k % 64 == 0)                                                                        \
                        for (int j = 0; j < R; j++) _mm_prefetch((const char *)row[j] + ahead + k, _MM_HINT_T0);   \
                    __m256 x0 = _mm256_mul_ps(_mm256_loadu_ps(x), f[0]);                                    \
                    __m256 x1 = _mm256_mul_ps(_mm256_loadu_ps(x + 8), f[0]);                                \
                    __m256 x2 = _mm256_mul_ps(_mm256_loadu_ps(x + 16), f[0]);                               \
                    __m256 x3 = _mm256_mul_ps(_mm256_loadu_ps(x + 24), f[0]);                               \
                    for (int j = 0; j < R; j++) {                                                           \
                        const uint8_t *p = row[j] + k;                                                      \
                        nan = _mm256_max_epu8(nan, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)p), m7f)); \
                        a[j] = _mm256_fmadd_ps(x0, FP8_RAW(p), a[j]);                                       \
                        a[j] = _mm256_fmadd_ps(x1, FP8_RAW(p + 8), a[j]);                                   \
                        a[j] = _mm256_fmadd_ps(x2, FP8_RAW(p + 16), a[j]);                                  \
                        a[j] = _mm256_fmadd_ps(x3, FP8_RAW(p + 24), a[j]);                                  \
                    }                                                                                       \
                }                                                                                           \
            } else if (fast) {                                                                              \
                for (size_t k = k0; k < k1; k += 32) {                                                      \
                    const float *x = xp + k;                                                                \
                    if (k % 64 == 0)                                                                        \
                        for (int j = 0; j < R; j++) _mm_prefetch((const char *)row[j] + ahead + k, _MM_HINT_T0);   \
                    for (int j = 0; j < R; j++) {                                                           \
                        const uint8_t *p = row[j] + k;                                                      \
                        nan = _mm256_max_epu8(nan, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)p), m7f)); \
                        a[j] = _mm256_fmadd_ps(_mm256_loadu_ps(x), FP8_W8(p, f[j]), a[j]);                  \
                        a[j] = _mm256_fmadd_ps(_mm256_loadu_ps(x + 8), FP8_W8(p + 8, f[j]), a[j]);          \
                        a[j] = _mm256_fmadd_ps(_mm256_loadu_ps(x + 16), FP8_W8(p + 16, f[j]), a[j]);        \
                        a[j] = _mm256_fmadd_ps(_mm256_loadu_ps(x + 24), FP8_W8(p + 24, f[j]), a[j]);        \
                    }                                                                                       \
                }                                                                                           \
            }                                                                                               \
            /* a NaN code in the step: the step again from its start, value by value */                     \
            if (fast && _mm256_movemask_epi8(_mm256_cmpeq_epi8(nan, m7f))) {                                \
                fast = 0;                                                                                   \
                for (int j = 0; j < R; j++) a[j] = saved[j];                                                \
            }                                                                                               \
            if (!fast) {                                                                                    \
                for (int j = 0; j < R; j++) {                                                               \
                    __m256 f8 = _mm256_set1_ps(sc[j] * 256.0f);                                             \
                    int vec8 = isfinite(sc[j] * 256.0f);                                                    \
                    for (size_t k = k0; k < k1; k += 16) {                                                  \
                        __m256 wa, wb;                                                                      \
                        q_chunk_any(row[j], CK_DTYPE_F8E4M3, k, K, K, sc[j], vec8, f8, &wa, &wb);           \
                        a[j] = _mm256_fmadd_ps(_mm256_loadu_ps(xp + k), wa, a[j]);                          \
                        a[j] = _mm256_fmadd_ps(_mm256_loadu_ps(xp + k + 8), wb, a[j]);                      \
                    }                                                                                       \
                }                                                                                           \
            }                                                                                               \
        }                                                                                                   \
        for (int j = 0; j < R; j++) y[n0 + j] = ck_avx2_hsum(a[j]);                                         \
    }
Q8_ROWS32(q8_rows32_4, 4)
Q8_ROWS32(q8_rows32_1, 1)

// FP4 with E8M0 scales per 32 values (DeepSeek's released experts, the bulk of a decode token).
static int q4_blocks32(size_t K, const ck_scales *s) {
    return s && !s->f32 && s->block_cols == 32 && K % 32 == 0;
}

// FP4 on AVX2, one token and a few (2-8). The kernel before this one spent most of a block's
// ~25 vector operations converting: integers sign-extended, converted, times the scale. Here
// the 32 codes of a block are looked up as the top two bytes of their fp32 values (two pshufb
// on the same codes) and widened to fp32 by byte and word unpacks with zero: no conversion.
// For one token the scale goes to x: a prepared x holds x·2^(e−127) for a range of E8M0 bytes
// e (cut where that product could overflow or leave the normal range, so every copy is exact),
// and a block whose scale is in the range feeds its x copy to the FMAs as memory operands; any
// other block (and every block of a few tokens) multiplies its values by the scale: the same
// real product, v·scale being exact. The unpacks leave each 8-value vector in lane order
// 0,2,4,6,1,3,5,7, so x is permuted the same way and every accumulator lane runs the chain of
// the element-order lane it stands for; one vpermps per row puts the lanes back before the
// same horizontal sum: the bits of the decoded-rows product (tested, batch sizes, extreme x and
// scales). bench/fp4_floatbits.c: one core, 4,096 × 2,048 in L3, 8.6 → 13.8 Gweights/s.
//
// A prepared x: a header of FP4X_HEAD floats (as ints: e0, ne), xq = x permuted (K floats),
// then ne copies xq · 2^(e0 + i − 127).
enum { FP4X_EXPS = 8, FP4X_HEAD = 16 };
// Rows from which one token's product prepares the copies on its own (a wave prepares them once
// per product); fewer rows only permute x (their blocks multiply the values by the scale).
enum { FP4X_MIN_ROWS = 16 };

// The 32 values of the 16 FP4 bytes at p as fp32 (unscaled E2M1 values), values 8c..8c+7 in
// vector c, each in lane order 0,2,4,6,1,3,5,7 (the low 128 bits: even elements, the high:
// odd): the codes' top two fp32 bytes by two pshufb, widened by unpacks with zero.
#define FP4_FLOATS_CONSTS                                                                                   \
    const __m256i sh = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4), low4 = _mm256_set1_epi8(0x0F);           \
    const __m256i top = _mm256_broadcastsi128_si256(_mm_setr_epi8(0, 0x3F, 0x3F, 0x3F, 0x40, 0x40, 0x40, 0x40, \
        0, (char)0xBF, (char)0xBF, (char)0xBF, (char)0xC0, (char)0xC0, (char)0xC0, (char)0xC0));             \
    const __m256i sec = _mm256_broadcastsi128_si256(_mm_setr_epi8(0, 0, (char)0x80, (char)0xC0, 0, 0x40,     \
        (char)0x80, (char)0xC0, 0, 0, (char)0x80, (char)0xC0, 0, 0x40, (char)0x80, (char)0xC0));            \
    const __m256i zero = _mm256_setzero_si256(), fp4back = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)
#define FP4_FLOATS(p, v0, v1, v2, v3)                                                                       \
    do {                                                                                                    \
        __m256i b_ = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(p)));                    \
        __m256i c_ = _mm256_and_si256(_mm256_srlv_epi32(b_, sh), low4);                                     \
        __m256i t1_ = _mm256_shuffle_epi8(top, c_), t2_ = _mm256_shuffle_epi8(sec, c_);                     \
        __m256i h0_ = _mm256_unpacklo_epi8(t2_, t1_), h1_ = _mm256_unpackhi_epi8(t2_, t1_);                 \
        v0 = _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, h0_));                                         \
        v1 = _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, h0_));                                         \
        v2 = _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, h1_));                                         \
        v3 = _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, h1_));                                         \
    } while (0)

// x in FP4_FLOATS' lane order: each 8 values permuted 0,2,4,6,1,3,5,7 (K a multiple of 8).
TGT2 static void fp4_permute_x(const float *x, size_t K, float *out) {
    const __m256i perm = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    for (size_t k = 0; k < K; k += 8) _mm256_storeu_ps(out + k, _mm256_permutevar8x32_ps(_mm256_loadu_ps(x + k), perm));
}


size_t ck_fp4x_floats(size_t K) { return FP4X_HEAD + (1 + (size_t)FP4X_EXPS) * K; }

int ck_fp4x_applies(ck_dtype dtype, size_t T, size_t K, const ck_scales *s) {
    return dtype == CK_DTYPE_FP4E2M1 && T == 1 && q4_blocks32(K, s) && ck_use_avx2() && !ck_use_avx512();
}

// The E8M0 bytes of a range: those of three sample rows (first, middle, last), at most
// FP4X_EXPS, cut to the bytes e for which x·2^(e−127) is exact for every x.
TGT2 static void fp4x_range(const float *x, size_t K, const ck_scales *s, size_t N, int *e0, int *ne) {
    size_t nb = K / 32, rows[3] = {0, N / 2, N - 1};
    int count[256] = {0}, mn = 255, mx = -1;
    for (int r = 0; r < 3; r++) {
        const uint8_t *sc = (const uint8_t *)s->data + ((s->row0 + rows[r]) / s->block_rows) * s->ld;
        for (size_t b = 0; b < nb; b++) {
            int e = sc[b];
            if (e == 255) continue;  // NaN: never in a range
            count[e]++;
            mn = e < mn ? e : mn;
            mx = e > mx ? e : mx;
        }
    }
    // the sampled exponents, or the FP4X_EXPS of them that hold the most samples: each copy costs
    // K floats written on the main thread (unused ones were a third of a released-layout wave's
    // preparation), and a block outside the range only multiplies by its scale
    if (mx < 0) {
        *e0 = *ne = 0;
        return;
    }
    int lo = mn, hi = mx;
    if (mx - mn >= FP4X_EXPS) {
        int best = -1;
        for (int e = mn; e + FP4X_EXPS - 1 <= mx; e++) {
            int c = 0;
            for (int i = 0; i < FP4X_EXPS; i++) c += count[e + i];
            if (c > best) best = c, lo = e;
        }
        hi = lo + FP4X_EXPS - 1;
    }
    // finite max |x| and nonzero min |x| (NaN and ±inf stay what they are when scaled)
    const __m256 abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF)), inf = _mm256_set1_ps(INFINITY);
    __m256 vmax = _mm256_setzero_ps(), vmin = inf;
    for (size_t k = 0; k < K; k += 8) {
        __m256 a = _mm256_and_ps(_mm256_loadu_ps(x + k), abs);
        __m256 fin = _mm256_cmp_ps(a, inf, _CMP_LT_OQ), nz = _mm256_and_ps(fin, _mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_GT_OQ));
        vmax = _mm256_max_ps(vmax, _mm256_and_ps(a, fin));
        vmin = _mm256_min_ps(vmin, _mm256_blendv_ps(inf, a, nz));
    }
    _Alignas(32) float tx[8], tn[8];
    _mm256_store_ps(tx, vmax);
    _mm256_store_ps(tn, vmin);
    float xmax = 0, xmin = INFINITY;
    for (int i = 0; i < 8; i++) xmax = tx[i] > xmax ? tx[i] : xmax, xmin = tn[i] < xmin ? tn[i] : xmin;
    int first = -1, last = -2;
    for (int e = lo; e <= hi; e++) {
        float f = e8m0_lut[e];
        int ok = isfinite(xmax * f) && (f >= 1.0f || xmin == INFINITY || xmin * f >= FLT_MIN);
        if (ok && first < 0) first = e;
        if (ok) last = e;
        else if (first >= 0) break;
    }
    *e0 = first < 0 ? 0 : first;
    *ne = first < 0 ? 0 : last - first + 1;
}

TGT2 void ck_fp4x_prepare(const float *x, size_t K, const ck_scales *s, size_t N, float *dst) {
    int e0 = 0, ne = 0;
    if (N >= FP4X_MIN_ROWS) fp4x_range(x, K, s, N, &e0, &ne);
    ((int *)dst)[0] = e0;
    ((int *)dst)[1] = ne;
    float *xq = dst + FP4X_HEAD;
    fp4_permute_x(x, K, xq);
    for (int i = 0; i < ne; i++) {
        __m256 f = _mm256_set1_ps(e8m0_lut[e0 + i]);
        float *xe = xq + (size_t)(i + 1) * K;
        for (size_t k = 0; k < K; k += 8) _mm256_storeu_ps(xe + k, _mm256_mul_ps(_mm256_loadu_ps(xq + k), f));
    }
}

// R rows (n0 ..< n0 + R) of one token over a prepared x.
#define FP4X_ROWS(NAME, R)                                                                                  \
    TGT2 static void NAME(const float *xp, size_t K, const uint8_t *w, const ck_scales *s, size_t n0, float *y) { \
        FP4_FLOATS_CONSTS;                                                                                  \
        unsigned e0 = (unsigned)((const int *)xp)[0], ne = (unsigned)((const int *)xp)[1];                  \
        const float *xq = xp + FP4X_HEAD;                                                                   \
        size_t rb = K / 2, nb = K / 32;                                                                     \
        const uint8_t *row[R], *sc[R];                                                                      \
        __m256 a[R];                                                                                        \
        for (int j = 0; j < R; j++) {                                                                       \
            row[j] = w + (n0 + j) * rb;                                                                     \
            sc[j] = (const uint8_t *)s->data + ((s->row0 + n0 + j) / s->block_rows) * s->ld;                \
            a[j] = _mm256_setzero_ps();                                                                     \
        }                                                                                                   \
        for (size_t blk = 0; blk < nb; blk++) {                                                             \
            if (blk % 4 == 0)                                                                               \
                for (int j = 0; j < R; j++) _mm_prefetch((const char *)row[j] + R * rb + blk * 16, _MM_HINT_T0); \
            for (int j = 0; j < R; j++) {                                                                   \
                __m256 v0, v1, v2, v3;                                                                      \
                FP4_FLOATS(row[j] + blk * 16, v0, v1, v2, v3);                                              \
                unsigned d = (unsigned)sc[j][blk] - e0;                                                     \
                const float *x = xq + blk * 32;                                                             \
                if (d < ne) {                                                                               \
                    x += (size_t)(d + 1) * K;                                                               \
                } else {                                                                                    \
                    __m256 f = _mm256_broadcast_ss(&e8m0_lut[sc[j][blk]]);                                  \
                    v0 = _mm256_mul_ps(v0, f), v1 = _mm256_mul_ps(v1, f);                                   \
                    v2 = _mm256_mul_ps(v2, f), v3 = _mm256_mul_ps(v3, f);                                   \
                }                                                                                           \
                a[j] = _mm256_fmadd_ps(_mm256_loadu_ps(x), v0, a[j]);                                       \
                a[j] = _mm256_fmadd_ps(_mm256_loadu_ps(x + 8), v1, a[j]);                                   \
                a[j] = _mm256_fmadd_ps(_mm256_loadu_ps(x + 16), v2, a[j]);                                  \
                a[j] = _mm256_fmadd_ps(_mm256_loadu_ps(x + 24), v3, a[j]);                                  \
            }                                                                                               \
        }                                                                                                   \
        for (int j = 0; j < R; j++) y[n0 + j] = ck_avx2_hsum(_mm256_permutevar8x32_ps(a[j], fp4back));      \
    }
FP4X_ROWS(fp4x_rows_4, 4)
FP4X_ROWS(fp4x_rows_1, 1)

void ck_fp4x_matmul(const float *xp, size_t K, const void *w, const ck_scales *s, size_t N, float *y) {
    size_t n = 0;
    for (; n + 4 <= N; n += 4) fp4x_rows_4(xp, K, (const uint8_t *)w, s, n, y);
    for (; n < N; n++) fp4x_rows_1(xp, K, (const uint8_t *)w, s, n, y);
}

// max |x[k]| over K (a multiple of 32 here); NaNs are passed over (they stay NaN either way).
TGT2 static float abs_max_avx2(const float *x, size_t K) {
    const __m256 abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 m = _mm256_setzero_ps();
    for (size_t k = 0; k + 8 <= K; k += 8) m = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + k), abs), m);
    _Alignas(32) float t[8];
    _mm256_store_ps(t, m);
    float r = 0;
    for (int i = 0; i < 8; i++) r = t[i] > r ? t[i] : r;
    return r;
}

// One token over N rows; x prepared (zero-padded to whole chunks).
static void q_decode_avx2(const float *xp, size_t K, const void *w, ck_dtype dtype, const ck_scales *s, size_t N,
                          float *y) {
    const uint8_t *wb = (const uint8_t *)w;
    int fp8 = dtype == CK_DTYPE_F8E4M3;
    size_t n = 0;
    if (fp8 && q8_blocks32(K, s)) {
        float xmax = abs_max_avx2(xp, K);
        for (; n + 4 <= N; n += 4) q8_rows32_4(xp, K, wb, s, n, y, xmax);
        for (; n < N; n++) q8_rows32_1(xp, K, wb, s, n, y, xmax);
        return;
    }
    if (!fp8 && q4_blocks32(K, s)) {
        float *xe = ck_thread_scratch(CK_SCRATCH_FP4X, ck_fp4x_floats(K));
        ck_fp4x_prepare(xp, K, s, N, xe);
        ck_fp4x_matmul(xe, K, wb, s, N, y);
        return;
    }
    for (; n + 4 <= N; n += 4) (fp8 ? q8_rows_4 : q4_rows_4)(xp, K, wb, s, n, y);
    for (; n < N; n++) (fp8 ? q8_rows_1 : q4_rows_1)(xp, K, wb, s, n, y);
}

// A few tokens (2 to 4: batched decode, an expert a few streams chose) over one row: each
// 32-value step decoded once, as above, and fed to every token's accumulator in the
// one-token order, so every token's bits are its one-token bits. x prepared, P floats per token.
// The 32 values w0..w3 (at k) into each of TT tokens' accumulators acc[t], in the one-token order.
#define Q_TOKEN_FMAS(TT, acc, xp, P, k)                                                                     \
    for (int t = 0; t < TT; t++) {                                                                          \
        const float *x_ = (xp) + t * (P) + (k);                                                             \
        acc[t] = _mm256_fmadd_ps(_mm256_loadu_ps(x_), w0, acc[t]);                                          \
        acc[t] = _mm256_fmadd_ps(_mm256_loadu_ps(x_ + 8), w1, acc[t]);                                      \
        acc[t] = _mm256_fmadd_ps(_mm256_loadu_ps(x_ + 16), w2, acc[t]);                                     \
        acc[t] = _mm256_fmadd_ps(_mm256_loadu_ps(x_ + 24), w3, acc[t]);                                     \
    }

#define Q4_TOKENS(NAME, TT)                                                                                 \
    TGT2 static void NAME(const float *xq, size_t P, size_t K, const uint8_t *w, const ck_scales *s, size_t n0, \
                          size_t R, float *y, size_t ldy) {                                                 \
        FP4_FLOATS_CONSTS;                                                                                  \
        size_t rb = K / 2, nb = K / 32;                                                                     \
        const uint8_t *row[2], *sc[2];                                                                      \
        __m256 a[2][TT];                                                                                    \
        for (size_t j = 0; j < 2; j++) {                                                                    \
            size_t n = n0 + (j < R ? j : 0);                                                                \
            row[j] = w + n * rb;                                                                            \
            sc[j] = (const uint8_t *)s->data + ((s->row0 + n) / s->block_rows) * s->ld;                     \
            for (int t = 0; t < TT; t++) a[j][t] = _mm256_setzero_ps();                                     \
        }                                                                                                   \
        for (size_t blk = 0; blk < nb; blk++) {                                                             \
            if (blk % 4 == 0)                                                                               \
                for (int j = 0; j < 2; j++) _mm_prefetch((const char *)row[j] + 2 * rb + blk * 16, _MM_HINT_T0); \
            for (int j = 0; j < 2; j++) {                                                                   \
                __m256 f = _mm256_broadcast_ss(&e8m0_lut[sc[j][blk]]), w0, w1, w2, w3;                      \
                FP4_FLOATS(row[j] + blk * 16, w0, w1, w2, w3);                                              \
                w0 = _mm256_mul_ps(w0, f), w1 = _mm256_mul_ps(w1, f);                                       \
                w2 = _mm256_mul_ps(w2, f), w3 = _mm256_mul_ps(w3, f);                                       \
                Q_TOKEN_FMAS(TT, a[j], xq, P, blk * 32);                                                    \
            }                                                                                               \
        }                                                                                                   \
        for (size_t j = 0; j < R; j++)                                                                      \
            for (int t = 0; t < TT; t++)                                                                    \
                y[t * ldy + n0 + j] = ck_avx2_hsum(_mm256_permutevar8x32_ps(a[j][t], fp4back));             \
    }
Q4_TOKENS(q4_tokens_2, 2)
Q4_TOKENS(q4_tokens_3, 3)
Q4_TOKENS(q4_tokens_4, 4)

// The same for FP8 (two rows, 2 to 4 tokens), scale block by scale block as q8_rows32.
#define Q8_TOKENS(NAME, TT)                                                                                 \
    TGT2 static void NAME(const float *xp, size_t P, size_t K, const uint8_t *w, const ck_scales *s, size_t n0, \
                          size_t R, float *y, size_t ldy) {                                                 \
        const __m256i m87f = _mm256_set1_epi32((int)0x87F00000u), m7f = _mm256_set1_epi8(0x7F);            \
        size_t bc = s ? s->block_cols : K;                                                                  \
        const uint8_t *row[2];                                                                              \
        scale_walk sw[2];                                                                                   \
        __m256 a[2][TT];                                                                                    \
        for (size_t j = 0; j < 2; j++) {                                                                    \
            size_t n = n0 + (j < R ? j : 0);                                                                \
            row[j] = w + n * K;                                                                             \
            sw[j] = scale_row(s, n);                                                                        \
            for (int t = 0; t < TT; t++) a[j][t] = _mm256_setzero_ps();                                     \
        }                                                                                                   \
        for (size_t k0 = 0; k0 < K; k0 += bc) {                                                             \
            size_t k1 = k0 + bc < K ? k0 + bc : K;                                                          \
            float sc[2];                                                                                    \
            __m256 f[2];                                                                                    \
            int fast[2];                                                                                    \
            for (int j = 0; j < 2; j++) {                                                                   \
                sc[j] = scale_next(&sw[j]);                                                                 \
                float g = sc[j] * 0x1p120f;                                                                 \
                f[j] = _mm256_set1_ps(g);                                                                   \
                fast[j] = isfinite(g);                                                                      \
            }                                                                                               \
            if (fast[0] && fast[1]) {  /* NaN codes found in the same pass, as in q8_rows32 */              \
                __m256 saved[2][TT];                                                                        \
                for (int j = 0; j < 2; j++)                                                                 \
                    for (int t = 0; t < TT; t++) saved[j][t] = a[j][t];                                     \
                __m256i nan = _mm256_setzero_si256();                                                       \
                for (size_t k = k0; k < k1; k += 32) {                                                      \
                    if (k % 128 == 0)                                                                       \
                        for (int j = 0; j < 2; j++) _mm_prefetch((const char *)row[j] + 2 * K + k, _MM_HINT_T0); \
                    for (int j = 0; j < 2; j++) {                                                           \
                        nan = _mm256_max_epu8(nan, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(row[j] + k)), m7f)); \
                        __m256 w0 = FP8_W8(row[j] + k, f[j]), w1 = FP8_W8(row[j] + k + 8, f[j]);            \
                        __m256 w2 = FP8_W8(row[j] + k + 16, f[j]), w3 = FP8_W8(row[j] + k + 24, f[j]);      \
                        Q_TOKEN_FMAS(TT, a[j], xp, P, k);                                                   \
                    }                                                                                       \
                }                                                                                           \
                if (!_mm256_movemask_epi8(_mm256_cmpeq_epi8(nan, m7f))) continue;                           \
                for (int j = 0; j < 2; j++) {  /* a NaN code: the step again, row by row as below */        \
                    for (int t = 0; t < TT; t++) a[j][t] = saved[j][t];                                     \
                    fast[j] = fp8_no_nan(row[j] + k0, k1 - k0);                                             \
                }                                                                                           \
            }                                                                                               \
            for (size_t k = k0; k < k1; k += 32) {                                                          \
                for (int j = 0; j < 2; j++) {                                                               \
                    __m256 w0, w1, w2, w3;                                                                  \
                    if (fast[j]) {                                                                          \
                        w0 = FP8_W8(row[j] + k, f[j]), w1 = FP8_W8(row[j] + k + 8, f[j]);                   \
                        w2 = FP8_W8(row[j] + k + 16, f[j]), w3 = FP8_W8(row[j] + k + 24, f[j]);             \
                    } else {                                                                                \
                        __m256 f8 = _mm256_set1_ps(sc[j] * 256.0f);                                         \
                        int vec8 = isfinite(sc[j] * 256.0f);                                                \
                        q_chunk_any(row[j], CK_DTYPE_F8E4M3, k, K, K, sc[j], vec8, f8, &w0, &w1);           \
                        q_chunk_any(row[j], CK_DTYPE_F8E4M3, k + 16, K, K, sc[j], vec8, f8, &w2, &w3);      \
                    }                                                                                       \
                    Q_TOKEN_FMAS(TT, a[j], xp, P, k);                                                       \
                }                                                                                           \
            }                                                                                               \
        }                                                                                                   \
        for (size_t j = 0; j < R; j++)                                                                      \
            for (int t = 0; t < TT; t++) y[t * ldy + n0 + j] = ck_avx2_hsum(a[j][t]);                       \
    }
Q8_TOKENS(q8_tokens_2, 2)
Q8_TOKENS(q8_tokens_3, 3)
Q8_TOKENS(q8_tokens_4, 4)

typedef void (*q_tokens_fn)(const float *, size_t, size_t, const uint8_t *, const ck_scales *, size_t, size_t, float *,
                            size_t);

// T tokens (2 or more) over N rows, in groups of up to 4 tokens (each group reads the rows).
static void q_few_tokens_avx2(const float *xp, size_t T, size_t K, const void *w, ck_dtype dtype, const ck_scales *s,
                              size_t N, float *y, size_t ldy) {
    static const q_tokens_fn fp4[5] = {NULL, NULL, q4_tokens_2, q4_tokens_3, q4_tokens_4};
    static const q_tokens_fn fp8[5] = {NULL, NULL, q8_tokens_2, q8_tokens_3, q8_tokens_4};
    size_t P = ck_avx2_padded(K);
    // FP4 reads x in FP4_FLOATS' lane order (K is a multiple of 32 here)
    float *xq = NULL;
    if (dtype == CK_DTYPE_FP4E2M1) {
        xq = ck_thread_scratch(CK_SCRATCH_FP4T, T * K);
        for (size_t t = 0; t < T; t++) fp4_permute_x(xp + t * P, K, xq + t * K);
    }
    for (size_t t0 = 0; t0 < T;) {
        size_t tt = T - t0 > 4 ? 4 : T - t0;
        if (T - t0 == 5) tt = 3;  // 3 + 2 rather than 4 + 1
        if (tt == 1) {
            q_decode_avx2(xp + t0 * P, K, w, dtype, s, N, y + t0 * ldy);
        } else {
            q_tokens_fn fn = (dtype == CK_DTYPE_F8E4M3 ? fp8 : fp4)[tt];
            const float *xt = xq ? xq + t0 * K : xp + t0 * P;
            for (size_t n = 0; n < N; n += 2) fn(xt, xq ? K : P, K, (const uint8_t *)w, s, n, N - n < 2 ? 1 : 2, y + t0 * ldy, ldy);
        }
        t0 += tt;
    }
}

// Tokens up to which q_few_tokens_avx2 beats decoding rows into a block for the 4 × 2 fp32
// blocks (one core, 2048 × 4096 weights in L3, product ms rows → in registers): FP4 T=2
// 1.99 → 1.10, 4 2.37 → 1.54, 8 3.41 → 3.09, 16 5.57 → 6.21; FP8 T=2 2.22 → 2.13, 3 2.59 →
// 2.18, 4 2.56 → 3.42 (its block decoder is fast, and each group of 4 tokens reads the rows again).
enum { Q_FEW_FP4 = 8, Q_FEW_FP8 = 3 };

// AVX2: rows decoded into an L2-sized block, then the AVX2 fp32 product over it, for any
// number of tokens (so a token's bits do not depend on the batch: matmul_avx2.c).
// x prepared as the fp32 kernel reads it: rows of ck_avx2_padded(K) floats, zero-padded.
void ck_avx2_matmul_scaled_prepared(const float *xp, size_t T, size_t K, const void *w, ck_dtype dtype,
                                    const ck_scales *scales, size_t N, float *y, size_t ldy) {
    if (T == 1 && fused_applies(dtype, K, scales)) {
        q_decode_avx2(xp, K, w, dtype, scales, N, y);
        return;
    }
    int fp8 = dtype == CK_DTYPE_F8E4M3;
    if (T <= (fp8 ? Q_FEW_FP8 : Q_FEW_FP4) && (fp8 ? q8_blocks32(K, scales) : q4_blocks32(K, scales))) {
        q_few_tokens_avx2(xp, T, K, w, dtype, scales, N, y, ldy);
        return;
    }
    // Rows per decoded block: ~256 KB of floats, in L2; rows 64 bytes longer than K floats, so
    // that a K that is a multiple of 1,024 does not put them all in the same L1 sets. One core
    // (AVX2 code on a Zen 4, 2026-12-08): 512 x 1,024 x 512 79 -> 83-84 % of the FMA peak.
    size_t ld = K + 16, R = 65536 / K;
    if (R < 4) R = 4;
    if (R > N) R = N;
    float *buf = ck_thread_scratch(CK_SCRATCH_QROWS, R * ld + CK_AVX2_ROWS_STATE(R));
    for (size_t n0 = 0; n0 < N; n0 += R) {
        size_t nr = n0 + R <= N ? R : N - n0;
        for (size_t r = 0; r < nr; r++) ck_decode_rows(w, dtype, K, scales, n0 + r, 1, buf + r * ld);
        ck_avx2_matmul_rows(xp, T, K, buf, ld, nr, y + n0, ldy, buf + R * ld);
    }
}

// AVX2: rows decoded into an L2-sized block, then the AVX2 fp32 product over it, for any
// number of tokens (so a token's bits do not depend on the batch: matmul_avx2.c). When K is
// already a whole number of chunks and the rows are contiguous, x is already in the prepared
// layout (a wave prepares x once per product otherwise: copying a 512-token chunk's x in every
// task cost 16 % of a prefill).
static void matmul_scaled_avx2(const float *x, size_t ldx, size_t T, size_t K, const void *w, ck_dtype dtype,
                               const ck_scales *scales, size_t N, float *y, size_t ldy) {
    if (!ck_avx2_x_copied(ldx, T, K)) {
        ck_avx2_matmul_scaled_prepared(x, T, K, w, dtype, scales, N, y, ldy);
        return;
    }
    float *copy = malloc(T * ck_avx2_padded(K) * sizeof(float) + 64);
    ck_avx2_prepare_x(x, ldx, T, K, CK_DTYPE_F32, copy);
    ck_avx2_matmul_scaled_prepared(copy, T, K, w, dtype, scales, N, y, ldy);
    free(copy);
}

// MARK: - fast path

void ck_matmul_scaled(const float *x, size_t ldx, size_t T, size_t K, const void *w, ck_dtype dtype,
                      const ck_scales *scales, size_t N, float *y, size_t ldy) {
    if (T == 0 || N == 0) return;
    if (scales == NULL && dtype != CK_DTYPE_F8E4M3 && dtype != CK_DTYPE_FP4E2M1) {
        ck_matmul(x, ldx, T, K, w, dtype, N, y, ldy);
        return;
    }
    if (!ck_use_avx512() && ck_use_avx2() && K > 0) {
        matmul_scaled_avx2(x, ldx, T, K, w, dtype, scales, N, y, ldy);
        return;
    }
    if (!ck_use_avx512() || K == 0) {
        ck_ref_matmul_scaled(x, ldx, T, K, w, dtype, scales, N, y, ldy);
        return;
    }
    if (ck_qlanes_applies(dtype, K, scales)) {
        ck_qlanes_matmul(x, ldx, T, K, w, dtype, scales, N, y, ldy);
        return;
    }
    if (T <= 3 && fused_applies(dtype, K, scales)) {
        const uint8_t *wb = (const uint8_t *)w;
        if (T == 1) fused_1(x, ldx, K, wb, dtype, scales, N, y, ldy);
        else if (T == 2) fused_2(x, ldx, K, wb, dtype, scales, N, y, ldy);
        else fused_3(x, ldx, K, wb, dtype, scales, N, y, ldy);
        return;
    }
    // Rows per decoded block: about 64 KiB of floats (stays in L2), at least 4 for the 4×4 kernel.
    size_t R = T >= 6 ? 32 : 16384 / K;
    if (R < 4) R = 4;
    if (R > N) R = N;
    float *buf = malloc(R * K * sizeof(float));
    if (!buf) {
        ck_ref_matmul_scaled(x, ldx, T, K, w, dtype, scales, N, y, ldy);
        return;
    }
    for (size_t n0 = 0; n0 < N; n0 += R) {
        size_t nr = n0 + R <= N ? R : N - n0;
        ck_decode_rows(w, dtype, K, scales, n0, nr, buf);
        ck_matmul(x, ldx, T, K, buf, CK_DTYPE_F32, nr, y + n0, ldy);
    }
    free(buf);
}
