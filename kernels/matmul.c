// matmul.c: y = x · Wᵀ for weights stored as F32, BF16 or F16 (read in place, never copied).
// Quantized formats (FP8, FP4) live in quant.c.
//
// The AVX-512 path computes register blocks of 6 tokens × 4 weight rows (24 zmm
// accumulators), with 1×8, 1×4 and 1×1 blocks for the edges, and masked loads for K tails.
// The scalar twin accumulates in float, in index order.
#include <immintrin.h>
#include "internal.h"

static inline float load_scalar(const void *w, ck_dtype dtype, size_t i) {
    switch (dtype) {
    case CK_DTYPE_F32: return ((const float *)w)[i];
    case CK_DTYPE_BF16: return ck_bf16_to_f32(((const uint16_t *)w)[i]);
    case CK_DTYPE_F16: return ck_f16_to_f32(((const uint16_t *)w)[i]);
    case CK_DTYPE_F8E4M3: return ck_e4m3_to_f32(((const uint8_t *)w)[i]);
    case CK_DTYPE_FP4E2M1: return ck_e2m1_to_f32((i & 1) ? (uint8_t)(((const uint8_t *)w)[i / 2] >> 4) : ((const uint8_t *)w)[i / 2]);
    }
    return 0;
}

void ck_ref_matmul(const float *x, size_t ldx, size_t T, size_t K, const void *w, ck_dtype dtype, size_t N,
                   float *y, size_t ldy) {
    if (dtype == CK_DTYPE_F8E4M3 || dtype == CK_DTYPE_FP4E2M1) {
        ck_ref_matmul_scaled(x, ldx, T, K, w, dtype, NULL, N, y, ldy);
        return;
    }
    for (size_t t = 0; t < T; t++) {
        for (size_t n = 0; n < N; n++) {
            float s = 0;
            for (size_t k = 0; k < K; k++) s += x[t * ldx + k] * load_scalar(w, dtype, n * K + k);
            y[t * ldy + n] = s;
        }
    }
}

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl")))

// Weight loads: masked for the last partial step only (`full` is a constant at every call):
// masked loads in every step cost the product blocks ~9 % on Zen 4 (see matmul_bf16.c).
TGT static inline __m512 lw_f32(const void *w, size_t i, __mmask16 m, int full) {
    return full ? _mm512_loadu_ps((const float *)w + i) : _mm512_maskz_loadu_ps(m, (const float *)w + i);
}
TGT static inline __m512 lw_f16(const void *w, size_t i, __mmask16 m, int full) {
    __m256i h = full ? _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i))
                     : _mm256_maskz_loadu_epi16(m, (const uint16_t *)w + i);
    return _mm512_cvtph_ps(h);
}

// One register block of TB tokens × NB weight rows starting at (t0, n0).
// Bytes ahead of the current position that each weight row prefetches: decode is a stream of
// many short rows, and without it the loads wait on DRAM latency.
#define PF_BYTES 1024

// One step of 16 columns: NB weight rows against TB tokens (plain loads when FULL).
#define MM_STEP(LW, TB, NB, ESZ, MASK, FULL)                                                           \
    {                                                                                                  \
        __mmask16 m = (MASK);                                                                          \
        __m512 wv[NB];                                                                                 \
        for (int j = 0; j < NB; j++) {                                                                 \
            _mm_prefetch((const char *)w + ((n0 + j) * K + k) * ESZ + PF_BYTES, _MM_HINT_T0);           \
            wv[j] = LW(w, (n0 + j) * K + k, m, FULL);                                                  \
        }                                                                                              \
        for (int i = 0; i < TB; i++) {                                                                 \
            const float *xr = x + (t0 + i) * ldx + k;                                                  \
            __m512 xv = FULL ? _mm512_loadu_ps(xr) : _mm512_maskz_loadu_ps(m, xr);                     \
            for (int j = 0; j < NB; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);            \
        }                                                                                              \
    }

#define MM_BLOCK(SUFFIX, LW, TB, NB, ESZ)                                                              \
    TGT static inline void blk_##SUFFIX##_##TB##x##NB(const float *x, size_t ldx, size_t K, const void *w, \
                                                      float *y, size_t ldy, size_t t0, size_t n0) {     \
        __m512 acc[TB][NB];                                                                            \
        for (int i = 0; i < TB; i++)                                                                   \
            for (int j = 0; j < NB; j++) acc[i][j] = _mm512_setzero_ps();                              \
        size_t k = 0;                                                                                  \
        for (; k + 16 <= K; k += 16) MM_STEP(LW, TB, NB, ESZ, 0xFFFF, 1)                               \
        if (k < K) MM_STEP(LW, TB, NB, ESZ, (__mmask16)((1u << (K - k)) - 1), 0)                        \
        float s[TB * NB];                                                                              \
        ck_sums(&acc[0][0], TB * NB, s);                                                               \
        for (int i = 0; i < TB; i++)                                                                   \
            for (int j = 0; j < NB; j++) y[(t0 + i) * ldy + n0 + j] = s[i * NB + j];                   \
    }

