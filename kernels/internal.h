// internal.h: helpers shared by the kernel files (not visible to Swift).
#ifndef CK_INTERNAL_H
#define CK_INTERNAL_H
#include "include/ckernels.h"
#include <immintrin.h>
int ck_use_avx512(void);
/// 1 when the AVX2+FMA paths should run (no AVX-512, not forced to the scalar twins).
int ck_use_avx2(void);

// BF16 weights (matmul_bf16.c): x permuted once per product, then any tiling.
size_t ck_bf16_padded(size_t K);
void ck_bf16_permute_x(const float *x, size_t ldx, size_t T, size_t K, float *out);
void ck_bf16_matmul_permuted(const float *xp, size_t T, size_t K, const void *w, size_t N, float *y, size_t ldy);
void ck_bf16_matmul(const float *x, size_t ldx, size_t T, size_t K, const void *w, size_t N, float *y, size_t ldy);
// F32/BF16/F16 products on AVX2+FMA machines (matmul_avx2.c).
void ck_avx2_matmul(const float *x, size_t ldx, size_t T, size_t K, const void *w, ck_dtype dtype, size_t N,
                    float *y, size_t ldy);
/// x as the AVX2 products read it ([T][ck_avx2_padded(K)]), once per product.
size_t ck_avx2_padded(size_t K);
/// Σ lanes of s in the AVX2 products' fixed tree (lanes i and i + 4, then 0 + 2 and 1 + 3,
/// then those two): every AVX2 product that must match another's bits sums through this.
__attribute__((target("avx2,fma"))) static inline float ck_avx2_hsum(__m256 s) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}
/// Σ lanes of v in the AVX-512 products' fixed tree (lanes i and i + 8, then i and i + 4,
/// i and i + 2, then 0 + 1; the tree clang lowers _mm512_reduce_add_ps to, written out so the
/// bits do not depend on the compiler): every AVX-512 product that must match another's bits
/// sums through this or ck_sums16.
__attribute__((target("avx512f"))) static inline float ck_sum16(__m512 v) {
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
}
/// Lane m of the result is ck_sum16(v[m]), bit for bit, for 16 vectors at once: the same
/// tree level by level, two vectors' halves per shuffle (30 shuffles and 15 adds instead
/// of 16 × 7 operations, the horizontal sums that cost small-K blocks ~15 % of their time).
__attribute__((target("avx512f"))) static inline __m512 ck_sums16(const __m512 v[16]) {
    __m512 p[8], r[4], s[2];
    for (int i = 0; i < 8; i++) {  // pair A_2i, A_2i+1 with A_m = v[4 (m % 4) + m / 4]
        __m512 a = v[4 * ((2 * i) % 4) + i / 2], b = v[4 * ((2 * i + 1) % 4) + i / 2];
        p[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
    }
    for (int i = 0; i < 4; i++)
        r[i] = _mm512_add_ps(_mm512_shuffle_f32x4(p[2 * i], p[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(p[2 * i], p[2 * i + 1], 0xDD));
    for (int i = 0; i < 2; i++)
        s[i] = _mm512_add_ps(_mm512_shuffle_ps(r[2 * i], r[2 * i + 1], 0x44), _mm512_shuffle_ps(r[2 * i], r[2 * i + 1], 0xEE));
    return _mm512_add_ps(_mm512_shuffle_ps(s[0], s[1], 0x88), _mm512_shuffle_ps(s[0], s[1], 0xDD));
}
/// s[m] = ck_sum16(v[m]) for m < count: 16 at a time through ck_sums16 (zero vectors fill the
/// last group) while at least 8 remain, one at a time below that.
__attribute__((target("avx512f"))) static inline void ck_sums(const __m512 *v, int count, float *s) {
    int g = 0;
    for (; count - g >= 8; g += 16) {
        __m512 b[16];
        for (int i = 0; i < 16; i++) b[i] = g + i < count ? v[g + i] : _mm512_setzero_ps();
        float t[16];
        _mm512_storeu_ps(t, ck_sums16(b));
        for (int i = 0; i < 16 && g + i < count; i++) s[g + i] = t[i];
    }
    for (; g < count; g++) s[g] = ck_sum16(v[g]);
}
void ck_avx2_prepare_x(const float *x, size_t ldx, size_t T, size_t K, ck_dtype dtype, float *out);
/// Whether F32, F16, FP8 and FP4 products need x copied into the prepared layout (rows of
/// ck_avx2_padded(K) floats); when not, x is that layout already. BF16 always permutes.
int ck_avx2_x_copied(size_t ldx, size_t T, size_t K);
/// ck_matmul_scaled on AVX2 machines with x prepared (ck_avx2_prepare_x with CK_DTYPE_F32).
void ck_avx2_matmul_scaled_prepared(const float *xp, size_t T, size_t K, const void *w, ck_dtype dtype,
                                    const ck_scales *scales, size_t N, float *y, size_t ldy);
/// y = x · Wᵀ over fp32 rows `ldw` floats apart (decoded blocks), x prepared (ck_avx2_prepare_x);
/// `state`: CK_AVX2_ROWS_STATE(N) floats, 32-byte aligned, for the blocks' accumulators between passes.
void ck_avx2_matmul_rows(const float *xp, size_t T, size_t K, const float *w, size_t ldw, size_t N, float *y,
                         size_t ldy, float *state);
#define CK_AVX2_ROWS_STATE(N) ((N) / 2 * 64)
void ck_avx2_matmul_prepared(const float *xp, size_t T, size_t K, const void *w, ck_dtype dtype, size_t N, float *y,
                             size_t ldy);
/// Prepares rows of x for a product (permutes, padding): fn(x, ldx, T, K, dtype, out) for any
/// T rows, each row's result independent of the others.
typedef void (*ck_rows_fn)(const float *x, size_t ldx, size_t T, size_t K, ck_dtype dtype, float *out);
/// fn over all T rows (out rows `ldo` floats apart): in chunks over the kernel threads when
/// there are T·K ≥ 32K values (a prefill chunk's input, which the main thread otherwise
/// prepared while the workers waited), else in one call. Same bits either way.
void ck_rows_parallel(ck_rows_fn fn, const float *x, size_t ldx, size_t T, size_t K, ck_dtype dtype, size_t ldo,
                      float *out);
/// One token's FP4 product (E8M0 per 32 values) on AVX2 machines with x prepared per scale
/// exponent (quant.c): ck_fp4x_applies says when; ck_fp4x_prepare writes ck_fp4x_floats(K)
/// floats for rows 0 ..< N of w (their scales pick the exponents; any rows of the same K and
/// scale layout may use it); ck_fp4x_matmul over it is what ck_matmul_scaled computes for T = 1.
int ck_fp4x_applies(ck_dtype dtype, size_t T, size_t K, const ck_scales *s);
size_t ck_fp4x_floats(size_t K);
void ck_fp4x_prepare(const float *x, size_t K, const ck_scales *s, size_t N, float *dst);
void ck_fp4x_matmul(const float *xp, size_t K, const void *w, const ck_scales *s, size_t N, float *y);
// FP8/FP4 in the BF16 kernel's lane order (quant_lanes.c).
int ck_qlanes_applies(ck_dtype dtype, size_t K, const ck_scales *s);
void ck_qlanes_matmul(const float *x, size_t ldx, size_t T, size_t K, const void *w, ck_dtype dtype,
                      const ck_scales *s, size_t N, float *y, size_t ldy);
/// x in the order lane-ordered products of `dtype` read it (out: [T, K]).
void ck_qlanes_permute_x(ck_dtype dtype, const float *x, size_t ldx, size_t T, size_t K, float *out);
/// As ck_qlanes_matmul with x already permuted (ck_bf16_permute_x; K is a multiple of 32).
void ck_qlanes_matmul_permuted(const float *xp, size_t T, size_t K, const void *w, ck_dtype dtype,
                               const ck_scales *s, size_t N, float *y, size_t ldy);

/// e^x on 8 lanes (AVX2+FMA), the arithmetic of ck_exp_f32's AVX2 path: n = round(x / ln 2),
/// r = x − n·ln 2 (Cody–Waite), e^r by Cephes' degree-6 polynomial, 2^n as two exponent-field
/// multiplies (so underflow into denormals rounds once). Within 2 ulp of expf; x is clamped to
/// [−104, 89] first (NaN stays NaN), so −inf gives exactly 0 and overflow +inf.
__attribute__((target("avx2,fma"))) static inline __m256 ck_exp256(__m256 v) {
    const __m256 log2e = _mm256_set1_ps(1.44269504088896341f);
    const __m256 ln2hi = _mm256_set1_ps(0.693359375f), ln2lo = _mm256_set1_ps(-2.12194440e-4f);
    v = _mm256_min_ps(_mm256_set1_ps(89.0f), _mm256_max_ps(_mm256_set1_ps(-104.0f), v));
    __m256 k = _mm256_round_ps(_mm256_mul_ps(v, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, ln2hi, v);
    r = _mm256_fnmadd_ps(k, ln2lo, r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i ki = _mm256_cvtps_epi32(k);
    __m256i k1 = _mm256_srai_epi32(ki, 1), k2 = _mm256_sub_epi32(ki, k1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}
/// Per-thread scratch of at least n floats (64-byte aligned; grows, then reused), one buffer
/// per slot so kernels that call each other never share one (threadpool.c).
enum { CK_SCRATCH_ATTEND = 0, CK_SCRATCH_QLANES = 1, CK_SCRATCH_KEYS = 2, CK_SCRATCH_QROWS = 3,
       CK_SCRATCH_FP4X = 4, CK_SCRATCH_FP4T = 5,
       CK_SCRATCH_WAVE = 6, CK_SCRATCH_SLOTS = 7 };
float *ck_thread_scratch(int slot, size_t n);
#endif