#define MM_KERNEL(SUFFIX, LW, ESZ)                                                                     \
    MM_BLOCK(SUFFIX, LW, 6, 4, ESZ)                                                                    \
    MM_BLOCK(SUFFIX, LW, 3, 1, ESZ)                                                                    \
    MM_BLOCK(SUFFIX, LW, 2, 1, ESZ)                                                                    \
    MM_BLOCK(SUFFIX, LW, 1, 1, ESZ)                                                                    \
    TGT static void mm_##SUFFIX(const float *x, size_t ldx, size_t T, size_t K, const void *w, size_t N, \
                                float *y, size_t ldy) {                                                \
        size_t t = 0;                                                                                  \
        for (; t + 6 <= T; t += 6) {                                                                   \
            size_t n = 0;                                                                              \
            for (; n + 4 <= N; n += 4) blk_##SUFFIX##_6x4(x, ldx, K, w, y, ldy, t, n);                 \
            for (; n < N; n++)                                                                         \
                for (size_t i = 0; i < 6; i++) blk_##SUFFIX##_1x1(x, ldx, K, w, y, ldy, t + i, n);     \
        }                                                                                              \
        /* The last tokens (all of decode): one weight row at a time, a single sequential stream \
           (see matmul_bf16.c); the same sums in the same order as the 6x4 blocks. */               \
        for (; t + 3 <= T; t += 3)                                                                     \
            for (size_t n = 0; n < N; n++) blk_##SUFFIX##_3x1(x, ldx, K, w, y, ldy, t, n);             \
        if (T - t == 2)                                                                                \
            for (size_t n = 0; n < N; n++) blk_##SUFFIX##_2x1(x, ldx, K, w, y, ldy, t, n);             \
        else if (T - t == 1)                                                                           \
            for (size_t n = 0; n < N; n++) blk_##SUFFIX##_1x1(x, ldx, K, w, y, ldy, t, n);             \
    }

MM_KERNEL(f32, lw_f32, 4)
MM_KERNEL(f16, lw_f16, 2)

void ck_matmul(const float *x, size_t ldx, size_t T, size_t K, const void *w, ck_dtype dtype, size_t N,
               float *y, size_t ldy) {
    if (T == 0 || N == 0) return;
    if (K == 0) {
        for (size_t t = 0; t < T; t++)
            for (size_t n = 0; n < N; n++) y[t * ldy + n] = 0;
        return;
    }
    if (ck_use_avx512()) {
        switch (dtype) {
        case CK_DTYPE_F32: mm_f32(x, ldx, T, K, w, N, y, ldy); return;
        case CK_DTYPE_BF16: ck_bf16_matmul(x, ldx, T, K, w, N, y, ldy); return;
        case CK_DTYPE_F16: mm_f16(x, ldx, T, K, w, N, y, ldy); return;
        case CK_DTYPE_F8E4M3:
        case CK_DTYPE_FP4E2M1: ck_matmul_scaled(x, ldx, T, K, w, dtype, NULL, N, y, ldy); return;
        }
    }
    if (ck_use_avx2() && (dtype == CK_DTYPE_F32 || dtype == CK_DTYPE_BF16 || dtype == CK_DTYPE_F16)) {
        ck_avx2_matmul(x, ldx, T, K, w, dtype, N, y, ldy);
        return;
    }
    if (ck_use_avx2()) {  // FP8 / FP4 without scales
        ck_matmul_scaled(x, ldx, T, K, w, dtype, NULL, N, y, ldy);
        return;
    }
    ck_ref_matmul(x, ldx, T, K, w, dtype, N, y, ldy);
}

// MARK: - vector helpers

float ck_ref_dot_f32(const float *a, const float *b, size_t n) {
    float s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

TGT static float dot_avx512(const float *a, const float *b, size_t n) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = (i + 16 <= n) ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc0);
    }
    return ck_sum16(_mm512_add_ps(acc0, acc1));
}

float ck_dot_f32(const float *a, const float *b, size_t n) {
    if (ck_use_avx512()) return dot_avx512(a, b, n);
    return ck_ref_dot_f32(a, b, n);
}

void ck_ref_axpy_f32(float alpha, const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

TGT static void axpy_avx512(float alpha, const float *x, float *y, size_t n) {
    __m512 a = _mm512_set1_ps(alpha);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(a, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    for (; i < n; i += 16) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 yv = _mm512_maskz_loadu_ps(m, y + i);
        yv = _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(m, x + i), yv);
        _mm512_mask_storeu_ps(y + i, m, yv);
    }
}

void ck_axpy_f32(float alpha, const float *x, float *y, size_t n) {
    if (ck_use_avx512()) {
        axpy_avx512(alpha, x, y, n);
        return;
    }
    ck_ref_axpy_f32(alpha, x, y, n);
}

TGT static void weighted_sum_avx512(const float *const *src, const float *coef, size_t n, size_t D, float *out) {
    size_t i = 0;
    for (; i + 16 <= D; i += 16) {  // plain loads for whole vectors (masked ones cost more on Zen 4)
        __m512 acc = _mm512_setzero_ps();
        for (size_t j = 0; j < n; j++) acc = _mm512_fmadd_ps(_mm512_set1_ps(coef[j]), _mm512_loadu_ps(src[j] + i), acc);
        _mm512_storeu_ps(out + i, acc);
    }
    if (i < D) {
        __mmask16 m = (__mmask16)((1u << (D - i)) - 1);
        __m512 acc = _mm512_setzero_ps();
        for (size_t j = 0; j < n; j++) acc = _mm512_fmadd_ps(_mm512_set1_ps(coef[j]), _mm512_maskz_loadu_ps(m, src[j] + i), acc);
        _mm512_mask_storeu_ps(out + i, m, acc);
    }
}

void ck_weighted_sum_f32(const float *const *src, const float *coef, size_t n, size_t D, float *out) {
    if (ck_use_avx512()) {
        weighted_sum_avx512(src, coef, n, D, out);
        return;
    }
    for (size_t i = 0; i < D; i++) {  // ck_ref_axpy_f32's operations: a product, then a sum
        float acc = 0;
        for (size_t j = 0; j < n; j++) {
            float p = coef[j] * src[j][i];
            acc = acc + p;
        }
        out[i] = acc;
    }
}
